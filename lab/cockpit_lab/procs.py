"""Child processes of the lab that cannot outlive it.

QEMU is started in a process group of its own (a Ctrl-C on the terminal reaches the driver,
which powers the guest off, not QEMU directly) and with PR_SET_PDEATHSIG, so the kernel kills
it when the driver dies however it dies (SIGKILL, a crash, a timed-out test). Each run
directory records its driver (pid and start time) beside QEMU's pidfile; a later start reaps a
QEMU whose driver is gone, for the case the kernel cannot cover (a driver of an older version).
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import json
import os
import signal
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

import psutil

PR_SET_PDEATHSIG = 1
DRIVER_FILE = "driver.json"
PID_FILE = "qemu.pid"


# Looked up in the parent: the child between fork and exec only calls it (no dlopen there).
_prctl = ctypes.CDLL(None, use_errno=True).prctl


def _die_with_parent(parent: int) -> Callable[[], None]:
    def preexec() -> None:
        if _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            os._exit(126)
        if os.getppid() != parent:  # the parent died before the prctl took effect
            os._exit(1)

    return preexec


def spawn_tied(argv: Sequence[str], log: IO[bytes]) -> subprocess.Popen[bytes]:
    """Start `argv` in its own process group, killed by the kernel when this process dies."""
    return subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        process_group=0,
        preexec_fn=_die_with_parent(os.getpid()),  # noqa: PLW1509 (prctl and getppid only)
    )


def stop(proc: subprocess.Popen[Any], grace: float = 5) -> None:
    """SIGTERM (QEMU exits at once, closing its images cleanly), SIGKILL after `grace` s."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)


def record_driver(run_dir: Path) -> None:
    """Note in `run_dir` which process drives its QEMU."""
    me = psutil.Process()
    data = {"pid": me.pid, "create_time": me.create_time()}
    (run_dir / DRIVER_FILE).write_text(json.dumps(data) + "\n")


def _driver_alive(run_dir: Path) -> bool:
    try:
        data = json.loads((run_dir / DRIVER_FILE).read_text())
        return bool(psutil.Process(int(data["pid"])).create_time() == data["create_time"])
    except (OSError, ValueError, KeyError, psutil.Error):
        return False


def _qemu_of(pidfile: Path) -> psutil.Process | None:
    """The live process named by `pidfile`, if it is the QEMU started with that pidfile (a pid
    reused by anything else is never touched)."""
    try:
        proc = psutil.Process(int(pidfile.read_text().split()[0]))
        argv = proc.cmdline()
    except (OSError, ValueError, IndexError, psutil.Error):
        return None
    return proc if ("-pidfile", str(pidfile)) in itertools.pairwise(argv) else None


def reap_stale(runs_dir: Path, say: Callable[[str], None]) -> list[int]:
    """Kill each QEMU under `runs_dir` whose driver is gone; return their pids."""
    reaped = []
    for pidfile in sorted(runs_dir.glob(f"*/{PID_FILE}")):
        if _driver_alive(pidfile.parent):
            continue
        proc = _qemu_of(pidfile)
        if proc is not None:
            say(f"reaping QEMU pid {proc.pid}, left running by a dead driver in {pidfile.parent}")
            with contextlib.suppress(psutil.Error):
                proc.kill()
                proc.wait(10)
            reaped.append(proc.pid)
        pidfile.unlink(missing_ok=True)
    return reaped


def run_group(argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """subprocess.run in a process group of its own, the whole group killed if this process
    is interrupted (debootstrap and apt in a chroot leave grandchildren otherwise)."""
    stdin = kwargs.pop("input", None)
    if stdin is not None:
        kwargs["stdin"] = subprocess.PIPE
    with subprocess.Popen(list(argv), process_group=0, text=True, **kwargs) as proc:
        try:
            out, err = proc.communicate(stdin)
        except BaseException:
            # The leader is not reaped yet, so its pid still names this group and no other.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
