"""Frozen settings: defaults < config file < BASTION_* environment < command-line flags.

The layers are merged here, purely; `adapters.config` reads the file and the environment.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bastion.domain.errors import UsageError

DEFAULT_PORT = 62222
IMAGE_PARAMETERS = {
    "al2023": "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64",
    "debian13": "/aws/service/debian/release/13/latest/amd64",
    "ubuntu24.04": "/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id",  # noqa: E501
}
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}$")
INSTANCE_TYPE_PATTERN = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")
REACH_PATTERN = re.compile(r"^(public|private|(?P<host>[A-Za-z0-9.:\[\]-]+):(?P<port>\d{1,5}))$")


@dataclass(frozen=True)
class Settings:
    """Everything a command needs to know about where and how to act."""

    name: str = "default"
    region: str | None = None
    profile: str | None = None
    port: int = DEFAULT_PORT
    app_sg: str | None = None
    allow: tuple[str, ...] = ()
    allow_anywhere: bool = False
    allow_wide: bool = False
    instance_type: str = "t3.micro"
    image: str = "al2023"
    subnet: str | None = None
    reach: str = "public"
    login_user: str = "bastion"
    admin_user: str = "bastion-admin"
    wait_timeout: float = 600.0
    lock_wait: float = 30.0
    data_dir: Path = Path("~/.local/share/bastion")
    verify: bool = True
    restrict_forwarding: bool = False
    # Operators log in with short-lived certificates from the gateway's KMS CA (--certificates).
    certificates: bool = False

    def gateway_dir(self, region: str) -> Path:
        """Return the private folder holding this gateway's local keys."""
        return self.data_dir / region / self.name


_EXPECTED = {
    "int": "give a whole number",
    "flo": "give a finite number of seconds, e.g. 600",
}
_FLAGS = {"wait_timeout": "--timeout", "verify": "--no-verify"}
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _coerce(field: dataclasses.Field[Any], raw: Any, origin: str) -> Any:
    kind = str(field.type)
    try:
        if kind.startswith("int"):
            return int(raw)
        if kind.startswith("float"):
            number = float(raw)
            if not math.isfinite(number):
                raise ValueError(raw)
            return number
        if kind.startswith("bool"):
            if isinstance(raw, bool):
                return raw
            word = str(raw).strip().lower()
            if word not in _TRUE + _FALSE:
                raise UsageError(
                    f"{origin}: {raw!r} is neither true nor false; use 1/true/yes/on "
                    "or 0/false/no/off"
                )
            return word in _TRUE
        if kind.startswith("tuple"):
            items = raw if isinstance(raw, list | tuple) else str(raw).split(",")
            cleaned = tuple(str(i).strip() for i in items)
            if isinstance(raw, list | tuple) and not all(cleaned):
                # An empty --allow must not quietly mean "detect my IP".
                raise UsageError(f"{origin}: an empty value was given; pass a CIDR or leave it out")
            return tuple(i for i in cleaned if i)
        if kind.startswith("Path"):
            return Path(str(raw)).expanduser()
    except (ValueError, TypeError) as exc:
        raise UsageError(
            f"{origin}: {raw!r} is not a valid {field.name}; {_EXPECTED.get(kind[:3], 'fix it')}"
        ) from exc
    return str(raw)


def merge_settings(
    flags: Mapping[str, Any],
    env: Mapping[str, str],
    data_dir: Path,
    document: Mapping[str, Any] | None = None,
    origin: str = "config file",
) -> Settings:
    """Merge defaults < config `document` < BASTION_* `env` < `flags`, and validate the result."""
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    values: dict[str, Any] = {"data_dir": data_dir}
    # Where each value came from, so an error names the key, variable or flag to fix.
    origins: dict[str, str] = {}

    if document is not None:
        name = flags.get("name") or env.get("BASTION_NAME") or document.get("name") or "default"
        layered = {k: v for k, v in document.items() if k != "gateway"}
        layered.update(_gateway_table(document, name, origin))
        for key, raw in layered.items():
            attr = key.replace("-", "_")
            if attr not in fields:
                raise UsageError(f"{origin}: unknown setting {key!r}; remove it")
            values[attr] = _coerce(fields[attr], raw, f"{origin}: {key}")
            origins[attr] = f"{key} in {origin}"

    for attr, field in fields.items():
        raw = env.get(f"BASTION_{attr.upper()}")
        if raw is not None and raw != "":
            values[attr] = _coerce(field, raw, f"BASTION_{attr.upper()}")
            origins[attr] = f"BASTION_{attr.upper()}"

    for attr, raw in flags.items():
        if raw is None or (isinstance(raw, tuple | list) and not raw):
            continue
        flag = _FLAGS.get(attr, f"--{attr.replace('_', '-')}")
        values[attr] = _coerce(fields[attr], raw, flag)
        origins[attr] = flag

    settings = Settings(**values)
    validate(settings, origins)
    return settings


def _gateway_table(document: Mapping[str, Any], name: str, origin: str) -> Mapping[str, Any]:
    gateways = document.get("gateway", {})
    if not isinstance(gateways, Mapping):
        raise UsageError(
            f"{origin}: `gateway` must be a table of [gateway.NAME] tables; fix or remove it"
        )
    for key, entry in gateways.items():
        if not isinstance(entry, Mapping):
            raise UsageError(
                f"{origin}: [gateway] {key} = {entry!r} is not a gateway table; "
                f"write settings under [gateway.NAME] (e.g. [gateway.{key}] with port = 62222)"
            )
    return dict(gateways.get(name, {}))


def validate(settings: Settings, origins: Mapping[str, str] | None = None) -> None:
    """Raise `UsageError` for the first setting that cannot work."""
    origins = origins or {}
    if not NAME_PATTERN.match(settings.name):
        raise UsageError(
            f"gateway name {settings.name!r} is invalid; use 1-31 lowercase letters, digits "
            "or dashes, starting with a letter or digit"
        )
    if not (settings.port == 22 or 1024 <= settings.port <= 65535):
        raise UsageError(
            f"port {settings.port} is not allowed; pick 22 or a port from 1024 to 65535 "
            f"(default {DEFAULT_PORT})"
        )
    if not INSTANCE_TYPE_PATTERN.match(settings.instance_type):
        raise UsageError(
            f"instance type {settings.instance_type!r} is malformed; use a name like t3.micro"
        )
    if not (
        settings.image in IMAGE_PARAMETERS
        or re.match(r"^ami-[0-9a-f]{8,17}$", settings.image)
        or settings.image.startswith("ssm:/")
    ):
        raise UsageError(
            f"image {settings.image!r} is unknown; use one of {', '.join(IMAGE_PARAMETERS)}, "
            "an ami-... id, or ssm:/path/to/parameter"
        )
    if settings.subnet is not None and not (
        re.match(r"^subnet-[0-9a-f]{8,17}$", settings.subnet)
        or (
            not settings.subnet.startswith("subnet-")
            and re.match(r"^[\w .:/=+@-]{1,255}$", settings.subnet)
        )
    ):
        raise UsageError(
            f"--subnet {settings.subnet!r} is malformed; use an id like subnet-0abc1234 "
            "or the subnet's Name tag"
        )
    if settings.app_sg is not None and not re.match(
        r"^[\w .:/()#,@\[\]+=&;{}!$*-]{1,255}$", settings.app_sg
    ):
        raise UsageError(
            f"--app-sg {settings.app_sg!r} is not a security group id or name; "
            "use an id like sg-0abc1234 or the group's name"
        )
    match = REACH_PATTERN.match(settings.reach)
    if not match or (match.group("port") and not 1 <= int(match.group("port")) <= 65535):
        raise UsageError(
            f"--reach {settings.reach!r} is invalid; use public, private or HOST:PORT "
            "(e.g. 127.0.0.1:2222 for an SSM port forward)"
        )
    if not (math.isfinite(settings.wait_timeout) and settings.wait_timeout > 0):
        where = origins.get("wait_timeout", "--timeout")
        raise UsageError(
            f"{where} {settings.wait_timeout:g} is not a positive number of seconds; "
            "pass e.g. --timeout 600"
        )
    if not (math.isfinite(settings.lock_wait) and 0 <= settings.lock_wait <= 86400):
        where = origins.get("lock_wait", "lock_wait")
        raise UsageError(
            f"{where}: lock_wait {settings.lock_wait:g} is out of range; "
            "give 0 to 86400 seconds (default 30)"
        )


def image_parameter(image: str) -> str | None:
    """Return the SSM parameter that names the AMI for `image`, or None for an AMI id."""
    if image.startswith("ssm:"):
        return image[len("ssm:") :]
    return IMAGE_PARAMETERS.get(image)


def image_family(image: str) -> str:
    """Return the OS family whose boot quirks the user data must handle."""
    return image if image in IMAGE_PARAMETERS else "custom"
