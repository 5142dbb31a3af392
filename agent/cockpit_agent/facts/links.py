"""Network links, addresses and the default route (read through host.netlink), and how the
steps find the physical link of a MAC."""

from __future__ import annotations

from cockpit_agent.host.netlink import Address, Link, read_links

__all__ = ["Address", "Link", "link_by_mac", "read_links"]


def link_by_mac(links: list[Link], mac: str) -> Link | None:
    """The physical link whose hardware MAC is `mac` (bridges and other virtual links skipped)."""
    mac = mac.lower()
    for link in links:
        if link.kind in (None, "veth") and (link.hardware_mac or "").lower() == mac:
            return link
    return None
