"""The storage step: a RAID array from unused NVMe drives, its filesystem, a persistent mount.

observe (here) reads facts, the files the step owns lines in, and mountinfo; plan
(storage_plan.py) decides; apply (storage_apply.py) acts, re-checking every drive right
before writing to it; verify (here) re-reads the live host. See docs/storage.md.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cockpit_agent.config import Config, StorageConfig
from cockpit_agent.engine import Ctx, Finding
from cockpit_agent.facts.md import MdArray, normalize_uuid, parse_export, read_arrays
from cockpit_agent.facts.platform import Platform
from cockpit_agent.host.files import Files
from cockpit_agent.host.run import Runner
from cockpit_agent.render import fstab, mdadm
from cockpit_agent.steps.storage_actions import StorageAction, level_name
from cockpit_agent.steps.storage_apply import BLKID_NOTHING, HostPaths, apply_action, read_mount
from cockpit_agent.steps.storage_observed import (
    FsProbe,
    Known,
    MountState,
    StorageObserved,
    choose_layout,
    find_ours,
    level_number,
    summarize,
)
from cockpit_agent.steps.storage_plan import (
    FSTAB,
    MOUNT_POINT_OWNER,
    RULE_PATH,
    new_uuid4,
    plan_storage,
)

DEBIAN_MDADM_CONF = "/etc/mdadm/mdadm.conf"
RHEL_MDADM_CONF = "/etc/mdadm.conf"
MDADM_CONF = {"debian": DEBIAN_MDADM_CONF, "rhel": RHEL_MDADM_CONF, "amazon": RHEL_MDADM_CONF}


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
    result = runner.run(["blkid", "-p", "-o", "export", device], ok=(0, BLKID_NOTHING))
    found = parse_export(result.stdout) if result.rc == 0 else {}
    return FsProbe(found.get("TYPE", ""), found.get("UUID", ""), found.get("USAGE", ""))


def await_boot_mount(
    ctx: Ctx, host: HostPaths, mount_point: str, fs_uuid: str, wait: float
) -> None:
    """Let systemd finish mounting our filesystem from fstab before observing the mount.

    `nofail` mounts are not ordered before local-fs.target, so at boot the agent can start
    while systemd's own mount job is still queued. Waits (at most `wait` seconds) only while
    the filesystem's device exists, it is not mounted yet, and systemd has a job for it.
    """
    device = host.dev / "disk" / "by-uuid" / fs_uuid
    if read_mount(host.proc, mount_point) is not None:
        return
    if not ctx.files.exists("/run/systemd/system") or not device.exists():
        return
    escape = ["systemd-escape", "--path", "--suffix=mount", mount_point]
    unit = ctx.runner.run(escape, timeout=10).stdout.strip()
    deadline = time.monotonic() + wait
    while read_mount(host.proc, mount_point) is None and time.monotonic() < deadline:
        jobs = ctx.runner.run(["systemctl", "list-jobs", "--no-legend", "--plain"], timeout=10)
        if not any(line.split()[1:2] == [unit] for line in jobs.stdout.splitlines()):
            return
        time.sleep(0.5)


def mount_state(proc: Path, files: Files, mount_point: str) -> MountState:
    """What is mounted at the mount point, its owner and mode, and what lies under it."""
    mounted = read_mount(proc, mount_point)
    path = files.path(mount_point)
    try:
        st = path.stat()
        owner: tuple[int, int, int] | None = (st.st_uid, st.st_gid, st.st_mode & 0o7777)
    except OSError:
        owner = None
    entries: tuple[str, ...] = ()
    if mounted is None and path.is_dir():
        entries = tuple(sorted(os.listdir(path)))
    dev, source = mounted if mounted else (None, "")
    return MountState(dev=dev, source=source, owner=owner, entries=entries)


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
        """Facts (disks, arrays), our lines in mdadm.conf and fstab, the rule, the mount."""
        cfg: StorageConfig = ctx.config.storage
        conf_path = mdadm_conf_path(ctx.facts.platform, ctx.files)
        conf = ctx.files.read(conf_path) or ""
        fstab_text = ctx.files.read(FSTAB) or ""
        known = known_resources(ctx.step_data.get(self.name, {}), conf, fstab_text)
        if known.fs_uuid:
            await_boot_mount(ctx, self.host, cfg.mount_point, known.fs_uuid, self.boot_mount_wait)
        observed = StorageObserved(
            disks=tuple(ctx.facts.disks),
            arrays=tuple(ctx.facts.arrays),
            known=known,
            filesystem=None,
            mdadm_conf_path=conf_path,
            mdadm_conf=conf,
            fstab=fstab_text,
            rule=ctx.files.read(RULE_PATH),
            mount=mount_state(self.host.proc, ctx.files, cfg.mount_point),
            config=cfg,
        )
        device = _probe_target(observed)
        if device is None:
            return observed
        return replace(observed, filesystem=probe_filesystem(ctx.runner, device))

    def plan(self, observed: StorageObserved, ctx: Ctx) -> list[StorageAction]:
        """See storage_plan.plan_storage."""
        return plan_storage(observed, self.new_uuid, self.mount_owner)

    def apply(self, action: StorageAction, ctx: Ctx) -> None:
        """See storage_apply."""
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
            mounted = read_mount(self.host.proc, cfg.mount_point)
            probed = None
        else:
            known, arrays = observed.known, observed.arrays
            mount = observed.mount
            mounted = (mount.dev, mount.source) if mount.dev else None
            # observe probed our array; that is the mounted device when the numbers match
            same = observed.ours is not None and observed.ours.dev == mount.dev
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
    return [Finding("ok", "storage-mounted", f"{mounted[1]} mounted at {cfg.mount_point}")]


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


def _probe_target(obs: StorageObserved) -> str | None:
    """The device whose filesystem matters: our running array, else our plain drive."""
    ours = obs.ours
    if ours is not None:
        return ours.path if ours.active else None
    return obs.plain.path if obs.plain else None
