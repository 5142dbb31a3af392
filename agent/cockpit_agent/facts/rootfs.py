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

import os
import stat
from pathlib import Path
from typing import NamedTuple

from cockpit_agent.facts.model import Frozen
from cockpit_agent.facts.sysfs import attr as _attr
from cockpit_agent.facts.sysfs import children as _children
from cockpit_agent.facts.sysfs import lines as _lines
from cockpit_agent.facts.sysfs import listdir as _listdir
from cockpit_agent.facts.sysfs import uevent as _uevent
from cockpit_agent.facts.sysfs import unescape as _unescape

SECTOR_BYTES = 512  # sysfs `size` and `start` count 512-byte sectors whatever the block size
GROWABLE_FILESYSTEMS = ("ext2", "ext3", "ext4", "xfs", "btrfs")
LVM_UUID_PREFIX = "LVM-"
REAL_SYSFS = Path("/sys")
REAL_PROC = Path("/proc")


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


class _Mount(NamedTuple):
    dev: str  # "major:minor"; 0:N for btrfs and other anonymous devices
    mountpoint: str
    fstype: str
    source: str


def read_root_chain(
    mountpoint: str = "/", *, sysfs: Path = REAL_SYSFS, proc: Path = REAL_PROC
) -> RootChain | None:
    """The chain under the filesystem mounted at `mountpoint`; None if nothing is mounted there."""
    mount = _find_mount(proc, mountpoint)
    if mount is None:
        return None
    head = RootChain(mountpoint=mount.mountpoint, fstype=mount.fstype, source=mount.source)
    node = _find_node(sysfs.resolve(), mount)
    if node is None:
        return head.model_copy(update={"unsupported": f"{mount.source} is not a block device"})
    return _walk(head, node, sysfs.resolve())


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
        below = (sysfs / "class" / "block" / slaves[0]).resolve()
        lv = LogicalVolume(device=device, dm_uuid=dm_uuid, pv=_block(below))
        chain = chain.model_copy(update={"lv": lv})
    return _bottom(chain, below)


def _bottom(chain: RootChain, node: Path) -> RootChain:
    """The partition (if any) and the whole disk under `node` (the fs device or the PV)."""
    partition = _partition(node) if (node / "partition").is_file() else None
    disk_node = node.parent if partition else node
    disk = partition.disk if partition else _block(node)
    chain = chain.model_copy(update={"partition": partition, "disk": disk})
    if (disk_node / "md").is_dir():
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
        if (sibling / "partition").is_file() and int(_attr(sibling, "start") or 0) > start
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


def _find_mount(proc: Path, mountpoint: str) -> _Mount | None:
    """The mount on `mountpoint` that is in use (the last one stacked there)."""
    wanted = os.path.normpath(mountpoint)
    found = [m for m in _read_mountinfo(proc) if m.mountpoint == wanted]
    return found[-1] if found else None


def _read_mountinfo(proc: Path) -> list[_Mount]:
    """/proc/self/mountinfo as (major:minor, mount point, fstype, source)."""
    mounts = []
    for line in _lines(proc / "self" / "mountinfo"):
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) >= 5 and len(tail) >= 2:
            mounts.append(_Mount(fields[2], _unescape(fields[4]), tail[0], _unescape(tail[1])))
    return mounts


def _find_node(sysfs: Path, mount: _Mount) -> Path | None:
    """The sysfs directory of the mount's device: by device number, else by the source node.

    btrfs reports an anonymous device number (0:N) in the mount table, so its source path is
    looked up instead: the node's own device number, its kernel name, or its /dev/mapper name.
    """
    by_dev = sysfs / "dev" / "block"
    for dev in (mount.dev, _rdev(mount.source)):
        if dev and not dev.startswith("0:") and (by_dev / dev).exists():
            return (by_dev / dev).resolve()
    if not mount.source.startswith("/dev/"):
        return None
    name = Path(mount.source).name
    block = sysfs / "class" / "block"
    if (block / name).exists():
        return (block / name).resolve()
    for node in _children(block):
        if _attr(node, "dm/name") == name:
            return node.resolve()
    return None


def _rdev(source: str) -> str:
    """major:minor of a device node such as /dev/mapper/root; "" if it is none."""
    if not source.startswith("/dev/"):
        return ""
    try:
        st = os.stat(source)
    except OSError:
        return ""
    return f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}" if stat.S_ISBLK(st.st_mode) else ""
