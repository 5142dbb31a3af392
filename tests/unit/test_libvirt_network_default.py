"""libvirt's `default` network on the LNI bridge and back (lni.default_vm_network), run by the
libvirt_network step against an in-memory libvirt (tests/helpers/libvirt_fake.py) over several
runs."""

from __future__ import annotations

import copy
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cockpit_agent.config import LniConfig
from cockpit_agent.errors import CommandFailed
from cockpit_agent.host.files import Files
from cockpit_agent.render.libvirt_network import (
    LibvirtNetworkSpec,
    network_xml_matches,
    renamed_xml,
    render_libvirt_network,
)
from cockpit_agent.steps.libvirt_network.observed import LIBVIRT_STOCK_XML, STOCK_TEMPLATE
from tests.helpers.golden import check_golden_dir
from tests.helpers.libvirt_fake import STOCK_DUMP, FakeLibvirt, Net, domain_xml
from tests.helpers.lni import CONVERGED, World

LNI_DUMP = """<network>
  <name>lni</name>
  <uuid>4a7c7a8e-0c0f-4b1e-9d8e-2f1c6a0b7e11</uuid>
  <forward mode='bridge'/>
  <bridge name='br-lni'/>
</network>
"""
ON_THE_BRIDGE = render_libvirt_network(LibvirtNetworkSpec("default", "br-lni"))
ADMINS_OWN = """<network>
  <name>default</name>
  <uuid>0b8f1c2e-1111-4e2a-9c3d-5e6f7a8b9c0d</uuid>
  <forward mode='bridge'/>
  <bridge name='br-admin'/>
</network>
"""
ROUTE = {"mode": "route", "route_subnet": "192.168.50.192/26"}
GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "lni"


def canonical(xml: str) -> str:
    return ET.canonicalize(xml, strip_text=True)


@dataclass
class Host:
    """The libvirt_network step over runs: libvirt in memory, its step_data kept."""

    world: World
    libvirt: FakeLibvirt
    step_data: dict[str, dict[str, Any]] = field(default_factory=dict)
    checkpoints: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    summary: str = ""

    def run(self, **config: Any) -> list[str]:
        """One reconcile of the step; what it applied."""
        ctx = self.world.ctx(CONVERGED, LniConfig.model_validate(config))
        ctx.step_data = self.step_data
        ctx.checkpoint = lambda: self.checkpoints.append(
            (len(self.libvirt.calls), copy.deepcopy(self.record))
        )
        step = self.world.libvirt_step()
        observed = step.observe(ctx)
        self.summary = step.summarize(observed)
        actions = step.plan(observed, ctx)
        for action in actions:
            step.apply(action, ctx)
        return [a.describe() for a in actions]

    @property
    def record(self) -> dict[str, Any]:
        record: dict[str, Any] = self.step_data.get("libvirt_network", {}).get(
            "default_network", {}
        )
        return record

    def call_index(self, *tail: str) -> int:
        return next(i for i, c in enumerate(self.libvirt.calls) if c[4:] == tail)


@pytest.fixture
def host(tmp_path: Path) -> Host:
    world = World(tmp_path, virsh=True)
    libvirt = FakeLibvirt(
        {"lni": Net(LNI_DUMP, True, True), "default": Net(STOCK_DUMP, True, True)}
    )
    world.runner = libvirt  # type: ignore[assignment]
    return Host(world, libvirt)


MOVED = [
    "rename libvirt network default to default-nat",
    "define libvirt network default",
    "autostart libvirt network default",
    "start libvirt network default",
]
RESTORED = [
    "undefine the agent's libvirt network default",
    "rename libvirt network default-nat to default",
]


def test_first_run_keeps_the_stock_network_as_default_nat_and_puts_default_on_the_bridge(
    host: Host,
) -> None:
    assert host.run() == MOVED
    nets = host.libvirt.networks
    renamed = STOCK_DUMP.replace("<name>default</name>", "<name>default-nat</name>")
    assert canonical(nets["default-nat"].xml) == canonical(renamed)  # same UUID, MAC, all
    assert (nets["default-nat"].active, nets["default-nat"].autostart) == (True, True)
    assert network_xml_matches(ON_THE_BRIDGE, nets["default"].xml)
    assert (nets["default"].active, nets["default"].autostart) == (True, True)
    assert host.record == {
        "stock": {"xml": STOCK_DUMP, "active": True, "autostart": True},
        "created": ON_THE_BRIDGE,
    }
    assert host.summary.endswith("; new VMs get the LNI")


def test_what_it_moves_and_creates_is_saved_before_it_acts(host: Host) -> None:
    host.run()
    (at_move, moving), (at_create, creating) = host.checkpoints
    assert at_move <= host.call_index("net-destroy", "default")
    assert moving == {"stock": {"xml": STOCK_DUMP, "active": True, "autostart": True}}
    defined = str(Files(host.world.tmp_path).path("/run/cockpit-agent/libvirt-network-default.xml"))
    assert at_create <= host.call_index("net-define", defined)
    assert creating["created"] == ON_THE_BRIDGE


def test_a_converged_host_plans_nothing_and_check_says_new_vms_get_the_lni(host: Host) -> None:
    host.run()
    calls = len(host.libvirt.calls)
    assert host.run() == []
    assert host.summary.endswith("; new VMs get the LNI")
    changes = {"net-define", "net-undefine", "net-start", "net-destroy", "net-autostart"}
    assert not [c for c in host.libvirt.calls[calls:] if c[4] in changes]
    findings = host.world.libvirt_step().verify(host.world.ctx(CONVERGED, LniConfig()))
    assert ("ok", "lni-default-network") in [(f.severity, f.code) for f in findings]


@pytest.mark.parametrize(("active", "autostart"), [(True, True), (False, False), (False, True)])
def test_turning_it_off_gives_back_the_stock_network_exactly(
    host: Host, active: bool, autostart: bool
) -> None:
    host.libvirt.networks["default"] = Net(STOCK_DUMP, active, autostart)
    host.run()
    assert host.run(default_vm_network=False) == RESTORED
    nets = host.libvirt.networks
    assert sorted(nets) == ["default", "lni"]
    assert canonical(nets["default"].xml) == canonical(STOCK_DUMP)
    assert (nets["default"].active, nets["default"].autostart) == (active, autostart)
    assert host.record == {}
    assert host.run(default_vm_network=False) == []


def test_a_kill_between_undefine_and_define_is_recovered_from_the_state_file(
    host: Host,
) -> None:
    xml = str(Files(host.world.tmp_path).path("/run/cockpit-agent/libvirt-network-default-nat.xml"))
    host.libvirt.fail[("net-define", xml)] = "killed"
    with pytest.raises(CommandFailed):
        host.run()
    assert sorted(host.libvirt.networks) == ["lni"]  # libvirt lost its stock network here
    assert host.run() == [
        "define libvirt network default-nat from the stock definition in the state file",
        *MOVED[1:],
    ]
    renamed = STOCK_DUMP.replace("<name>default</name>", "<name>default-nat</name>")
    assert canonical(host.libvirt.networks["default-nat"].xml) == canonical(renamed)
    assert host.run(default_vm_network=False) == RESTORED
    assert canonical(host.libvirt.networks["default"].xml) == canonical(STOCK_DUMP)


@pytest.mark.parametrize("on", [True, False])
def test_an_admins_own_default_is_left_alone(host: Host, on: bool) -> None:
    host.libvirt.networks["default"] = Net(ADMINS_OWN, True, True)
    assert host.run(default_vm_network=on) == []
    assert host.libvirt.networks["default"].xml == ADMINS_OWN
    assert "default-nat" not in host.libvirt.networks
    if on:
        assert "neither libvirt's stock NAT network nor the agent's: left alone" in host.summary


def test_a_default_on_the_bridge_the_state_does_not_record_is_never_undefined(
    host: Host,
) -> None:
    # e.g. a state file of another instance (an AMI baked from a used host) was not trusted.
    host.run()
    host.step_data.clear()
    assert host.run(default_vm_network=False) == []
    assert sorted(host.libvirt.networks) == ["default", "default-nat", "lni"]


def test_route_mode_leaves_the_stock_default_alone(host: Host) -> None:
    done = host.run(**ROUTE)
    assert not [d for d in done if "default" in d]
    assert host.libvirt.networks["default"].xml == STOCK_DUMP
    assert "route mode: new VMs get libvirt's default, not the LNI" in host.summary


def test_switching_to_route_mode_gives_back_the_stock_network(host: Host) -> None:
    # `default` on the bridge would put VMs on the LAN with their own MACs: what route mode
    # exists to avoid.
    host.run()
    assert [d for d in host.run(**ROUTE) if "default" in d] == RESTORED
    assert canonical(host.libvirt.networks["default"].xml) == canonical(STOCK_DUMP)


def test_a_running_vm_on_the_stock_network_holds_the_move_back(host: Host) -> None:
    host.libvirt.domains = {"web": (domain_xml("default"), True)}
    assert host.run() == []
    assert host.libvirt.networks["default"].xml == STOCK_DUMP
    assert "new VMs get libvirt's NAT network default, not the LNI while running VMs" in (
        host.summary
    )
    assert "(web)" in host.summary
    host.libvirt.domains = {"web": (domain_xml("default"), False)}
    assert host.run()[0] == (
        "rename libvirt network default to default-nat "
        "(VMs that name default, web: at their next start they are on the LNI)"
    )


def test_turning_it_off_says_which_vms_name_default_nat(host: Host) -> None:
    host.run()
    host.libvirt.domains = {"db": (domain_xml("default-nat"), True)}
    assert host.run(default_vm_network=False) == []  # db would lose its network
    assert "given back once no running VM uses the agent's default or default-nat (db)" in (
        host.summary
    )
    host.libvirt.domains = {"db": (domain_xml("default-nat"), False)}
    assert host.run(default_vm_network=False)[1] == (
        "rename libvirt network default-nat to default (VMs that name default-nat, db: "
        "default-nat goes away; point them at default, the same NAT network)"
    )


def test_a_host_without_a_stock_network_gets_default_and_loses_it_when_off(host: Host) -> None:
    del host.libvirt.networks["default"]
    assert host.run() == MOVED[1:]
    assert host.run(default_vm_network=False) == ["undefine the agent's libvirt network default"]
    assert sorted(host.libvirt.networks) == ["lni"]


def test_the_hosts_own_template_decides_what_is_stock(host: Host) -> None:
    # A distribution that ships another stock network: the host's file is what counts.
    Files(host.world.tmp_path).write(STOCK_TEMPLATE, LIBVIRT_STOCK_XML.replace("122", "124"))
    assert host.run() == []
    assert "neither libvirt's stock NAT network nor the agent's" in host.summary


def test_the_renamed_stock_network_matches_the_golden_file() -> None:
    check_golden_dir(
        GOLDEN / "libvirt-default-nat", {"default-nat.xml": renamed_xml(STOCK_DUMP, "default-nat")}
    )


def test_default_nat_an_admin_undefined_stays_gone_until_the_way_back(host: Host) -> None:
    host.run()
    del host.libvirt.networks["default-nat"]
    assert host.run() == []
    assert host.run(default_vm_network=False) == [
        RESTORED[0],
        "define libvirt network default from the stock definition in the state file",
    ]
    assert canonical(host.libvirt.networks["default"].xml) == canonical(STOCK_DUMP)
