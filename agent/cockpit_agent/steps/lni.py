"""The LNI step: bridge the Local Network Interface for libvirt, persisted, reversible.

The LNI is the IMDS interface at lni.device_index on lni.network_card (or lni.mac), found in
the kernel by its permanent MAC. Desired: bridge lni.bridge carrying the LNI's MAC, the LNI
its only port, the address configuration (DHCP, or lni.address) on the bridge; written for the
network manager the host runs (networkd, NetworkManager, netplan) or, with none, built live
through netlink with dhclient. A bridge without an address in time is rolled back. Then the
libvirt network on the bridge, when libvirt is there. The management interface (device 0) is
never touched: every network action is checked against it before it runs.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from cockpit_agent.config import Config, LniConfig
from cockpit_agent.engine import Ctx, Finding
from cockpit_agent.errors import AgentError, CommandFailed, UnsafeDevice
from cockpit_agent.facts.imds import ImdsInterface
from cockpit_agent.facts.links import Link, link_by_mac
from cockpit_agent.facts.platform import Platform
from cockpit_agent.host import netlink
from cockpit_agent.render.bridge import BridgeSpec, RenderedFile, StaticAddress
from cockpit_agent.render.libvirt_network import LibvirtNetworkSpec, render_libvirt_network
from cockpit_agent.render.netplan import render_netplan
from cockpit_agent.render.networkd import render_networkd
from cockpit_agent.render.networkmanager import render_networkmanager
from cockpit_agent.steps import lni_apply
from cockpit_agent.steps.lni_actions import (
    MANAGER_LABEL,
    AddBridgeAddress,
    ApplyNetworkConfig,
    AwaitBridgeAddress,
    CreateBridge,
    EnableProxyArp,
    EnslaveLink,
    Manager,
    MaskEc2NetUtilsUnits,
    NetworkAction,
    SetBridgeMac,
    StartDhcpClient,
    WriteNetworkFiles,
)
from cockpit_agent.steps.lni_default_network import (
    STOCK_RENAMED,
    DefaultAction,
    MoveLibvirtNetwork,
    RemoveLibvirtNetwork,
    apply_default,
    observe_default,
    plan_default,
)
from cockpit_agent.steps.lni_libvirt import (
    DEFAULT_NETWORK,
    LibvirtAction,
    LibvirtObserved,
    apply_libvirt,
    observe_libvirt,
    plan_libvirt,
)
from cockpit_agent.steps.lni_owners import Owners, detect_owners

RENDERERS: dict[Manager, Callable[[BridgeSpec], list[RenderedFile]]] = {
    "networkd": render_networkd,
    "NetworkManager": render_networkmanager,
    "netplan": render_netplan,
    "none": lambda spec: [],
}


class LniRolledBack(AgentError):
    """The bridge did not come up with an address; files and links were put back."""


@dataclass(frozen=True)
class LniObserved:
    """What the LNI step found: the LNI, the bridge, the manager, files and libvirt."""

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
    libvirt: LibvirtObserved | None = None
    libvirt_note: str = ""


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


def _ipv4(link: Link | None) -> list[str]:
    if link is None:
        return []
    return [f"{a.address}/{a.prefixlen}" for a in link.addresses if a.family == 2]


class LniStep:
    """Bridge the LNI, persist it through the host's network manager, put libvirt on it.

    `netns` runs every live operation (netlink, dhclient, sysctl) inside that network
    namespace; `live` does the netlink part (unit tests pass a fake); `which` finds programs
    (virsh), so tests decide whether libvirt is there.
    """

    name = "lni"
    # The libvirt part needs the virt step ("virt"); it is only planned when libvirt answers,
    # so the network part does not wait for it.
    depends_on: tuple[str, ...] = ()

    def __init__(
        self,
        netns: str | None = None,
        which: Callable[[str], str | None] = shutil.which,
        live: netlink.Netlink | None = None,
    ) -> None:
        self.netns = netns
        self.which = which
        self.live = live or netlink.Netlink(netns)
        self._scope: tuple[Manager, str, str, tuple[str, ...]] | None = None
        self._txn: lni_apply.Transaction | None = None

    def enabled(self, config: Config) -> bool:
        """lni.enabled."""
        return config.lni.enabled

    # -- observe -----------------------------------------------------------------------------

    def observe(self, ctx: Ctx) -> LniObserved:
        """Find the LNI and its link, the bridge, the manager's files and libvirt's networks."""
        config: LniConfig = ctx.config.lni
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
        problem = self._link_problem(config, base, facts.links)
        if problem or link is None:
            return replace(base, problem=problem)
        spec = bridge_spec(config, link, lni.mac)
        files = tuple(RENDERERS[manager](spec))
        libvirt, note = self._observe_libvirt(ctx)
        return replace(
            base,
            spec=spec,
            desired_files=files,
            current_files={f.path: ctx.files.read(f.path) for f in files},
            owners=detect_owners(ctx.files, link.name),
            proxy_arp=self._proxy_arp(ctx, config) if bridge is not None else None,
            libvirt=libvirt,
            libvirt_note=note,
        )

    def _link_problem(self, config: LniConfig, seen: LniObserved, links: list[Link]) -> str | None:
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

    def _proxy_arp(self, ctx: Ctx, config: LniConfig) -> bool | None:
        if config.mode != "route":
            return None
        argv = [*lni_apply.netns_prefix(self.netns), "sysctl", "-n", _proxy_arp_key(config.bridge)]
        return ctx.runner.run(argv).stdout.strip() == "1"

    def _observe_libvirt(self, ctx: Ctx) -> tuple[LibvirtObserved | None, str]:
        if self.which("virsh") is None:
            return None, "libvirt not installed (no virsh): libvirt network left to a later run"
        config: LniConfig = ctx.config.lni
        names = (config.libvirt_network, DEFAULT_NETWORK, STOCK_RENAMED)
        try:
            libvirt = observe_default(ctx, observe_libvirt(ctx, names))
        except CommandFailed as exc:
            return None, f"libvirt does not answer ({exc}): libvirt network left to a later run"
        return libvirt, self._plan_default(config, libvirt)[1]

    # -- plan --------------------------------------------------------------------------------

    def plan(self, observed: LniObserved, ctx: Ctx) -> list[Any]:
        """Network actions (per manager or live), then proxy ARP, then libvirt's."""
        if observed.problem is not None:
            raise AgentError(observed.problem)
        link, spec, manager = observed.link, observed.spec, observed.manager
        assert link is not None and spec is not None and manager is not None
        if link in observed.management or spec.bridge in {m.name for m in observed.management}:
            raise UnsafeDevice(
                f"the LNI resolves to the management interface {link.name}; refusing to touch it"
            )
        config: LniConfig = ctx.config.lni
        actions: list[Any] = []
        owners = observed.owners
        if owners.ec2_net_utils and manager in ("networkd", "netplan") and owners.unmasked_units:
            actions.append(MaskEc2NetUtilsUnits(link.name, observed.owners.unmasked_units))
        network = self._plan_network(observed, spec, manager, config)
        # What a rollback of this plan's network actions must cover (kept for this run only).
        self._scope = (
            manager,
            spec.bridge,
            spec.port,
            tuple(f.path for f in observed.desired_files),
        )
        self._txn = None
        actions += network
        if config.mode == "route" and observed.proxy_arp is not True:
            actions.append(EnableProxyArp(spec.bridge))
        if observed.libvirt is not None:
            actions += plan_libvirt(self._libvirt_spec(config), observed.libvirt)
            actions += self._plan_default(config, observed.libvirt)[0]
        return actions

    @staticmethod
    def _plan_default(
        config: LniConfig, libvirt: LibvirtObserved
    ) -> tuple[list[LibvirtAction | DefaultAction], str]:
        """libvirt's `default` on the bridge: with default_vm_network, in bridge mode only (in
        route mode it would put VMs on the LAN with their own MACs, which route mode avoids)."""
        on = config.default_vm_network and config.mode == "bridge"
        spec = LibvirtNetworkSpec(DEFAULT_NETWORK, config.bridge)
        actions, note = plan_default(on, render_libvirt_network(spec), libvirt)
        if config.default_vm_network and config.mode == "route":
            note = "; ".join(
                n for n in ("route mode: new VMs get libvirt's default, not the LNI", note) if n
            )
        return actions, note

    def _plan_network(
        self, observed: LniObserved, spec: BridgeSpec, manager: Manager, config: LniConfig
    ) -> list[NetworkAction]:
        link, bridge = observed.link, observed.bridge
        assert link is not None
        has_address = self._bridge_addressed(bridge, spec)
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

    @staticmethod
    def _bridge_addressed(bridge: Link | None, spec: BridgeSpec) -> bool:
        have = _ipv4(bridge)
        if spec.static is not None:
            return spec.static.address.with_prefixlen in have
        return bool(have)

    @staticmethod
    def _libvirt_spec(config: LniConfig) -> LibvirtNetworkSpec:
        return LibvirtNetworkSpec(
            config.libvirt_network, config.bridge, config.mode, config.route_subnet
        )

    # -- apply -------------------------------------------------------------------------------

    def apply(self, action: Any, ctx: Ctx) -> None:
        """Carry out one action; a failed network action rolls the whole change back."""
        if isinstance(action, NetworkAction):
            self._guard(ctx, action)
            self._apply_network(action, ctx)
        elif isinstance(action, MaskEc2NetUtilsUnits):
            ctx.runner.run(["systemctl", "mask", *action.units])
            ctx.runner.run(["systemctl", "stop", *action.units], ok=(0, 5))
        elif isinstance(action, EnableProxyArp):
            argv = [*lni_apply.netns_prefix(self.netns), "sysctl", "-w"]
            ctx.runner.run([*argv, f"{_proxy_arp_key(action.bridge)}=1"])
        elif isinstance(action, MoveLibvirtNetwork | RemoveLibvirtNetwork):
            apply_default(action, ctx)
        else:
            libvirt_action: LibvirtAction = action
            apply_libvirt(libvirt_action, ctx)

    def _guard(self, ctx: Ctx, action: NetworkAction) -> None:
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

    def _apply_network(self, action: NetworkAction, ctx: Ctx) -> None:
        if self._txn is None:
            if self._scope is None:
                raise AgentError(f"{action.describe()}: not planned by this step in this run")
            manager, bridge, port, paths = self._scope
            self._txn = lni_apply.begin(ctx, self.live, manager, bridge, port, paths=paths)
        txn = self._txn
        try:
            self._do(action, ctx, txn)
        except Exception as exc:
            self._txn = None
            lni_apply.rollback(ctx, txn, self.live)
            undo = f"; rollback problems: {'; '.join(txn.undo_errors)}" if txn.undo_errors else ""
            raise LniRolledBack(
                f"{action.describe()} failed: {exc}; rolled back to the previous files and "
                f"links{undo}"
            ) from exc
        if isinstance(action, AwaitBridgeAddress):
            self._txn = None

    def _do(self, action: NetworkAction, ctx: Ctx, txn: lni_apply.Transaction) -> None:
        live = self.live
        if isinstance(action, WriteNetworkFiles):
            lni_apply.write_files(ctx, action.files)
        elif isinstance(action, ApplyNetworkConfig):
            paths = [str(ctx.files.path(p)) for p in txn.files]
            lni_apply.apply_manager(
                ctx,
                action.manager,
                action.bridge,
                action.port,
                paths,
                bridge_exists=txn.bridge_before is not None,
            )
        elif isinstance(action, CreateBridge):
            live.create_bridge(action.bridge, action.mac)
        elif isinstance(action, SetBridgeMac):
            live.set_mac(action.bridge, action.mac)
        elif isinstance(action, EnslaveLink):
            live.enslave(action.port, action.bridge)
        elif isinstance(action, StartDhcpClient):
            txn.dhcp_started = True
            lni_apply.start_dhcp_client(ctx, action.bridge, action.route_metric, self.netns)
        elif isinstance(action, AddBridgeAddress):
            address, _, prefix = action.address.partition("/")
            live.add_address(action.bridge, address, int(prefix))
            if action.gateway:
                live.add_default_route(action.gateway, action.route_metric)
        elif isinstance(action, AwaitBridgeAddress):
            found = live.wait_for_ipv4(action.bridge, action.timeout)
            if not found:
                raise AgentError(
                    f"no IPv4 address on {action.bridge} after {action.timeout:g} s; "
                    f"seen: {self._seen(txn)}"
                )

    def _seen(self, txn: lni_apply.Transaction) -> str:
        links = {lk.name: lk for lk in self.live.read_links()}
        bridge, port = links.get(txn.bridge), links.get(txn.port)
        parts = []
        if bridge is None:
            parts.append(f"{txn.bridge} missing")
        else:
            parts.append(
                f"{txn.bridge} {bridge.operstate} mac {bridge.mac} "
                f"addresses {_ipv4(bridge) or 'none'}"
            )
        if port is None:
            parts.append(f"{txn.port} missing")
        else:
            parts.append(f"{txn.port} {port.operstate} master {port.master or 'none'}")
        return ", ".join(parts)

    # -- verify ------------------------------------------------------------------------------

    def verify(self, ctx: Ctx, observed: LniObserved | None = None) -> list[Finding]:
        """On the live host: bridge up with the LNI's MAC, LNI enslaved, address present."""
        from cockpit_agent.steps.lni_verify import verify_lni  # noqa: PLC0415

        return verify_lni(ctx, self.live, self.which, observed)

    def summarize(self, observed: LniObserved) -> str:
        """One line: the LNI, the manager, the bridge's state, libvirt."""
        if observed.problem is not None:
            return observed.problem
        link, spec, manager = observed.link, observed.spec, observed.manager
        assert link is not None and spec is not None and manager is not None
        state = "bridged" if link.master == spec.bridge else "not bridged"
        addresses = ", ".join(_ipv4(observed.bridge) or _ipv4(link)) or "no IPv4 address"
        via = MANAGER_LABEL[manager]
        text = f"LNI {link.name} ({spec.mac}) -> {spec.bridge} via {via}: {state}, {addresses}"
        if observed.owners.names:
            text += f"; also configured by {', '.join(observed.owners.names)}"
        if observed.libvirt_note:
            text += f"; {observed.libvirt_note}"
        return text


def _proxy_arp_key(bridge: str) -> str:
    # The slash form: a bridge name may contain dots.
    return f"net/ipv4/conf/{bridge}/proxy_arp"
