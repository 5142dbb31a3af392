"""The mount table (/proc/self/mountinfo) and the swap areas (/proc/swaps): one parser each."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from cockpit_agent.host.sysfs import PROC, lines


@dataclass(frozen=True)
class Mount:
    """One line of mountinfo: what is mounted where."""

    dev: str  # "major:minor"; 0:N for btrfs and other anonymous devices
    mountpoint: str
    fstype: str
    source: str


def unescape(text: str) -> str:
    r"""Undo the kernel's octal escapes in /proc files (\040 is a space)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def read_mountinfo(proc: Path = PROC) -> list[Mount]:
    """Every mount in the order the kernel lists them (a later one is stacked on an earlier
    one at the same point); [] when mountinfo cannot be read."""
    mounts = []
    for line in lines(proc / "self" / "mountinfo"):
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) >= 5 and len(tail) >= 2:
            mounts.append(Mount(fields[2], unescape(fields[4]), tail[0], unescape(tail[1])))
    return mounts


def mount_at(mountpoint: str, proc: Path = PROC) -> Mount | None:
    """The mount in use at `mountpoint` (the last one stacked there), or None."""
    wanted = os.path.normpath(mountpoint)
    found = [m for m in read_mountinfo(proc) if m.mountpoint == wanted]
    return found[-1] if found else None


def read_swaps(proc: Path = PROC) -> list[str]:
    """The device or file names in /proc/swaps."""
    return [unescape(line.split()[0]) for line in lines(proc / "swaps")[1:] if line.strip()]
