"""The storage step's plans from fixture facts: fresh, reused, degraded, wiped, fallbacks, and
every hostile drive. `World` (tests/helpers/storage.py) builds one host: disks, arrays, files
under tmp_path, mountinfo.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest
from pydantic import ByteSize

from cockpit_agent.facts.disks import RawDisk
from cockpit_agent.host.files import Files
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
)
from cockpit_agent.steps.storage.observed import RULE_PATH, mdadm_conf_path
from cockpit_agent.steps.storage.plan import StoragePlanError
from tests.helpers.storage import (
    CONF,
    DEBIAN,
    FS_UUID,
    GIB,
    MP,
    NEW,
    OLD_FS,
    OLD_UUID,
    OUR_SPEC,
    ROOT,
    UUID,
    World,
    clean,
    md_disk,
    member,
    nvme,
)

HOSTILE: dict[str, RawDisk] = {
    "partitioned": nvme("nvme4n1", partitions=["nvme4n1p1"], signatures=["gpt"]),
    "xfs": nvme("nvme4n1", probe={"TYPE": "xfs", "UUID": "5f1c"}, signatures=["xfs"]),
    "lvm-pv": nvme("nvme4n1", probe={"TYPE": "LVM2_member"}, signatures=["LVM2_member"]),
    "swap": nvme("nvme4n1", swap=True, probe={"TYPE": "swap"}, signatures=["swap"]),
    "mounted": nvme("nvme4n1", mountpoints=["/mnt/scratch"]),
    "foreign-md": nvme(
        "nvme4n1",
        probe={
            "TYPE": "linux_raid_member",
            "UUID": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
            "LABEL": "otherhost:backup",
        },
        signatures=["linux_raid_member"],
    ),
    "held": nvme("nvme4n1", holders=["dm-3"]),
    "too-small": nvme("nvme4n1", size_bytes=GIB // 2),
    "ebs": nvme("nvme4n1", model="Amazon Elastic Block Store"),
    "root": nvme("nvme4n1", root_disk=True),
    "read-only": nvme("nvme4n1", read_only=True),
}


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def kinds(actions: list[StorageAction]) -> list[str]:
    return [type(a).__name__ for a in actions]


# --- fresh ----------------------------------------------------------------------------------


def test_fresh_three_drives_build_raid5_and_persist_it(world: World) -> None:
    world.disks = [ROOT, *clean("nvme1n1", "nvme2n1", "nvme3n1")]
    actions = world.plan()
    assert kinds(actions) == [
        "CreateArray", "PauseInitialSync", "SetStripeCache", "WriteStripeCacheRule",
        "MakeFilesystem", "WriteMdadmConf", "WriteFstabEntry", "Mount", "SetMountPointMode",
        "ResumeSync",
    ]  # fmt: skip
    create = actions[0]
    assert isinstance(create, CreateArray)
    assert create.argv() == [
        "mdadm", "--create", "/dev/md/cockpit-data", "--homehost=any", "--name=cockpit-data",
        "--metadata=1.2", "--level=5", "--raid-devices=3", f"--uuid={UUID}",
        "--bitmap=internal", "--run", "--chunk=256",
        "/dev/nvme1n1", "/dev/nvme2n1", "/dev/nvme3n1",
    ]  # fmt: skip
    assert "not used: nvme0n1 (model-not-allowed, root-disk" in create.describe()
    assert actions[1] == PauseInitialSync("/dev/md/cockpit-data")
    assert actions[2] == SetStripeCache("/dev/md/cockpit-data", 4096)
    assert actions[3] == WriteStripeCacheRule(RULE_PATH, UUID, 4096)
    mkfs = actions[4]
    assert isinstance(mkfs, MakeFilesystem)
    assert mkfs.argv() == [
        "mkfs.xfs", "-K", "-L", "cockpit-data", "-m", f"uuid={FS_UUID}", "/dev/md/cockpit-data"
    ]  # fmt: skip
    assert actions[5] == WriteMdadmConf(CONF, (OUR_SPEC,))
    assert actions[6] == WriteFstabEntry("/etc/fstab", MountSpec(FS_UUID, MP, "xfs"))
    assert actions[7] == Mount(MP, "/dev/md/cockpit-data")
    assert actions[8] == SetMountPointMode(MP, os.getuid(), os.getgid(), 0o711)
    assert actions[9] == ResumeSync("/dev/md/cockpit-data")
    summary = world.step().summarize(world.observe())
    assert "3 eligible drive(s) (nvme1n1, nvme2n1, nvme3n1): new RAID5" in summary
    assert (
        "excluded: nvme0n1 (model-not-allowed, root-disk, partitioned, signature, mounted)"
        in summary
    )


def test_fresh_ext4_and_a_smaller_chunk(world: World) -> None:
    world.disks = clean("nvme1n1", "nvme2n1", "nvme3n1", "nvme4n1")
    world.storage = {"filesystem": "ext4", "chunk_kib": 64, "label": "vmdata"}
    actions = world.plan()
    create = actions[0]
    assert isinstance(create, CreateArray)
    assert "--chunk=64" in create.argv() and "--raid-devices=4" in create.argv()
    mkfs = next(a for a in actions if isinstance(a, MakeFilesystem))
    assert mkfs.argv() == [
        "mkfs.ext4", "-q", "-E", "nodiscard", "-L", "vmdata", "-U", FS_UUID, "/dev/md/cockpit-data"
    ]  # fmt: skip


def test_raid0_gets_no_bitmap_and_has_no_build_to_pause(world: World) -> None:
    world.disks = clean("nvme1n1", "nvme2n1")
    world.storage = {"level": 0, "min_devices": 2}
    actions = world.plan()
    create = actions[0]
    assert isinstance(create, CreateArray)
    assert "--bitmap=none" in create.argv() and "--level=0" in create.argv()
    assert not {"RemoveStripeCacheRule", "PauseInitialSync", "ResumeSync"} & set(kinds(actions))


def test_the_plan_is_the_same_on_rhel_but_for_the_mdadm_conf_path(world: World) -> None:
    world.disks = clean("nvme1n1", "nvme2n1", "nvme3n1")
    world.platform = DEBIAN.model_copy(update={"os_family": "rhel", "os_id": "rocky"})
    conf = next(a for a in world.plan() if isinstance(a, WriteMdadmConf))
    assert conf.path == "/etc/mdadm.conf"


def test_mdadm_conf_path_by_family_then_by_what_exists(tmp_path: Path) -> None:
    files = Files(tmp_path)
    amazon = DEBIAN.model_copy(update={"os_family": "amazon"})
    unknown = DEBIAN.model_copy(update={"os_family": "unknown"})
    assert mdadm_conf_path(DEBIAN, files) == "/etc/mdadm/mdadm.conf"
    assert mdadm_conf_path(amazon, files) == "/etc/mdadm.conf"
    assert mdadm_conf_path(unknown, files) == "/etc/mdadm.conf"
    assert mdadm_conf_path(None, files) == "/etc/mdadm.conf"
    (tmp_path / "etc" / "mdadm").mkdir(parents=True)
    assert mdadm_conf_path(unknown, files) == "/etc/mdadm/mdadm.conf"
    files.write("/etc/mdadm.conf", "")
    assert mdadm_conf_path(unknown, files) == "/etc/mdadm.conf"


# --- reuse ----------------------------------------------------------------------------------


def test_assembled_as_md127_is_converged(world: World) -> None:
    world.converged_array()
    assert world.plan() == []
    summary = world.step().summarize(world.observe())
    assert summary.startswith(
        "RAID5 any:cockpit-data on /dev/md127 (3/3 members, clean), mounted at " + MP
    )


def test_status_says_the_array_is_on_instance_store(world: World) -> None:
    # Issue 21: an admin reading `status` learns that the VM disks there are not kept.
    world.converged_array()
    summary = world.step().summarize(world.observe())
    assert f"mounted at {MP} (instance store: a stop/start or host failure erases" in summary


def test_found_by_name_without_state_or_conf_lines(world: World) -> None:
    """A lost state file and mdadm.conf: the array is still ours by its name."""
    world.converged_array()
    world.write(CONF, "HOMEHOST <system>\n")
    assert world.plan() == [WriteMdadmConf(CONF, (OUR_SPEC,))]


def test_an_admin_array_line_for_our_uuid_is_enough(world: World) -> None:
    world.converged_array()
    world.write(CONF, f"ARRAY /dev/md/data UUID={UUID}\n")
    assert world.plan() == []


def test_stripe_cache_drift_is_put_back(world: World) -> None:
    world.converged_array()
    world.storage = {"stripe_cache_size": 8192}
    assert world.plan() == [
        SetStripeCache("/dev/md127", 8192),
        WriteStripeCacheRule(RULE_PATH, UUID, 8192),
    ]


def test_a_build_left_paused_by_a_crashed_run_is_resumed(world: World) -> None:
    world.converged_array()
    frozen = world.arrays()[0].model_copy(update={"sync_action": "frozen"})
    step, ctx = world.step(), world.ctx()
    observed = replace(step.observe(ctx), arrays=(frozen,))
    assert step.plan(observed, ctx) == [ResumeSync("/dev/md127")]


def test_not_mounted_after_boot_is_mounted_and_its_root_given_the_mode(world: World) -> None:
    # The directory under the mount point has the right mode; the filesystem's root, once
    # mounted, may not (the crash suite killed a run between its mount and its chmod).
    world.converged_array()
    world.mountinfo = []
    assert world.plan() == [
        Mount(MP, "/dev/md127"),
        SetMountPointMode(MP, os.getuid(), os.getgid(), 0o711),
    ]


def test_wrong_owner_is_corrected(world: World) -> None:
    world.converged_array()
    os.chmod(world.files.path(MP), 0o755)
    assert world.plan() == [SetMountPointMode(MP, os.getuid(), os.getgid(), 0o711)]


def test_inactive_array_is_started(world: World) -> None:
    world.converged_array()
    world.array_tree = "raid5-inactive"
    world.mountinfo = []
    world.disks = [ROOT, member("nvme1n1"), member("nvme2n1"), nvme("nvme3n1")]
    actions = world.plan()
    mode = SetMountPointMode(MP, os.getuid(), os.getgid(), 0o711)
    assert actions == [StartArray("/dev/md127"), Mount(MP, "/dev/md127"), mode]
    assert "blkid" not in {c[0] for c in world.runner.calls}  # nothing probed while inactive


def test_members_not_assembled_are_assembled(world: World) -> None:
    world.converged_array()
    world.array_tree = None
    world.mountinfo = []
    world.disks = [ROOT, *(member(n, array="") for n in ("nvme1n1", "nvme2n1", "nvme3n1"))]
    assert world.plan() == [
        AssembleArray("cockpit-data", UUID, ("/dev/nvme1n1", "/dev/nvme2n1", "/dev/nvme3n1")),
        Mount(MP, "/dev/md/cockpit-data"),
        SetMountPointMode(MP, os.getuid(), os.getgid(), 0o711),
    ]


def test_our_array_with_no_filesystem_gets_one(world: World) -> None:
    """A run that stopped between mdadm --create and mkfs."""
    world.converged_array()
    world.write("/etc/fstab", "")
    world.mountinfo = []
    world.runner.expect("blkid", "-p", "-o", "export", "/dev/md127", rc=2)
    assert kinds(world.plan()) == [
        "MakeFilesystem",
        "WriteFstabEntry",
        "Mount",
        "SetMountPointMode",
    ]


def test_our_array_holding_lvm_is_left_alone(world: World) -> None:
    world.converged_array()
    world.write("/etc/fstab", "")
    world.mountinfo = []
    world.runner.expect("blkid", "-p", "-o", "export", "/dev/md127",
                        stdout="TYPE=LVM2_member\nUSAGE=raid\n")  # fmt: skip
    assert world.plan() == []


# --- degraded -------------------------------------------------------------------------------


def test_degraded_without_auto_replace_plans_nothing(world: World) -> None:
    world.converged_array()
    world.array_tree = "raid5-degraded"
    world.disks = [ROOT, member("nvme1n1"), member("nvme3n1"), nvme("nvme4n1"), md_disk()]
    assert world.plan() == []
    assert "clean, 1 member(s) missing" in world.step().summarize(world.observe())


def test_degraded_with_auto_replace_adds_one_fresh_drive(world: World) -> None:
    world.converged_array()
    world.array_tree = "raid5-degraded"
    world.storage = {"auto_replace": True}
    world.disks = [ROOT, member("nvme1n1"), member("nvme3n1"), *clean("nvme4n1", "nvme5n1")]
    world.disks += [HOSTILE["xfs"].model_copy(update={"name": "nvme6n1", "path": "/dev/nvme6n1"})]
    assert world.plan() == [AddMember("/dev/md127", "/dev/nvme4n1")]


def test_auto_replace_never_adds_to_a_new_array_still_building(world: World) -> None:
    world.converged_array()
    world.array_tree = "raid5-building"
    world.storage = {"auto_replace": True}
    world.disks += [nvme("nvme4n1")]
    assert world.plan() == []


def test_degraded_auto_replace_without_a_fresh_drive_plans_nothing(world: World) -> None:
    world.converged_array()
    world.array_tree = "raid5-degraded"
    world.storage = {"auto_replace": True}
    world.disks = [ROOT, member("nvme1n1"), member("nvme3n1"), HOSTILE["swap"]]
    assert world.plan() == []


# --- wiped ----------------------------------------------------------------------------------

ADMIN_FSTAB = "UUID=6c3e1d7a / ext4 defaults 0 1\n"


def wiped(world: World) -> None:
    """A stop/start: blank drives, our old lines and state pointing at a dead array."""
    world.disks = [ROOT, *clean("nvme1n1", "nvme2n1", "nvme3n1")]
    world.step_data = {"storage": {"array_uuid": OLD_UUID, "fs_uuid": OLD_FS, "fstype": "xfs"}}
    old = ArraySpec("cockpit-data", OLD_UUID, "any:cockpit-data")
    world.write(CONF, mdadm.render_conf("HOMEHOST <system>\nMAILADDR root\n", [old]))
    world.write("/etc/fstab", fstab.render_fstab(ADMIN_FSTAB, MountSpec(OLD_FS, MP, "xfs")))
    world.write(RULE_PATH, mdadm.stripe_cache_rule(OLD_UUID, 4096))
    world.files.path(MP).mkdir(parents=True)


def test_wiped_drives_give_a_new_array_and_replace_stale_entries(world: World) -> None:
    wiped(world)
    actions = world.plan()
    assert kinds(actions) == [
        "RecordLost", "CreateArray", "PauseInitialSync", "SetStripeCache",
        "WriteStripeCacheRule", "MakeFilesystem", "WriteMdadmConf", "WriteFstabEntry", "Mount",
        "SetMountPointMode", "ResumeSync",
    ]  # fmt: skip
    assert actions[0] == RecordLost("array", OLD_UUID)
    conf = actions[6]
    assert isinstance(conf, WriteMdadmConf)
    assert conf.stale == (
        f"ARRAY /dev/md/cockpit-data metadata=1.2 name=any:cockpit-data UUID={OLD_UUID}",
    )
    entry = actions[7]
    assert isinstance(entry, WriteFstabEntry)
    assert entry.spec == MountSpec(FS_UUID, MP, "xfs")
    assert OLD_FS in entry.stale[0]
    assert f"lost (drives blank): {OLD_UUID}" in world.step().summarize(world.observe())


def test_wiped_apply_of_the_file_actions_and_the_record(world: World) -> None:
    wiped(world)
    step, ctx = world.step(), world.ctx()
    actions = step.plan(step.observe(ctx), ctx)
    for action in actions:
        if isinstance(action, RecordLost | WriteMdadmConf | WriteFstabEntry | WriteStripeCacheRule):
            step.apply(action, ctx)
    record = ctx.step_data["storage"]
    assert [(x["kind"], x["uuid"]) for x in record["lost"]] == [("array", OLD_UUID)]
    assert "array_uuid" not in record and "fs_uuid" not in record
    assert world.files.read(CONF) == mdadm.render_conf(
        "HOMEHOST <system>\nMAILADDR root\n", [OUR_SPEC]
    )
    assert world.files.read("/etc/fstab") == fstab.render_fstab(
        ADMIN_FSTAB, MountSpec(FS_UUID, MP, "xfs")
    )
    assert world.files.read(RULE_PATH) == mdadm.stripe_cache_rule(UUID, 4096)


def test_wiped_and_nothing_left_to_build_removes_our_stale_entries(world: World) -> None:
    wiped(world)
    world.storage = {"fallback": "none"}
    world.disks = [ROOT, nvme("nvme1n1")]
    assert world.plan() == [
        RecordLost("array", OLD_UUID),
        RemoveStripeCacheRule(RULE_PATH),
        WriteMdadmConf(CONF, (), (mdadm.owned_lines(world.files.read(CONF) or "")[0],)),
        WriteFstabEntry(
            "/etc/fstab", None, (fstab.owned_lines(world.files.read("/etc/fstab") or "")[0],)
        ),
    ]


# --- fallbacks ------------------------------------------------------------------------------


def test_two_drives_fall_back_to_raid1(world: World) -> None:
    world.disks = [ROOT, *clean("nvme1n1", "nvme2n1")]
    actions = world.plan()
    create = actions[0]
    assert isinstance(create, CreateArray)
    assert create.argv() == [
        "mdadm", "--create", "/dev/md/cockpit-data", "--homehost=any", "--name=cockpit-data",
        "--metadata=1.2", "--level=1", "--raid-devices=2", f"--uuid={UUID}",
        "--bitmap=internal", "--run", "/dev/nvme1n1", "/dev/nvme2n1",
    ]  # fmt: skip
    assert "SetStripeCache" not in kinds(actions) and "WriteStripeCacheRule" not in kinds(actions)
    assert "new RAID1 (fallback)" in world.step().summarize(world.observe())


def test_one_drive_is_used_plain(world: World) -> None:
    world.disks = [ROOT, nvme("nvme1n1")]
    actions = world.plan()
    assert kinds(actions) == ["MakeFilesystem", "WriteFstabEntry", "Mount", "SetMountPointMode"]
    assert actions[0] == MakeFilesystem("/dev/nvme1n1", "xfs", "cockpit-data", NEW[0], True)
    assert "new plain drive (fallback)" in world.step().summarize(world.observe())


def test_plain_drive_after_reboot_is_converged(world: World) -> None:
    probe = {"TYPE": "xfs", "UUID": FS_UUID, "USAGE": "filesystem"}
    world.disks = [ROOT, nvme("nvme1n1", probe=probe, signatures=["xfs"], mountpoints=[MP])]
    world.write("/etc/fstab", fstab.render_fstab("", MountSpec(FS_UUID, MP, "xfs")))
    world.mounted("259:1", "/dev/nvme1n1")
    world.runner.expect("blkid", "-p", "-o", "export", "/dev/nvme1n1",
                        stdout=f"TYPE=xfs\nUUID={FS_UUID}\nUSAGE=filesystem\n")  # fmt: skip
    assert world.plan() == []
    assert world.step().summarize(world.observe()).startswith("plain drive nvme1n1 (xfs), mounted")


def test_plain_drive_wiped_is_recorded_and_rebuilt(world: World) -> None:
    world.disks = [ROOT, nvme("nvme1n1")]
    world.write("/etc/fstab", fstab.render_fstab("", MountSpec(OLD_FS, MP, "xfs")))
    actions = world.plan()
    assert actions[0] == RecordLost("filesystem", OLD_FS)
    assert kinds(actions)[1:] == ["MakeFilesystem", "WriteFstabEntry", "Mount", "SetMountPointMode"]


@pytest.mark.parametrize("count", [1, 2])
def test_fallback_none_skips_with_a_clear_summary(world: World, count: int) -> None:
    world.disks = [ROOT, *clean(*[f"nvme{i}n1" for i in range(1, count + 1)])]
    world.storage = {"fallback": "none"}
    assert world.plan() == []
    summary = world.step().summarize(world.observe())
    assert summary.startswith(f"skipped: {count} eligible drive(s)")
    assert "RAID5 needs 3 and storage.fallback = none" in summary


def test_no_drive_is_converged_with_a_clear_summary(world: World) -> None:
    world.disks = [ROOT]
    assert world.plan() == []
    assert world.step().summarize(world.observe()).startswith("no eligible drive: nothing to build")


def test_three_drives_short_of_raid6_fall_back_to_raid5(world: World) -> None:
    world.disks = clean("nvme1n1", "nvme2n1", "nvme3n1")
    world.storage = {"level": 6, "min_devices": 4}
    create = world.plan()[0]
    assert isinstance(create, CreateArray) and create.level == 5


def test_xfs_on_too_small_a_raid1_is_refused_before_anything(world: World) -> None:
    small = {"size_bytes": 256 * 1024**2}
    world.disks = [nvme("nvme1n1", **small), nvme("nvme2n1", **small)]
    world.storage = {"min_device_size": ByteSize(64 * 1024**2)}
    with pytest.raises(StoragePlanError, match="XFS needs at least 300 MiB"):
        world.plan()
    world.storage |= {"filesystem": "ext4"}
    assert kinds(world.plan())[0] == "CreateArray"


# --- hostile drives -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_a_hostile_drive_is_never_used(world: World, kind: str) -> None:
    world.disks = [ROOT, *clean("nvme1n1", "nvme2n1", "nvme3n1"), HOSTILE[kind]]
    world.storage = {"auto_replace": True}
    actions = world.plan()
    assert not any("nvme4n1" in repr(a) for a in actions if not isinstance(a, CreateArray))
    create = actions[0]
    assert isinstance(create, CreateArray)
    assert create.devices == ("/dev/nvme1n1", "/dev/nvme2n1", "/dev/nvme3n1")
    assert any(x.startswith("nvme4n1 (") for x in create.excluded)


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_drives_alone_give_nothing_to_do(world: World, kind: str) -> None:
    world.disks = [ROOT, HOSTILE[kind]]
    assert world.plan() == []
    assert "nvme4n1 (" in world.step().summarize(world.observe())


def test_the_hostile_matrix_together(world: World) -> None:
    hostile = [d.model_copy(update={"name": f"nvme{i}n1", "path": f"/dev/nvme{i}n1"})
               for i, d in enumerate(HOSTILE.values(), start=4)]  # fmt: skip
    world.disks = [ROOT, *clean("nvme1n1", "nvme2n1", "nvme3n1"), *hostile]
    actions = world.plan()
    touched = {p for a in actions for p in getattr(a, "devices", ())}
    touched |= {getattr(a, "device", "") for a in actions}
    assert touched - {""} == {
        "/dev/nvme1n1",
        "/dev/nvme2n1",
        "/dev/nvme3n1",
        "/dev/md/cockpit-data",
    }


# --- conflicts ------------------------------------------------------------------------------


def test_something_else_mounted_at_the_mount_point_stops_the_plan(world: World) -> None:
    world.disks = clean("nvme1n1", "nvme2n1", "nvme3n1")
    world.mountinfo = [f"61 22 259:9 / {MP} rw - ext4 /dev/sdz1 rw"]
    with pytest.raises(StoragePlanError, match="already has /dev/sdz1 mounted"):
        world.plan()


def test_files_under_the_mount_point_stop_the_plan(world: World) -> None:
    world.disks = clean("nvme1n1", "nvme2n1", "nvme3n1")
    world.write(f"{MP}/base.qcow2", "image")
    with pytest.raises(StoragePlanError, match=r"is not empty \(base.qcow2\)"):
        world.plan()


def test_an_admin_fstab_line_at_the_mount_point_stops_the_plan(world: World) -> None:
    world.disks = clean("nvme1n1", "nvme2n1", "nvme3n1")
    world.write("/etc/fstab", f"/dev/sdz1 {MP} ext4 defaults 0 2\n")
    with pytest.raises(StoragePlanError, match="already mounts something else"):
        world.plan()


def test_an_admin_fstab_line_for_our_filesystem_is_kept(world: World) -> None:
    world.converged_array()
    world.write("/etc/fstab", f"UUID={FS_UUID} {MP} xfs defaults 0 0\n")
    assert world.plan() == []


def test_an_unidentified_array_stops_a_new_build(world: World) -> None:
    world.disks = clean("nvme1n1", "nvme2n1", "nvme3n1")
    world.array_tree = "raid5-clean"
    world.storage = {"array_name": "other"}
    arrays = world.arrays()
    unknown = arrays[0].model_copy(update={"uuid": None, "name": None, "detail_error": "boom"})
    step, ctx = world.step(), world.ctx()
    observed = step.observe(ctx)
    with pytest.raises(StoragePlanError, match="md127: boom"):
        step.plan(replace(observed, arrays=(unknown,)), ctx)


# --- describe -------------------------------------------------------------------------------


def test_every_action_describes_itself_in_one_line(world: World) -> None:
    wiped(world)
    actions = [
        *world.plan(),
        AssembleArray("cockpit-data", UUID, ("/dev/nvme1n1",)),
        StartArray("/dev/md127"),
        AddMember("/dev/md127", "/dev/nvme4n1"),
        RemoveStripeCacheRule(RULE_PATH),
    ]
    for action in actions:
        text = action.describe()
        assert text and "\n" not in text
