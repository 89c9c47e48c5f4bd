"""The composition root: the real adapters plugged into the use cases' ports.

The CLI builds one `Deps`; tests build theirs with moto, fake probes, fake IP lookups and a
fake clock. Nothing below this module knows which adapters it was given.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bastion.adapters.aws.client import Ec2, SessionFactory, make_session
from bastion.adapters.callerip import Fetch, https_fetch
from bastion.adapters.probe import OpenSshProbe
from bastion.domain.apply import QuietReporter, Reporter
from bastion.domain.clock import Clock, SystemClock
from bastion.domain.model import Action
from bastion.domain.settings import Settings
from bastion.usecases import ports


@dataclass
class Deps:
    """Everything with a side effect outside the process, injectable for tests."""

    session_factory: SessionFactory = make_session
    clock: Clock = field(default_factory=SystemClock)
    fetch: Fetch = https_fetch
    probe: ports.GatewayProbe = field(default_factory=OpenSshProbe)
    reporter: Reporter = field(default_factory=QuietReporter)
    on_ec2: Callable[[Ec2], None] | None = None
    before_each: Callable[[Action], None] | None = None
    execvp: Callable[[str, list[str]], Any] = os.execvp  # `bastion ssh` replaces the process

    def aws(self, settings: Settings) -> Ec2:
        """Connect to EC2 for the configured profile and region."""
        ec2 = Ec2(self.session_factory(settings.profile, settings.region))
        if self.on_ec2:
            self.on_ec2(ec2)
        return ec2
