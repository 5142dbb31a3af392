"""systemd: units (state, enable, start, restart, reload, mask, daemon-reload, queued jobs)
through systemctl, and sd_notify (systemd-python when importable, a datagram otherwise)."""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass

from cockpit_agent.host.files import Files
from cockpit_agent.host.run import Runner

RUNNING_MARKER = "/run/systemd/system"  # exists while systemd is the init system
STATE_PROPERTIES = "Id,LoadState,UnitFileState,ActiveState"
UNIT_NOT_LOADED = 5  # systemctl stop: the unit is not loaded (nothing to stop)


@dataclass(frozen=True)
class UnitState:
    """What systemd says of one unit."""

    load: str
    enabled: str
    active: str

    @property
    def ok(self) -> bool:
        """Enabled (or static) and running."""
        return (
            self.enabled in ("enabled", "static", "alias", "indirect") and self.active == "active"
        )


def running(files: Files) -> bool:
    """Whether systemd runs this host (its runtime directory exists)."""
    return files.exists(RUNNING_MARKER)


def parse_show(text: str, units: Sequence[str]) -> dict[str, UnitState]:
    """`systemctl show -p ...` for several units: blocks of key=value, in the order asked."""
    blocks = [b for b in text.strip().split("\n\n") if b.strip()]
    states = {}
    for unit, block in zip(units, blocks, strict=False):
        kv = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        states[unit] = UnitState(
            kv.get("LoadState", ""), kv.get("UnitFileState", ""), kv.get("ActiveState", "")
        )
    return states


def unit_states(runner: Runner, units: Sequence[str]) -> dict[str, UnitState]:
    """The state of every unit, with one `systemctl show`."""
    result = runner.run(["systemctl", "show", "-p", STATE_PROPERTIES, *units])
    return parse_show(result.stdout, units)


def enable_now(runner: Runner, unit: str) -> None:
    """Enable and start a unit."""
    runner.run(["systemctl", "enable", "--now", unit], timeout=300)


def daemon_reload(runner: Runner, timeout: float = 300.0) -> None:
    """Have systemd reread its unit files (and the mount units of fstab)."""
    runner.run(["systemctl", "daemon-reload"], timeout=timeout)


def restart(runner: Runner, unit: str) -> None:
    """Restart a unit."""
    runner.run(["systemctl", "restart", unit], timeout=120)


def reload(runner: Runner, unit: str) -> None:
    """Have a unit reload its configuration."""
    runner.run(["systemctl", "reload", unit], timeout=120)


def mask_and_stop(runner: Runner, units: Sequence[str]) -> None:
    """Mask units (so nothing starts them again), then stop those that run."""
    runner.run(["systemctl", "mask", *units])
    runner.run(["systemctl", "stop", *units], ok=(0, UNIT_NOT_LOADED))


def queued_jobs(runner: Runner) -> list[str]:
    """The units systemd has a job queued for."""
    jobs = runner.run(["systemctl", "list-jobs", "--no-legend", "--plain"], timeout=10)
    rows = (line.split() for line in jobs.stdout.splitlines())
    return [fields[1] for fields in rows if fields[1:]]


def mount_unit(runner: Runner, path: str) -> str:
    """The name of the mount unit of `path` (systemd-escape)."""
    argv = ["systemd-escape", "--path", "--suffix=mount", path]
    return runner.run(argv, timeout=10).stdout.strip()


def sd_notify(message: str, env: dict[str, str] | None = None) -> bool:
    """Send `message` (e.g. "STATUS=...") to the service manager; False when not under systemd."""
    environ = os.environ if env is None else env
    addr = environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if env is None:
        try:
            from systemd import daemon  # noqa: PLC0415 - optional dependency

            return bool(daemon.notify(message))
        except ImportError:
            pass
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(addr)
            sock.sendall(message.encode())
        except OSError:
            return False
    return True


class Notifier:
    """Reports progress to systemd as STATUS= lines."""

    def status(self, text: str) -> None:
        """Set the unit's status line (shown by `systemctl status`)."""
        sd_notify(f"STATUS={text}")
