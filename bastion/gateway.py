"""Use cases: `up`, `status`, `down`. Each observes AWS, plans, applies, and returns data."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from bastion import keys
from bastion.allow import is_expired, rule_view, without_expired
from bastion.apply import QuietReporter, Reporter, apply_plan, json_line, wait_until
from bastion.aws import Ec2, make_session
from bastion.callerip import Fetch, detect_caller_cidr, https_fetch, is_world_open, normalize_cidr
from bastion.clock import Clock, SystemClock
from bastion.errors import (
    BastionError,
    CallerIpError,
    ConflictError,
    GatewayUnavailable,
    SshError,
    TimeoutExpired,
    UsageError,
)
from bastion.inventory import observe
from bastion.localstate import GatewayFiles, append_private
from bastion.model import (
    TAG_ADMIN_KEY_CREATED_AT,
    TAG_ADMIN_KEY_FINGERPRINT,
    TAG_CREATED_AT,
    TAG_CREATED_BY,
    TAG_GENERATION,
    TAG_HOST_KEY_CREATED_AT,
    TAG_HOST_KEY_FINGERPRINT,
    TAG_IMAGE,
    TAG_INCIDENT,
    TAG_KEY_FINGERPRINT,
    TAG_LOGIN_USER,
    TAG_MANAGED,
    TAG_NAME,
    TAG_PORT,
    TAG_ROLE,
    TAG_STANDBY,
    Action,
    GatewaySpec,
    InstanceInfo,
    ObservedGateway,
    Plan,
)
from bastion.plan import Network, group_name, key_pair_name, plan_down, plan_up
from bastion.settings import Settings, image_family, image_parameter

if TYPE_CHECKING:
    import boto3

log = logging.getLogger(__name__)


class GatewayProbe(Protocol):
    """How bastion checks a gateway over the network: real sshd in production, fakes in tests."""

    def tcp_reachable(self, host: str, port: int) -> bool: ...

    def verify_login(
        self, host: str, port: int, user: str, key_path: str, pinned_host_key: str
    ) -> str: ...

    def keyctl(
        self,
        host: str,
        port: int,
        user: str,
        key_path: str,
        pinned_host_key: str,
        command: str,
        stdin: str | None = None,
    ) -> str: ...


class OpenSshProbe:
    """Check a gateway with paramiko: pinned host key, RejectPolicy, the login key."""

    def tcp_reachable(self, host: str, port: int) -> bool:
        """Tell whether tcp `host:port` accepts a connection."""
        from bastion.ssh import Endpoint, tcp_reachable

        return tcp_reachable(Endpoint(host, port))

    def verify_login(
        self, host: str, port: int, user: str, key_path: str, pinned_host_key: str
    ) -> str:
        """Log in with the key, refusing any host key but the pinned one."""
        from pathlib import Path

        from bastion.ssh import Endpoint, verify_login

        return verify_login(Endpoint(host, port), user, Path(key_path), pinned_host_key)

    def keyctl(
        self,
        host: str,
        port: int,
        user: str,
        key_path: str,
        pinned_host_key: str,
        command: str,
        stdin: str | None = None,
    ) -> str:
        """Run one request over the key-management channel (secrets on stdin only)."""
        from pathlib import Path

        from bastion.ssh import Endpoint, run_keyctl

        return run_keyctl(
            Endpoint(host, port), user, Path(key_path), pinned_host_key, command, stdin_data=stdin
        )


@dataclass
class Deps:
    """Everything with a side effect outside the process, injectable for tests."""

    session_factory: Callable[[str | None, str | None], boto3.Session] = make_session
    clock: Clock = field(default_factory=SystemClock)
    fetch: Fetch = https_fetch
    probe: GatewayProbe = field(default_factory=OpenSshProbe)
    reporter: Reporter = field(default_factory=QuietReporter)
    on_ec2: Callable[[Ec2], None] | None = None
    before_each: Callable[[Action], None] | None = None
    execvp: Callable[[str, list[str]], Any] = os.execvp  # `bastion ssh` replaces the process

    def ec2(self, settings: Settings) -> Ec2:
        """Connect to EC2 for the configured profile and region."""
        ec2 = Ec2(self.session_factory(settings.profile, settings.region))
        if self.on_ec2:
            self.on_ec2(ec2)
        return ec2


@dataclass(frozen=True)
class Context:
    """One gateway's AWS connection, local files and operator identity."""

    settings: Settings
    ec2: Ec2
    files: GatewayFiles
    operator: str


def open_context(settings: Settings, deps: Deps, lock_for: str | None = None) -> Context:
    """Connect, identify the caller and locate the gateway's local folder.

    `lock_for` names a command that will change the gateway: it then holds the gateway's lock
    (see bastion.lock) before any AWS call, so two bastions on this machine never interleave.
    """
    ec2 = deps.ec2(settings)
    folder = settings.gateway_dir(ec2.region).expanduser()
    if lock_for is not None:
        from bastion.lock import hold_gateway_lock

        hold_gateway_lock(
            folder.with_name(f"{settings.name}.lock"),
            lock_for,
            deps.clock,
            deps.reporter,
            settings.lock_wait,
        )
    operator = ec2.caller_arn()
    files = GatewayFiles(folder, settings.name)
    return Context(settings, ec2, files, operator)


def allowed_cidrs(settings: Settings, deps: Deps) -> tuple[str, ...]:
    """Return the CIDRs to open: --allow as given, or the detected caller IP."""
    if settings.allow:
        cidrs = tuple(dict.fromkeys(normalize_cidr(c) for c in settings.allow))
    else:
        cidrs = (detect_caller_cidr(deps.fetch),)
    open_to_all = [c for c in cidrs if is_world_open(c)]
    if open_to_all and not settings.allow_anywhere:
        raise UsageError(
            f"{open_to_all[0]} would open the gateway to the whole Internet; pass your own "
            "IP instead, or add --allow-anywhere if you really mean it"
        )
    if open_to_all:
        deps.reporter.warn(
            f"WARNING: the gateway port will be reachable from {', '.join(open_to_all)} "
            "(--allow-anywhere); anyone can try to log in"
        )
    return cidrs


def endpoint_for(settings: Settings, instance: InstanceInfo, port: int) -> tuple[str, int]:
    """Return where this operator reaches the gateway's sshd (see --reach)."""
    if settings.reach == "public":
        if not instance.public_ip:
            raise SshError(
                f"{instance.instance_id} has no public IP; use --reach private over a VPN, "
                "or --reach 127.0.0.1:PORT with an SSM port forward"
            )
        return instance.public_ip, port
    if settings.reach == "private":
        if not instance.private_ip:
            raise SshError(f"{instance.instance_id} has no private IP yet; rerun shortly")
        return instance.private_ip, port
    host, _, forwarded = settings.reach.rpartition(":")
    return host.strip("[]"), int(forwarded)


_HOST_PUBLIC_RE = re.compile(r"ed25519_public:\s*\"?(ssh-ed25519 [A-Za-z0-9+/]+={0,2})")


def host_key_from_user_data(user_data: str) -> str | None:
    """Return the seeded host public key from a gateway's user data, if any."""
    match = _HOST_PUBLIC_RE.search(user_data)
    return match.group(1) if match else None


def recover_pin(ctx: Context, instance: InstanceInfo) -> None:
    """Pin the host key from the instance's user data (AWS API, not the network) when lost."""
    public = host_key_from_user_data(ctx.ec2.user_data(instance.instance_id))
    expected = instance.tags.get(TAG_HOST_KEY_FINGERPRINT)
    if public is None or (expected and keys.fingerprint(public) != expected):
        raise ConflictError(
            f"cannot re-pin the host key of {instance.instance_id}: its user data and tags "
            "disagree; treat the gateway as suspect and run `bastion burn`"
        )
    ctx.files.pin_host_key(public)
    log.info("re-pinned host key %s from the instance's user data", keys.fingerprint(public))


@dataclass
class UpResult:
    """What `up` planned and did, and the gateway afterwards."""

    plan: Plan
    applied: list[Action]
    status: dict[str, Any] | None
    ssh_config: str | None = None  # the written client config, when `up` refreshed it


def up(
    settings: Settings,
    deps: Deps,
    dry_run: bool = False,
    generation_floor: int = 1,
    ctx: Context | None = None,
) -> UpResult:
    """Create or converge a gateway; a second run with nothing changed changes nothing."""
    cidrs = allowed_cidrs(settings, deps)
    ctx = ctx or open_context(settings, deps, lock_for=None if dry_run else "up")
    ec2 = ctx.ec2
    subnet = ec2.subnet(settings.subnet)
    observed = observe(ec2, settings.name, settings.app_sg, subnet.vpc_id)
    # Expired allow rules go first, and the planner never sees them (see bastion.allow).
    observed, prune = without_expired(observed, deps.clock.now())
    instance = observed.instance
    if instance and instance.subnet_id and instance.subnet_id != subnet.subnet_id:
        subnet = ec2.subnet(instance.subnet_id)
    if observed.app_group and observed.app_group.vpc_id != subnet.vpc_id:
        raise UsageError(
            f"--app-sg {observed.app_group.group_id} is in {observed.app_group.vpc_id}, but the "
            f"gateway is in {subnet.vpc_id}; pass a --subnet in the app's VPC"
        )
    local = ctx.files.read()
    if instance and local.pinned_host_key is None and not dry_run:
        recover_pin(ctx, instance)
        local = ctx.files.read()
    spec = GatewaySpec(
        name=settings.name,
        port=settings.port,
        allowed_cidrs=cidrs,
        instance_type=settings.instance_type,
        image=settings.image,
        subnet_id=subnet.subnet_id,
        app_sg=settings.app_sg,
        login_user=settings.login_user,
        admin_user=settings.admin_user,
        operator=ctx.operator,
    )
    permit_open: tuple[str, ...] = ()
    if settings.restrict_forwarding:
        from bastion.access import permit_open_targets, stale_permit_open

        app_group_id = observed.app_group.group_id if observed.app_group else None
        permit_open = permit_open_targets(ec2, app_group_id)
        stale = stale_permit_open(ec2, instance, permit_open) if instance else None
        if stale:
            deps.reporter.warn(stale)
    now = deps.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
    network = Network(subnet.subnet_id, subnet.vpc_id, subnet.vpc_cidr)
    plan = plan_up(spec, observed, local, network, now, generation_floor)
    plan = Plan(plan.command, plan.name, prune.actions + plan.actions, plan.warnings)
    if not settings.verify:
        plan = Plan(
            plan.command,
            plan.name,
            tuple(a for a in plan.actions if a.kind != "verify"),
            plan.warnings,
        )
    for warning in plan.warnings:
        deps.reporter.warn(warning)
    if dry_run:
        return UpResult(plan, [], None)
    handlers = UpHandlers(ctx, deps, spec, observed, network, now)
    handlers.permit_open = permit_open
    outcome = apply_plan(
        plan, handlers.table(), deps.reporter, _journal(ctx.files), before_each=deps.before_each
    )
    refreshed = _refresh_ssh_config(ctx, deps)
    return UpResult(plan, outcome.done, status(settings, deps, ctx=ctx, cidr_hint=cidrs), refreshed)


def _refresh_ssh_config(ctx: Context, deps: Deps) -> str | None:
    """Keep a config written by `bastion ssh-config --write` current (address, keys)."""
    from bastion.access import refresh_ssh_config

    try:
        refreshed = refresh_ssh_config(ctx, deps.reporter)
    except BastionError as exc:
        deps.reporter.warn(
            f"could not update the ssh config: {exc.message}; rerun `bastion ssh-config --write`"
        )
        return None
    return str(refreshed.path) if refreshed else None


def _journal(files: GatewayFiles) -> Callable[[dict[str, Any]], None]:
    def write(entry: dict[str, Any]) -> None:
        if files.root.exists():
            append_private(files.journal, json_line(entry))

    return write


def base_tags(name: str, role: str, operator: str, when: str) -> dict[str, str]:
    """Return the tags every bastion resource carries."""
    return {
        "Name": f"bastion-{name}",
        TAG_MANAGED: "true",
        TAG_NAME: name,
        TAG_ROLE: role,
        TAG_CREATED_BY: operator[-255:],
        TAG_CREATED_AT: when,
    }


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
        # Set by `rotate --relaunch`: the new generation launches as a standby (see inventory).
        self.extra_tags: dict[str, str] = {}

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
        self.ctx.ec2.import_key_pair(self.key_name, key.public_line, tags)

    def create_group(self, action: Action, results: dict[str, Any]) -> None:
        """Create this generation's gateway group."""
        generation = int(action.params["generation"])
        tags = base_tags(self.spec.name, "gateway-group", self.ctx.operator, self.when)
        tags[TAG_GENERATION] = str(generation)
        tags["Name"] = group_name(self.spec.name, generation)
        self.group_id = self.ctx.ec2.create_group(
            group_name(self.spec.name, generation),
            f"bastion gateway {self.spec.name} generation {generation}: sshd port only",
            self.network.vpc_id,
            tags,
        )
        results["new gateway group"] = self.group_id

    def revoke_default_egress(self, action: Action, results: dict[str, Any]) -> None:
        """Remove the allow-all egress rule that EC2 adds to every new group."""
        assert self.group_id
        group = self.ctx.ec2.group(self.group_id)
        default = [r.rule_id for r in group.egress if r.protocol == "-1"]
        if default:
            self.ctx.ec2.revoke(self.group_id, default, egress=True)

    def authorize(self, action: Action, results: dict[str, Any]) -> None:
        """Add one ingress or egress rule to the gateway group."""
        from bastion.apply import resolve

        assert self.group_id
        egress = action.kind.endswith("egress")
        self.ctx.ec2.authorize(self.group_id, resolve(action.params["permission"], results), egress)

    def revoke(self, action: Action, results: dict[str, Any]) -> None:
        """Remove rules from the gateway group by id."""
        assert self.group_id
        self.ctx.ec2.revoke(
            self.group_id, action.params["rule_ids"], egress=action.kind.endswith("egress")
        )

    def launch_instance(self, action: Action, results: dict[str, Any]) -> None:
        """Launch the gateway with a fresh host key seeded through cloud-init, then pin it."""
        from bastion.render import SshdParams, UserDataParams, render_user_data

        assert self.group_id and self.key_name
        settings = self.ctx.settings
        ec2 = self.ctx.ec2
        parameter = image_parameter(settings.image)
        image = ec2.resolve_image(parameter, None if parameter else settings.image)
        host = keys.generate_key(f"bastion-{self.spec.name}-host")
        login = keys.load_key(self.ctx.files.login_key)
        admin = keys.load_key(self.ctx.files.admin_key)
        user_data = render_user_data(
            UserDataParams(
                sshd=SshdParams(
                    port=self.spec.port,
                    login_user=settings.login_user,
                    admin_user=settings.admin_user,
                    permit_open=self.permit_open,
                ),
                image_family=image_family(settings.image),
                host_private_key=host.private_openssh,
                host_public_key=host.public_line,
                login_public_key=login.public_line,
                admin_public_key=admin.public_line,
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
                TAG_HOST_KEY_FINGERPRINT: host.fingerprint,
                TAG_LOGIN_USER: settings.login_user,
                TAG_IMAGE: settings.image,
                **self.extra_tags,
            }
        )
        self.instance = ec2.run_instance(
            image=image,
            instance_type=self.spec.instance_type,
            key_name=self.key_name,
            subnet_id=self.network.subnet_id,
            group_id=self.group_id,
            user_data=user_data,
            public_ip=settings.reach == "public",
            tags=tags,
        )
        self._withdraw_if_raced(generation)
        self.ctx.files.pin_host_key(host.public_line)
        log.info("launched %s; pinned host key %s", self.instance.instance_id, host.fingerprint)

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
            for i in self.ctx.ec2.find_instances(self.spec.name)
            if i.instance_id != ours
            and i.generation == generation
            and TAG_INCIDENT not in i.tags
            and (TAG_STANDBY in i.tags) == (TAG_STANDBY in self.extra_tags)
        ]
        if rivals:
            self.ctx.ec2.terminate_instance(ours)
            raise ConflictError(
                f"another bastion launched gateway {self.spec.name!r} at the same time "
                f"({', '.join(rivals)}); this run withdrew its own instance {ours}. "
                "Run `bastion status`, then `bastion up` to converge"
            )

    def start_instance(self, action: Action, results: dict[str, Any]) -> None:
        """Start the stopped gateway."""
        self.ctx.ec2.start_instance(action.params["instance_id"])

    def wait_running(self, action: Action, results: dict[str, Any]) -> None:
        """Wait (through the injected clock) until the instance runs, then re-read it."""
        assert self.instance
        iid = self.instance.instance_id
        ec2 = self.ctx.ec2
        if self.instance.state != "running":
            wait_until(
                lambda: ec2.instance_state(iid) == "running",
                f"{iid} to be running",
                self.deps.clock,
                self.deps.reporter,
                self.ctx.settings.wait_timeout,
                hint="check the EC2 console for its state reason",
            )
            self.instance = ec2.instance(iid)

    def authorize_app_ssh(self, action: Action, results: dict[str, Any]) -> None:
        """Let the gateway group reach sg-app on tcp/22."""
        from bastion.apply import resolve

        results.setdefault("new gateway group", self.group_id)
        self.ctx.ec2.authorize(
            action.params["app_group_id"], resolve(action.params["permission"], results), False
        )

    def verify(self, action: Action, results: dict[str, Any]) -> None:
        """Prove the gateway answers with the pinned host key and accepts the login key."""
        assert self.instance
        pinned = self.ctx.files.read().pinned_host_key
        if pinned is None:
            raise ConflictError("no pinned host key for this gateway; rerun `bastion up`")
        host, port = endpoint_for(self.ctx.settings, self.instance, self.spec.port)
        probe = self.deps.probe
        wait_until(
            lambda: probe.tcp_reachable(host, port),
            f"sshd on {host}:{port}",
            self.deps.clock,
            self.deps.reporter,
            self.ctx.settings.wait_timeout,
            hint="the instance may still be booting (rerun `bastion up`), or your IP is not "
            "allowed (see `bastion status`)",
        )
        failures: list[GatewayUnavailable | TimeoutExpired] = []

        def logged_in() -> bool:
            # A booting gateway may close its port for a moment (an image that restarts sshd):
            # retry what a retry can mend; a wrong host key or a refused key fails at once.
            try:
                results["verified_host_key"] = probe.verify_login(
                    host, port, self.ctx.settings.login_user, str(self.ctx.files.login_key), pinned
                )
                return True
            except (GatewayUnavailable, TimeoutExpired) as exc:
                log.info("login to %s:%s not yet possible: %s", host, port, exc)
                failures.append(exc)
                return False

        try:
            wait_until(
                logged_in,
                f"a login on {host}:{port}",
                self.deps.clock,
                self.deps.reporter,
                self.ctx.settings.wait_timeout,
                interval=2.0,
            )
        except TimeoutExpired as exc:
            last = failures[-1].message if failures else "no answer"
            raise TimeoutExpired(f"{exc.message}; last attempt: {last}") from exc


def status(
    settings: Settings,
    deps: Deps,
    ctx: Context | None = None,
    cidr_hint: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """Describe the gateway and its drift from what bastion expects."""
    ctx = ctx or open_context(settings, deps)
    observed = observe(ctx.ec2, settings.name, settings.app_sg)
    local = ctx.files.read()
    now = deps.clock.now()
    drift: list[str] = []
    caller: str | None
    try:
        if cidr_hint:
            caller = cidr_hint[0]
        elif settings.allow:
            caller = normalize_cidr(settings.allow[0])
        else:
            caller = detect_caller_cidr(deps.fetch)
    except CallerIpError:
        caller = None
    instance = observed.instance
    group = observed.group
    allowed = [
        {**rule_view(r, now, ctx.operator), "description": r.description}
        for r in (group.ingress if group else ())
    ]
    expired = [a["cidr"] for a in allowed if a["expired"]]
    if expired:
        drift.append(
            f"expired rule(s) still present ({', '.join(map(str, expired))}); they no longer "
            "count as access: run `bastion allow --prune`"
        )
    if not observed.exists:
        drift.append("gateway does not exist; run `bastion up`")
    elif instance is None:
        drift.append("no live instance; run `bastion up` to relaunch")
    elif instance.state != "running":
        drift.append(f"instance is {instance.state}; run `bastion up` to start it")
    port = instance.port if instance else settings.port
    caller_allowed: bool | None = None
    if caller is not None and group is not None:
        import ipaddress

        address = ipaddress.ip_network(caller).network_address
        caller_allowed = any(
            r.cidr
            and r.from_port <= (port or 0) <= r.to_port
            and address in ipaddress.ip_network(r.cidr)
            and not is_expired(r, now)
            for r in group.ingress
        )
        if not caller_allowed:
            drift.append(f"your IP {caller} is not allowed on {group.group_id}; run `bastion up`")
    key = observed.key_pair
    if key and local.login_fingerprint and key.fingerprint != local.login_fingerprint:
        drift.append("EC2 key pair and local login key differ; run `bastion rotate`")
    if ctx.files.next_login_key.exists():
        drift.append("a login-key rotation is half done; run `bastion rotate` to finish it")
    if ctx.files.next_host_key_pub.exists():
        drift.append(
            "a host-key rotation is half done; run `bastion rotate --host-key` to finish it"
        )
    if observed.standby or observed.retiring or ctx.files.relaunch_dir.exists():
        drift.append("a relaunch is half done; run `bastion rotate --relaunch` to finish it")
    if observed.exists and local.login_fingerprint is None:
        drift.append("the login key is not on this machine")
    app = observed.app_group
    app_sources: list[dict[str, Any]] = []
    if app is not None:
        for r in app.ingress:
            if r.admits_port(22):
                current = group is not None and r.source_group == group.group_id
                app_sources.append(
                    {
                        "source": r.cidr or r.source_group,
                        "is_gateway": current,
                        "description": r.description,
                    }
                )
        if group and not any(s["is_gateway"] for s in app_sources):
            drift.append(f"{app.group_id} does not admit SSH from the gateway; run `bastion up`")
    for stale in observed.stale_groups:
        drift.append(f"leftover group {stale.group_id} ({stale.name}) from another generation")

    from bastion.burn import past_incidents

    incidents = past_incidents(ctx.files.incidents)
    for incident in incidents:
        if incident["state"] != "closed":
            drift.append(f"incident {incident['id']} is not finished; run `bastion burn`")

    def age(when: datetime | None) -> float | None:
        return round((now - when).total_seconds() / 86400, 1) if when else None

    return {
        "name": settings.name,
        "region": ctx.ec2.region,
        "exists": observed.exists,
        "instance": None
        if instance is None
        else {
            "id": instance.instance_id,
            "state": instance.state,
            "public_ip": instance.public_ip,
            "private_ip": instance.private_ip,
            "generation": instance.generation,
            "image_id": instance.image_id,
            "age_days": age(instance.launch_time),
        },
        "port": port,
        "security_group": group.group_id if group else None,
        "allowed": allowed,
        "caller": caller,
        "caller_allowed": caller_allowed,
        "key_pair": key.name if key else None,
        "login_key_fingerprint": local.login_fingerprint,
        "host_key_fingerprint": keys.fingerprint(local.pinned_host_key)
        if local.pinned_host_key
        else (instance.tags.get(TAG_HOST_KEY_FINGERPRINT) if instance else None),
        "key_created_at": instance.tags.get(TAG_CREATED_AT) if instance else None,
        "login_key_age_days": age(key.created_at) if key else None,
        "host_key_age_days": age(_tag_time(instance, TAG_HOST_KEY_CREATED_AT))
        if instance
        else None,
        "admin_key_age_days": age(_tag_time(instance, TAG_ADMIN_KEY_CREATED_AT))
        if instance
        else None,
        "app_group": app.group_id if app else None,
        "app_ssh_sources": app_sources,
        "local_folder": str(ctx.files.root),
        "incidents": incidents,
        "drift": drift,
    }


@dataclass
class DownResult:
    """What `down` planned and did."""

    plan: Plan
    applied: list[Action]


def down(settings: Settings, deps: Deps, dry_run: bool = False) -> DownResult:
    """Remove everything bastion made for the gateway: sg-app's reference first."""
    ctx = open_context(settings, deps, lock_for=None if dry_run else "down")
    ec2 = ctx.ec2
    observed = observe(ec2, settings.name, None)
    app_sg = settings.app_sg or _referencing_app_group(ec2, observed)
    if app_sg:
        observed = observe(ec2, settings.name, app_sg)
    local = ctx.files.read() if ctx.files.root.exists() else _no_local()
    plan = plan_down(observed, local)
    if dry_run or not plan.actions:
        return DownResult(plan, [])

    def revoke_app(action: Action, results: dict[str, Any]) -> None:
        ec2.revoke(action.params["app_group_id"], action.params["rule_ids"], egress=False)

    def terminate(action: Action, results: dict[str, Any]) -> None:
        ec2.terminate_instance(action.params["instance_id"])

    def wait_terminated(action: Action, results: dict[str, Any]) -> None:
        iid = action.params["instance_id"]
        wait_until(
            lambda: ec2.instance_state(iid) == "terminated",
            f"{iid} to terminate",
            deps.clock,
            deps.reporter,
            settings.wait_timeout,
        )

    def delete_group(action: Action, results: dict[str, Any]) -> None:
        ec2.delete_group(action.params["group_id"])

    def delete_key(action: Action, results: dict[str, Any]) -> None:
        ec2.delete_key_pair(action.params["key_name"])

    def delete_local(action: Action, results: dict[str, Any]) -> None:
        from bastion.access import forget_ssh_config

        forgotten = forget_ssh_config(ctx)
        if forgotten is not None:
            deps.reporter.step(f"removed the ssh config {forgotten}")
        ctx.files.remove()

    handlers: Mapping[str, Callable[[Action, dict[str, Any]], None]] = {
        "revoke_app_ssh": revoke_app,
        "terminate_instance": terminate,
        "wait_terminated": wait_terminated,
        "delete_group": delete_group,
        "delete_key_pair": delete_key,
        "delete_local": delete_local,
    }
    outcome = apply_plan(
        plan, dict(handlers), deps.reporter, _journal(ctx.files), before_each=deps.before_each
    )
    return DownResult(plan, outcome.done)


def _tag_time(instance: InstanceInfo, tag: str) -> datetime | None:
    """Return when a key was made: its tag (set by rotations), else the instance's launch."""
    from datetime import UTC

    stamp = instance.tags.get(tag)
    if stamp:
        try:
            return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        except ValueError:
            pass
    return instance.launch_time


def _no_local() -> Any:
    from bastion.model import LocalKeys

    return LocalKeys(None, None, None)


def _referencing_app_group(ec2: Ec2, observed: ObservedGateway) -> str | None:
    """Find the group that admits SSH from this gateway, so `down` removes that reference."""
    groups = ([observed.group] if observed.group else []) + list(observed.stale_groups)
    if not groups:
        return None
    return ec2.group_referencing([g.group_id for g in groups])


__all__ = ["BastionError", "Deps", "down", "status", "up"]
