"""The root chain read from a mount table and a sysfs tree (hand-made, laid out as the kernel's)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cockpit_agent.facts.rootfs import RootChain, read_root_chain

OUTPOST = Path(__file__).resolve().parent.parent / "fixtures" / "disks" / "outpost"
NVME = "devices/pci0000:00/0000:00:04.0/nvme/nvme0"
VIRTUAL = "devices/virtual/block"
GIB_SECTORS = 2 * 1024**2


class Tree:
    """A sysfs and /proc tree: devices under devices/, class/block and dev/block symlinks."""

    def __init__(self, root: Path) -> None:
        self.sys = root / "sys"
        self.proc = root / "proc"
        (self.sys / "class" / "block").mkdir(parents=True)
        (self.sys / "dev" / "block").mkdir(parents=True)
        (self.proc / "self").mkdir(parents=True)
        self.mountinfo: list[str] = []

    def device(self, where: str, name: str, dev: str, sectors: int, **attrs: str) -> str:
        """A block device directory at `where`/`name`; returns its path relative to sys/."""
        rel = f"{where}/{name}"
        node = self.sys / rel
        node.mkdir(parents=True)
        kind = "partition" if "partition" in attrs else "disk"
        major = dev.partition(":")[0]
        (node / "uevent").write_text(f"MAJOR={major}\nDEVNAME={name}\nDEVTYPE={kind}\n")
        (node / "dev").write_text(dev + "\n")
        (node / "size").write_text(f"{sectors}\n")
        for attr, value in attrs.items():
            (node / attr.replace("__", "/")).parent.mkdir(parents=True, exist_ok=True)
            (node / attr.replace("__", "/")).write_text(value + "\n")
        depth = "../" * 2
        (self.sys / "class" / "block" / name).symlink_to(depth + rel)
        (self.sys / "dev" / "block" / dev).symlink_to(depth + rel)
        return rel

    def partition(
        self, disk: str, name: str, dev: str, number: int, start: int, sectors: int
    ) -> str:
        return self.device(disk, name, dev, sectors, partition=str(number), start=str(start))

    def slaves(self, rel: str, *names: str) -> None:
        """slaves/ entries link to the devices under this one, as the kernel's do."""
        slaves = self.sys / rel / "slaves"
        slaves.mkdir()
        for name in names:
            target = (self.sys / "class" / "block" / name).resolve()
            (slaves / name).symlink_to(os.path.relpath(target, slaves))

    def mount(self, dev: str, mountpoint: str, fstype: str, source: str) -> None:
        n = len(self.mountinfo) + 22
        self.mountinfo.append(f"{n} 1 {dev} / {mountpoint} rw,relatime - {fstype} {source} rw")
        (self.proc / "self" / "mountinfo").write_text("\n".join(self.mountinfo) + "\n")

    def read(self, mountpoint: str = "/") -> RootChain | None:
        return read_root_chain(mountpoint, sysfs=self.sys, proc=self.proc)


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    return Tree(tmp_path)


def nvme_disk(tree: Tree) -> str:
    """nvme0n1 (8 GiB): p1 BIOS boot at 2048, p2 root at 4096 (2 GiB), p3 none yet."""
    disk = tree.device(NVME, "nvme0n1", "259:0", 8 * GIB_SECTORS)
    tree.partition(disk, "nvme0n1p1", "259:1", 1, 2048, 2048)
    tree.partition(disk, "nvme0n1p2", "259:2", 2, 4096, 2 * GIB_SECTORS)
    return disk


def test_ext4_root_on_the_last_nvme_partition(tree: Tree) -> None:
    nvme_disk(tree)
    tree.mount("259:2", "/", "ext4", "/dev/nvme0n1p2")

    chain = tree.read()

    assert chain is not None and chain.unsupported is None
    assert (chain.fstype, chain.mountpoint, chain.source) == ("ext4", "/", "/dev/nvme0n1p2")
    assert chain.device is not None and chain.device.path == "/dev/nvme0n1p2"
    assert chain.partition is not None
    assert chain.partition.number == 2
    assert chain.partition.start_bytes == 4096 * 512
    assert chain.partition.disk.path == "/dev/nvme0n1"
    assert chain.partition.disk.size_bytes == 8 * 1024**3
    assert chain.partition.last and chain.partition.followed_by == []
    assert chain.disk == chain.partition.disk
    assert chain.lv is None
    assert chain.describe() == "ext4 on / (/dev/nvme0n1p2, partition 2 of /dev/nvme0n1)"


def test_a_partition_followed_by_another_is_not_last(tree: Tree) -> None:
    disk = nvme_disk(tree)
    tree.partition(disk, "nvme0n1p3", "259:3", 3, 4096 + 2 * GIB_SECTORS, 2048)
    tree.mount("259:2", "/", "xfs", "/dev/nvme0n1p2")

    chain = tree.read()

    assert chain is not None and chain.partition is not None
    assert not chain.partition.last
    assert chain.partition.followed_by == ["nvme0n1p3"]


def test_partition_numbers_come_from_sysfs_not_names(tree: Tree) -> None:
    # The partition's number (7) and its disk are read, not taken apart from "weird".
    disk = tree.device(VIRTUAL, "vdb", "254:16", GIB_SECTORS)
    tree.partition(disk, "weird", "254:23", 7, 2048, 1000)
    tree.mount("254:23", "/", "ext4", "/dev/weird")

    chain = tree.read()

    assert chain is not None and chain.partition is not None
    assert (chain.partition.number, chain.partition.disk.path) == (7, "/dev/vdb")


def test_lvm_root_walks_lv_pv_partition_disk(tree: Tree) -> None:
    disk = nvme_disk(tree)
    tree.partition(disk, "nvme0n1p3", "259:3", 3, 4096 + 2 * GIB_SECTORS, 4 * GIB_SECTORS)
    dm = tree.device(
        VIRTUAL, "dm-0", "253:0", 3 * GIB_SECTORS, dm__name="vg0-root", dm__uuid="LVM-abcdef"
    )
    tree.slaves(dm, "nvme0n1p3")
    tree.mount("253:0", "/", "ext4", "/dev/mapper/vg0-root")

    chain = tree.read()

    assert chain is not None and chain.unsupported is None
    assert chain.device is not None and chain.device.path == "/dev/mapper/vg0-root"
    assert chain.lv is not None
    assert chain.lv.pv.path == "/dev/nvme0n1p3"
    assert chain.partition is not None and chain.partition.number == 3
    assert chain.partition.device == chain.lv.pv
    assert chain.disk is not None and chain.disk.path == "/dev/nvme0n1"
    assert "PV /dev/nvme0n1p3" in chain.describe()


def test_btrfs_anonymous_device_number_is_found_by_its_source(tree: Tree) -> None:
    nvme_disk(tree)
    tree.mount("0:35", "/", "btrfs", "/dev/nvme0n1p2")

    chain = tree.read()

    assert chain is not None and chain.partition is not None
    assert chain.partition.device.name == "nvme0n1p2"


def test_lvm_by_mapper_name_when_the_device_number_is_anonymous(tree: Tree) -> None:
    disk = nvme_disk(tree)
    tree.partition(disk, "nvme0n1p3", "259:3", 3, 4096 + 2 * GIB_SECTORS, 4 * GIB_SECTORS)
    dm = tree.device(VIRTUAL, "dm-0", "253:0", GIB_SECTORS, dm__name="vg-root", dm__uuid="LVM-x")
    tree.slaves(dm, "nvme0n1p3")
    tree.mount("0:40", "/", "btrfs", "/dev/mapper/vg-root")

    chain = tree.read()

    assert chain is not None and chain.lv is not None
    assert chain.lv.device.name == "dm-0"


def test_filesystem_on_a_whole_disk_is_left_alone(tree: Tree) -> None:
    tree.device(VIRTUAL, "vda", "254:0", 256 * GIB_SECTORS)
    tree.mount("254:0", "/", "ext4", "/dev/vda")

    chain = tree.read()

    assert chain is not None and chain.partition is None
    assert chain.disk is not None and chain.disk.path == "/dev/vda"
    assert chain.unsupported is not None and "no partition table" in chain.unsupported


def test_lvm_on_a_whole_disk_pv_has_no_partition(tree: Tree) -> None:
    tree.device(VIRTUAL, "vdb", "254:16", 4 * GIB_SECTORS)
    dm = tree.device(VIRTUAL, "dm-0", "253:0", GIB_SECTORS, dm__name="vg-root", dm__uuid="LVM-z")
    tree.slaves(dm, "vdb")
    tree.mount("253:0", "/", "ext4", "/dev/mapper/vg-root")

    chain = tree.read()

    assert chain is not None and chain.unsupported is None
    assert chain.partition is None and chain.lv is not None
    assert chain.lv.pv.path == "/dev/vdb" and chain.disk == chain.lv.pv
    assert chain.describe() == "ext4 on / (/dev/mapper/vg-root, PV /dev/vdb)"


@pytest.mark.parametrize(
    ("uuid", "words"),
    [("CRYPT-LUKS2-1234-root", "device-mapper CRYPT"), ("mpath-3600", "device-mapper mpath")],
)
def test_device_mapper_other_than_lvm_is_unsupported(tree: Tree, uuid: str, words: str) -> None:
    disk = nvme_disk(tree)
    tree.partition(disk, "nvme0n1p3", "259:3", 3, 4096 + 2 * GIB_SECTORS, GIB_SECTORS)
    dm = tree.device(VIRTUAL, "dm-1", "253:1", GIB_SECTORS, dm__name="root", dm__uuid=uuid)
    tree.slaves(dm, "nvme0n1p3")
    tree.mount("253:1", "/", "ext4", "/dev/mapper/root")

    chain = tree.read()

    assert chain is not None and chain.unsupported is not None
    assert words in chain.unsupported


def test_an_lv_over_two_devices_is_unsupported(tree: Tree) -> None:
    disk = nvme_disk(tree)
    tree.partition(disk, "nvme0n1p3", "259:3", 3, 4096 + 2 * GIB_SECTORS, GIB_SECTORS)
    tree.device(VIRTUAL, "vdb", "254:16", GIB_SECTORS)
    dm = tree.device(VIRTUAL, "dm-0", "253:0", GIB_SECTORS, dm__name="vg-root", dm__uuid="LVM-y")
    tree.slaves(dm, "nvme0n1p3", "vdb")
    tree.mount("253:0", "/", "xfs", "/dev/mapper/vg-root")

    chain = tree.read()

    assert chain is not None and chain.unsupported is not None
    assert "spans 2 devices" in chain.unsupported


def test_md_raid_root_is_unsupported(tree: Tree) -> None:
    tree.device(VIRTUAL, "vdb", "254:16", GIB_SECTORS)
    md = tree.device(VIRTUAL, "md127", "9:127", GIB_SECTORS, md__level="raid1")
    tree.slaves(md, "vdb")
    tree.mount("9:127", "/", "ext4", "/dev/md127")

    chain = tree.read()

    assert chain is not None and chain.unsupported is not None
    assert "md RAID" in chain.unsupported


def test_a_filesystem_without_a_grow_tool_is_unsupported(tree: Tree) -> None:
    nvme_disk(tree)
    tree.mount("259:2", "/", "vfat", "/dev/nvme0n1p2")

    chain = tree.read()

    assert chain is not None and chain.unsupported is not None
    assert "vfat" in chain.unsupported


def test_a_root_that_is_no_block_device_is_unsupported(tree: Tree) -> None:
    tree.mount("0:30", "/", "overlay", "overlay")

    chain = tree.read()

    assert chain is not None and chain.device is None
    assert chain.unsupported == "overlay is not a block device"


def test_the_last_mount_stacked_on_a_mount_point_is_the_one_in_use(tree: Tree) -> None:
    nvme_disk(tree)
    tree.device(VIRTUAL, "vda", "254:0", GIB_SECTORS)
    tree.mount("254:0", "/srv/data", "ext4", "/dev/vda")
    tree.mount("259:2", "/srv/data", "xfs", "/dev/nvme0n1p2")

    chain = tree.read("/srv/data/")

    assert chain is not None and chain.fstype == "xfs" and chain.partition is not None


def test_nothing_mounted_there_is_none(tree: Tree) -> None:
    nvme_disk(tree)
    tree.mount("259:2", "/", "ext4", "/dev/nvme0n1p2")

    assert tree.read("/mnt") is None


def test_the_outpost_fixture_root_is_partition_1_of_the_ebs_volume() -> None:
    chain = read_root_chain("/", sysfs=OUTPOST / "sys", proc=OUTPOST / "proc")

    assert chain is not None and chain.partition is not None
    assert (chain.fstype, chain.partition.number) == ("xfs", 1)
    assert chain.partition.disk.path == "/dev/nvme0n1"
    assert chain.partition.disk.size_bytes == 33554432 * 512
