"""The LNI step's actions: frozen values with an imperative name and a one-line description.

Network actions say which links and MACs they touch (`touches()`), so the step can refuse,
before doing anything, an action that would touch the management interface. They change the
network together: `SnapshotNetwork` comes first and records what a rollback puts back, and a
network action that fails rolls back every one before it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cockpit_agent.render.bridge import RenderedFile

Manager = Literal["networkd", "NetworkManager", "netplan", "none"]

MANAGER_LABEL: dict[Manager, str] = {
    "networkd": "systemd-networkd",
    "NetworkManager": "NetworkManager",
    "netplan": "netplan",
    "none": "netlink (no network manager)",
}


@dataclass(frozen=True)
class SnapshotNetwork:
    """Record the files and links the network actions after it change (their content and
    mode; the LNI's and the bridge's state), so that a failure puts them back."""

    manager: Manager
    bridge: str
    port: str
    files: tuple[str, ...]

    def touches(self) -> tuple[str, ...]:
        """Nothing: it only reads."""
        return ()

    def describe(self) -> str:
        """One line."""
        files = f"{', '.join(self.files)} and " if self.files else ""
        return f"snapshot {files}links {self.port} and {self.bridge} for rollback"


@dataclass(frozen=True)
class WriteNetworkFiles:
    """Write the rendered bridge configuration for the host's network manager."""

    manager: Manager
    files: tuple[RenderedFile, ...]
    port: str
    port_mac: str

    def touches(self) -> tuple[str, ...]:
        return (self.port, self.port_mac)

    def describe(self) -> str:
        paths = ", ".join(f.path for f in self.files)
        return f"write {MANAGER_LABEL[self.manager]} configuration: {paths}"


@dataclass(frozen=True)
class ApplyNetworkConfig:
    """Have the network manager load the files and reconfigure the LNI and the bridge."""

    manager: Manager
    bridge: str
    port: str

    def touches(self) -> tuple[str, ...]:
        return (self.bridge, self.port)

    def describe(self) -> str:
        return f"apply through {MANAGER_LABEL[self.manager]}: {self.port} into {self.bridge}"


@dataclass(frozen=True)
class CreateBridge:
    """Create the bridge carrying the LNI's MAC."""

    bridge: str
    mac: str

    def touches(self) -> tuple[str, ...]:
        return (self.bridge,)

    def describe(self) -> str:
        return f"create bridge {self.bridge} with MAC {self.mac}"


@dataclass(frozen=True)
class SetBridgeMac:
    """Give an existing bridge the LNI's MAC."""

    bridge: str
    mac: str

    def touches(self) -> tuple[str, ...]:
        return (self.bridge,)

    def describe(self) -> str:
        return f"set the MAC of {self.bridge} to {self.mac}"


@dataclass(frozen=True)
class EnslaveLink:
    """Make the LNI a port of the bridge (its IPv4 addresses leave it)."""

    port: str
    port_mac: str
    bridge: str

    def touches(self) -> tuple[str, ...]:
        return (self.port, self.port_mac, self.bridge)

    def describe(self) -> str:
        return f"enslave {self.port} ({self.port_mac}) to {self.bridge}"


@dataclass(frozen=True)
class StartDhcpClient:
    """Run a DHCP client on the bridge (hosts without a network manager)."""

    bridge: str
    route_metric: int

    def touches(self) -> tuple[str, ...]:
        return (self.bridge,)

    def describe(self) -> str:
        return f"start dhclient on {self.bridge} (route metric {self.route_metric})"


@dataclass(frozen=True)
class AddBridgeAddress:
    """Put the configured static address (and default route) on the bridge."""

    bridge: str
    address: str
    gateway: str | None
    route_metric: int

    def touches(self) -> tuple[str, ...]:
        return (self.bridge,)

    def describe(self) -> str:
        via = f", default route via {self.gateway}" if self.gateway else ""
        return f"add {self.address} to {self.bridge}{via}"


@dataclass(frozen=True)
class AwaitBridgeAddress:
    """Wait for the bridge's IPv4 address; without one in time, roll everything back."""

    bridge: str
    timeout: float

    def touches(self) -> tuple[str, ...]:
        return (self.bridge,)

    def describe(self) -> str:
        return f"wait up to {self.timeout:g} s for an IPv4 address on {self.bridge}"


@dataclass(frozen=True)
class EnableProxyArp:
    """mode route: answer ARP on the LAN for the VMs' block (net.ipv4.conf.<bridge>.proxy_arp)."""

    bridge: str

    def describe(self) -> str:
        """One line."""
        return f"enable proxy ARP on {self.bridge}"


@dataclass(frozen=True)
class MaskEc2NetUtilsUnits:
    """Take the LNI (only) out of amazon-ec2-net-utils' hands by masking its per-NIC units."""

    port: str
    units: tuple[str, ...]

    def describe(self) -> str:
        """One line."""
        return f"mask amazon-ec2-net-utils units for {self.port}: {', '.join(self.units)}"


# The actions that change the LNI's network state, each checked against the management
# interface before it runs, and rolled back together.
NetworkAction = (
    SnapshotNetwork
    | WriteNetworkFiles
    | ApplyNetworkConfig
    | CreateBridge
    | SetBridgeMac
    | EnslaveLink
    | StartDhcpClient
    | AddBridgeAddress
    | AwaitBridgeAddress
)
LniAction = MaskEc2NetUtilsUnits | NetworkAction | EnableProxyArp
