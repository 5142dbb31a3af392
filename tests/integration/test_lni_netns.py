"""The LNI step for real, inside network namespaces: bridge, DHCP, idempotence, rollback.

No network manager runs in the namespaces, so the step takes its live path: netlink (pyroute2)
for the bridge and dhclient for DHCP, all inside the test's "host" namespace. dnsmasq in the
"lan" namespace stands in for the on-prem DHCP server, with a reservation for the LNI's MAC,
so the address only comes back if the bridge carries the LNI's MAC.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.integration.netns_helpers import (
    LNI_ADDRESS,
    LNI_MAC,
    MGMT_MAC,
    Lan,
)

from cockpit_agent.config import Config, LniConfig
from cockpit_agent.engine import Ctx, Engine
from cockpit_agent.facts.gather import Facts
from cockpit_agent.facts.imds import ImdsInterface
from cockpit_agent.facts.links import read_links
from cockpit_agent.facts.platform import Platform
from cockpit_agent.host.files import Files
from cockpit_agent.host.run import SubprocessRunner
from cockpit_agent.steps.lni.step import LniStep

pytestmark = pytest.mark.integration

PLATFORM = Platform(
    os_id="debian",
    os_version="12",
    os_family="debian",
    pretty_name="Debian GNU/Linux 12 (netns)",
    package_manager="apt",
    network_manager=None,
    netplan=False,
    init="systemd",
    cloud_init=False,
)
INTERFACES = [
    ImdsInterface(mac=MGMT_MAC, device_number=0, local_ipv4s=["10.98.0.10"]),
    ImdsInterface(mac=LNI_MAC, device_number=1, local_ipv4s=[LNI_ADDRESS]),
]


def _ctx(lan: Lan, tmp_path: Path, timeout: float) -> Ctx:
    """A fresh run: facts read now from the host namespace, files rooted under tmp_path."""
    facts = Facts(platform=PLATFORM, interfaces=INTERFACES, links=read_links(netns=lan.host))
    config = Config(lni=LniConfig(address_timeout_seconds=timeout))
    return Ctx(
        runner=SubprocessRunner(),
        files=Files(tmp_path / "root"),
        facts=facts,
        config=config,
        state_dir=tmp_path / "state",
    )


def _step(lan: Lan) -> LniStep:
    return LniStep(netns=lan.host)


def test_bridge_takes_the_lni_and_its_address_then_converges(lan: Lan, tmp_path: Path) -> None:
    lan.start_dhcp_server()
    step = _step(lan)
    ctx = _ctx(lan, tmp_path, timeout=20)
    planned = [type(a).__name__ for a in step.plan(step.observe(ctx), ctx)]
    assert planned == [
        "SnapshotNetwork",
        "CreateBridge",
        "EnslaveLink",
        "StartDhcpClient",
        "AwaitBridgeAddress",
    ]

    record = Engine([step]).run(ctx).steps[0]
    assert record.status == "changed", (record.error, lan.dhcp_log())
    assert len(record.actions) == 5

    links = {link.name: link for link in read_links(netns=lan.host)}
    bridge, lni, mgmt = links["br-lni"], links["lni0"], links["mgmt0"]
    assert bridge.kind == "bridge"
    assert bridge.mac == LNI_MAC
    assert lni.master == "br-lni"
    assert [a.address for a in bridge.addresses if a.family == 2] == [LNI_ADDRESS]
    assert not [a for a in lni.addresses if a.family == 2], "the address must leave the port"
    assert mgmt.master is None
    assert [(a.address, a.prefixlen) for a in mgmt.addresses] == [("10.98.0.10", 24)]
    # The address came from dnsmasq's reservation for the LNI's MAC, not from the old one.
    assert LNI_MAC in lan.leases() and LNI_ADDRESS in lan.leases()
    assert "DHCPACK(lan0) 10.99.0.50 0e:11:22:33:44:02" in lan.dhcp_log()
    assert [f.severity for f in step.verify(ctx)] == ["ok"]

    again = _ctx(lan, tmp_path, timeout=20)
    assert step.plan(step.observe(again), again) == []
    second = Engine([step]).run(again).steps[0]
    assert (second.status, second.actions) == ("converged", [])


def test_dhcp_server_that_never_answers_rolls_everything_back(lan: Lan, tmp_path: Path) -> None:
    # No dnsmasq: the bridge never gets an address.
    before = lan.state()
    step = _step(lan)
    ctx = _ctx(lan, tmp_path, timeout=3)

    record = Engine([step]).run(ctx).steps[0]

    assert record.status == "failed"
    assert record.error is not None
    assert "no IPv4 address on br-lni after 3 s" in record.error
    assert "rolled back" in record.error
    assert "rollback problems" not in record.error
    assert "lni0" in record.error and "master br-lni" in record.error  # what was seen
    assert lan.state() == before
    dhclients = [
        pid
        for pid in lan.pids(lan.host)
        if b"dhclient" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]
    assert dhclients == [], "the DHCP client must be stopped by the rollback"
