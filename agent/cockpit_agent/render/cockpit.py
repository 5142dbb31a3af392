"""Cockpit's files as pure functions: merged cockpit.conf, disallowed-users, socket drop-in."""

from __future__ import annotations

import re

_SECTION = re.compile(r"^\s*\[([^\]]+)\]\s*$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_-]+)\s*=")


def merge_ini(existing: str, section: str, keys: dict[str, str]) -> str:
    """Set `keys` in `[section]` of an INI text; every other line stays as the admin wrote it."""
    lines = existing.splitlines()
    out: list[str] = []
    current: str | None = None
    pending = dict(keys)

    def flush() -> None:
        if current == section:
            out.extend(f"{k} = {v}" for k, v in pending.items())
            pending.clear()

    for line in lines:
        header = _SECTION.match(line)
        if header:
            flush()
            current = header.group(1).strip()
        else:
            key = _KEY.match(line)
            if current == section and key and key.group(1) in keys:
                if key.group(1) in pending:
                    out.append(f"{key.group(1)} = {pending.pop(key.group(1))}")
                continue  # a duplicate of a key we own: drop it
        out.append(line)
    flush()
    if pending:
        if out and out[-1].strip():
            out.append("")
        out.append(f"[{section}]")
        out.extend(f"{k} = {v}" for k, v in pending.items())
    return "\n".join(out) + "\n"


def with_users(existing: str, users: list[str]) -> str:
    """disallowed-users with each of `users` present once; other lines kept."""
    lines = existing.splitlines()
    present = {line.strip() for line in lines}
    lines += [u for u in users if u not in present]
    return "\n".join(lines) + "\n"


def socket_dropin(port: int, address: str | None) -> str:
    """A cockpit.socket drop-in that replaces the listen address (the empty line resets it)."""
    listen = f"{address}:{port}" if address else str(port)
    lines = [
        "# Written by cockpit-agent (virt.port / virt.listen_on_bridge_only).",
        "[Socket]",
        "ListenStream=",
        f"ListenStream={listen}",
    ]
    if address:
        lines.append("FreeBind=yes")  # bind before the bridge has its address
    return "\n".join(lines) + "\n"
