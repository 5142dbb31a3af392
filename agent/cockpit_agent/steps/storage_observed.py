"""What the storage step observed, how it recognises its own array, and its summary line.

Pure values and functions: observe (storage.py) fills a `StorageObserved`, the plan
(storage_plan.py) and the summary read it.
"""

from __future__ import annotations

from dataclasses import dataclass

from cockpit_agent.config import StorageConfig
from cockpit_agent.facts.disks import Disk
from cockpit_agent.facts.md import MdArray, Superblock, superblock_of
from cockpit_agent.steps.storage_actions import level_name

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
        for block in blocks:
            if block.uuid in self.known.array_uuids:
                return block.uuid
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


def summarize(obs: StorageObserved) -> str:
    """One line: what is there, or what would be built, and every drive left out and why."""
    cfg = obs.config
    parts = [_what(obs, cfg)]
    lost = obs.lost + ([obs.lost_filesystem] if obs.lost_filesystem else [])
    if lost:
        parts.append(f"lost (drives blank): {', '.join(lost)}")
    left_out = excluded(obs)
    if left_out:
        parts.append(f"excluded: {'; '.join(left_out)}")
    return "; ".join(parts)


def _what(obs: StorageObserved, cfg: StorageConfig) -> str:
    ours, mounted = obs.ours, obs.mount.dev is not None
    where = f"mounted at {cfg.mount_point}" if mounted else "not mounted"
    if ours is not None:
        health = ours.state + (f", {ours.missing} member(s) missing" if ours.missing else "")
        sync = f", {ours.sync_action} {ours.progress}" if ours.progress else ""
        level = level_number(ours.level)
        return (
            f"{level_name(level) if level is not None else ours.level or 'array'} "
            f"{ours.name} on {ours.path} ({len(ours.members)}/{ours.raid_disks} members, "
            f"{health}{sync}), {where}"
        )
    if obs.dormant:
        return f"array {cfg.array_name} on {', '.join(d.name for d in obs.dormant)} not running"
    if obs.plain is not None:
        return f"plain drive {obs.plain.name} ({obs.plain.probe.get('TYPE', '?')}), {where}"
    return _would_build(obs, cfg)


def _would_build(obs: StorageObserved, cfg: StorageConfig) -> str:
    eligible = obs.eligible
    names = ", ".join(d.name for d in eligible)
    layout = choose_layout(eligible, cfg)
    if layout is not None:
        how = " (fallback)" if layout.fallback else ""
        return f"{len(eligible)} eligible drive(s) ({names}): new {level_name(layout.level)}{how}"
    if not eligible:
        return "no eligible drive: nothing to build"
    need = max(cfg.min_devices, LEVEL_MIN[cfg.level])
    return (
        f"skipped: {len(eligible)} eligible drive(s) ({names}), RAID{cfg.level} needs {need} "
        "and storage.fallback = none"
    )
