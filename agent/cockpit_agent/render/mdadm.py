"""mdadm.conf ARRAY lines and the udev rule that tunes the stripe cache: spec -> text."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cockpit_agent.render.owned_lines import foreign, owned, replace_owned

MARKER = "# cockpit-agent storage: the next line is managed by cockpit-agent, do not edit it"


@dataclass(frozen=True)
class ArraySpec:
    """What identifies an array to mdadm: its /dev/md/ name, name on disk and UUID."""

    name: str  # /dev/md/<name>
    uuid: str  # mdadm form, xxxxxxxx:xxxxxxxx:xxxxxxxx:xxxxxxxx
    stored_name: str  # the superblock's name, "any:<name>" for --homehost=any
    metadata: str = "1.2"


def array_line(spec: ArraySpec) -> str:
    """The ARRAY line, in the field order of `mdadm --detail --brief`."""
    return (
        f"ARRAY /dev/md/{spec.name} metadata={spec.metadata} "
        f"name={spec.stored_name} UUID={spec.uuid}"
    )


def owned_lines(text: str) -> list[str]:
    """The ARRAY lines this agent wrote into an mdadm.conf."""
    return owned(text, MARKER)


def render_conf(text: str, specs: Sequence[ArraySpec]) -> str:
    """mdadm.conf `text` with the agent's ARRAY lines set to `specs`, the rest untouched."""
    return replace_owned(text, MARKER, [array_line(s) for s in specs])


def listed_by_admin(text: str, uuid: str) -> bool:
    """Whether a line the agent does not own already names the array with `uuid`."""
    wanted = f"uuid={uuid}".lower()
    return any(
        line.split()[:1] == ["ARRAY"] and wanted in line.lower().split()
        for line in foreign(text, MARKER)
    )


def line_uuid(line: str) -> str | None:
    """The UUID= of an ARRAY line, if it has one."""
    for word in line.split():
        key, _, value = word.partition("=")
        if key.upper() == "UUID":
            return value.lower()
    return None


RULE_HEADER = """\
# Written by cockpit-agent (storage step); the agent owns this file and rewrites it.
# md's RAID5/6 stripe cache, sized for NVMe members: see docs/benchmarks.md.
# MD_UUID comes from 63-md-raid-arrays.rules, which runs before this file.
"""


def stripe_cache_rule(uuid: str, entries: int) -> str:
    """A udev rule setting the stripe cache of the array `uuid` whenever it is started."""
    return RULE_HEADER + (
        'ACTION=="add|change", SUBSYSTEM=="block", KERNEL=="md*", '
        f'ENV{{MD_UUID}}=="{uuid}", ATTR{{md/level}}=="raid[456]", '
        f'ATTR{{md/stripe_cache_size}}="{entries}"\n'
    )
