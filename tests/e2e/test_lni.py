"""The LNI step in the lab: the agent's unit bridges NIC 1 at first boot; a reboot changes nothing.

The guest runs systemd-networkd; NIC 0 (52:54:00:c0:c0:00) is the management interface and
NIC 1 (52:54:00:c0:c0:01) the LNI, on its own QEMU user network 10.0.3.0/24 whose DHCP hands
out 10.0.3.15. The libvirt part is not exercised here (virt disabled): that needs the virt step.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from cockpit_lab.recipe import LNI_GUEST_IP, LNI_MAC, MGMT_GUEST_IP, MGMT_MAC
from cockpit_lab.vm import Lab, LabSpec

pytestmark = pytest.mark.e2e

# The virt step has a scenario of its own (and its packages take minutes to install under TCG).
# The lab's base config already has a [storage] table, which TOML does not let us reopen.
LNI_ONLY = "\n[rootfs]\nenabled = false\n[virt]\nenabled = false\n"
NETWORKD_FILES = (
    "/etc/systemd/network/05-cockpit-agent-br-lni.netdev",
    "/etc/systemd/network/05-cockpit-agent-br-lni.network",
    "/etc/systemd/network/05-cockpit-agent-br-lni-port.network",
)


@pytest.fixture(scope="module")
def lab(lab_factory: Any) -> Lab:
    """One booted lab instance whose agent has finished its first boot."""
    lab: Lab = lab_factory(LabSpec(extra_config=LNI_ONLY))
    lab.boot()
    lab.wait_agent()
    return lab


def links(lab: Lab) -> dict[str, dict[str, Any]]:
    """`ip -j -d addr` in the guest, by link name."""
    raw = json.loads(lab.ssh("ip -j -d addr show").stdout)
    return {link["ifname"]: link for link in raw}


def lni_step(run: dict[str, Any]) -> dict[str, Any]:
    steps = {s["name"]: s for s in run["steps"]}
    if "lni" not in steps:
        pytest.skip("the lni step is not registered in cockpit_agent.steps.all_steps() yet")
    return steps["lni"]  # type: ignore[no-any-return]


def last_run(lab: Lab) -> dict[str, Any]:
    state = json.loads(lab.ssh("cat /var/lib/cockpit-agent/state.json").stdout)
    return state["runs"][-1]  # type: ignore[no-any-return]


def test_first_boot_bridges_the_lni_with_its_dhcp_address(lab: Lab) -> None:
    step = lni_step(last_run(lab))
    assert step["status"] == "changed", step
    seen = links(lab)
    bridge = seen["br-lni"]
    assert bridge["address"] == LNI_MAC
    assert bridge["linkinfo"]["info_kind"] == "bridge"
    assert [a["local"] for a in bridge["addr_info"] if a["family"] == "inet"] == [LNI_GUEST_IP]
    port = next(
        link
        for link in seen.values()
        if link.get("permaddr", link["address"]) == LNI_MAC and link["ifname"] != "br-lni"
    )
    assert port.get("master") == "br-lni"
    assert not [a for a in port["addr_info"] if a["family"] == "inet"]


def test_management_interface_is_untouched(lab: Lab) -> None:
    seen = links(lab)
    mgmt = next(link for link in seen.values() if link["address"] == MGMT_MAC)
    assert "master" not in mgmt
    assert [a["local"] for a in mgmt["addr_info"] if a["family"] == "inet"] == [MGMT_GUEST_IP]
    route = lab.ssh("ip -4 route show default").stdout.splitlines()[0]
    assert f"dev {mgmt['ifname']}" in route, route


def test_networkd_files_sort_first_and_check_is_ok(lab: Lab) -> None:
    listing = lab.ssh("ls /etc/systemd/network").stdout.split()
    assert sorted(listing)[:3] == sorted(f.rsplit("/", 1)[1] for f in NETWORKD_FILES)
    check = json.loads(lab.ssh("cockpit-agent --json check", check=False).stdout)
    findings = {f["code"]: f for f in check["findings"]}
    assert findings["lni-bridge"]["severity"] == "ok"
    assert findings["lni-ssh"]["severity"] == "ok"


def test_ssh_over_the_lni_forward(lab: Lab) -> None:
    proc = lab.ssh("ip -4 -o addr show br-lni", port=lab.ports.lni_ssh)
    assert LNI_GUEST_IP in proc.stdout


def test_reboot_changes_nothing(lab: Lab) -> None:
    lab.reboot()
    lab.wait_agent()
    step = lni_step(last_run(lab))
    assert (step["status"], step["actions"]) == ("converged", [])
    assert [a["local"] for a in links(lab)["br-lni"]["addr_info"] if a["family"] == "inet"] == [
        LNI_GUEST_IP
    ]
