"""What every burn step reads and updates, and the base of the phases that hold the steps."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bastion.adapters.incidents import IncidentFolder
from bastion.domain.incident import Incident
from bastion.domain.model import InstanceInfo
from bastion.domain.tags import TAG_INCIDENT, TAG_MANAGED, TAG_NAME, TAG_ROLE
from bastion.usecases.ports import Deps
from bastion.usecases.shared.context import Context

Step = Callable[[], dict[str, Any] | None]


@dataclass
class BurnState:
    """The incident under way: its record and folder, and the instance while it still exists."""

    ctx: Context
    deps: Deps
    incident: Incident
    instance: InstanceInfo | None
    folder: IncidentFolder
    keep_instance: bool
    # Opened by this run: nothing of it exists in AWS yet, so containment looks nothing up.
    fresh: bool = False

    def group_name(self, kind: str) -> str:
        """Return the name of the incident's temporary `kind` group (open, isolate)."""
        return f"bastion-{self.incident.name}-{self.incident.incident_id}-{kind}"

    def incident_tags(self, role: str) -> dict[str, str]:
        """Return the tags of a resource the incident made."""
        return {
            "Name": self.group_name(role),
            TAG_MANAGED: "true",
            TAG_NAME: self.incident.name,
            TAG_ROLE: f"incident-{role}",
            TAG_INCIDENT: self.incident.incident_id,
        }


class Phase:
    """A phase of `burn`: one idempotent method per step, named as the step."""

    steps: tuple[str, ...] = ()

    def __init__(self, state: BurnState) -> None:
        self.state = state

    @property
    def ctx(self) -> Context:
        """Return the gateway's context."""
        return self.state.ctx

    @property
    def deps(self) -> Deps:
        """Return the injected side effects."""
        return self.state.deps

    @property
    def incident(self) -> Incident:
        """Return the incident record."""
        return self.state.incident

    @property
    def pre(self) -> dict[str, Any]:
        """Return what the record says of the instance before the incident."""
        return self.state.incident.pre_incident

    @property
    def keep_instance(self) -> bool:
        """Tell whether the instance is to be kept (stopped, isolated) for forensics."""
        return self.state.keep_instance

    @property
    def instance(self) -> InstanceInfo | None:
        """Return the burnt instance, or None once it is terminated."""
        return self.state.instance

    @instance.setter
    def instance(self, value: InstanceInfo | None) -> None:
        self.state.instance = value

    def table(self) -> dict[str, Step]:
        """Map this phase's step names to their methods."""
        return {step: getattr(self, step) for step in self.steps}
