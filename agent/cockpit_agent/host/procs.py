"""Processes (psutil): which run by name, a signal to one of them, and the sockets they
listen on."""

from __future__ import annotations

from collections.abc import Callable, Collection

import psutil

from cockpit_agent.errors import AgentError

ProcessLister = Callable[[Collection[str]], list[str]]  # names -> `pid command line` of each


def processes_named(names: Collection[str]) -> list[str]:
    """`pid command line` of each process whose name (comm) is in `names`, by pid."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        if proc.info["name"] in names:
            argv = " ".join(a for a in proc.info["cmdline"] or [] if a)
            found.append(f"{proc.pid} {argv}")
    return found


def terminate_if(pid: int, wanted: Callable[[list[str]], bool]) -> bool:
    """SIGTERM process `pid` if its command line is `wanted`; False when no process has that
    pid, or another program does (a stale pid file)."""
    try:
        proc = psutil.Process(pid)
        if not wanted(proc.cmdline()):
            return False
        proc.terminate()
    except psutil.Error:
        return False
    return True


def listening_tcp(port: int) -> set[str]:
    """The local addresses a process listens on at TCP `port`; AgentError when the sockets
    cannot be listed."""
    try:
        return {
            c.laddr.ip
            for c in psutil.net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
        }
    except (psutil.Error, OSError) as exc:
        raise AgentError(f"cannot list listening sockets: {exc}") from exc
