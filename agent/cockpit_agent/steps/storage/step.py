"""The storage step: a RAID array from unused NVMe drives, its filesystem, a persistent mount.

observe (observed.py) reads facts, the files the step owns lines in, and mountinfo; plan
(plan.py) decides; apply (apply.py) acts, re-checking every drive right before writing to it;
verify (here) re-reads the live host. See docs/storage.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from cockpit_agent.config import Config, StorageConfig
from cockpit_agent.engine import Ctx, Finding
from cockpit_agent.facts.md import MdArray, read_arrays
from cockpit_agent.host import mounts
from cockpit_agent.host.sysfs import HostPaths
from cockpit_agent.steps.storage.actions import StorageAction, level_name
from cockpit_agent.steps.storage.observed import (
    FSTAB,
    LEVEL_MIN,
    FsProbe,
    StorageObserved,
    choose_layout,
    excluded,
    find_ours,
    known_resources,
    level_number,
    mdadm_conf_path,
    observe,
    probe_filesystem,
)
from cockpit_agent.steps.storage.plan import MOUNT_POINT_OWNER, new_uuid4, plan_storage

# What status and check say wherever they name the mounted array: the VM disks on it are not
# kept (docs/backup.md).
EPHEMERAL = " (instance store: a stop/start or host failure erases what is on it)"


@dataclass
class StorageStep:
    """RAID from unused NVMe drives, the filesystem on it, and its mount."""

    name: str = "storage"
    depends_on: tuple[str, ...] = ()
    host: HostPaths = field(default_factory=HostPaths)
    new_uuid: Callable[[], str] = new_uuid4
    mount_owner: tuple[int, int, int] = MOUNT_POINT_OWNER
    boot_mount_wait: float = 90.0  # > the fstab line's device timeout (60 s)

    def enabled(self, config: Config) -> bool:
        """storage.enabled."""
        return config.storage.enabled

    def observe(self, ctx: Ctx) -> StorageObserved:
        """See observed.observe."""
        return observe(ctx, self.host, self.boot_mount_wait)

    def plan(self, observed: StorageObserved, ctx: Ctx) -> list[StorageAction]:
        """See plan.plan_storage."""
        return plan_storage(observed, self.new_uuid, self.mount_owner)

    def apply(self, action: StorageAction, ctx: Ctx) -> None:
        """See apply.py."""
        from cockpit_agent.steps.storage.apply import apply_action  # noqa: PLC0415 - check never applies

        apply_action(action, ctx, self.host)

    def verify(self, ctx: Ctx, observed: StorageObserved | None = None) -> list[Finding]:
        """Our array's health, and our filesystem at its mount point: re-read from the live
        host, or judged from `observed`."""
        cfg: StorageConfig = ctx.config.storage
        if observed is None:
            conf = ctx.files.read(mdadm_conf_path(ctx.facts.platform, ctx.files)) or ""
            fstab_text = ctx.files.read(FSTAB) or ""
            known = known_resources(ctx.step_data.get(self.name, {}), conf, fstab_text)
            arrays = tuple(read_arrays(ctx.runner, sysfs=self.host.sysfs))
            mount = mounts.mount_at(cfg.mount_point, self.host.proc)
            mounted = (mount.dev, mount.source) if mount else None
            probed = None
        else:
            known, arrays = observed.known, observed.arrays
            seen = observed.mount
            mounted = (seen.dev, seen.source) if seen.dev else None
            # observe probed our array; that is the mounted device when the numbers match
            same = observed.ours is not None and observed.ours.dev == seen.dev
            probed = observed.filesystem if same else None
        ours = find_ours(arrays, known.array_uuids, cfg.array_name)
        findings = array_findings(ours) if ours else []
        if known.fs_uuid:
            findings += _mount_findings(ctx, cfg, known.fs_uuid, mounted, probed)
        elif ours is None:
            findings += _nothing_built(ctx, cfg)
        return findings

    def summarize(self, observed: StorageObserved) -> str:
        """One line: the array (or what would be built) and the drives left out, with why."""
        return summarize(observed)


def _mount_findings(
    ctx: Ctx,
    cfg: StorageConfig,
    fs_uuid: str,
    mounted: tuple[str, str] | None,
    probed: FsProbe | None,
) -> list[Finding]:
    if mounted is None:
        return [
            Finding(
                "critical",
                "storage-not-mounted",
                f"filesystem {fs_uuid} is not mounted at {cfg.mount_point}",
            )
        ]
    fs = probed or probe_filesystem(ctx.runner, mounted[1])
    if fs.uuid != fs_uuid:
        return [
            Finding(
                "critical",
                "storage-wrong-mount",
                f"{cfg.mount_point} has {mounted[1]} (UUID {fs.uuid or '?'}) mounted, "
                f"not filesystem {fs_uuid}",
            )
        ]
    return [
        Finding("ok", "storage-mounted", f"{mounted[1]} mounted at {cfg.mount_point}{EPHEMERAL}")
    ]


def array_findings(array: MdArray) -> list[Finding]:
    """CRITICAL when our array is inactive or degraded with nothing rebuilding; WARNING while
    it rebuilds (a new RAID5 builds its parity that way too); OK otherwise."""
    level = level_number(array.level)
    what = f"{level_name(level) if level is not None else 'array'} {array.name} ({array.path})"
    if not array.active:
        return [
            Finding(
                "critical",
                "storage-array-inactive",
                f"{what} is not running; `mdadm --detail {array.path}` shows why",
            )
        ]
    if array.missing:
        return [
            Finding(
                "critical",
                "storage-degraded",
                f"{what} is degraded: {array.missing} of {array.raid_disks} member(s) "
                "missing; see docs/storage.md, drive failure",
            )
        ]
    if array.degraded:
        onto = ", ".join(m.name for m in array.rebuilding)
        return [
            Finding(
                "warning",
                "storage-rebuilding",
                f"{what} is not redundant yet: rebuilding onto {onto} "
                f"({array.progress or 'starting'})",
            )
        ]
    sync = f", {array.sync_action} {array.progress}" if array.progress else ""
    return [Finding("ok", "storage-array", f"{what} is {array.state}{sync}")]


def _nothing_built(ctx: Ctx, cfg: StorageConfig) -> list[Finding]:
    """Nothing of ours exists: fine unless eligible drives wait to be used."""
    eligible = [d for d in ctx.facts.disks if d.eligible]
    if choose_layout(eligible, cfg) is not None:
        names = ", ".join(d.name for d in eligible)
        return [
            Finding(
                "warning",
                "storage-not-built",
                f"eligible drives {names} are not in an array yet; run reconcile",
            )
        ]
    return [Finding("ok", "storage-none", "no data array: no drive to build one from")]


# --- the summary line -------------------------------------------------------------------


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
    where = f"mounted at {cfg.mount_point}{EPHEMERAL}" if mounted else "not mounted"
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
