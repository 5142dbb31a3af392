"""The libvirt_network step's plan: pure, from what was observed to the actions.

The `lni` network (lni.libvirt_network) on the bridge: defined, autostarted, started. A
network whose definition differs is destroyed (if active), undefined and defined again:
`net-define` on an existing name with another UUID fails, and a changed definition of an
active network only takes effect after a restart anyway.

libvirt's `default` network on the LNI bridge (lni.default_vm_network), and back again:

virt-install, and so Cockpit's "Create VM" (which runs it without --network), gives a new VM
`<interface type='network'><source network='default'/>` unless the host's lowest-metric
default route leaves through a bridge (docs/adr/0014-new-vms-on-the-lni-by-default.md). On, in
bridge mode: libvirt's stock NAT network is renamed `default-nat` and `default` is defined on
the LNI bridge. Off, or in route mode: the agent's `default` is undefined and the stock network
gets its name back with its definition (UUID and MAC included), autostart and active state.

What the agent moves and creates goes into its step_data, and the state file is saved, before
it acts. It undefines only a `default` that record says it created and whose definition is the
one it recorded; it renames only libvirt's stock network (the shipped template, as libvirt
keeps it) or the `default-nat` it recorded. A network a running VM uses is not destroyed: the
change waits for a run when the VMs are stopped, and the summary names them.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from cockpit_agent.config import LniConfig
from cockpit_agent.render.libvirt_network import (
    LibvirtNetworkSpec,
    network_xml_matches,
    render_libvirt_network,
    xml_covers,
)
from cockpit_agent.steps.libvirt_network.actions import (
    AutostartLibvirtNetwork,
    DefineLibvirtNetwork,
    LibvirtNetworkAction,
    MoveLibvirtNetwork,
    RemoveLibvirtNetwork,
    StartLibvirtNetwork,
)
from cockpit_agent.steps.libvirt_network.observed import (
    DEFAULT_NETWORK,
    STOCK_RENAMED,
    LibvirtObserved,
    NetworkState,
)


def plan_libvirt_network(observed: LibvirtObserved) -> list[LibvirtNetworkAction]:
    """The `lni` network's actions, then `default`'s; nothing while libvirt is not there."""
    if observed.unavailable is not None:
        return []
    config = observed.config
    spec = LibvirtNetworkSpec(
        config.libvirt_network, config.bridge, config.mode, config.route_subnet
    )
    actions = converge_network(
        spec.name, render_libvirt_network(spec), observed.networks[spec.name]
    )
    return actions + plan_default(observed)[0]


def default_vm_network(config: LniConfig) -> bool:
    """Whether `default` goes on the bridge: with default_vm_network, in bridge mode only (in
    route mode it would put VMs on the LAN with their own MACs, which route mode avoids)."""
    return config.default_vm_network and config.mode == "bridge"


def plan_default(observed: LibvirtObserved) -> tuple[list[LibvirtNetworkAction], str]:
    """The actions that put `default` on the bridge (on) or give it back to libvirt's stock
    network (off), and one line on what new VMs get."""
    config = observed.config
    if default_vm_network(config):
        want = render_libvirt_network(LibvirtNetworkSpec(DEFAULT_NETWORK, config.bridge))
        actions, note = _plan_on(want, observed)
    else:
        actions, note = _plan_off(observed)
    if config.default_vm_network and config.mode == "route":
        route = "route mode: new VMs get libvirt's default, not the LNI"
        note = "; ".join(n for n in (route, note) if n)
    return actions, note


def converge_network(name: str, xml: str, state: NetworkState | None) -> list[LibvirtNetworkAction]:
    """Define, autostart and start the network `xml` describes, as far as it is not so."""
    if state is None:
        return [
            DefineLibvirtNetwork(name, xml),
            AutostartLibvirtNetwork(name),
            StartLibvirtNetwork(name),
        ]
    actions: list[LibvirtNetworkAction] = []
    active, autostart = state.active, state.autostart
    if not network_xml_matches(xml, state.xml):
        actions.append(DefineLibvirtNetwork(name, xml, replace=True, active=state.active))
        active, autostart = False, False
    if not autostart:
        actions.append(AutostartLibvirtNetwork(name))
    if not active:
        actions.append(StartLibvirtNetwork(name))
    return actions


def is_stock(state: NetworkState, template: str) -> bool:
    """Whether `state` is libvirt's NAT network as shipped (libvirt adds a UUID, a MAC, the
    NAT port range and bridge defaults; an admin's additions such as DHCP hosts still count)."""
    forward = ET.fromstring(state.xml).find("forward")  # noqa: S314 - from the local libvirtd
    nat = forward is not None and forward.get("mode", "nat") == "nat"
    return nat and xml_covers(state.xml, template)


def _recorded_ours(state: NetworkState | None, kept: dict[str, Any]) -> bool:
    created = kept.get("created")
    return state is not None and created is not None and network_xml_matches(created, state.xml)


def _users(seen: LibvirtObserved, network: str, running: bool) -> list[str]:
    return [d.name for d in seen.domains if network in d.networks and d.running == running]


def _consequence(vms: list[str], network: str, then: str) -> str:
    return f"VMs that name {network}, {', '.join(vms)}: {then}" if vms else ""


def _plan_on(want: str, seen: LibvirtObserved) -> tuple[list[LibvirtNetworkAction], str]:
    default = seen.networks.get(DEFAULT_NETWORK)
    renamed = seen.networks.get(STOCK_RENAMED)
    stock = seen.record.get("stock")
    actions: list[LibvirtNetworkAction] = []
    nat = "new VMs get libvirt's NAT network default, not the LNI"
    if default is not None and is_stock(default, seen.stock_xml):
        if renamed is not None:
            return [], f"{nat}: a network {STOCK_RENAMED} exists already, so default stays"
        running = _users(seen, DEFAULT_NETWORK, running=True)
        if running:
            return [], f"{nat} while running VMs use it ({', '.join(running)})"
        stopped = _users(seen, DEFAULT_NETWORK, running=False)
        then = "at their next start they are on the LNI"
        actions.append(
            MoveLibvirtNetwork(
                DEFAULT_NETWORK,
                STOCK_RENAMED,
                default.xml,
                default.active,
                default.autostart,
                consequence=_consequence(stopped, DEFAULT_NETWORK, then),
            )
        )
        default = None
    elif default is None and stock is not None and renamed is None:
        # Killed between undefining the stock network and defining it as default-nat.
        actions.append(
            MoveLibvirtNetwork(
                DEFAULT_NETWORK,
                STOCK_RENAMED,
                stock["xml"],
                stock["active"],
                stock["autostart"],
                present=False,
            )
        )
    if (
        default is None
        or network_xml_matches(want, default.xml)
        or _recorded_ours(default, seen.record)
    ):
        return actions + converge_network(DEFAULT_NETWORK, want, default), "new VMs get the LNI"
    return [], (
        "libvirt network default is neither libvirt's stock NAT network nor the agent's: "
        "left alone, and new VMs get it, not the LNI"
    )


def _plan_off(seen: LibvirtObserved) -> tuple[list[LibvirtNetworkAction], str]:
    default = seen.networks.get(DEFAULT_NETWORK)
    renamed = seen.networks.get(STOCK_RENAMED)
    stock = seen.record.get("stock")
    ours = _recorded_ours(default, seen.record)
    if stock is None and not ours:
        return [], ""
    if default is not None and not ours:
        kept = f"; libvirt's stock network stays {STOCK_RENAMED}" if stock else ""
        return [], f"libvirt network default is not the agent's: left alone{kept}"
    busy = (_users(seen, DEFAULT_NETWORK, True) if ours else []) + (
        _users(seen, STOCK_RENAMED, True) if stock and renamed else []
    )
    if busy:
        return [], (
            f"libvirt's stock default is given back once no running VM uses the agent's "
            f"default or {STOCK_RENAMED} ({', '.join(busy)})"
        )
    actions: list[LibvirtNetworkAction] = []
    if default is not None:
        after = "libvirt's NAT network" if stock else "no network (the host had no default)"
        stopped = _users(seen, DEFAULT_NETWORK, running=False)
        actions.append(
            RemoveLibvirtNetwork(
                DEFAULT_NETWORK,
                default.active,
                _consequence(stopped, DEFAULT_NETWORK, f"at their next start they get {after}"),
            )
        )
    if stock is None:
        return actions, ""
    if renamed is None:
        move = MoveLibvirtNetwork(
            STOCK_RENAMED,
            DEFAULT_NETWORK,
            stock["xml"],
            stock["active"],
            stock["autostart"],
            present=False,
        )
    else:
        stopped = _users(seen, STOCK_RENAMED, running=False)
        then = f"{STOCK_RENAMED} goes away; point them at default, the same NAT network"
        move = MoveLibvirtNetwork(
            STOCK_RENAMED,
            DEFAULT_NETWORK,
            renamed.xml,
            renamed.active,
            renamed.autostart,
            consequence=_consequence(stopped, STOCK_RENAMED, then),
        )
    return [*actions, move], ""
