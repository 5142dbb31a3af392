"""The LNI step's libvirt part: the `lni` network on the bridge, defined, autostarted, started.

Only planned when libvirt is there (virsh installed and libvirtd answering). A network whose
definition differs is destroyed (if active), undefined and defined again: `net-define` on an
existing name with another UUID fails, and a changed definition of an active network only
takes effect after a restart anyway. With lni.default_vm_network, libvirt's stock `default`
(NAT) network is kept as `default-nat` and `default` becomes a second network on the bridge
(docs/adr/0007-lni-libvirt-default-network.md).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from cockpit_agent.engine import Ctx
from cockpit_agent.errors import CommandFailed
from cockpit_agent.render.libvirt_network import (
    LibvirtNetworkSpec,
    network_xml_matches,
    render_libvirt_network,
)

LIBVIRT_URI = "qemu:///system"
DEFAULT_NETWORK = "default"
STOCK_RENAMED = "default-nat"
XML_DIR = "/run/cockpit-agent"


def virsh(*args: str) -> list[str]:
    """A virsh command line on the system connection."""
    return ["virsh", "-q", "-c", LIBVIRT_URI, *args]


@dataclass(frozen=True)
class NetworkState:
    """One libvirt network as `net-info` and `net-dumpxml --inactive` show it."""

    name: str
    xml: str
    active: bool
    autostart: bool


@dataclass(frozen=True)
class LibvirtObserved:
    """The libvirt networks that matter to the LNI step (None = not defined)."""

    networks: dict[str, NetworkState | None]
    all_names: tuple[str, ...]


@dataclass(frozen=True)
class DefineLibvirtNetwork:
    """Define a libvirt network from XML (undefining a different definition first)."""

    name: str
    xml: str
    replace: bool = False
    active: bool = False

    def describe(self) -> str:
        how = "redefine" if self.replace else "define"
        return f"{how} libvirt network {self.name}"


@dataclass(frozen=True)
class AutostartLibvirtNetwork:
    """Mark a libvirt network autostart."""

    name: str

    def describe(self) -> str:
        return f"autostart libvirt network {self.name}"


@dataclass(frozen=True)
class StartLibvirtNetwork:
    """Start a libvirt network."""

    name: str

    def describe(self) -> str:
        return f"start libvirt network {self.name}"


@dataclass(frozen=True)
class RenameLibvirtNetwork:
    """Keep a network under a new name (libvirt has no rename: define new, undefine old)."""

    old: str
    new: str

    def describe(self) -> str:
        return f"rename libvirt network {self.old} to {self.new}"


LibvirtAction = (
    DefineLibvirtNetwork | AutostartLibvirtNetwork | StartLibvirtNetwork | RenameLibvirtNetwork
)


def _info(ctx: Ctx, name: str) -> dict[str, str]:
    out = ctx.runner.run(virsh("net-info", name)).stdout
    info = {}
    for line in out.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            info[key.strip().lower()] = value.strip().lower()
    return info


def observe_libvirt(ctx: Ctx, names: tuple[str, ...]) -> LibvirtObserved:
    """Read the named networks; raises CommandFailed when libvirtd does not answer."""
    listed = ctx.runner.run(virsh("net-list", "--all", "--name")).stdout.split()
    networks: dict[str, NetworkState | None] = {}
    for name in names:
        if name not in listed:
            networks[name] = None
            continue
        xml = ctx.runner.run(virsh("net-dumpxml", "--inactive", name)).stdout
        info = _info(ctx, name)
        networks[name] = NetworkState(
            name=name,
            xml=xml,
            active=info.get("active") == "yes",
            autostart=info.get("autostart") == "yes",
        )
    return LibvirtObserved(networks=networks, all_names=tuple(listed))


def _converge_one(name: str, xml: str, state: NetworkState | None) -> list[LibvirtAction]:
    if state is None:
        return [
            DefineLibvirtNetwork(name, xml),
            AutostartLibvirtNetwork(name),
            StartLibvirtNetwork(name),
        ]
    actions: list[LibvirtAction] = []
    active, autostart = state.active, state.autostart
    if not network_xml_matches(xml, state.xml):
        actions.append(DefineLibvirtNetwork(name, xml, replace=True, active=state.active))
        active, autostart = False, False
    if not autostart:
        actions.append(AutostartLibvirtNetwork(name))
    if not active:
        actions.append(StartLibvirtNetwork(name))
    return actions


def plan_libvirt(
    spec: LibvirtNetworkSpec, observed: LibvirtObserved, default_vm_network: bool
) -> list[LibvirtAction]:
    """Actions for the LNI network and, with default_vm_network, for `default`."""
    actions = _converge_one(spec.name, render_libvirt_network(spec), observed.networks[spec.name])
    if not default_vm_network or spec.name == DEFAULT_NETWORK:
        return actions
    default_spec = LibvirtNetworkSpec(DEFAULT_NETWORK, spec.bridge, spec.mode, spec.route_subnet)
    if spec.mode == "route":
        # Two routed networks cannot share one block and bridge; route mode's default is lni.
        return actions
    want = render_libvirt_network(default_spec)
    current = observed.networks.get(DEFAULT_NETWORK)
    if (
        current is not None
        and not network_xml_matches(want, current.xml)
        and STOCK_RENAMED not in observed.all_names
    ):
        actions.append(RenameLibvirtNetwork(DEFAULT_NETWORK, STOCK_RENAMED))
        current = None
    return actions + _converge_one(DEFAULT_NETWORK, want, current)


def _define(ctx: Ctx, name: str, xml: str) -> None:
    path = f"{XML_DIR}/libvirt-network-{name}.xml"
    ctx.files.write(path, xml, 0o600)
    ctx.runner.run(virsh("net-define", str(ctx.files.path(path))))


def apply_libvirt(action: LibvirtAction, ctx: Ctx) -> None:
    """Carry out one libvirt action."""
    if isinstance(action, DefineLibvirtNetwork):
        if action.replace:
            if action.active:
                ctx.runner.run(virsh("net-destroy", action.name))
            ctx.runner.run(virsh("net-undefine", action.name))
        _define(ctx, action.name, action.xml)
    elif isinstance(action, AutostartLibvirtNetwork):
        ctx.runner.run(virsh("net-autostart", action.name))
    elif isinstance(action, StartLibvirtNetwork):
        ctx.runner.run(virsh("net-start", action.name))
    else:
        _rename(ctx, action)


def _rename(ctx: Ctx, action: RenameLibvirtNetwork) -> None:
    dumped = ctx.runner.run(virsh("net-dumpxml", "--inactive", action.old)).stdout
    root = ET.fromstring(dumped)  # noqa: S314 - from the local libvirtd
    name = root.find("name")
    if name is None:
        raise CommandFailed(virsh("net-dumpxml", action.old), 0, "no <name> in the XML")
    name.text = action.new
    for generated in root.findall("uuid"):
        root.remove(generated)
    info = _info(ctx, action.old)
    if info.get("active") == "yes":
        ctx.runner.run(virsh("net-destroy", action.old))
    ctx.runner.run(virsh("net-undefine", action.old))
    _define(ctx, action.new, ET.tostring(root, encoding="unicode") + "\n")
    if info.get("autostart") == "yes":
        ctx.runner.run(virsh("net-autostart", action.new))
    if info.get("active") == "yes":
        # Its bridge (virbr0) is free again: the new `default` uses the LNI bridge.
        ctx.runner.run(virsh("net-start", action.new))
