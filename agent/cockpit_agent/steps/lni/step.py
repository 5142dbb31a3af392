"""The LNI step: bridge the Local Network Interface for libvirt, persisted, reversible.

observe (observed.py) finds the LNI, its link, the bridge and the network manager; plan
(plan.py) decides the bridge's files or live changes; apply (apply.py) makes them, every one
checked against the management interface, and rolls the change back (rollback.py) when the
bridge has no address in time; verify (here) reads the live links. The libvirt network on the
bridge is a step of its own (steps/libvirt_network).
"""

from __future__ import annotations

from cockpit_agent.config import Config, LniConfig
from cockpit_agent.engine import Ctx, Finding
from cockpit_agent.errors import AgentError
from cockpit_agent.facts.links import Link, link_by_mac
from cockpit_agent.host import netlink, procs
from cockpit_agent.steps.lni.actions import MANAGER_LABEL, LniAction
from cockpit_agent.steps.lni.observed import (
    LniObserved,
    find_lni,
    ipv4_cidrs,
    management_links,
    observe,
)
from cockpit_agent.steps.lni.plan import plan_lni

SSH_PORT = 22


class LniStep:
    """Bridge the LNI and persist it through the host's network manager.

    `netns` runs every live operation (netlink, dhclient, sysctl) inside that network
    namespace; `live` does the netlink part (unit tests pass a fake).
    """

    name = "lni"
    depends_on: tuple[str, ...] = ()

    def __init__(self, netns: str | None = None, live: netlink.Netlink | None = None) -> None:
        self.netns = netns
        self.live = live or netlink.Netlink(netns)

    def enabled(self, config: Config) -> bool:
        """lni.enabled."""
        return config.lni.enabled

    def observe(self, ctx: Ctx) -> LniObserved:
        """See observed.observe."""
        return observe(ctx, self.netns)

    def plan(self, observed: LniObserved, ctx: Ctx) -> list[LniAction]:
        """See plan.py."""
        return plan_lni(observed, ctx.config.lni)

    def apply(self, action: LniAction, ctx: Ctx) -> None:
        """See apply.py."""
        from cockpit_agent.steps.lni.apply import apply_action  # noqa: PLC0415 - check never applies

        apply_action(action, ctx, self.live, self.netns)

    def verify(self, ctx: Ctx, observed: LniObserved | None = None) -> list[Finding]:
        """On the live host: bridge up with the LNI's MAC, LNI enslaved, address present, the
        management interface no port of anything, sshd reachable on the bridge; links are
        read again unless `observed` (from this run's facts) is given."""
        config = ctx.config.lni
        lni, problem = find_lni(config, ctx.facts.interfaces)
        if lni is None:
            return [Finding("critical", "lni-missing", problem or "no LNI in IMDS")]
        links = self.live.read_links() if observed is None else ctx.facts.links
        findings = _bridge_findings(config, lni.mac.lower(), links)
        for mgmt in management_links(ctx.facts.interfaces, links):
            if mgmt.master is not None:
                findings.append(
                    Finding("critical", "lni-management", f"{mgmt.name} is a port of {mgmt.master}")
                )
        bridge = next((lk for lk in links if lk.name == config.bridge), None)
        if self.live.netns is None and bridge is not None and bridge.ipv4:
            findings.append(_ssh_finding([a.address for a in bridge.ipv4]))
        return findings

    def summarize(self, observed: LniObserved) -> str:
        """One line: the LNI, the manager, the bridge's state."""
        if observed.problem is not None:
            return observed.problem
        link, spec, manager = observed.link, observed.spec, observed.manager
        assert link is not None and spec is not None and manager is not None
        state = "bridged" if link.master == spec.bridge else "not bridged"
        addresses = ", ".join(ipv4_cidrs(observed.bridge) or ipv4_cidrs(link)) or "no IPv4 address"
        via = MANAGER_LABEL[manager]
        text = f"LNI {link.name} ({spec.mac}) -> {spec.bridge} via {via}: {state}, {addresses}"
        if observed.owners.names:
            text += f"; also configured by {', '.join(observed.owners.names)}"
        return text


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
    addresses = [a.address for a in bridge.ipv4]
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
        listening = procs.listening_tcp(SSH_PORT)
    except AgentError as exc:
        return Finding("unknown", "lni-ssh", str(exc))
    wildcard = listening & {"0.0.0.0", "::"}
    reachable = [a for a in addresses if a in listening or wildcard]
    if reachable:
        return Finding("ok", "lni-ssh", f"sshd listens on {', '.join(reachable)}:{SSH_PORT}")
    return Finding(
        "warning", "lni-ssh", f"sshd does not listen on the bridge's {', '.join(addresses)}"
    )
