"""The lab's proof and the main job without virtualisation, on one emulated Outposts server.

The agent runs at boot as its systemd unit. One instance for the module, three boots, each
step's assertions at each: the first boot (the root grown from the image's 2 GiB to its 4 GiB
disk, a RAID5 of the three drives mounted, the LNI bridged with its DHCP address), a reboot
through the guest's own bootloader (zero actions), a failed array member (check: CRITICAL), and
a stop/start that blanks the instance store (a new array replaces the lost one). Hostile drives
and RAID1 are test_storage.py's; the LVM root is test_rootfs.py's; installing the
virtualisation stack is test_virt.py's.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from cockpit_lab.recipe import LNI_GUEST_IP, LNI_MAC, MGMT_GUEST_IP, MGMT_MAC
from cockpit_lab.vm import Lab, LabSpec
from tests.e2e.guest import (
    ARRAY,
    MP,
    by_serial,
    export,
    fs_uuid,
    ipv4,
    links,
    members,
    sh,
    state,
    step_record,
)

pytestmark = pytest.mark.e2e

# The bare image has the virtualisation packages only in its apt cache; installing them under
# TCG takes minutes, which is the business of the scenario about installation, not this one.
SMOKE_CONFIG = "\n[virt]\nenabled = false\n"
NETWORKD_FILES = (
    "05-cockpit-agent-br-lni.netdev",
    "05-cockpit-agent-br-lni.network",
    "05-cockpit-agent-br-lni-port.network",
)
GIB = 1 << 30
NVME_SERIALS = ["lab-nvme-0", "lab-nvme-1", "lab-nvme-2"]
MARKER = b"lab: not blank"


@pytest.fixture(scope="module")
def lab(lab_factory: Any) -> Lab:
    """One booted lab instance whose agent has finished its first boot."""
    lab: Lab = lab_factory(LabSpec(extra_config=SMOKE_CONFIG))
    lab.boot()
    lab.wait_agent()
    return lab


def guest_json(lab: Lab, cmd: str) -> Any:
    return json.loads(lab.ssh(cmd).stdout)


def facts(lab: Lab) -> dict[str, Any]:
    return guest_json(lab, "cockpit-agent --json facts")  # type: ignore[no-any-return]


def disks_by_serial(lab: Lab) -> dict[str, dict[str, Any]]:
    return {d["serial"]: d for d in facts(lab)["disks"]}


def test_agent_ran_at_boot_as_its_systemd_unit(lab: Lab) -> None:
    props = lab.wait_agent()
    assert props["LoadState"] == "loaded"
    assert int(props["ExecMainStartTimestampMonotonic"]) > 0
    # PID 1 started the unit in this boot's transaction: nobody ran it by hand.
    journal = lab.ssh("journalctl -b -o cat _PID=1 -u cockpit-agent.service").stdout
    assert "Starting cockpit-agent.service" in journal
    enabled = lab.ssh("systemctl is-enabled cockpit-agent.service", check=False).stdout
    assert enabled.strip() == "enabled"
    # Reached through root's PATH, as an operator would.
    assert lab.ssh("command -v cockpit-agent").stdout.strip()


def test_agent_reached_the_imds_stub_inside_the_guest(lab: Lab) -> None:
    identity = facts(lab)["identity"]
    assert identity["instance_id"] == lab.instance_id  # a value only the stub can serve
    lo = guest_json(lab, "ip -j addr show dev lo")
    assert "169.254.169.254" in {a["local"] for a in lo[0]["addr_info"]}


def test_facts_list_the_nvme_drives_and_exclude_the_root_disk(lab: Lab) -> None:
    disks = disks_by_serial(lab)
    for serial in NVME_SERIALS:
        assert disks[serial]["model"] == "QEMU NVMe Ctrl"
        assert disks[serial]["nvme"] is True
    root = disks["lab-root"]
    assert root["root_disk"] is True
    assert root["eligible"] is False
    assert "root-disk" in {r["code"] for r in root["reasons"]}


def test_facts_identify_the_lni_by_mac_at_device_index_1(lab: Lab) -> None:
    found = facts(lab)
    by_index = {i["device_number"]: i["mac"] for i in found["interfaces"]}
    assert by_index == {0: MGMT_MAC, 1: LNI_MAC}
    assert LNI_MAC in {link["mac"] for link in found["links"]} | {
        link.get("permanent_mac") for link in found["links"]
    }


def test_state_json_belongs_to_this_instance_and_this_boot(lab: Lab) -> None:
    saved = state(lab)
    assert saved["instance_id"] == lab.instance_id
    last = saved["runs"][-1]
    assert last["finished_at"]
    assert last["boot_id"] == lab.boot_id()


def test_lni_path_forwards_reach_the_guest(lab: Lab) -> None:
    hostname = lab.ssh("hostname", port=lab.ports.lni_ssh).stdout.strip()
    assert hostname == "cockpit-lab"


# --- first boot: each step's result -----------------------------------------------------------


def test_first_boot_grows_the_root_partition_and_ext4_to_the_disk(lab: Lab) -> None:
    record = step_record(lab, "rootfs")
    assert (record["status"], record["error"]) == ("changed", None), record
    actions = " ".join(record["actions"])
    assert "grow partition 2 of" in actions and "grow the ext4 filesystem on /" in actions
    source = sh(lab, "findmnt -n -o SOURCE /").strip()
    size = int(sh(lab, f"blockdev --getsize64 {source}"))
    # The image's 2 GiB root partition is the last of the 4 GiB disk: after the BIOS boot
    # partition and the alignment gap, it now ends where GPT's backup header begins.
    assert size > 4 * GIB - 4 * (1 << 20)
    assert int(sh(lab, "df -B1 --output=size / | tail -1")) > 0.9 * size


def test_first_boot_builds_a_mounted_raid5(lab: Lab) -> None:
    record = step_record(lab, "storage")
    assert (record["status"], record["error"]) == ("changed", None), record
    detail = export(lab, f"mdadm --detail --export {ARRAY}")
    assert (detail["MD_LEVEL"], detail["MD_DEVICES"]) == ("raid5", "3")
    assert detail["MD_NAME"] == "any:cockpit-data"
    drives = by_serial(lab)
    assert members(lab) == {drives[serial] for serial in NVME_SERIALS}
    [mount] = json.loads(sh(lab, f"findmnt -J -o SOURCE,FSTYPE,TARGET {MP}"))["filesystems"]
    assert mount["fstype"] == "xfs" and mount["source"].startswith("/dev/md")
    assert sh(lab, f"stat -c '%u:%g %a' {MP}").split() == ["0:0", "711"]
    fstab = sh(lab, "cat /etc/fstab")
    assert f"UUID={fs_uuid(lab)} {MP} xfs defaults,nofail,x-systemd.device-timeout=60s" in fstab
    conf = sh(lab, "cat /etc/mdadm/mdadm.conf")
    assert f"ARRAY {ARRAY} metadata=1.2 name=any:cockpit-data UUID={detail['MD_UUID']}" in conf
    assert "HOMEHOST <system>" in conf  # Debian's own lines are kept
    md = sh(lab, f"basename $(readlink -f {ARRAY})").strip()
    assert sh(lab, f"cat /sys/block/{md}/md/stripe_cache_size").strip() == "4096"
    assert sh(lab, "findmnt --verify --tab-file /etc/fstab; echo rc=$?").endswith("rc=0\n")


def test_first_boot_bridges_the_lni_with_its_dhcp_address(lab: Lab) -> None:
    record = step_record(lab, "lni")
    assert (record["status"], record["error"]) == ("changed", None), record
    seen = links(lab)
    bridge = seen["br-lni"]
    assert bridge["address"] == LNI_MAC
    assert bridge["linkinfo"]["info_kind"] == "bridge"
    assert ipv4(bridge) == [LNI_GUEST_IP]
    port = next(
        link
        for link in seen.values()
        if link.get("permaddr", link["address"]) == LNI_MAC and link["ifname"] != "br-lni"
    )
    assert port.get("master") == "br-lni"
    assert ipv4(port) == []


def test_management_interface_is_untouched(lab: Lab) -> None:
    mgmt = next(link for link in links(lab).values() if link["address"] == MGMT_MAC)
    assert "master" not in mgmt
    assert ipv4(mgmt) == [MGMT_GUEST_IP]
    route = sh(lab, "ip -4 route show default").splitlines()[0]
    assert f"dev {mgmt['ifname']}" in route, route


def test_networkd_files_sort_first_and_check_is_ok(lab: Lab) -> None:
    listing = sorted(sh(lab, "ls /etc/systemd/network").split())
    assert listing[:3] == sorted(NETWORKD_FILES)
    lab.ssh(f"mdadm --wait {ARRAY}", check=False, timeout=600)  # the initial build, if any
    report = json.loads(lab.ssh("cockpit-agent --json check", check=False).stdout)
    codes = {f["code"]: f["severity"] for f in report["findings"]}
    for code in ("lni-bridge", "lni-ssh", "storage-array", "storage-mounted", "rootfs-grown"):
        assert codes.get(code) == "ok", (code, report)


# --- reboot and stop/start ----------------------------------------------------------------------


def test_reboot_boots_the_guests_own_kernel_and_records_a_second_run(lab: Lab) -> None:
    first = state(lab)["runs"]
    lab.reboot()
    lab.wait_agent()
    # GRUB from the disk passes BOOT_IMAGE; a direct -kernel boot would not.
    cmdline = lab.ssh("cat /proc/cmdline").stdout
    assert "BOOT_IMAGE=/boot/vmlinuz-" in cmdline
    runs = state(lab)["runs"]
    assert len(runs) == len(first) + 1
    assert runs[-1]["run_id"] != first[-1]["run_id"]
    assert runs[-1]["boot_id"] == lab.boot_id() != first[-1]["boot_id"]
    boots = lab.ssh("journalctl --list-boots --no-pager").stdout.strip().splitlines()
    assert len(boots) >= 3  # header + two boots: the journal persists across reboots


def test_reboot_changes_nothing(lab: Lab) -> None:
    run = state(lab)["runs"][-1]
    assert run["result"] == "converged", run
    for record in run["steps"]:
        assert (record["planned"], record["actions"]) == ([], []), record
    detail = export(lab, f"mdadm --detail --export {ARRAY}")
    assert f"UUID={detail['MD_UUID']}" in sh(lab, "cat /etc/mdadm/mdadm.conf")  # the same array
    assert sh(lab, f"findmnt -n -o SOURCE {MP}").startswith("/dev/md")
    md = sh(lab, f"basename $(readlink -f {ARRAY})").strip()
    assert sh(lab, f"cat /sys/block/{md}/md/stripe_cache_size").strip() == "4096"  # udev rule
    assert ipv4(links(lab)["br-lni"]) == [LNI_GUEST_IP]
    plan = json.loads(sh(lab, "cockpit-agent --json plan"))
    assert [s["planned"] for s in plan["steps"]] == [[]] * len(plan["steps"])


def test_check_is_critical_when_an_array_member_fails(lab: Lab) -> None:
    lab.ssh(f"mdadm --wait {ARRAY}", check=False, timeout=600)  # the initial build, if any
    victim = by_serial(lab)["lab-nvme-1"]
    sh(lab, f"mdadm {ARRAY} --fail {victim} --remove {victim}")
    bad = lab.ssh("cockpit-agent --json check", check=False)
    assert bad.returncode == 2
    codes = {f["code"]: f["severity"] for f in json.loads(bad.stdout)["findings"]}
    assert codes["storage-degraded"] == "critical"


def test_stop_start_blanks_the_instance_store_and_a_new_array_replaces_ours(lab: Lab) -> None:
    runs = state(lab)["runs"]
    old_uuid = export(lab, f"mdadm --detail --export {ARRAY}")["MD_UUID"]
    old_fs = fs_uuid(lab)
    lab.shutdown()
    lab.write_nvme(1, MARKER)
    assert lab.read_nvme(1, length=len(MARKER)) == MARKER  # the host sees the drive's bytes
    lab.wipe_nvme()  # the guest is stopped: blank the drives; boot() is the start
    assert lab.read_nvme(1, length=len(MARKER)) == bytes(len(MARKER))
    lab.boot()
    lab.wait_agent()
    saved = state(lab)
    assert saved["instance_id"] == lab.instance_id  # same instance, same root volume
    assert len(saved["runs"]) == len(runs) + 1
    assert saved["runs"][-1]["boot_id"] == lab.boot_id()
    assert {d["serial"] for d in facts(lab)["disks"]} >= set(NVME_SERIALS)
    # Boot did not hang on the dead array's entries; the step built a new array.
    assert sh(lab, "systemctl is-active local-fs.target").strip() == "active"
    record = step_record(lab, "storage", saved)
    assert (record["status"], record["error"]) == ("changed", None), record
    assert f"record that our array {old_uuid} is lost" in " ".join(record["actions"])
    new_uuid = export(lab, f"mdadm --detail --export {ARRAY}")["MD_UUID"]
    assert new_uuid != old_uuid
    fstab, conf = sh(lab, "cat /etc/fstab"), sh(lab, "cat /etc/mdadm/mdadm.conf")
    assert old_fs not in fstab and f"UUID={fs_uuid(lab)} {MP}" in fstab
    assert old_uuid not in conf and new_uuid in conf
    lost = saved["step_data"]["storage"]["lost"]
    assert [(x["kind"], x["uuid"]) for x in lost] == [("array", old_uuid)]
    assert sh(lab, f"findmnt -n -o SOURCE {MP}").startswith("/dev/md")
