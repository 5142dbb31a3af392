"""The LNI step's libvirt part: the `lni` network on the bridge, defined, autostarted, started.

Only planned when libvirt is there (virsh installed and libvirtd answering). A network whose
definition differs is destroyed (if active), undefined and defined again: `net-define` on an
existing name with another UUID fails, and a changed definition of an active network only
takes effect after a restart anyway. libvirt's `default` network (lni.default_vm_network) is
lni_default_network's.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

from cockpit_agent.engine import Ctx
from cockpit_agent.render.libvirt_network import (
    LibvirtNetworkSpec,
    network_xml_matches,
    render_libvirt_network,
)

LIBVIRT_URI = "qemu:///system"
DEFAULT_NETWORK = "default"
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
class Domain:
    """A libvirt domain (VM) and the libvirt networks its interfaces name."""

    name: str
    running: bool
    networks: tuple[str, ...]


@dataclass(frozen=True)
class LibvirtObserved:
    """The libvirt networks that matter to the LNI step (None = not defined), the VMs that
    use them (read only when `default` or `default-nat` is defined), the stock `default`
    network's definition as this host ships it, and the step's record of what it moved and
    created (a copy of its step_data)."""

    networks: dict[str, NetworkState | None]
    all_names: tuple[str, ...]
    domains: tuple[Domain, ...] = ()
    stock_xml: str = ""
    record: dict[str, Any] = field(default_factory=dict)


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


LibvirtAction = DefineLibvirtNetwork | AutostartLibvirtNetwork | StartLibvirtNetwork


def net_info(ctx: Ctx, name: str) -> dict[str, str]:
    """`virsh net-info` as lower-case keys and values."""
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
        info = net_info(ctx, name)
        networks[name] = NetworkState(
            name=name,
            xml=xml,
            active=info.get("active") == "yes",
            autostart=info.get("autostart") == "yes",
        )
    return LibvirtObserved(networks=networks, all_names=tuple(listed))


def observe_domains(ctx: Ctx) -> tuple[Domain, ...]:
    """Every domain, whether it runs, and the networks its persistent definition names."""
    names = ctx.runner.run(virsh("list", "--all", "--name")).stdout.split("\n")
    names = [n.strip() for n in names if n.strip()]
    if not names:
        return ()
    running = {n.strip() for n in ctx.runner.run(virsh("list", "--name")).stdout.split("\n")}
    domains = []
    for name in names:
        xml = ctx.runner.run(virsh("dumpxml", "--inactive", name)).stdout
        root = ET.fromstring(xml)  # noqa: S314 - from the local libvirtd
        used = [
            source.get("network", "")
            for source in root.findall("./devices/interface[@type='network']/source")
        ]
        domains.append(Domain(name, name in running, tuple(n for n in used if n)))
    return tuple(domains)


def converge_network(name: str, xml: str, state: NetworkState | None) -> list[LibvirtAction]:
    """Define, autostart and start the network `xml` describes, as far as it is not so."""
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


def plan_libvirt(spec: LibvirtNetworkSpec, observed: LibvirtObserved) -> list[LibvirtAction]:
    """Actions for the LNI network."""
    return converge_network(spec.name, render_libvirt_network(spec), observed.networks[spec.name])


def record(ctx: Ctx) -> dict[str, Any]:
    """The step's record of libvirt's `default`: what it moved ("stock") and made ("created")."""
    kept: dict[str, Any] = ctx.step_data.setdefault("lni", {}).setdefault("default_network", {})
    return kept


def define_network(ctx: Ctx, name: str, xml: str) -> None:
    """`virsh net-define` from a file the agent writes."""
    path = f"{XML_DIR}/libvirt-network-{name}.xml"
    ctx.files.write(path, xml, 0o600)
    ctx.runner.run(virsh("net-define", str(ctx.files.path(path))))


def remove_network(ctx: Ctx, name: str, active: bool) -> None:
    """Stop (if active) and undefine a network."""
    if active:
        ctx.runner.run(virsh("net-destroy", name))
    ctx.runner.run(virsh("net-undefine", name))


def apply_libvirt(action: LibvirtAction, ctx: Ctx) -> None:
    """Carry out one libvirt action."""
    if isinstance(action, DefineLibvirtNetwork):
        if action.name == DEFAULT_NETWORK:
            # Only lni_default_network plans `default`: it is the agent's from here on.
            record(ctx)["created"] = action.xml
            ctx.checkpoint()
        if action.replace:
            remove_network(ctx, action.name, action.active)
        define_network(ctx, action.name, action.xml)
    elif isinstance(action, AutostartLibvirtNetwork):
        ctx.runner.run(virsh("net-autostart", action.name))
    else:
        ctx.runner.run(virsh("net-start", action.name))
