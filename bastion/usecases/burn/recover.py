"""Recover: the next generation, launched the way `up` launches it, trusted where the old was."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from bastion.domain.incident import RELAUNCH
from bastion.domain.tags import TAG_CERTIFICATES, TAG_IMAGE, TAG_PORT
from bastion.usecases.burn.state import Phase
from bastion.usecases.shared.converge import converge


class Recovery(Phase):
    """Relaunch with brand-new keys, re-admit it on the app groups, re-attach the address."""

    steps = RELAUNCH

    def relaunch_gateway(self) -> dict[str, Any]:
        """Launch the next generation with brand-new keys, verified as `up` verifies."""
        app_groups = self.incident.containment.get("app_groups", [])
        settings = self.ctx.settings
        tags = self.pre.get("tags", {})
        # The same gateway comes back (port, image family), only with everything fresh.
        if TAG_PORT in tags:
            settings = replace(settings, port=int(tags[TAG_PORT]))
        if TAG_IMAGE in tags:
            settings = replace(settings, image=tags[TAG_IMAGE])
        if tags.get(TAG_CERTIFICATES) == "true":  # the new generation trusts the CA too
            settings = replace(settings, certificates=True)
        if settings.app_sg is None and app_groups:
            settings = replace(settings, app_sg=app_groups[0])
        result = converge(
            settings,
            self.deps,
            generation_floor=int(self.pre["generation"]) + 1,
            ctx=replace(self.ctx, settings=settings, chosen_instance=None),
            # Only what this relaunch launched (recorded since the old keys were destroyed):
            # an instance that merely carries the gateway's tags is never taken over.
            only=self.ctx.files.recorded_instances(),
        )
        status = result.status or {}
        instance = status.get("instance") or {}
        self.incident.relaunch = {
            "instance_id": instance.get("id"),
            "generation": instance.get("generation"),
            "security_group": status.get("security_group"),
            "key_pair": status.get("key_pair"),
            "host_key_fingerprint": status.get("host_key_fingerprint"),
            "login_key_fingerprint": status.get("login_key_fingerprint"),
        }
        self.incident.keys["new"] = {
            k: self.incident.relaunch[k]
            for k in ("key_pair", "login_key_fingerprint", "host_key_fingerprint")
        }
        return self.incident.relaunch

    def relaunch_app_groups(self) -> dict[str, Any]:
        """Point every app group that trusted the old gateway at the new one."""
        new_group = self.incident.relaunch.get("security_group")
        added = []
        for group_id in self.incident.containment.get("app_groups", [])[1:]:
            group = self.ctx.aws.groups.group(group_id)
            if any(r.source_group == new_group and r.admits_port(22) for r in group.ingress):
                continue
            self.ctx.aws.groups.authorize(
                group_id,
                {
                    "IpProtocol": "tcp",
                    "FromPort": 22,
                    "ToPort": 22,
                    "UserIdGroupPairs": [
                        {
                            "GroupId": new_group,
                            "Description": f"bastion:gateway {self.incident.name}",
                        }
                    ],
                },
                egress=False,
            )
            added.append(group_id)
        return {"added": added}

    def relaunch_elastic_ip(self) -> dict[str, Any]:
        """Attach the kept Elastic IP to the new gateway."""
        new_instance = self.incident.relaunch.get("instance_id")
        moved = []
        for allocation in self.incident.containment.get("elastic_ips", []):
            if new_instance:
                self.ctx.aws.network.associate_address(allocation, new_instance)
                moved.append(allocation)
        return {"moved": moved}
