"""The rootfs step's plan: pure, from what was measured to the actions that grow the root.

Bottom up, an action for each layer that does not fill the one below it, and for every layer
above one that grows: a grown partition makes room for the PV, the PV for the LV, the LV for
the filesystem. Order: GrowPartition, ResizePhysicalVolume, ExtendLogicalVolume,
GrowFilesystem. Nothing while something holds (observed.hold) or for a chain without a device.
"""

from __future__ import annotations

from cockpit_agent.steps.rootfs.actions import (
    ExtendLogicalVolume,
    GrowFilesystem,
    GrowPartition,
    ResizePhysicalVolume,
    RootAction,
)
from cockpit_agent.steps.rootfs.observed import RootObserved


def plan_rootfs(observed: RootObserved, leave_free_percent: int) -> list[RootAction]:
    """Bottom up: each layer that does not fill the one below, and every layer above it."""
    chain = observed.chain
    if chain is None or observed.hold is not None or chain.device is None:
        return []
    actions: list[RootAction] = []
    if chain.partition and observed.partition and observed.partition.can_grow:
        part = chain.partition
        actions.append(GrowPartition(part.disk.path, part.number, part.device.path))
    if chain.lv and observed.pv and observed.lv:
        if actions or observed.pv.missing_extents:
            actions.append(ResizePhysicalVolume(chain.lv.pv.path))
        if actions or observed.lv.extendable(leave_free_percent):
            actions.append(ExtendLogicalVolume(chain.lv.device.path, leave_free_percent))
    if actions or (observed.fs and observed.fs.can_grow):
        devid = observed.fs.btrfs_devid if observed.fs else 1
        device, mountpoint = chain.device.path, chain.mountpoint
        actions.append(GrowFilesystem(chain.fstype, device, mountpoint, devid))
    return actions
