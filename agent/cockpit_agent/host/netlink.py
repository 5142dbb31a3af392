"""Links through netlink (pyroute2), optionally inside a named network namespace.

Reading every link with its addresses (the facts' `links`), and the live changes of the LNI
step for hosts without a network manager (and for the manager paths' rollback): build a
bridge with a given MAC, enslave a port, move IPv4 state, and snapshot / restore one link's
IPv4 addresses and routes. Every function takes `netns` (None = this namespace) and opens and
closes its own netlink socket.
"""

from __future__ import annotations

import importlib
import importlib.util
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict

from cockpit_agent.errors import AgentError

RTPROT_KERNEL = 2


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
    def ipv4(self) -> list[Address]:
        """Its IPv4 addresses."""
        return [a for a in self.addresses if a.family == socket.AF_INET]

    @property
    def hardware_mac(self) -> str | None:
        """The MAC the device was made with; a bridge can copy the current one, not this."""
        return self.permanent_mac or self.mac


def _kind(msg: Any) -> str | None:
    info = msg.get_attr("IFLA_LINKINFO")
    return info.get_attr("IFLA_INFO_KIND") if info is not None else None


def read_links(netns: str | None = None) -> list[Link]:
    """Every link with its addresses; `netns` reads inside a named network namespace."""
    with _ipr(netns) as ipr:
        raw_links = list(ipr.get_links())
        raw_addrs = list(ipr.get_addr())
        routes = list(ipr.get_default_routes())
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


class NetlinkError(AgentError):
    """A netlink request failed; the message names the link and the operation."""


@dataclass(frozen=True)
class Route:
    """An IPv4 route through a link (the fields needed to put it back)."""

    dst: str | None
    dst_len: int
    gateway: str | None
    priority: int | None
    table: int
    scope: int
    proto: int


@dataclass(frozen=True)
class LinkState:
    """What rollback restores on a link: up/down, its master, IPv4 addresses and routes."""

    name: str
    up: bool
    master: str | None
    addresses: tuple[tuple[str, int], ...]
    routes: tuple[Route, ...]


_REGISTERING = threading.Lock()


def _without_init(package: str) -> None:
    """Register `package` without running its __init__ (unless it is imported already), so
    that importing one of its submodules loads only that submodule and what it imports. A
    name asked of the package that is not a submodule (someone's `from pyroute2 import NDB`)
    runs the real __init__ then, through PEP 562's module __getattr__."""
    with _REGISTERING:  # the facts' threads may open netlink at the same time
        if package not in sys.modules:
            _register_bare(package)


def _register_bare(package: str) -> None:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.loader is None:
        raise ImportError(f"no package {package}")
    module = importlib.util.module_from_spec(spec)
    loader = spec.loader

    def attribute(name: str) -> Any:
        if importlib.util.find_spec(f"{package}.{name}") is not None:
            return importlib.import_module(f"{package}.{name}")
        del module.__dict__["__getattr__"]
        loader.exec_module(module)
        return getattr(module, name)

    module.__dict__["__getattr__"] = attribute
    sys.modules[package] = module


@contextmanager
def _ipr(netns: str | None) -> Iterator[Any]:
    # pyroute2's __init__ imports every pyroute2 module (NDB, IPDB, conntrack, nl80211, ...):
    # 0.45 s of each check in the emulated lab guest, for the two classes used here.
    _without_init("pyroute2")
    from pyroute2.iproute.linux import IPRoute, NetNS  # noqa: PLC0415 - `status` stays free of it

    # flags=0: never create the namespace as a side effect of opening it.
    ipr = NetNS(netns, flags=0) if netns else IPRoute()
    try:
        yield ipr
    finally:
        ipr.close()


def _index(ipr: Any, name: str) -> int:
    found = ipr.link_lookup(ifname=name)
    if not found:
        raise NetlinkError(f"no link named {name}")
    return int(found[0])


def _call(what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except AgentError:
        raise
    except Exception as exc:  # pyroute2 raises NetlinkError/OSError subclasses of its own
        raise NetlinkError(f"{what}: {exc}") from exc


def link_exists(name: str, netns: str | None = None) -> bool:
    """Whether a link called `name` exists."""
    with _ipr(netns) as ipr:
        return bool(ipr.link_lookup(ifname=name))


def create_bridge(name: str, mac: str, netns: str | None = None) -> None:
    """A new bridge `name` with MAC `mac`, STP off and no forward delay, set up."""
    with _ipr(netns) as ipr:
        _call(
            f"create bridge {name}",
            lambda: ipr.link(
                "add", ifname=name, kind="bridge", address=mac, br_stp_state=0, br_forward_delay=0
            ),
        )
        index = _index(ipr, name)
        _call(f"set {name} up", lambda: ipr.link("set", index=index, state="up"))


def set_mac(name: str, mac: str, netns: str | None = None) -> None:
    """Set the MAC of link `name`."""
    with _ipr(netns) as ipr:
        index = _index(ipr, name)
        _call(f"set MAC of {name}", lambda: ipr.link("set", index=index, address=mac))


def delete_link(name: str, netns: str | None = None) -> None:
    """Delete link `name` if it exists (its ports are released by the kernel)."""
    with _ipr(netns) as ipr:
        found = ipr.link_lookup(ifname=name)
        if found:
            _call(f"delete {name}", lambda: ipr.link("del", index=found[0]))


def enslave(port: str, bridge: str, netns: str | None = None) -> tuple[tuple[str, int], ...]:
    """Move `port` into `bridge`: its IPv4 addresses are removed (and returned), it is set up."""
    with _ipr(netns) as ipr:
        port_index, bridge_index = _index(ipr, port), _index(ipr, bridge)
        removed = _ipv4_addresses(ipr, port_index)
        for address, prefixlen in removed:
            _call(
                f"remove {address}/{prefixlen} from {port}",
                ipr.addr,
                "del",
                index=port_index,
                address=address,
                prefixlen=prefixlen,
            )
        _call(
            f"enslave {port} to {bridge}",
            lambda: ipr.link("set", index=port_index, master=bridge_index),
        )
        _call(f"set {port} up", lambda: ipr.link("set", index=port_index, state="up"))
        _call(f"set {bridge} up", lambda: ipr.link("set", index=bridge_index, state="up"))
        return removed


def add_address(name: str, address: str, prefixlen: int, netns: str | None = None) -> None:
    """Add an IPv4 address to link `name`."""
    with _ipr(netns) as ipr:
        index = _index(ipr, name)
        _call(
            f"add {address}/{prefixlen} to {name}",
            lambda: ipr.addr("add", index=index, address=address, prefixlen=prefixlen),
        )


def add_default_route(gateway: str, metric: int, netns: str | None = None) -> None:
    """A default route via `gateway` with `metric` (replacing one with the same metric)."""
    with _ipr(netns) as ipr:
        _call(
            f"default route via {gateway}",
            lambda: ipr.route(
                "replace", dst="0.0.0.0", dst_len=0, gateway=gateway, priority=metric
            ),
        )


def _ipv4_addresses(ipr: Any, index: int) -> tuple[tuple[str, int], ...]:
    return tuple(
        (str(a.get_attr("IFA_ADDRESS")), int(a["prefixlen"]))
        for a in ipr.get_addr(family=socket.AF_INET, index=index)
    )


def ipv4_addresses(name: str, netns: str | None = None) -> tuple[tuple[str, int], ...]:
    """The IPv4 addresses (address, prefix length) on link `name`; none if it does not exist."""
    with _ipr(netns) as ipr:
        found = ipr.link_lookup(ifname=name)
        return _ipv4_addresses(ipr, found[0]) if found else ()


def _routes(ipr: Any, index: int) -> tuple[Route, ...]:
    result = []
    for r in ipr.get_routes(family=socket.AF_INET, oif=index):
        result.append(
            Route(
                dst=r.get_attr("RTA_DST"),
                dst_len=int(r["dst_len"]),
                gateway=r.get_attr("RTA_GATEWAY"),
                priority=r.get_attr("RTA_PRIORITY"),
                table=int(r.get_attr("RTA_TABLE") or r["table"]),
                scope=int(r["scope"]),
                proto=int(r["proto"]),
            )
        )
    return tuple(result)


def snapshot(name: str, netns: str | None = None) -> LinkState | None:
    """The link's restorable state, or None when there is no such link."""
    with _ipr(netns) as ipr:
        found = ipr.link_lookup(ifname=name)
        if not found:
            return None
        msg = ipr.get_links(found[0])[0]
        master = msg.get_attr("IFLA_MASTER")
        master_name = None
        if master:
            master_name = ipr.get_links(master)[0].get_attr("IFLA_IFNAME")
        return LinkState(
            name=name,
            up=bool(msg["flags"] & 1),
            master=master_name,
            addresses=_ipv4_addresses(ipr, found[0]),
            routes=tuple(r for r in _routes(ipr, found[0]) if r.table != 255),
        )


def restore(state: LinkState, netns: str | None = None) -> None:
    """Put a link back as `state` says: master, up/down, then missing addresses and routes.

    Routes the kernel makes for an address (proto kernel) come back with the address.
    """
    with _ipr(netns) as ipr:
        index = _index(ipr, state.name)
        master = _index(ipr, state.master) if state.master else 0
        _call(f"set master of {state.name}", lambda: ipr.link("set", index=index, master=master))
        _call(
            f"set {state.name} {'up' if state.up else 'down'}",
            lambda: ipr.link("set", index=index, state="up" if state.up else "down"),
        )
        present = set(_ipv4_addresses(ipr, index))
        for address, prefixlen in state.addresses:
            if (address, prefixlen) not in present:
                _call(
                    f"restore {address}/{prefixlen} on {state.name}",
                    ipr.addr,
                    "add",
                    index=index,
                    address=address,
                    prefixlen=prefixlen,
                )
        routes = set(_routes(ipr, index))
        for route in state.routes:
            if route in routes or route.proto == RTPROT_KERNEL:
                continue
            kwargs: dict[str, Any] = {
                "dst": route.dst or "0.0.0.0",
                "dst_len": route.dst_len,
                "oif": index,
                "table": route.table,
                "scope": route.scope,
                "proto": route.proto,
            }
            if route.gateway:
                kwargs["gateway"] = route.gateway
            if route.priority is not None:
                kwargs["priority"] = route.priority
            _call(f"restore route {route} on {state.name}", ipr.route, "add", **kwargs)


def wait_for_ipv4(
    name: str,
    timeout: float,
    netns: str | None = None,
    *,
    interval: float = 0.25,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[tuple[str, int], ...]:
    """Poll until link `name` has an IPv4 address or `timeout` passes; returns what it has."""
    deadline = clock() + timeout
    while True:
        found = ipv4_addresses(name, netns)
        if found or clock() >= deadline:
            return found
        sleep(interval)


class Netlink:
    """The functions above bound to one namespace: what the LNI step holds (tests fake it)."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns

    def read_links(self) -> list[Link]:
        """See `read_links`."""
        return read_links(self.netns)

    def snapshot(self, name: str) -> LinkState | None:
        """See `snapshot`."""
        return snapshot(name, self.netns)

    def restore(self, state: LinkState) -> None:
        """See `restore`."""
        restore(state, self.netns)

    def create_bridge(self, name: str, mac: str) -> None:
        """See `create_bridge`."""
        create_bridge(name, mac, self.netns)

    def set_mac(self, name: str, mac: str) -> None:
        """See `set_mac`."""
        set_mac(name, mac, self.netns)

    def delete_link(self, name: str) -> None:
        """See `delete_link`."""
        delete_link(name, self.netns)

    def enslave(self, port: str, bridge: str) -> tuple[tuple[str, int], ...]:
        """See `enslave`."""
        return enslave(port, bridge, self.netns)

    def add_address(self, name: str, address: str, prefixlen: int) -> None:
        """See `add_address`."""
        add_address(name, address, prefixlen, self.netns)

    def add_default_route(self, gateway: str, metric: int) -> None:
        """See `add_default_route`."""
        add_default_route(gateway, metric, self.netns)

    def wait_for_ipv4(self, name: str, timeout: float) -> tuple[tuple[str, int], ...]:
        """See `wait_for_ipv4`."""
        return wait_for_ipv4(name, timeout, self.netns)
