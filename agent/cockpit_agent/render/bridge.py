"""The desired LNI bridge as a plain value: the input of every network-manager renderer."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface

HEADER = "Written by cockpit-agent (lni step); edits are overwritten. See docs/networking.md."


@dataclass(frozen=True)
class StaticAddress:
    """A fixed IPv4 configuration of the bridge (instead of DHCP)."""

    address: IPv4Interface
    gateway: IPv4Address | None = None
    dns: tuple[IPv4Address, ...] = ()


@dataclass(frozen=True)
class BridgeSpec:
    """A bridge that carries the LNI's MAC, with the LNI as its only port.

    `port` is the LNI's kernel name, `port_mac` its hardware MAC; `port_mac_permanent` says
    whether the kernel reports it as the permanent address (a renderer then matches on that,
    which the bridge, carrying the same MAC, can never match).
    """

    bridge: str
    port: str
    port_mac: str
    port_mac_permanent: bool = True
    static: StaticAddress | None = None
    route_metric: int = 200
    proxy_arp: bool = False

    @property
    def mac(self) -> str:
        """The bridge's own MAC: the LNI's, so DHCP reservations and port security still match."""
        return self.port_mac

    @property
    def dhcp(self) -> bool:
        """Whether the bridge gets its address by DHCP."""
        return self.static is None


@dataclass(frozen=True)
class RenderedFile:
    """One file a renderer produces: absolute host path, content and permission bits."""

    path: str
    content: str
    mode: int = 0o644
