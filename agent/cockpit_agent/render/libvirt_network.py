"""libvirt network XML for the LNI, and the comparison of a desired XML with `net-dumpxml`.

mode "bridge": `<forward mode='bridge'/>` on the agent's bridge; libvirt only plugs the VMs'
taps into it, so VMs are on the on-prem LAN with their own MACs.
mode "route": libvirt makes a bridge of its own for the VMs with the first address of
`route_subnet` as their gateway and routes that block out through the LNI bridge; the host
answers ARP for it on the LAN (proxy ARP), so the LAN only ever sees the LNI's MAC.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from ipaddress import IPv4Network
from typing import Literal


@dataclass(frozen=True)
class LibvirtNetworkSpec:
    """A libvirt network on the LNI bridge."""

    name: str
    bridge: str
    mode: Literal["bridge", "route"] = "bridge"
    route_subnet: IPv4Network | None = None

    @property
    def route_bridge(self) -> str:
        """mode route: the name of libvirt's own bridge (at most 15 characters)."""
        return f"virbr-{self.name}"[:15]


def render_libvirt_network(spec: LibvirtNetworkSpec) -> str:
    """The network's XML, as given to `virsh net-define`."""
    root = ET.Element("network")
    ET.SubElement(root, "name").text = spec.name
    if spec.mode == "bridge":
        ET.SubElement(root, "forward", mode="bridge")
        ET.SubElement(root, "bridge", name=spec.bridge)
    else:
        if spec.route_subnet is None:
            raise ValueError("mode route needs route_subnet")
        hosts = list(spec.route_subnet.hosts())
        if len(hosts) < 2:
            raise ValueError(f"route_subnet {spec.route_subnet} has no room for VMs")
        ET.SubElement(root, "forward", mode="route", dev=spec.bridge)
        ET.SubElement(root, "bridge", name=spec.route_bridge, stp="off", delay="0")
        ip = ET.SubElement(
            root, "ip", address=str(hosts[0]), prefix=str(spec.route_subnet.prefixlen)
        )
        dhcp = ET.SubElement(ip, "dhcp")
        ET.SubElement(dhcp, "range", start=str(hosts[1]), end=str(hosts[-1]))
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="unicode") + "\n"


def _covers(live: ET.Element, want: ET.Element) -> bool:
    if live.tag != want.tag:
        return False
    if any(live.get(key) != value for key, value in want.attrib.items()):
        return False
    if (want.text or "").strip() and (want.text or "").strip() != (live.text or "").strip():
        return False
    candidates = list(live)
    for child in want:
        match = next((c for c in candidates if _covers(c, child)), None)
        if match is None:
            return False
        candidates.remove(match)
    return True


def xml_covers(live: str, want: str) -> bool:
    """Whether every element, attribute and text of `want` is in `live` (which may have more)."""
    # Both come from this agent, the local libvirtd or the host's libvirt package.
    return _covers(ET.fromstring(live), ET.fromstring(want))  # noqa: S314


def network_xml_matches(desired: str, live: str) -> bool:
    """Whether `live` (from net-dumpxml) is the network `desired` describes.

    libvirt adds what it generates (uuid, a MAC, defaults such as stp/delay, the forward's
    interface), so the live XML may carry more: every element and attribute of the desired
    one must be there with the same value, the live one must have no forward, bridge or ip
    element kind the desired one lacks, and its forward element no other attributes.
    """
    # Both come from this agent and the local libvirtd, not from the network.
    want = ET.fromstring(desired)  # noqa: S314
    have = ET.fromstring(live)  # noqa: S314
    significant = {"forward", "bridge", "ip"}
    if {c.tag for c in have if c.tag in significant} != {c.tag for c in want}.intersection(
        significant
    ):
        return False
    have_forward, want_forward = have.find("forward"), want.find("forward")
    if (
        have_forward is not None
        and want_forward is not None
        and len(have_forward.attrib) != len(want_forward.attrib)
    ):
        return False
    return _covers(have, want)


def renamed_xml(xml: str, name: str) -> str:
    """The network definition `xml` under another name (UUID and all else unchanged)."""
    root = ET.fromstring(xml)  # noqa: S314 - from the local libvirtd or the step's record
    element = root.find("name")
    if element is None:
        element = ET.SubElement(root, "name")
    element.text = name
    return ET.tostring(root, encoding="unicode") + "\n"
