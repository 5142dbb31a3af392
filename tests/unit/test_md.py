"""md array facts: captured sysfs trees and `mdadm --detail --export` answers (from the lab)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cockpit_agent.config import StorageConfig
from cockpit_agent.facts.disks import RawDisk, classify
from cockpit_agent.facts.md import (
    MdArray,
    normalize_uuid,
    parse_export,
    read_arrays,
    superblock_of,
)
from tests.fakes import FakeRunner

STORAGE = Path(__file__).resolve().parent.parent / "fixtures" / "storage"
UUID = "0f1e2d3c:4b5a6978:8796a5b4:c3d2e1f0"
DETAIL = ("mdadm", "--detail", "--export", "/dev/md127")


def read(tree: str, detail: str | None = "detail-raid5.export", rc: int = 0) -> list[MdArray]:
    runner = FakeRunner()
    text = (STORAGE / detail).read_text() if detail else ""
    runner.expect(*DETAIL, rc=rc, stdout=text, stderr="mdadm: cannot open /dev/md127")
    return read_arrays(runner, sysfs=STORAGE / tree / "sys")


def test_clean_raid5_from_sysfs_and_mdadm() -> None:
    [array] = read("raid5-clean")
    assert (array.device, array.path, array.dev) == ("md127", "/dev/md127", "9:127")
    assert (array.name, array.short_name, array.uuid) == ("any:cockpit-data", "cockpit-data", UUID)
    assert (array.level, array.raid_disks, array.state) == ("raid5", 3, "clean")
    assert (array.degraded, array.missing, array.sync_action) == (0, 0, "idle")
    assert (array.chunk_bytes, array.stripe_cache_size, array.metadata) == (262144, 4096, "1.2")
    assert array.size_bytes == 1044480 * 512
    assert array.active
    assert array.progress is None
    assert [(m.name, m.path, m.role, m.in_sync) for m in array.members] == [
        ("nvme1n1", "/dev/nvme1n1", 0, True),
        ("nvme2n1", "/dev/nvme2n1", 1, True),
        ("nvme3n1", "/dev/nvme3n1", 2, True),
    ]


def test_new_raid5_recovers_onto_its_last_drive_and_misses_nothing() -> None:
    """mdadm builds a RAID5 degraded and recovers onto the last drive: nothing is missing."""
    [array] = read("raid5-building")
    assert (array.degraded, array.missing) == (1, 0)
    assert [m.name for m in array.rebuilding] == ["nvme3n1"]
    assert array.members[2].role == 2
    assert array.progress == "38.2%"


def test_degraded_raid5_misses_one_member() -> None:
    [array] = read("raid5-degraded")
    assert (array.degraded, array.missing, array.rebuilding) == (1, 1, [])
    assert [m.name for m in array.members] == ["nvme1n1", "nvme3n1"]


def test_inactive_array_takes_its_uuid_from_mdadm_not_the_zero_sysfs_uuid() -> None:
    [array] = read("raid5-inactive", "detail-inactive.export")
    assert not array.active
    assert (array.level, array.raid_disks, array.uuid) == ("", 0, UUID)
    assert [(m.role, m.state) for m in array.members] == [(None, ["spare"])] * 2


def test_mdadm_failure_keeps_sysfs_facts_and_the_sysfs_uuid() -> None:
    [array] = read("raid5-clean", None, rc=1)
    assert array.name is None
    assert array.uuid == UUID  # from md/uuid
    assert array.detail_error is not None and "exited 1" in array.detail_error
    assert array.state == "clean"


def test_inactive_array_without_mdadm_has_no_uuid() -> None:
    [array] = read("raid5-inactive", None, rc=1)
    assert array.uuid is None


def test_no_md_directory_means_no_arrays(tmp_path: Path) -> None:
    (tmp_path / "block" / "nvme1n1").mkdir(parents=True)
    (tmp_path / "block" / "md0").mkdir()  # an md node without md/: not an array
    assert read_arrays(FakeRunner(), sysfs=tmp_path) == []
    assert read_arrays(FakeRunner(), sysfs=tmp_path / "absent") == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (UUID, UUID),
        ("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", UUID),
        ("0F1E2D3C:4B5A6978:8796A5B4:C3D2E1F0", UUID),
        ("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f", None),
        ("0f1e2d3c 4b5a 6978 8796 a5b4c3d2e1f0", None),
        ("", None),
        ("not-a-uuid", None),
    ],
)
def test_normalize_uuid(text: str, expected: str | None) -> None:
    assert normalize_uuid(text) == expected


def test_superblock_from_a_member_probe() -> None:
    probe = parse_export((STORAGE / "blkid-member.export").read_text())
    raw = RawDisk(name="nvme1n1", path="/dev/nvme1n1", probe=probe, signatures=[probe["TYPE"]])
    block = superblock_of(classify(raw, StorageConfig()))
    assert block is not None
    assert (block.uuid, block.name) == (UUID, "any:cockpit-data")


def test_no_superblock_on_a_filesystem() -> None:
    probe = parse_export((STORAGE / "blkid-xfs.export").read_text())
    raw = RawDisk(name="nvme1n1", path="/dev/nvme1n1", probe=probe, signatures=["xfs"])
    assert superblock_of(classify(raw, StorageConfig())) is None


def test_an_md_node_with_no_array_behind_it_is_passed_over(tmp_path: Path) -> None:
    # What `mdadm --stop` left in the lab: md127 with array_state clear, size 0, no member;
    # mdadm --detail says "Array associated with md device /dev/md127 does not exist". The
    # runner knows no command, so asking mdadm about it would fail the test.
    node = tmp_path / "sys" / "block" / "md127"
    (node / "md").mkdir(parents=True)
    (node / "size").write_text("0\n")
    (node / "dev").write_text("9:127\n")
    (node / "md" / "array_state").write_text("clear\n")
    (node / "md" / "level").write_text("\n")
    assert read_arrays(FakeRunner(), sysfs=tmp_path / "sys") == []
    # An inactive array that still has a member is an array: it is read.
    (node / "md" / "array_state").write_text("inactive\n")
    (node / "md" / "dev-nvme1n1").mkdir()
    runner = FakeRunner()
    runner.expect(*DETAIL, rc=1, stderr="mdadm: cannot open /dev/md127")
    [array] = read_arrays(runner, sysfs=tmp_path / "sys")
    assert array.uuid is None and array.detail_error is not None
