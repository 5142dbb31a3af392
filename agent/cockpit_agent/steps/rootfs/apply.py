"""Carrying out the rootfs step's actions: each runs its layer's tool."""

from __future__ import annotations

from typing import assert_never

from cockpit_agent.engine import Ctx
from cockpit_agent.errors import AgentError, CommandFailed, CommandNotFound
from cockpit_agent.steps.rootfs.actions import (
    ExtendLogicalVolume,
    GrowFilesystem,
    GrowPartition,
    ResizePhysicalVolume,
    RootAction,
)
from cockpit_agent.steps.rootfs.observed import GROWPART_NOCHANGE, measure_lv

UDEV_CONTROL = "/run/udev/control"  # udevd's control socket: present while udevd runs
EXT_FILESYSTEMS = ("ext2", "ext3", "ext4")


def apply_action(action: RootAction, ctx: Ctx) -> None:
    """Run the action's tool; tell the kernel and udev where a partition changed."""
    match action:
        case GrowPartition():
            _grow_partition(action, ctx)
        case ResizePhysicalVolume(device):
            ctx.runner.run(["pvresize", device])
        case ExtendLogicalVolume():
            _extend_lv(action, ctx)
        case GrowFilesystem():
            ctx.runner.run(grow_filesystem_argv(action))
        case _:
            assert_never(action)


def _grow_partition(action: GrowPartition, ctx: Ctx) -> None:
    argv = ["growpart", action.disk, str(action.number)]
    result = ctx.runner.run(argv, ok=(0, GROWPART_NOCHANGE))
    if result.rc == GROWPART_NOCHANGE and "NOCHANGE" not in result.stdout:
        raise CommandFailed(argv, result.rc, result.stderr or result.stdout)
    # growpart tells the kernel itself when it can; where that failed (a busy disk, an old
    # growpart) the kernel still has the old size, so set it for this one partition (BLKPG).
    ctx.runner.run(["partx", "--update", "--nr", str(action.number), action.disk])
    _settle(ctx)


def _extend_lv(action: ExtendLogicalVolume, ctx: Ctx) -> None:
    """Counted now, after pvresize: the free extents are only known once the PV has grown."""
    lv = measure_lv(ctx.runner, action.device)
    extents = lv.extendable(action.leave_free_percent)
    if extents == 0:
        ctx.log.info("no free extents to take", lv=lv.name, free=lv.free_count)
        return
    ctx.runner.run(["lvextend", "--extents", f"+{extents}", lv.name])


def grow_filesystem_argv(action: GrowFilesystem) -> list[str]:
    """The filesystem's own grow tool, online: ext by device, XFS and btrfs by mount point."""
    if action.fstype in EXT_FILESYSTEMS:
        return ["resize2fs", action.device]
    if action.fstype == "xfs":
        return ["xfs_growfs", action.mountpoint]
    if action.fstype == "btrfs":
        size = "max" if action.btrfs_devid == 1 else f"{action.btrfs_devid}:max"
        return ["btrfs", "filesystem", "resize", size, action.mountpoint]
    raise AgentError(f"the agent cannot grow a {action.fstype} filesystem")


def _settle(ctx: Ctx) -> None:
    """Wait for udev to process the partition change, when udev runs here at all."""
    if not ctx.files.exists(UDEV_CONTROL):
        ctx.log.debug("udev is not running: not waiting for it")
        return
    try:
        ctx.runner.run(["udevadm", "settle", "--timeout=60"])
    except CommandNotFound:
        ctx.log.info("udevadm is not installed: not waiting for udev")
    except CommandFailed as exc:
        ctx.log.warning("udevadm settle did not finish", error=str(exc))
