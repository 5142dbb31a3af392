"""The storage step in the lab: RAID5 at first boot, nothing at the second, a new array after
a stop/start, hostile drives left byte-identical, and RAID1 from two drives. The time to a
mounted array against the drives' size is measured by `make bench-lab` (bench/lab.py).

Only one guest runs at a time (2 cores): each lab fixture stops the labs made before it.
Run as: flock /tmp/cockpit-lab-vm.lock .venv/bin/pytest tests/e2e/test_storage.py
"""

from __future__ import annotations

import hashlib
import json
import shlex
from typing import Any

import pytest
from cockpit_lab.seed import LAB_CONFIG
from cockpit_lab.vm import Lab, LabSpec

pytestmark = pytest.mark.e2e

# The other steps are proven elsewhere; here they would only add minutes under TCG.
OTHERS_OFF = "\n[virt]\nenabled = false\n\n[lni]\nenabled = false\n"
MP = "/var/lib/libvirt/images"
ARRAY = "/dev/md/cockpit-data"
RUNNING: list[Lab] = []


def start(lab_factory: Any, spec: LabSpec) -> Lab:
    """A booted lab whose agent has finished, after stopping every lab made before it."""
    for other in RUNNING:
        other.close()
    lab: Lab = lab_factory(spec)
    RUNNING.append(lab)
    lab.boot()
    lab.wait_agent()
    return lab


def sh(lab: Lab, cmd: str) -> str:
    return lab.ssh(cmd).stdout


def state(lab: Lab) -> dict[str, Any]:
    return json.loads(sh(lab, "cat /var/lib/cockpit-agent/state.json"))  # type: ignore[no-any-return]


def storage_run(lab: Lab, saved: dict[str, Any] | None = None) -> dict[str, Any]:
    """The storage step's record in the last run."""
    run = (saved or state(lab))["runs"][-1]
    [record] = [s for s in run["steps"] if s["name"] == "storage"]
    return record  # type: ignore[no-any-return]


def export(lab: Lab, cmd: str) -> dict[str, str]:
    pairs = (line.partition("=") for line in sh(lab, cmd).splitlines() if "=" in line)
    return {k: v for k, _, v in pairs}


def by_serial(lab: Lab) -> dict[str, str]:
    """Guest device path of each drive, by its serial (lab-nvme-N, lab-root)."""
    found = json.loads(sh(lab, "lsblk -J -d -o NAME,SERIAL"))["blockdevices"]
    return {d["serial"]: f"/dev/{d['name']}" for d in found if d.get("serial")}


def members(lab: Lab) -> set[str]:
    detail = export(lab, f"mdadm --detail --export {ARRAY}")
    return {v for k, v in detail.items() if k.startswith("MD_DEVICE_") and k.endswith("_DEV")}


def fs_uuid(lab: Lab, device: str = ARRAY) -> str:
    return sh(lab, f"blkid -p -s UUID -o value {device}").strip()


# --- RAID5: first boot, reboot, drive failure, stop/start ------------------------------------


@pytest.fixture(scope="module")
def raid5(lab_factory: Any) -> Lab:
    lab = start(lab_factory, LabSpec(nvme_count=3, nvme_size="256M", extra_config=OTHERS_OFF))
    return lab


def test_first_boot_builds_a_mounted_raid5(raid5: Lab) -> None:
    record = storage_run(raid5)
    assert (record["status"], record["error"]) == ("changed", None), record
    detail = export(raid5, f"mdadm --detail --export {ARRAY}")
    assert (detail["MD_LEVEL"], detail["MD_DEVICES"]) == ("raid5", "3")
    assert detail["MD_NAME"] == "any:cockpit-data"
    drives = by_serial(raid5)
    assert members(raid5) == {drives[f"lab-nvme-{i}"] for i in range(3)}
    [mount] = json.loads(sh(raid5, f"findmnt -J -o SOURCE,FSTYPE,TARGET {MP}"))["filesystems"]
    assert mount["fstype"] == "xfs" and mount["source"].startswith("/dev/md")
    assert sh(raid5, f"stat -c '%u:%g %a' {MP}").split() == ["0:0", "711"]
    fstab = sh(raid5, "cat /etc/fstab")
    assert f"UUID={fs_uuid(raid5)} {MP} xfs defaults,nofail,x-systemd.device-timeout=60s" in fstab
    conf = sh(raid5, "cat /etc/mdadm/mdadm.conf")
    assert f"ARRAY {ARRAY} metadata=1.2 name=any:cockpit-data UUID={detail['MD_UUID']}" in conf
    assert "HOMEHOST <system>" in conf  # Debian's own lines are kept
    md = sh(raid5, f"basename $(readlink -f {ARRAY})").strip()
    assert sh(raid5, f"cat /sys/block/{md}/md/stripe_cache_size").strip() == "4096"
    assert sh(raid5, "findmnt --verify --tab-file /etc/fstab; echo rc=$?").endswith("rc=0\n")


def test_reboot_changes_nothing(raid5: Lab) -> None:
    uuid = export(raid5, f"mdadm --detail --export {ARRAY}")["MD_UUID"]
    raid5.reboot()
    raid5.wait_agent()
    record = storage_run(raid5)
    assert (record["status"], record["planned"], record["actions"]) == ("converged", [], [])
    assert export(raid5, f"mdadm --detail --export {ARRAY}")["MD_UUID"] == uuid
    assert sh(raid5, f"findmnt -n -o SOURCE {MP}").startswith("/dev/md")
    md = sh(raid5, f"basename $(readlink -f {ARRAY})").strip()
    assert sh(raid5, f"cat /sys/block/{md}/md/stripe_cache_size").strip() == "4096"  # udev rule
    plan = json.loads(sh(raid5, "cockpit-agent --json plan"))
    assert [s["planned"] for s in plan["steps"] if s["name"] == "storage"] == [[]]


def test_check_is_ok_then_critical_when_a_member_fails(raid5: Lab) -> None:
    raid5.ssh(f"mdadm --wait {ARRAY}", check=False, timeout=600)  # the initial build, if any
    ok = raid5.ssh("cockpit-agent --json check", check=False)
    codes = {f["code"]: f["severity"] for f in json.loads(ok.stdout)["findings"]}
    assert codes["storage-array"] == "ok" and codes["storage-mounted"] == "ok"
    victim = by_serial(raid5)["lab-nvme-1"]
    sh(raid5, f"mdadm {ARRAY} --fail {victim} --remove {victim}")
    bad = raid5.ssh("cockpit-agent --json check", check=False)
    assert bad.returncode == 2
    codes = {f["code"]: f["severity"] for f in json.loads(bad.stdout)["findings"]}
    assert codes["storage-degraded"] == "critical"


def test_stop_start_gives_a_new_array_and_replaces_the_stale_entries(raid5: Lab) -> None:
    old_uuid = export(raid5, f"mdadm --detail --export {ARRAY}")["MD_UUID"]
    old_fs = fs_uuid(raid5)
    raid5.wipe_nvme()  # stop, blank drives, start: boot must not hang on the dead entries
    raid5.wait_agent()
    assert sh(raid5, "systemctl is-active local-fs.target").strip() == "active"
    record = storage_run(raid5)
    assert (record["status"], record["error"]) == ("changed", None), record
    assert f"record that our array {old_uuid} is lost" in " ".join(record["actions"])
    new_uuid = export(raid5, f"mdadm --detail --export {ARRAY}")["MD_UUID"]
    assert new_uuid != old_uuid
    fstab, conf = sh(raid5, "cat /etc/fstab"), sh(raid5, "cat /etc/mdadm/mdadm.conf")
    assert old_fs not in fstab and f"UUID={fs_uuid(raid5)} {MP}" in fstab
    assert old_uuid not in conf and new_uuid in conf
    lost = state(raid5)["step_data"]["storage"]["lost"]
    assert [(x["kind"], x["uuid"]) for x in lost] == [("array", old_uuid)]
    assert sh(raid5, f"findmnt -n -o SOURCE {MP}").startswith("/dev/md")


# --- hostile drives --------------------------------------------------------------------------

# Drives 0-4 are made hostile inside the guest (storage off for that first boot); 5-7 are clean.
HOSTILE = {0: "partitioned", 1: "signature", 2: "lvm-pv", 3: "swap", 4: "mounted"}
STORAGE_OFF = LAB_CONFIG.replace("[storage]\n", "[storage]\nenabled = false\n", 1)
PREPARE = """
set -e
sfdisk -q {0} <<EOF
label: gpt
,,L
EOF
mkfs.xfs -q -f {1}
pvcreate -q {2}
mkswap -q {3}
echo "UUID=$(blkid -s UUID -o value {3}) none swap sw 0 0" >> /etc/fstab
mkfs.ext4 -q -F {4}
mkdir -p /mnt/hostile
echo "UUID=$(blkid -s UUID -o value {4}) /mnt/hostile ext4 ro,noload 0 0" >> /etc/fstab
printf '[storage]\\nenabled = true\\n' > /etc/cockpit-agent/config.d/50-e2e.toml
sync
"""


def checksums(lab: Lab) -> dict[int, str]:
    """sha256 of each hostile drive's image, read from the host."""
    return {i: hashlib.sha256(lab.nvme_path(i).read_bytes()).hexdigest() for i in HOSTILE}


@pytest.fixture(scope="module")
def hostile(lab_factory: Any) -> tuple[Lab, dict[int, str]]:
    assert "enabled = false" in STORAGE_OFF
    spec = LabSpec(nvme_count=8, nvme_size="512M", config=STORAGE_OFF + OTHERS_OFF)
    lab = start(lab_factory, spec)
    drives = by_serial(lab)
    paths = [shlex.quote(drives[f"lab-nvme-{i}"]) for i in sorted(HOSTILE)]
    sh(lab, "mkdir -p /etc/cockpit-agent/config.d\n" + PREPARE.format(*paths))
    lab.shutdown()
    before = checksums(lab)
    lab.boot()
    lab.wait_agent()
    return lab, before


def test_hostile_drives_are_excluded_with_their_reasons(
    hostile: tuple[Lab, dict[int, str]],
) -> None:
    lab, _ = hostile
    assert sh(lab, "swapon --show=NAME --noheadings").strip()  # the swap drive is in use
    disks = {d["serial"]: d for d in json.loads(sh(lab, "cockpit-agent --json facts"))["disks"]}
    for index, code in HOSTILE.items():
        drive = disks[f"lab-nvme-{index}"]
        assert drive["eligible"] is False
        assert code in {r["code"] for r in drive["reasons"]}, (index, drive["reasons"])


def test_only_the_clean_drives_make_the_array(hostile: tuple[Lab, dict[int, str]]) -> None:
    lab, _ = hostile
    record = storage_run(lab)
    assert (record["status"], record["error"]) == ("changed", None), record
    drives = by_serial(lab)
    assert members(lab) == {drives[f"lab-nvme-{i}"] for i in (5, 6, 7)}
    for index in HOSTILE:
        assert f"{drives[f'lab-nvme-{index}'].removeprefix('/dev/')} (" in record["summary"]


def test_hostile_drives_are_byte_identical(hostile: tuple[Lab, dict[int, str]]) -> None:
    lab, before = hostile
    lab.shutdown()
    assert checksums(lab) == before


# --- two drives: RAID1 -----------------------------------------------------------------------


def test_two_drives_give_raid1(lab_factory: Any) -> None:
    # XFS needs 300 MB: a RAID1 of 256 MiB drives would be refused (see docs/storage.md).
    lab = start(lab_factory, LabSpec(nvme_count=2, nvme_size="512M", extra_config=OTHERS_OFF))
    record = storage_run(lab)
    assert (record["status"], record["error"]) == ("changed", None), record
    detail = export(lab, f"mdadm --detail --export {ARRAY}")
    assert (detail["MD_LEVEL"], detail["MD_DEVICES"]) == ("raid1", "2")
    assert sh(lab, f"findmnt -n -o FSTYPE {MP}").strip() == "xfs"
    assert "new RAID1 (fallback)" in record["summary"]
