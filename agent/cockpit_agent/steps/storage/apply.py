"""Carrying out the storage step's actions. Every write to a drive re-checks it first.

Files go through ctx.files (atomic, rooted); sysfs, /proc and /dev are read under the roots in
`HostPaths` so that tests can point them at a captured tree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, assert_never

from cockpit_agent.engine import Ctx
from cockpit_agent.errors import AgentError, CommandFailed, UnsafeDevice
from cockpit_agent.facts.disks import classify, listed, read_disks
from cockpit_agent.host import block, mounts, systemd
from cockpit_agent.host.sysfs import HostPaths, write_attr
from cockpit_agent.render import fstab, mdadm
from cockpit_agent.state import now
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
)

FS_KEYS = ("fs_uuid", "fstype", "fs_device")
MDADM_TIMEOUT = 120.0
SETTLE_TIMEOUT = 30
MKFS_TIMEOUT = 900.0  # mkfs without discard is quick, but a 30 TB ext4 writes many tables
SELINUX_ENFORCE = "/sys/fs/selinux/enforce"


def apply_action(action: StorageAction, ctx: Ctx, host: HostPaths) -> None:
    """Carry out one action."""
    match action:
        case RecordLost():
            _record_lost(action, ctx)
        case CreateArray():
            _create_array(action, ctx, host)
        case AssembleArray():
            ctx.runner.run(action.argv(), timeout=MDADM_TIMEOUT, input="")
            _settle(ctx, host, f"/dev/md/{action.name}")
        case StartArray():
            ctx.runner.run(action.argv(), timeout=MDADM_TIMEOUT, input="")
        case AddMember():
            recheck(ctx, [action.device], host)
            ctx.runner.run(action.argv(), timeout=MDADM_TIMEOUT, input="")
        case PauseInitialSync():
            _write_md_attr(host, action.array, "sync_action", "frozen")
        case ResumeSync():
            # "idle" on a frozen array clears the freeze; md restarts the build where it stopped.
            _write_md_attr(host, action.array, "sync_action", "idle")
        case MakeFilesystem():
            _make_filesystem(action, ctx, host)
        case SetStripeCache():
            _write_md_attr(host, action.array, "stripe_cache_size", str(action.entries))
        case WriteStripeCacheRule():
            ctx.files.write(action.path, mdadm.stripe_cache_rule(action.uuid, action.entries))
        case RemoveStripeCacheRule():
            ctx.files.remove(action.path)
        case WriteMdadmConf():
            text = mdadm.render_conf(ctx.files.read(action.path) or "", action.arrays)
            ctx.files.write(action.path, text, _mode(ctx, action.path))
        case WriteFstabEntry():
            _write_fstab(action, ctx)
        case Mount():
            _mount(action, ctx, host)
        case SetMountPointMode():
            _set_mode(action, ctx)
        case _:
            assert_never(action)


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
    probe = block.blkid(ctx.runner, device)
    if not probe.blank:
        raise UnsafeDevice(
            f"{device} is not blank ({probe.describe()}); not making a filesystem on it "
            f"(if its data is not needed: wipefs -a {device}, then run again)"
        )


def _record_lost(action: RecordLost, ctx: Ctx) -> None:
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
    if host.has_node(device):
        return
    argv = ["udevadm", "settle", f"--exit-if-exists={device}", f"--timeout={SETTLE_TIMEOUT}"]
    ctx.runner.run(argv, ok=(0, 1), timeout=SETTLE_TIMEOUT + 10)
    if not host.has_node(device):
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


def _make_filesystem(action: MakeFilesystem, ctx: Ctx, host: HostPaths) -> None:
    if action.whole_disk:
        recheck(ctx, [action.device], host)
    else:
        _blank(ctx, action.device)
    ctx.runner.run(action.argv(), timeout=MKFS_TIMEOUT, input="")
    data(ctx).update(fs_uuid=action.uuid, fstype=action.fstype, fs_device=action.device)


def _write_md_attr(host: HostPaths, array: str, name: str, value: str) -> None:
    """Write one md sysfs attribute of `array` (/dev/md/<name> or /dev/mdN)."""
    write_attr(host.sysfs / "block" / host.kernel_name(array) / "md" / name, value)


def _write_fstab(action: WriteFstabEntry, ctx: Ctx) -> None:
    text = ctx.files.read(action.path) or ""
    ctx.files.write(action.path, fstab.render_fstab(text, action.spec), _mode(ctx, action.path))
    if action.stale and systemd.running(ctx.files):
        # systemd made a mount unit of the line replaced here, bound to a device that is gone:
        # reload, or it would unmount the new filesystem as soon as it is mounted. A first
        # line has no unit yet; a reload then costs seconds and gains nothing.
        systemd.daemon_reload(ctx.runner, timeout=120)


def _mount(action: Mount, ctx: Ctx, host: HostPaths) -> None:
    ctx.files.mkdir(action.mount_point, mode=0o711)
    if systemd.running(ctx.files):
        # The fstab mount unit is bound to the filesystem's by-uuid device unit: mounted
        # before udev has seen the new filesystem, systemd would unmount it straight away.
        ctx.runner.run(["udevadm", "settle", "--timeout=60"], ok=(0, 1), timeout=90)
    if mounts.mount_at(action.mount_point, host.proc) is not None:
        return  # systemd's own job for the fstab line got there first (after a reload)
    try:
        ctx.runner.run(action.argv(), timeout=120)
    except CommandFailed:
        if mounts.mount_at(action.mount_point, host.proc) is None:
            raise  # not a race with systemd: a real failure


def _set_mode(action: SetMountPointMode, ctx: Ctx) -> None:
    ctx.files.set_owner(action.mount_point, action.uid, action.gid, action.mode)
    if ctx.files.exists(SELINUX_ENFORCE):
        ctx.runner.run(["restorecon", action.mount_point], timeout=60)


def _mode(ctx: Ctx, host_path: str) -> int:
    """Keep an existing file's mode; new files get 0644."""
    mode = ctx.files.mode(host_path)
    return 0o644 if mode is None else mode
