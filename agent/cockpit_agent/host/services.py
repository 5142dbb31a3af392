"""systemd integration: sd_notify (systemd-python when importable, a datagram otherwise)."""

from __future__ import annotations

import os
import socket


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
