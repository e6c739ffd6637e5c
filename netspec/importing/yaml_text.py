"""A spec as YAML text that reads as a hand-written one: block style for the document and the
module definitions, each layer one flow mapping on its own line."""

from __future__ import annotations

import json
import re
from typing import Any

_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_WORDS = {"true", "false", "null", "yes", "no", "on", "off", "y", "n", "~"}


def scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = repr(value)
        return text if any(c in text for c in ".en") else f"{text}.0"
    text = str(value)
    if _PLAIN.match(text) and text.lower() not in _WORDS:
        return text
    return json.dumps(text, ensure_ascii=False)


def flow(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{scalar(k)}: {flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(flow(v) for v in value) + "]"
    return scalar(value)


def spec_text(spec: dict[str, Any], header: list[str]) -> str:
    """The document: ``header`` as comment lines, then the spec's keys in order."""
    lines = [f"# {line}" if line else "#" for line in header]
    for key, value in spec.items():
        if key == "modules":
            lines.append("modules:")
            for name, body in value.items():
                lines.append(f"  {name}:")
                for part, content in body.items():
                    if part == "layers":
                        lines.append("    layers:")
                        lines += [f"      - {flow(item)}" for item in content]
                    else:
                        lines.append(f"    {part}: {flow(content)}")
        elif key == "layers":
            lines.append("layers:")
            lines += [f"  - {flow(item)}" for item in value]
        else:
            lines.append(f"{key}: {flow(value)}")
    return "\n".join(lines) + "\n"
