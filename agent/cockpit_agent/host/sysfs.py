"""The kernel's attribute trees (sysfs, and /dev for device nodes) under roots that tests
move to a captured tree: reading attributes ("" or [] when unreadable) and writing one."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cockpit_agent.errors import AgentError

SYSFS = Path("/sys")
PROC = Path("/proc")
DEV = Path("/dev")


@dataclass(frozen=True)
class HostPaths:
    """Where sysfs, /proc and /dev are (the real ones unless a test says otherwise)."""

    sysfs: Path = SYSFS
    proc: Path = PROC
    dev: Path = DEV

    def node(self, device: str) -> Path:
        """Where `device` (a /dev path) is under this host's /dev."""
        return self.dev / Path(device).relative_to("/dev")

    def has_node(self, device: str) -> bool:
        """Whether `device` (a /dev path, a udev link perhaps) exists."""
        return self.node(device).exists()

    def kernel_name(self, device: str) -> str:
        """/dev/md/<name> -> md127, following udev's symlink (which must exist: a missing
        one would be taken for a kernel name that is not there); /dev/mdN -> mdN."""
        if not device.startswith("/dev/md/"):
            return Path(device).name
        node = self.node(device)
        if not node.exists():
            raise AgentError(f"{device} does not exist (udev has not made it)")
        return Path(os.path.realpath(node)).name


def attr(path: Path, *names: str) -> str:
    """The first readable attribute among `names` below `path`, whitespace trimmed; "" if none."""
    for name in names:
        try:
            return (path / name).read_text(errors="replace").strip()
        except OSError:
            continue
    return ""


def write_attr(path: Path, value: str) -> None:
    """Write one attribute: in place, never renamed over (sysfs has no temporary files)."""
    with path.open("w") as fh:
        fh.write(f"{value}\n")


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


def is_dir(path: Path) -> bool:
    """Whether the attribute directory exists."""
    return path.is_dir()


def is_file(path: Path) -> bool:
    """Whether the attribute exists as a file."""
    return path.is_file()


def exists(path: Path) -> bool:
    """Whether the attribute (or directory) exists."""
    return path.exists()


def resolve(path: Path) -> Path:
    """The directory a sysfs link points to."""
    return path.resolve()


def uevent(path: Path) -> dict[str, str]:
    """The KEY=value pairs of a sysfs `uevent` file."""
    return {k: v for k, _, v in (line.partition("=") for line in lines(path / "uevent"))}


def boot_id(proc: Path = PROC) -> str | None:
    """This boot's id (random per boot), so runs of different boots can be told apart."""
    return attr(proc / "sys" / "kernel" / "random", "boot_id") or None
