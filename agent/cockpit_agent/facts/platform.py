"""What kind of host this is: OS family, package manager, network manager, init system."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

OsFamily = Literal["debian", "rhel", "amazon", "unknown"]

# os-release ID / ID_LIKE words -> family. Amazon Linux is its own family: it has dnf but
# not the Cockpit/libvirt packages the virt step needs.
_FAMILY: dict[str, OsFamily] = {
    "debian": "debian",
    "ubuntu": "debian",
    "amzn": "amazon",
    "rhel": "rhel",
    "fedora": "rhel",
    "centos": "rhel",
    "rocky": "rhel",
    "almalinux": "rhel",
}


class Platform(BaseModel):
    """The host's OS and the managers the agent must go through."""

    model_config = ConfigDict(frozen=True)

    os_id: str
    os_version: str
    os_family: OsFamily
    pretty_name: str
    package_manager: Literal["apt", "dnf", "yum"] | None
    network_manager: Literal["networkd", "NetworkManager", "ifupdown"] | None
    netplan: bool
    init: Literal["systemd", "other"]
    cloud_init: bool


def parse_os_release(text: str) -> dict[str, str]:
    """os-release is shell-quoted KEY=value lines."""
    result = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        try:
            parts = shlex.split(value) if value else [""]
        except ValueError:  # an unbalanced quote: the value as written
            parts = [value]
        result[key] = parts[0] if parts else ""
    return result


def os_family(release: dict[str, str]) -> OsFamily:
    """The family from ID, then ID_LIKE in order."""
    for word in [release.get("ID", ""), *release.get("ID_LIKE", "").split()]:
        if word in _FAMILY:
            return _FAMILY[word]
    return "unknown"


def read_platform(root: Path = Path("/")) -> Platform:
    """Read the platform from files under `root` (tests point it at a fixture tree)."""
    release_file = root / "etc/os-release"
    if not release_file.exists():
        release_file = root / "usr/lib/os-release"
    release = (
        parse_os_release(release_file.read_text(errors="replace")) if release_file.exists() else {}
    )
    package_manager: Literal["apt", "dnf", "yum"] | None = None
    tools: tuple[Literal["apt", "dnf", "yum"], ...] = ("apt", "dnf", "yum")
    for tool in tools:
        if (root / "usr/bin" / tool).exists():
            package_manager = tool
            break
    return Platform(
        os_id=release.get("ID", "unknown"),
        os_version=release.get("VERSION_ID", ""),
        os_family=os_family(release),
        pretty_name=release.get("PRETTY_NAME", "unknown"),
        package_manager=package_manager,
        network_manager=_network_manager(root),
        netplan=any((root / "etc/netplan").glob("*.yaml")),
        init="systemd" if (root / "run/systemd/system").is_dir() else "other",
        cloud_init=(root / "usr/bin/cloud-init").exists()
        and not (root / "etc/cloud/cloud-init.disabled").exists(),
    )


def _network_manager(root: Path) -> Literal["networkd", "NetworkManager", "ifupdown"] | None:
    """The manager that is running now, from the runtime directories each one keeps."""
    if (root / "run/NetworkManager/devices").is_dir() or (
        root / "run/NetworkManager/NetworkManager.pid"
    ).exists():
        return "NetworkManager"
    if (root / "run/systemd/netif/links").is_dir() and any(
        (root / "run/systemd/netif/links").iterdir()
    ):
        return "networkd"
    if (root / "run/network/ifstate").exists() or (root / "run/network").is_dir():
        return "ifupdown"
    return None
