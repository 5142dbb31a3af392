"""The rootfs step on real loop devices: GPT and MBR images whose last partition holds ext4,
XFS or btrfs, mounted on a temporary directory that stands in for /.

This kernel parses no partition tables: `partx -a` adds the partition devices. The image file
is enlarged and `losetup -c` makes the loop device see it, as an EBS resize does. Online
resize2fs is refused by this kernel, so for ext4 the filesystem part is proven in the lab.
Every device is created by the `loops` fixture and torn down by it (unmount, partx -d,
losetup -d), whatever happens.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from tests.helpers.tools import need_tools

from cockpit_agent.config import Config
from cockpit_agent.engine import Ctx
from cockpit_agent.errors import CommandFailed
from cockpit_agent.facts.gather import Facts
from cockpit_agent.facts.rootfs import RootChain, read_root_chain
from cockpit_agent.host.files import Files
from cockpit_agent.host.run import SubprocessRunner
from cockpit_agent.steps.rootfs.actions import GrowFilesystem, GrowPartition
from cockpit_agent.steps.rootfs.observed import (
    XFS_MIN_AG_BLOCKS,
    resize2fs_target,
    xfs_growfs_target,
)
from cockpit_agent.steps.rootfs.step import RootfsStep

if TYPE_CHECKING:
    from tests.helpers.loops import LoopDevices

pytestmark = pytest.mark.integration
MIB = 1024**2
SECTOR = 512
GROWPART_SLACK = MIB + 34 * SECTOR  # growpart's 1 MiB fudge + the GPT backup header
TOOLS = ("growpart", "sfdisk", "partx", "lsblk")
FS_TOOLS = {
    "ext4": ("mkfs.ext4", "dumpe2fs", "resize2fs"),
    "xfs": ("mkfs.xfs", "xfs_info", "xfs_growfs"),
    "btrfs": ("mkfs.btrfs", "btrfs"),
}
MKFS = {"ext4": ["mkfs.ext4", "-q"], "xfs": ["mkfs.xfs", "-q"], "btrfs": ["mkfs.btrfs", "-q"]}
REFUSED = "Permission denied to resize filesystem"  # this kernel's answer to online resize2fs


def run(*argv: str, stdin: str | None = None) -> str:
    return SubprocessRunner().run(argv, input=stdin, timeout=120).stdout


def make_root(
    loops: LoopDevices, name: str, table: str, layout: str, fstype: str, number: int
) -> tuple[str, Path]:
    """A partitioned image with `fstype` on partition `number`, mounted; (device, mount)."""
    device = loops.attach(name, 512 * MIB)
    loops.partitioned.append(device)  # so that teardown runs partx -d
    # A loop device keeps partitions added with partx after it is detached: a previous user
    # may have left some on the device we were just given. They are ours now, and unused.
    if partitions(device):
        run("partx", "-d", device)
    run("sfdisk", "-q", device, stdin=f"label: {table}\n{layout}")
    run("partx", "-a", device)
    assert partitions(device) == [
        f"{Path(device).name}p{n}" for n in range(1, layout.count("\n") + 1)
    ]
    run(*MKFS[fstype], f"{device}p{number}")
    target = loops.workdir / f"mnt-{name}"
    target.mkdir()
    run("mount", f"{device}p{number}", str(target))
    loops.mounts.append(target)
    return device, target


def partitions(device: str) -> list[str]:
    """The partition devices the kernel has for `device` (sysfs)."""
    node = Path("/sys/class/block") / Path(device).name
    return sorted(p.name for p in node.iterdir() if (p / "partition").is_file())


def enlarge(loops: LoopDevices, name: str, device: str, size: int) -> None:
    """Grow the image file and make the loop device see it (as an EBS volume resize)."""
    image = loops.workdir / f"{name}.img"
    assert device in loops.devices and image.exists()
    with image.open("r+b") as fh:
        fh.truncate(size)
    run("losetup", "-c", device)


def ctx_for(mountpoint: Path, hostroot: Path) -> tuple[Ctx, RootChain]:
    """A run's Ctx: facts read now (real /sys and /proc), host files under `hostroot`."""
    chain = read_root_chain(str(mountpoint))
    assert chain is not None
    hostroot.mkdir(exist_ok=True)
    ctx = Ctx(
        runner=SubprocessRunner(),
        files=Files(hostroot),
        facts=Facts(rootfs=chain),
        config=Config(),
    )
    return ctx, chain


def sectors(name: str) -> int:
    return int(Path(f"/sys/class/block/{name}/size").read_text())


def plan(ctx: Ctx) -> list[Any]:
    step = RootfsStep()
    return list(step.plan(step.observe(ctx), ctx))


@pytest.mark.parametrize("table", ["gpt", "dos"])
@pytest.mark.parametrize("fstype", ["ext4", "xfs", "btrfs"])
def test_last_partition_and_filesystem_grow_to_fill_the_enlarged_disk(
    loops: LoopDevices, tmp_path: Path, table: str, fstype: str
) -> None:
    need_tools(*TOOLS, *FS_TOOLS[fstype])
    name = f"{fstype}-{table}"
    device, mnt = make_root(loops, name, table, ",16M,L\n,,L\n", fstype, 2)
    step = RootfsStep()

    # A freshly made root fills its partition and disk: nothing to do.
    ctx, chain = ctx_for(mnt, tmp_path / "host")
    assert chain.partition is not None and chain.device is not None
    assert (chain.partition.number, chain.partition.disk.path) == (2, device)
    assert chain.partition.last and chain.fstype == fstype
    assert plan(ctx) == []
    fs_before = step.observe(ctx).fs
    assert fs_before is not None

    enlarge(loops, name, device, 1024 * MIB)
    ctx, chain = ctx_for(mnt, tmp_path / "host")
    actions = plan(ctx)
    assert actions == [
        GrowPartition(device, 2, f"{device}p2"),
        GrowFilesystem(fstype, f"{device}p2", str(mnt), 1),
    ]

    step.apply(actions[0], ctx)
    part = Path(device).name + "p2"
    disk_bytes = sectors(Path(device).name) * SECTOR
    end = (int(Path(f"/sys/class/block/{part}/start").read_text()) + sectors(part)) * SECTOR
    assert 0 <= disk_bytes - end <= GROWPART_SLACK  # the kernel sees the grown partition

    try:
        step.apply(actions[1], ctx)
    except CommandFailed as exc:
        if fstype != "ext4" or REFUSED not in exc.stderr:
            raise
        # The partition grew and exactly the filesystem is left: what this kernel allows.
        assert plan(ctx) == [actions[1]]
        pytest.skip(f"online resize2fs refused by this kernel ({REFUSED}); proven in the lab")

    grown = step.observe(ctx).fs
    assert grown is not None and grown.size > fs_before.size
    assert not grown.can_grow
    findings = step.verify(ctx)
    assert [(f.severity, f.code) for f in findings] == [
        ("ok", "rootfs-grown"),
        ("ok", "rootfs-growth-by-agent"),  # no cloud-init under the test's host root
    ]

    # The next run (fresh facts) finds nothing to do.
    ctx, _ = ctx_for(mnt, tmp_path / "host")
    assert plan(ctx) == []


def test_a_partition_that_is_not_last_is_left_alone(loops: LoopDevices, tmp_path: Path) -> None:
    need_tools(*TOOLS, *FS_TOOLS["ext4"])
    device, mnt = make_root(loops, "not-last", "gpt", ",400M,L\n,,L\n", "ext4", 1)
    enlarge(loops, "not-last", device, 1024 * MIB)
    part = Path(device).name + "p1"
    size_before = sectors(part)
    ctx, chain = ctx_for(mnt, tmp_path / "host")
    assert chain.partition is not None
    assert chain.partition.followed_by == [Path(device).name + "p2"]
    step = RootfsStep()

    observed = step.observe(ctx)
    actions = step.plan(observed, ctx)

    assert actions == []
    summary = step.summarize(observed)
    assert "not the last" in summary and f"{Path(device).name}p2" in summary
    codes = {f.code: f.severity for f in step.verify(ctx)}
    assert codes == {
        "rootfs-partition-not-last": "ok",
        "rootfs-grown": "ok",
        "rootfs-growth-by-agent": "ok",
    }
    assert sectors(part) == size_before


def test_growroot_disabled_leaves_an_enlarged_disk_alone(
    loops: LoopDevices, tmp_path: Path
) -> None:
    need_tools(*TOOLS, *FS_TOOLS["xfs"])
    device, mnt = make_root(loops, "disabled", "gpt", ",16M,L\n,,L\n", "xfs", 2)
    enlarge(loops, "disabled", device, 1024 * MIB)
    ctx, _ = ctx_for(mnt, tmp_path / "host")
    ctx.files.write("/etc/growroot-disabled", "")
    part = Path(device).name + "p2"
    size_before = sectors(part)

    assert plan(ctx) == []
    assert sectors(part) == size_before

    ctx.files.path("/etc/growroot-disabled").unlink()
    assert [type(a) for a in plan(ctx)] == [GrowPartition, GrowFilesystem]


# --- the rounding rules, against the real tools ----------------------------------------------
# "Can grow" must be exactly "the tool would make it bigger", or a converged root plans a
# no-op forever. These grow real filesystems by amounts around each rule's edge and compare.


def superblock(path: Path | str) -> dict[str, str]:
    pairs = (line.partition(":") for line in run("dumpe2fs", "-h", str(path)).splitlines())
    return {key.strip(): value.strip() for key, sep, value in pairs if sep}


@pytest.mark.parametrize(
    ("block", "extras"),
    [
        # 1 KiB blocks, 8192 per group, 512 inode-table blocks per group: new group 9 (3^2,
        # holds a superblock backup) dropped below ~820 blocks, kept at 1003; then group 10
        # (no backup) dropped at 400 but kept at 600; then group 11 kept.
        (1024, [3, 51, 800, 1003, 400, 600, 3001]),
        (4096, [10, 100, 600, 700, 2000]),
    ],
)
def test_resize2fs_grows_exactly_to_the_predicted_size(
    tmp_path: Path, block: int, extras: list[int]
) -> None:
    need_tools("mkfs.ext4", "dumpe2fs", "resize2fs", "e2fsck")
    image = tmp_path / "ext4.img"
    per_group = 8 * block
    with image.open("xb") as fh:
        fh.truncate(9 * per_group * block + 7 * block)
    run("mkfs.ext4", "-q", "-F", "-b", str(block), "-O", "64bit,sparse_super", str(image))
    kept = []
    for extra in extras:
        sb = superblock(image)
        count, first = int(sb["Block count"]), int(sb["First block"])
        groups = -(-(count - first) // per_group)
        new_blocks = first + groups * per_group + extra  # past the current last group's end
        predicted = resize2fs_target(new_blocks, sb)
        with image.open("r+b") as fh:
            fh.truncate(new_blocks * block)
        SubprocessRunner().run(["e2fsck", "-f", "-y", str(image)], ok=(0, 1))  # 1: fixed
        run("resize2fs", str(image))
        actual = int(superblock(image)["Block count"])
        assert actual == max(predicted, count), (block, extra, sb["Block count"])
        kept.append(actual > count)
    assert True in kept and False in kept  # both sides of the rule were exercised


def xfs_geometry(mnt: Path) -> tuple[int, int, int]:
    """(block size, data blocks, AG size in blocks) from xfs_info."""
    info = run("xfs_info", str(mnt))
    data = re.search(r"^data\s*=\s*bsize=(\d+)\s+blocks=(\d+)", info, re.MULTILINE)
    ag = re.search(r"agsize=(\d+)", info)
    assert data is not None and ag is not None, info
    return int(data[1]), int(data[2]), int(ag[1])


def test_xfs_growfs_grows_exactly_to_the_predicted_size(loops: LoopDevices, tmp_path: Path) -> None:
    need_tools("mkfs.xfs", "xfs_info", "xfs_growfs")
    device = loops.attach("xfs-rule", 320 * MIB)
    run("mkfs.xfs", "-q", device)
    mnt = loops.workdir / "mnt-xfs-rule"
    mnt.mkdir()
    run("mount", device, str(mnt))
    loops.mounts.append(mnt)
    bsize, _, ag = xfs_geometry(mnt)
    for extra in (XFS_MIN_AG_BLOCKS - 1, XFS_MIN_AG_BLOCKS, 5000):
        _, blocks, _ = xfs_geometry(mnt)
        end = -(-blocks // ag) * ag  # the end of the current last AG
        predicted = xfs_growfs_target(end + extra, ag)
        enlarge(loops, "xfs-rule", device, (end + extra) * bsize)
        run("xfs_growfs", str(mnt))
        _, actual, _ = xfs_geometry(mnt)
        assert actual == max(predicted, blocks), (extra, blocks, ag)
