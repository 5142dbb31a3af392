"""What the LNI step observes: the LNI (from IMDS) and its link, the bridge, the network
manager and its files, who else configures the LNI, and proxy ARP; and how it finds them.

The LNI is the IMDS interface at lni.device_index on lni.network_card (or lni.mac), found in
the kernel by its permanent MAC. The management interface (device 0) is found the same way,
so that nothing ever touches it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from cockpit_agent.config import LniConfig
from cockpit_agent.engine import Ctx
from cockpit_agent.facts.imds import ImdsInterface
from cockpit_agent.facts.links import Link, link_by_mac
from cockpit_agent.facts.platform import Platform
from cockpit_agent.render.bridge import BridgeSpec, RenderedFile, StaticAddress
from cockpit_agent.render.netplan import render_netplan
from cockpit_agent.render.networkd import render_networkd
from cockpit_agent.render.networkmanager import render_networkmanager
from cockpit_agent.steps.lni.actions import Manager
from cockpit_agent.steps.lni.owners import Owners, detect_owners

RENDERERS: dict[Manager, Callable[[BridgeSpec], list[RenderedFile]]] = {
    "networkd": render_networkd,
    "NetworkManager": render_networkmanager,
    "netplan": render_netplan,
    "none": lambda spec: [],
}


@dataclass(frozen=True)
class LniObserved:
    """What the LNI step found: the LNI, the bridge, the manager and its files."""

    problem: str | None
    manager: Manager | None = None
    lni: ImdsInterface | None = None
    link: Link | None = None
    bridge: Link | None = None
    management: tuple[Link, ...] = ()
    spec: BridgeSpec | None = None
    desired_files: tuple[RenderedFile, ...] = ()
    current_files: dict[str, str | None] = field(default_factory=dict)
    owners: Owners = field(default_factory=Owners)
    proxy_arp: bool | None = None


def observe(ctx: Ctx, netns: str | None) -> LniObserved:
    """Find the LNI and its link, the bridge, the manager's files and who else is there."""
    config = ctx.config.lni
    facts = ctx.facts
    if not facts.interfaces:
        why = facts.errors.get("imds", "IMDS listed no network interfaces")
        return LniObserved(problem=f"cannot find the LNI without IMDS: {why}")
    manager, problem = choose_manager(facts.platform)
    if manager is None:
        return LniObserved(problem=problem)
    lni, problem = find_lni(config, facts.interfaces)
    management = management_links(facts.interfaces, facts.links)
    if lni is None:
        return LniObserved(problem=problem, manager=manager, management=management)
    link = link_by_mac(facts.links, lni.mac)
    bridge = next((lk for lk in facts.links if lk.name == config.bridge), None)
    base = LniObserved(
        problem=None, manager=manager, lni=lni, link=link, bridge=bridge, management=management
    )
    problem = _link_problem(config, base, facts.links)
    if problem or link is None:
        return replace(base, problem=problem)
    spec = bridge_spec(config, link, lni.mac)
    files = tuple(RENDERERS[manager](spec))
    return replace(
        base,
        spec=spec,
        desired_files=files,
        current_files={f.path: ctx.files.read(f.path) for f in files},
        owners=detect_owners(ctx.files, link.name),
        proxy_arp=_proxy_arp(ctx, config, netns) if bridge is not None else None,
    )


def choose_manager(platform: Platform | None) -> tuple[Manager | None, str | None]:
    """The manager to write for, or a problem: netplan first (it drives the others)."""
    if platform is None:
        return None, "the platform facts could not be read"
    running = platform.network_manager
    if running == "ifupdown":
        return None, (
            "this host runs ifupdown, which the LNI step does not support; use systemd-networkd "
            "or NetworkManager, or set lni.enabled = false"
        )
    if running is None:
        return "none", None
    return ("netplan" if platform.netplan else running), None


def find_lni(
    config: LniConfig, interfaces: list[ImdsInterface]
) -> tuple[ImdsInterface | None, str]:
    """The IMDS interface that is the LNI, or None and what to check."""
    if config.mac is not None:
        for iface in interfaces:
            if iface.mac.lower() == config.mac:
                return iface, ""
        return None, f"lni.mac = {config.mac} is not among the instance's interfaces in IMDS"
    for iface in interfaces:
        if iface.device_number == config.device_index and iface.network_card == config.network_card:
            return iface, ""
    listed = ", ".join(
        f"{i.mac} (card {i.network_card}, device {i.device_number})" for i in interfaces
    )
    return None, (
        f"no LNI: IMDS lists no interface at device index {config.device_index} on network "
        f"card {config.network_card} (it lists: {listed or 'none'}). Check that the Outposts "
        f"subnet has EnableLniAtDeviceIndex = {config.device_index} "
        "(aws ec2 describe-subnets) and that the launch template attaches a network interface "
        f"at device index {config.device_index} in that subnet"
    )


def management_links(interfaces: list[ImdsInterface], links: list[Link]) -> tuple[Link, ...]:
    """The kernel links of the device-0 interfaces: never modified."""
    macs = {i.mac.lower() for i in interfaces if i.device_number == 0}
    return tuple(link for link in links if (link.hardware_mac or "").lower() in macs)


def bridge_spec(config: LniConfig, link: Link, mac: str) -> BridgeSpec:
    """The desired bridge from the configuration and the LNI's link."""
    static = None
    if config.address is not None:
        static = StaticAddress(config.address, config.gateway, tuple(config.dns))
    return BridgeSpec(
        bridge=config.bridge,
        port=link.name,
        port_mac=mac.lower(),
        port_mac_permanent=link.permanent_mac is not None,
        static=static,
        route_metric=config.route_metric,
        proxy_arp=config.mode == "route",
    )


def ipv4_cidrs(link: Link | None) -> list[str]:
    """The link's IPv4 addresses as address/prefix."""
    return [f"{a.address}/{a.prefixlen}" for a in link.ipv4] if link else []


def netns_prefix(netns: str | None) -> list[str]:
    """The argv prefix that runs a program inside `netns` (nothing for this namespace)."""
    return ["ip", "netns", "exec", netns] if netns else []


def proxy_arp_key(bridge: str) -> str:
    """The sysctl of the bridge's proxy ARP, in the slash form: a bridge name may contain
    dots."""
    return f"net/ipv4/conf/{bridge}/proxy_arp"


def _link_problem(config: LniConfig, seen: LniObserved, links: list[Link]) -> str | None:
    assert seen.lni is not None
    if seen.link is None:
        names = ", ".join(f"{lk.name} {lk.hardware_mac}" for lk in links if lk.kind is None)
        return (
            f"IMDS lists the LNI {seen.lni.mac} at device index {seen.lni.device_number}, "
            f"but no link has that MAC (links: {names or 'none'}); is the interface "
            "attached and its driver loaded?"
        )
    if seen.link.master not in (None, config.bridge):
        return (
            f"the LNI {seen.link.name} is already a port of {seen.link.master}; the agent "
            f"does not take it from there (release it, or set lni.bridge = "
            f'"{seen.link.master}")'
        )
    if seen.bridge is not None and seen.bridge.kind != "bridge":
        return f"{config.bridge} exists and is a {seen.bridge.kind or 'device'}, not a bridge"
    return None


def _proxy_arp(ctx: Ctx, config: LniConfig, netns: str | None) -> bool | None:
    if config.mode != "route":
        return None
    argv = [*netns_prefix(netns), "sysctl", "-n", proxy_arp_key(config.bridge)]
    return ctx.runner.run(argv).stdout.strip() == "1"
