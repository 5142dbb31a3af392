"""Runner: the only way the agent runs a program. Never a shell; argv is a list of strings."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import structlog

from cockpit_agent.errors import CommandFailed, CommandNotFound

log = structlog.get_logger(__name__)

# Which package provides a program, for the error an admin sees when it is missing.
PACKAGE_OF: Mapping[str, str] = {
    "growpart": "cloud-guest-utils (Debian/Ubuntu) or cloud-utils-growpart (RHEL/Fedora)",
    "mdadm": "mdadm",
    "mkfs.xfs": "xfsprogs",
    "xfs_growfs": "xfsprogs",
    "mkfs.ext4": "e2fsprogs",
    "resize2fs": "e2fsprogs",
    "btrfs": "btrfs-progs",
    "pvresize": "lvm2",
    "lvextend": "lvm2",
    "pvs": "lvm2",
    "lvs": "lvm2",
    "dumpe2fs": "e2fsprogs",
    "xfs_info": "xfsprogs",
    "partx": "util-linux",
    "lsblk": "util-linux",
    "udevadm": "udev (Debian/Ubuntu) or systemd-udev (RHEL/Fedora)",
    "blkid": "util-linux",
    "wipefs": "util-linux",
    "virsh": "libvirt-clients",
}


@dataclass(frozen=True)
class Result:
    """What a finished command returned."""

    argv: tuple[str, ...]
    rc: int
    stdout: str
    stderr: str


class Runner(Protocol):
    """Runs a program and returns its Result; raises CommandFailed on an unaccepted exit code."""

    def run(
        self,
        argv: Sequence[str],
        *,
        ok: Sequence[int] = (0,),
        timeout: float | None = 300.0,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Result: ...


# The commands running now, so that a check past its timeout can end them (stop_running).
_RUNNING: set[subprocess.Popen[str]] = set()
_RUNNING_LOCK = threading.Lock()


def stop_running() -> None:
    """Kill every command a Runner is waiting for: the check that ran out of time answers
    UNKNOWN and leaves nothing behind."""
    with _RUNNING_LOCK:
        procs = list(_RUNNING)
    for proc in procs:
        proc.kill()


class SubprocessRunner:
    """The real Runner: subprocess without a shell, with a timeout and captured output."""

    def run(
        self,
        argv: Sequence[str],
        *,
        ok: Sequence[int] = (0,),
        timeout: float | None = 300.0,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Result:
        """Run argv; raise CommandFailed unless its exit code is in `ok`."""
        args = [str(a) for a in argv]
        started = time.monotonic()
        try:
            proc = subprocess.Popen(
                args,
                stdin=subprocess.PIPE if input is not None else None,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=dict(env) if env is not None else None,
            )
        except FileNotFoundError as exc:
            raise CommandNotFound(args[0], PACKAGE_OF.get(args[0].rsplit("/", 1)[-1])) from exc
        with _RUNNING_LOCK:
            _RUNNING.add(proc)
        try:
            stdout, stderr = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            proc.kill()
            proc.communicate()
            raise CommandFailed(args, -1, f"timed out after {timeout} s") from exc
        finally:
            with _RUNNING_LOCK:
                _RUNNING.discard(proc)
        log.debug(
            "ran", argv=args, rc=proc.returncode, seconds=round(time.monotonic() - started, 3)
        )
        result = Result(tuple(args), proc.returncode, stdout, stderr)
        if proc.returncode not in ok:
            raise CommandFailed(args, proc.returncode, stderr)
        return result


class StillRunning(Exception):
    """Calls given to at_once() had not returned by its timeout."""


def at_once(*calls: Callable[[], object], timeout: float | None = None) -> None:
    """Run the calls at the same time, each in its own thread, and return when all have
    returned; then raise the first exception any of them raised. StillRunning when some have
    not returned after `timeout` seconds: they are daemon threads, left running, and cannot
    hold the process's exit. For reads that mostly wait on commands (each a tenth of a second
    in an emulated guest)."""
    errors: list[BaseException] = []

    def call(fn: Callable[[], object]) -> None:
        try:
            fn()
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(fn,), daemon=True) for fn in calls]
    for thread in threads:
        thread.start()
    deadline = None if timeout is None else time.monotonic() + timeout
    for thread in threads:
        thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
    if any(thread.is_alive() for thread in threads):
        raise StillRunning(f"not finished within {timeout:g} s")
    if errors:
        raise errors[0]
