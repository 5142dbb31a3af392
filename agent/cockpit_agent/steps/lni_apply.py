"""How the LNI step changes the network and how it undoes that: per manager, and live.

A `Transaction` is taken before the first network action of a run: the previous content of
every file the step writes and the live state of the LNI and the bridge. `rollback` puts
both back: files first, then the manager reloads them, then what netlink must undo itself.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cockpit_agent.engine import Ctx
from cockpit_agent.host import netlink
from cockpit_agent.render.bridge import RenderedFile
from cockpit_agent.render.networkmanager import nm_ids
from cockpit_agent.steps.lni_actions import Manager

RUN_DIR = "/run/cockpit-agent"
LEASE_DIR = "/var/lib/cockpit-agent"


@dataclass
class Transaction:
    """What the LNI looked like before this run changed it."""

    manager: Manager
    bridge: str
    port: str
    files: dict[str, tuple[str, int] | None]
    bridge_before: netlink.LinkState | None
    port_before: netlink.LinkState
    dhcp_started: bool = False
    undo_errors: list[str] = field(default_factory=list)


def netns_prefix(netns: str | None) -> list[str]:
    """The argv prefix that runs a program inside `netns` (nothing for this namespace)."""
    return ["ip", "netns", "exec", netns] if netns else []


def begin(
    ctx: Ctx,
    live: netlink.Netlink,
    manager: Manager,
    bridge: str,
    port: str,
    *,
    paths: Sequence[str],
) -> Transaction:
    """Snapshot the files and links a run may change."""
    port_state = live.snapshot(port)
    if port_state is None:
        raise netlink.NetlinkError(f"the LNI {port} disappeared")
    return Transaction(
        manager=manager,
        bridge=bridge,
        port=port,
        files={path: _read_with_mode(ctx, path) for path in paths},
        bridge_before=live.snapshot(bridge),
        port_before=port_state,
    )


def _read_with_mode(ctx: Ctx, path: str) -> tuple[str, int] | None:
    content = ctx.files.read(path)
    if content is None:
        return None
    return content, ctx.files.path(path).stat().st_mode & 0o7777


def write_files(ctx: Ctx, files: Sequence[RenderedFile]) -> None:
    """Write every rendered file atomically."""
    for f in files:
        ctx.files.write(f.path, f.content, f.mode)


def apply_manager(
    ctx: Ctx,
    manager: Manager,
    bridge: str,
    port: str,
    files: Sequence[str],
    *,
    bridge_exists: bool = False,
) -> None:
    """Have the manager pick up the files and move the LNI into the bridge.

    `bridge_exists`: the bridge is there already (perhaps set down by hand); networkd then
    reconfigures it as well, which brings it up again: `netplan apply` alone leaves a link
    that was set down as it is, so under netplan's networkd backend the bridge is
    reconfigured the same way.
    """
    run = ctx.runner.run
    if manager == "networkd":
        run(["networkctl", "reload"])
        # reconfigure drops the LNI's old configuration (its DHCP address) at once.
        run(["networkctl", "reconfigure", port, *([bridge] if bridge_exists else [])])
    elif manager == "NetworkManager":
        for path in files:
            run(["nmcli", "connection", "load", path])
        bridge_id, port_id = nm_ids(bridge)
        run(["nmcli", "connection", "up", port_id], timeout=120)
        run(["nmcli", "connection", "up", bridge_id], timeout=120)
    elif manager == "netplan":
        run(["netplan", "generate"])
        run(["netplan", "apply"], timeout=120)
        platform = ctx.facts.platform
        if bridge_exists and platform is not None and platform.network_manager == "networkd":
            run(["networkctl", "reconfigure", bridge])


def _pid_path(ctx: Ctx, bridge: str) -> Path:
    return ctx.files.path(f"{RUN_DIR}/dhclient-{bridge}.pid")


def start_dhcp_client(ctx: Ctx, bridge: str, metric: int, netns: str | None) -> None:
    """dhclient on the bridge, in the background (-nw); the caller waits for the address."""
    pid = _pid_path(ctx, bridge)
    lease = ctx.files.path(f"{LEASE_DIR}/dhclient-{bridge}.leases")
    pid.parent.mkdir(parents=True, exist_ok=True)
    lease.parent.mkdir(parents=True, exist_ok=True)
    argv = [*netns_prefix(netns), "dhclient", "-4", "-nw", "-pf", str(pid), "-lf", str(lease)]
    argv += ["-e", f"IF_METRIC={metric}", bridge]
    ctx.runner.run(argv, timeout=30)


def stop_dhcp_client(ctx: Ctx, bridge: str) -> bool:
    """Stop the dhclient this step started on `bridge` (found by its pid file)."""
    pid_file = _pid_path(ctx, bridge)
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return False
    if not cmdline or not cmdline[0].endswith(b"dhclient") or bridge.encode() not in cmdline:
        return False  # a stale pid file: that process is not ours
    os.kill(pid, signal.SIGTERM)
    pid_file.unlink(missing_ok=True)
    return True


def _attempt(txn: Transaction, what: str, fn: Callable[..., object], *args: object) -> None:
    try:
        fn(*args)
    except Exception as exc:
        txn.undo_errors.append(f"{what}: {exc}")


def rollback(ctx: Ctx, txn: Transaction, live: netlink.Netlink) -> None:
    """Put the files and the live state back as they were; failures land in undo_errors."""
    for path, previous in txn.files.items():
        if previous is None:
            with contextlib.suppress(FileNotFoundError):
                ctx.files.path(path).unlink()
        else:
            _attempt(txn, f"restore {path}", ctx.files.write, path, *previous)
    if txn.dhcp_started:
        _attempt(txn, "stop dhclient", stop_dhcp_client, ctx, txn.bridge)
    _reload_after_rollback(ctx, txn)
    if txn.bridge_before is None:
        _attempt(txn, f"delete {txn.bridge}", live.delete_link, txn.bridge)
    if txn.manager == "none":
        _attempt(txn, f"restore {txn.port}", live.restore, txn.port_before)
    else:
        # The manager configures the LNI again itself; only its master and state come back.
        bare = netlink.LinkState(
            txn.port, txn.port_before.up, txn.port_before.master, addresses=(), routes=()
        )
        _attempt(txn, f"restore {txn.port}", live.restore, bare)
        _reconfigure_port(ctx, txn)


def _reload_after_rollback(ctx: Ctx, txn: Transaction) -> None:
    run = ctx.runner.run
    if txn.manager == "networkd":
        _attempt(txn, "networkctl reload", run, ["networkctl", "reload"])
    elif txn.manager == "NetworkManager":
        _attempt(txn, "nmcli connection reload", run, ["nmcli", "connection", "reload"])
    elif txn.manager == "netplan":
        _attempt(txn, "netplan apply", run, ["netplan", "apply"])


def _reconfigure_port(ctx: Ctx, txn: Transaction) -> None:
    run = ctx.runner.run
    if txn.manager == "networkd":
        _attempt(txn, "networkctl reconfigure", run, ["networkctl", "reconfigure", txn.port])
    elif txn.manager == "NetworkManager":
        _attempt(txn, "nmcli device connect", run, ["nmcli", "device", "connect", txn.port])
