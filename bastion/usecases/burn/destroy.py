"""Destroy: nothing may keep trusting the burnt gateway; then remove what containment added."""

from __future__ import annotations

import contextlib
from typing import Any

from bastion.domain.apply import wait_until
from bastion.domain.containment import entry_cidr, interface_hosts, names_host
from bastion.domain.errors import NotFoundError
from bastion.domain.identity import named_by_bastion
from bastion.domain.incident import DESTROY
from bastion.usecases.burn.state import Phase
from bastion.usecases.shared.clientconfig import APP_KNOWN_HOSTS_NAME, RECORD_NAME


class Destruction(Phase):
    """Delete the key pairs and local keys, terminate (or stop), clean up."""

    steps = DESTROY

    def destroy_key_pairs(self) -> dict[str, Any]:
        """Delete every EC2 key pair of the gateway: nothing may keep trusting it."""
        deleted = []
        for key_pair in self.ctx.aws.key_pairs.find_key_pairs(self.incident.name):
            if not named_by_bastion(self.incident.name, key_pair.name):
                continue  # only tagged as the gateway's (anyone may tag): not bastion's to delete
            self.ctx.aws.key_pairs.delete_key_pair(key_pair.name)
            deleted.append(key_pair.name)
        return {"deleted": deleted}

    def destroy_local_keys(self) -> None:
        """Remove the compromised private keys and the pin of the burnt host key."""
        # Where the ssh config was written stays, so the relaunch rewrites it for the new gateway;
        # and the app hosts' pins stay: the app hosts were not burnt, their keys did not change.
        self.ctx.files.remove(keep=(RECORD_NAME, APP_KNOWN_HOSTS_NAME))

    def destroy_instance(self) -> dict[str, Any]:
        """Terminate (or, with --keep-instance, stop) the isolated instance."""
        if self.instance is None:
            return {"skipped": "already terminated"}
        aws, iid = self.ctx.aws, self.instance.instance_id
        target = "stopped" if self.keep_instance else "terminated"
        if self.keep_instance:
            aws.compute.stop_instance(iid)
        else:
            aws.compute.set_termination_protection(iid, False)
            aws.compute.terminate_instance(iid)
        wait_until(
            lambda: aws.compute.instance_state(iid) == target,
            f"{iid} to be {target}",
            self.deps.clock,
            self.deps.reporter,
            self.ctx.settings.wait_timeout,
        )
        if not self.keep_instance:
            self.instance = None
        return {"state": target}

    def destroy_cleanup(self) -> dict[str, Any]:
        """Remove what containment added, once the instance is gone; keep it if it is kept."""
        aws = self.ctx.aws
        removed: list[str] = []
        hosts = interface_hosts(self.pre)
        if self.instance is None and hosts:
            recorded = {
                (e["acl_id"], int(e["number"]), bool(e["egress"]))
                for e in self.incident.containment.get("acl_entries", [])
            }
            # Delete only what is still there (a resume may find some gone), and only the deny
            # entries containment made; with the record lost (adopted from tags), those are the
            # deny entries for the burnt instance's own addresses.
            for acl_id, entries in aws.network.vpc_network_acls(self.pre["vpc_id"]):
                for e in entries:
                    key = (acl_id, int(e["RuleNumber"]), bool(e.get("Egress")))
                    ours = e.get("RuleAction") == "deny" and names_host(entry_cidr(e), hosts)
                    if ours and (not recorded or key in recorded):
                        with contextlib.suppress(NotFoundError):
                            aws.network.delete_acl_entry(*key)
                        removed.append(f"acl {acl_id} #{key[1]}")
        kinds = ("open",) if self.instance is not None else ("open", "isolate")
        for kind in kinds:
            group_id = aws.groups.find_group_by_name(
                self.state.group_name(kind), self.pre["vpc_id"]
            )
            if group_id:
                aws.groups.delete_group(group_id)
                removed.append(group_id)
        for group in aws.groups.find_gateway_groups(self.incident.name):
            if not named_by_bastion(self.incident.name, group.name):
                continue  # a group only tagged as the gateway's is not bastion's to delete
            aws.groups.delete_group(group.group_id)
            removed.append(group.group_id)
        return {"removed": removed}
