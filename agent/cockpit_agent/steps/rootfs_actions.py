"""The rootfs step's actions and how each is applied: one tool per layer of the root chain.

GrowPartition          growpart DISK N, then partx --update and udevadm settle
ResizePhysicalVolume   pvresize PV
ExtendLogicalVolume    lvextend --extents +N VG/LV (the free extents but leave_free_percent)
GrowFilesystem         resize2fs DEVICE | xfs_growfs MOUNTPOINT | btrfs filesystem resize
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cockpit_agent.engine import Ctx
from cockpit_agent.errors import CommandFailed, CommandNotFound
from cockpit_agent.steps.rootfs_measure import GROWPART_NOCHANGE, measure_lv

UDEV_CONTROL = "/run/udev/control"  # udevd's control socket: present while udevd runs


# --- actions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class GrowPartition:
    """Grow partition `number` of `disk` to the end of the disk."""

    disk: str
    number: int
    partition: str

    def describe(self) -> str:
        """One line."""
        return f"grow partition {self.number} of {self.disk} ({self.partition}) to fill the disk"


@dataclass(frozen=True)
class ResizePhysicalVolume:
    """Resize an LVM physical volume to its (grown) device."""

    device: str

    def describe(self) -> str:
        """One line."""
        return f"resize LVM physical volume {self.device} to fill its device"


@dataclass(frozen=True)
class ExtendLogicalVolume:
    """Extend an LV over its VG's free extents, leaving `leave_free_percent` of the VG free."""

    device: str
    leave_free_percent: int

    def describe(self) -> str:
        """One line."""
        keep = f", leaving {self.leave_free_percent}% of the VG free"
        return f"extend logical volume {self.device}{keep if self.leave_free_percent else ''}"


@dataclass(frozen=True)
class GrowFilesystem:
    """Grow the filesystem to fill its device, online."""

    fstype: str
    device: str
    mountpoint: str
    btrfs_devid: int = 1

    def describe(self) -> str:
        """One line."""
        return f"grow the {self.fstype} filesystem on {self.mountpoint} to fill {self.device}"


RootAction = GrowPartition | ResizePhysicalVolume | ExtendLogicalVolume | GrowFilesystem


# --- applying -------------------------------------------------------------------------------


def _grow_partition(action: GrowPartition, ctx: Ctx) -> None:
    argv = ["growpart", action.disk, str(action.number)]
    result = ctx.runner.run(argv, ok=(0, GROWPART_NOCHANGE))
    if result.rc == GROWPART_NOCHANGE and "NOCHANGE" not in result.stdout:
        raise CommandFailed(argv, result.rc, result.stderr or result.stdout)
    # growpart tells the kernel itself when it can; where that failed (a busy disk, an old
    # growpart) the kernel still has the old size, so set it for this one partition (BLKPG).
    ctx.runner.run(["partx", "--update", "--nr", str(action.number), action.disk])
    _settle(ctx)


def _resize_pv(action: ResizePhysicalVolume, ctx: Ctx) -> None:
    ctx.runner.run(["pvresize", action.device])


def _extend_lv(action: ExtendLogicalVolume, ctx: Ctx) -> None:
    """Counted now, after pvresize: the free extents are only known once the PV has grown."""
    lv = measure_lv(ctx.runner, action.device)
    extents = lv.extendable(action.leave_free_percent)
    if extents == 0:
        ctx.log.info("no free extents to take", lv=lv.name, free=lv.free_count)
        return
    ctx.runner.run(["lvextend", "--extents", f"+{extents}", lv.name])


def _grow_fs(action: GrowFilesystem, ctx: Ctx) -> None:
    ctx.runner.run(_GROW_FS[action.fstype](action))


def _btrfs_resize(action: GrowFilesystem) -> list[str]:
    size = "max" if action.btrfs_devid == 1 else f"{action.btrfs_devid}:max"
    return ["btrfs", "filesystem", "resize", size, action.mountpoint]


_GROW_FS: dict[str, Callable[[GrowFilesystem], list[str]]] = {
    "ext2": lambda a: ["resize2fs", a.device],
    "ext3": lambda a: ["resize2fs", a.device],
    "ext4": lambda a: ["resize2fs", a.device],
    "xfs": lambda a: ["xfs_growfs", a.mountpoint],
    "btrfs": _btrfs_resize,
}


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


_APPLY: dict[type, Callable[[Any, Ctx], None]] = {
    GrowPartition: _grow_partition,
    ResizePhysicalVolume: _resize_pv,
    ExtendLogicalVolume: _extend_lv,
    GrowFilesystem: _grow_fs,
}


def apply_action(action: RootAction, ctx: Ctx) -> None:
    """Run the action's tool."""
    _APPLY[type(action)](action, ctx)
