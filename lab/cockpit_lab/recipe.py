"""What the lab's images are made of, and the hash that keys their cache.

An image is built in two layers (build.py). The OS, a stock image of its variant, is keyed by
this recipe, the build code and the guest files under lab/guest: nothing that changes with the
agent. The agent goes in by the AMI bake (packaging/ami/bake.sh) with the .deb built from the
checkout, a second layer keyed by the OS image, the package and the bake script.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

LAB_DIR = Path(__file__).resolve().parent.parent
REPO_DIR = LAB_DIR.parent
GUEST_DIR = LAB_DIR / "guest"
CACHE_DIR = Path(os.environ.get("COCKPIT_LAB_CACHE", "/var/cache/cockpit-agent-lab"))

# The fixed MACs of the guest's NICs; the IMDS tree and the guest's network files use them.
MGMT_MAC = "52:54:00:c0:c0:00"
LNI_MAC = "52:54:00:c0:c0:01"
MGMT_NET = "10.0.2.0/24"
LNI_NET = "10.0.3.0/24"
# QEMU's user network hands out .15 as the first DHCP address.
MGMT_GUEST_IP = "10.0.2.15"
LNI_GUEST_IP = "10.0.3.15"

BASE_PACKAGES = (
    "linux-image-amd64",
    "grub-pc",
    "initramfs-tools",
    "zstd",
    "systemd",
    "systemd-sysv",
    "udev",
    "dbus",
    "kmod",
    "procps",
    "mdadm",
    "lvm2",
    "cloud-guest-utils",
    "fdisk",
    "gdisk",
    "parted",
    "e2fsprogs",
    "xfsprogs",
    "iproute2",
    "iputils-ping",
    "netbase",
    "openssh-server",
    "ca-certificates",
    "curl",
    "nvme-cli",
    "less",
    "python3",
    "python3-venv",
    "python3-systemd",
    "sudo",
    "busybox",  # initramfs-tools uses it when present, as on a stock Debian host
)

# What the agent's virt step installs on Debian (agent/cockpit_agent/config.py,
# DEFAULT_PACKAGES["debian"]); the lab can only copy it, it imports nothing from the agent.
VIRT_PACKAGES = (
    "cockpit",
    "cockpit-machines",
    "libvirt-daemon-system",
    "libvirt-clients",
    "libvirt-dbus",
    "qemu-system-x86",
    "qemu-utils",
    "virtinst",
)

# What each network stack adds to the image. "networkd": systemd-networkd with the lab's own
# .network files (lab/guest/networkd), as on the lab's first images. "netplan": netplan.io
# over networkd, its YAML written by cloud-init from IMDS (50-cloud-init.yaml, NICs matched by
# MAC), as on Ubuntu and Debian cloud images. "networkmanager": NetworkManager, its keyfiles
# written by cloud-init, as on RHEL, Rocky and Amazon Linux-style hosts.
NETWORK_PACKAGES = {
    "networkd": (),
    "netplan": ("netplan.io",),
    "networkmanager": ("network-manager",),
}
# cloud-init as an EC2 AMI has it; isc-dhcp-client is what its EC2 datasource uses for the
# ephemeral DHCP lease of its local stage (before the network is up); locales, with the
# default locale generated at build time, is what cloud-init's locale module expects.
CLOUD_INIT_PACKAGES = ("cloud-init", "isc-dhcp-client", "locales")
CLOUD_INIT_LOCALE = "en_US.UTF-8"


@dataclass(frozen=True)
class Recipe:
    """The inputs of one base image."""

    suite: str = "bookworm"
    mirror: str = "http://deb.debian.org/debian"
    security_mirror: str = "http://deb.debian.org/debian-security"
    variant: str = "base"
    root_layout: str = "plain"  # or "lvm"
    cloud_init: bool = False
    network: str = "networkd"  # a key of NETWORK_PACKAGES
    # The virtualisation stack: "bake" (the AMI bake installs it), "first-boot" (only its .debs
    # in the image's apt cache: the agent installs it at first boot) or "none".
    virt: str = "first-boot"
    packages: tuple[str, ...] = BASE_PACKAGES
    virt_packages: tuple[str, ...] = VIRT_PACKAGES
    disk_size: str = "4G"
    root_size: str = "2G"
    hostname: str = "cockpit-lab"

    def digest(self) -> str:
        """Hash of the recipe, the build code and the guest files."""
        h = hashlib.sha256()
        h.update(json.dumps(asdict(self), sort_keys=True).encode())
        for path in _hashed_files():
            rel = path.relative_to(LAB_DIR).as_posix()
            h.update(f"\0{rel}\0{path.stat().st_mode & 0o777:o}\0".encode())
            h.update(path.read_bytes())
        return h.hexdigest()[:16]


# The admins' monitoring on the stock image: Debian's node_exporter, whose textfile collector
# serves the metrics `cockpit-agent check --prometheus` writes (tests/e2e/test_monitoring.py).
MONITORING = ("prometheus-node-exporter",)

# Image variants. "base": no cloud-init, networkd with the lab's own files, the
# virtualisation packages only in its apt cache (the scenario about installing them installs
# from there, never from a mirror). "stock": what users bake from, a stock EC2 AMI: cloud-init
# active (EC2 datasource from the lab's SMBIOS identity and IMDS), netplan over networkd,
# node_exporter; its bake installs the virtualisation packages. "lvm": the root filesystem on
# an LVM logical volume (labvg/root) whose PV is the disk's last partition, cloud-init active,
# NetworkManager, as RHEL-family AMIs are laid out; no virtualisation stack.
VARIANTS: dict[str, Recipe] = {
    "base": Recipe(),
    "stock": Recipe(
        cloud_init=True, network="netplan", virt="bake", packages=BASE_PACKAGES + MONITORING
    ),
    "lvm": Recipe(root_layout="lvm", cloud_init=True, network="networkmanager", virt="none"),
}


def _hashed_files() -> list[Path]:
    code = [LAB_DIR / "cockpit_lab" / name for name in ("recipe.py", "build.py", "chroot.py")]
    guest = [p for p in GUEST_DIR.rglob("*") if p.is_file()]
    return sorted(code + guest)


def default_recipe(variant: str = "base") -> Recipe:
    """The recipe of an image variant (a key of VARIANTS)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown lab image variant {variant!r} (known: {', '.join(VARIANTS)})")
    return replace(VARIANTS[variant], variant=variant)
