"""Block devices: blkid's and wipefs' low-level probes (one parser of blkid's export format)
and a device node's number."""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass, field

from cockpit_agent.errors import AgentError
from cockpit_agent.host.run import Runner

BLKID_FOUND = 0
BLKID_NOTHING = 2  # blkid -p: no signature found
BLKID_AMBIVALENT = 8  # blkid -p: more than one signature, none chosen


@dataclass(frozen=True)
class Probe:
    """What `blkid -p -o export` said of a device: its exit code and its KEY=value fields."""

    rc: int
    fields: dict[str, str] = field(default_factory=dict)

    @property
    def blank(self) -> bool:
        """blkid found no signature."""
        return self.rc == BLKID_NOTHING

    @property
    def ambivalent(self) -> bool:
        """blkid found more than one signature and chose none."""
        return self.rc == BLKID_AMBIVALENT

    def describe(self) -> str:
        """TYPE and UUID, for a message."""
        found = [f"{k}={self.fields[k]}" for k in ("TYPE", "UUID") if k in self.fields]
        return ", ".join(found) or "signature"


def parse_export(text: str) -> dict[str, str]:
    """KEY=value lines of `blkid -o export`, undoing its backslash escapes."""
    pairs = (line.partition("=") for line in text.splitlines() if "=" in line)
    return {key.strip(): re.sub(r"\\(.)", r"\1", value) for key, _, value in pairs}


def blkid(runner: Runner, device: str, *, ambivalent_ok: bool = False) -> Probe:
    """Probe `device` read-only (`blkid -p`, the superblocks themselves, not udev's cache).

    An ambivalent device (exit 8) is a CommandFailed unless `ambivalent_ok`.
    """
    ok = (BLKID_FOUND, BLKID_NOTHING, *([BLKID_AMBIVALENT] if ambivalent_ok else []))
    result = runner.run(["blkid", "-p", "-o", "export", device], ok=ok)
    return Probe(result.rc, parse_export(result.stdout))


def wipefs_types(runner: Runner, device: str) -> list[str]:
    """The type of every signature wipefs finds on `device` (it changes nothing: --no-act)."""
    result = runner.run(["wipefs", "--json", "--no-act", device])
    try:
        found = json.loads(result.stdout or "{}").get("signatures", [])
        return [str(sig.get("type") or "") for sig in found]
    except (ValueError, AttributeError, TypeError) as exc:
        raise AgentError(f"wipefs --json: unexpected output: {exc}") from exc


def device_number(node: str) -> str:
    """major:minor of a device node such as /dev/mapper/root; "" if it is none."""
    if not node.startswith("/dev/"):
        return ""
    try:
        st = os.stat(node)
    except OSError:
        return ""
    return f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}" if stat.S_ISBLK(st.st_mode) else ""
