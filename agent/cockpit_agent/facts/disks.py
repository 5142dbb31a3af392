"""Block-device facts: every whole disk on the host and every reason it may not be used.

Reading and deciding are kept apart. `read_disks` observes the host into plain `RawDisk`
records (sysfs, /proc, `blkid -p` and `wipefs`; udev properties only as an extra, because a
host without a udev database must work too). `classify` is a pure function that turns one
record and the storage configuration into a `Disk` carrying all of its exclusion reasons.
The storage step may touch a disk only if `Disk.eligible` (DESIGN.md, safety rules).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import pyudev

from cockpit_agent.config import StorageConfig
from cockpit_agent.errors import AgentError
from cockpit_agent.facts.model import Frozen
from cockpit_agent.host import block
from cockpit_agent.host.mounts import Mount, read_mountinfo, read_swaps
from cockpit_agent.host.run import Runner, at_once
from cockpit_agent.host.sysfs import PROC, SYSFS
from cockpit_agent.host.sysfs import attr as _attr
from cockpit_agent.host.sysfs import children as _children
from cockpit_agent.host.sysfs import exists as _exists
from cockpit_agent.host.sysfs import is_file as _is_file
from cockpit_agent.host.sysfs import listdir as _listdir
from cockpit_agent.host.sysfs import resolve as _resolve
from cockpit_agent.host.sysfs import uevent as _uevent

SECTOR_BYTES = 512  # sysfs `size` counts 512-byte sectors whatever the logical block size
IGNORED_PREFIXES = ("ram", "zram")  # memory-backed: never storage for the array
MD_MEMBER = "linux_raid_member"
LVM_PV = "LVM2_member"


class Reason(Frozen):
    """Why a disk may not be used: a stable machine `code` and a `detail` for people."""

    code: str
    detail: str


class RawDisk(Frozen):
    """What the host says about one whole disk, before any decision is made."""

    name: str
    path: str
    dev: str = ""  # "major:minor"
    aliases: list[str] = []  # other /dev names (udev DEVLINKS), when a udev database exists
    model: str = ""
    serial: str = ""
    wwid: str = ""
    size_bytes: int = 0
    logical_block_size: int = SECTOR_BYTES
    nvme: bool = False
    read_only: bool = False
    removable: bool = False
    partitions: list[str] = []
    holders: list[str] = []  # of the disk and of its partitions
    mountpoints: list[str] = []  # of the disk and of its partitions
    swap: bool = False
    root_disk: bool = False
    probe: dict[str, str] | None = None  # `blkid -p -o export`; None = not probed
    signatures: list[str] = []  # types found by blkid, wipefs and udev
    probe_error: str | None = None


class Disk(Frozen):
    """A classified disk: what it is, and whether the storage step may use it (and why not)."""

    name: str
    path: str
    dev: str
    model: str
    serial: str
    wwid: str
    size_bytes: int
    logical_block_size: int
    nvme: bool
    read_only: bool
    removable: bool
    partitions: list[str]
    signatures: list[str]
    holders: list[str]
    mountpoints: list[str]
    swap: bool
    md_member: bool
    lvm_pv: bool
    root_disk: bool
    fs_uuid: str | None
    label: str | None
    probe: dict[str, str]
    eligible: bool
    reasons: list[Reason]

    @property
    def codes(self) -> list[str]:
        """The reason codes, in order."""
        return [r.code for r in self.reasons]


# --- deciding ---------------------------------------------------------------------------


def classify(raw: RawDisk, config: StorageConfig) -> Disk:
    """Decide whether `raw` may be used under `config`, collecting every reason it may not."""
    md_member, lvm_pv = MD_MEMBER in raw.signatures, LVM_PV in raw.signatures
    probe = raw.probe or {}
    reasons = _scope_reasons(raw, config) + _state_reasons(raw, config, md_member, lvm_pv)
    return Disk(
        **raw.model_dump(exclude={"aliases", "probe", "probe_error"}),
        md_member=md_member,
        lvm_pv=lvm_pv,
        fs_uuid=probe.get("UUID"),
        label=probe.get("LABEL"),
        probe=probe,
        eligible=not reasons,
        reasons=reasons,
    )


def listed(raw: RawDisk, devices: Collection[str]) -> bool:
    """Whether `raw` is named in `devices`, by its path or one of its udev aliases."""
    return raw.path in devices or any(a in devices for a in raw.aliases)


def _scope_reasons(raw: RawDisk, config: StorageConfig) -> list[Reason]:
    """An explicit device list is the only set considered; otherwise NVMe of allowed models."""
    if config.devices:
        if listed(raw, config.devices):
            return []
        return [Reason(code="not-listed", detail=f"{raw.path} is not in storage.devices")]
    reasons = []
    if not raw.nvme:
        reasons.append(Reason(code="not-nvme", detail="not an NVMe namespace"))
    if raw.model not in config.allowed_models:
        detail = f"model {raw.model!r} is not in storage.allowed_models"
        reasons.append(Reason(code="model-not-allowed", detail=detail))
    return reasons


def _state_reasons(
    raw: RawDisk, config: StorageConfig, md_member: bool, lvm_pv: bool
) -> list[Reason]:
    """Reasons from what is on or using the disk; each check is (hit, code, detail)."""
    minimum = int(config.min_device_size)
    checks = [
        (raw.root_disk, "root-disk", "holds the root filesystem"),
        (bool(raw.partitions), "partitioned", "has partitions " + ", ".join(raw.partitions)),
        (bool(raw.signatures), "signature", "has signatures " + ", ".join(raw.signatures)),
        (md_member, "md-member", "is a member of an md RAID array"),
        (lvm_pv, "lvm-pv", "is an LVM physical volume"),
        (bool(raw.holders), "holders", "is held by " + ", ".join(raw.holders)),
        (bool(raw.mountpoints), "mounted", "is mounted at " + ", ".join(raw.mountpoints)),
        (raw.swap, "swap", "is in use as swap"),
        (raw.read_only, "read-only", "is read-only"),
        (raw.removable, "removable", "is removable media"),
        (raw.size_bytes < minimum, "too-small", f"{raw.size_bytes} bytes < {minimum} bytes"),
        (raw.probe_error is not None, "probe-failed", f"cannot be probed: {raw.probe_error}"),
        (raw.probe is None and raw.probe_error is None, "not-probed", "was not probed"),
    ]
    return [Reason(code=code, detail=detail) for hit, code, detail in checks if hit]


# --- observing --------------------------------------------------------------------------


class _Host(NamedTuple):
    """Host-wide observations shared by every disk."""

    sysfs: Path
    mounts: list[Mount]
    swaps: list[str]
    root_disks: set[str]


def read_disks(
    runner: Runner,
    *,
    sysfs: Path = SYSFS,
    proc: Path = PROC,
    context: pyudev.Context | None = None,
    probe_only: Collection[str] | None = None,
) -> list[RawDisk]:
    """Observe every whole disk (not ram, zram, hidden or detached loop devices), by name.

    Disks are enumerated with pyudev; a `sysfs` other than /sys (a captured tree) is walked
    directly, since libudev only knows the real one. `probe_only` limits the devices that
    blkid and wipefs read to those paths; the others are reported with `probe=None`.
    """
    root, mounts = _resolve(sysfs), read_mountinfo(proc)
    host = _Host(root, mounts, read_swaps(proc), _root_disks(root, mounts))
    seen = [_observe(name, path, props, host) for name, path, props in _enumerate(sysfs, context)]
    disks = [fields for fields in seen if fields is not None]
    probed = [f for f in disks if probe_only is None or listed(RawDisk(**f), probe_only)]
    # The disks are probed at the same time: each probe is two commands that only read.
    at_once(*(partial(_add_probe, runner, fields) for fields in probed))
    return sorted((RawDisk(**fields) for fields in disks), key=lambda d: d.name)


def gather_disks(
    config: StorageConfig,
    runner: Runner,
    *,
    sysfs: Path = SYSFS,
    proc: Path = PROC,
    context: pyudev.Context | None = None,
) -> list[Disk]:
    """Read and classify every disk. With `storage.devices` set, only those are probed."""
    only = config.devices or None
    raws = read_disks(runner, sysfs=sysfs, proc=proc, context=context, probe_only=only)
    return [classify(raw, config) for raw in raws]


def _enumerate(root: Path, context: Any) -> Iterator[tuple[str, Path, dict[str, str]]]:
    """Whole disks as (name, sysfs directory, udev or uevent properties)."""
    if context is None and root != SYSFS:
        for link in sorted(_children(root / "class" / "block")):
            if not _exists(link / "partition"):
                yield link.name, _resolve(link), _uevent(link)
        return
    context = context or pyudev.Context()
    for device in context.list_devices(subsystem="block", DEVTYPE="disk"):
        relative = Path(device.sys_path).relative_to(context.sys_path)
        yield device.sys_name, root / relative, dict(device.properties)


def _observe(name: str, path: Path, props: dict[str, str], host: _Host) -> dict[str, Any] | None:
    """The sysfs and /proc fields of one disk; None if it is ignored or has vanished."""
    dev, sectors = _attr(path, "dev"), int(_attr(path, "size") or 0)
    detached = name.startswith("loop") and not sectors
    # `hidden`: a path of an NVMe multipath namespace (nvme0c0n1), which has no /dev node.
    if name.startswith(IGNORED_PREFIXES) or not dev or detached or _attr(path, "hidden") == "1":
        return None
    parts = _partitions(path)
    node = "/dev/" + props.get("DEVNAME", name).removeprefix("/dev/")
    nodes = {node} | {"/dev/" + p.name for p in parts}
    devs = {dev} | {_attr(p, "dev") for p in parts}
    inside = path.relative_to(host.sysfs) if path.is_relative_to(host.sysfs) else path
    nvme = any(part in ("nvme", "nvme-subsystem") for part in inside.parts)
    return {
        "name": name,
        "path": node,
        "dev": dev,
        "aliases": props.get("DEVLINKS", "").split(),
        "model": _device_attr(path, "model", nvme),
        "serial": _device_attr(path, "serial", nvme) or props.get("ID_SERIAL_SHORT", ""),
        "wwid": _attr(path, "wwid", "device/wwid"),
        "size_bytes": sectors * SECTOR_BYTES,
        "logical_block_size": int(_attr(path, "queue/logical_block_size") or SECTOR_BYTES),
        "nvme": nvme,
        "read_only": _attr(path, "ro") == "1",
        "removable": _attr(path, "removable") == "1",
        "partitions": [p.name for p in parts],
        "holders": sorted({h for d in (path, *parts) for h in _listdir(d / "holders")}),
        "mountpoints": [m.mountpoint for m in host.mounts if m.dev in devs or m.source in nodes],
        "swap": any(s in nodes for s in host.swaps),
        "root_disk": name in host.root_disks,
        "signatures": _unique([props.get("ID_FS_TYPE", ""), props.get("ID_PART_TABLE_TYPE", "")]),
    }


def _add_probe(runner: Runner, fields: dict[str, Any]) -> None:
    fields |= _probe(runner, fields["path"], fields["signatures"])


def _probe(runner: Runner, path: str, known: list[str]) -> dict[str, Any]:
    """Low-level signature probe with blkid (identity) and wipefs (every signature)."""
    try:
        probe = block.blkid(runner, path, ambivalent_ok=True)
        wiped = block.wipefs_types(runner, path)
    except AgentError as exc:
        return {"probe": None, "probe_error": str(exc)}
    found = probe.fields
    ambivalent = ["ambivalent"] if probe.ambivalent else []
    types = [found.get("TYPE", ""), found.get("PTTYPE", ""), *wiped, *ambivalent]
    return {"probe": found, "signatures": _unique([*known, *types])}


def _root_disks(root_sysfs: Path, mounts: list[Mount]) -> set[str]:
    """The whole disks under the filesystem mounted at /, found through sysfs."""
    roots = [m for m in mounts if m.mountpoint == "/"]
    if not roots:
        return set()
    root = roots[-1]  # the last mount on / is the one in use
    by_dev = {_attr(p, "dev"): p for p in _children(root_sysfs / "class" / "block")}
    by_name = root_sysfs / "class" / "block" / Path(root.source).name
    start = by_dev.get(root.dev) or by_dev.get(block.device_number(root.source))
    start = start or (by_name if _exists(by_name) else None)
    return _underlying(start, root_sysfs) if start else set()


def _underlying(node: Path, root_sysfs: Path, depth: int = 0) -> set[str]:
    """The whole disks below a block device: partition -> parent disk, dm/md -> slaves."""
    node = _resolve(node)
    if depth > 16:  # sysfs has no cycles; a broken tree must not recurse forever
        return set()
    if _exists(node / "partition"):
        return _underlying(node.parent, root_sysfs, depth + 1)
    slaves = _listdir(node / "slaves")
    if not slaves:
        return {node.name}
    devices = root_sysfs / "class" / "block"
    return set().union(*(_underlying(devices / s, root_sysfs, depth + 1) for s in slaves))


def _partitions(disk: Path) -> list[Path]:
    """The partition directories of a disk, in partition-number order."""
    parts = [c for c in _children(disk) if _is_file(c / "partition")]
    return sorted(parts, key=lambda p: int(_attr(p, "partition") or 0))


def _device_attr(path: Path, name: str, nvme: bool) -> str:
    """An attribute of the disk's device; an NVMe namespace's controller is its parent."""
    return _attr(path, f"device/{name}", name, *([f"../{name}"] if nvme else []))


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(i for i in items if i))
