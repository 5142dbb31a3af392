"""Loop-device fixtures for the integration tests (root on this machine).

Every image lives under the test's tmp_path, and every command names only a device these
fixtures attached themselves. Teardown always runs, in reverse order of what was done:
unmount, remove partition devices (`partx -d`), detach the loop devices; then it checks with
`losetup -a` that none of the images is still attached.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cockpit_agent.errors import AgentError
from cockpit_agent.host.run import SubprocessRunner

MIB = 1024**2
LOOP_TOOLS = ("losetup", "mkfs.ext4", "sfdisk", "partx", "mount", "umount", "blkid", "wipefs")


def need_tools(*tools: str) -> None:
    """Skip the test when a tool is missing; fail it instead under `make integration`
    (COCKPIT_TEST_REQUIRE_TOOLS=1), which installs them first, so a missing install step
    cannot hide behind a skip."""
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if not missing:
        return
    message = f"missing tools: {', '.join(missing)} (tests/install-deps.sh integration)"
    if os.environ.get("COCKPIT_TEST_REQUIRE_TOOLS") == "1":
        pytest.fail(message)
    pytest.skip(message)


UNPACKED = Path("/var/cache/cockpit-agent-deps")  # tests/install-deps.sh: group_unpacked


def unpacked(path: Path) -> Path:
    """A file of a package tests/install-deps.sh unpacked; skipped (failed under `make
    integration`) when it is not there."""
    if not path.is_file():
        message = f"no {path} (tests/install-deps.sh integration)"
        if os.environ.get("COCKPIT_TEST_REQUIRE_TOOLS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


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


@pytest.fixture
def loops(tmp_path: Path) -> Iterator[LoopDevices]:
    """Attach loop devices for one test; always torn down, and checked to be gone."""
    if os.geteuid() != 0:
        pytest.skip("loop devices need root")
    need_tools(*LOOP_TOOLS)
    if not Path("/dev/loop-control").exists():
        pytest.skip("no /dev/loop-control on this machine")
    workdir = tmp_path / "loops"
    workdir.mkdir()
    assert not [line for line in attached_loops() if str(workdir) in line]
    devices = LoopDevices(workdir)
    try:
        yield devices
    finally:
        failed = devices.cleanup()
        left = [line for line in attached_loops() if str(workdir) in line]
        assert not failed, f"teardown failed: {failed}"
        assert not left, f"loop devices left attached: {left}"
