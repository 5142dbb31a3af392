"""The LNI step's plan: pure, from what was observed and the configuration to the actions.

Desired: bridge lni.bridge carrying the LNI's MAC, the LNI its only port, the address
configuration (DHCP, or lni.address) on the bridge; written for the network manager the host
runs (networkd, NetworkManager, netplan) or, with none, built live through netlink with
dhclient. The network actions start with a snapshot for their rollback and end waiting for
the bridge's address. The management interface is refused before anything is planned.
"""

from __future__ import annotations

from cockpit_agent.config import LniConfig
from cockpit_agent.errors import AgentError, UnsafeDevice
from cockpit_agent.facts.links import Link
from cockpit_agent.render.bridge import BridgeSpec
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
from cockpit_agent.steps.lni.observed import LniObserved, ipv4_cidrs


def plan_lni(observed: LniObserved, config: LniConfig) -> list[LniAction]:
    """Mask ec2-net-utils' units for the LNI, the network actions (per manager or live)
    behind their snapshot, then proxy ARP."""
    if observed.problem is not None:
        raise AgentError(observed.problem)
    link, spec, manager = observed.link, observed.spec, observed.manager
    assert link is not None and spec is not None and manager is not None
    if link in observed.management or spec.bridge in {m.name for m in observed.management}:
        raise UnsafeDevice(
            f"the LNI resolves to the management interface {link.name}; refusing to touch it"
        )
    actions: list[LniAction] = []
    owners = observed.owners
    if owners.ec2_net_utils and manager in ("networkd", "netplan") and owners.unmasked_units:
        actions.append(MaskEc2NetUtilsUnits(link.name, owners.unmasked_units))
    network = _network(observed, link, spec, manager, config)
    if network:
        paths = tuple(f.path for f in observed.desired_files)
        actions += [SnapshotNetwork(manager, spec.bridge, spec.port, paths), *network]
    if config.mode == "route" and observed.proxy_arp is not True:
        actions.append(EnableProxyArp(spec.bridge))
    return actions


def _network(
    observed: LniObserved, link: Link, spec: BridgeSpec, manager: Manager, config: LniConfig
) -> list[NetworkAction]:
    bridge = observed.bridge
    has_address = _bridge_addressed(bridge, spec)
    actions: list[NetworkAction] = []
    if bridge is not None and (bridge.mac or "").lower() != spec.mac:
        actions.append(SetBridgeMac(spec.bridge, spec.mac))
    if manager != "none":
        files_ok = all(
            observed.current_files.get(f.path) == f.content for f in observed.desired_files
        )
        if not files_ok:
            actions.append(
                WriteNetworkFiles(manager, observed.desired_files, link.name, spec.port_mac)
            )
        # A bridge set down keeps its address: down is drift of its own.
        bridge_down = bridge is not None and not bridge.up
        if not files_ok or link.master != spec.bridge or not has_address or bridge_down:
            actions.append(ApplyNetworkConfig(manager, spec.bridge, link.name))
    else:
        if bridge is None:
            actions.append(CreateBridge(spec.bridge, spec.mac))
        if link.master != spec.bridge:
            actions.append(EnslaveLink(link.name, spec.port_mac, spec.bridge))
        if not has_address:
            if spec.static is None:
                actions.append(StartDhcpClient(spec.bridge, spec.route_metric))
            else:
                gateway = spec.static.gateway
                actions.append(
                    AddBridgeAddress(
                        spec.bridge,
                        spec.static.address.with_prefixlen,
                        str(gateway) if gateway else None,
                        spec.route_metric,
                    )
                )
    if actions:
        actions.append(AwaitBridgeAddress(spec.bridge, config.address_timeout_seconds))
    return actions


def _bridge_addressed(bridge: Link | None, spec: BridgeSpec) -> bool:
    have = ipv4_cidrs(bridge)
    if spec.static is not None:
        return spec.static.address.with_prefixlen in have
    return bool(have)
