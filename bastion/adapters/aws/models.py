"""EC2's service model cut to the operations bastion calls, cached per botocore version.

botocore parses EC2's whole model (about 830 operations, several MB of JSON) for every new
client: two thirds of a client's making, paid by `burn` before its first containment call.
bastion calls a few dozen operations; a model holding only those makes the client about three
times faster. The cut model is made from botocore's own (it cannot disagree with the installed
botocore), keyed by botocore's version and the operation list, written once to the user's
cache, and skipped whenever anything about it is in doubt.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

OPERATIONS = frozenset(
    {
        "AssociateAddress",
        "AuthorizeSecurityGroupEgress",
        "AuthorizeSecurityGroupIngress",
        "CreateNetworkAclEntry",
        "CreateSecurityGroup",
        "CreateSnapshot",
        "CreateTags",
        "DeleteKeyPair",
        "DeleteNetworkAclEntry",
        "DeleteSecurityGroup",
        "DeleteTags",
        "DescribeAddresses",
        "DescribeImages",
        "DescribeInstanceAttribute",
        "DescribeInstances",
        "DescribeKeyPairs",
        "DescribeManagedPrefixLists",
        "DescribeNetworkAcls",
        "DescribeNetworkInterfaces",
        "DescribeRouteTables",
        "DescribeSecurityGroupRules",
        "DescribeSecurityGroups",
        "DescribeSnapshots",
        "DescribeSubnets",
        "DescribeVolumes",
        "DescribeVpcs",
        "DisassociateAddress",
        "GetConsoleOutput",
        "GetConsoleScreenshot",
        "GetManagedPrefixListEntries",
        "GetSerialConsoleAccessStatus",
        "ImportKeyPair",
        "ModifyInstanceAttribute",
        "ModifyInstanceMetadataOptions",
        "ModifyManagedPrefixList",
        "ModifyNetworkInterfaceAttribute",
        "ModifySecurityGroupRules",
        "ReplaceNetworkAclEntry",
        "RevokeSecurityGroupEgress",
        "RevokeSecurityGroupIngress",
        "RunInstances",
        "StartInstances",
        "StopInstances",
        "TerminateInstances",
    }
)
"""Every EC2 operation bastion calls (tests/unit/test_models.py checks the code against it)."""


def cache_root(env: dict[str, str] | os._Environ[str] = os.environ) -> Path:
    """Where the cut models live: $XDG_CACHE_HOME/bastion/botocore (~/.cache by default)."""
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "bastion" / "botocore"


def _key() -> str:
    import botocore

    digest = hashlib.sha256("\n".join(sorted(OPERATIONS)).encode()).hexdigest()[:12]
    return f"{botocore.__version__}-{digest}"


@contextlib.contextmanager
def cut_model(botocore_session: Any, root: Path) -> Iterator[None]:
    """Make EC2 clients created inside load the cut model; after a full load, cache the cut.

    Use around `session.client("ec2")`: with a cached cut the loader finds it first; without,
    the client loads the full model as always and its cut is written for the next process.
    """
    loader = botocore_session.get_component("data_loader")
    directory = root / _key()
    cached = directory.is_dir()
    if cached:
        loader.search_paths.insert(0, str(directory))
    try:
        yield
    finally:
        if cached:
            with contextlib.suppress(ValueError):
                loader.search_paths.remove(str(directory))
    if not cached:
        with contextlib.suppress(OSError):
            _write(loader.load_service_model("ec2", "service-2"), directory)


def cut(model: dict[str, Any]) -> dict[str, Any]:
    """Return `model` with only OPERATIONS and the shapes they reach."""
    shapes = model["shapes"]
    operations = {name: op for name, op in model["operations"].items() if name in OPERATIONS}
    reached: set[str] = set()
    pending = [
        ref["shape"]
        for op in operations.values()
        for ref in [op.get("input"), op.get("output"), *op.get("errors", [])]
        if ref
    ]
    while pending:
        name = pending.pop()
        if name in reached:
            continue
        reached.add(name)
        shape = shapes[name]
        refs = [shape.get("member"), shape.get("key"), shape.get("value")]
        pending += [ref["shape"] for ref in [*refs, *shape.get("members", {}).values()] if ref]
    return dict(model, operations=operations, shapes={n: shapes[n] for n in sorted(reached)})


def _write(model: dict[str, Any], directory: Path) -> None:
    """Write the cut of `model` under `directory`, whole or not at all (rename last)."""
    version = model["metadata"]["apiVersion"]
    directory.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=directory.parent))
    target = staging / "ec2" / version
    target.mkdir(parents=True)
    (target / "service-2.json").write_text(json.dumps(cut(model), separators=(",", ":")))
    try:
        staging.rename(directory)
    except OSError:  # another process cached it first: theirs is the same
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
    log.debug("cached EC2's cut service model in %s", directory)
