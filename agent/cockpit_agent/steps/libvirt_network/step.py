"""The libvirt_network step: the libvirt network on the LNI bridge, and libvirt's `default`
network moved onto it (lni.default_vm_network) or given back.

It depends on the virt step (libvirt) and the lni step (the bridge): when either fails, it is
blocked. It runs with the lni step's configuration (lni.enabled turns both on and off), and
only when libvirt is there: without virsh, or while libvirtd does not answer, the network is
left to a later run and the summary says so.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable

from cockpit_agent.config import Config, LniConfig
from cockpit_agent.engine import Ctx, Finding
from cockpit_agent.errors import CommandFailed
from cockpit_agent.render.libvirt_network import (
    LibvirtNetworkSpec,
    network_xml_matches,
    render_libvirt_network,
)
from cockpit_agent.steps.libvirt_network.actions import LibvirtNetworkAction
from cockpit_agent.steps.libvirt_network.observed import (
    DEFAULT_NETWORK,
    LibvirtObserved,
    NetworkState,
    observe,
    read_networks,
)
from cockpit_agent.steps.libvirt_network.plan import (
    default_vm_network,
    plan_default,
    plan_libvirt_network,
)


class LibvirtNetworkStep:
    """The libvirt network on the LNI bridge, and `default` on it.

    `which` finds programs (virsh), so tests decide whether libvirt is there.
    """

    name = "libvirt_network"
    depends_on: tuple[str, ...] = ("virt", "lni")

    def __init__(self, which: Callable[[str], str | None] = shutil.which) -> None:
        self.which = which

    def enabled(self, config: Config) -> bool:
        """lni.enabled: the network lives on the LNI's bridge."""
        return config.lni.enabled

    def observe(self, ctx: Ctx) -> LibvirtObserved:
        """See observed.observe."""
        return observe(ctx, self.which)

    def plan(self, observed: LibvirtObserved, ctx: Ctx) -> list[LibvirtNetworkAction]:
        """See plan.py."""
        return plan_libvirt_network(observed)

    def apply(self, action: LibvirtNetworkAction, ctx: Ctx) -> None:
        """See apply.py."""
        from cockpit_agent.steps.libvirt_network.apply import apply_action  # noqa: PLC0415 - check never applies

        apply_action(action, ctx)

    def verify(self, ctx: Ctx, observed: LibvirtObserved | None = None) -> list[Finding]:
        """The `lni` network (and `default`, when it goes on the bridge) defined, active and
        autostarted: read again unless `observed` is given; nothing without virsh."""
        if self.which("virsh") is None:
            return []
        config = ctx.config.lni
        names: tuple[str, ...] = (config.libvirt_network,)
        if default_vm_network(config):
            names += (DEFAULT_NETWORK,)
        if observed is not None and observed.unavailable is None:
            networks = observed.networks
        else:
            try:
                networks, _ = read_networks(ctx.runner, names)
            except CommandFailed as exc:
                return [Finding("warning", "lni-libvirt", f"libvirt does not answer: {exc}")]
        findings = [_network_finding(config.libvirt_network, networks.get(config.libvirt_network))]
        if default_vm_network(config):
            findings.append(_default_finding(config, networks.get(DEFAULT_NETWORK)))
        return findings

    def summarize(self, observed: LibvirtObserved) -> str:
        """One line: the network's state, and what new VMs get."""
        if observed.unavailable is not None:
            return observed.unavailable
        name = observed.config.libvirt_network
        state = observed.networks.get(name)
        if state is None:
            seen = "not defined"
        elif state.active and state.autostart:
            seen = "active and autostarted"
        else:
            seen = f"active={state.active}, autostart={state.autostart}"
        text = f"libvirt network {name} on {observed.config.bridge}: {seen}"
        note = plan_default(observed)[1]
        return f"{text}; {note}" if note else text


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
        "(the libvirt_network step's summary says why)",
    )
