"""Network namespaces for the LNI integration tests: a "host" and an on-prem "lan".

host: lo, mgmt0 (a veth standing for the management ENI, device 0; its peer idles in the lan
namespace) and lni0, one end of a veth pair whose other end, lan0, is in the lan namespace,
where dnsmasq serves DHCP with a reservation for the LNI's MAC. Nothing here touches this
machine's own namespace: links are created directly inside the test's namespaces, processes
run inside them, and teardown kills every process left in them and deletes both namespaces,
whatever happened.

`ip netns exec` bind-mounts /etc/netns/<name>/* over /etc/*: the host namespace gets its own
empty resolv.conf and /etc/dhcp (no exit hooks), so dhclient there cannot touch this
machine's resolver or timesyncd configuration.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

MGMT_MAC = "0e:11:22:33:44:01"
LNI_MAC = "0e:11:22:33:44:02"
LAN_ADDRESS = "10.99.0.1/24"
LNI_ADDRESS = "10.99.0.50"  # reserved for LNI_MAC by dnsmasq; also the LNI's address at start
MGMT_ADDRESS = "10.98.0.10/24"
NETNS_TOOLS = ("ip", "dnsmasq", "dhclient")


def ip(*args: str) -> str:
    """Run `ip` with arguments (never a shell) and return its output."""
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True).stdout


def in_ns(ns: str, *argv: str) -> str:
    """Run a program inside namespace `ns`."""
    return ip("netns", "exec", ns, *argv)


@dataclass
class Lan:
    """The two namespaces, the veth between them and dnsmasq; undone by `cleanup`."""

    workdir: Path
    host: str = field(default_factory=lambda: f"cal-host-{secrets.token_hex(3)}")
    lan: str = field(default_factory=lambda: f"cal-lan-{secrets.token_hex(3)}")
    dnsmasq: subprocess.Popen[bytes] | None = None
    created: list[str] = field(default_factory=list)

    @property
    def etc(self) -> Path:
        """/etc/netns/<host>: what `ip netns exec` mounts over /etc in the host namespace."""
        return Path("/etc/netns") / self.host

    def build(self) -> None:
        """Both namespaces, mgmt0, the veth, addresses, and the private /etc of host."""
        for ns in (self.host, self.lan):
            ip("netns", "add", ns)
            self.created.append(ns)
            # IPv6 off: link-local addresses would make before/after comparisons noisy.
            in_ns(ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
            in_ns(ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
            ip("-n", ns, "link", "set", "lo", "up")
        dhcp = self.etc / "dhcp"
        for hooks in ("dhclient-enter-hooks.d", "dhclient-exit-hooks.d"):
            (dhcp / hooks).mkdir(parents=True, exist_ok=True)
        (dhcp / "dhclient.conf").write_text("")
        (self.etc / "resolv.conf").write_text("")
        ip(
            "link", "add", "mgmt0", "netns", self.host, "address", MGMT_MAC, "type", "veth",
            "peer", "name", "mgmt-peer", "netns", self.lan,
        )  # fmt: skip
        ip("-n", self.host, "addr", "add", MGMT_ADDRESS, "dev", "mgmt0")
        ip("-n", self.host, "link", "set", "mgmt0", "up")
        ip(
            "link", "add", "lni0", "netns", self.host, "address", LNI_MAC, "type", "veth",
            "peer", "name", "lan0", "netns", self.lan,
        )  # fmt: skip
        ip("-n", self.lan, "addr", "add", LAN_ADDRESS, "dev", "lan0")
        ip("-n", self.lan, "link", "set", "lan0", "up")
        ip("-n", self.host, "addr", "add", f"{LNI_ADDRESS}/24", "dev", "lni0")
        ip("-n", self.host, "link", "set", "lni0", "up")
        # A route through the LNI, as an on-prem site would have: rollback must restore it.
        ip("-n", self.host, "route", "add", "10.97.0.0/24", "via", "10.99.0.1", "dev", "lni0")

    def start_dhcp_server(self) -> None:
        """dnsmasq in the lan namespace, on lan0 only, DHCP only (no DNS), LNI_MAC reserved."""
        log = self.workdir / "dnsmasq.log"
        argv = [
            "ip", "netns", "exec", self.lan, "dnsmasq", "--keep-in-foreground",
            "--conf-file=/dev/null", "--port=0", "--interface=lan0", "--bind-interfaces",
            "--except-interface=lo", "--user=root", "--dhcp-authoritative",
            "--dhcp-range=10.99.0.100,10.99.0.200,255.255.255.0,1h",
            f"--dhcp-host={LNI_MAC},{LNI_ADDRESS}",
            f"--dhcp-leasefile={self.workdir / 'dnsmasq.leases'}",
            "--log-dhcp", f"--log-facility={log}",
        ]  # fmt: skip
        self.dnsmasq = subprocess.Popen(argv)
        deadline = time.monotonic() + 10
        while "started" not in (log.read_text() if log.exists() else ""):
            if self.dnsmasq.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"dnsmasq did not start: {self.dhcp_log()}")
            time.sleep(0.05)

    def stop_dhcp_server(self) -> None:
        """Stop dnsmasq: the LAN's DHCP server no longer answers."""
        if self.dnsmasq is not None and self.dnsmasq.poll() is None:
            self.dnsmasq.terminate()
            self.dnsmasq.wait(timeout=10)
        self.dnsmasq = None

    def dhcp_log(self) -> str:
        """What dnsmasq logged."""
        log = self.workdir / "dnsmasq.log"
        return log.read_text() if log.exists() else "(no log)"

    def leases(self) -> str:
        """dnsmasq's lease file."""
        path = self.workdir / "dnsmasq.leases"
        return path.read_text() if path.exists() else ""

    def pids(self, ns: str) -> list[int]:
        """The processes running inside namespace `ns`."""
        return [int(p) for p in ip("netns", "pids", ns).split()]

    def state(self) -> dict[str, object]:
        """Links (name, kind, MAC, master, up), IPv4 addresses and routes of the host ns."""
        links = ip("-n", self.host, "-o", "-d", "link", "show").splitlines()
        return {
            "links": sorted(_link_line(line) for line in links),
            "addresses": sorted(ip("-n", self.host, "-o", "-4", "addr", "show").splitlines()),
            "routes": sorted(
                ip("-n", self.host, "-4", "route", "show", "table", "all").splitlines()
            ),
        }

    def cleanup(self) -> list[str]:
        """Kill what runs in our namespaces, delete them and our /etc/netns entry."""
        failed: list[str] = []
        self.stop_dhcp_server()
        for ns in self.created:
            try:
                for pid in self.pids(ns):
                    with contextlib.suppress(ProcessLookupError):  # it may just have exited
                        os.kill(pid, signal.SIGKILL)
            except (subprocess.CalledProcessError, OSError) as exc:
                failed.append(f"{ns}: {exc}")
            try:
                ip("netns", "del", ns)
            except subprocess.CalledProcessError as exc:
                failed.append(f"{ns}: {exc.stderr or exc}")
        shutil.rmtree(self.etc, ignore_errors=True)
        return failed


def _link_line(line: str) -> str:
    """The stable part of `ip -o -d link show`: name, state flags, MAC, master, kind."""
    words = line.split()
    name = words[1].rstrip(":").split("@")[0]
    flags = words[2]
    mac = words[words.index("link/ether") + 1] if "link/ether" in words else "-"
    master = words[words.index("master") + 1] if "master" in words else "-"
    kind = next((w for w in ("veth", "bridge") if w in words[5:]), "-")
    return f"{name} {flags} {mac} master={master} kind={kind}"


def existing_namespaces() -> list[str]:
    """The names of the namespaces on this machine."""
    return [line.split()[0] for line in ip("netns", "list").splitlines() if line.strip()]
