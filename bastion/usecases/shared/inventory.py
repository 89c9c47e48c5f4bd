"""Read one gateway's state from AWS tags into an ObservedGateway."""

from __future__ import annotations

import dataclasses

from bastion.domain.errors import ConflictError
from bastion.domain.identity import named_by_bastion
from bastion.domain.model import InstanceInfo, ObservedGateway, SecurityGroup
from bastion.domain.tags import TAG_GENERATION, TAG_INCIDENT, TAG_RETIRING, TAG_STANDBY
from bastion.usecases.ports import Cloud
from bastion.usecases.shared.concurrently import Together


def observe(
    aws: Cloud,
    name: str,
    app_sg: str | None,
    vpc_id: str | None = None,
    only: frozenset[str] | None = None,
    instances: list[InstanceInfo] | None = None,
) -> ObservedGateway:
    """Describe everything AWS holds for gateway `name` (a handful of calls at once, no scan).

    Instances are found by their tags, which anyone with CreateTags can write: a command that
    acts on them passes `only`, the ids `shared.identity` tied to this machine's record
    (and `instances`, when it has described them already).
    """
    with Together() as together:
        reading_pairs = together.start(lambda: aws.key_pairs.find_key_pairs(name))
        reading_groups = together.start(lambda: aws.groups.find_gateway_groups(name))
        reading_instances = together.start(
            lambda: aws.compute.find_instances(name) if instances is None else instances
        )
        reading_app = together.start(lambda: aws.groups.group(app_sg, vpc_id) if app_sg else None)
    # By name too: tags are anyone's to write, names are fixed when bastion makes the resource.
    key_pairs = [k for k in reading_pairs.result() if named_by_bastion(name, k.name)]
    groups = [g for g in reading_groups.result() if named_by_bastion(name, g.name)]
    all_instances, app_group = reading_instances.result(), reading_app.result()
    # An instance kept for forensics after `burn --keep-instance` is evidence, not the gateway.
    found = [
        i
        for i in all_instances
        if TAG_INCIDENT not in i.tags and (only is None or i.instance_id in only)
    ]
    # Mid-relaunch (blue/green) the new generation is a standby and, once promoted, the old one
    # is retiring; the gateway is the one instance that is neither (or the retiring one while
    # the standby is not promoted yet).
    standby = [i for i in found if TAG_STANDBY in i.tags]
    retiring = [i for i in found if TAG_STANDBY not in i.tags and TAG_RETIRING in i.tags]
    instances = [i for i in found if TAG_STANDBY not in i.tags and TAG_RETIRING not in i.tags]
    if not instances and retiring:
        instances, retiring = retiring[:1], retiring[1:]
    if len(instances) > 1 or len(standby) > 1:
        instances = instances + standby[1:]
        ids = ", ".join(i.instance_id for i in instances)
        raise ConflictError(
            f"gateway {name!r} has {len(instances)} live instances ({ids}); "
            "terminate the extra ones or run `bastion down` and `bastion up`"
        )
    instance = instances[0] if instances else None
    generation = (
        instance.generation if instance else max((_generation(g) for g in groups), default=None)
    )
    current = [g for g in groups if _generation(g) == generation]
    stale = tuple(g for g in groups if g not in current)
    key_pair = key_pairs[0] if key_pairs else None
    if instance and instance.key_name:
        key_pair = next((k for k in key_pairs if k.name == instance.key_name), key_pair)
    return ObservedGateway(
        name=name,
        key_pair=key_pair,
        group=current[0] if current else None,
        instance=instance,
        app_group=app_group,
        stale_groups=stale + tuple(current[1:]),
        other_key_pairs=tuple(k for k in key_pairs if k != key_pair),
        standby=standby[0] if standby else None,
        retiring=tuple(retiring),
    )


def observe_with_app_group(
    aws: Cloud, name: str, app_sg: str | None, only: frozenset[str] | None = None
) -> ObservedGateway:
    """Observe gateway `name` with its app group, looked up in the gateway's own VPC.

    Without `app_sg` the app group is the one the gateway's rules point at: its SSH egress
    to a group, else a group admitting SSH from it (`status` after `up --app-sg app`).
    """
    return with_app_group(aws, observe(aws, name, None, only=only), app_sg)


def with_app_group(aws: Cloud, observed: ObservedGateway, app_sg: str | None) -> ObservedGateway:
    """Return `observed` with its app group (`observe_with_app_group` without the re-read)."""
    if observed.app_group is not None:
        return observed
    group = observed.group
    if app_sg is None and group is not None:
        targets = [r.source_group for r in group.egress if r.source_group and r.from_port == 22]
        app_sg = targets[0] if targets else aws.groups.group_referencing([group.group_id])
    if app_sg is None:
        return observed
    app_group = aws.groups.group(app_sg, group.vpc_id if group else None)
    return dataclasses.replace(observed, app_group=app_group)


def _generation(group: SecurityGroup) -> int:
    return int(group.tags.get(TAG_GENERATION, "1"))
