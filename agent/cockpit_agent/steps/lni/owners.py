"""Who else configures the LNI: cloud-init's EC2 network config and amazon-ec2-net-utils.

Neither is disabled: the agent's files take precedence for the LNI only (networkd: a name that
sorts first; netplan: a later file merged over cloud-init's; NetworkManager: a higher
autoconnect-priority), and amazon-ec2-net-utils' per-interface units are masked for the LNI.
"""

from __future__ import annotations

from dataclasses import dataclass

from cockpit_agent.host.files import Files

EC2_NET_UTILS_MARKERS = (
    "/usr/lib/systemd/system/policy-routes@.service",
    "/lib/systemd/system/policy-routes@.service",
    "/etc/systemd/network/80-ec2.network",
    "/usr/lib/systemd/network/80-ec2.network",
)
CLOUD_INIT_NETWORK = (
    "/etc/netplan/50-cloud-init.yaml",
    "/etc/systemd/network/10-cloud-init-eth0.network",
    "/etc/NetworkManager/system-connections/cloud-init-eth0.nmconnection",
)


@dataclass(frozen=True)
class Owners:
    """The other tools found configuring interfaces, and the per-LNI units still live."""

    cloud_init: bool = False
    ec2_net_utils: bool = False
    unmasked_units: tuple[str, ...] = ()

    @property
    def names(self) -> list[str]:
        """Their names, for the summary."""
        found = []
        if self.cloud_init:
            found.append("cloud-init")
        if self.ec2_net_utils:
            found.append("amazon-ec2-net-utils")
        return found


def ec2_net_utils_units(port: str) -> tuple[str, ...]:
    """amazon-ec2-net-utils' units for one interface."""
    return (f"policy-routes@{port}.service", f"refresh-policy-routes@{port}.timer")


def _masked(files: Files, unit: str) -> bool:
    return files.link_target(f"/etc/systemd/system/{unit}") == "/dev/null"


def _cloud_init_network(files: Files) -> bool:
    if any(files.exists(p) for p in CLOUD_INIT_NETWORK):
        return True
    return bool(
        files.glob("/etc/NetworkManager/system-connections", "cloud-init-*")
        or files.glob("/run/systemd/network", "10-netplan-*")
    )


def detect_owners(files: Files, port: str) -> Owners:
    """What is on this host besides the agent that configures the LNI."""
    ec2 = any(files.exists(p) for p in EC2_NET_UTILS_MARKERS)
    unmasked = tuple(u for u in ec2_net_utils_units(port) if not _masked(files, u)) if ec2 else ()
    return Owners(cloud_init=_cloud_init_network(files), ec2_net_utils=ec2, unmasked_units=unmasked)
