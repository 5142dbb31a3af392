"""The root chain: the filesystem at a mount point and every block device under it.

filesystem (type, mount point, source) -> optional LVM logical volume -> its physical
volume -> partition -> whole disk. The chain is read from the mount table and sysfs, never by
taking device names apart: a partition says its number in its `partition` attribute and its
disk is its parent directory (so nvme0n1p1 needs no rule), a device-mapper device names what
it sits on in `slaves/` and says what it is in `dm/uuid`. The reader takes the mount point and
the sysfs and /proc roots as parameters, so tests point it at a loop device and a temporary
mount, or at a hand-made tree.

A chain the agent cannot grow (md RAID, dm-crypt, an LV over several devices, a filesystem it
has no tool for, a filesystem on a bare disk) is still returned, with `unsupported` saying
why, so `facts` and the step can show the reason.
"""

from __future__ import annotations

from pathlib import Path

from cockpit_agent.facts.model import Frozen
from cockpit_agent.host.block import device_number
from cockpit_agent.host.mounts import Mount, mount_at
from cockpit_agent.host.sysfs import PROC, SYSFS
from cockpit_agent.host.sysfs import attr as _attr
from cockpit_agent.host.sysfs import children as _children
from cockpit_agent.host.sysfs import exists as _exists
from cockpit_agent.host.sysfs import is_dir as _is_dir
from cockpit_agent.host.sysfs import is_file as _is_file
from cockpit_agent.host.sysfs import listdir as _listdir
from cockpit_agent.host.sysfs import resolve as _resolve
from cockpit_agent.host.sysfs import uevent as _uevent

SECTOR_BYTES = 512  # sysfs `size` and `start` count 512-byte sectors whatever the block size
GROWABLE_FILESYSTEMS = ("ext2", "ext3", "ext4", "xfs", "btrfs")
LVM_UUID_PREFIX = "LVM-"


class BlockDevice(Frozen):
    """One block device: its kernel name, its /dev node and its size when facts were read."""

    name: str
    path: str
    size_bytes: int


class Partition(Frozen):
    """A partition, its number and disk (from sysfs), and the partitions that come after it."""

    device: BlockDevice
    number: int
    start_bytes: int
    disk: BlockDevice
    followed_by: list[str] = []

    @property
    def last(self) -> bool:
        """Whether no partition starts after this one, so it may grow to the end of the disk."""
        return not self.followed_by


class LogicalVolume(Frozen):
    """An LVM logical volume (a device-mapper device whose uuid starts with LVM-) and its PV."""

    device: BlockDevice
    dm_uuid: str
    pv: BlockDevice


class RootChain(Frozen):
    """The filesystem at `mountpoint` and the devices under it, top to bottom."""

    mountpoint: str
    fstype: str
    source: str
    device: BlockDevice | None = None
    lv: LogicalVolume | None = None
    partition: Partition | None = None
    disk: BlockDevice | None = None
    unsupported: str | None = None

    def describe(self) -> str:
        """One line: `ext4 on / (/dev/nvme0n1p2, partition 2 of /dev/nvme0n1)`."""
        layers = [self.device.path if self.device else self.source]
        if self.lv:
            layers.append(f"PV {self.lv.pv.path}")
        if self.partition:
            layers.append(f"partition {self.partition.number} of {self.partition.disk.path}")
        elif self.disk and self.disk not in (self.device, self.lv and self.lv.pv):
            layers.append(f"disk {self.disk.path}")
        return f"{self.fstype} on {self.mountpoint} ({', '.join(layers)})"


def read_root_chain(
    mountpoint: str = "/", *, sysfs: Path = SYSFS, proc: Path = PROC
) -> RootChain | None:
    """The chain under the filesystem mounted at `mountpoint`; None if nothing is mounted there."""
    mount = mount_at(mountpoint, proc)
    if mount is None:
        return None
    head = RootChain(mountpoint=mount.mountpoint, fstype=mount.fstype, source=mount.source)
    node = _find_node(_resolve(sysfs), mount)
    if node is None:
        return head.model_copy(update={"unsupported": f"{mount.source} is not a block device"})
    return _walk(head, node, _resolve(sysfs))


# --- walking sysfs --------------------------------------------------------------------------


def _walk(head: RootChain, node: Path, sysfs: Path) -> RootChain:
    """Fill the chain from the filesystem's device down to its disk."""
    device = _block(node)
    chain = head.model_copy(update={"device": device})
    if head.fstype not in GROWABLE_FILESYSTEMS:
        return _unsupported(chain, f"the agent cannot grow a {head.fstype} filesystem")
    below = node
    dm_uuid = _attr(node, "dm/uuid")
    if dm_uuid:
        if not dm_uuid.startswith(LVM_UUID_PREFIX):
            kind = dm_uuid.split("-", 1)[0] or "unknown"
            return _unsupported(chain, f"{device.path} is a device-mapper {kind} device")
        slaves = _listdir(node / "slaves")
        if len(slaves) != 1:
            return _unsupported(chain, f"{device.path} spans {len(slaves)} devices")
        below = _resolve(sysfs / "class" / "block" / slaves[0])
        lv = LogicalVolume(device=device, dm_uuid=dm_uuid, pv=_block(below))
        chain = chain.model_copy(update={"lv": lv})
    return _bottom(chain, below)


def _bottom(chain: RootChain, node: Path) -> RootChain:
    """The partition (if any) and the whole disk under `node` (the fs device or the PV)."""
    partition = _partition(node) if _is_file(node / "partition") else None
    disk_node = node.parent if partition else node
    disk = partition.disk if partition else _block(node)
    chain = chain.model_copy(update={"partition": partition, "disk": disk})
    if _is_dir(disk_node / "md"):
        return _unsupported(chain, f"{disk.path} is an md RAID array")
    if _listdir(disk_node / "slaves"):
        return _unsupported(chain, f"{disk.path} is a device-mapper device")
    if partition is None and chain.lv is None:
        # No AMI boots from a filesystem on a bare disk (firmware needs a partition table);
        # such a root belongs to a container or microVM whose platform sizes it.
        why = f"the filesystem is on the whole disk {disk.path}, with no partition table"
        return _unsupported(chain, why)
    return chain


def _partition(node: Path) -> Partition:
    """A partition from its sysfs directory: number, start, disk and later partitions."""
    start = int(_attr(node, "start") or 0)
    disk = node.parent
    later = [
        sibling.name
        for sibling in _children(disk)
        if _is_file(sibling / "partition") and int(_attr(sibling, "start") or 0) > start
    ]
    return Partition(
        device=_block(node),
        number=int(_attr(node, "partition") or 0),
        start_bytes=start * SECTOR_BYTES,
        disk=_block(disk),
        followed_by=sorted(later),
    )


def _block(node: Path) -> BlockDevice:
    """A block device from its sysfs directory; a dm device by its /dev/mapper name."""
    name = node.name
    dm_name = _attr(node, "dm/name")
    devname = _uevent(node).get("DEVNAME", name)
    path = f"/dev/mapper/{dm_name}" if dm_name else "/dev/" + devname.removeprefix("/dev/")
    size = int(_attr(node, "size") or 0) * SECTOR_BYTES
    return BlockDevice(name=name, path=path, size_bytes=size)


def _unsupported(chain: RootChain, why: str) -> RootChain:
    return chain.model_copy(update={"unsupported": why})


# --- finding the mount and its device ------------------------------------------------------


def _find_node(sysfs: Path, mount: Mount) -> Path | None:
    """The sysfs directory of the mount's device: by device number, else by the source node.

    btrfs reports an anonymous device number (0:N) in the mount table, so its source path is
    looked up instead: the node's own device number, its kernel name, or its /dev/mapper name.
    """
    by_dev = sysfs / "dev" / "block"
    for dev in (mount.dev, device_number(mount.source)):
        if dev and not dev.startswith("0:") and _exists(by_dev / dev):
            return _resolve(by_dev / dev)
    if not mount.source.startswith("/dev/"):
        return None
    name = Path(mount.source).name
    block = sysfs / "class" / "block"
    if _exists(block / name):
        return _resolve(block / name)
    for node in _children(block):
        if _attr(node, "dm/name") == name:
            return _resolve(node)
    return None
