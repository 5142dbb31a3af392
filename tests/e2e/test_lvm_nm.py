"""A RHEL-like stock AMI: the root on LVM, cloud-init active, the network run by NetworkManager.

The `lvm` image is a 4 GiB disk whose last partition is a 2 GiB PV holding the root LV; the lab
launches it with a 6 GiB root volume, as an instance launched with a larger root volume than
its AMI's. cloud-init's EC2 datasource writes NetworkManager keyfiles for both NICs. The LNI's
cable is unplugged when the instance starts (QEMU's set_link), so the first boot's bridge gets
no address and must be rolled back with the management path untouched; plugged in, the next
run bridges it. A reboot then plans nothing.

Run as: flock /tmp/cockpit-lab-vm.lock .venv/bin/pytest tests/e2e/test_lvm_nm.py
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from cockpit_lab.recipe import LNI_GUEST_IP, LNI_MAC, MGMT_GUEST_IP, MGMT_MAC
from cockpit_lab.vm import Lab, LabSpec
from tests.e2e.guest import ipv4, links, sh, state, step_record

pytestmark = pytest.mark.e2e

GIB = 1 << 30
MIB = 1 << 20
# No instance-store drive (the storage step finds nothing to do); no virtualisation stack in
# this image. A short address wait: the unplugged LNI gets no lease at all.
CONFIG = "\n[virt]\nenabled = false\n\n[lni]\naddress_timeout_seconds = 20\n"


@pytest.fixture(scope="module")
def lab(lab_factory: Any) -> Lab:
    spec = LabSpec(nvme_count=0, root_disk_size="6G", extra_config=CONFIG, lni_cable=False)
    lab: Lab = lab_factory(spec, variant="lvm")
    lab.boot()
    lab.wait_agent()
    return lab


def size(lab: Lab, device: str) -> int:
    return int(sh(lab, f"blockdev --getsize64 {device}"))


def fs_size(lab: Lab) -> int:
    """Bytes of the root filesystem as statfs sees it."""
    return int(sh(lab, "df -B1 --output=size / | tail -1"))


def test_cloud_init_configured_networkmanager_from_the_ec2_datasource(lab: Lab) -> None:
    assert "status: done" in sh(lab, "cloud-init status --wait")
    result = json.loads(sh(lab, "cat /run/cloud-init/result.json"))["v1"]
    assert result["errors"] == [], result
    assert result["datasource"].startswith("DataSourceEc2"), result
    assert sh(lab, "systemctl is-active NetworkManager").strip() == "active"
    assert "cloud-init" in sh(lab, "ls /etc/NetworkManager/system-connections")


def test_partition_pv_lv_and_ext4_fill_the_disk(lab: Lab) -> None:
    # cloud-init's growpart skips a device-mapper root: the agent grows all four layers,
    # after cloud-init's init stage, and says so (ADR 0011).
    record = step_record(lab, "rootfs")
    assert (record["status"], record["error"]) == ("changed", None), record
    for what in (
        "grow partition 3 of",
        "resize LVM physical volume",
        "extend logical volume",
        "grow the ext4 filesystem on /",
    ):
        assert any(what in action for action in record["actions"]), (what, record["actions"])
    assert "the agent grows every layer (cloud-init's growpart" in record["summary"], record
    codes = [f["code"] for f in record["findings"]]
    assert codes == ["rootfs-grown", "rootfs-growth-by-agent"], record["findings"]
    pv, vg = sh(lab, "pvs --noheadings -o pv_name,vg_name").split()
    assert vg == "labvg"
    free = sh(lab, "vgs --noheadings --units b --nosuffix -o vg_free labvg").strip()
    assert int(free) == 0  # leave_free_percent = 0: the LV took every extent
    # The PV's partition ends at the disk's end; before it, the BIOS boot partition and the
    # 256 MiB /boot.
    assert size(lab, pv) > 6 * GIB - 262 * MIB
    lv = size(lab, "/dev/mapper/labvg-root")
    assert lv > 5 * GIB
    assert fs_size(lab) > 0.9 * lv


def test_unplugged_lni_bridge_is_rolled_back_with_the_management_path_kept(lab: Lab) -> None:
    record = step_record(lab, "lni")
    assert record["status"] == "failed", record
    assert "rolled back" in (record["error"] or ""), record
    seen = links(lab)
    assert "br-lni" not in seen, seen["br-lni"]
    lni = next(link for link in seen.values() if link["address"] == LNI_MAC)
    assert "master" not in lni
    mgmt = next(link for link in seen.values() if link["address"] == MGMT_MAC)
    assert ipv4(mgmt) == [MGMT_GUEST_IP]
    assert "cockpit-agent" not in sh(lab, "nmcli -g NAME connection show --active")


def test_plugged_in_the_lni_is_bridged_with_its_dhcp_address(lab: Lab) -> None:
    lab.set_link("lni", up=True)
    proc = lab.ssh("cockpit-agent reconcile", check=False, timeout=600)
    record = step_record(lab, "lni")
    assert proc.returncode == 0, (record, proc.stdout, proc.stderr)
    assert "via NetworkManager" in record["summary"], record
    seen = links(lab)
    bridge = seen["br-lni"]
    assert bridge["address"] == LNI_MAC
    assert ipv4(bridge) == [LNI_GUEST_IP]
    port = next(
        link
        for link in seen.values()
        if link.get("permaddr", link["address"]) == LNI_MAC and link["ifname"] != "br-lni"
    )
    assert port.get("master") == "br-lni"
    mgmt = next(link for link in seen.values() if link["address"] == MGMT_MAC)
    assert "master" not in mgmt and ipv4(mgmt) == [MGMT_GUEST_IP]
    active = sh(lab, "nmcli -g NAME connection show --active").split()
    assert {"cockpit-agent-br-lni", "cockpit-agent-br-lni-port"} <= set(active), active
    assert lab.ssh("hostname", port=lab.ports.lni_ssh).returncode == 0  # SSH over the LNI


def test_reboot_plans_nothing(lab: Lab) -> None:
    before = fs_size(lab)
    lab.reboot()
    lab.wait_agent()
    run = state(lab)["runs"][-1]
    assert run["result"] == "converged", run
    for record in run["steps"]:
        assert (record["planned"], record["actions"]) == ([], []), record
    assert fs_size(lab) == before
    assert ipv4(links(lab)["br-lni"]) == [LNI_GUEST_IP]
