"""The network renderers against golden files in tests/fixtures/lni/<case>/.

Set COCKPIT_UPDATE_GOLDEN=1 to rewrite the golden files from the renderers (then read the diff).
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

import pytest

from cockpit_agent.render.bridge import BridgeSpec, RenderedFile, StaticAddress
from cockpit_agent.render.libvirt_network import (
    LibvirtNetworkSpec,
    network_xml_matches,
    render_libvirt_network,
)
from cockpit_agent.render.netplan import render_netplan
from cockpit_agent.render.networkd import render_networkd
from cockpit_agent.render.networkmanager import render_networkmanager
from tests.helpers.golden import check_golden_dir

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "lni"

DHCP = BridgeSpec(bridge="br-lni", port="ens6", port_mac="0e:11:22:33:44:02")
STATIC = BridgeSpec(
    bridge="br-lni",
    port="ens6",
    port_mac="0e:11:22:33:44:02",
    static=StaticAddress(
        IPv4Interface("192.168.50.20/24"),
        IPv4Address("192.168.50.1"),
        (IPv4Address("192.168.50.2"), IPv4Address("192.168.50.3")),
    ),
    route_metric=300,
    proxy_arp=True,
)
VETH = BridgeSpec(
    bridge="br-lni", port="eth1", port_mac="52:54:00:c0:c0:01", port_mac_permanent=False
)

Renderer = Callable[[BridgeSpec], list[RenderedFile]]
CASES: list[tuple[str, Renderer, BridgeSpec]] = [
    ("networkd-dhcp", render_networkd, DHCP),
    ("networkd-static", render_networkd, STATIC),
    ("networkd-no-permanent-mac", render_networkd, VETH),
    ("networkmanager-dhcp", render_networkmanager, DHCP),
    ("networkmanager-static", render_networkmanager, STATIC),
    ("netplan-dhcp", render_netplan, DHCP),
    ("netplan-static", render_netplan, STATIC),
]


@pytest.mark.parametrize(("case", "render", "spec"), CASES, ids=[c[0] for c in CASES])
def test_renderer_matches_golden_files(case: str, render: Renderer, spec: BridgeSpec) -> None:
    files = render(spec)
    check_golden_dir(GOLDEN / case, {Path(f.path).name: f.content for f in files})


def test_networkd_names_sort_before_cloud_init_and_ec2_net_utils() -> None:
    # networkd applies the first matching .network file by name, across all directories.
    theirs = ["10-netplan-ens6.network", "70-ens6.network", "80-ec2.network"]
    for f in render_networkd(DHCP):
        assert f.path.startswith("/etc/systemd/network/")
        assert all(Path(f.path).name < other for other in theirs)


def test_bridge_carries_the_lni_mac_and_port_matches_only_the_permanent_mac() -> None:
    netdev, bridge, port = (f.content for f in render_networkd(DHCP))
    assert "MACAddress=0e:11:22:33:44:02" in netdev
    assert "PermanentMACAddress=0e:11:22:33:44:02" in port
    assert "\nMACAddress=" not in port  # the bridge has that MAC too
    assert "Name=br-lni" in bridge and "DHCP=ipv4" in bridge


def test_keyfiles_and_netplan_are_private() -> None:
    assert {f.mode for f in render_networkmanager(DHCP)} == {0o600}
    assert [f.path for f in render_netplan(DHCP)] == ["/etc/netplan/90-cockpit-agent-br-lni.yaml"]
    assert render_netplan(DHCP)[0].mode == 0o600


def test_keyfile_uuids_are_stable_across_runs() -> None:
    assert render_networkmanager(DHCP) == render_networkmanager(DHCP)


BRIDGE_NET = LibvirtNetworkSpec("lni", "br-lni")
ROUTE_NET = LibvirtNetworkSpec("lni", "br-lni", "route", IPv4Network("192.168.50.192/26"))


DEFAULT_NET = LibvirtNetworkSpec("default", "br-lni")


@pytest.mark.parametrize(
    ("case", "spec"),
    [
        ("libvirt-bridge", BRIDGE_NET),
        ("libvirt-route", ROUTE_NET),
        ("libvirt-default", DEFAULT_NET),
    ],
)
def test_libvirt_network_matches_golden_file(case: str, spec: LibvirtNetworkSpec) -> None:
    check_golden_dir(GOLDEN / case, {f"{spec.name}.xml": render_libvirt_network(spec)})


# What `virsh net-dumpxml --inactive lni` prints for the bridge network (libvirt 9).
DUMPED_BRIDGE = """<network>
  <name>lni</name>
  <uuid>4a7c7a8e-0c0f-4b1e-9d8e-2f1c6a0b7e11</uuid>
  <forward mode='bridge'/>
  <bridge name='br-lni'/>
</network>
"""
DUMPED_ROUTE = """<network>
  <name>lni</name>
  <uuid>4a7c7a8e-0c0f-4b1e-9d8e-2f1c6a0b7e12</uuid>
  <forward dev='br-lni' mode='route'>
    <interface dev='br-lni'/>
  </forward>
  <bridge name='virbr-lni' stp='off' delay='0'/>
  <mac address='52:54:00:aa:bb:cc'/>
  <ip address='192.168.50.193' prefix='26'>
    <dhcp>
      <range start='192.168.50.194' end='192.168.50.254'/>
    </dhcp>
  </ip>
</network>
"""
DUMPED_NAT = """<network>
  <name>lni</name>
  <uuid>4a7c7a8e-0c0f-4b1e-9d8e-2f1c6a0b7e13</uuid>
  <forward mode='nat'/>
  <bridge name='virbr0' stp='on' delay='0'/>
  <ip address='192.168.122.1' netmask='255.255.255.0'/>
</network>
"""


def test_dumped_xml_with_generated_parts_matches() -> None:
    assert network_xml_matches(render_libvirt_network(BRIDGE_NET), DUMPED_BRIDGE)
    assert network_xml_matches(render_libvirt_network(ROUTE_NET), DUMPED_ROUTE)


def test_a_different_network_does_not_match() -> None:
    assert not network_xml_matches(render_libvirt_network(BRIDGE_NET), DUMPED_NAT)
    assert not network_xml_matches(render_libvirt_network(BRIDGE_NET), DUMPED_ROUTE)
    assert not network_xml_matches(render_libvirt_network(ROUTE_NET), DUMPED_BRIDGE)
    other_bridge = DUMPED_BRIDGE.replace("br-lni", "br0")
    assert not network_xml_matches(render_libvirt_network(BRIDGE_NET), other_bridge)


def test_route_mode_needs_room_for_vms() -> None:
    with pytest.raises(ValueError, match="no room"):
        render_libvirt_network(
            LibvirtNetworkSpec("lni", "br-lni", "route", IPv4Network("10.0.3.4/32"))
        )
