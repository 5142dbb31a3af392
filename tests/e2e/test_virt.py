"""The virt step in the lab: Cockpit and the VM stack installed by the agent at first boot.

The bare image has the packages only in its apt cache (as an AMI whose bake kept them), so the
agent's install works without a mirror. Under TCG the install takes minutes, so this runs in
`make e2e` only; `make test` boots the stock image, whose bake installed the stack
(test_lab.py, which also drives Cockpit with a browser).
"""

from __future__ import annotations

from typing import Any

import pytest
from cockpit_lab.vm import Lab, LabSpec
from tests.e2e.guest import cockpit_login_page, state, step_record

pytestmark = [pytest.mark.e2e, pytest.mark.extended]

# Storage and root growth have scenarios of their own; this one pays for the install.
VIRT_AND_LNI = "\n[rootfs]\nenabled = false\n"


@pytest.fixture(scope="module")
def lab(lab_factory: Any) -> Lab:
    """A lab whose agent installed the virtualisation stack at first boot."""
    lab: Lab = lab_factory(LabSpec(extra_config=VIRT_AND_LNI))
    lab.boot()
    lab.wait_agent(timeout=1800)
    return lab


def test_first_boot_installs_and_enables_the_stack(lab: Lab) -> None:
    virt = step_record(lab, "virt")
    assert virt["status"] == "changed", virt
    assert any(a.startswith("install packages: cockpit ") for a in virt["actions"]), virt
    for unit in ("cockpit.socket", "libvirtd.service"):
        props = lab.ssh(f"systemctl show -p ActiveState -p UnitFileState {unit}").stdout
        assert "ActiveState=active" in props and "UnitFileState=enabled" in props, props
    installed = lab.ssh(
        "dpkg-query -W -f '${Package} ${db:Status-Status}\\n' cockpit cockpit-machines "
        "libvirt-daemon-system libvirt-dbus qemu-system-x86"
    ).stdout
    assert installed.count(" installed") == 5, installed
    assert lab.ssh("cat /etc/cockpit/disallowed-users").stdout.split() == ["root"]
    assert "qemu:///system" in lab.ssh("virsh -c qemu:///system uri").stdout
    # No idle exit (ADR 0009): an idle libvirtd would read as a stopped one.
    argv = lab.ssh("tr '\\0' ' ' < /proc/$(systemctl show -p MainPID --value libvirtd)/cmdline")
    assert argv.stdout.startswith("/usr/sbin/libvirtd") and "--timeout" not in argv.stdout


def test_cockpit_login_page_answers_through_the_forward(lab: Lab) -> None:
    body = cockpit_login_page(lab.ports.mgmt_cockpit)
    assert "login" in body.lower() and "cockpit" in body.lower()


def test_the_lni_network_is_active_and_autostarted(lab: Lab) -> None:
    lni = step_record(lab, "lni")
    assert lni["status"] == "changed", lni
    network = step_record(lab, "libvirt_network")
    assert network["status"] == "changed", network
    info = lab.ssh("virsh -c qemu:///system net-info lni").stdout
    assert "Active:         yes" in info and "Autostart:      yes" in info, info
    xml = lab.ssh("virsh -c qemu:///system net-dumpxml lni").stdout
    assert "<forward mode='bridge'/>" in xml and "<bridge name='br-lni'/>" in xml


def test_reboot_plans_nothing(lab: Lab) -> None:
    lab.reboot()
    lab.wait_agent(timeout=900)
    run = state(lab)["runs"][-1]
    assert run["result"] == "converged", run
    for step in run["steps"]:
        assert step["actions"] == [] and step["planned"] == [], step
