"""What the virt step observes: the packages, units, files, firewall and /dev/kvm of the VM
stack, and how it reads them."""

from __future__ import annotations

from dataclasses import dataclass

from cockpit_agent.engine import Ctx
from cockpit_agent.errors import CommandNotFound
from cockpit_agent.host import systemd
from cockpit_agent.host.packages import PackageManager, package_manager
from cockpit_agent.host.run import at_once
from cockpit_agent.host.systemd import UnitState

# How each OS family runs libvirt: Debian/Ubuntu the monolithic libvirtd, RHEL 9/Fedora the
# modular daemons behind their sockets.
UNITS: dict[str, tuple[str, ...]] = {
    "debian": ("cockpit.socket", "libvirtd.service"),
    "rhel": (
        "cockpit.socket",
        "virtqemud.socket",
        "virtnetworkd.socket",
        "virtstoraged.socket",
        "virtnodedevd.socket",
    ),
}
# The hypervisor package per architecture, where the configured list names the x86 one.
ARCH_PACKAGE = {"aarch64": {"qemu-system-x86": "qemu-system-arm"}}

COCKPIT_CONF = "/etc/cockpit/cockpit.conf"
DISALLOWED_USERS = "/etc/cockpit/disallowed-users"
SOCKET_DROPIN = "/etc/systemd/system/cockpit.socket.d/50-cockpit-agent.conf"
# Debian runs libvirtd with --timeout 120: idle, it exits and waits on its sockets, and its
# unit reads as inactive to plan and check alike (ADR 0009).
LIBVIRTD_DROPIN = "/etc/systemd/system/libvirtd.service.d/50-cockpit-agent.conf"
LIBVIRTD_STAY_UP = (
    "# Written by cockpit-agent: keep libvirtd running (no idle exit), so that its unit's\n"
    "# state says whether libvirt is up (docs/adr/0009-libvirtd-without-idle-exit.md).\n"
    "[Service]\n"
    "Environment=LIBVIRTD_ARGS=\n"
)
CERT = "/etc/cockpit/ws-certs.d/50-cockpit-agent.cert"
KEY = "/etc/cockpit/ws-certs.d/50-cockpit-agent.key"
MACHINES_MANIFEST = "/usr/share/cockpit/machines/manifest.json"
LIBVIRT_DBUS = ("/usr/sbin/libvirt-dbus", "/usr/bin/libvirt-dbus")
DEFAULT_PORT = 9090
OWNED_FILES = (COCKPIT_CONF, DISALLOWED_USERS, SOCKET_DROPIN, LIBVIRTD_DROPIN, CERT, KEY)


@dataclass(frozen=True)
class VirtObserved:
    """What the step found. `certificate` is the configured TLS certificate and key as read
    (None where a file is missing; both None when none is configured)."""

    family: str
    packages: tuple[str, ...]
    missing: tuple[str, ...]
    units: dict[str, UnitState]
    files: dict[str, str | None]
    firewall: str | None
    firewall_open: bool
    kvm: bool
    bridge_address: str | None
    problem: str | None = None
    certificate: tuple[str | None, str | None] = (None, None)


def observe(ctx: Ctx) -> VirtObserved:
    """Packages, units, owned files, firewall and /dev/kvm."""
    platform = ctx.facts.platform
    family = platform.os_family if platform else "unknown"
    wanted = _packages(ctx, family)
    kvm = ctx.files.exists("/dev/kvm")
    bridge = _bridge_address(ctx)
    if wanted is None:
        problem = (
            f"no virtualisation packages are known for OS family {family!r} "
            f"({platform.pretty_name if platform else 'unknown OS'}): Amazon Linux 2023 has "
            "no cockpit-machines or libvirt packages; use a RHEL- or Debian-family AMI, or "
            f"set virt.packages.{family} if your repositories have them"
        )
        return VirtObserved(family, (), (), {}, {}, None, False, kvm, bridge, problem)
    pm = host_package_manager(ctx)
    if pm is None:
        problem = "no supported package manager (apt or dnf) on this host"
        return VirtObserved(family, tuple(wanted), (), {}, {}, None, False, kvm, bridge, problem)
    missing: list[str] = []
    units: dict[str, UnitState] = {}
    at_once(  # two commands that only read, at the same time
        lambda: missing.extend(pm.missing(wanted)),
        lambda: units.update(systemd.unit_states(ctx.runner, UNITS.get(family, UNITS["debian"]))),
    )
    files = {p: ctx.files.read(p) for p in OWNED_FILES}
    firewall, is_open = _firewall(ctx)
    return VirtObserved(
        family,
        tuple(wanted),
        tuple(missing),
        units,
        files,
        firewall,
        is_open,
        kvm,
        bridge,
        certificate=_certificate(ctx),
    )


def host_package_manager(ctx: Ctx) -> PackageManager | None:
    """The host's package manager (from the platform facts), or None when it has none the
    agent supports."""
    platform = ctx.facts.platform
    return package_manager(
        platform.package_manager if platform else None,
        ctx.runner,
        ctx.files,
        ctx.config.virt.package_lock_wait_seconds,
    )


def _packages(ctx: Ctx, family: str) -> list[str] | None:
    names = ctx.config.virt.packages.get(family)
    if names is None:
        return None
    arch = ctx.facts.identity.architecture if ctx.facts.identity else "x86_64"
    swap = ARCH_PACKAGE.get(arch, {})
    return [swap.get(n, n) for n in names]


def _bridge_address(ctx: Ctx) -> str | None:
    for link in ctx.facts.links:
        if link.name == ctx.config.lni.bridge and link.ipv4:
            return link.ipv4[0].address
    return None


def _certificate(ctx: Ctx) -> tuple[str | None, str | None]:
    cfg = ctx.config.virt
    if not cfg.tls_certificate or not cfg.tls_key:
        return None, None
    return ctx.files.read(cfg.tls_certificate), ctx.files.read(cfg.tls_key)


def _firewall(ctx: Ctx) -> tuple[str | None, bool]:
    port = ctx.config.virt.port
    try:
        state = ctx.runner.run(["firewall-cmd", "--state"], ok=(0, 252)).stdout.strip()
        if state == "running":
            query = ["firewall-cmd", "--query-port", f"{port}/tcp"]
            if port == DEFAULT_PORT:
                query = ["firewall-cmd", "--query-service", "cockpit"]
            return "firewalld", ctx.runner.run(query, ok=(0, 1)).rc == 0
    except CommandNotFound:
        pass
    try:
        status = ctx.runner.run(["ufw", "status"]).stdout
    except CommandNotFound:
        return None, False
    if "Status: active" not in status:
        return None, False
    allowed = any(
        line.split()[0] in (f"{port}/tcp", str(port)) and "ALLOW" in line
        for line in status.splitlines()
        if line.strip()
    )
    return "ufw", allowed
