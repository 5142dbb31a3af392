"""libvirt's `default` network on the LNI bridge (lni.default_vm_network), and back again.

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
from dataclasses import dataclass, replace
from typing import Any

from cockpit_agent.engine import Ctx
from cockpit_agent.render.libvirt_network import network_xml_matches, xml_covers
from cockpit_agent.steps.lni_libvirt import (
    DEFAULT_NETWORK,
    LibvirtAction,
    LibvirtObserved,
    NetworkState,
    converge_network,
    define_network,
    observe_domains,
    record,
    remove_network,
    virsh,
)

STOCK_RENAMED = "default-nat"
STOCK_TEMPLATE = "/usr/share/libvirt/networks/default.xml"
# libvirt's template (src/network/default.xml.in) as Debian 12's libvirt-daemon-config-network
# 9.0.0 and RHEL's libvirt-daemon-config-network ship it at STOCK_TEMPLATE; used when the host
# has no such file.
LIBVIRT_STOCK_XML = """<network>
  <name>default</name>
  <bridge name='virbr0'/>
  <forward/>
  <ip address='192.168.122.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='192.168.122.2' end='192.168.122.254'/>
    </dhcp>
  </ip>
</network>
"""


@dataclass(frozen=True)
class MoveLibvirtNetwork:
    """Give a network another name. libvirt has no rename: `old` is stopped and undefined,
    then the same definition (UUID, MAC and all) is defined as `new`, autostarted and started
    as `old` was. `present` false: `old` is gone already (a run killed half-way through this
    action), so `xml` comes from the step's record."""

    old: str
    new: str
    xml: str
    active: bool
    autostart: bool
    present: bool = True
    consequence: str = ""

    def describe(self) -> str:
        if self.present:
            text = f"rename libvirt network {self.old} to {self.new}"
        else:
            text = f"define libvirt network {self.new} from the stock definition in the state file"
        return f"{text} ({self.consequence})" if self.consequence else text


@dataclass(frozen=True)
class RemoveLibvirtNetwork:
    """Stop (if active) and undefine the agent's own network."""

    name: str
    active: bool
    consequence: str = ""

    def describe(self) -> str:
        text = f"undefine the agent's libvirt network {self.name}"
        return f"{text} ({self.consequence})" if self.consequence else text


DefaultAction = MoveLibvirtNetwork | RemoveLibvirtNetwork


def observe_default(ctx: Ctx, seen: LibvirtObserved) -> LibvirtObserved:
    """Add what deciding on `default` needs: the VMs (when `default` or `default-nat` is
    defined), the host's stock template and a copy of the step's record."""
    in_play = any(seen.networks.get(n) for n in (DEFAULT_NETWORK, STOCK_RENAMED))
    lni_data = ctx.step_data.get("lni", {})
    return replace(
        seen,
        domains=observe_domains(ctx) if in_play else (),
        stock_xml=ctx.files.read(STOCK_TEMPLATE) or LIBVIRT_STOCK_XML,
        record=dict(lni_data.get("default_network", {})),
    )


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


def plan_default(
    on: bool, want: str, seen: LibvirtObserved
) -> tuple[list[LibvirtAction | DefaultAction], str]:
    """The actions that put `default` on the bridge (on) or give it back to libvirt's stock
    network (off), and one line on what new VMs get."""
    return _plan_on(want, seen) if on else _plan_off(seen)


def _plan_on(want: str, seen: LibvirtObserved) -> tuple[list[LibvirtAction | DefaultAction], str]:
    default = seen.networks.get(DEFAULT_NETWORK)
    renamed = seen.networks.get(STOCK_RENAMED)
    stock = seen.record.get("stock")
    actions: list[LibvirtAction | DefaultAction] = []
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


def _plan_off(seen: LibvirtObserved) -> tuple[list[LibvirtAction | DefaultAction], str]:
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
    actions: list[LibvirtAction | DefaultAction] = []
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


def renamed_xml(xml: str, name: str) -> str:
    """The network definition `xml` under another name (UUID and all else unchanged)."""
    root = ET.fromstring(xml)  # noqa: S314 - from the local libvirtd or the step's record
    element = root.find("name")
    if element is None:
        element = ET.SubElement(root, "name")
    element.text = name
    return ET.tostring(root, encoding="unicode") + "\n"


def apply_default(action: DefaultAction, ctx: Ctx) -> None:
    """Carry out one action on `default` / `default-nat`, recording it first."""
    kept = record(ctx)
    if isinstance(action, RemoveLibvirtNetwork):
        remove_network(ctx, action.name, action.active)
        kept.pop("created", None)
        ctx.checkpoint()
        return
    if action.new == STOCK_RENAMED and action.present:
        kept["stock"] = {"xml": action.xml, "active": action.active, "autostart": action.autostart}
        ctx.checkpoint()
    if action.present:
        remove_network(ctx, action.old, action.active)
    define_network(ctx, action.new, renamed_xml(action.xml, action.new))
    if action.autostart:
        ctx.runner.run(virsh("net-autostart", action.new))
    if action.active:
        ctx.runner.run(virsh("net-start", action.new))
    if action.new == DEFAULT_NETWORK:
        # The stock network has its name back: nothing of the agent's is left to undo.
        kept.clear()
        ctx.checkpoint()
