"""What cloud-init grows of the root at boot: real cloud.cfg files of five distributions, drop-ins
in the YAML that cloud-init reads, and its own status of this boot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cockpit_agent.errors import AgentError
from cockpit_agent.facts.rootfs import BlockDevice, LogicalVolume, Partition, RootChain
from cockpit_agent.facts.rootfs_cloud_init import read_cloud_config, read_cloud_init_growth
from cockpit_agent.host.files import Files

CFG = Path(__file__).resolve().parent.parent / "fixtures" / "rootfs" / "cloud-init"
DISTROS = ["debian12", "ubuntu-22.04", "ubuntu-24.04", "rhel9", "amazonlinux2023"]
GIB = 1 << 30

DISK = BlockDevice(name="nvme0n1", path="/dev/nvme0n1", size_bytes=8 * GIB)
PART1 = BlockDevice(name="nvme0n1p1", path="/dev/nvme0n1p1", size_bytes=2 * GIB)
PART3 = BlockDevice(name="nvme0n1p3", path="/dev/nvme0n1p3", size_bytes=2 * GIB)
LV = BlockDevice(name="dm-0", path="/dev/mapper/vg-root", size_bytes=2 * GIB)
# ext4 on partition 1 of the disk; ext4 on LV vg/root whose PV is partition 3.
PLAIN = RootChain(
    mountpoint="/",
    fstype="ext4",
    source="/dev/nvme0n1p1",
    device=PART1,
    partition=Partition(device=PART1, number=1, start_bytes=1 << 20, disk=DISK),
    disk=DISK,
)
LVM = RootChain(
    mountpoint="/",
    fstype="ext4",
    source="/dev/mapper/vg-root",
    device=LV,
    lv=LogicalVolume(device=LV, dm_uuid="LVM-abc", pv=PART3),
    partition=Partition(device=PART3, number=3, start_bytes=1 << 30, disk=DISK),
    disk=DISK,
)


def host(tmp_path: Path, distro: str = "debian12", finished: tuple[str, ...] = ()) -> Files:
    """cloud-init installed with a distribution's cloud.cfg; `finished` stages in status.json."""
    files = Files(tmp_path)
    files.write("/usr/bin/cloud-init", "")
    files.write("/etc/cloud/cloud.cfg", (CFG / f"{distro}.cfg").read_text())
    if finished:
        stages = {s: {"start": 3.1, "finished": 9.2, "errors": []} for s in finished}
        files.write("/run/cloud-init/status.json", json.dumps({"v1": stages}))
    return files


# --- the distributions' own files ------------------------------------------------------------


@pytest.mark.parametrize("distro", DISTROS)
def test_each_distro_grows_a_plain_root_in_its_init_stage(tmp_path: Path, distro: str) -> None:
    growth = read_cloud_init_growth(host(tmp_path, distro, ("init-local", "init")), PLAIN)

    assert growth.grows == ["partition 1", "the filesystem"]
    assert growth.pending == []
    assert "growpart and resizefs run in its init stage" in growth.detail
    # Amazon Linux's resizefs forks the resize and lets the stage finish without it.
    assert growth.background_resize is (distro == "amazonlinux2023")


@pytest.mark.parametrize("distro", DISTROS)
def test_each_distro_grows_nothing_of_an_lvm_root(tmp_path: Path, distro: str) -> None:
    """cc_growpart skips a device-mapper device: with devices ["/"] it leaves the partition,
    the PV and the LV; resizefs then only fills the LV it finds."""
    growth = read_cloud_init_growth(host(tmp_path, distro, ("init",)), LVM)

    assert growth.grows == []
    assert "skips the device-mapper root /dev/mapper/vg-root" in growth.detail


@pytest.mark.parametrize("distro", DISTROS)
def test_the_init_stage_not_finished_in_this_boot_is_pending(tmp_path: Path, distro: str) -> None:
    no_status = read_cloud_init_growth(host(tmp_path / "a", distro), PLAIN)
    running = read_cloud_init_growth(host(tmp_path / "b", distro, ("init-local",)), PLAIN)

    assert no_status.pending == running.pending == ["init"]


def test_a_stage_that_started_but_did_not_finish_is_pending(tmp_path: Path) -> None:
    files = host(tmp_path)
    status = {"v1": {"init": {"start": 4.0, "finished": None}, "stage": "init"}}
    files.write("/run/cloud-init/status.json", json.dumps(status))

    assert read_cloud_init_growth(files, PLAIN).pending == ["init"]


def test_an_unreadable_status_counts_as_not_finished(tmp_path: Path) -> None:
    files = host(tmp_path)
    files.write("/run/cloud-init/status.json", '{"v1": ')

    assert read_cloud_init_growth(files, PLAIN).pending == ["init"]


# --- cloud-init not there, or off --------------------------------------------------------------


def test_not_installed_grows_nothing_and_waits_for_nothing(tmp_path: Path) -> None:
    files = host(tmp_path)
    files.path("/usr/bin/cloud-init").unlink()

    growth = read_cloud_init_growth(files, PLAIN)

    assert (growth.grows, growth.pending) == ([], [])
    assert growth.detail == "cloud-init is not installed"


@pytest.mark.parametrize(
    ("marker", "content", "words"),
    [
        ("/etc/cloud/cloud-init.disabled", "", "cloud-init.disabled"),
        ("/run/cloud-init/disabled", "", "this boot"),
        ("/proc/cmdline", "root=/dev/vda1 cloud-init=disabled quiet\n", "command line"),
    ],
)
def test_disabled_cloud_init_grows_nothing(
    tmp_path: Path, marker: str, content: str, words: str
) -> None:
    files = host(tmp_path)
    files.write(marker, content)

    growth = read_cloud_init_growth(files, PLAIN)

    assert (growth.grows, growth.pending) == ([], [])
    assert words in growth.detail


@pytest.mark.parametrize(
    "dropin",
    [
        "growpart:\n  mode: off\n",  # YAML 1.1: off is the boolean false
        "growpart:\n  mode: 'off'   # the agent does it\n",
        'growpart: {mode: "false"}\n',
        "#cloud-config\ngrowpart:\n    mode: false\n    devices: ['/']\n",
        "growpart: {mode: no, devices: [/]}\n",
        "x-off: &off 'off'\ngrowpart: {mode: *off}\n",  # through an alias
    ],
)
def test_growpart_mode_off_in_a_dropin(tmp_path: Path, dropin: str) -> None:
    files = host(tmp_path, finished=("init",))
    files.write("/etc/cloud/cloud.cfg.d/90-cockpit.cfg", dropin)

    growth = read_cloud_init_growth(files, PLAIN)

    # resizefs still runs, but fills only a partition cloud-init did not grow.
    assert growth.grows == []
    assert "growpart mode is" in growth.detail and "resizefs runs" in growth.detail


def test_growpart_and_resizefs_both_off_wait_for_nothing(tmp_path: Path) -> None:
    files = host(tmp_path)
    files.write("/etc/cloud/cloud.cfg.d/90-off.cfg", "growpart: {mode: 'off'}\nresize_rootfs: no\n")

    growth = read_cloud_init_growth(files, PLAIN)

    assert (growth.grows, growth.pending) == ([], [])
    assert growth.detail == "cloud-init's growpart mode is off and resizefs is off"


# --- merging and the YAML cloud-init reads -----------------------------------------------------


def test_a_later_dropin_wins_and_maps_merge(tmp_path: Path) -> None:
    files = host(tmp_path)
    files.write("/etc/cloud/cloud.cfg.d/10-off.cfg", "growpart:\n  mode: off\n  devices: [/]\n")
    files.write("/etc/cloud/cloud.cfg.d/20-on.cfg", "growpart:\n  mode: growpart\n")

    assert read_cloud_config(files)["growpart"] == {"mode": "growpart", "devices": ["/"]}
    assert read_cloud_init_growth(files, PLAIN).grows == ["partition 1", "the filesystem"]


def test_a_multiline_flow_list_moves_growpart_to_the_config_stage(tmp_path: Path) -> None:
    files = host(tmp_path, finished=("init-local", "init"))
    files.write(
        "/etc/cloud/cloud.cfg.d/50-modules.cfg", (CFG / "dropin-flow-multiline.cfg").read_text()
    )

    growth = read_cloud_init_growth(files, PLAIN)

    assert read_cloud_config(files)["cloud_config_modules"][0] == "growpart"
    assert growth.grows == ["partition 1", "the filesystem"]
    # growpart runs in the config stage now: until it has finished, the agent waits.
    assert growth.pending == ["modules-config"]
    assert "growpart and resizefs run in its modules-config, init stage" in growth.detail


def test_an_anchored_module_list_and_aliased_devices_count(tmp_path: Path) -> None:
    files = Files(tmp_path)
    files.write("/usr/bin/cloud-init", "")
    files.write("/etc/cloud/cloud.cfg", (CFG / "dropin-anchor-alias.cfg").read_text())

    config = read_cloud_config(files)
    growth = read_cloud_init_growth(files, PLAIN)

    assert config["cloud_init_modules"] == ["migrator", "growpart", "resizefs", "users_groups"]
    assert config["growpart"]["devices"] == ["/"]
    assert growth.grows == ["partition 1", "the filesystem"]


@pytest.mark.parametrize(
    "modules",
    [
        "cloud_init_modules:\n- [growpart, always]\n",
        "cloud_init_modules: [migrator, [ cc_growpart, always ]]\n",
        "cloud_init_modules:\n  - 'growpart'\n",
        "cloud_init_modules:\n  - cc-growpart\n",
    ],
)
def test_growpart_entries_in_any_spelling_count(tmp_path: Path, modules: str) -> None:
    files = Files(tmp_path)
    files.write("/usr/bin/cloud-init", "")
    files.write("/etc/cloud/cloud.cfg", modules)

    assert read_cloud_init_growth(files, PLAIN).grows == ["partition 1"]


@pytest.mark.parametrize(
    ("value", "runs", "background"),
    [("false", False, False), ("noblock", True, True), ("0", False, False), ("true", True, False)],
)
def test_resize_rootfs_decides_resizefs(
    tmp_path: Path, value: str, runs: bool, background: bool
) -> None:
    files = host(tmp_path)
    files.write("/etc/cloud/cloud.cfg.d/50-resize.cfg", f"resize_rootfs: {value}\n")

    growth = read_cloud_init_growth(files, PLAIN)

    assert ("the filesystem" in growth.grows) is runs
    assert growth.background_resize is background


# --- which devices growpart names ------------------------------------------------------------


@pytest.mark.parametrize(
    ("chain", "dropin", "grows", "words"),
    [
        (LVM, "growpart:\n  devices: [/, /dev/nvme0n1p3]\n", ["partition 3", "the PV"], ""),
        (LVM, 'growpart: {devices: ["/dev/mapper/vg-root"]}\n', [], "device-mapper root"),
        (PLAIN, "growpart:\n  devices:\n    - /data\n", [], "devices ['/data'] do not name"),
        (PLAIN, "cloud_init_modules: [migrator, resizefs]\n", [], "growpart is not in its module"),
    ],
)
def test_what_growpart_grows_by_its_devices_and_modules(
    tmp_path: Path, chain: RootChain, dropin: str, grows: list[str], words: str
) -> None:
    files = host(tmp_path)
    files.write("/etc/cloud/cloud.cfg.d/50-test.cfg", dropin)

    growth = read_cloud_init_growth(files, chain)

    assert growth.grows == grows
    assert words in growth.detail


def test_a_partition_that_is_not_last_is_grown_by_no_one(tmp_path: Path) -> None:
    assert PLAIN.partition is not None
    chain = PLAIN.model_copy(
        update={"partition": PLAIN.partition.model_copy(update={"followed_by": ["nvme0n1p2"]})}
    )

    growth = read_cloud_init_growth(host(tmp_path), chain)

    assert growth.grows == []
    assert "partition 1 is not the last on its disk" in growth.detail


# --- files cloud-init would not read as configuration -----------------------------------------


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("growpart:\n  mode: [off\n", "not YAML"),
        ("cloud_init_modules:\n - growpart\n  bad: indent\n", "not YAML"),
        ("- growpart\n- resizefs\n", "is a list, not a mapping"),
        ("growpart\n", "is a str, not a mapping"),
        (b"growpart: {mode: \xff}\n", "not YAML"),
    ],
)
def test_a_broken_file_is_the_agents_error_naming_it(
    tmp_path: Path, text: str | bytes, words: str
) -> None:
    files = host(tmp_path)
    path = files.path("/etc/cloud/cloud.cfg.d/60-broken.cfg")
    path.parent.mkdir(parents=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())

    with pytest.raises(AgentError) as caught:
        read_cloud_init_growth(files, PLAIN)

    message = str(caught.value)
    assert message.startswith("/etc/cloud/cloud.cfg.d/60-broken.cfg: cloud-init's configuration")
    assert words in message and "\n" not in message


@pytest.mark.parametrize("text", ["", "#cloud-config\n", "---\n...\n"])
def test_an_empty_file_is_an_empty_mapping(tmp_path: Path, text: str) -> None:
    files = host(tmp_path)
    files.write("/etc/cloud/cloud.cfg.d/70-empty.cfg", text)

    assert read_cloud_init_growth(files, PLAIN).grows == ["partition 1", "the filesystem"]


def test_files_not_named_cfg_are_not_read(tmp_path: Path) -> None:
    files = host(tmp_path)
    files.write("/etc/cloud/cloud.cfg.d/README", "not: [yaml\n")
    files.write("/etc/cloud/cloud.cfg.d/90-off.cfg.disabled", "growpart: {mode: 'off'}\n")

    assert read_cloud_init_growth(files, PLAIN).grows == ["partition 1", "the filesystem"]


def test_an_unreadable_file_is_the_agents_error_naming_it(tmp_path: Path) -> None:
    files = host(tmp_path)
    files.path("/etc/cloud/cloud.cfg").unlink()
    files.path("/etc/cloud/cloud.cfg").mkdir()

    with pytest.raises(AgentError, match=r"^/etc/cloud/cloud.cfg: cannot read .*: Is a directory$"):
        read_cloud_init_growth(files, PLAIN)
