"""The rootfs step: plans, applies and verifies from captured command output (FakeRunner).

The scenarios in tests/fixtures/rootfs/*.json were captured from loop devices on a real
machine by tests/fixtures/rootfs/capture.py: each holds the chain that `read_root_chain` read
and every command the step's measuring ran, with its answer.
"""

from __future__ import annotations

import json
import math
import subprocess
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

import pytest

from cockpit_agent.config import Config, RootfsConfig
from cockpit_agent.engine import Ctx, Engine
from cockpit_agent.errors import CommandFailed
from cockpit_agent.facts.gather import Facts
from cockpit_agent.facts.rootfs import RootChain
from cockpit_agent.host.files import Files
from cockpit_agent.host.procs import processes_named
from cockpit_agent.host.run import PACKAGE_OF, SubprocessRunner
from cockpit_agent.steps.rootfs.actions import (
    ExtendLogicalVolume,
    GrowFilesystem,
    GrowPartition,
    ResizePhysicalVolume,
)
from cockpit_agent.steps.rootfs.step import RootfsStep
from tests.fakes import FakeRunner

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "rootfs"
CLOUD_CFG = FIXTURES / "cloud-init"
CONVERGED = [
    "ext4-gpt-converged",
    "xfs-dos-converged",
    "btrfs-gpt-converged",
    "lvm-ext4-gpt-converged",
]


def scenario(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


def chain_of(data: dict[str, Any]) -> RootChain:
    return RootChain.model_validate(data["chain"])


def runner_for(data: dict[str, Any]) -> FakeRunner:
    runner = FakeRunner()
    for call in data["commands"]:
        runner.expect(*call["argv"], rc=call["rc"], stdout=call["stdout"], stderr=call["stderr"])
    return runner


def answer(data: dict[str, Any], program: str) -> dict[str, Any]:
    """The recorded call of `program` in a scenario."""
    calls = [c for c in data["commands"] if c["argv"][0] == program]
    assert len(calls) == 1, calls
    return dict(calls[0])


def ctx_for(
    data: dict[str, Any],
    tmp_path: Path,
    runner: FakeRunner | SubprocessRunner | None = None,
    **rootfs: Any,
) -> Ctx:
    """A Ctx whose facts hold the scenario's chain and whose files live under tmp_path."""
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    return Ctx(
        runner=runner if runner is not None else runner_for(data),
        files=Files(root),
        facts=Facts(rootfs=chain_of(data)),
        config=Config(rootfs=RootfsConfig(**rootfs)),
    )


def plan_of(ctx: Ctx) -> list[Any]:
    step = RootfsStep()
    return list(step.plan(step.observe(ctx), ctx))


# --- plans --------------------------------------------------------------------------------


def test_ext4_on_a_partition_of_a_grown_disk_grows_partition_then_filesystem(
    tmp_path: Path,
) -> None:
    data = scenario("ext4-gpt-disk-grown")
    chain = chain_of(data)
    assert chain.partition is not None and chain.device is not None
    ctx = ctx_for(data, tmp_path)

    actions = plan_of(ctx)

    part = chain.partition
    assert actions == [
        GrowPartition(part.disk.path, part.number, part.device.path),
        GrowFilesystem("ext4", chain.device.path, chain.mountpoint),
    ]
    # growpart was asked (there is room after the partition), and only as a dry run.
    runner = ctx.runner
    assert isinstance(runner, FakeRunner)
    assert ("growpart", "--dry-run", part.disk.path, str(part.number)) in runner.calls
    assert not [c for c in runner.calls if c[0] == "growpart" and "--dry-run" not in c]


@pytest.mark.parametrize("name", CONVERGED)
def test_a_converged_root_plans_nothing(name: str, tmp_path: Path) -> None:
    ctx = ctx_for(scenario(name), tmp_path)
    step = RootfsStep()
    observed = step.observe(ctx)

    assert step.plan(observed, ctx) == []
    assert "fills" in step.summarize(observed)
    # less than growpart's 1 MiB after the partition (lsblk): growpart itself is not run
    assert isinstance(ctx.runner, FakeRunner)
    assert [c[0] for c in ctx.runner.calls if c[0] == "growpart"] == []


def test_xfs_grows_through_its_mount_point(tmp_path: Path) -> None:
    data = scenario("xfs-dos-disk-grown")
    chain = chain_of(data)
    assert chain.partition is not None and chain.device is not None

    actions = plan_of(ctx_for(data, tmp_path))

    assert [type(a) for a in actions] == [GrowPartition, GrowFilesystem]
    assert actions[1] == GrowFilesystem("xfs", chain.device.path, chain.mountpoint)


def test_btrfs_grows_its_own_device(tmp_path: Path) -> None:
    data = scenario("btrfs-gpt-disk-grown")
    chain = chain_of(data)
    assert chain.device is not None

    actions = plan_of(ctx_for(data, tmp_path))

    assert [type(a) for a in actions] == [GrowPartition, GrowFilesystem]
    assert actions[1] == GrowFilesystem("btrfs", chain.device.path, chain.mountpoint, 1)


def test_ext4_whose_partition_already_grew_only_grows_the_filesystem(tmp_path: Path) -> None:
    data = scenario("ext4-gpt-partition-grown")

    actions = plan_of(ctx_for(data, tmp_path))

    assert [type(a) for a in actions] == [GrowFilesystem]


def test_lvm_root_grows_partition_pv_lv_and_filesystem_in_order(tmp_path: Path) -> None:
    data = scenario("lvm-ext4-gpt-disk-grown")
    chain = chain_of(data)
    assert chain.lv is not None and chain.partition is not None

    actions = plan_of(ctx_for(data, tmp_path))

    assert actions == [
        GrowPartition(chain.partition.disk.path, 2, chain.lv.pv.path),
        ResizePhysicalVolume(chain.lv.pv.path),
        ExtendLogicalVolume(chain.lv.device.path, 0),
        GrowFilesystem("ext4", chain.lv.device.path, "/"),
    ]


def test_lvm_root_applies_growpart_pvresize_lvextend_resize2fs_in_order(tmp_path: Path) -> None:
    before, after = scenario("lvm-ext4-gpt-disk-grown"), scenario("lvm-ext4-gpt-partition-grown")
    ctx = ctx_for(before, tmp_path)
    step = RootfsStep()
    actions = step.plan(step.observe(ctx), ctx)
    # Once applied, the host answers as it did after growpart: the VG has free extents.
    runner = runner_for(after)
    chain = chain_of(before)
    assert chain.lv is not None and chain.partition is not None
    disk, pv, lv = chain.partition.disk.path, chain.lv.pv.path, chain.lv.device.path
    vg_lv = json.loads(answer(after, "lvs")["stdout"])["report"][0]["lv"][0]
    free = int(vg_lv["vg_free_count"])
    runner.expect("growpart", disk, "2", stdout="CHANGED: partition=2")
    runner.expect("partx", "--update", "--nr", "2", disk)
    runner.expect("pvresize", pv)
    runner.expect("lvextend", "--extents", f"+{free}", vg_lv["lv_full_name"])
    runner.expect("resize2fs", lv)
    ctx.runner = runner

    for action in actions:
        step.apply(action, ctx)

    changing = [c[0] for c in runner.calls if c[0] not in ("lvs",)]
    assert changing == ["growpart", "partx", "pvresize", "lvextend", "resize2fs"]
    assert free > 0


def test_leave_free_percent_keeps_part_of_the_volume_group_free(tmp_path: Path) -> None:
    data = scenario("lvm-ext4-gpt-partition-grown")
    row = json.loads(answer(data, "lvs")["stdout"])["report"][0]["lv"][0]
    free, total = int(row["vg_free_count"]), int(row["vg_extent_count"])
    percent = 10
    keep = math.ceil(total * percent / 100)
    assert 0 < keep < free
    ctx = ctx_for(data, tmp_path, leave_free_percent=percent)
    runner = ctx.runner
    assert isinstance(runner, FakeRunner)
    runner.expect("lvextend", "--extents", f"+{free - keep}", row["lv_full_name"])
    runner.expect("resize2fs", "/dev/mapper/rootfscapture-root")
    step = RootfsStep()

    actions = step.plan(step.observe(ctx), ctx)
    for action in actions:
        step.apply(action, ctx)

    assert [type(a) for a in actions] == [ExtendLogicalVolume, GrowFilesystem]
    assert actions[0] == ExtendLogicalVolume("/dev/mapper/rootfscapture-root", percent)
    assert ("lvextend", "--extents", f"+{free - keep}", row["lv_full_name"]) in runner.calls


def test_leave_free_percent_above_the_free_space_plans_nothing(tmp_path: Path) -> None:
    data = scenario("lvm-ext4-gpt-partition-grown")
    row = json.loads(answer(data, "lvs")["stdout"])["report"][0]["lv"][0]
    free, total = int(row["vg_free_count"]), int(row["vg_extent_count"])
    percent = math.ceil(100 * free / total) + 1  # keeps more than is free now

    assert plan_of(ctx_for(data, tmp_path, leave_free_percent=percent)) == []
    assert [type(a) for a in plan_of(ctx_for(data, tmp_path))] == [
        ExtendLogicalVolume,
        GrowFilesystem,
    ]


def test_a_pv_smaller_than_its_partition_is_resized(tmp_path: Path) -> None:
    data = scenario("lvm-ext4-gpt-converged")
    pvs = answer(data, "pvs")
    report = json.loads(pvs["stdout"])
    row = report["report"][0]["pv"][0]
    row["dev_size"] = str(int(row["dev_size"]) + 3 * int(row["vg_extent_size"]))
    runner = runner_for(data)
    runner.expect(*pvs["argv"], stdout=json.dumps(report))

    actions = plan_of(ctx_for(data, tmp_path, runner))

    assert [type(a) for a in actions] == [
        ResizePhysicalVolume,
        ExtendLogicalVolume,
        GrowFilesystem,
    ]


# --- what is left alone -------------------------------------------------------------------


def test_growroot_disabled_plans_nothing_and_runs_nothing(tmp_path: Path) -> None:
    data = scenario("ext4-gpt-disk-grown")
    ctx = ctx_for(data, tmp_path)
    ctx.files.write("/etc/growroot-disabled", "")
    step = RootfsStep()

    observed = step.observe(ctx)

    assert step.plan(observed, ctx) == []
    assert "/etc/growroot-disabled" in step.summarize(observed)
    assert isinstance(ctx.runner, FakeRunner) and ctx.runner.calls == []
    assert [f.code for f in step.verify(ctx)] == ["rootfs-growth-disabled"]


def test_rootfs_enabled_false_turns_the_step_off() -> None:
    assert RootfsStep().enabled(Config())
    assert not RootfsStep().enabled(Config(rootfs=RootfsConfig(enabled=False)))


def on_root(data: dict[str, Any]) -> dict[str, Any]:
    """The scenario with its filesystem mounted on / (what cloud-init's growpart grows by
    default): the chain's mount point and the commands that named it."""
    old = data["chain"]["mountpoint"]
    data["chain"]["mountpoint"] = "/"
    for call in data["commands"]:
        call["argv"] = ["/" if arg == old else arg for arg in call["argv"]]
    return data


def with_cloud_init(
    ctx: Ctx, distro: str, finished: tuple[str, ...] = ("init-local", "init"), dropin: str = ""
) -> None:
    """cloud-init installed with a distribution's cloud.cfg; `finished` stages in this boot."""
    ctx.files.write("/usr/bin/cloud-init", "")
    ctx.files.write("/etc/cloud/cloud.cfg", (CLOUD_CFG / f"{distro}.cfg").read_text())
    if finished:
        stages = {stage: {"start": 2.5, "finished": 7.5, "errors": []} for stage in finished}
        ctx.files.write("/run/cloud-init/status.json", json.dumps({"v1": stages}))
    if dropin:
        ctx.files.write("/etc/cloud/cloud.cfg.d/90-test.cfg", dropin)


ALL_FOUR = [GrowPartition, ResizePhysicalVolume, ExtendLogicalVolume, GrowFilesystem]


@pytest.mark.parametrize(
    ("name", "distro", "dropin", "planned", "growers"),
    [
        # No cloud-init: the agent grows every layer of each layout.
        (
            "ext4-gpt-disk-grown",
            None,
            "",
            [GrowPartition, GrowFilesystem],
            "rootfs-growth-by-agent",
        ),
        ("xfs-dos-disk-grown", None, "", [GrowPartition, GrowFilesystem], "rootfs-growth-by-agent"),
        ("lvm-ext4-gpt-disk-grown", None, "", ALL_FOUR, "rootfs-growth-by-agent"),
        # cloud-init active, after its init stage: on a plain root its growpart and resizefs
        # have grown partition and filesystem, and the agent has nothing left to do.
        ("ext4-gpt-converged", "ubuntu-24.04", "", [], "rootfs-growth-shared-with-cloud-init"),
        ("xfs-dos-converged", "rhel9", "", [], "rootfs-growth-shared-with-cloud-init"),
        # ... and where they did not (growpart failed), the agent grows what they left.
        (
            "ext4-gpt-disk-grown",
            "debian12",
            "",
            [GrowPartition, GrowFilesystem],
            "rootfs-growth-shared-with-cloud-init",
        ),
        # On an LVM root its growpart skips the device-mapper root: the agent grows all four.
        ("lvm-ext4-gpt-disk-grown", "ubuntu-22.04", "", ALL_FOUR, "rootfs-growth-by-agent"),
        # growpart told to grow the PV's partition: cloud-init grew it and the PV, the agent
        # extends the LV and grows the filesystem.
        (
            "lvm-ext4-gpt-partition-grown",
            "debian12",
            "growpart: {devices: [/, /dev/loop0p2]}\n",
            [ExtendLogicalVolume, GrowFilesystem],
            "rootfs-growth-shared-with-cloud-init",
        ),
        # cloud-init there but disabled: the agent grows every layer.
        (
            "ext4-gpt-disk-grown",
            "off",
            "",
            [GrowPartition, GrowFilesystem],
            "rootfs-growth-by-agent",
        ),
    ],
)
def test_plans_for_each_layout_with_and_without_cloud_init(
    tmp_path: Path, name: str, distro: str | None, dropin: str, planned: list[type], growers: str
) -> None:
    ctx = ctx_for(on_root(scenario(name)), tmp_path)
    if distro == "off":
        with_cloud_init(ctx, "debian12")
        ctx.files.write("/etc/cloud/cloud-init.disabled", "")
    elif distro:
        with_cloud_init(ctx, distro, dropin=dropin)
    step = RootfsStep()

    observed = step.observe(ctx)
    actions = step.plan(observed, ctx)

    assert [type(a) for a in actions] == planned
    codes = [f.code for f in step.verify(ctx, observed)]
    assert codes[-1] == growers
    summary = step.summarize(observed)
    if growers == "rootfs-growth-by-agent":
        assert "the agent grows every layer (" in summary
    else:
        assert "at boot, the agent what it leaves after it" in summary


def test_a_plain_root_grown_by_cloud_init_says_so(tmp_path: Path) -> None:
    ctx = ctx_for(on_root(scenario("ext4-gpt-converged")), tmp_path)
    with_cloud_init(ctx, "debian12")
    step = RootfsStep()

    observed = step.observe(ctx)
    findings = step.verify(ctx, observed)

    assert step.summarize(observed).endswith(
        "filesystem 1007.0 MiB fills its device; cloud-init grows partition 2 and the "
        "filesystem at boot, the agent what it leaves after it"
    )
    assert [(f.severity, f.code) for f in findings] == [
        ("ok", "rootfs-grown"),
        ("ok", "rootfs-growth-shared-with-cloud-init"),
    ]
    assert "cloud-init's growpart and resizefs run in its init stage" in findings[1].message


def test_an_lvm_root_says_cloud_init_skips_it(tmp_path: Path) -> None:
    ctx = ctx_for(scenario("lvm-ext4-gpt-disk-grown"), tmp_path)
    with_cloud_init(ctx, "ubuntu-24.04")
    step = RootfsStep()

    summary = step.summarize(step.observe(ctx))

    assert summary.endswith(
        "the agent grows every layer (cloud-init's growpart and resizefs run in its init "
        "stage; its growpart skips the device-mapper root /dev/mapper/rootfscapture-root)"
    )


@pytest.mark.parametrize("finished", [(), ("init-local",)])
def test_before_cloud_init_has_run_nothing_is_measured_or_planned(
    tmp_path: Path, finished: tuple[str, ...]
) -> None:
    """`reconcile` by hand before cloud-init's init stage finished: the agent waits for it."""
    ctx = ctx_for(on_root(scenario("ext4-gpt-disk-grown")), tmp_path)
    with_cloud_init(ctx, "ubuntu-22.04", finished=finished)
    step = RootfsStep()

    observed = step.observe(ctx)

    assert step.plan(observed, ctx) == []
    assert isinstance(ctx.runner, FakeRunner) and ctx.runner.calls == []
    findings = step.verify(ctx, observed)
    assert [(f.severity, f.code) for f in findings] == [
        ("warning", "rootfs-waiting-for-cloud-init")
    ]
    assert "has not finished in this boot (init)" in findings[0].message
    assert "waiting for cloud-init" in step.summarize(observed)


def test_amazon_linux_background_resize_is_waited_for(tmp_path: Path) -> None:
    """resize_rootfs: noblock lets the init stage finish while resizefs' resize still runs:
    the agent does not grow the filesystem beside it."""
    ctx = ctx_for(on_root(scenario("xfs-dos-converged")), tmp_path)
    with_cloud_init(ctx, "amazonlinux2023")
    running = {1: ("systemd", "/sbin/init"), 812: ("xfs_growfs", "xfs_growfs /")}

    def processes(names: Collection[str]) -> list[str]:
        return [f"{pid} {argv}" for pid, (name, argv) in running.items() if name in names]

    step = RootfsStep(processes=processes)

    observed = step.observe(ctx)

    assert step.plan(observed, ctx) == []
    assert isinstance(ctx.runner, FakeRunner) and ctx.runner.calls == []
    assert [f.code for f in step.verify(ctx, observed)] == ["rootfs-waiting-for-cloud-init"]
    assert "in the background (812 xfs_growfs /)" in step.summarize(observed)

    del running[812]  # the resize has ended: measure, judge as usual
    observed = step.observe(ctx)
    assert step.plan(observed, ctx) == []
    assert [f.code for f in step.verify(ctx, observed)] == [
        "rootfs-grown",
        "rootfs-growth-shared-with-cloud-init",
    ]


def test_processes_are_found_by_name_in_the_real_proc() -> None:
    mine: list[str] = []
    with subprocess.Popen(["sleep", "30"]) as sleeper:
        try:
            for _ in range(100):  # until the child has exec'd: its name is python's before
                found = processes_named(("sleep", "xfs_growfs"))
                mine = [p for p in found if p.startswith(f"{sleeper.pid} ")]
                if mine:
                    break
                time.sleep(0.05)
        finally:
            sleeper.kill()

    assert mine == [f"{sleeper.pid} sleep 30"]


def test_a_broken_cloud_init_file_fails_the_step_with_its_name(tmp_path: Path) -> None:
    ctx = ctx_for(on_root(scenario("ext4-gpt-converged")), tmp_path)
    with_cloud_init(ctx, "debian12", dropin="growpart: {mode: [off}\n")

    record = Engine([RootfsStep()]).run(ctx).steps[0]

    assert record.status == "failed"
    assert record.error is not None
    assert record.error.startswith("observe: /etc/cloud/cloud.cfg.d/90-test.cfg: cloud-init's")
    assert "internal error" not in record.error


def test_a_partition_that_is_not_last_is_left_alone_with_its_reason(tmp_path: Path) -> None:
    data = scenario("ext4-gpt-not-last")
    chain = chain_of(data)
    assert chain.partition is not None and chain.partition.followed_by
    ctx = ctx_for(data, tmp_path)
    step = RootfsStep()

    observed = step.observe(ctx)

    assert step.plan(observed, ctx) == []
    summary = step.summarize(observed)
    assert "not the last" in summary and chain.partition.followed_by[0] in summary
    runner = ctx.runner
    assert isinstance(runner, FakeRunner)
    assert not [c for c in runner.calls if c[0] == "growpart"]
    codes = {f.code: f.severity for f in step.verify(ctx)}
    assert codes == {
        "rootfs-partition-not-last": "ok",
        "rootfs-grown": "ok",
        "rootfs-growth-by-agent": "ok",
    }


def test_an_unsupported_chain_is_left_alone(tmp_path: Path) -> None:
    data = scenario("ext4-gpt-converged")
    data["chain"]["unsupported"] = "/dev/md127 is an md RAID array"
    ctx = ctx_for(data, tmp_path)
    step = RootfsStep()

    observed = step.observe(ctx)

    assert step.plan(observed, ctx) == []
    assert "md RAID" in step.summarize(observed)


def test_missing_growpart_names_its_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = scenario("ext4-gpt-disk-grown")
    bin_dir = tmp_path / "bin"  # lsblk answers as recorded; there is no growpart
    bin_dir.mkdir()
    (bin_dir / "lsblk.json").write_text(answer(data, "lsblk")["stdout"])
    (bin_dir / "lsblk").write_text(f"#!/bin/sh\nexec /bin/cat {bin_dir / 'lsblk.json'}\n")
    (bin_dir / "lsblk").chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    ctx = ctx_for(data, tmp_path, SubprocessRunner())

    run = Engine([RootfsStep()]).run(ctx)

    record = run.steps[0]
    assert record.status == "failed"
    assert record.error is not None
    assert "growpart is not installed" in record.error
    assert "cloud-guest-utils" in record.error
    assert "cloud-guest-utils" in PACKAGE_OF["growpart"]


# --- applying -----------------------------------------------------------------------------


def test_grow_partition_tells_the_kernel_and_waits_for_udev_when_it_runs(tmp_path: Path) -> None:
    ctx = ctx_for(scenario("ext4-gpt-disk-grown"), tmp_path, FakeRunner())
    runner = ctx.runner
    assert isinstance(runner, FakeRunner)
    runner.expect("growpart", "/dev/nvme0n1", "2", stdout="CHANGED: partition=2")
    runner.expect("partx", "--update", "--nr", "2", "/dev/nvme0n1")
    runner.expect("udevadm", "settle", "--timeout=60")
    action = GrowPartition("/dev/nvme0n1", 2, "/dev/nvme0n1p2")

    RootfsStep().apply(action, ctx)
    assert [c[0] for c in runner.calls] == ["growpart", "partx"]  # no udev: no settle

    ctx.files.write("/run/udev/control", "")
    RootfsStep().apply(action, ctx)
    assert [c[0] for c in runner.calls[2:]] == ["growpart", "partx", "udevadm"]

    runner.absent.add("udevadm")  # udev's socket but no udevadm: carry on without it
    RootfsStep().apply(action, ctx)
    assert [c[0] for c in runner.calls[5:]] == ["growpart", "partx", "udevadm"]


def test_growpart_failing_without_nochange_is_an_error(tmp_path: Path) -> None:
    ctx = ctx_for(scenario("ext4-gpt-disk-grown"), tmp_path, FakeRunner())
    runner = ctx.runner
    assert isinstance(runner, FakeRunner)
    runner.expect("growpart", "/dev/sda", "1", rc=1, stderr="FAILED: sfdisk failed")

    with pytest.raises(CommandFailed, match="sfdisk failed"):
        RootfsStep().apply(GrowPartition("/dev/sda", 1, "/dev/sda1"), ctx)


@pytest.mark.parametrize(
    ("action", "argv"),
    [
        (GrowFilesystem("ext4", "/dev/sda1", "/"), ("resize2fs", "/dev/sda1")),
        (GrowFilesystem("ext3", "/dev/sda1", "/"), ("resize2fs", "/dev/sda1")),
        (GrowFilesystem("xfs", "/dev/sda1", "/"), ("xfs_growfs", "/")),
        (
            GrowFilesystem("btrfs", "/dev/sda1", "/"),
            ("btrfs", "filesystem", "resize", "max", "/"),
        ),
        (
            GrowFilesystem("btrfs", "/dev/sdb1", "/", 2),
            ("btrfs", "filesystem", "resize", "2:max", "/"),
        ),
        (ResizePhysicalVolume("/dev/sda3"), ("pvresize", "/dev/sda3")),
    ],
)
def test_each_action_runs_its_tool(action: Any, argv: tuple[str, ...], tmp_path: Path) -> None:
    ctx = ctx_for(scenario("ext4-gpt-disk-grown"), tmp_path, FakeRunner())
    runner = ctx.runner
    assert isinstance(runner, FakeRunner)
    runner.expect(*argv)

    RootfsStep().apply(action, ctx)

    assert runner.calls == [argv]
    assert action.describe()


def test_extend_with_no_free_extents_runs_no_lvextend(tmp_path: Path) -> None:
    data = scenario("lvm-ext4-gpt-converged")
    ctx = ctx_for(data, tmp_path)

    RootfsStep().apply(ExtendLogicalVolume("/dev/mapper/rootfscapture-root", 0), ctx)

    runner = ctx.runner
    assert isinstance(runner, FakeRunner)
    assert [c[0] for c in runner.calls] == ["lvs"]


# --- verify -------------------------------------------------------------------------------


def test_verify_warns_for_each_layer_that_did_not_grow(tmp_path: Path) -> None:
    ctx = ctx_for(scenario("ext4-gpt-partition-grown"), tmp_path)

    findings = RootfsStep().verify(ctx)

    assert [(f.severity, f.code) for f in findings] == [
        ("warning", "rootfs-not-grown"),
        ("ok", "rootfs-growth-by-agent"),
    ]
    assert "ext4" in findings[0].message


def test_verify_warns_for_partition_and_filesystem_of_a_grown_disk(tmp_path: Path) -> None:
    ctx = ctx_for(scenario("xfs-dos-disk-grown"), tmp_path)

    findings = RootfsStep().verify(ctx)

    assert [f.code for f in findings] == ["rootfs-not-grown", "rootfs-growth-by-agent"]
    assert "does not fill" in findings[0].message
    assert findings[1].message == "the agent grows every layer (cloud-init is not installed)"


@pytest.mark.parametrize("name", CONVERGED)
def test_verify_of_a_converged_root_is_ok(name: str, tmp_path: Path) -> None:
    findings = RootfsStep().verify(ctx_for(scenario(name), tmp_path))

    assert [(f.severity, f.code) for f in findings] == [
        ("ok", "rootfs-grown"),
        ("ok", "rootfs-growth-by-agent"),
    ]


def test_no_root_chain_is_a_warning_not_a_crash(tmp_path: Path) -> None:
    ctx = ctx_for(scenario("ext4-gpt-converged"), tmp_path)
    ctx.facts = Facts(errors={"rootfs": "permission denied"})
    step = RootfsStep()

    assert step.plan(step.observe(ctx), ctx) == []
    findings = step.verify(ctx)
    assert [(f.severity, f.code) for f in findings] == [("warning", "rootfs-unknown")]
    assert "permission denied" in findings[0].message
