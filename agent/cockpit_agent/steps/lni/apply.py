"""Carrying out the LNI step's actions: per network manager, or live through netlink.

Every network action is checked against the management interface first. A network action
that fails rolls back the whole change from the snapshot its `SnapshotNetwork` took
(rollback.py) and fails the step with `LniRolledBack`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import assert_never

from cockpit_agent.engine import Ctx
from cockpit_agent.errors import AgentError, UnsafeDevice
from cockpit_agent.host import netlink, systemd
from cockpit_agent.render.networkmanager import nm_ids
from cockpit_agent.steps.lni.actions import (
    AddBridgeAddress,
    ApplyNetworkConfig,
    AwaitBridgeAddress,
    CreateBridge,
    EnableProxyArp,
    EnslaveLink,
    LniAction,
    Manager,
    MaskEc2NetUtilsUnits,
    NetworkAction,
    SetBridgeMac,
    SnapshotNetwork,
    StartDhcpClient,
    WriteNetworkFiles,
)
from cockpit_agent.steps.lni.observed import (
    ipv4_cidrs,
    management_links,
    netns_prefix,
    proxy_arp_key,
)
from cockpit_agent.steps.lni.rollback import (
    RUN_DIR,
    Transaction,
    current,
    dhclient_pid_file,
    end,
    rollback,
    take_snapshot,
)

LEASE_DIR = "/var/lib/cockpit-agent"


class LniRolledBack(AgentError):
    """The bridge did not come up with an address; files and links were put back."""


def apply_action(
    action: LniAction, ctx: Ctx, live: netlink.Netlink, netns: str | None = None
) -> None:
    """Carry out one action; a failed network action rolls the whole change back. `live`
    makes the netlink changes; programs run inside `netns` (None: this namespace)."""
    match action:
        case MaskEc2NetUtilsUnits(_, units):
            systemd.mask_and_stop(ctx.runner, units)
        case EnableProxyArp(bridge):
            argv = [*netns_prefix(netns), "sysctl", "-w", f"{proxy_arp_key(bridge)}=1"]
            ctx.runner.run(argv)
        case SnapshotNetwork():
            guard(ctx, action)
            take_snapshot(ctx, live, action)
        case (
            WriteNetworkFiles()
            | ApplyNetworkConfig()
            | CreateBridge()
            | SetBridgeMac()
            | EnslaveLink()
            | StartDhcpClient()
            | AddBridgeAddress()
            | AwaitBridgeAddress()
        ):
            guard(ctx, action)
            _change(action, ctx, live, netns)
        case _:
            assert_never(action)


def guard(ctx: Ctx, action: NetworkAction) -> None:
    """Raise before an action that would touch the management interface (device 0)."""
    facts = ctx.facts
    management = management_links(facts.interfaces, facts.links)
    protected = {m.name for m in management} | {
        i.mac.lower() for i in facts.interfaces if i.device_number == 0
    }
    touched = set(action.touches()) | {t.lower() for t in action.touches()}
    if touched & protected:
        raise UnsafeDevice(
            f"refusing to {action.describe()}: it touches the management interface "
            f"({', '.join(sorted(touched & protected))})"
        )


def _change(action: NetworkAction, ctx: Ctx, live: netlink.Netlink, netns: str | None) -> None:
    """One action of the change that SnapshotNetwork began; any failure rolls all back."""
    txn = current(ctx, action.describe())
    try:
        _do(action, ctx, txn, live, netns)
    except Exception as exc:
        rollback(ctx, txn, live)
        undo = f"; rollback problems: {'; '.join(txn.undo_errors)}" if txn.undo_errors else ""
        raise LniRolledBack(
            f"{action.describe()} failed: {exc}; rolled back to the previous files and links{undo}"
        ) from exc
    if isinstance(action, AwaitBridgeAddress):
        end(ctx)


def _do(
    action: NetworkAction, ctx: Ctx, txn: Transaction, live: netlink.Netlink, netns: str | None
) -> None:
    match action:
        case WriteNetworkFiles(_, files):
            for f in files:
                ctx.files.write(f.path, f.content, f.mode)
        case ApplyNetworkConfig(manager, bridge, port):
            paths = [ctx.files.for_program(p) for p in txn.files]
            exists = txn.bridge_before is not None
            apply_manager(ctx, manager, bridge, port, paths, bridge_exists=exists)
        case CreateBridge(bridge, mac):
            live.create_bridge(bridge, mac)
        case SetBridgeMac(bridge, mac):
            live.set_mac(bridge, mac)
        case EnslaveLink(port, _, bridge):
            live.enslave(port, bridge)
        case StartDhcpClient(bridge, metric):
            txn.dhcp_started = True
            start_dhcp_client(ctx, bridge, metric, netns)
        case AddBridgeAddress(bridge, address, gateway, metric):
            ip, _, prefix = address.partition("/")
            live.add_address(bridge, ip, int(prefix))
            if gateway:
                live.add_default_route(gateway, metric)
        case AwaitBridgeAddress(bridge, timeout):
            if not live.wait_for_ipv4(bridge, timeout):
                raise AgentError(
                    f"no IPv4 address on {bridge} after {timeout:g} s; seen: {_seen(txn, live)}"
                )
        case SnapshotNetwork():
            raise AgentError("a second snapshot in the middle of a network change")
        case _:
            assert_never(action)


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


def start_dhcp_client(ctx: Ctx, bridge: str, metric: int, netns: str | None) -> None:
    """dhclient on the bridge, in the background (-nw); the caller waits for the address."""
    pid = dhclient_pid_file(bridge)
    lease = f"{LEASE_DIR}/dhclient-{bridge}.leases"
    ctx.files.mkdir(RUN_DIR)
    ctx.files.mkdir(LEASE_DIR)
    argv = [*netns_prefix(netns), "dhclient", "-4", "-nw"]
    argv += ["-pf", ctx.files.for_program(pid), "-lf", ctx.files.for_program(lease)]
    argv += ["-e", f"IF_METRIC={metric}", bridge]
    ctx.runner.run(argv, timeout=30)


def _seen(txn: Transaction, live: netlink.Netlink) -> str:
    links = {lk.name: lk for lk in live.read_links()}
    bridge, port = links.get(txn.bridge), links.get(txn.port)
    parts = []
    if bridge is None:
        parts.append(f"{txn.bridge} missing")
    else:
        parts.append(
            f"{txn.bridge} {bridge.operstate} mac {bridge.mac} "
            f"addresses {ipv4_cidrs(bridge) or 'none'}"
        )
    if port is None:
        parts.append(f"{txn.port} missing")
    else:
        parts.append(f"{txn.port} {port.operstate} master {port.master or 'none'}")
    return ", ".join(parts)
