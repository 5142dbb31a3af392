"""A runner that answers the virsh commands the libvirt_network step runs from an in-memory
libvirt.

It keeps what libvirt keeps (per network: the persistent XML, with a UUID added when the
definition has none; active; autostart) and refuses what libvirt 9 refuses: a definition whose
name or UUID belongs to another network, a bridge name another network uses, starting an active
network, stopping an inactive one. Any other virsh command fails the test; other programs go to
a FakeRunner (tests/fakes.py).
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cockpit_agent.errors import CommandFailed
from cockpit_agent.host.run import Result
from tests.fakes import FakeRunner, UnexpectedCommand

VIRSH = ("virsh", "-q", "-c", "qemu:///system")

# What `virsh net-dumpxml --inactive default` prints for the network libvirt makes from
# Debian 12's /usr/share/libvirt/networks/default.xml (libvirt adds the UUID, the MAC, the NAT
# port range and the bridge's stp/delay).
STOCK_DUMP = """<network>
  <name>default</name>
  <uuid>9a05da11-e96b-47f3-8253-a3a482e445f5</uuid>
  <forward mode='nat'>
    <nat>
      <port start='1024' end='65535'/>
    </nat>
  </forward>
  <bridge name='virbr0' stp='on' delay='0'/>
  <mac address='52:54:00:0a:cd:21'/>
  <ip address='192.168.122.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='192.168.122.2' end='192.168.122.254'/>
    </dhcp>
  </ip>
</network>
"""


@dataclass
class Net:
    xml: str
    active: bool = False
    autostart: bool = False


@dataclass
class FakeLibvirt:
    """Networks by name, domains by name (their XML and whether they run)."""

    networks: dict[str, Net] = field(default_factory=dict)
    domains: dict[str, tuple[str, bool]] = field(default_factory=dict)
    calls: list[tuple[str, ...]] = field(default_factory=list)
    fail: dict[tuple[str, ...], str] = field(default_factory=dict)  # argv tail -> stderr, once
    other: FakeRunner = field(default_factory=FakeRunner)  # answers what is not virsh

    def run(
        self,
        argv: Sequence[str],
        *,
        ok: Sequence[int] = (0,),
        timeout: float | None = 300.0,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Result:
        key = tuple(str(a) for a in argv)
        if key[: len(VIRSH)] != VIRSH:
            return self.other.run(argv, ok=ok, timeout=timeout, input=input, env=env)
        self.calls.append(key)
        tail = key[len(VIRSH) :]
        if tail in self.fail:
            raise CommandFailed(key, 1, self.fail.pop(tail))
        try:
            out = self._virsh(*tail)
        except KeyError as exc:
            raise CommandFailed(key, 1, f"error: {exc.args[0]}") from None
        return Result(key, 0, out, "")

    def _virsh(self, cmd: str, *args: str) -> str:
        if cmd == "net-list" and args == ("--all",):
            yes = {True: "yes", False: "no"}
            state = {True: "active", False: "inactive"}
            return "".join(
                f" {name}   {state[net.active]}   {yes[net.autostart]}   yes\n"
                for name, net in self.networks.items()
            )
        if cmd == "net-dumpxml" and args[:1] == ("--inactive",):
            return self.networks[args[1]].xml
        if cmd == "net-define":
            self.define(Path(args[0]).read_text())
            return ""
        if cmd == "net-undefine":
            del self.networks[args[0]]
            return ""
        if cmd in ("net-start", "net-destroy"):
            net = self.networks[args[0]]
            if net.active == (cmd == "net-start"):
                raise KeyError(f"network {args[0]} is {'already' if net.active else 'not'} active")
            net.active = cmd == "net-start"
            return ""
        if cmd == "net-autostart":
            self.networks[args[0]].autostart = True
            return ""
        if cmd == "list":
            wanted = self.domains if args == ("--all", "--name") else self._running()
            return "".join(f"{n}\n" for n in wanted) + "\n"
        if cmd == "dumpxml" and args[:1] == ("--inactive",):
            return self.domains[args[1]][0]
        raise UnexpectedCommand(f"virsh {cmd} {args}")

    def _running(self) -> list[str]:
        return [n for n, (_, running) in self.domains.items() if running]

    def define(self, xml: str) -> None:
        """net-define: libvirt's checks on name, UUID and bridge, and a UUID when none."""
        root = ET.fromstring(xml)
        name = root.findtext("name") or ""
        if root.find("uuid") is None:
            ET.SubElement(root, "uuid").text = str(uuid.uuid4())
        its_uuid = root.findtext("uuid")
        # A bridge libvirt makes itself (any forward mode but "bridge") must be its own.
        forward = root.find("forward")
        bridge = root.find("bridge")
        made = bridge is not None and (forward is None or forward.get("mode") != "bridge")
        for other, net in self.networks.items():
            theirs = ET.fromstring(net.xml)
            if other == name and theirs.findtext("uuid") != its_uuid:
                raise KeyError(f"network '{name}' is already defined with another uuid")
            if other != name and theirs.findtext("uuid") == its_uuid:
                raise KeyError(f"network '{other}' is already defined with uuid {its_uuid}")
            their_bridge = theirs.find("bridge")
            if (
                made
                and other != name
                and their_bridge is not None
                and their_bridge.get("name") == bridge.get("name")  # type: ignore[union-attr]
            ):
                raise KeyError(f"bridge name '{their_bridge.get('name')}' already in use.")
        old = self.networks.get(name)
        self.networks[name] = Net(
            ET.tostring(root, encoding="unicode") + "\n",
            active=old.active if old else False,
            autostart=old.autostart if old else False,
        )


def domain_xml(*networks: str) -> str:
    """A domain whose interfaces name these libvirt networks."""
    nics = "".join(
        f"<interface type='network'><source network='{n}'/></interface>" for n in networks
    )
    return f"<domain type='kvm'><name>vm</name><devices>{nics}</devices></domain>"
