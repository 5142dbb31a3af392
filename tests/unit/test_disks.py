"""Disk facts: classification of observed disks, and reading a captured sysfs/proc tree."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ByteSize, ValidationError

from cockpit_agent.config import EC2_INSTANCE_STORE_MODEL, StorageConfig
from cockpit_agent.facts.disks import Disk, RawDisk, classify, gather_disks, read_disks
from tests.fakes import FakeRunner, UnexpectedCommand

OUTPOST = Path(__file__).resolve().parent.parent / "fixtures" / "disks" / "outpost"
EBS_MODEL = "Amazon Elastic Block Store"
GIB = 1024**3


def raw(name: str = "nvme1n1", **fields: Any) -> RawDisk:
    """A clean, allowed instance-store namespace unless `fields` say otherwise."""
    base: dict[str, Any] = {
        "name": name,
        "path": f"/dev/{name}",
        "dev": "259:2",
        "model": EC2_INSTANCE_STORE_MODEL,
        "serial": "AWS1111111111111111",
        "size_bytes": 1250 * 10**9,
        "nvme": True,
        "probe": {},
    }
    return RawDisk(**(base | fields))


def codes(disk: Disk) -> list[str]:
    return [r.code for r in disk.reasons]


# --- classify -----------------------------------------------------------------------------


def test_clean_allowed_nvme_is_eligible() -> None:
    disk = classify(raw(), StorageConfig())
    assert disk.eligible
    assert disk.reasons == []
    assert (disk.name, disk.path, disk.nvme) == ("nvme1n1", "/dev/nvme1n1", True)


def test_ebs_volume_is_not_allowed_by_default() -> None:
    disk = classify(raw(model=EBS_MODEL), StorageConfig())
    assert not disk.eligible
    assert codes(disk) == ["model-not-allowed"]
    assert EBS_MODEL in disk.reasons[0].detail


def test_ebs_volume_allowed_when_its_model_is_listed() -> None:
    config = StorageConfig(allowed_models=[EC2_INSTANCE_STORE_MODEL, EBS_MODEL])
    assert classify(raw(model=EBS_MODEL), config).eligible


def test_model_match_is_exact() -> None:
    disk = classify(raw(model=EC2_INSTANCE_STORE_MODEL.lower()), StorageConfig())
    assert codes(disk) == ["model-not-allowed"]


def test_partitioned_disk_names_its_partitions() -> None:
    disk = classify(raw(partitions=["nvme1n1p1", "nvme1n1p2"]), StorageConfig())
    assert codes(disk) == ["partitioned"]
    assert disk.reasons[0].detail == "has partitions nvme1n1p1, nvme1n1p2"


def test_xfs_signature_is_excluded_and_identified() -> None:
    probe = {"TYPE": "xfs", "UUID": "5f1c-77", "LABEL": "scratch", "USAGE": "filesystem"}
    disk = classify(raw(probe=probe, signatures=["xfs"]), StorageConfig())
    assert codes(disk) == ["signature"]
    assert "xfs" in disk.reasons[0].detail
    assert (disk.fs_uuid, disk.label, disk.probe) == ("5f1c-77", "scratch", probe)
    assert not disk.md_member
    assert not disk.lvm_pv


def test_md_member_is_recognised() -> None:
    probe = {"TYPE": "linux_raid_member", "UUID": "a1b2", "LABEL": "host:cockpit-data"}
    disk = classify(raw(probe=probe, signatures=["linux_raid_member"]), StorageConfig())
    assert disk.md_member
    assert codes(disk) == ["signature", "md-member"]
    assert disk.label == "host:cockpit-data"  # the storage step recognises its own array


def test_lvm_pv_is_recognised() -> None:
    disk = classify(raw(signatures=["LVM2_member"]), StorageConfig())
    assert disk.lvm_pv
    assert codes(disk) == ["signature", "lvm-pv"]


def test_swap_is_excluded() -> None:
    assert codes(classify(raw(swap=True), StorageConfig())) == ["swap"]


def test_mounted_disk_names_its_mount_points() -> None:
    disk = classify(raw(mountpoints=["/mnt/a", "/mnt/b"]), StorageConfig())
    assert codes(disk) == ["mounted"]
    assert disk.reasons[0].detail == "is mounted at /mnt/a, /mnt/b"


def test_held_disk_names_its_holders() -> None:
    disk = classify(raw(holders=["dm-0", "md127"]), StorageConfig())
    assert codes(disk) == ["holders"]
    assert "dm-0, md127" in disk.reasons[0].detail


def test_root_disk_carries_every_reason() -> None:
    root = raw(
        "nvme0n1",
        model=EBS_MODEL,
        partitions=["nvme0n1p1"],
        mountpoints=["/"],
        root_disk=True,
        probe={"PTTYPE": "gpt"},
        signatures=["gpt", "PMBR"],
    )
    disk = classify(root, StorageConfig())
    assert disk.root_disk
    assert codes(disk) == ["model-not-allowed", "root-disk", "partitioned", "signature", "mounted"]


def test_root_disk_alone_is_enough_to_exclude() -> None:
    assert codes(classify(raw(root_disk=True), StorageConfig())) == ["root-disk"]


def test_too_small_uses_configured_minimum() -> None:
    small = raw(size_bytes=GIB - 512)
    assert codes(classify(small, StorageConfig())) == ["too-small"]
    assert classify(small, StorageConfig(min_device_size=ByteSize(GIB - 512))).eligible


def test_read_only_and_removable_are_excluded() -> None:
    disk = classify(raw(read_only=True, removable=True), StorageConfig())
    assert codes(disk) == ["read-only", "removable"]


def test_multi_reason_disk_lists_all_reasons() -> None:
    bad = raw(
        "sdb",
        model="QEMU HARDDISK",
        nvme=False,
        partitions=["sdb1"],
        signatures=["gpt", "linux_raid_member", "LVM2_member"],
        holders=["md0"],
        mountpoints=["/srv"],
        swap=True,
        read_only=True,
        size_bytes=4096,
    )
    disk = classify(bad, StorageConfig())
    assert not disk.eligible
    assert codes(disk) == [
        "not-nvme",
        "model-not-allowed",
        "partitioned",
        "signature",
        "md-member",
        "lvm-pv",
        "holders",
        "mounted",
        "swap",
        "read-only",
        "too-small",
    ]
    assert all(r.detail for r in disk.reasons)


def test_unprobed_or_failed_probe_is_never_eligible() -> None:
    assert codes(classify(raw(probe=None), StorageConfig())) == ["not-probed"]
    failed = raw(probe=None, probe_error="blkid is not installed")
    disk = classify(failed, StorageConfig())
    assert codes(disk) == ["probe-failed"]
    assert "blkid is not installed" in disk.reasons[0].detail


def test_loop_device_is_not_nvme_unless_listed() -> None:
    loop = raw("loop3", nvme=False, model="", size_bytes=64 * 1024**2)
    small_ok = ByteSize(1024**2)
    assert codes(classify(loop, StorageConfig(min_device_size=small_ok))) == [
        "not-nvme",
        "model-not-allowed",
    ]
    listed = StorageConfig(devices=["/dev/loop3"], min_device_size=small_ok)
    assert classify(loop, listed).eligible


def test_devices_list_is_the_only_set_considered() -> None:
    config = StorageConfig(devices=["/dev/nvme2n1"])
    unlisted = classify(raw("nvme1n1"), config)
    assert codes(unlisted) == ["not-listed"]
    assert "/dev/nvme1n1" in unlisted.reasons[0].detail
    assert classify(raw("nvme2n1", model=EBS_MODEL), config).eligible  # model is not checked


def test_devices_list_matches_udev_aliases() -> None:
    alias = "/dev/disk/by-id/nvme-Amazon_EC2_NVMe_Instance_Storage_AWS1111111111111111"
    config = StorageConfig(devices=[alias])
    assert classify(raw(aliases=[alias]), config).eligible
    assert codes(classify(raw(), config)) == ["not-listed"]


def test_listed_device_still_gets_safety_reasons() -> None:
    config = StorageConfig(devices=["/dev/nvme1n1"])
    assert codes(classify(raw(mountpoints=["/x"]), config)) == ["mounted"]


def test_facts_are_frozen() -> None:
    disk = classify(raw(), StorageConfig())
    with pytest.raises(ValidationError):
        disk.eligible = False  # type: ignore[misc]


# --- read_disks over tests/fixtures/disks/outpost -----------------------------------------

WIPEFS_XFS = json.dumps({"signatures": [{"device": "nvme2n1", "offset": "0x0", "type": "xfs"}]})
WIPEFS_GPT = json.dumps({"signatures": [{"type": "gpt"}, {"type": "gpt"}, {"type": "PMBR"}]})
WIPEFS_NONE = json.dumps({"signatures": []})

# What blkid -p and wipefs answer for each disk of the fixture: (blkid rc, blkid out, wipefs).
PROBES: dict[str, tuple[int, str, str]] = {
    "nvme0n1": (0, "DEVNAME=/dev/nvme0n1\nPTUUID=7d2c\nPTTYPE=gpt\n", WIPEFS_GPT),
    "nvme1n1": (2, "", WIPEFS_NONE),
    "nvme2n1": (0, "TYPE=xfs\nUUID=5f1c\nLABEL=my\\ scratch\nUSAGE=filesystem\n", WIPEFS_XFS),
    "nvme3n1": (0, "TYPE=linux_raid_member\nUUID=a1b2\nLABEL=h:data\n", WIPEFS_NONE),
    "nvme4n1": (0, "TYPE=swap\nUUID=c3d4\n", WIPEFS_NONE),
    "md127": (2, "", WIPEFS_NONE),
    "loop1": (2, "", WIPEFS_NONE),
}


def scripted(names: list[str]) -> FakeRunner:
    runner = FakeRunner()
    for name in names:
        rc, out, wipefs = PROBES[name]
        runner.expect("blkid", "-p", "-o", "export", f"/dev/{name}", rc=rc, stdout=out)
        runner.expect("wipefs", "--json", "--no-act", f"/dev/{name}", stdout=wipefs)
    return runner


def read_outpost(runner: FakeRunner, **kw: Any) -> dict[str, RawDisk]:
    disks = read_disks(runner, sysfs=OUTPOST / "sys", proc=OUTPOST / "proc", **kw)
    return {d.name: d for d in disks}


def test_read_disks_lists_every_disk_but_ram_zram_and_detached_loops() -> None:
    disks = read_outpost(scripted(list(PROBES)))
    assert list(disks) == ["loop1", "md127", "nvme0n1", "nvme1n1", "nvme2n1", "nvme3n1", "nvme4n1"]


def test_read_disks_reads_sysfs_attributes() -> None:
    disk = read_outpost(scripted(list(PROBES)))["nvme1n1"]
    assert disk.path == "/dev/nvme1n1"
    assert disk.dev == "259:2"
    assert disk.model == EC2_INSTANCE_STORE_MODEL  # from the controller, padding trimmed
    assert disk.serial == "AWS1111111111111111"
    assert disk.wwid == "nvme.1d0f-415753-1"
    assert disk.size_bytes == 1250 * 10**9
    assert disk.logical_block_size == 512
    assert disk.nvme
    assert not disk.read_only
    assert (disk.partitions, disk.holders, disk.mountpoints) == ([], [], [])
    assert (disk.swap, disk.root_disk) == (False, False)
    assert (disk.probe, disk.signatures, disk.probe_error) == ({}, [], None)


def test_read_disks_finds_root_disk_through_its_partition() -> None:
    disks = read_outpost(scripted(list(PROBES)))
    root = disks["nvme0n1"]
    assert root.root_disk
    assert root.partitions == ["nvme0n1p1"]
    assert root.mountpoints == ["/"]
    assert root.model == EBS_MODEL
    assert root.signatures == ["gpt", "PMBR"]
    assert [d.name for d in disks.values() if d.root_disk] == ["nvme0n1"]


def test_read_disks_sees_mounts_swap_holders_and_probes() -> None:
    disks = read_outpost(scripted(list(PROBES)))
    scratch = disks["nvme2n1"]
    assert scratch.mountpoints == ["/mnt/scratch space"]
    assert scratch.signatures == ["xfs"]
    assert scratch.probe is not None
    assert scratch.probe["LABEL"] == "my scratch"
    assert disks["nvme3n1"].holders == ["md127"]
    assert disks["nvme3n1"].signatures == ["linux_raid_member"]
    assert disks["nvme4n1"].swap
    assert not disks["md127"].nvme
    assert not disks["loop1"].nvme
    assert disks["loop1"].size_bytes == 64 * 1024**2


def test_gather_disks_on_fixture_finds_only_the_clean_instance_store() -> None:
    config = StorageConfig()
    disks = {
        d.name: d
        for d in gather_disks(
            config, scripted(list(PROBES)), sysfs=OUTPOST / "sys", proc=OUTPOST / "proc"
        )
    }
    assert [n for n, d in disks.items() if d.eligible] == ["nvme1n1"]
    assert "root-disk" in disks["nvme0n1"].codes
    assert "model-not-allowed" in disks["nvme0n1"].codes
    assert {"signature", "mounted"} <= set(disks["nvme2n1"].codes)
    assert {"md-member", "holders"} <= set(disks["nvme3n1"].codes)
    assert {"swap", "signature"} <= set(disks["nvme4n1"].codes)
    assert disks["md127"].codes == ["not-nvme", "model-not-allowed"]


def test_gather_disks_probes_only_listed_devices() -> None:
    runner = scripted(["nvme1n1", "loop1"])
    config = StorageConfig(devices=["/dev/loop1", "/dev/nvme1n1"], min_device_size=ByteSize(1))
    disks = gather_disks(config, runner, sysfs=OUTPOST / "sys", proc=OUTPOST / "proc")
    probed = sorted({call[-1] for call in runner.calls})
    assert probed == ["/dev/loop1", "/dev/nvme1n1"]
    assert sorted(d.name for d in disks if d.eligible) == ["loop1", "nvme1n1"]
    assert all(d.codes[0] == "not-listed" for d in disks if not d.eligible)


def test_read_disks_runs_nothing_unscripted() -> None:
    with pytest.raises(UnexpectedCommand):
        read_outpost(scripted(["nvme1n1"]))


def test_ambivalent_or_failed_probe() -> None:
    runner = scripted(["nvme1n1"])
    runner.expect("blkid", "-p", "-o", "export", "/dev/nvme1n1", rc=8)
    disk = read_outpost(runner, probe_only=["/dev/nvme1n1"])["nvme1n1"]
    assert disk.signatures == ["ambivalent"]
    runner.expect("wipefs", "--json", "--no-act", "/dev/nvme1n1", rc=1, stderr="Input/output error")
    disk = read_outpost(runner, probe_only=["/dev/nvme1n1"])["nvme1n1"]
    assert disk.probe is None
    assert disk.probe_error is not None
    assert "Input/output error" in disk.probe_error


# --- sysfs trees built per test -----------------------------------------------------------


def block(sysfs: Path, rel: str, dev: str, sectors: int = 2**21, **attrs: str) -> Path:
    """A block device directory under sysfs/devices with its class/block symlink."""
    path = sysfs / "devices" / rel
    path.mkdir(parents=True)
    for name, value in {"dev": dev, "size": str(sectors), **attrs}.items():
        (path / name).write_text(value + "\n")
    link = sysfs / "class" / "block" / path.name
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(path)
    return path


def members(path: Path, kind: str, *names: str) -> None:
    (path / kind).mkdir()
    for name in names:
        (path / kind / name).write_text("")


def test_root_on_raid1_of_partitions_marks_both_disks(tmp_path: Path) -> None:
    sysfs, proc = tmp_path / "sys", tmp_path / "proc"
    for n in (0, 1):
        ctrl = f"pci0000:00/0000:00:0{n}.0/nvme/nvme{n}"
        disk = block(sysfs, f"{ctrl}/nvme{n}n1", f"259:{2 * n}")
        block(sysfs, f"{ctrl}/nvme{n}n1/nvme{n}n1p1", f"259:{2 * n + 1}", partition="1")
        (disk.parent / "model").write_text("Amazon Elastic Block Store\n")
    members(block(sysfs, "virtual/block/md0", "9:0"), "slaves", "nvme0n1p1", "nvme1n1p1")
    block(sysfs, "pci0000:00/0000:00:09.0/nvme/nvme9/nvme9n1", "259:9")
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "mountinfo").write_text("1 0 9:0 / / rw - ext4 /dev/md0 rw\n")
    names = ["md0", "nvme0n1", "nvme1n1", "nvme9n1"]
    runner = FakeRunner()
    for name in names:
        runner.expect("blkid", "-p", "-o", "export", f"/dev/{name}", rc=2)
        runner.expect("wipefs", "--json", "--no-act", f"/dev/{name}")
    disks = read_disks(runner, sysfs=sysfs, proc=proc)
    assert [d.name for d in disks] == names
    assert [d.name for d in disks if d.root_disk] == ["nvme0n1", "nvme1n1"]
    assert disks[1].model == EBS_MODEL
    assert disks[1].partitions == ["nvme0n1p1"]
    assert disks[1].mountpoints == []  # the array is mounted, not the partition


def test_root_on_lvm_through_dm_and_partition(tmp_path: Path) -> None:
    sysfs, proc = tmp_path / "sys", tmp_path / "proc"
    disk = block(sysfs, "pci0000:00/0000:00:04.0/nvme/nvme0/nvme0n1", "259:0")
    part = block(
        sysfs, "pci0000:00/0000:00:04.0/nvme/nvme0/nvme0n1/nvme0n1p2", "259:1", partition="2"
    )
    members(part, "holders", "dm-0")
    members(block(sysfs, "virtual/block/dm-0", "253:0"), "slaves", "nvme0n1p2")
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "mountinfo").write_text("1 0 253:0 / / rw - xfs /dev/mapper/vg-root rw\n")
    disks = {d.name: d for d in read_disks(FakeRunner(), sysfs=sysfs, proc=proc, probe_only=[])}
    assert disks["nvme0n1"].root_disk
    assert disks["nvme0n1"].holders == ["dm-0"]
    assert not disks["dm-0"].root_disk
    assert disks["nvme0n1"].partitions == [part.name]
    assert disk.resolve() == (sysfs / "class" / "block" / "nvme0n1").resolve()


def test_hidden_multipath_paths_are_not_listed(tmp_path: Path) -> None:
    sysfs = tmp_path / "sys"
    subsys = "virtual/nvme-subsystem/nvme-subsys0"
    block(sysfs, f"{subsys}/nvme0n1", "259:0")
    block(sysfs, "pci0000:00/0000:00:04.0/nvme/nvme0/nvme0c0n1", "259:1", hidden="1")
    (sysfs / "devices" / subsys / "model").write_text(EC2_INSTANCE_STORE_MODEL + "\n")
    disks = read_disks(FakeRunner(), sysfs=sysfs, proc=tmp_path / "proc", probe_only=[])
    assert [(d.name, d.nvme, d.model) for d in disks] == [
        ("nvme0n1", True, EC2_INSTANCE_STORE_MODEL)
    ]


# --- the pyudev path, with a context that enumerates like libudev does ---------------------


class FakeDevice:
    def __init__(self, sys_path: str, properties: dict[str, str]) -> None:
        self.sys_path = sys_path
        self.sys_name = sys_path.rsplit("/", 1)[-1]
        self.properties = properties


class FakeContext:
    """Stands in for pyudev.Context over a tree rooted at `sys_path` (the real one is /sys)."""

    def __init__(self, sys_path: Path, devices: list[FakeDevice]) -> None:
        self.sys_path = str(sys_path)
        self.devices = devices
        self.queries: list[dict[str, str]] = []

    def list_devices(self, **query: str) -> list[FakeDevice]:
        self.queries.append(query)
        return self.devices


def test_udev_properties_are_used_when_present(tmp_path: Path) -> None:
    sysfs = tmp_path / "sys"
    path = block(sysfs, "pci0000:00/0000:00:1f.0/nvme/nvme1/nvme1n1", "259:2")
    (path.parent / "model").write_text(EC2_INSTANCE_STORE_MODEL + "\n")
    alias = "/dev/disk/by-id/nvme-Amazon_EC2_NVMe_Instance_Storage_AWS1"
    props = {"DEVNAME": "/dev/nvme1n1", "DEVLINKS": f"{alias} /dev/disk/by-path/x"}
    props |= {"ID_FS_TYPE": "linux_raid_member", "ID_SERIAL_SHORT": "AWS1"}
    context = FakeContext(sysfs, [FakeDevice(str(path), props)])
    runner = FakeRunner()
    runner.expect("blkid", "-p", "-o", "export", "/dev/nvme1n1", rc=2)
    runner.expect("wipefs", "--json", "--no-act", "/dev/nvme1n1")
    config = StorageConfig(devices=[alias])
    (disk,) = gather_disks(config, runner, sysfs=sysfs, proc=tmp_path / "proc", context=context)
    assert context.queries == [{"subsystem": "block", "DEVTYPE": "disk"}]
    assert disk.nvme
    assert disk.serial == "AWS1"
    assert disk.md_member  # udev knew what blkid (here) did not
    assert disk.codes == ["signature", "md-member"]
