"""What the libvirt_network step observes: the libvirt networks that matter (`lni`, `default`,
`default-nat`), the VMs that name them, libvirt's stock `default` as this host ships it, and
the step's record of what it moved and created; and how it reads them with virsh.

libvirt is read only when it is there: virsh installed and libvirtd answering. Otherwise
`unavailable` says why, and the network is left to a later run.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from cockpit_agent.config import LniConfig
from cockpit_agent.engine import Ctx
from cockpit_agent.errors import CommandFailed
from cockpit_agent.host.run import Runner, at_once

LIBVIRT_URI = "qemu:///system"
DEFAULT_NETWORK = "default"
STOCK_RENAMED = "default-nat"
STOCK_TEMPLATE = "/usr/share/libvirt/networks/default.xml"
# libvirt's template (src/network/default.xml.in) as Debian 12's libvirt-daemon-config-network
# 9.0.0 and RHEL's libvirt-daemon-config-network ship it at STOCK_TEMPLATE; used when the host
# has no such file.
LIBVIRT_STOCK_XML = """<network>
  <name>default</name>
  <bridge name='virbr0'/>
  <forward/>
  <ip address='192.168.122.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='192.168.122.2' end='192.168.122.254'/>
    </dhcp>
  </ip>
</network>
"""


def virsh(*args: str) -> list[str]:
    """A virsh command line on the system connection."""
    return ["virsh", "-q", "-c", LIBVIRT_URI, *args]


@dataclass(frozen=True)
class NetworkState:
    """One libvirt network as `net-list` and `net-dumpxml --inactive` show it."""

    name: str
    xml: str
    active: bool
    autostart: bool


@dataclass(frozen=True)
class Domain:
    """A libvirt domain (VM) and the libvirt networks its interfaces name."""

    name: str
    running: bool
    networks: tuple[str, ...]


@dataclass(frozen=True)
class LibvirtObserved:
    """The libvirt networks that matter to the step (None = not defined), the VMs that use
    them (read only when `default` or `default-nat` is defined), the stock `default`
    network's definition as this host ships it, the step's record of what it moved and
    created (a copy of its step_data), and the configuration they are judged by.
    `unavailable` says why libvirt was not read (not installed, not answering)."""

    config: LniConfig
    networks: dict[str, NetworkState | None] = field(default_factory=dict)
    all_names: tuple[str, ...] = ()
    domains: tuple[Domain, ...] = ()
    stock_xml: str = ""
    record: dict[str, Any] = field(default_factory=dict)
    unavailable: str | None = None


def observe(ctx: Ctx, which: Callable[[str], str | None]) -> LibvirtObserved:
    """Read the networks, the VMs on `default` or `default-nat`, the stock template and the
    step's record; `unavailable` when libvirt is not there or does not answer."""
    config = ctx.config.lni
    if which("virsh") is None:
        why = "libvirt not installed (no virsh): libvirt network left to a later run"
        return LibvirtObserved(config, unavailable=why)
    names = (config.libvirt_network, DEFAULT_NETWORK, STOCK_RENAMED)
    try:
        networks, listed = read_networks(ctx.runner, names)
        in_play = any(networks.get(n) for n in (DEFAULT_NETWORK, STOCK_RENAMED))
        domains = read_domains(ctx.runner) if in_play else ()
    except CommandFailed as exc:
        why = f"libvirt does not answer ({exc}): libvirt network left to a later run"
        return LibvirtObserved(config, unavailable=why)
    return LibvirtObserved(
        config,
        networks=networks,
        all_names=listed,
        domains=domains,
        stock_xml=ctx.files.read(STOCK_TEMPLATE) or LIBVIRT_STOCK_XML,
        record=dict(ctx.step_data.get("libvirt_network", {}).get("default_network", {})),
    )


def read_networks(
    runner: Runner, names: tuple[str, ...]
) -> tuple[dict[str, NetworkState | None], tuple[str, ...]]:
    """The named networks (None where not defined) and every network's name; CommandFailed
    when libvirtd does not answer."""
    listed = _list_networks(runner)
    networks: dict[str, NetworkState | None] = dict.fromkeys(names)

    def read(name: str) -> None:
        xml = runner.run(virsh("net-dumpxml", "--inactive", name)).stdout
        active, autostart = listed[name]
        networks[name] = NetworkState(name=name, xml=xml, active=active, autostart=autostart)

    # The definitions are read at the same time: a virsh call is a tenth of a second in an
    # emulated guest, and `check` reads three networks.
    at_once(*(partial(read, name) for name in names if name in listed))
    return networks, tuple(listed)


def read_domains(runner: Runner) -> tuple[Domain, ...]:
    """Every domain, whether it runs, and the networks its persistent definition names."""
    names = runner.run(virsh("list", "--all", "--name")).stdout.split("\n")
    names = [n.strip() for n in names if n.strip()]
    if not names:
        return ()
    running = {n.strip() for n in runner.run(virsh("list", "--name")).stdout.split("\n")}
    domains = []
    for name in names:
        xml = runner.run(virsh("dumpxml", "--inactive", name)).stdout
        root = ET.fromstring(xml)  # noqa: S314 - from the local libvirtd
        used = [
            source.get("network", "")
            for source in root.findall("./devices/interface[@type='network']/source")
        ]
        domains.append(Domain(name, name in running, tuple(n for n in used if n)))
    return tuple(domains)


def _list_networks(runner: Runner) -> dict[str, tuple[bool, bool]]:
    """Every network, whether it is active and whether it autostarts, from one `virsh net-list
    --all`: its rows end in three words (State, Autostart, Persistent), read in the C locale,
    so that a host with another language has them in English too."""
    argv = virsh("net-list", "--all")
    rows = runner.run(argv, env={**os.environ, "LC_ALL": "C"}).stdout.splitlines()
    listed = {}
    for row in rows:
        fields = row.rsplit(None, 3)
        if len(fields) == 4:
            name, state, autostart, _ = fields
            listed[name.strip()] = (state == "active", autostart == "yes")
    return listed
