"""EC2's cut service model: complete for bastion's calls, identical where kept, never a trap."""

from __future__ import annotations

import ast
from pathlib import Path

import boto3
import botocore.session
import pytest
from botocore.model import ServiceModel, Shape

from bastion.adapters.aws import models
from bastion.adapters.aws.client import Ec2

ROOT = Path(__file__).resolve().parents[2] / "bastion"


def _full_model() -> dict:
    loader = botocore.session.get_session().get_component("data_loader")
    return loader.load_service_model("ec2", "service-2")


def _called_operations() -> set[str]:
    """Method names bastion calls on an EC2 client (`ec2.x(...)`, `get_paginator("x")`)."""
    names: set[str] = set()
    for path in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            owner = node.func.value
            name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
            if name not in {"ec2", "_ec2"}:
                continue
            if node.func.attr in {"get_paginator", "get_waiter"}:
                names.add(ast.literal_eval(node.args[0]))
            elif node.func.attr != "meta":
                names.add(node.func.attr)
    return names


def test_every_ec2_operation_bastion_calls_is_in_the_cut() -> None:
    mapping = boto3.client("ec2").meta.method_to_api_mapping
    called = _called_operations()
    assert {"describe_instances", "revoke_security_group_ingress"} <= called  # the scan works
    missing = sorted(mapping[name] for name in called if mapping[name] not in models.OPERATIONS)
    assert not missing, f"add to bastion/adapters/aws/models.py OPERATIONS: {missing}"


def test_every_listed_operation_exists_in_botocore() -> None:
    unknown = models.OPERATIONS - set(_full_model()["operations"])
    assert not unknown


def _resolve_all(shape: Shape, seen: set[str]) -> None:
    if shape.name in seen:
        return
    seen.add(shape.name)
    for child in getattr(shape, "members", {}).values():
        _resolve_all(child, seen)
    for attr in ("member", "key", "value"):
        if hasattr(shape, attr):
            _resolve_all(getattr(shape, attr), seen)


def test_the_cut_keeps_each_operation_and_every_shape_it_reaches_unchanged() -> None:
    full = _full_model()
    cut = models.cut(full)
    assert set(cut["operations"]) == models.OPERATIONS
    assert len(cut["shapes"]) < len(full["shapes"]) / 4
    service = ServiceModel(cut, "ec2")
    for name in models.OPERATIONS:
        assert cut["operations"][name] == full["operations"][name]
        operation = service.operation_model(name)
        seen: set[str] = set()
        for shape in (operation.input_shape, operation.output_shape, *operation.error_shapes):
            if shape is not None:
                _resolve_all(shape, seen)  # a missing shape raises here
        assert all(cut["shapes"][s] == full["shapes"][s] for s in seen)


def test_the_first_client_caches_the_cut_and_the_next_uses_it(tmp_path: Path) -> None:
    root = models.cache_root({"XDG_CACHE_HOME": str(tmp_path)})
    first = boto3.Session(region_name="us-east-1")
    with models.cut_model(first._session, root):
        full = first.client("ec2")
    assert hasattr(full, "describe_hosts")
    assert len(list(root.glob("*/ec2/*/service-2.json"))) == 1
    second = boto3.Session(region_name="us-east-1")
    with models.cut_model(second._session, root):
        cut = second.client("ec2")
    assert hasattr(cut, "describe_instances") and not hasattr(cut, "describe_hosts")


def test_a_damaged_cache_falls_back_to_the_full_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    Ec2(boto3.Session(region_name="us-east-1"))
    (cached,) = models.cache_root().glob("*/ec2/*/service-2.json")
    cached.write_text("{not json")
    ec2 = Ec2(boto3.Session(region_name="us-east-1"))
    assert hasattr(ec2.ec2, "describe_hosts")
