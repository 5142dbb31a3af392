"""Carrying out the storage step's actions. Every write to a drive re-checks it first.

Files go through ctx.files (atomic, rooted); sysfs and /proc are read under the roots in
`HostPaths` so that tests can point them at a captured tree.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cockpit_agent.engine import Ctx
from cockpit_agent.errors import AgentError, CommandFailed, UnsafeDevice
from cockpit_agent.facts.disks import classify, listed, read_disks
from cockpit_agent.render import fstab, mdadm
from cockpit_agent.state import now
from cockpit_agent.steps.storage_actions import (
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
)

FS_KEYS = ("fs_uuid", "fstype", "fs_device")
BLKID_NOTHING = 2  # blkid -p: no signature found
MDADM_TIMEOUT = 120.0
SETTLE_TIMEOUT = 30
MKFS_TIMEOUT = 900.0  # mkfs without discard is quick, but a 30 TB ext4 writes many tables


@dataclass(frozen=True)
class HostPaths:
    """Where sysfs, /proc and /dev are (the real ones unless a test says otherwise)."""

    sysfs: Path = Path("/sys")
    proc: Path = Path("/proc")
    dev: Path = Path("/dev")

    def node(self, device: str) -> Path:
        """Where `device` (a /dev path) is under this host's /dev."""
        return self.dev / Path(device).relative_to("/dev")

    def kernel_name(self, device: str) -> str:
        """/dev/md/<name> -> md127, following udev's symlink (which must exist: a missing
        one would be taken for a kernel name that is not there); /dev/mdN -> mdN."""
        if not device.startswith("/dev/md/"):
            return Path(device).name
        node = self.node(device)
        if not node.exists():
            raise AgentError(f"{device} does not exist (udev has not made it)")
        return Path(os.path.realpath(node)).name


def data(ctx: Ctx) -> dict[str, Any]:
    """The storage step's record in the state file: what it created and what was lost."""
    return ctx.step_data.setdefault("storage", {})


def recheck(ctx: Ctx, paths: Sequence[str], host: HostPaths) -> None:
    """Raise UnsafeDevice unless every drive in `paths` still passes every safety rule.

    Reads the drives afresh (sysfs, mounts, swaps, `blkid -p`, `wipefs`) right before the
    command that writes to them: facts gathered at the start of the run may be stale.
    """
    raws = read_disks(ctx.runner, sysfs=host.sysfs, proc=host.proc, probe_only=paths)
    for path in paths:
        found = [r for r in raws if listed(r, [path])]
        if not found:
            raise UnsafeDevice(f"{path} is gone; not touching it")
        disk = classify(found[0], ctx.config.storage)
        if not disk.eligible:
            why = "; ".join(f"{r.code} ({r.detail})" for r in disk.reasons)
            raise UnsafeDevice(f"{path} is no longer safe to use: {why}")


def _blank(ctx: Ctx, device: str) -> None:
    """Raise UnsafeDevice if blkid finds any signature on `device`."""
    result = ctx.runner.run(["blkid", "-p", "-o", "export", device], ok=(0, BLKID_NOTHING))
    if result.rc != BLKID_NOTHING:
        found = _signature_text(result.stdout)
        raise UnsafeDevice(
            f"{device} is not blank ({found}); not making a filesystem on it "
            f"(if its data is not needed: wipefs -a {device}, then run again)"
        )


def _signature_text(export: str) -> str:
    """TYPE and UUID from `blkid -o export`, for a message."""
    pairs = dict(line.partition("=")[::2] for line in export.splitlines() if "=" in line)
    return ", ".join(f"{k}={pairs[k]}" for k in ("TYPE", "UUID") if k in pairs) or "signature"


def _record_lost(action: RecordLost, ctx: Ctx, host: HostPaths) -> None:
    record = data(ctx)
    lost = record.setdefault("lost", [])
    lost.append({"kind": action.kind, "uuid": action.uuid, "noticed_at": now().isoformat()})
    key = "array_uuid" if action.kind == "array" else "fs_uuid"
    if record.get(key) == action.uuid:  # forget it as ours; the "lost" list keeps it
        for stale in ("array_uuid", "array_name", "level", "members", "created_at", *FS_KEYS):
            record.pop(stale, None)


def _settle(ctx: Ctx, host: HostPaths, device: str) -> None:
    """Wait for udev to make `device` (/dev/md/<name>), which it does a moment after mdadm
    returns: every later action names the array by that link."""
    if host.node(device).exists():
        return
    argv = ["udevadm", "settle", f"--exit-if-exists={device}", f"--timeout={SETTLE_TIMEOUT}"]
    ctx.runner.run(argv, ok=(0, 1), timeout=SETTLE_TIMEOUT + 10)
    if not host.node(device).exists():
        raise AgentError(f"{device} did not appear within {SETTLE_TIMEOUT} s of mdadm")


def _create_array(action: CreateArray, ctx: Ctx, host: HostPaths) -> None:
    recheck(ctx, action.devices, host)
    ctx.runner.run(action.argv(), timeout=MDADM_TIMEOUT, input="")
    _settle(ctx, host, action.path)
    data(ctx).update(
        array_uuid=action.uuid,
        array_name=action.name,
        level=f"raid{action.level}",
        members=list(action.devices),
        created_at=now().isoformat(),
    )


def _assemble(action: AssembleArray, ctx: Ctx, host: HostPaths) -> None:
    ctx.runner.run(action.argv(), timeout=MDADM_TIMEOUT, input="")
    _settle(ctx, host, f"/dev/md/{action.name}")


def _start(action: StartArray, ctx: Ctx, host: HostPaths) -> None:
    ctx.runner.run(action.argv(), timeout=MDADM_TIMEOUT, input="")


def _add_member(action: AddMember, ctx: Ctx, host: HostPaths) -> None:
    recheck(ctx, [action.device], host)
    ctx.runner.run(action.argv(), timeout=MDADM_TIMEOUT, input="")


def _make_filesystem(action: MakeFilesystem, ctx: Ctx, host: HostPaths) -> None:
    if action.whole_disk:
        recheck(ctx, [action.device], host)
    else:
        _blank(ctx, action.device)
    ctx.runner.run(action.argv(), timeout=MKFS_TIMEOUT, input="")
    data(ctx).update(fs_uuid=action.uuid, fstype=action.fstype, fs_device=action.device)


def _write_md_attr(host: HostPaths, array: str, name: str, value: str) -> None:
    """Write one md sysfs attribute of `array` (/dev/md/<name> or /dev/mdN)."""
    attr = host.sysfs / "block" / host.kernel_name(array) / "md" / name
    with attr.open("w") as fh:  # a sysfs attribute: written in place, never renamed over
        fh.write(f"{value}\n")


def _set_stripe_cache(action: SetStripeCache, ctx: Ctx, host: HostPaths) -> None:
    _write_md_attr(host, action.array, "stripe_cache_size", str(action.entries))


def _pause_sync(action: PauseInitialSync, ctx: Ctx, host: HostPaths) -> None:
    _write_md_attr(host, action.array, "sync_action", "frozen")


def _resume_sync(action: ResumeSync, ctx: Ctx, host: HostPaths) -> None:
    # "idle" on a frozen array clears the freeze; md restarts the build where it stopped.
    _write_md_attr(host, action.array, "sync_action", "idle")


def _write_rule(action: WriteStripeCacheRule, ctx: Ctx, host: HostPaths) -> None:
    ctx.files.write(action.path, mdadm.stripe_cache_rule(action.uuid, action.entries))


def _remove_rule(action: RemoveStripeCacheRule, ctx: Ctx, host: HostPaths) -> None:
    ctx.files.path(action.path).unlink(missing_ok=True)


def _write_mdadm_conf(action: WriteMdadmConf, ctx: Ctx, host: HostPaths) -> None:
    text = ctx.files.read(action.path) or ""
    ctx.files.write(action.path, mdadm.render_conf(text, action.arrays), _mode(ctx, action.path))


def _write_fstab(action: WriteFstabEntry, ctx: Ctx, host: HostPaths) -> None:
    text = ctx.files.read(action.path) or ""
    ctx.files.write(action.path, fstab.render_fstab(text, action.spec), _mode(ctx, action.path))
    if action.stale and ctx.files.exists("/run/systemd/system"):
        # systemd made a mount unit of the line replaced here, bound to a device that is gone:
        # reload, or it would unmount the new filesystem as soon as it is mounted. A first
        # line has no unit yet; a reload then costs seconds and gains nothing.
        ctx.runner.run(["systemctl", "daemon-reload"], timeout=120)


def _mount(action: Mount, ctx: Ctx, host: HostPaths) -> None:
    ctx.files.path(action.mount_point).mkdir(mode=0o711, parents=True, exist_ok=True)
    if ctx.files.exists("/run/systemd/system"):
        # The fstab mount unit is bound to the filesystem's by-uuid device unit: mounted
        # before udev has seen the new filesystem, systemd would unmount it straight away.
        ctx.runner.run(["udevadm", "settle", "--timeout=60"], ok=(0, 1), timeout=90)
    if read_mount(host.proc, action.mount_point) is not None:
        return  # systemd's own job for the fstab line got there first (after a reload)
    try:
        ctx.runner.run(action.argv(), timeout=120)
    except CommandFailed:
        if read_mount(host.proc, action.mount_point) is None:
            raise  # not a race with systemd: a real failure


def read_mount(proc: Path, mount_point: str) -> tuple[str, str] | None:
    """(major:minor, source) of what is mounted at `mount_point` now, from mountinfo."""
    try:
        lines = (proc / "self" / "mountinfo").read_text().splitlines()
    except OSError:
        return None
    found = None
    for line in lines:
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) >= 5 and len(tail) >= 2 and fstab.unescape(fields[4]) == mount_point:
            found = (fields[2], fstab.unescape(tail[1]))  # the last mount on top wins
    return found


def _set_mode(action: SetMountPointMode, ctx: Ctx, host: HostPaths) -> None:
    path = ctx.files.path(action.mount_point)
    os.chown(path, action.uid, action.gid)
    os.chmod(path, action.mode)
    if ctx.files.exists("/sys/fs/selinux/enforce"):
        ctx.runner.run(["restorecon", action.mount_point], timeout=60)


def _mode(ctx: Ctx, host_path: str) -> int:
    """Keep an existing file's mode; new files get 0644."""
    try:
        return ctx.files.path(host_path).stat().st_mode & 0o7777
    except FileNotFoundError:
        return 0o644


APPLY: dict[type[Any], Callable[[Any, Ctx, HostPaths], None]] = {
    RecordLost: _record_lost,
    CreateArray: _create_array,
    AssembleArray: _assemble,
    StartArray: _start,
    AddMember: _add_member,
    PauseInitialSync: _pause_sync,
    ResumeSync: _resume_sync,
    MakeFilesystem: _make_filesystem,
    SetStripeCache: _set_stripe_cache,
    WriteStripeCacheRule: _write_rule,
    RemoveStripeCacheRule: _remove_rule,
    WriteMdadmConf: _write_mdadm_conf,
    WriteFstabEntry: _write_fstab,
    Mount: _mount,
    SetMountPointMode: _set_mode,
}


def apply_action(action: StorageAction, ctx: Ctx, host: HostPaths) -> None:
    """Carry out one action."""
    APPLY[type(action)](action, ctx, host)
