"""The lab's proof: the agent runs at boot as its systemd unit in an emulated Outposts server.

One instance for the module: first boot, checks, a reboot (the guest's own bootloader), and a
stop/start that blanks the instance store. Hostile drives are test_storage.py's business.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from cockpit_lab.recipe import LNI_MAC, MGMT_MAC
from cockpit_lab.vm import Lab, LabSpec

pytestmark = pytest.mark.e2e

# The bare image has the virtualisation packages only in its apt cache; installing them under
# TCG takes minutes, which is the business of the scenario about installation, not this one.
SMOKE_CONFIG = "\n[virt]\nenabled = false\n"
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


def state(lab: Lab) -> dict[str, Any]:
    return guest_json(lab, "cat /var/lib/cockpit-agent/state.json")  # type: ignore[no-any-return]


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


def test_stop_start_blanks_the_instance_store(lab: Lab) -> None:
    runs = state(lab)["runs"]
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
