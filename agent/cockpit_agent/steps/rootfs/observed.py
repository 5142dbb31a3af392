"""What the rootfs step observes: the root chain's layers measured live, each with its own
tool, in exact numbers.

Each tool grows its layer to the size of the device below, rounded its own way; the
`_*_target` functions repeat that rounding so that a layer counts as "can grow" only when its
tool would actually make it bigger. Otherwise a converged root would plan a no-op forever.
Structured output where the tool has it (lsblk and LVM JSON), else its stable text.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from cockpit_agent.engine import Severity
from cockpit_agent.errors import AgentError, CommandFailed
from cockpit_agent.facts.rootfs import Partition, RootChain
from cockpit_agent.facts.rootfs_cloud_init import CloudInitGrowth
from cockpit_agent.host.run import Runner

GROWPART_NOCHANGE = 1  # growpart's exit code for "nothing to do" (with NOCHANGE in its output)
GROWPART_FUDGE = 1024**2  # growpart leaves a partition alone that would gain less (its default)


@dataclass(frozen=True)
class Hold:
    """Why the step grows nothing at all: a finding code, a reason and the finding's severity."""

    code: str
    reason: str
    severity: Severity = "ok"


@dataclass(frozen=True)
class PartitionGrowth:
    """growpart's verdict on a partition (its CHANGE / NOCHANGE line)."""

    can_grow: bool
    detail: str


@dataclass(frozen=True)
class PvSize:
    """An LVM PV: its device size and the extents it holds (pvs, in bytes)."""

    dev_size: int
    pe_start: int
    pe_count: int
    extent_size: int
    tail_mda: int  # a second metadata area sits at the end of the device

    @property
    def missing_extents(self) -> int:
        """Whole extents the device has room for that the PV does not hold yet."""
        usable = self.dev_size - self.pe_start - self.tail_mda
        return max(0, usable // self.extent_size - self.pe_count) if self.extent_size else 0


@dataclass(frozen=True)
class LvSize:
    """An LV and its VG's extents (lvs, in bytes)."""

    name: str  # vg/lv
    size: int
    extent_size: int
    extent_count: int
    free_count: int

    def extendable(self, leave_free_percent: int) -> int:
        """Free extents the LV may take while leaving `leave_free_percent` of the VG free."""
        keep = -(-self.extent_count * leave_free_percent // 100)  # ceil: at least that much
        return max(0, self.free_count - keep)


@dataclass(frozen=True)
class FsSize:
    """A filesystem's size, and the size its grow tool would reach on its device (bytes)."""

    size: int
    reachable: int
    device_size: int
    btrfs_devid: int = 1

    @property
    def can_grow(self) -> bool:
        """Whether growing would make it bigger."""
        return self.reachable > self.size


@dataclass(frozen=True)
class RootObserved:
    """The chain, what cloud-init grows of it, and each layer as measured now (None where it
    does not apply)."""

    chain: RootChain | None
    hold: Hold | None = None
    cloud: CloudInitGrowth | None = None
    partition: PartitionGrowth | None = None
    pv: PvSize | None = None
    lv: LvSize | None = None
    fs: FsSize | None = None
    sizes: Mapping[str, int] | None = None  # kernel name -> bytes (lsblk)


# --- measuring ------------------------------------------------------------------------------

XFS_MIN_AG_BLOCKS = 64  # the kernel's xfs_growfs drops a new last AG smaller than this
EXT_LAST_GROUP_SPARE = 50  # resize2fs drops a last group smaller than its overhead + 50 blocks
PVS_FIELDS = "pv_name,dev_size,pe_start,pv_pe_count,vg_extent_size,pv_mda_count,pv_mda_size"
LVS_FIELDS = "lv_full_name,lv_size,vg_extent_size,vg_extent_count,vg_free_count"
LVM_REPORT = ("--reportformat", "json", "--units", "b", "--nosuffix", "--options")


def measure_chain(chain: RootChain, runner: Runner) -> RootObserved:
    """Every layer of a growable chain, bottom up; growpart first (it is the one most missed)."""
    if chain.device is None or chain.disk is None:
        raise AgentError(f"{chain.source} on {chain.mountpoint}: no block device to measure")
    part = chain.partition
    devices = [part.device if part else None, chain.disk, None if chain.lv else chain.device]
    sizes = block_sizes(runner, list(dict.fromkeys(d.path for d in devices if d)))
    growth = partition_growth(runner, part, sizes) if part and part.last else None
    pv = lv = None
    if chain.lv:
        pv, lv = measure_pv(runner, chain.lv.pv.path), measure_lv(runner, chain.lv.device.path)
    if not lv and chain.device.name not in sizes:
        raise AgentError(f"lsblk did not report {chain.device.path}")
    device_size = lv.size if lv else sizes[chain.device.name]
    fs = _MEASURE_FS[chain.fstype](runner, chain, device_size)
    return RootObserved(chain=chain, partition=growth, pv=pv, lv=lv, fs=fs, sizes=sizes)


def partition_growth(runner: Runner, part: Partition, sizes: Mapping[str, int]) -> PartitionGrowth:
    """Whether growpart would grow the partition. Less than its fudge (1 MiB) between the
    partition's end and the disk's end (lsblk, now) is a NOCHANGE without asking it: growpart
    is a shell script of several processes, the slowest measurement of a converged root."""
    if part.device.name in sizes and part.disk.name in sizes:
        room = sizes[part.disk.name] - part.start_bytes - sizes[part.device.name]
        if 0 <= room < GROWPART_FUDGE:
            return PartitionGrowth(
                can_grow=False, detail=f"NOCHANGE: {room} bytes after partition {part.number}"
            )
    return growpart_dry_run(runner, part.disk.path, part.number)


def growpart_dry_run(runner: Runner, disk: str, number: int) -> PartitionGrowth:
    """growpart --dry-run: exit 0 with CHANGE, or exit 1 with NOCHANGE (nothing to do)."""
    argv = ["growpart", "--dry-run", disk, str(number)]
    result = runner.run(argv, ok=(0, GROWPART_NOCHANGE))
    said = [ln for ln in result.stdout.splitlines() if ln.startswith(("CHANGE", "NOCHANGE"))]
    if result.rc == GROWPART_NOCHANGE and not any(ln.startswith("NOCHANGE") for ln in said):
        raise CommandFailed(argv, result.rc, result.stderr or result.stdout)
    return PartitionGrowth(can_grow=result.rc == 0, detail=said[0] if said else "")


def block_sizes(runner: Runner, paths: list[str]) -> dict[str, int]:
    """Sizes in bytes by kernel name, from `lsblk --json --bytes`."""
    argv = ["lsblk", "--json", "--bytes", "--nodeps", "--output", "KNAME,SIZE", *paths]
    data = _json(argv, runner.run(argv).stdout)
    with _unexpected(argv):
        return {str(row["kname"]): _number(row["size"]) for row in data.get("blockdevices", [])}


def measure_pv(runner: Runner, device: str) -> PvSize:
    """An LVM physical volume's device size and extents."""
    argv = ["pvs", *LVM_REPORT, PVS_FIELDS, device]
    row = _lvm_row(runner, argv, "pv")
    with _unexpected(argv):
        return PvSize(
            dev_size=_number(row["dev_size"]),
            pe_start=_number(row["pe_start"]),
            pe_count=_number(row["pv_pe_count"]),
            extent_size=_number(row["vg_extent_size"]),
            tail_mda=_number(row["pv_mda_size"]) if _number(row["pv_mda_count"]) > 1 else 0,
        )


def measure_lv(runner: Runner, device: str) -> LvSize:
    """An LVM logical volume's size and its volume group's extents."""
    argv = ["lvs", *LVM_REPORT, LVS_FIELDS, device]
    row = _lvm_row(runner, argv, "lv")
    with _unexpected(argv):
        return LvSize(
            name=str(row["lv_full_name"]),
            size=_number(row["lv_size"]),
            extent_size=_number(row["vg_extent_size"]),
            extent_count=_number(row["vg_extent_count"]),
            free_count=_number(row["vg_free_count"]),
        )


def _measure_ext(runner: Runner, chain: RootChain, device_size: int) -> FsSize:
    """ext2/3/4: block count x block size from the superblock (`dumpe2fs -h`)."""
    assert chain.device is not None
    out = runner.run(["dumpe2fs", "-h", chain.device.path]).stdout
    return ext_size(out, chain.device.path, device_size)


def ext_size(dumpe2fs: str, device: str, device_size: int) -> FsSize:
    """The FsSize from `dumpe2fs -h` output; AgentError when a field is missing or absurd."""
    sb = _colon_pairs(dumpe2fs)
    with _unexpected(["dumpe2fs", "-h", device]):
        block, count = _positive(sb["Block size"]), _number(sb["Block count"])
        target = resize2fs_target(device_size // block, sb)
    return FsSize(size=count * block, reachable=target * block, device_size=device_size)


def resize2fs_target(blocks: int, sb: Mapping[str, str]) -> int:
    """The block count resize2fs grows an ext2/3/4 filesystem to on a device of `blocks`.

    resize2fs rounds down to whole pages and, without the 64bit feature, to 2^32 - 1 blocks;
    then it drops a last block group too small for its own metadata plus 50 blocks (e2fsprogs
    resize/resize2fs.c, adjust_fs_info). Online, the kernel drops such a group only when its
    metadata does not fit, so an online resize reaches at least this: a root counted as
    converged here may at most miss a sliver that resize2fs would not add offline.
    """
    block = _positive(sb["Block size"])
    features = set(sb.get("Filesystem features", "").split())
    page = os.sysconf("SC_PAGE_SIZE")
    if page > block:
        blocks -= blocks % (page // block)
    if "64bit" not in features:
        blocks = min(blocks, 2**32 - 1)
    cluster = _positive(sb.get("Cluster size", str(block))) // block
    blocks -= blocks % max(cluster, 1)
    first, per_group = _number(sb["First block"]), _positive(sb["Blocks per group"])
    groups = -(-(blocks - first) // per_group)
    rest = (blocks - first) % per_group
    if groups > 1 and rest:
        overhead = 2 + _number(sb["Inode blocks per group"])
        if "sparse_super" not in features or _sparse_group(groups - 1):
            descriptors = -(-groups * _positive(sb.get("Group descriptor size", "32")) // block)
            overhead += 1 + descriptors + _number(sb.get("Reserved GDT blocks", "0"))
        if rest < overhead + EXT_LAST_GROUP_SPARE:
            blocks -= rest
    return blocks


def _sparse_group(group: int) -> bool:
    """Whether a group holds a superblock backup under sparse_super: 0, 1, powers of 3, 5, 7."""
    if group <= 1:
        return True
    for base in (3, 5, 7):
        n = base
        while n < group:
            n *= base
        if n == group:
            return True
    return False


def _measure_xfs(runner: Runner, chain: RootChain, device_size: int) -> FsSize:
    """XFS: data blocks x block size from `xfs_info`, which has no structured output."""
    out = runner.run(["xfs_info", chain.mountpoint]).stdout
    return xfs_size(out, chain.mountpoint, device_size)


def xfs_size(xfs_info: str, mountpoint: str, device_size: int) -> FsSize:
    """The FsSize from `xfs_info` output; AgentError without a (sane) data section."""
    data = re.search(r"^data\s*=\s*bsize=([0-9]+)\s+blocks=([0-9]+)", xfs_info, re.MULTILINE)
    ag = re.search(r"agsize=([0-9]+)", xfs_info)
    if data is None or ag is None or not all(int(n) for n in (data[1], ag[1])):
        raise AgentError(f"xfs_info {mountpoint}: no data section in its output")
    bsize, blocks, ag_blocks = int(data[1]), int(data[2]), int(ag[1])
    target = xfs_growfs_target(device_size // bsize, ag_blocks)
    return FsSize(size=blocks * bsize, reachable=target * bsize, device_size=device_size)


def xfs_growfs_target(blocks: int, ag_blocks: int) -> int:
    """The data blocks xfs_growfs reaches on a device of `blocks`: a new last AG smaller than
    64 blocks is left out (the kernel's xfs_growfs_data_private)."""
    rest = blocks % ag_blocks
    return blocks - rest if rest < XFS_MIN_AG_BLOCKS else blocks


def _measure_btrfs(runner: Runner, chain: RootChain, device_size: int) -> FsSize:
    """btrfs: this device's size in the filesystem (`filesystem show --raw`) and sector size."""
    assert chain.device is not None
    show = runner.run(["btrfs", "filesystem", "show", "--raw", chain.mountpoint]).stdout
    rows = re.findall(r"devid\s+(\d+)\s+size\s+(\d+)\s+used\s+\d+\s+path\s+(\S+)", show)
    names = {chain.device.path, "/dev/" + chain.device.name}
    mine = [r for r in rows if r[2] in names] or (rows if len(rows) == 1 else [])
    argv = ["btrfs", "inspect-internal", "dump-super", chain.device.path]
    sector = re.search(r"^sectorsize\s+(\d+)", runner.run(argv).stdout, re.MULTILINE)
    if not mine or sector is None:
        raise AgentError(f"btrfs: cannot find {chain.device.path} on {chain.mountpoint}")
    with _unexpected(argv):
        devid, size, step = _number(mine[0][0]), _number(mine[0][1]), _positive(sector[1])
    target = device_size // step * step
    return FsSize(size=size, reachable=target, device_size=device_size, btrfs_devid=devid)


_MEASURE_FS: dict[str, Callable[[Runner, RootChain, int], FsSize]] = {
    "ext2": _measure_ext,
    "ext3": _measure_ext,
    "ext4": _measure_ext,
    "xfs": _measure_xfs,
    "btrfs": _measure_btrfs,
}


def _lvm_row(runner: Runner, argv: list[str], kind: str) -> dict[str, Any]:
    """The one row of an LVM JSON report (`pvs`/`lvs --reportformat json`)."""
    data = _json(argv, runner.run(argv).stdout)
    with _unexpected(argv):
        rows = (data.get("report") or [{}])[0].get(kind, [])
        if len(rows) != 1:
            raise AgentError(f"{' '.join(argv)}: expected one {kind}, got {len(rows)}")
        return dict(rows[0])


@contextlib.contextmanager
def _unexpected(argv: list[str]) -> Iterator[None]:
    """A tool's output of an unexpected shape (a missing key, a list for a table, a size that is
    no number) is the agent's own error naming the tool, not a crash of the step."""
    try:
        yield
    except KeyError as exc:
        raise AgentError(f"{' '.join(argv)}: no {exc} in its output") from exc
    except (TypeError, ValueError, AttributeError, IndexError, ZeroDivisionError) as exc:
        raise AgentError(f"{' '.join(argv)}: unexpected output: {exc}") from exc


def _number(value: object) -> int:
    """A size or count as a tool prints it: a non-negative integer, or ASCII digits."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    raise ValueError(f"{str(value)[:40]!r} is not a number")


def _positive(value: object) -> int:
    """A size that divides: above zero."""
    number = _number(value)
    if number == 0:
        raise ValueError("0 where a size is needed")
    return number


def _json(argv: list[str], text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise AgentError(f"{argv[0]}: output is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise AgentError(f"{argv[0]}: unexpected JSON output")
    return data


def _colon_pairs(text: str) -> dict[str, str]:
    """`Key:   value` lines (dumpe2fs -h) as a dict."""
    pairs = (line.partition(":") for line in text.splitlines() if ":" in line)
    return {key.strip(): value.strip() for key, _, value in pairs}
