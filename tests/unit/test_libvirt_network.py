"""The libvirt_network step's own network (lni.libvirt_network) on the bridge, from fixture
facts with a fake runner; libvirt's `default`: test_libvirt_network_default.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from cockpit_agent.config import LniConfig
from cockpit_agent.host.files import Files
from cockpit_agent.steps.libvirt_network.observed import NetworkState, read_networks
from tests.fakes import FakeRunner
from tests.helpers.lni import CONVERGED, World, names, networkd_files


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


# -- libvirt -------------------------------------------------------------------------------------

BRIDGED_XML = """<network>
  <name>{name}</name>
  <uuid>4a7c7a8e-0c0f-4b1e-9d8e-2f1c6a0b7e11</uuid>
  <forward mode='bridge'/>
  <bridge name='br-lni'/>
</network>
"""
NAT_XML = """<network>
  <name>default</name>
  <uuid>4a7c7a8e-0c0f-4b1e-9d8e-2f1c6a0b7e13</uuid>
  <forward mode='nat'/>
  <bridge name='virbr0' stp='on' delay='0'/>
  <ip address='192.168.122.1' netmask='255.255.255.0'/>
</network>
"""
V = ("virsh", "-q", "-c", "qemu:///system")


LNI_ACTIVE_AUTOSTARTED = " lni   active   yes   yes\n"


@pytest.fixture
def converged_network(world: World) -> World:
    for path, content in networkd_files().items():
        world.write(path, content)
    world.virsh = True
    return world


# libvirt's `default` network: tests/unit/test_libvirt_network_default.py
LNI_ONLY = LniConfig(default_vm_network=False)


def test_libvirt_network_is_defined_autostarted_and_started(converged_network: World) -> None:
    world = converged_network
    world.runner.expect(*V, "net-list", "--all", stdout="")
    ctx = world.ctx(CONVERGED, LNI_ONLY)
    actions = world.plan_libvirt(ctx)
    assert names(actions) == [
        "DefineLibvirtNetwork",
        "AutostartLibvirtNetwork",
        "StartLibvirtNetwork",
    ]
    xml_path = Files(world.tmp_path).path("/run/cockpit-agent/libvirt-network-lni.xml")
    world.runner.expect(*V, "net-define", str(xml_path))
    world.runner.expect(*V, "net-autostart", "lni")
    world.runner.expect(*V, "net-start", "lni")
    step = world.libvirt_step()
    for action in actions:
        step.apply(action, ctx)
    assert '<forward mode="bridge" />' in xml_path.read_text()
    assert world.runner.calls[-3:] == [
        (*V, "net-define", str(xml_path)),
        (*V, "net-autostart", "lni"),
        (*V, "net-start", "lni"),
    ]


def test_libvirt_network_already_right_plans_nothing(converged_network: World) -> None:
    world = converged_network
    world.runner.expect(*V, "net-list", "--all", stdout=LNI_ACTIVE_AUTOSTARTED)
    world.runner.expect(
        *V, "net-dumpxml", "--inactive", "lni", stdout=BRIDGED_XML.format(name="lni")
    )
    assert world.plan_libvirt(world.ctx(CONVERGED, LNI_ONLY)) == []


def test_libvirt_network_with_another_definition_is_replaced(converged_network: World) -> None:
    world = converged_network
    world.runner.expect(*V, "net-list", "--all", stdout=LNI_ACTIVE_AUTOSTARTED)
    world.runner.expect(
        *V, "net-dumpxml", "--inactive", "lni", stdout=NAT_XML.replace("default", "lni")
    )
    ctx = world.ctx(CONVERGED, LNI_ONLY)
    actions = world.plan_libvirt(ctx)
    assert [a.describe() for a in actions] == [
        "redefine libvirt network lni",
        "autostart libvirt network lni",
        "start libvirt network lni",
    ]
    xml_path = Files(world.tmp_path).path("/run/cockpit-agent/libvirt-network-lni.xml")
    for argv in (("net-destroy", "lni"), ("net-undefine", "lni"), ("net-define", str(xml_path))):
        world.runner.expect(*V, *argv)
    world.libvirt_step().apply(actions[0], ctx)
    assert world.runner.calls[-3:] == [
        (*V, "net-destroy", "lni"),
        (*V, "net-undefine", "lni"),
        (*V, "net-define", str(xml_path)),
    ]


def test_libvirt_not_answering_leaves_the_network_for_later(converged_network: World) -> None:
    world = converged_network
    world.runner.expect(*V, "net-list", "--all", rc=1, stderr="failed to connect")
    step = world.libvirt_step()
    ctx = world.ctx(CONVERGED)
    observed = step.observe(ctx)
    assert step.plan(observed, ctx) == []
    assert "libvirt does not answer" in step.summarize(observed)


def test_net_list_rows_give_state_and_autostart_whatever_the_name() -> None:
    runner = FakeRunner()
    table = (
        " default       active     yes   yes\n"
        " lab net two   inactive   no    yes\n"
        " transient     active     no    no\n"
        "\n"
    )
    runner.expect(*V, "net-list", "--all", stdout=table)
    runner.expect(*V, "net-dumpxml", "--inactive", "lab net two", stdout="<network/>")
    networks, listed = read_networks(runner, ("lab net two", "absent"))
    assert listed == ("default", "lab net two", "transient")
    assert networks == {
        "lab net two": NetworkState("lab net two", "<network/>", active=False, autostart=False),
        "absent": None,
    }
