"""Network links, addresses and the default route, read through netlink (pyroute2)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class Address(BaseModel):
    """An IP address on a link."""

    model_config = ConfigDict(frozen=True)

    address: str
    prefixlen: int
    family: int


class Link(BaseModel):
    """A network link with what the steps need to recognise it."""

    model_config = ConfigDict(frozen=True)

    index: int
    name: str
    mac: str | None
    permanent_mac: str | None
    kind: str | None
    master: str | None
    operstate: str
    addresses: list[Address] = []
    default_route: bool = False

    @property
    def up(self) -> bool:
        """Whether the link passes traffic (UNKNOWN: a device that reports no carrier)."""
        return self.operstate in ("UP", "UNKNOWN")

    @property
    def hardware_mac(self) -> str | None:
        """The MAC the device was made with; a bridge can copy the current one, not this."""
        return self.permanent_mac or self.mac


def _kind(msg: Any) -> str | None:
    info = msg.get_attr("IFLA_LINKINFO")
    return info.get_attr("IFLA_INFO_KIND") if info is not None else None


def read_links(netns: str | None = None) -> list[Link]:
    """Every link with its addresses; `netns` reads inside a named network namespace."""
    from pyroute2 import IPRoute, NetNS  # noqa: PLC0415 - keep `status` free of pyroute2

    ipr = NetNS(netns) if netns else IPRoute()
    try:
        raw_links = list(ipr.get_links())
        raw_addrs = list(ipr.get_addr())
        routes = list(ipr.get_default_routes())
    finally:
        ipr.close()
    names = {m["index"]: m.get_attr("IFLA_IFNAME") for m in raw_links}
    default_ifs = {r.get_attr("RTA_OIF") for r in routes}
    addrs: dict[int, list[Address]] = {}
    for a in raw_addrs:
        addrs.setdefault(a["index"], []).append(
            Address(address=a.get_attr("IFA_ADDRESS"), prefixlen=a["prefixlen"], family=a["family"])
        )
    result = []
    for m in raw_links:
        master = m.get_attr("IFLA_MASTER")
        result.append(
            Link(
                index=m["index"],
                name=m.get_attr("IFLA_IFNAME"),
                mac=m.get_attr("IFLA_ADDRESS"),
                permanent_mac=m.get_attr("IFLA_PERM_ADDRESS"),
                kind=_kind(m),
                master=names.get(master) if master else None,
                operstate=m.get_attr("IFLA_OPERSTATE") or "UNKNOWN",
                addresses=addrs.get(m["index"], []),
                default_route=m["index"] in default_ifs,
            )
        )
    return result


def link_by_mac(links: list[Link], mac: str) -> Link | None:
    """The physical link whose hardware MAC is `mac` (bridges and other virtual links skipped)."""
    mac = mac.lower()
    for link in links:
        if link.kind in (None, "veth") and (link.hardware_mac or "").lower() == mac:
            return link
    return None
