"""A gateway's lock held in AWS: who holds it, for which command, and until when."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

# Long enough for any one step between two renewals (waits renew as they poll), short enough
# that a killed holder blocks the others only briefly.
LEASE_SECONDS = 120.0
RENEW_AFTER_SECONDS = LEASE_SECONDS / 3


@dataclass(frozen=True)
class Lease:
    """One holder's lease on a gateway: `token` tells two processes of one identity apart."""

    gateway: str
    holder: str
    command: str
    since: datetime
    expires: datetime
    token: str

    def expired(self, now: datetime) -> bool:
        """Tell whether the holder's lease has run out (then anyone may take the lock over)."""
        return self.expires <= now

    def renewed(self, now: datetime) -> Lease:
        """Return this lease extended for another full term from `now`."""
        return Lease(
            self.gateway,
            self.holder,
            self.command,
            self.since,
            now + timedelta(seconds=LEASE_SECONDS),
            self.token,
        )

    def describe(self) -> str:
        """Name the holder as a person reads it: ARN, command, since, lease end."""
        return (
            f"{self.holder} (bastion {self.command} since {self.since:%H:%M:%S}Z, "
            f"lease until {self.expires:%H:%M:%S}Z)"
        )


def new_lease(gateway: str, holder: str, command: str, now: datetime, token: str) -> Lease:
    """Return a fresh lease on `gateway` for this holder, from `now` for one full term."""
    return Lease(gateway, holder, command, now, now + timedelta(seconds=LEASE_SECONDS), token)
