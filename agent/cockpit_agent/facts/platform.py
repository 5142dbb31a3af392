"""What kind of host this is: OS family, package manager, network manager, init system."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from cockpit_agent.host.files import Files

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
    files = Files(root)
    text = files.read_bytes("/etc/os-release")
    if text is None:
        text = files.read_bytes("/usr/lib/os-release")
    release = parse_os_release(text.decode(errors="replace")) if text is not None else {}
    package_manager: Literal["apt", "dnf", "yum"] | None = None
    tools: tuple[Literal["apt", "dnf", "yum"], ...] = ("apt", "dnf", "yum")
    for tool in tools:
        if files.exists(f"/usr/bin/{tool}"):
            package_manager = tool
            break
    return Platform(
        os_id=release.get("ID", "unknown"),
        os_version=release.get("VERSION_ID", ""),
        os_family=os_family(release),
        pretty_name=release.get("PRETTY_NAME", "unknown"),
        package_manager=package_manager,
        network_manager=_network_manager(files),
        netplan=bool(files.glob("/etc/netplan", "*.yaml")),
        init="systemd" if files.is_dir("/run/systemd/system") else "other",
        cloud_init=files.exists("/usr/bin/cloud-init")
        and not files.exists("/etc/cloud/cloud-init.disabled"),
    )


def _network_manager(files: Files) -> Literal["networkd", "NetworkManager", "ifupdown"] | None:
    """The manager that is running now, from the runtime directories each one keeps."""
    if files.is_dir("/run/NetworkManager/devices") or files.exists(
        "/run/NetworkManager/NetworkManager.pid"
    ):
        return "NetworkManager"
    if files.is_dir("/run/systemd/netif/links") and files.listdir("/run/systemd/netif/links"):
        return "networkd"
    if files.exists("/run/network/ifstate") or files.is_dir("/run/network"):
        return "ifupdown"
    return None
