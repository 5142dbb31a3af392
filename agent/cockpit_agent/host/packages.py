"""Package managers (apt, dnf) behind one small interface: what is installed, install the rest.

First boot is when cloud-init and unattended-upgrades hold the package manager's lock, so
installing waits for the lock (bounded, with progress) and retries transient mirror failures.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import structlog

from cockpit_agent.errors import AgentError, CommandFailed
from cockpit_agent.host.files import Files
from cockpit_agent.host.run import Runner

log = structlog.get_logger(__name__)

# Words in apt/dnf output that mean "try again later" rather than "this cannot work".
TRANSIENT = (
    "Temporary failure",
    "Could not resolve",
    "Failed to fetch",
    "Connection failed",
    "timed out",
    "Cannot download",
    "Curl error",
)
# Words that mean the package lists are empty or stale (an AMI baked with its lists removed).
NO_CANDIDATE = ("Unable to locate package", "has no installation candidate")


class PackageManager(Protocol):
    """The operations the virt step needs from a package manager."""

    name: str

    def missing(self, packages: Sequence[str]) -> list[str]:
        """The packages of `packages` that are not installed, in order."""
        ...

    def install(self, packages: Sequence[str], progress: Callable[[str], None]) -> None:
        """Install `packages` non-interactively."""
        ...


@dataclass
class LockWaiter:
    """Waits (bounded) until no other process holds any of `locks` (fcntl locks, as dpkg uses)."""

    locks: Sequence[Path]
    timeout: float
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    interval: float = 5.0

    def held(self) -> Path | None:
        """The first lock another process holds, or None."""
        for path in self.locks:
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:
                continue
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.lockf(fd, fcntl.LOCK_UN)
            except OSError:
                return path
            finally:
                os.close(fd)
        return None

    def wait(self, progress: Callable[[str], None]) -> None:
        """Return once no lock is held; AgentError after `timeout` seconds."""
        deadline = self.clock() + self.timeout
        while (path := self.held()) is not None:
            left = deadline - self.clock()
            if left <= 0:
                raise AgentError(
                    f"the package manager's lock {path} is still held after {self.timeout:.0f} s "
                    "(cloud-init or unattended-upgrades at first boot?); the next run retries"
                )
            progress(f"waiting for the package manager lock {path} ({left:.0f} s left)")
            self.sleep(min(self.interval, left))


@dataclass
class Apt:
    """dpkg/apt (Debian, Ubuntu)."""

    runner: Runner
    waiter: LockWaiter
    retries: int = 3
    sleep: Callable[[float], None] = time.sleep
    name: str = "apt"
    env: dict[str, str] = field(
        default_factory=lambda: {
            "DEBIAN_FRONTEND": "noninteractive",
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        }
    )

    def missing(self, packages: Sequence[str]) -> list[str]:
        """dpkg-query prints a status line per known package and exits 1 if any is unknown."""
        fmt = "${Package}\t${db:Status-Status}\n"
        result = self.runner.run(["dpkg-query", "-W", "-f", fmt, *packages], ok=(0, 1))
        installed = {
            name
            for name, _, status in (line.partition("\t") for line in result.stdout.splitlines())
            if status == "installed"
        }
        return [p for p in packages if p not in installed]

    def install(self, packages: Sequence[str], progress: Callable[[str], None]) -> None:
        """apt-get install; refresh the lists once if a package has no candidate."""
        argv = [
            "apt-get",
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
            "-o",
            "Dpkg::Options::=--force-confdef",
            "-o",
            "Dpkg::Options::=--force-confold",
            "-o",
            f"DPkg::Lock::Timeout={int(self.waiter.timeout)}",
            *packages,
        ]
        updated = False
        for attempt in range(1, self.retries + 1):
            self.waiter.wait(progress)
            progress(f"installing {len(packages)} package(s): {' '.join(packages)}")
            try:
                self.runner.run(argv, timeout=3600, env=self.env)
                return
            except CommandFailed as exc:
                if not updated and any(w in exc.stderr for w in NO_CANDIDATE):
                    progress("package lists are stale or empty: apt-get update")
                    self.runner.run(["apt-get", "update", "-q"], timeout=900, env=self.env)
                    updated = True
                    continue
                if attempt < self.retries and any(w in exc.stderr for w in TRANSIENT):
                    log.warning("transient package failure; retrying", attempt=attempt)
                    self.sleep(10.0 * attempt)
                    continue
                raise


@dataclass
class Dnf:
    """rpm/dnf (RHEL, Fedora, Rocky, Alma)."""

    runner: Runner
    waiter: LockWaiter
    retries: int = 3
    sleep: Callable[[float], None] = time.sleep
    name: str = "dnf"

    def missing(self, packages: Sequence[str]) -> list[str]:
        """`rpm -q --qf` prints the name of each installed package; rc counts the missing ones."""
        result = self.runner.run(
            ["rpm", "-q", "--qf", "%{NAME}\n", *packages], ok=range(0, len(packages) + 1)
        )
        installed = set(result.stdout.split())
        return [p for p in packages if p not in installed]

    def install(self, packages: Sequence[str], progress: Callable[[str], None]) -> None:
        """dnf install, retrying transient mirror failures."""
        for attempt in range(1, self.retries + 1):
            self.waiter.wait(progress)
            progress(f"installing {len(packages)} package(s): {' '.join(packages)}")
            try:
                self.runner.run(["dnf", "install", "-y", "-q", *packages], timeout=3600)
                return
            except CommandFailed as exc:
                if attempt < self.retries and any(w in exc.stderr for w in TRANSIENT):
                    self.sleep(10.0 * attempt)
                    continue
                raise


APT_LOCKS = ("/var/lib/dpkg/lock-frontend", "/var/lib/dpkg/lock", "/var/lib/apt/lists/lock")
DNF_LOCKS = ("/var/lib/rpm/.rpm.lock", "/var/cache/dnf/metadata_lock.pid")


def package_manager(
    name: str | None, runner: Runner, files: Files, lock_timeout: float
) -> PackageManager | None:
    """The package manager by name (from facts), with its lock files under `files`' root."""
    if name == "apt":
        return Apt(runner, LockWaiter([files.path(p) for p in APT_LOCKS], lock_timeout))
    if name in ("dnf", "yum"):
        return Dnf(runner, LockWaiter([files.path(p) for p in DNF_LOCKS], lock_timeout))
    return None
