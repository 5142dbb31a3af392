"""Applying the storage step's actions (re-checks before every write to a drive), verify(),
and whole runs through the engine: fresh host, converged host, failures that touch nothing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cockpit_agent.config import EC2_INSTANCE_STORE_MODEL
from cockpit_agent.engine import Engine
from cockpit_agent.errors import AgentError, CommandFailed, UnsafeDevice
from cockpit_agent.host.run import Result
from cockpit_agent.host.sysfs import HostPaths
from cockpit_agent.render import fstab, mdadm
from cockpit_agent.render.fstab import MountSpec
from cockpit_agent.steps.storage.actions import (
    AddMember,
    AssembleArray,
    CreateArray,
    MakeFilesystem,
    Mount,
    PauseInitialSync,
    RemoveStripeCacheRule,
    ResumeSync,
    SetMountPointMode,
    SetStripeCache,
    StartArray,
    WriteFstabEntry,
    WriteMdadmConf,
)
from tests.fakes import FakeRunner
from tests.helpers.storage import (
    CONF,
    FS_UUID,
    MP,
    NEW,
    OUR_SPEC,
    ROOT,
    STORAGE,
    UUID,
    XFS_PROBE,
    World,
    clean,
)

OUTPOST = Path(__file__).resolve().parent.parent / "fixtures" / "disks" / "outpost"
DEVICES = ("/dev/nvme1n1", "/dev/nvme2n1", "/dev/nvme3n1")


def fake_sysfs(root: Path, names: list[str], size: int = 100 * 1024**3) -> Path:
    """A sysfs with clean instance-store namespaces and md127, laid out like the kernel's."""
    sysfs = root / "sys"
    for i, name in enumerate(names):
        ctrl = sysfs / "devices" / "pci0000:00" / f"0000:00:1{i}.0" / "nvme" / name[:-2]
        (ctrl / name).mkdir(parents=True)
        (ctrl / "model").write_text(EC2_INSTANCE_STORE_MODEL + "\n")
        (ctrl / name / "dev").write_text(f"259:{i + 1}\n")
        (ctrl / name / "size").write_text(f"{size // 512}\n")
        (sysfs / "class" / "block").mkdir(parents=True, exist_ok=True)
        (sysfs / "class" / "block" / name).symlink_to(ctrl / name)
    md = sysfs / "block" / "md127" / "md"
    md.mkdir(parents=True)
    (md.parent / "dev").write_text("9:127\n")
    attrs = {"stripe_cache_size": "256", "array_state": "clean", "level": "raid5", "degraded": "0",
             "sync_action": "recover"}  # fmt: skip
    for attr, value in attrs.items():
        (md / attr).write_text(value + "\n")
    return sysfs


@dataclass
class MountingRunner(FakeRunner):
    """A FakeRunner whose `mount` shows up in the world's mountinfo, as the kernel's would."""

    mountinfo: Path = Path("/nonexistent")

    def run(self, argv: Sequence[str], **kwargs: Any) -> Result:
        result = super().run(argv, **kwargs)
        if argv[0] == "mount":
            line = f"209 27 9:127 / {argv[1]} rw - xfs /dev/md127 rw\n"
            self.mountinfo.write_text(self.mountinfo.read_text() + line)
        return result


def script_probes(world: World, *paths: str) -> None:
    """blkid and wipefs find nothing on `paths`: the re-check before a write passes."""
    for path in paths:
        world.runner.expect("blkid", "-p", "-o", "export", path, rc=2)
        world.runner.expect("wipefs", "--json", "--no-act", path, stdout="")


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def md_link(world: World) -> None:
    """/dev/md127 and udev's /dev/md/cockpit-data link to it, under the world's /dev."""
    (world.tmp / "dev" / "md").mkdir(parents=True, exist_ok=True)
    (world.tmp / "dev" / "md127").touch()
    (world.tmp / "dev" / "md" / "cockpit-data").symlink_to("../md127")


@dataclass
class UdevRunner(FakeRunner):
    """A FakeRunner after whose `mdadm --create` or `--assemble` the /dev/md/ link appears
    only once `udevadm settle` has run: udev's moment of delay, made certain."""

    world: World | None = None

    def run(self, argv: Sequence[str], **kwargs: Any) -> Result:
        result = super().run(argv, **kwargs)
        if argv[:2] == ["udevadm", "settle"] and self.world is not None:
            md_link(self.world)
        return result


SETTLE = ("udevadm", "settle", "--exit-if-exists=/dev/md/cockpit-data", "--timeout=30")


def host(world: World, sysfs: Path | None = None) -> HostPaths:
    (world.proc / "swaps").write_text("Filename Type Size Used Priority\n")
    return HostPaths(sysfs=sysfs or world.sysfs, proc=world.proc, dev=world.tmp / "dev")


# --- the re-check before writing to a drive -------------------------------------------------

CREATE = CreateArray("cockpit-data", 5, DEVICES, 256, "internal", UUID)


def test_create_rechecks_every_drive_then_runs_mdadm_and_waits_for_udevs_link(
    world: World,
) -> None:
    world.runner = UdevRunner(world=world)
    sysfs = fake_sysfs(world.tmp, ["nvme1n1", "nvme2n1", "nvme3n1"])
    script_probes(world, *DEVICES)
    world.runner.expect(*CREATE.argv(), stderr="mdadm: array /dev/md/cockpit-data started.")
    world.runner.expect(*SETTLE)
    step, ctx = world.step(), world.ctx()
    step.host = host(world, sysfs)
    step.apply(CREATE, ctx)
    assert world.runner.calls[-2:] == [tuple(CREATE.argv()), SETTLE]
    # The next action names the array by the link, which is there now.
    step.apply(PauseInitialSync("/dev/md/cockpit-data"), ctx)
    assert (sysfs / "block" / "md127" / "md" / "sync_action").read_text() == "frozen\n"
    record = ctx.step_data["storage"]
    assert (record["array_uuid"], record["level"], record["members"]) == (
        UUID,
        "raid5",
        list(DEVICES),
    )


def test_create_stops_when_a_drive_got_a_signature_since_the_facts(world: World) -> None:
    sysfs = fake_sysfs(world.tmp, ["nvme1n1", "nvme2n1", "nvme3n1"])
    script_probes(world, "/dev/nvme1n1", "/dev/nvme3n1")
    world.runner.expect(
        "blkid", "-p", "-o", "export", "/dev/nvme2n1", stdout="TYPE=xfs\nUUID=5f1c\n"
    )
    world.runner.expect("wipefs", "--json", "--no-act", "/dev/nvme2n1",
                        stdout='{"signatures": [{"type": "xfs"}]}')  # fmt: skip
    step, ctx = world.step(), world.ctx()
    step.host = host(world, sysfs)
    with pytest.raises(UnsafeDevice, match=r"/dev/nvme2n1 is no longer safe to use: signature"):
        step.apply(CREATE, ctx)
    assert not any(c[0] == "mdadm" for c in world.runner.calls)
    assert "storage" not in ctx.step_data


def test_create_stops_on_a_drive_mounted_since_the_facts(world: World) -> None:
    """The outpost fixture's nvme2n1 is mounted at "/mnt/scratch space"."""
    script_probes(world, "/dev/nvme1n1", "/dev/nvme2n1")
    step, ctx = world.step(), world.ctx()
    step.host = HostPaths(sysfs=OUTPOST / "sys", proc=OUTPOST / "proc")
    action = CreateArray("cockpit-data", 1, ("/dev/nvme1n1", "/dev/nvme2n1"), 256, "internal", UUID)
    with pytest.raises(UnsafeDevice, match="mounted"):
        step.apply(action, ctx)
    assert not any(c[0] == "mdadm" for c in world.runner.calls)


def test_create_stops_when_a_drive_is_gone(world: World) -> None:
    sysfs = fake_sysfs(world.tmp, ["nvme1n1", "nvme2n1"])
    script_probes(world, "/dev/nvme1n1", "/dev/nvme2n1")
    step, ctx = world.step(), world.ctx()
    step.host = host(world, sysfs)
    with pytest.raises(UnsafeDevice, match="/dev/nvme3n1 is gone"):
        step.apply(CREATE, ctx)


def test_add_member_rechecks_the_new_drive(world: World) -> None:
    sysfs = fake_sysfs(world.tmp, ["nvme4n1"])
    script_probes(world, "/dev/nvme4n1")
    add = AddMember("/dev/md127", "/dev/nvme4n1")
    world.runner.expect(*add.argv())
    step, ctx = world.step(), world.ctx()
    step.host = host(world, sysfs)
    step.apply(add, ctx)
    assert world.runner.calls[-1] == ("mdadm", "--manage", "/dev/md127", "--add", "/dev/nvme4n1")


def test_mkfs_on_the_new_array_needs_it_blank(world: World) -> None:
    mkfs = MakeFilesystem("/dev/md/cockpit-data", "xfs", "cockpit-data", FS_UUID)
    world.runner.expect("blkid", "-p", "-o", "export", "/dev/md/cockpit-data", stdout=XFS_PROBE)
    step, ctx = world.step(), world.ctx()
    with pytest.raises(UnsafeDevice, match=f"not blank \\(TYPE=xfs, UUID={FS_UUID}\\)") as exc:
        step.apply(mkfs, ctx)
    assert "wipefs -a /dev/md/cockpit-data, then run again" in str(exc.value)
    world.runner.expect("blkid", "-p", "-o", "export", "/dev/md/cockpit-data", rc=2)
    world.runner.expect(*mkfs.argv())
    step.apply(mkfs, ctx)
    assert world.runner.calls[-1][0] == "mkfs.xfs"
    assert ctx.step_data["storage"]["fs_uuid"] == FS_UUID


def test_mkfs_on_a_plain_drive_rechecks_it(world: World) -> None:
    sysfs = fake_sysfs(world.tmp, ["nvme1n1"])
    script_probes(world, "/dev/nvme1n1")
    mkfs = MakeFilesystem("/dev/nvme1n1", "ext4", "data", FS_UUID, whole_disk=True)
    world.runner.expect(*mkfs.argv())
    step, ctx = world.step(), world.ctx()
    step.host = host(world, sysfs)
    step.apply(mkfs, ctx)
    assert world.runner.calls[-1] == tuple(mkfs.argv())


def test_assemble_and_start_run_mdadm(world: World) -> None:
    world.runner = UdevRunner(world=world)
    assemble, start = AssembleArray("cockpit-data", UUID, DEVICES), StartArray("/dev/md127")
    world.runner.expect(*assemble.argv())
    world.runner.expect(*start.argv())
    world.runner.expect(*SETTLE)
    step, ctx = world.step(), world.ctx()
    step.host = host(world)
    step.apply(assemble, ctx)
    step.apply(start, ctx)
    assert world.runner.calls == [tuple(assemble.argv()), SETTLE, tuple(start.argv())]


def test_a_link_udev_never_makes_fails_with_its_name_not_a_traceback(world: World) -> None:
    # The race of issue 14: before the fix, "cockpit-data" was taken for a kernel name and
    # the write went to /sys/block/cockpit-data/md/sync_action (FileNotFoundError).
    sysfs = fake_sysfs(world.tmp, ["nvme1n1", "nvme2n1", "nvme3n1"])
    script_probes(world, *DEVICES)
    world.runner.expect(*CREATE.argv())
    world.runner.expect(*SETTLE, rc=1)  # udev's queue did not empty in time
    step, ctx = world.step(), world.ctx()
    step.host = host(world, sysfs)
    with pytest.raises(AgentError, match=r"/dev/md/cockpit-data did not appear within 30 s"):
        step.apply(CREATE, ctx)
    with pytest.raises(AgentError, match=r"/dev/md/cockpit-data does not exist"):
        step.apply(PauseInitialSync("/dev/md/cockpit-data"), ctx)


# --- files, sysfs, mount --------------------------------------------------------------------


def test_stripe_cache_is_written_to_the_arrays_sysfs_through_its_dev_md_link(world: World) -> None:
    sysfs = fake_sysfs(world.tmp, [])
    md_link(world)
    step, ctx = world.step(), world.ctx()
    step.host = host(world, sysfs)
    step.apply(SetStripeCache("/dev/md/cockpit-data", 4096), ctx)
    assert (sysfs / "block" / "md127" / "md" / "stripe_cache_size").read_text() == "4096\n"


def test_initial_build_is_paused_then_resumed_through_sysfs(world: World) -> None:
    sysfs = fake_sysfs(world.tmp, [])
    attr = sysfs / "block" / "md127" / "md" / "sync_action"
    step, ctx = world.step(), world.ctx()
    step.host = host(world, sysfs)
    step.apply(PauseInitialSync("/dev/md127"), ctx)
    assert attr.read_text() == "frozen\n"
    step.apply(ResumeSync("/dev/md127"), ctx)
    assert attr.read_text() == "idle\n"


def test_mdadm_conf_write_keeps_the_admins_lines_and_the_files_mode(world: World) -> None:
    world.write(CONF, "MAILADDR ops@example.com\n")
    os.chmod(world.files.path(CONF), 0o600)
    step, ctx = world.step(), world.ctx()
    step.apply(WriteMdadmConf(CONF, (OUR_SPEC,)), ctx)
    assert world.files.read(CONF) == mdadm.render_conf("MAILADDR ops@example.com\n", [OUR_SPEC])
    assert world.files.path(CONF).stat().st_mode & 0o777 == 0o600


def test_fstab_write_reloads_systemd_only_when_it_replaces_a_line(world: World) -> None:
    spec = MountSpec(FS_UUID, MP, "xfs")
    step, ctx = world.step(), world.ctx()
    world.files.path("/run/systemd/system").mkdir(parents=True)
    step.apply(WriteFstabEntry("/etc/fstab", spec), ctx)  # a first line: no unit to reload
    assert world.runner.calls == []
    assert world.files.read("/etc/fstab") == fstab.render_fstab("", spec)
    world.runner.expect("systemctl", "daemon-reload")
    stale = tuple(fstab.owned_lines(world.files.read("/etc/fstab") or ""))
    step.apply(WriteFstabEntry("/etc/fstab", None, stale), ctx)
    assert world.runner.calls == [("systemctl", "daemon-reload")]
    assert world.files.read("/etc/fstab") == ""


def test_fstab_write_without_systemd_never_reloads(world: World) -> None:
    step, ctx = world.step(), world.ctx()
    step.apply(WriteFstabEntry("/etc/fstab", None, ("UUID=x /srv xfs defaults 0 0",)), ctx)
    assert world.runner.calls == []


def test_mount_makes_the_directory_then_mounts_from_fstab(world: World) -> None:
    world.runner.expect("mount", MP)
    step, ctx = world.step(), world.ctx()
    step.apply(Mount(MP, "/dev/md/cockpit-data"), ctx)
    assert world.files.path(MP).is_dir()
    assert world.runner.calls == [("mount", MP)]


def test_mount_is_skipped_when_systemd_mounted_it_first(world: World) -> None:
    world.mounted()
    step, ctx = world.step(), world.ctx()
    step.host = host(world)
    step.apply(Mount(MP, "/dev/md/cockpit-data"), ctx)
    assert world.runner.calls == []


@dataclass
class RacingRunner(FakeRunner):
    """`mount` fails because systemd mounted the filesystem a moment before."""

    mountinfo: Path = Path("/nonexistent")

    def run(self, argv: Sequence[str], **kwargs: Any) -> Result:
        if argv[0] == "mount":
            self.mountinfo.write_text(f"209 27 9:127 / {argv[1]} rw - xfs /dev/md127 rw\n")
        return super().run(argv, **kwargs)


def test_mount_losing_the_race_with_systemd_is_fine(world: World) -> None:
    world.runner = RacingRunner(mountinfo=world.proc / "self" / "mountinfo")
    world.runner.expect("mount", MP, rc=32, stderr="already mounted")
    step, ctx = world.step(), world.ctx()
    step.host = host(world)
    step.apply(Mount(MP, "/dev/md/cockpit-data"), ctx)
    assert world.runner.calls == [("mount", MP)]


def test_mount_failure_is_an_error(world: World) -> None:
    world.runner.expect("mount", MP, rc=32, stderr="wrong fs type")
    step, ctx = world.step(), world.ctx()
    step.host = host(world)
    with pytest.raises(CommandFailed, match="wrong fs type"):
        step.apply(Mount(MP, "/dev/md/cockpit-data"), ctx)


def test_mount_point_mode_and_selinux_label(world: World) -> None:
    world.files.path(MP).mkdir(parents=True)
    step, ctx = world.step(), world.ctx()
    action = SetMountPointMode(MP, os.getuid(), os.getgid(), 0o711)
    step.apply(action, ctx)
    assert world.files.path(MP).stat().st_mode & 0o7777 == 0o711
    assert world.runner.calls == []
    world.write("/sys/fs/selinux/enforce", "1\n")
    world.runner.expect("restorecon", MP)
    step.apply(action, ctx)
    assert world.runner.calls == [("restorecon", MP)]


def test_remove_rule(world: World) -> None:
    world.write("/etc/udev/rules.d/x.rules", "x")
    step, ctx = world.step(), world.ctx()
    step.apply(RemoveStripeCacheRule("/etc/udev/rules.d/x.rules"), ctx)
    step.apply(RemoveStripeCacheRule("/etc/udev/rules.d/x.rules"), ctx)  # already gone: fine
    assert not world.files.exists("/etc/udev/rules.d/x.rules")


# --- verify ---------------------------------------------------------------------------------

DETAIL = ("mdadm", "--detail", "--export", "/dev/md127")


def verify(world: World) -> list[tuple[str, str]]:
    detail = (
        "detail-inactive.export"
        if "inactive" in (world.array_tree or "")
        else "detail-raid5.export"
    )
    world.runner.expect(*DETAIL, stdout=(STORAGE / detail).read_text())
    step, ctx = world.step(), world.ctx()
    return [(f.severity, f.code) for f in step.verify(ctx)]


def test_verify_converged(world: World) -> None:
    world.converged_array()
    assert verify(world) == [("ok", "storage-array"), ("ok", "storage-mounted")]


def test_check_says_the_mounted_array_is_on_instance_store(world: World) -> None:
    world.converged_array()
    world.runner.expect(*DETAIL, stdout=(STORAGE / "detail-raid5.export").read_text())
    mounted = {f.code: f.message for f in world.step().verify(world.ctx())}["storage-mounted"]
    assert mounted.endswith("(instance store: a stop/start or host failure erases what is on it)")


def test_verify_judges_the_observation_without_reading_again(world: World) -> None:
    world.converged_array()
    step, ctx = world.step(), world.ctx()
    observed = step.observe(ctx)
    world.runner.calls.clear()
    findings = step.verify(ctx, observed)
    assert [(f.severity, f.code) for f in findings] == [
        ("ok", "storage-array"),
        ("ok", "storage-mounted"),
    ]
    assert world.runner.calls == []  # no mdadm, no blkid: observe has read them


def test_verify_of_an_observation_sees_a_foreign_mount(world: World) -> None:
    world.converged_array()
    world.mounted(dev="8:16", source="/dev/sdb")
    world.runner.expect("blkid", "-p", "-o", "export", "/dev/sdb", stdout="TYPE=ext4\nUUID=x\n")
    step, ctx = world.step(), world.ctx()
    findings = step.verify(ctx, step.observe(ctx))
    assert ("critical", "storage-wrong-mount") in [(f.severity, f.code) for f in findings]


def test_verify_degraded_is_critical(world: World) -> None:
    world.converged_array()
    world.array_tree = "raid5-degraded"
    assert verify(world)[0] == ("critical", "storage-degraded")


def test_verify_rebuilding_is_a_warning(world: World) -> None:
    world.converged_array()
    world.array_tree = "raid5-building"
    world.runner.expect(*DETAIL, stdout=(STORAGE / "detail-raid5.export").read_text())
    step, ctx = world.step(), world.ctx()
    [first, _] = step.verify(ctx)
    assert (first.severity, first.code) == ("warning", "storage-rebuilding")
    assert "rebuilding onto nvme3n1 (38.2%)" in first.message


def test_verify_inactive_is_critical(world: World) -> None:
    world.converged_array()
    world.array_tree = "raid5-inactive"
    world.mountinfo = []
    assert verify(world) == [
        ("critical", "storage-array-inactive"),
        ("critical", "storage-not-mounted"),
    ]


def test_verify_something_else_mounted_is_critical(world: World) -> None:
    world.converged_array()
    world.runner.expect(
        "blkid", "-p", "-o", "export", "/dev/md127", stdout="TYPE=xfs\nUUID=other\n"
    )
    assert verify(world)[1] == ("critical", "storage-wrong-mount")


def test_verify_with_eligible_drives_unused_warns(world: World) -> None:
    world.disks = [ROOT, *clean("nvme1n1", "nvme2n1", "nvme3n1")]
    world.array_tree = "absent"
    assert verify(world) == [("warning", "storage-not-built")]
    world.disks = [ROOT]
    assert verify(world) == [("ok", "storage-none")]


# --- whole runs through the engine ----------------------------------------------------------


def test_fresh_host_runs_every_command_in_order(world: World) -> None:
    world.runner = MountingRunner(mountinfo=world.proc / "self" / "mountinfo")
    world.disks = [ROOT, *clean("nvme1n1", "nvme2n1", "nvme3n1")]
    sysfs = fake_sysfs(world.tmp, ["nvme1n1", "nvme2n1", "nvme3n1"])
    md_link(world)
    script_probes(world, *DEVICES)
    commands = [
        CREATE.argv(),
        ["blkid", "-p", "-o", "export", "/dev/md/cockpit-data"],
        MakeFilesystem("/dev/md/cockpit-data", "xfs", "cockpit-data", NEW[1]).argv(),
        ["mount", MP],
    ]
    world.runner.expect(*commands[0])
    world.runner.expect(*commands[1], rc=2)
    world.runner.expect(*commands[2])
    world.runner.expect(*commands[3])
    world.runner.expect(*DETAIL, stdout=(STORAGE / "detail-raid5.export").read_text())
    world.runner.expect("blkid", "-p", "-o", "export", "/dev/md127", stdout=f"UUID={NEW[1]}\n")
    step, ctx = world.step(), world.ctx()
    step.host = host(world, sysfs)
    world.mountinfo = []
    run = Engine([step]).run(ctx)
    [record] = run.steps
    assert (record.status, record.error) == ("changed", None)
    assert len(record.actions) == 10
    assert [f.code for f in record.findings] == ["storage-array", "storage-mounted"]
    writes = ("mdadm", "mkfs.xfs", "mount")
    ran = [list(c) for c in world.runner.calls if c[0] in writes and "--detail" not in c]
    assert ran == [commands[0], commands[2], commands[3]]
    assert (sysfs / "block" / "md127" / "md" / "stripe_cache_size").read_text() == "4096\n"
    assert (sysfs / "block" / "md127" / "md" / "sync_action").read_text() == "idle\n"
    assert mdadm.owned_lines(world.files.read(CONF) or "") == [mdadm.array_line(OUR_SPEC)]
    assert ctx.step_data["storage"]["array_uuid"] == UUID


def test_converged_host_runs_with_zero_actions(world: World) -> None:
    world.converged_array()
    world.runner.expect(*DETAIL, stdout=(STORAGE / "detail-raid5.export").read_text())
    step, ctx = world.step(), world.ctx()
    run = Engine([step]).run(ctx)
    [record] = run.steps
    assert (record.status, record.planned, record.actions) == ("converged", [], [])
    assert not any(
        c[0] in ("mdadm", "mkfs.xfs", "mount") and c[1] != "--detail" for c in world.runner.calls
    )


def test_a_failed_recheck_fails_the_step_and_touches_nothing(world: World) -> None:
    world.disks = [ROOT, *clean("nvme1n1", "nvme2n1", "nvme3n1")]
    sysfs = fake_sysfs(world.tmp, ["nvme1n1", "nvme2n1", "nvme3n1"])
    script_probes(world, "/dev/nvme1n1", "/dev/nvme2n1")
    world.runner.expect("blkid", "-p", "-o", "export", "/dev/nvme3n1", stdout="TYPE=swap\n")
    world.runner.expect("wipefs", "--json", "--no-act", "/dev/nvme3n1", stdout="")
    step, ctx = world.step(), world.ctx()
    step.host = host(world, sysfs)
    run = Engine([step]).run(ctx)
    [record] = run.steps
    assert record.status == "failed"
    assert record.error is not None and "/dev/nvme3n1 is no longer safe" in record.error
    assert record.actions == []
    assert world.files.read(CONF) is None and world.files.read("/etc/fstab") is None
    assert not any(c[0] in ("mdadm", "mkfs.xfs", "mount") for c in world.runner.calls)


# --- waiting for systemd's own mount at boot ------------------------------------------------

ESCAPE = ("systemd-escape", "--path", "--suffix=mount", MP)
JOBS = ("systemctl", "list-jobs", "--no-legend", "--plain")
UNIT = "var-lib-libvirt-images.mount"


def booting(world: World) -> World:
    """Our array is up and in fstab, systemd runs, the mount has not happened yet."""
    world.converged_array()
    world.mountinfo = []
    world.files.path("/run/systemd/system").mkdir(parents=True)
    (world.tmp / "dev" / "disk" / "by-uuid").mkdir(parents=True)
    (world.tmp / "dev" / "disk" / "by-uuid" / FS_UUID).touch()
    world.runner.expect(*ESCAPE, stdout=UNIT + "\n")
    return world


def observe_with(world: World, wait: float) -> None:
    step, ctx = world.step(), world.ctx()
    step.host, step.boot_mount_wait = host(world), wait
    step.observe(ctx)


def test_observe_waits_while_systemd_has_a_job_for_the_mount(world: World) -> None:
    booting(world).runner.expect(*JOBS, stdout=f"1234 {UNIT} start waiting\n")
    started = time.monotonic()
    observe_with(world, 1.2)
    assert 1.2 <= time.monotonic() - started < 5
    assert world.runner.calls.count(JOBS) >= 2


def test_observe_does_not_wait_without_a_job(world: World) -> None:
    booting(world).runner.expect(*JOBS, stdout="77 other.service start running\n")
    started = time.monotonic()
    observe_with(world, 30)
    assert time.monotonic() - started < 5
    assert world.runner.calls.count(JOBS) == 1


def test_observe_does_not_wait_for_a_device_that_is_gone(world: World) -> None:
    booting(world)
    (world.tmp / "dev" / "disk" / "by-uuid" / FS_UUID).unlink()
    observe_with(world, 30)
    assert ESCAPE not in world.runner.calls and JOBS not in world.runner.calls
