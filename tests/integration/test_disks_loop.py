"""Disk facts on real loop devices: blank, ext4, partitioned and mounted."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from pydantic import ByteSize
from tests.fakes import RecordingRunner

from cockpit_agent.config import StorageConfig
from cockpit_agent.facts.disks import gather_disks

if TYPE_CHECKING:
    from tests.helpers.loops import LoopDevices

pytestmark = pytest.mark.integration
MIB = 1024**2


def test_loop_devices_are_classified(loops: LoopDevices) -> None:
    blank = loops.attach("blank")
    ext4 = loops.attach("ext4")
    loops.mkfs_ext4(ext4)
    parted = loops.attach("parted")
    partition = loops.partition(parted)
    mounted = loops.attach("mounted")
    loops.mkfs_ext4(mounted)
    mountpoint = loops.mount(mounted)
    ours = [blank, ext4, parted, mounted]
    config = StorageConfig(devices=ours, min_device_size=ByteSize(MIB))
    runner = RecordingRunner()

    disks = {d.path: d for d in gather_disks(config, runner)}

    assert disks[blank].eligible
    assert disks[blank].reasons == []
    assert disks[blank].size_bytes == 64 * MIB
    assert disks[blank].signatures == []

    assert not disks[ext4].eligible
    assert "signature" in disks[ext4].codes
    assert "ext4" in disks[ext4].signatures
    assert disks[ext4].fs_uuid

    assert not disks[parted].eligible
    assert "partitioned" in disks[parted].codes
    assert disks[parted].partitions == [Path(partition).name]

    assert not disks[mounted].eligible
    assert "mounted" in disks[mounted].codes
    assert disks[mounted].mountpoints == [str(mountpoint)]

    # Only our devices were probed, and nothing else on the host is eligible.
    assert {call[-1] for call in runner.calls} <= set(ours)
    assert {call[0] for call in runner.calls} == {"blkid", "wipefs"}
    others = [d for path, d in disks.items() if path not in ours]
    assert all(d.codes[0] == "not-listed" and not d.eligible for d in others)
    roots = [d for d in disks.values() if d.root_disk]
    assert roots, "the disk under / was not found"
    assert all("root-disk" in d.codes for d in roots)
