"""packaging/ami/bake.sh chooses the OS family exactly as the agent does (facts/platform.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from cockpit_agent.facts.platform import _FAMILY, os_family, parse_os_release

BAKE = Path(__file__).resolve().parents[2] / "packaging" / "ami" / "bake.sh"

# The os-release lines that decide, as the stock AMIs of each OS ship them.
RELEASES = {
    "debian-12": 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n',
    "ubuntu-24.04": 'PRETTY_NAME="Ubuntu 24.04 LTS"\nID=ubuntu\nID_LIKE=debian\n'
    'VERSION_ID="24.04"\n',
    "rhel-9": 'NAME="Red Hat Enterprise Linux"\nID="rhel"\nID_LIKE="fedora"\nVERSION_ID="9.4"\n',
    "rocky-9": 'NAME="Rocky Linux"\nID="rocky"\nID_LIKE="rhel centos fedora"\nVERSION_ID="9.4"\n',
    "al2023": 'NAME="Amazon Linux"\nID="amzn"\nID_LIKE="fedora"\nVERSION_ID="2023"\n',
    "alma-9": 'ID="almalinux"\nID_LIKE="rhel centos fedora"\nVERSION_ID="9.4"\n',
    "centos-stream": 'ID="centos"\nID_LIKE="rhel fedora"\nVERSION_ID="9"\n',
    "mint": "ID=linuxmint\nID_LIKE='ubuntu debian'\n",
    "opensuse": 'ID="opensuse-leap"\nID_LIKE="suse opensuse"\n',
    "empty": "",
    # Every word the agent knows, alone as ID and as the only ID_LIKE of an unknown ID.
    **{f"id-{word}": f"ID={word}\n" for word in _FAMILY},
    **{f"like-{word}": f"ID=other\nID_LIKE={word}\n" for word in _FAMILY},
}
PACKAGE_MANAGER = {"debian": "apt", "rhel": "dnf", "amazon": "dnf", "unknown": "none"}


@pytest.mark.parametrize("name", sorted(RELEASES))
def test_bake_family_is_the_agents(name: str, tmp_path: Path) -> None:
    release = tmp_path / "os-release"
    release.write_text(RELEASES[name])
    proc = subprocess.run(
        ["sh", str(BAKE), "--print-family", str(release)],
        capture_output=True,
        text=True,
        check=True,
    )
    family = os_family(parse_os_release(RELEASES[name]))
    assert proc.stdout.split() == [family, PACKAGE_MANAGER[family]]


def test_the_stock_amis_have_the_families_the_bake_supports() -> None:
    expected = {
        "debian-12": "debian",
        "ubuntu-24.04": "debian",
        "rhel-9": "rhel",
        "rocky-9": "rhel",
        "al2023": "amazon",
    }
    assert {k: os_family(parse_os_release(RELEASES[k])) for k in expected} == expected
