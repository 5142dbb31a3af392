"""The rootfs step's actions: one tool per layer of the root chain (apply.py runs it).

GrowPartition          growpart DISK N, then partx --update and udevadm settle
ResizePhysicalVolume   pvresize PV
ExtendLogicalVolume    lvextend --extents +N VG/LV (the free extents but leave_free_percent)
GrowFilesystem         resize2fs DEVICE | xfs_growfs MOUNTPOINT | btrfs filesystem resize
"""

from __future__ import annotations

from dataclasses import dataclass


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
