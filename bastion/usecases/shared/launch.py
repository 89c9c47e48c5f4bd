"""The side effects behind `up`'s plan: keys, key pair, group, rules, launch, wait, verify.

`up` (and `burn`'s relaunch, through it) and `rotate --relaunch` (for the standby generation)
run the same handlers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from bastion.adapters import keys
from bastion.domain.apply import resolve, wait_until
from bastion.domain.errors import ConflictError
from bastion.domain.fingerprints import fingerprint
from bastion.domain.model import Action, GatewaySpec, Image, ObservedGateway
from bastion.domain.plan import Network
from bastion.domain.settings import Settings, image_family, image_parameter
from bastion.domain.tags import (
    TAG_ADMIN_KEY_FINGERPRINT,
    TAG_CERTIFICATES,
    TAG_GENERATION,
    TAG_HOST_KEY_FINGERPRINT,
    TAG_IMAGE,
    TAG_INCIDENT,
    TAG_KEY_FINGERPRINT,
    TAG_LOGIN_USER,
    TAG_PORT,
    TAG_STANDBY,
    base_tags,
    group_name,
    key_pair_name,
)
from bastion.usecases.ports import Deps
from bastion.usecases.shared.cert_trust import launch_trust
from bastion.usecases.shared.context import Context, journal_for
from bastion.usecases.shared.hostkey import booted_lately, pin_from_console
from bastion.usecases.shared.verify import verify_gateway

log = logging.getLogger(__name__)


def takes_certificates(settings: Settings, observed: ObservedGateway) -> bool:
    """Tell whether a launch trusts the CA: asked now, or the gateway took (or was asked to)."""
    earlier = [observed.instance, observed.standby, *observed.retiring]
    return settings.certificates or any(
        i.tags.get(TAG_CERTIFICATES) in ("true", "wanted") for i in earlier if i is not None
    )


class UpHandlers:
    """The side effects behind each kind of `up` action."""

    def __init__(
        self,
        ctx: Context,
        deps: Deps,
        spec: GatewaySpec,
        observed: ObservedGateway,
        network: Network,
        when: str,
    ) -> None:
        self.ctx, self.deps, self.spec, self.observed = ctx, deps, spec, observed
        self.network, self.when = network, when
        self.group_id = observed.group.group_id if observed.group else None
        self.instance = observed.instance
        self.key_name = observed.key_pair.name if observed.key_pair else None
        self.permit_open: tuple[str, ...] = ()
        self.image: Image | None = None  # resolved while planning, when `up` launches
        # Set by `rotate --relaunch`: the new generation launches as a standby (see inventory).
        self.extra_tags: dict[str, str] = {}
        self.launched = False

    def table(self) -> dict[str, Callable[[Action, dict[str, Any]], None]]:
        """Map action kinds to handlers."""
        return {
            "create_login_key": self.create_login_key,
            "create_admin_key": self.create_admin_key,
            "import_key_pair": self.import_key_pair,
            "create_group": self.create_group,
            "revoke_default_egress": self.revoke_default_egress,
            "authorize_egress": self.authorize,
            "authorize_ingress": self.authorize,
            "revoke_egress": self.revoke,
            "revoke_ingress": self.revoke,
            "prune_ingress": self.revoke,
            "launch_instance": self.launch_instance,
            "start_instance": self.start_instance,
            "wait_running": self.wait_running,
            "pin_host_key": self.pin_host_key,
            "restore_local_copies": self.restore_local_copies,
            "authorize_app_ssh": self.authorize_app_ssh,
            "verify": self.verify,
        }

    def create_login_key(self, action: Action, results: dict[str, Any]) -> None:
        """Make and store the daily login key."""
        key = keys.generate_key(f"bastion-{self.spec.name}-login")
        keys.save_key(self.ctx.files.login_key, key)
        log.info("login key %s written to %s", key.fingerprint, self.ctx.files.login_key)
        results["new login key"] = key.fingerprint

    def create_admin_key(self, action: Action, results: dict[str, Any]) -> None:
        """Make and store the key-management key."""
        key = keys.generate_key(f"bastion-{self.spec.name}-admin")
        keys.save_key(self.ctx.files.admin_key, key)
        log.info("admin key %s written to %s", key.fingerprint, self.ctx.files.admin_key)

    def import_key_pair(self, action: Action, results: dict[str, Any]) -> None:
        """Import the login public key into EC2, tagged with its fingerprint."""
        key = keys.load_key(self.ctx.files.login_key)
        self.key_name = key_pair_name(self.spec.name, key.fingerprint)
        tags = base_tags(self.spec.name, "login-key", self.ctx.operator, self.when)
        tags[TAG_KEY_FINGERPRINT] = key.fingerprint
        self.ctx.aws.key_pairs.import_key_pair(self.key_name, key.public_line, tags)

    def create_group(self, action: Action, results: dict[str, Any]) -> None:
        """Create this generation's gateway group."""
        generation = int(action.params["generation"])
        tags = base_tags(self.spec.name, "gateway-group", self.ctx.operator, self.when)
        tags[TAG_GENERATION] = str(generation)
        tags["Name"] = group_name(self.spec.name, generation)
        self.group_id = self.ctx.aws.groups.create_group(
            group_name(self.spec.name, generation),
            f"bastion gateway {self.spec.name} generation {generation}: sshd port only",
            self.network.vpc_id,
            tags,
        )
        results["new gateway group"] = self.group_id

    def revoke_default_egress(self, action: Action, results: dict[str, Any]) -> None:
        """Remove the allow-all egress rule that EC2 adds to every new group."""
        assert self.group_id
        group = self.ctx.aws.groups.group(self.group_id)
        default = [r.rule_id for r in group.egress if r.protocol == "-1"]
        if default:
            self.ctx.aws.groups.revoke(self.group_id, default, egress=True)

    def authorize(self, action: Action, results: dict[str, Any]) -> None:
        """Add one ingress or egress rule to the gateway group."""
        assert self.group_id
        egress = action.kind.endswith("egress")
        self.ctx.aws.groups.authorize(
            self.group_id, resolve(action.params["permission"], results), egress
        )

    def revoke(self, action: Action, results: dict[str, Any]) -> None:
        """Remove rules from the gateway group by id."""
        assert self.group_id
        self.ctx.aws.groups.revoke(
            self.group_id, action.params["rule_ids"], egress=action.kind.endswith("egress")
        )

    def launch_instance(self, action: Action, results: dict[str, Any]) -> None:
        """Launch the gateway; it makes its own host key at first boot (none in user data)."""
        from bastion.adapters.render import (
            APP_SSH_ONLY,
            SshdParams,
            UserDataParams,
            render_user_data,
        )

        assert self.group_id and self.key_name
        settings = self.ctx.settings
        aws = self.ctx.aws
        parameter = image_parameter(settings.image)
        image = self.image or aws.images.resolve_image(
            parameter, None if parameter else settings.image
        )
        login = keys.load_key(self.ctx.files.login_key)
        admin = keys.load_key(self.ctx.files.admin_key)
        trust = launch_trust(aws, self.spec.name, takes_certificates(settings, self.observed))
        user_data = render_user_data(
            UserDataParams(
                sshd=SshdParams(
                    port=self.spec.port,
                    login_user=settings.login_user,
                    admin_user=settings.admin_user,
                    permit_open=self.permit_open or APP_SSH_ONLY,
                ),
                image_family=image_family(settings.image),
                login_public_key=login.public_line,
                admin_public_key=admin.public_line,
                vpc_cidrs=self.network.app_cidrs,
                certificates=trust,
            )
        )
        generation = int(action.params["generation"])
        tags = base_tags(self.spec.name, "gateway", self.ctx.operator, self.when)
        tags.update(
            {
                TAG_GENERATION: str(generation),
                TAG_PORT: str(self.spec.port),
                TAG_KEY_FINGERPRINT: login.fingerprint,
                TAG_ADMIN_KEY_FINGERPRINT: admin.fingerprint,
                TAG_LOGIN_USER: settings.login_user,
                TAG_IMAGE: settings.image,
                **({TAG_CERTIFICATES: "true"} if trust else {}),
                **self.extra_tags,
            }
        )
        self.instance = aws.compute.run_instance(
            image=image,
            instance_type=self.spec.instance_type,
            key_name=self.key_name,
            subnet_id=self.network.subnet_id,
            group_id=self.group_id,
            user_data=user_data,
            public_ip=settings.reach == "public",
            tags=tags,
        )
        self.launched = True
        # The record `burn`, `down`, `rotate` and pin recovery tie the gateway to (not its tags).
        self.ctx.files.record_instances({self.instance.instance_id})
        self._withdraw_if_raced(generation)
        log.info("launched %s", self.instance.instance_id)

    def _withdraw_if_raced(self, generation: int) -> None:
        """Terminate our launch if another bastion launched the same generation meanwhile.

        Launching happens only when no live instance of this generation exists, so another
        one now means a concurrent `up` (say from another machine; on this one the lock file
        prevents it). Whoever sees a rival withdraws: never two gateways; at worst, when both
        see each other, none, and the next `bastion up` launches one.
        """
        assert self.instance
        ours = self.instance.instance_id
        rivals = [
            i.instance_id
            for i in self.ctx.aws.compute.find_instances(self.spec.name)
            if i.instance_id != ours
            and i.generation == generation
            and TAG_INCIDENT not in i.tags
            and (TAG_STANDBY in i.tags) == (TAG_STANDBY in self.extra_tags)
        ]
        if rivals:
            self.ctx.aws.compute.terminate_instance(ours)
            raise ConflictError(
                f"another bastion launched gateway {self.spec.name!r} at the same time "
                f"({', '.join(rivals)}); this run withdrew its own instance {ours}. "
                "Run `bastion status`, then `bastion up` to converge"
            )

    def start_instance(self, action: Action, results: dict[str, Any]) -> None:
        """Start the stopped gateway."""
        self.ctx.aws.compute.start_instance(action.params["instance_id"])

    def wait_running(self, action: Action, results: dict[str, Any]) -> None:
        """Wait (through the injected clock) until the instance runs, then re-read it."""
        assert self.instance
        iid = self.instance.instance_id
        aws = self.ctx.aws
        if self.instance.state != "running":
            wait_until(
                lambda: aws.compute.instance_state(iid) == "running",
                f"{iid} to be running",
                self.deps.clock,
                self.deps.reporter,
                self.ctx.settings.wait_timeout,
                hint="check the EC2 console for its state reason",
            )
            self.instance = aws.compute.instance(iid)

    def pin_host_key(self, action: Action, results: dict[str, Any]) -> None:
        """Pin the host key the instance printed on its console; tag its fingerprint."""
        assert self.instance
        booting = (
            self.launched
            or self.instance.state == "pending"
            or booted_lately(self.instance, self.deps.clock.now())
        )
        public = pin_from_console(self.ctx, self.deps, self.instance, wait=booting)
        results["pinned host key"] = fingerprint(public)
        if action.params.get("recovery"):
            report_pin_recovery(self.ctx, self.deps, self.instance.instance_id, public)
        if TAG_HOST_KEY_FINGERPRINT not in self.instance.tags:
            self.instance = self.ctx.aws.compute.instance(self.instance.instance_id)

    def restore_local_copies(self, action: Action, results: dict[str, Any]) -> None:
        """Rewrite local files found missing beside what they copy; say which."""
        restored = self.ctx.files.restore_copies()
        if restored:
            self.deps.reporter.warn(
                f"rewrote what was missing on this machine: {', '.join(restored)}"
            )

    def authorize_app_ssh(self, action: Action, results: dict[str, Any]) -> None:
        """Let the gateway group reach sg-app on tcp/22."""
        results.setdefault("new gateway group", self.group_id)
        self.ctx.aws.groups.authorize(
            action.params["app_group_id"], resolve(action.params["permission"], results), False
        )

    def verify(self, action: Action, results: dict[str, Any]) -> None:
        """Prove the pinned host key and the login key work; then record the instance as ours."""
        assert self.instance
        results["verified_host_key"] = verify_gateway(
            self.ctx, self.deps, self.instance, self.spec.port
        )
        self.ctx.files.record_instances({self.instance.instance_id})


def report_pin_recovery(ctx: Context, deps: Deps, instance_id: str, public: str) -> None:
    """Say (and journal) that a lost host-key pin was recovered: when, from what, which key."""
    when = deps.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
    source = f"the console output of {instance_id} (GetConsoleOutput)"
    journal_for(ctx.files)(
        {
            "kind": "pin_recovered",
            "at": when,
            "instance_id": instance_id,
            "source": source,
            "fingerprint": fingerprint(public),
        }
    )
    deps.reporter.warn(
        f"the host-key pin of {instance_id} was missing on this machine; recovered it at {when} "
        f"from {source} (fingerprint {fingerprint(public)})"
    )
