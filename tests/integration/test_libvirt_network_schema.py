"""Every network definition the libvirt_network step gives `virsh net-define` is valid by
libvirt's own schema, and the stock network the agent recognises is the one libvirt ships.
Both from Debian 12's packages (libvirt0's schemas/network.rng, libvirt-daemon-config-network's
default.xml), unpacked by tests/install-deps.sh, checked with xmllint; no libvirtd runs here."""

from __future__ import annotations

import subprocess
from ipaddress import IPv4Network
from pathlib import Path

import pytest
from tests.helpers.libvirt_fake import STOCK_DUMP
from tests.helpers.tools import UNPACKED, need_tools, unpacked

from cockpit_agent.render.libvirt_network import (
    LibvirtNetworkSpec,
    renamed_xml,
    render_libvirt_network,
)
from cockpit_agent.steps.libvirt_network.observed import (
    LIBVIRT_STOCK_XML,
    STOCK_TEMPLATE,
    NetworkState,
)
from cockpit_agent.steps.libvirt_network.plan import is_stock

pytestmark = pytest.mark.integration

SCHEMA = UNPACKED / "libvirt0/usr/share/libvirt/schemas/network.rng"
SHIPPED = UNPACKED / "libvirt-daemon-config-network" / STOCK_TEMPLATE.lstrip("/")


def validate(xml: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    need_tools("xmllint")
    doc = tmp_path / "network.xml"
    doc.write_text(xml)
    return subprocess.run(
        ["xmllint", "--noout", "--relaxng", str(unpacked(SCHEMA)), str(doc)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


DEFINED = {
    "lni, bridge mode": render_libvirt_network(LibvirtNetworkSpec("lni", "br-lni")),
    "lni, route mode": render_libvirt_network(
        LibvirtNetworkSpec("lni", "br-lni", "route", IPv4Network("10.0.3.192/26"))
    ),
    "default on the bridge": render_libvirt_network(LibvirtNetworkSpec("default", "br-lni")),
    "stock renamed default-nat": renamed_xml(STOCK_DUMP, "default-nat"),
    "stock given back": renamed_xml(renamed_xml(STOCK_DUMP, "default-nat"), "default"),
}


@pytest.mark.parametrize("xml", DEFINED.values(), ids=DEFINED.keys())
def test_what_the_agent_defines_is_valid_by_libvirts_schema(xml: str, tmp_path: Path) -> None:
    proc = validate(xml, tmp_path)
    assert proc.returncode == 0, proc.stderr


def test_the_schema_check_can_fail(tmp_path: Path) -> None:
    bad = DEFINED["default on the bridge"].replace('mode="bridge"', 'mode="sideways"')
    assert validate(bad, tmp_path).returncode != 0


def test_the_agents_copy_of_the_stock_network_is_what_libvirt_ships() -> None:
    shipped = unpacked(SHIPPED).read_text()
    assert shipped == LIBVIRT_STOCK_XML
    assert is_stock(NetworkState("default", STOCK_DUMP, True, True), shipped)
