"""The storage step in the lab beyond the main scenario (RAID5 at first boot, nothing at the
second, a degraded array, a new array after a stop/start: test_lab.py): hostile drives left
byte-identical, and RAID1 from two drives. The time to a mounted array against the drives'
size is measured by `make bench-lab` (bench/lab.py).

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
from tests.e2e.guest import (
    ARRAY,
    MP,
    by_serial,
    export,
    members,
    sh,
    step_record,
)

pytestmark = [pytest.mark.e2e, pytest.mark.extended]

# The other steps are proven elsewhere; here they would only add minutes under TCG.
OTHERS_OFF = "\n[virt]\nenabled = false\n\n[lni]\nenabled = false\n"
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
    record = step_record(lab, "storage")
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


@pytest.fixture(scope="module")
def raid1(lab_factory: Any) -> Lab:
    # XFS needs 300 MB: a RAID1 of 256 MiB drives would be refused (see docs/storage.md).
    return start(lab_factory, LabSpec(nvme_count=2, nvme_size="512M", extra_config=OTHERS_OFF))


def test_two_drives_give_raid1(raid1: Lab) -> None:
    lab = raid1
    record = step_record(lab, "storage")
    assert (record["status"], record["error"]) == ("changed", None), record
    detail = export(lab, f"mdadm --detail --export {ARRAY}")
    assert (detail["MD_LEVEL"], detail["MD_DEVICES"]) == ("raid1", "2")
    assert sh(lab, f"findmnt -n -o FSTYPE {MP}").strip() == "xfs"
    assert "new RAID1 (fallback)" in record["summary"]


# --- an array torn down by hand ------------------------------------------------------------
