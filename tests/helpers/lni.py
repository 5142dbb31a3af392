"""The LNI's world for unit tests: fixture links and IMDS interfaces, a fake netlink that
records what it was asked to change, and `World`, one test's host with its steps."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cockpit_agent.config import Config, LniConfig
from cockpit_agent.engine import Ctx
from cockpit_agent.facts.gather import Facts
from cockpit_agent.facts.imds import ImdsInterface
from cockpit_agent.facts.links import Address, Link
from cockpit_agent.facts.platform import Platform
from cockpit_agent.host.files import Files
from cockpit_agent.host.netlink import LinkState
from cockpit_agent.render.bridge import BridgeSpec
from cockpit_agent.render.networkd import render_networkd
from cockpit_agent.steps.libvirt_network.step import LibvirtNetworkStep
from cockpit_agent.steps.lni.step import LniStep
from tests.fakes import FakeRunner

MGMT_MAC = "0e:11:22:33:44:01"
LNI_MAC = "0e:11:22:33:44:02"
INTERFACES = [
    ImdsInterface(mac=MGMT_MAC, device_number=0, local_ipv4s=["10.0.1.10"]),
    ImdsInterface(mac=LNI_MAC, device_number=1, local_ipv4s=["192.168.50.20"]),
]
NETWORKD_PATHS = [
    "/etc/systemd/network/05-cockpit-agent-br-lni.netdev",
    "/etc/systemd/network/05-cockpit-agent-br-lni.network",
    "/etc/systemd/network/05-cockpit-agent-br-lni-port.network",
]


def platform(manager: Any = "networkd", netplan: bool = False) -> Platform:
    return Platform(
        os_id="debian",
        os_version="12",
        os_family="debian",
        pretty_name="Debian GNU/Linux 12",
        package_manager="apt",
        network_manager=manager,
        netplan=netplan,
        init="systemd",
        cloud_init=True,
    )


def ipv4(cidr: str) -> Address:
    address, prefix = cidr.split("/")
    return Address(address=address, prefixlen=int(prefix), family=2)


def mgmt() -> Link:
    return Link(
        index=2,
        name="ens5",
        mac=MGMT_MAC,
        permanent_mac=MGMT_MAC,
        kind=None,
        master=None,
        operstate="UP",
        addresses=[ipv4("10.0.1.10/24")],
        default_route=True,
    )


def lni(master: str | None = None, addresses: tuple[str, ...] = ("192.168.50.20/24",)) -> Link:
    return Link(
        index=3,
        name="ens6",
        mac=LNI_MAC,
        permanent_mac=LNI_MAC,
        kind=None,
        master=master,
        operstate="UP",
        addresses=[ipv4(a) for a in addresses],
    )


def bridge(
    mac: str = LNI_MAC, addresses: tuple[str, ...] = ("192.168.50.20/24",), operstate: str = "UP"
) -> Link:
    return Link(
        index=4,
        name="br-lni",
        mac=mac,
        permanent_mac=None,
        kind="bridge",
        master=None,
        operstate=operstate,
        addresses=[ipv4(a) for a in addresses],
    )


FRESH = [mgmt(), lni()]
CONVERGED = [mgmt(), lni(master="br-lni", addresses=()), bridge()]


@dataclass
class FakeNetlink:
    """Answers like host.netlink.Netlink and records every change it was asked for."""

    links: list[Link] = field(default_factory=lambda: list(CONVERGED))
    address_after_wait: tuple[tuple[str, int], ...] = (("192.168.50.20", 24),)
    netns: str | None = "fake"  # not None: verify skips the host's sshd check
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    bridge_state: LinkState | None = None  # what snapshot() says of br-lni

    def read_links(self) -> list[Link]:
        return self.links

    def snapshot(self, name: str) -> LinkState | None:
        if name == "br-lni":
            return self.bridge_state
        return LinkState(name, True, None, (("192.168.50.20", 24),), ())

    def restore(self, state: LinkState) -> None:
        self.calls.append(("restore", state.name, state.master))

    def create_bridge(self, name: str, mac: str) -> None:
        self.calls.append(("create_bridge", name, mac))

    def set_mac(self, name: str, mac: str) -> None:
        self.calls.append(("set_mac", name, mac))

    def delete_link(self, name: str) -> None:
        self.calls.append(("delete_link", name))

    def enslave(self, port: str, bridge: str) -> tuple[tuple[str, int], ...]:
        self.calls.append(("enslave", port, bridge))
        return ()

    def add_address(self, name: str, address: str, prefixlen: int) -> None:
        self.calls.append(("add_address", name, address, prefixlen))

    def add_default_route(self, gateway: str, metric: int) -> None:
        self.calls.append(("add_default_route", gateway, metric))

    def wait_for_ipv4(self, name: str, timeout: float) -> tuple[tuple[str, int], ...]:
        self.calls.append(("wait_for_ipv4", name, timeout))
        return self.address_after_wait


@dataclass
class World:
    """One test's host: files under tmp_path, a fake runner and netlink, and a step."""

    tmp_path: Path
    runner: FakeRunner = field(default_factory=FakeRunner)
    live: FakeNetlink = field(default_factory=FakeNetlink)
    virsh: bool = False

    def ctx(self, links: list[Link], config: LniConfig | None = None, **kw: Any) -> Ctx:
        facts = Facts(
            platform=kw.pop("platform", platform()),
            interfaces=kw.pop("interfaces", INTERFACES),
            links=links,
        )
        return Ctx(
            runner=self.runner,
            files=Files(self.tmp_path),
            facts=facts,
            config=Config(lni=config or LniConfig(address_timeout_seconds=5)),
            state_dir=self.tmp_path / "state",
        )

    def step(self) -> LniStep:
        return LniStep(live=self.live)  # type: ignore[arg-type]

    def libvirt_step(self) -> LibvirtNetworkStep:
        found = "/usr/bin/virsh" if self.virsh else None
        return LibvirtNetworkStep(which=lambda _p: found)

    def plan(self, ctx: Ctx) -> list[Any]:
        step = self.step()
        return list(step.plan(step.observe(ctx), ctx))

    def plan_libvirt(self, ctx: Ctx) -> list[Any]:
        step = self.libvirt_step()
        return list(step.plan(step.observe(ctx), ctx))

    def write(self, path: str, content: str) -> None:
        Files(self.tmp_path).write(path, content)


def names(actions: list[Any]) -> list[str]:
    return [type(a).__name__ for a in actions]


def networkd_files() -> dict[str, str]:
    spec = BridgeSpec(bridge="br-lni", port="ens6", port_mac=LNI_MAC)
    return {f.path: f.content for f in render_networkd(spec)}
