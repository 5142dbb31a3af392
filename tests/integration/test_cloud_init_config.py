"""The agent reads cloud-init's configuration as cloud-init does: its merge of cloud.cfg and
cloud.cfg.d/*.cfg is the one cloud-init's own `read_conf_with_confd` returns, for the five
distributions' files and drop-ins in each style. cloud-init's code is Debian 12's package,
unpacked by tests/install-deps.sh (never installed: its units must not run here), run by
Debian's python3 with the libraries it imports."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from cockpit_agent.errors import AgentError
from cockpit_agent.facts.rootfs_cloud_init import read_cloud_config
from cockpit_agent.host.files import Files

pytestmark = pytest.mark.integration

UNPACKED = Path("/var/cache/cockpit-agent-deps/cloud-init/usr/lib/python3/dist-packages")
CFG = Path(__file__).resolve().parents[1] / "fixtures" / "rootfs" / "cloud-init"
DISTROS = ["debian12", "ubuntu-22.04", "ubuntu-24.04", "rhel9", "amazonlinux2023"]
DROPINS = {
    "10-flow.cfg": (CFG / "dropin-flow-multiline.cfg").read_text(),
    "20-anchor.cfg": (CFG / "dropin-anchor-alias.cfg").read_text(),
    "50-growpart.cfg": "growpart:\n  mode: off\n  devices: [/, /dev/nvme0n1p3]\n",
    "60-resize.cfg": "#cloud-config\nresize_rootfs: noblock\n",
    "90-on.cfg": "growpart: {mode: growpart}\n",
}
READ = (
    "import json, sys; from cloudinit import util; "
    "print(json.dumps(util.read_conf_with_confd(sys.argv[1]), default=str))"
)


def cloud_inits_merge(etc_cloud: Path) -> dict[str, Any]:
    """What cloud-init's own code makes of etc_cloud/cloud.cfg and its cloud.cfg.d."""
    if not (UNPACKED / "cloudinit").is_dir():
        message = f"no cloud-init code in {UNPACKED} (tests/install-deps.sh integration)"
        if os.environ.get("COCKPIT_TEST_REQUIRE_TOOLS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    proc = subprocess.run(
        ["/usr/bin/python3", "-c", READ, str(etc_cloud / "cloud.cfg")],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(UNPACKED), "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    merged: dict[str, Any] = json.loads(proc.stdout)
    return merged


def ours(root: Path) -> dict[str, Any]:
    merged: dict[str, Any] = json.loads(json.dumps(read_cloud_config(Files(root)), default=str))
    return merged


def host(tmp_path: Path, distro: str, dropins: dict[str, str]) -> Path:
    etc_cloud = tmp_path / "etc" / "cloud"
    (etc_cloud / "cloud.cfg.d").mkdir(parents=True)
    (etc_cloud / "cloud.cfg").write_text((CFG / f"{distro}.cfg").read_text())
    for name, text in dropins.items():
        (etc_cloud / "cloud.cfg.d" / name).write_text(text)
    return etc_cloud


@pytest.mark.parametrize("distro", DISTROS)
def test_each_distros_file_alone(tmp_path: Path, distro: str) -> None:
    etc_cloud = host(tmp_path, distro, {})

    assert ours(tmp_path) == cloud_inits_merge(etc_cloud)


@pytest.mark.parametrize("distro", DISTROS)
def test_with_dropins_in_each_style(tmp_path: Path, distro: str) -> None:
    etc_cloud = host(tmp_path, distro, DROPINS)

    merged = ours(tmp_path)

    assert merged == cloud_inits_merge(etc_cloud)
    assert merged["growpart"] == {"mode": "growpart", "devices": ["/", "/dev/nvme0n1p3"]}
    assert merged["cloud_config_modules"][0] == "growpart"


def test_a_broken_dropin_is_skipped_by_cloud_init_and_refused_by_the_agent(
    tmp_path: Path,
) -> None:
    etc_cloud = host(tmp_path, "debian12", {"90-off.cfg": "growpart:\n  mode: [off\n"})

    theirs = cloud_inits_merge(etc_cloud)

    # cloud-init logs a warning and goes on as if the file were empty: growpart stays on,
    # which is not what whoever wrote the file wanted. The agent names the file instead.
    assert "growpart" not in theirs
    assert theirs == cloud_inits_merge(host(tmp_path / "clean", "debian12", {}))
    with pytest.raises(AgentError, match=r"90-off\.cfg: cloud-init's configuration is not YAML"):
        read_cloud_config(Files(tmp_path))
