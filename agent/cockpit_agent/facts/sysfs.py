"""Small readers of sysfs and /proc files, shared by the fact modules; "" or [] when unreadable."""

from __future__ import annotations

import os
import re
from collections.abc import Collection
from pathlib import Path


def attr(path: Path, *names: str) -> str:
    """The first readable attribute among `names` below `path`, whitespace trimmed; "" if none."""
    for name in names:
        try:
            return (path / name).read_text(errors="replace").strip()
        except OSError:
            continue
    return ""


def lines(path: Path) -> list[str]:
    """The file's lines, or [] if it cannot be read."""
    try:
        return path.read_text(errors="replace").splitlines()
    except OSError:
        return []


def listdir(path: Path) -> list[str]:
    """The directory's entries, sorted, or [] if it cannot be read."""
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def children(path: Path) -> list[Path]:
    """The directory's entries as paths, sorted."""
    return [path / name for name in listdir(path)]


def uevent(path: Path) -> dict[str, str]:
    """The KEY=value pairs of a sysfs `uevent` file."""
    return {k: v for k, _, v in (line.partition("=") for line in lines(path / "uevent"))}


def unescape(text: str) -> str:
    r"""Undo the kernel's octal escapes in /proc files (\040 is a space)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def processes_named(proc: Path, names: Collection[str]) -> list[str]:
    """`pid command line` of each process under `proc` whose name (comm) is in `names`."""
    found = []
    for entry in children(proc):
        if entry.name.isdigit() and attr(entry, "comm") in names:
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue  # it has ended
            found.append(f"{entry.name} {b' '.join(a for a in argv if a).decode(errors='replace')}")
    return found
