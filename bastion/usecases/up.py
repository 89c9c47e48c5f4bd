"""Use case `up`: create or converge the gateway (the flow is shared: `burn` relaunches with it)."""

from __future__ import annotations

from collections.abc import Collection

from bastion.domain.settings import Settings
from bastion.domain.tags import TAG_CERTIFICATES
from bastion.usecases.ports import Deps
from bastion.usecases.shared.cert_trust import ensure_ca
from bastion.usecases.shared.context import open_context
from bastion.usecases.shared.converge import UpResult, converge
from bastion.usecases.shared.inventory import observe


def up(
    settings: Settings,
    deps: Deps,
    dry_run: bool = False,
    asked: Collection[str] = (),
    chosen_instance: str | None = None,
) -> UpResult:
    """Create or converge a gateway; a second run with nothing changed changes nothing.

    `asked`: the settings given explicitly; a running gateway that differs in them is reported.
    `chosen_instance` is the operator's explicit choice of an instance to recover the pin from when
    nothing ties it to this machine's record (see domain.identity).
    """
    if not settings.certificates:
        return converge(
            settings, deps, dry_run=dry_run, asked=asked, chosen_instance=chosen_instance
        )
    # Certificates: the CA exists before the launch that trusts it (every later launch, by
    # anyone, reads it back from KMS). A running gateway without it moves over blue/green.
    ctx = open_context(
        settings, deps, lock_for=None if dry_run else "up", chosen_instance=chosen_instance
    )
    ensure_ca(ctx.aws, settings.name, ctx.operator, deps, dry_run)
    result = converge(settings, deps, dry_run=dry_run, ctx=ctx, asked=asked)
    instance = observe(ctx.aws, settings.name, None).instance
    if instance and instance.tags.get(TAG_CERTIFICATES) != "true" and not dry_run:
        # Remembered on the instance, so whoever relaunches it next launches it with the CA.
        ctx.aws.compute.tag(instance.instance_id, {TAG_CERTIFICATES: "wanted"})
        deps.reporter.warn(
            f"{instance.instance_id} was launched before certificates; run `bastion rotate"
            " --relaunch` to move it over (the new gateway is proven before the old one goes)"
        )
    return result


__all__ = ["UpResult", "up"]
