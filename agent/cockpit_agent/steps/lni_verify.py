"""The LNI step's verify (also run by `cockpit-agent check`): reads the live host only."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import psutil

from cockpit_agent.config import LniConfig
from cockpit_agent.engine import Ctx, Finding
from cockpit_agent.errors import CommandFailed
from cockpit_agent.facts.links import Link, link_by_mac
from cockpit_agent.host.netlink import Netlink
from cockpit_agent.render.libvirt_network import (
    LibvirtNetworkSpec,
    network_xml_matches,
    render_libvirt_network,
)
from cockpit_agent.steps.lni_libvirt import (
    DEFAULT_NETWORK,
    LibvirtObserved,
    NetworkState,
    observe_libvirt,
)

if TYPE_CHECKING:
    from cockpit_agent.steps.lni import LniObserved

SSH_PORT = 22


def _ipv4(link: Link) -> list[str]:
    return [a.address for a in link.addresses if a.family == 2]


def _bridge_findings(config: LniConfig, mac: str, links: list[Link]) -> list[Finding]:
    bridge = next((lk for lk in links if lk.name == config.bridge), None)
    port = link_by_mac(links, mac)
    if bridge is None:
        return [Finding("critical", "lni-bridge-missing", f"{config.bridge} does not exist")]
    problems = []
    if not bridge.up:
        problems.append(f"{config.bridge} is {bridge.operstate}")
    if (bridge.mac or "").lower() != mac:
        problems.append(f"{config.bridge} has MAC {bridge.mac}, not the LNI's {mac}")
    if port is None:
        problems.append(f"no link has the LNI's MAC {mac}")
    elif port.master != config.bridge:
        problems.append(f"the LNI {port.name} is not a port of {config.bridge}")
    addresses = _ipv4(bridge)
    if not addresses:
        problems.append(f"{config.bridge} has no IPv4 address")
    elif config.address is not None and str(config.address.ip) not in addresses:
        problems.append(f"{config.bridge} lacks the configured {config.address}")
    if problems:
        return [Finding("critical", "lni-bridge-broken", "; ".join(problems))]
    return [
        Finding(
            "ok",
            "lni-bridge",
            f"{config.bridge} up with {mac}, LNI enslaved, {', '.join(addresses)}",
        )
    ]


def _ssh_finding(addresses: list[str]) -> Finding:
    try:
        listening = {
            c.laddr.ip
            for c in psutil.net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == SSH_PORT
        }
    except (psutil.Error, OSError) as exc:
        return Finding("unknown", "lni-ssh", f"cannot list listening sockets: {exc}")
    wildcard = listening & {"0.0.0.0", "::"}
    reachable = [a for a in addresses if a in listening or wildcard]
    if reachable:
        return Finding("ok", "lni-ssh", f"sshd listens on {', '.join(reachable)}:{SSH_PORT}")
    return Finding(
        "warning", "lni-ssh", f"sshd does not listen on the bridge's {', '.join(addresses)}"
    )


def _network_finding(name: str, seen: NetworkState | None, code: str = "lni-libvirt") -> Finding:
    if seen is None:
        return Finding("warning", code, f"libvirt network {name} is not defined")
    if not (seen.active and seen.autostart):
        state = f"active={seen.active}, autostart={seen.autostart}"
        return Finding("warning", code, f"libvirt network {name}: {state}")
    return Finding("ok", code, f"libvirt network {name} active and autostarted")


def _default_finding(config: LniConfig, seen: NetworkState | None) -> Finding:
    want = render_libvirt_network(LibvirtNetworkSpec(DEFAULT_NETWORK, config.bridge))
    if seen is not None and network_xml_matches(want, seen.xml):
        return _network_finding(DEFAULT_NETWORK, seen, "lni-default-network")
    what = "not defined" if seen is None else f"not on {config.bridge}"
    return Finding(
        "warning",
        "lni-default-network",
        f"new VMs do not get the LNI: libvirt network default is {what} "
        "(the lni step's summary says why)",
    )


def _libvirt_findings(
    ctx: Ctx, config: LniConfig, observed: LibvirtObserved | None
) -> list[Finding]:
    on = config.default_vm_network and config.mode == "bridge"
    names = (config.libvirt_network, DEFAULT_NETWORK) if on else (config.libvirt_network,)
    try:
        seen = observed or observe_libvirt(ctx, names)
    except CommandFailed as exc:
        return [Finding("warning", "lni-libvirt", f"libvirt does not answer: {exc}")]
    findings = [_network_finding(config.libvirt_network, seen.networks.get(config.libvirt_network))]
    if on:
        findings.append(_default_finding(config, seen.networks.get(DEFAULT_NETWORK)))
    return findings


def verify_lni(
    ctx: Ctx,
    live: Netlink,
    which: Callable[[str], str | None],
    observed: LniObserved | None = None,
) -> list[Finding]:
    """Findings on the bridge, the management interface, sshd and the libvirt network; links
    and libvirt are read again unless `observed` (from this run's facts) is given."""
    from cockpit_agent.steps.lni import find_lni, management_links  # noqa: PLC0415

    config: LniConfig = ctx.config.lni
    lni, problem = find_lni(config, ctx.facts.interfaces)
    if lni is None:
        return [Finding("critical", "lni-missing", problem or "no LNI in IMDS")]
    links = live.read_links() if observed is None else ctx.facts.links
    findings = _bridge_findings(config, lni.mac.lower(), links)
    for mgmt in management_links(ctx.facts.interfaces, links):
        if mgmt.master is not None:
            findings.append(
                Finding("critical", "lni-management", f"{mgmt.name} is a port of {mgmt.master}")
            )
    bridge = next((lk for lk in links if lk.name == config.bridge), None)
    if live.netns is None and bridge is not None and _ipv4(bridge):
        findings.append(_ssh_finding(_ipv4(bridge)))
    if which("virsh") is not None:
        libvirt = observed.libvirt if observed else None
        findings += _libvirt_findings(ctx, config, libvirt)
    return findings
