"""The main instance (the stock image) after its first boot: a reboot through the guest's own
bootloader changes nothing, a failed array member makes check CRITICAL, and (make e2e only) a
stop/start that blanks the instance store gets a new array in place of the lost one.
"""

from __future__ import annotations

import json
import re

import pytest
from cockpit_lab.recipe import LNI_GUEST_IP
from cockpit_lab.vm import Lab
from tests.e2e.guest import (
    ARRAY,
    MP,
    by_serial,
    check,
    export,
    facts,
    fs_uuid,
    ipv4,
    links,
    problems,
    sh,
    state,
    step_record,
)

pytestmark = pytest.mark.e2e

NVME_SERIALS = ["lab-nvme-0", "lab-nvme-1", "lab-nvme-2"]
MARKER = b"lab: not blank"


def test_reboot_boots_the_guests_own_kernel_and_records_a_second_run(lab: Lab) -> None:
    first = state(lab)["runs"]
    lab.reboot()
    lab.wait_agent()
    # GRUB from the disk passes BOOT_IMAGE; a direct -kernel boot would not.
    cmdline = lab.ssh("cat /proc/cmdline").stdout
    assert "BOOT_IMAGE=/boot/vmlinuz-" in cmdline
    runs = state(lab)["runs"]  # the last 10 are kept: count by run id, not by length
    assert runs[-1]["run_id"] != first[-1]["run_id"]
    assert runs[-2]["run_id"] == first[-1]["run_id"]
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
    # cloud-init applied its network configuration again at this boot (the EC2 datasource
    # does at every boot); the agent's file still wins for the LNI.
    assert "status: done" in sh(lab, "cloud-init status")
    plan = json.loads(sh(lab, "cockpit-agent --json plan"))
    assert [s["planned"] for s in plan["steps"]] == [[]] * len(plan["steps"])


def test_check_is_critical_when_an_array_member_fails(lab: Lab) -> None:
    lab.ssh(f"mdadm --wait {ARRAY}", check=False, timeout=600)  # the initial build, if any
    victim = by_serial(lab)["lab-nvme-1"]
    sh(lab, f"mdadm {ARRAY} --fail {victim} --remove {victim}")
    code, report = check(lab)
    assert code == 2, report
    assert problems(report).get("storage-degraded") == "critical", report
    assert report["summary"].startswith("COCKPIT-AGENT CRITICAL - ")
    assert "'any:cockpit-data_degraded'=1;;0;0;" in report["perfdata"], report
    lab.ssh("cockpit-agent check --timeout 120 --prometheus /run/cockpit-agent.prom", check=False)
    text = sh(lab, "cat /run/cockpit-agent.prom")
    assert "cockpit_agent_check_status 2" in text
    degraded = r'^cockpit_agent_array_degraded_members\{array="any:cockpit-data",uuid="[^"]+"\} 1$'
    assert re.search(degraded, text, re.MULTILINE), text


@pytest.mark.extended
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
    assert saved["runs"][-2]["run_id"] == runs[-1]["run_id"]
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
