"""What a running gateway was launched with that differs from what was asked (pure)."""

from __future__ import annotations

from collections.abc import Collection

from bastion.domain.model import GatewaySpec, InstanceInfo
from bastion.domain.tags import TAG_IMAGE


def launch_differences(
    spec: GatewaySpec, instance: InstanceInfo, asked: Collection[str]
) -> str | None:
    """Say how the running `instance` differs from `spec` in what was `asked`, and the fix.

    Only a relaunch changes the instance type or image (a new instance, new keys), so `up`
    never does it on its own: it says what differs and how to get it.
    """
    runs: list[str] = []
    wanted: list[str] = []
    flags: list[str] = []
    if (
        "instance_type" in asked
        and instance.instance_type
        and instance.instance_type != spec.instance_type
    ):
        runs.append(f"type {instance.instance_type}")
        wanted.append(spec.instance_type)
        flags.append(f"--instance-type {spec.instance_type}")
    launched_from = {instance.image_id, instance.tags.get(TAG_IMAGE)} - {None, ""}
    if "image" in asked and launched_from and spec.image not in launched_from:
        shown = instance.tags.get(TAG_IMAGE) or instance.image_id
        runs.append(
            f"image {shown} ({instance.image_id})"
            if shown != instance.image_id
            else f"image {shown}"
        )
        wanted.append(spec.image)
        flags.append(f"--image {spec.image}")
    if not runs:
        return None
    if spec.name != "default":
        flags.insert(0, f"--name {spec.name}")
    return (
        f"gateway {spec.name!r} ({instance.instance_id}) runs {' and '.join(runs)}, not the "
        f"{' and '.join(wanted)} asked for; `bastion up` never replaces a running gateway: "
        f"run `bastion rotate --relaunch {' '.join(flags)}` (blue/green, new keys) to change it"
    )
