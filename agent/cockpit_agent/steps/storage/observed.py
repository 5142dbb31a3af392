"""What the storage step observes, how it reads it, and how it recognises its own array.

`observe` reads facts (disks, arrays), the files the step owns lines in (mdadm.conf, fstab,
the udev rule), the mount table and blkid's probe of our array into a `StorageObserved`; the
plan (plan.py) and the step's summary and verify (step.py) read it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

from cockpit_agent.config import StorageConfig
from cockpit_agent.engine import Ctx
from cockpit_agent.facts.disks import Disk
from cockpit_agent.facts.md import MdArray, Superblock, normalize_uuid, superblock_of
from cockpit_agent.facts.platform import Platform
from cockpit_agent.host import block, mounts, systemd
from cockpit_agent.host.files import Files
from cockpit_agent.host.run import Runner
from cockpit_agent.host.sysfs import HostPaths
from cockpit_agent.render import fstab, mdadm

FSTAB = "/etc/fstab"
RULE_PATH = "/etc/udev/rules.d/69-cockpit-agent-md-stripe-cache.rules"
DEBIAN_MDADM_CONF = "/etc/mdadm/mdadm.conf"
RHEL_MDADM_CONF = "/etc/mdadm.conf"
MDADM_CONF = {"debian": DEBIAN_MDADM_CONF, "rhel": RHEL_MDADM_CONF, "amazon": RHEL_MDADM_CONF}

# The drives each level needs at the least (RAID10 "near 2" works on two).
LEVEL_MIN = {0: 2, 1: 2, 4: 3, 5: 3, 6: 4, 10: 2}


@dataclass(frozen=True)
class FsProbe:
    """What blkid says is on our array or plain drive; all "" when it is blank."""

    type: str = ""
    uuid: str = ""
    usage: str = ""

    @property
    def blank(self) -> bool:
        """No signature at all."""
        return not (self.type or self.usage)


@dataclass(frozen=True)
class MountState:
    """What is mounted at the mount point (from mountinfo), and what lies under it."""

    dev: str | None = None  # major:minor of the mounted filesystem; None = not a mount point
    source: str = ""
    owner: tuple[int, int, int] | None = None  # uid, gid, mode of the directory, if it exists
    entries: tuple[str, ...] = ()  # directory entries, when nothing is mounted there


@dataclass(frozen=True)
class Known:
    """What the host and the state file say we created before."""

    array_uuids: tuple[str, ...] = ()
    fs_uuid: str | None = None
    fstype: str | None = None


@dataclass(frozen=True)
class StorageObserved:
    """Everything the storage step's plan depends on."""

    disks: tuple[Disk, ...]
    arrays: tuple[MdArray, ...]
    known: Known
    filesystem: FsProbe | None  # on our running array or plain drive; None = cannot be probed
    mdadm_conf_path: str
    mdadm_conf: str
    fstab: str
    rule: str | None
    mount: MountState
    config: StorageConfig

    @property
    def array_name(self) -> str:
        """The name we give our array."""
        return self.config.array_name

    @property
    def eligible(self) -> list[Disk]:
        """Drives that pass every safety rule, by name."""
        return sorted((d for d in self.disks if d.eligible), key=lambda d: d.name)

    @property
    def ours(self) -> MdArray | None:
        """Our array as the kernel has it (running or inactive): by UUID, else by name."""
        return find_ours(self.arrays, self.known.array_uuids, self.array_name)

    @property
    def dormant(self) -> list[Disk]:
        """Drives with our array's superblock that no array of the kernel holds."""
        if self.ours is not None:
            return []
        wanted = self._dormant_uuid()
        return [d for d in self.disks if _sb_uuid(d) == wanted and not d.holders] if wanted else []

    @property
    def plain(self) -> Disk | None:
        """Our plain drive: a whole drive carrying our filesystem."""
        uuid = self.known.fs_uuid
        hits = [d for d in self.disks if uuid and d.fs_uuid == uuid and not d.name.startswith("md")]
        return hits[0] if hits and self.ours is None else None

    @property
    def lost(self) -> list[str]:
        """UUIDs of our arrays that no drive carries any more (instance store wiped)."""
        present = {a.uuid for a in self.arrays} | {_sb_uuid(d) for d in self.disks}
        return [u for u in self.known.array_uuids if u not in present]

    @property
    def lost_filesystem(self) -> str | None:
        """Our plain drive's filesystem UUID when nothing carries it any more."""
        uuid = self.known.fs_uuid
        if not uuid or self.known.array_uuids or self.ours or self.dormant:
            return None
        return None if any(d.fs_uuid == uuid for d in self.disks) else uuid

    def _dormant_uuid(self) -> str | None:
        """The UUID of our array among unassembled superblocks: known UUID, else our name."""
        blocks = [b for b in (superblock_of(d) for d in self.disks) if b is not None]
        for found in blocks:
            if found.uuid in self.known.array_uuids:
                return found.uuid
        named = [b for b in blocks if is_our_name(b.name, self.array_name)]
        return named[0].uuid if named else None


@dataclass(frozen=True)
class Layout:
    """The array to build: a RAID level (None = the plain drive) and its drives."""

    level: int | None
    drives: tuple[Disk, ...]
    fallback: bool = False


def is_our_name(stored: str | None, name: str) -> bool:
    """Whether a superblock name is ours: we create with --homehost=any, stored "any:<name>"."""
    return stored in (f"any:{name}", name)


def find_ours(arrays: tuple[MdArray, ...], uuids: tuple[str, ...], name: str) -> MdArray | None:
    """Our array: by a UUID we know, else by the name we give our arrays."""
    by_uuid = [a for a in arrays if a.uuid and a.uuid in uuids]
    by_name = [a for a in arrays if is_our_name(a.name, name)]
    hits = by_uuid or by_name
    return hits[0] if hits else None


def choose_layout(eligible: list[Disk], cfg: StorageConfig) -> Layout | None:
    """The configured level with every eligible drive, or the fallback; None = nothing to do."""
    count = len(eligible)
    if count >= max(cfg.min_devices, LEVEL_MIN[cfg.level]):
        return Layout(cfg.level, tuple(eligible))
    if cfg.fallback == "none" or count == 0:
        return None
    level = 5 if count >= LEVEL_MIN[5] else 1 if count == 2 else None
    return Layout(level, tuple(eligible), fallback=True)


def level_number(level: str) -> int | None:
    """md's "raid5" -> 5; None for anything else (linear, multipath, "")."""
    digits = level.removeprefix("raid")
    return (
        int(digits) if level.startswith("raid") and digits.isascii() and digits.isdigit() else None
    )


def _sb_uuid(disk: Disk) -> str | None:
    block: Superblock | None = superblock_of(disk)
    return block.uuid if block else None


def excluded(obs: StorageObserved) -> list[str]:
    """Each drive not used, with its reason codes (md devices themselves left out)."""
    return [
        f"{d.name} ({', '.join(d.codes)})"
        for d in sorted(obs.disks, key=lambda d: d.name)
        if not d.eligible and not d.name.startswith("md")
    ]


# --- reading the host -----------------------------------------------------------------------


def observe(ctx: Ctx, host: HostPaths, boot_mount_wait: float) -> StorageObserved:
    """Facts (disks, arrays), our lines in mdadm.conf and fstab, the rule, the mount, and
    what blkid finds on our array or plain drive."""
    cfg: StorageConfig = ctx.config.storage
    conf_path = mdadm_conf_path(ctx.facts.platform, ctx.files)
    conf = ctx.files.read(conf_path) or ""
    fstab_text = ctx.files.read(FSTAB) or ""
    known = known_resources(ctx.step_data.get("storage", {}), conf, fstab_text)
    if known.fs_uuid:
        await_boot_mount(ctx, host, cfg.mount_point, known.fs_uuid, boot_mount_wait)
    observed = StorageObserved(
        disks=tuple(ctx.facts.disks),
        arrays=tuple(ctx.facts.arrays),
        known=known,
        filesystem=None,
        mdadm_conf_path=conf_path,
        mdadm_conf=conf,
        fstab=fstab_text,
        rule=ctx.files.read(RULE_PATH),
        mount=mount_state(host, ctx.files, cfg.mount_point),
        config=cfg,
    )
    device = _probe_target(observed)
    if device is None:
        return observed
    return replace(observed, filesystem=probe_filesystem(ctx.runner, device))


def mdadm_conf_path(platform: Platform | None, files: Files) -> str:
    """The mdadm.conf this distribution's mdadm reads: by OS family, else the one that exists."""
    family = platform.os_family if platform else "unknown"
    if family in MDADM_CONF:
        return MDADM_CONF[family]
    for path in (DEBIAN_MDADM_CONF, RHEL_MDADM_CONF):
        if files.exists(path):
            return path
    return DEBIAN_MDADM_CONF if files.exists("/etc/mdadm") else RHEL_MDADM_CONF


def known_resources(step_data: dict[str, Any], conf: str, fstab_text: str) -> Known:
    """What we created before, from the state file and from the lines we own."""
    uuids = [step_data.get("array_uuid") or ""]
    uuids += [mdadm.line_uuid(line) or "" for line in mdadm.owned_lines(conf)]
    normal = [u for u in (normalize_uuid(u) for u in uuids) if u]
    specs = [s for s in (fstab.parse_line(x) for x in fstab.owned_lines(fstab_text)) if s]
    fs_uuid = specs[0].fs_uuid if specs else step_data.get("fs_uuid")
    fstype = specs[0].fstype if specs else step_data.get("fstype")
    return Known(tuple(dict.fromkeys(normal)), fs_uuid, fstype)


def probe_filesystem(runner: Runner, device: str) -> FsProbe:
    """What `blkid -p` finds on `device` (read-only); blank when it finds nothing."""
    found = block.blkid(runner, device).fields
    return FsProbe(found.get("TYPE", ""), found.get("UUID", ""), found.get("USAGE", ""))


def await_boot_mount(
    ctx: Ctx, host: HostPaths, mount_point: str, fs_uuid: str, wait: float
) -> None:
    """Let systemd finish mounting our filesystem from fstab before observing the mount.

    `nofail` mounts are not ordered before local-fs.target, so at boot the agent can start
    while systemd's own mount job is still queued. Waits (at most `wait` seconds) only while
    the filesystem's device exists, it is not mounted yet, and systemd has a job for it.
    """
    if mounts.mount_at(mount_point, host.proc) is not None:
        return
    if not systemd.running(ctx.files) or not host.has_node(f"/dev/disk/by-uuid/{fs_uuid}"):
        return
    unit = systemd.mount_unit(ctx.runner, mount_point)
    deadline = time.monotonic() + wait
    while mounts.mount_at(mount_point, host.proc) is None and time.monotonic() < deadline:
        if unit not in systemd.queued_jobs(ctx.runner):
            return
        time.sleep(0.5)


def mount_state(host: HostPaths, files: Files, mount_point: str) -> MountState:
    """What is mounted at the mount point, its owner and mode, and what lies under it."""
    mounted = mounts.mount_at(mount_point, host.proc)
    entries: tuple[str, ...] = ()
    if mounted is None and files.is_dir(mount_point):
        entries = tuple(files.listdir(mount_point))
    return MountState(
        dev=mounted.dev if mounted else None,
        source=mounted.source if mounted else "",
        owner=files.owner(mount_point),
        entries=entries,
    )


def _probe_target(obs: StorageObserved) -> str | None:
    """The device whose filesystem matters: our running array, else our plain drive."""
    ours = obs.ours
    if ours is not None:
        return ours.path if ours.active else None
    return obs.plain.path if obs.plain else None
