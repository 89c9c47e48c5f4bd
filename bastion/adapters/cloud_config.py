"""Emit cloud-config YAML that cloud-init reads back exactly as bastion meant it."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence

_PLAIN_KEY_RE = re.compile(r"^[a-z][a-z0-9_]*$")


def to_yaml(value: object, indent: int = 0) -> str:
    """Emit block YAML whose scalars are JSON strings (always valid, never reinterpreted)."""
    pad = " " * indent
    lines: list[str] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            name = str(key) if _PLAIN_KEY_RE.match(str(key)) else json.dumps(str(key))
            lines.append(f"{pad}{name}:{_inline_or_block(item, indent)}")
    elif isinstance(value, Sequence) and not isinstance(value, str):
        for item in value:
            if isinstance(item, Mapping) and item:
                nested = to_yaml(item, indent + 2)
                lines.append(f"{pad}- {nested[indent + 2 :]}".rstrip("\n"))
            else:
                lines.append(f"{pad}-{_inline_or_block(item, indent)}")
    return "\n".join(lines) + "\n"


def _inline_or_block(value: object, indent: int) -> str:
    if isinstance(value, Mapping | list | tuple) and value:
        return "\n" + to_yaml(value, indent + 2).rstrip("\n")
    if isinstance(value, Mapping):
        return " {}"
    if isinstance(value, list | tuple):
        return " []"
    if isinstance(value, str) and _fits_literal_block(value):
        body = "".join(
            f"{' ' * (indent + 4)}{line}\n" if line else "\n" for line in value.split("\n")[:-1]
        )
        return " |\n" + body.rstrip("\n")
    return " " + json.dumps(value)


def _fits_literal_block(text: str) -> bool:
    # A literal block keeps files readable in the console; fall back to JSON when it could
    # change the text: no final newline or several, leading blanks, tabs or control characters.
    return (
        "\n" in text
        and text.endswith("\n")
        and not text.endswith("\n\n")
        and not text[0].isspace()
        and all(ch == "\n" or " " <= ch <= "~" for ch in text)
    )
