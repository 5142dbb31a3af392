"""Sparse images attached as loop devices, and everything done to them, to be undone (the
integration tests' `loops` fixture)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cockpit_agent.errors import AgentError
from cockpit_agent.host.run import SubprocessRunner

MIB = 1024**2
LOOP_TOOLS = ("losetup", "mkfs.ext4", "sfdisk", "partx", "mount", "umount", "blkid", "wipefs")


def _run(*argv: str, stdin: str | None = None) -> str:
    return SubprocessRunner().run(argv, input=stdin, timeout=60).stdout


def attached_loops() -> list[str]:
    """`losetup -a`, one line per attached loop device."""
    return _run("losetup", "-a").splitlines()


@dataclass
class LoopDevices:
    """Sparse images attached as loop devices, and everything done to them, to be undone."""

    workdir: Path
    devices: list[str] = field(default_factory=list)
    partitioned: list[str] = field(default_factory=list)
    mounts: list[Path] = field(default_factory=list)

    def attach(self, name: str, size: int = 64 * MIB) -> str:
        """A new loop device over a sparse image of `size` bytes; returns its path."""
        image = self.workdir / f"{name}.img"
        with image.open("xb") as fh:
            fh.truncate(size)
        device = _run("losetup", "--find", "--show", str(image)).strip()
        self.devices.append(device)
        return device

    def mkfs_ext4(self, device: str) -> None:
        """Put an ext4 filesystem on one of our devices."""
        _run("mkfs.ext4", "-q", self._own(device))

    def partition(self, device: str) -> str:
        """Write a GPT with one partition and add its device (this kernel parses no tables)."""
        _run("sfdisk", "-q", self._own(device), stdin="label: gpt\n,,L\n")
        self.partitioned.append(device)
        _run("partx", "-a", device)
        return f"{device}p1"

    def mount(self, device: str) -> Path:
        """Mount one of our ext4 devices on a directory under workdir."""
        target = self.workdir / f"mnt-{Path(device).name}"
        target.mkdir()
        _run("mount", "-t", "ext4", self._own(device), str(target))
        self.mounts.append(target)
        return target

    def cleanup(self) -> list[str]:
        """Undo everything, carrying on past failures; returns what failed."""
        undo: list[tuple[str, ...]] = [("umount", str(m)) for m in reversed(self.mounts)]
        undo += [("partx", "-d", d) for d in self.partitioned]
        undo += [("losetup", "-d", d) for d in reversed(self.devices)]
        failed = []
        for argv in undo:
            try:
                _run(*argv)
            except AgentError as exc:
                failed.append(str(exc))
        return failed

    def _own(self, device: str) -> str:
        if device not in self.devices:
            raise AssertionError(f"{device} was not attached by this test")
        return device
