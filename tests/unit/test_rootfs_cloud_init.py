"""Whether cloud-init grows the root at boot: installed, enabled, and its growpart config."""

from __future__ import annotations

from pathlib import Path

import pytest

from cockpit_agent.facts.rootfs_cloud_init import parse_cloud_config, read_cloud_init_growth
from cockpit_agent.host.files import Files

DEBIAN_CFG = Path(__file__).resolve().parent.parent / "fixtures" / "rootfs" / "cloud-init"
ROOT = ["/", "/dev/nvme0n1p1"]


@pytest.fixture
def host(tmp_path: Path) -> Files:
    """A host with cloud-init installed and Debian 12's packaged cloud.cfg."""
    files = Files(tmp_path)
    files.write("/usr/bin/cloud-init", "")
    files.write("/etc/cloud/cloud.cfg", (DEBIAN_CFG / "debian12.cfg").read_text())
    return files


def test_debian_cloud_cfg_grows_the_root(host: Files) -> None:
    growth = read_cloud_init_growth(host, ROOT)

    assert growth.growpart and growth.resizefs
    assert "mode auto" in growth.detail


def test_not_installed_means_not_active(host: Files) -> None:
    host.path("/usr/bin/cloud-init").unlink()

    growth = read_cloud_init_growth(host, ROOT)

    assert not growth.growpart and not growth.resizefs
    assert "not installed" in growth.detail


@pytest.mark.parametrize(
    ("marker", "content", "words"),
    [
        ("/etc/cloud/cloud-init.disabled", "", "cloud-init.disabled"),
        ("/run/cloud-init/disabled", "", "this boot"),
        ("/proc/cmdline", "root=/dev/vda1 cloud-init=disabled quiet\n", "command line"),
    ],
)
def test_disabled_cloud_init_is_not_active(
    host: Files, marker: str, content: str, words: str
) -> None:
    host.write(marker, content)

    growth = read_cloud_init_growth(host, ROOT)

    assert not growth.growpart
    assert words in growth.detail


@pytest.mark.parametrize(
    "dropin",
    [
        "growpart:\n  mode: off\n",
        "growpart:\n  mode: 'off'   # the agent does it\n",
        'growpart: {mode: "false"}\n',
        "#cloud-config\ngrowpart:\n    mode: false\n    devices: ['/']\n",
        "growpart: {mode: no, devices: [/]}\n",
    ],
)
def test_growpart_mode_off_in_a_dropin_is_not_active(host: Files, dropin: str) -> None:
    host.write("/etc/cloud/cloud.cfg.d/90-cockpit.cfg", dropin)

    growth = read_cloud_init_growth(host, ROOT)

    assert not growth.growpart
    assert "mode is" in growth.detail


def test_a_later_dropin_wins_and_maps_merge(host: Files) -> None:
    host.write("/etc/cloud/cloud.cfg.d/10-off.cfg", "growpart:\n  mode: off\n  devices: [/]\n")
    host.write("/etc/cloud/cloud.cfg.d/20-on.cfg", "growpart:\n  mode: growpart\n")

    growth = read_cloud_init_growth(host, ROOT)

    assert growth.growpart
    assert "mode growpart" in growth.detail


def test_growpart_devices_without_the_root_is_not_active(host: Files) -> None:
    host.write("/etc/cloud/cloud.cfg.d/50-data.cfg", "growpart:\n  devices:\n    - /data\n")

    assert not read_cloud_init_growth(host, ROOT).growpart
    assert read_cloud_init_growth(host, ["/data"]).growpart


def test_growpart_devices_may_name_the_root_partition(host: Files) -> None:
    host.write("/etc/cloud/cloud.cfg.d/50-dev.cfg", 'growpart: {devices: ["/dev/nvme0n1p1"]}\n')

    assert read_cloud_init_growth(host, ROOT).growpart
    assert not read_cloud_init_growth(host, ["/", "/dev/sda1"]).growpart


def test_growpart_missing_from_the_module_lists_is_not_active(host: Files) -> None:
    host.write(
        "/etc/cloud/cloud.cfg.d/50-modules.cfg",
        "cloud_init_modules:\n - migrator\n - resizefs\n",
    )

    growth = read_cloud_init_growth(host, ROOT)

    assert not growth.growpart and growth.resizefs
    assert "not in cloud-init's module lists" in growth.detail


@pytest.mark.parametrize(
    "modules",
    [
        "cloud_init_modules:\n- [growpart, always]\n",
        "cloud_init_modules: [migrator, [ cc_growpart, always ]]\n",
        "cloud_config_modules:\n  - 'growpart'\n",
        "cloud_final_modules:\n  - cc-growpart\n",
    ],
)
def test_growpart_entries_in_any_spelling_count(tmp_path: Path, modules: str) -> None:
    files = Files(tmp_path)
    files.write("/usr/bin/cloud-init", "")
    files.write("/etc/cloud/cloud.cfg", modules)

    assert read_cloud_init_growth(files, ROOT).growpart


@pytest.mark.parametrize(("value", "active"), [("false", False), ("noblock", True), ("0", False)])
def test_resize_rootfs_decides_resizefs(host: Files, value: str, active: bool) -> None:
    host.write("/etc/cloud/cloud.cfg.d/50-resize.cfg", f"resize_rootfs: {value}\n")

    assert read_cloud_init_growth(host, ROOT).resizefs is active


def test_parser_keeps_structure_past_what_it_does_not_understand() -> None:
    text = (
        "write_files:\n"
        "  - path: /etc/x\n"
        "    content: |\n"
        "      growpart: {mode: auto}\n"
        "      - not: a list\n"
        "runcmd:\n"
        "  - echo 'a # b'\n"
        "growpart:\n"
        "  mode: off\n"
    )

    config = parse_cloud_config(text)

    assert config["growpart"] == {"mode": "off"}
    assert config["runcmd"] == ["echo 'a # b'"]
    assert set(config) == {"write_files", "runcmd", "growpart"}


@pytest.mark.parametrize("text", ["", "#cloud-config\n", "- a\n- b\n", "{[", "a: [b, {c", ":::"])
def test_parser_returns_a_map_for_anything(text: str) -> None:
    assert isinstance(parse_cloud_config(text), dict)
