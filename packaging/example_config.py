"""The example /etc/cockpit-agent/config.toml, written from the configuration's JSON Schema.

Every key is commented out with its default, so the installed file keeps every default and
an admin uncomments what to change. Generated from `cockpit-agent config schema`, never
written by hand, so it cannot drift from the code: tests/unit/test_example_config.py compares
packaging/config.toml with this output and loads it, commented and uncommented, through the
agent's own parser. Regenerate with `make example-config`.

    cockpit-agent config schema | python3 packaging/example_config.py > packaging/config.toml
"""

from __future__ import annotations

import json
import sys
import textwrap
from typing import Any

HEADER = """\
# cockpit-agent configuration (installed by the package; upgrades never overwrite it).
#
# Every key below is commented out and shows its default: a missing key, or a missing file,
# means that default. Uncomment what you change, or better, put your settings in a drop-in,
# /etc/cockpit-agent/config.d/<name>.toml, which package upgrades never touch; drop-ins are
# read after this file in name order. Check the result with `cockpit-agent config validate`.
# Reference: /usr/share/doc/cockpit-agent/docs/configuration.md
"""


def toml_value(value: Any) -> str:
    """A JSON value (from the schema's defaults) as an inline TOML value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no inline TOML for {value!r}")


def _comment(text: str) -> list[str]:
    return textwrap.wrap(text, width=96, initial_indent="# ", subsequent_indent="# ")


def _section(name: str, schema: dict[str, Any], defaults: dict[str, Any]) -> list[str]:
    lines = ["", f"#[{name}]", *_comment(schema.get("description", ""))]
    tables: list[str] = []
    for key, prop in schema["properties"].items():
        default = defaults[key]
        if isinstance(default, dict):  # a table of its own, after the section's plain keys
            tables += ["", f"#[{name}.{key}]", *_comment(prop.get("description", ""))]
            tables += [f"#{k} = {toml_value(v)}" for k, v in default.items()]
            continue
        lines += ["", *_comment(prop.get("description", ""))]
        if default is None:
            lines.append(f"# {key}: not set by default")
        else:
            lines.append(f"#{key} = {toml_value(default)}")
    return lines + tables


def example_config(schema: dict[str, Any]) -> str:
    """The whole commented file for the schema of the agent's Config model."""
    lines = [HEADER.rstrip("\n")]
    for name, prop in schema["properties"].items():
        section = schema["$defs"][prop["$ref"].rsplit("/", 1)[-1]]
        lines += _section(name, section, prop["default"])
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(example_config(json.load(sys.stdin)))
