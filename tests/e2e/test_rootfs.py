"""The rootfs step on the LVM-root image: a root disk larger than the image's is filled at first
boot (partition, PV, LV and ext4), and a reboot plans nothing. The plain layout (partition and
ext4) is grown in the main scenario, test_lab.py.

The LVM image is a 4 GiB disk whose last partition is a 2 GiB PV holding the root LV; the lab
here launches with a 6 GiB root disk, as an instance launched with a larger root volume than
its AMI's.
Run as: flock /tmp/cockpit-lab-vm.lock .venv/bin/pytest tests/e2e/test_rootfs.py
"""

from __future__ import annotations

from typing import Any

import pytest
from cockpit_lab.vm import Lab, LabSpec
from tests.e2e.guest import sh, step_record

pytestmark = pytest.mark.e2e

GIB = 1 << 30
MIB = 1 << 20
# No instance-store drive (the storage step finds nothing to do); no virt, no LNI.
ROOTFS_ONLY = "\n[virt]\nenabled = false\n\n[lni]\nenabled = false\n"


@pytest.fixture(scope="module")
def lab(lab_factory: Any) -> Lab:
    spec = LabSpec(nvme_count=0, root_disk_size="6G", extra_config=ROOTFS_ONLY)
    lab: Lab = lab_factory(spec, variant="lvm")
    lab.boot()
    lab.wait_agent()
    return lab


def size(lab: Lab, device: str) -> int:
    return int(sh(lab, f"blockdev --getsize64 {device}"))


def fs_size(lab: Lab) -> int:
    """Bytes of the root filesystem as statfs sees it."""
    return int(sh(lab, "df -B1 --output=size / | tail -1"))


def test_partition_pv_lv_and_ext4_fill_the_disk(lab: Lab) -> None:
    record = step_record(lab, "rootfs")
    assert (record["status"], record["error"]) == ("changed", None), record
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
    for what in (
        "grow partition 3 of",
        "resize LVM physical volume",
        "extend logical volume",
        "grow the ext4 filesystem on /",
    ):
        assert any(what in action for action in record["actions"]), (what, record["actions"])
    # This image has no cloud-init: the summary and the findings say the agent grows it all.
    assert record["summary"].endswith("the agent grows every layer (cloud-init is not installed)")
    codes = [f["code"] for f in record["findings"]]
    assert codes == ["rootfs-grown", "rootfs-growth-by-agent"], record["findings"]


def test_reboot_plans_nothing(lab: Lab) -> None:
    before = fs_size(lab)
    lab.reboot()
    lab.wait_agent()
    record = step_record(lab, "rootfs")
    assert (record["status"], record["planned"], record["actions"]) == ("converged", [], [])
    assert fs_size(lab) == before
