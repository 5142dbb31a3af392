"""The storage step's decisions, as pure functions of what was observed and the configuration.

Nothing here touches the host: `observe` (observed.py) reads it into a `StorageObserved`,
and `plan_storage` turns that into actions. Only eligible drives are ever put into an
action that writes to a drive.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass

from cockpit_agent.config import StorageConfig
from cockpit_agent.errors import AgentError
from cockpit_agent.facts.md import MdArray, normalize_uuid, superblock_of
from cockpit_agent.render import fstab, mdadm
from cockpit_agent.render.fstab import MountSpec
from cockpit_agent.render.mdadm import ArraySpec
from cockpit_agent.steps.storage.actions import (
    AddMember,
    AssembleArray,
    CreateArray,
    MakeFilesystem,
    Mount,
    PauseInitialSync,
    RecordLost,
    RemoveStripeCacheRule,
    ResumeSync,
    SetMountPointMode,
    SetStripeCache,
    StartArray,
    StorageAction,
    WriteFstabEntry,
    WriteMdadmConf,
    WriteStripeCacheRule,
    level_name,
)
from cockpit_agent.steps.storage.observed import (
    FSTAB,
    RULE_PATH,
    FsProbe,
    Layout,
    StorageObserved,
    choose_layout,
    excluded,
    level_number,
)

PARITY = (4, 5, 6)
# What libvirt's packages give /var/lib/libvirt/images on Debian and RHEL alike: root:root
# 0711, so qemu (another user) can reach image files without listing the directory.
MOUNT_POINT_OWNER = (0, 0, 0o711)
XFS_MIN_BYTES = 300 * 1024**2  # mkfs.xfs: "Filesystem must be larger than 300MB."
FILESYSTEM_TYPES = ("xfs", "ext4", "ext3", "ext2", "btrfs")


class StoragePlanError(AgentError):
    """The host is in a state the step must not change on its own (an admin decides)."""


@dataclass
class _Target:
    """Where our filesystem lives, decided while planning."""

    device: str
    dev: str | None  # major:minor when it exists now
    level: int | None
    array_uuid: str | None
    stored_name: str | None
    fs: FsProbe | None  # None = not known until the array runs
    fresh: bool = False  # the filesystem is made in this run
    stripe_cache: int | None = None  # current entries, for RAID4/5/6
    paused: bool = False  # md's build is frozen (by us, in this run or a crashed one)


def new_uuid4() -> str:
    """A random UUID for a new array or filesystem, chosen at plan time so plans are exact."""
    return str(uuidlib.uuid4())


def plan_storage(
    obs: StorageObserved,
    new_uuid: Callable[[], str] = new_uuid4,
    owner: tuple[int, int, int] = MOUNT_POINT_OWNER,
) -> list[StorageAction]:
    """Every action that brings the host to the configured storage, in order.

    `owner` is the (uid, gid, mode) the mount point must have.
    """
    cfg = obs.config
    actions: list[StorageAction] = [RecordLost("array", u) for u in obs.lost]
    if obs.lost_filesystem:
        actions.append(RecordLost("filesystem", obs.lost_filesystem))
    target = _reuse(obs, cfg, actions) or _build(obs, cfg, new_uuid, actions)
    if target is None:
        stale_rule = [RemoveStripeCacheRule(RULE_PATH)] if obs.rule is not None else []
        return actions + stale_rule + _persist(obs, cfg, None, None)
    _refuse_conflicts(obs, cfg)
    actions += _stripe_cache(obs, cfg, target)  # before mkfs, which then runs faster
    spec = _filesystem(obs, cfg, target, new_uuid, actions)
    actions += _persist(obs, cfg, target, spec)
    actions += _mount(obs, cfg, target, spec, owner)
    if target.paused:
        actions.append(ResumeSync(target.device))
    return actions


def _refuse_conflicts(obs: StorageObserved, cfg: StorageConfig) -> None:
    """Stop before any change when the mount point belongs to something else."""
    mount = obs.mount
    ours = obs.ours
    our_devs = {ours.dev} if ours else set()
    if obs.plain:
        our_devs.add(obs.plain.dev)
    if mount.dev is not None and mount.dev not in our_devs:
        raise StoragePlanError(
            f"{cfg.mount_point} already has {mount.source or mount.dev} mounted; unmount it "
            "or set storage.mount_point to another directory"
        )
    if mount.dev is None and mount.entries:
        shown = ", ".join(mount.entries[:5]) + (" ..." if len(mount.entries) > 5 else "")
        raise StoragePlanError(
            f"{cfg.mount_point} is not empty ({shown}); mounting the array would hide those "
            "files: move them away or set storage.mount_point"
        )


def _reuse(
    obs: StorageObserved, cfg: StorageConfig, actions: list[StorageAction]
) -> _Target | None:
    """Our existing array (started or assembled if needed) or plain drive; None if none."""
    ours = obs.ours
    if ours is not None:
        if not ours.active:
            actions.append(StartArray(ours.path))
        actions += _replacements(obs, cfg, ours)
        return _Target(
            ours.path, ours.dev, level_number(ours.level), ours.uuid, ours.name,
            obs.filesystem if ours.active else None, stripe_cache=ours.stripe_cache_size,
            paused=ours.sync_action == "frozen",
        )  # fmt: skip
    dormant = obs.dormant
    if dormant:
        block = superblock_of(dormant[0])
        assert block is not None  # dormant drives all carry our superblock
        actions.append(AssembleArray(cfg.array_name, block.uuid, tuple(d.path for d in dormant)))
        level = None  # unknown until it runs; the stripe cache follows at the next run
        return _Target(f"/dev/md/{cfg.array_name}", None, level, block.uuid, block.name, None)
    if obs.plain is not None:
        return _Target(obs.plain.path, obs.plain.dev, None, None, None, obs.filesystem)
    return None


def _replacements(obs: StorageObserved, cfg: StorageConfig, ours: MdArray) -> list[StorageAction]:
    """AddMember for each empty slot of a degraded array, when auto_replace allows it.

    A slot being rebuilt onto (a new array's first recovery, or a drive added earlier) is
    not empty: nothing is added for it.
    """
    if not cfg.auto_replace or not ours.active or ours.missing <= 0:
        return []
    return [AddMember(ours.path, d.path) for d in obs.eligible[: ours.missing]]


def _build(
    obs: StorageObserved,
    cfg: StorageConfig,
    new_uuid: Callable[[], str],
    actions: list[StorageAction],
) -> _Target | None:
    """A new array (or plain drive) from eligible drives; None when there is nothing to use."""
    layout = choose_layout(obs.eligible, cfg)
    if layout is None:
        return None
    _refuse_unknown_arrays(obs)
    _refuse_too_small(layout, cfg)
    if layout.level is None:
        drive = layout.drives[0]
        return _Target(drive.path, None, None, None, None, FsProbe(), fresh=True)
    array_uuid = normalize_uuid(new_uuid())
    assert array_uuid is not None
    create = CreateArray(
        name=cfg.array_name,
        level=layout.level,
        devices=tuple(d.path for d in layout.drives),
        chunk_kib=cfg.chunk_kib,
        bitmap="none" if layout.level == 0 else "internal",
        uuid=array_uuid,
        excluded=tuple(excluded(obs)),
    )
    actions.append(create)
    paused = layout.level != 0  # RAID0 has nothing to build
    if paused:
        actions.append(PauseInitialSync(create.path))
    stored = f"any:{cfg.array_name}"
    target = _Target(create.path, None, layout.level, array_uuid, stored, FsProbe(), fresh=True)
    target.paused = paused
    return target


def usable_bytes(layout: Layout) -> int:
    """Roughly what the array holds: the smallest drive times the data drives."""
    count, smallest = len(layout.drives), min(d.size_bytes for d in layout.drives)
    data = {None: 1, 0: count, 1: 1, 4: count - 1, 5: count - 1, 6: count - 2}
    return smallest * data[layout.level] if layout.level in data else smallest * count // 2


def _refuse_too_small(layout: Layout, cfg: StorageConfig) -> None:
    """mkfs.xfs refuses a filesystem below 300 MB: say so before building anything."""
    size = usable_bytes(layout)
    if cfg.filesystem == "xfs" and size < XFS_MIN_BYTES:
        raise StoragePlanError(
            f"{level_name(layout.level)} of {len(layout.drives)} drive(s) holds about "
            f"{size // 1024**2} MiB; XFS needs at least 300 MiB: use bigger drives or "
            'storage.filesystem = "ext4"'
        )


def _refuse_unknown_arrays(obs: StorageObserved) -> None:
    """Never build next to a running array whose identity mdadm could not tell."""
    unknown = [a for a in obs.arrays if a.uuid is None]
    if unknown:
        why = "; ".join(f"{a.device}: {a.detail_error or 'no UUID'}" for a in unknown)
        raise StoragePlanError(f"cannot tell whether these md arrays are ours: {why}")


def _filesystem(
    obs: StorageObserved,
    cfg: StorageConfig,
    target: _Target,
    new_uuid: Callable[[], str],
    actions: list[StorageAction],
) -> MountSpec | None:
    """The filesystem to mount: ours as found, a new one on a blank target, or None."""
    fs = target.fs
    if fs is not None and fs.blank and (target.fresh or target.level is not None):
        uuid = new_uuid()
        whole = target.level is None
        actions.append(MakeFilesystem(target.device, cfg.filesystem, cfg.label, uuid, whole))
        target.fresh = True  # a new filesystem's root needs its owner and mode
        return MountSpec(uuid, cfg.mount_point, cfg.filesystem)
    if fs is not None and fs.type in FILESYSTEM_TYPES and fs.uuid:
        return MountSpec(fs.uuid, cfg.mount_point, fs.type)
    if fs is None and obs.known.fs_uuid and obs.known.fstype:
        return MountSpec(obs.known.fs_uuid, cfg.mount_point, obs.known.fstype)
    return None  # not a filesystem we may mount (LVM, LUKS, ...): left alone, see summary


def _stripe_cache(obs: StorageObserved, cfg: StorageConfig, target: _Target) -> list[StorageAction]:
    """The stripe cache of a RAID4/5/6 array, now (sysfs) and at every start (udev rule)."""
    entries = cfg.stripe_cache_size
    if target.array_uuid is not None and target.level is None:
        return []  # not running yet: its level shows at the next run
    parity = target.level in PARITY and target.array_uuid is not None and entries > 0
    if not parity:
        return [RemoveStripeCacheRule(RULE_PATH)] if obs.rule is not None else []
    assert target.array_uuid is not None
    actions: list[StorageAction] = []
    if target.stripe_cache != entries:
        actions.append(SetStripeCache(target.device, entries))
    if obs.rule != mdadm.stripe_cache_rule(target.array_uuid, entries):
        actions.append(WriteStripeCacheRule(RULE_PATH, target.array_uuid, entries))
    return actions


def _persist(
    obs: StorageObserved,
    cfg: StorageConfig,
    target: _Target | None,
    spec: MountSpec | None,
) -> list[StorageAction]:
    """Our ARRAY line in mdadm.conf and our fstab line: set, replaced, or removed."""
    actions: list[StorageAction] = []
    arrays: tuple[ArraySpec, ...] = ()
    if (
        target
        and target.array_uuid
        and not mdadm.listed_by_admin(obs.mdadm_conf, target.array_uuid)
    ):
        stored = target.stored_name or f"any:{cfg.array_name}"
        name = stored.rsplit(":", 1)[-1]
        arrays = (ArraySpec(name, target.array_uuid, stored),)
    have = mdadm.owned_lines(obs.mdadm_conf)
    want = [mdadm.array_line(a) for a in arrays]
    if have != want:
        stale = tuple(line for line in have if line not in want)
        actions.append(WriteMdadmConf(obs.mdadm_conf_path, arrays, stale))
    if spec is None and target is not None:
        return actions  # keep our fstab line while the filesystem is not known
    if spec is not None and _admin_mounts(obs, spec):
        spec = None
    have = fstab.owned_lines(obs.fstab)
    want = [fstab.fstab_line(spec)] if spec else []
    if have != want:
        stale = tuple(line for line in have if line not in want)
        actions.append(WriteFstabEntry(FSTAB, spec, stale))
    return actions


def _admin_mounts(obs: StorageObserved, spec: MountSpec) -> bool:
    """An admin's own fstab line already mounts our filesystem there; refuse any other."""
    lines = fstab.foreign_mounts_at(obs.fstab, spec.mount_point)
    if not lines:
        return False
    if all(f"UUID={spec.fs_uuid}".lower() == line.split()[0].lower() for line in lines):
        return True
    raise StoragePlanError(
        f"/etc/fstab already mounts something else at {spec.mount_point} ({lines[0]!r}); "
        "remove that line or set storage.mount_point"
    )


def _mount(
    obs: StorageObserved,
    cfg: StorageConfig,
    target: _Target,
    spec: MountSpec | None,
    owner: tuple[int, int, int],
) -> list[StorageAction]:
    """Mount it now, and give the mount point libvirt's owner and mode."""
    if spec is None:
        return []
    actions: list[StorageAction] = []
    if obs.mount.dev is None:
        # Unmounted, the owner and mode seen are those of the directory underneath, which
        # say nothing of the filesystem's root: set them once it is mounted. (A run killed
        # between its mount and its chmod left the root 0755 to every later run otherwise.)
        actions.append(Mount(cfg.mount_point, target.device))
    if target.fresh or obs.mount.dev is None or obs.mount.owner != owner:
        actions.append(SetMountPointMode(cfg.mount_point, *owner))
    return actions
