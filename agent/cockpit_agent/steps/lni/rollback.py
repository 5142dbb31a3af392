"""The snapshot a change of the LNI's network starts with, and how a failed change is undone.

`SnapshotNetwork` takes a `Transaction`: the previous content and mode of every file the
step writes and the live state of the LNI and the bridge. It lives in the run's context
(ctx.scratch) until the change ends: `rollback` puts both back, files first, then the manager
reloads them, then what netlink must undo itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from cockpit_agent.engine import Ctx
from cockpit_agent.errors import AgentError
from cockpit_agent.host import netlink, procs
from cockpit_agent.steps.lni.actions import Manager, SnapshotNetwork

RUN_DIR = "/run/cockpit-agent"
SCRATCH_KEY = "lni-rollback"


@dataclass
class Transaction:
    """What the LNI looked like before this run changed it, and what the change started."""

    manager: Manager
    bridge: str
    port: str
    files: dict[str, tuple[str, int] | None]
    bridge_before: netlink.LinkState | None
    port_before: netlink.LinkState
    dhcp_started: bool = False
    undo_errors: list[str] = field(default_factory=list)


def dhclient_pid_file(bridge: str) -> str:
    """Where the dhclient the step starts on `bridge` writes its pid."""
    return f"{RUN_DIR}/dhclient-{bridge}.pid"


def take_snapshot(ctx: Ctx, live: netlink.Netlink, action: SnapshotNetwork) -> Transaction:
    """Snapshot the files and links the change may touch, and keep it in the run's context."""
    port_state = live.snapshot(action.port)
    if port_state is None:
        raise netlink.NetlinkError(f"the LNI {action.port} disappeared")
    txn = Transaction(
        manager=action.manager,
        bridge=action.bridge,
        port=action.port,
        files={path: _read_with_mode(ctx, path) for path in action.files},
        bridge_before=live.snapshot(action.bridge),
        port_before=port_state,
    )
    ctx.scratch[SCRATCH_KEY] = txn
    return txn


def current(ctx: Ctx, what: str) -> Transaction:
    """The snapshot of the change in progress; an error when no SnapshotNetwork came first."""
    txn = ctx.scratch.get(SCRATCH_KEY)
    if not isinstance(txn, Transaction):
        raise AgentError(f"{what}: no snapshot of the network was taken before it in this run")
    return txn


def end(ctx: Ctx) -> None:
    """The change is over (done or rolled back): forget its snapshot."""
    ctx.scratch.pop(SCRATCH_KEY, None)


def _read_with_mode(ctx: Ctx, path: str) -> tuple[str, int] | None:
    content = ctx.files.read(path)
    mode = ctx.files.mode(path)
    if content is None or mode is None:
        return None
    return content, mode


def stop_dhcp_client(ctx: Ctx, bridge: str) -> bool:
    """Stop the dhclient this step started on `bridge` (found by its pid file)."""
    pid_file = dhclient_pid_file(bridge)
    try:
        pid = int((ctx.files.read(pid_file) or "").strip())
    except (OSError, ValueError):
        return False

    def ours(argv: list[str]) -> bool:
        return bool(argv) and argv[0].endswith("dhclient") and bridge in argv

    if not procs.terminate_if(pid, ours):
        return False  # a stale pid file: that process is not ours
    ctx.files.remove(pid_file)
    return True


def _attempt(txn: Transaction, what: str, fn: Callable[..., object], *args: object) -> None:
    try:
        fn(*args)
    except Exception as exc:
        txn.undo_errors.append(f"{what}: {exc}")


def rollback(ctx: Ctx, txn: Transaction, live: netlink.Netlink) -> None:
    """Put the files and the live state back as they were; failures land in undo_errors."""
    end(ctx)
    for path, previous in txn.files.items():
        if previous is None:
            ctx.files.remove(path)
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
