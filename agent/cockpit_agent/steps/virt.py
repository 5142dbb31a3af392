"""The virt step: Cockpit, cockpit-machines, libvirt and qemu: installed, enabled, serving."""

from __future__ import annotations

import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

from cockpit_agent.config import Config
from cockpit_agent.engine import Ctx, Finding
from cockpit_agent.errors import AgentError, CommandFailed, CommandNotFound
from cockpit_agent.host.packages import package_manager
from cockpit_agent.render.cockpit import merge_ini, socket_dropin, with_users

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


@dataclass(frozen=True)
class UnitState:
    """What systemd says of one unit."""

    load: str
    enabled: str
    active: str

    @property
    def ok(self) -> bool:
        """Enabled (or static) and running."""
        return (
            self.enabled in ("enabled", "static", "alias", "indirect") and self.active == "active"
        )


@dataclass(frozen=True)
class VirtObserved:
    """What the step found."""

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


@dataclass(frozen=True)
class InstallPackages:
    """Install the missing packages."""

    names: tuple[str, ...]

    def describe(self) -> str:
        """One line."""
        return f"install packages: {' '.join(self.names)}"


@dataclass(frozen=True)
class EnableUnit:
    """systemctl enable --now."""

    unit: str

    def describe(self) -> str:
        """One line."""
        return f"enable and start {self.unit}"


@dataclass(frozen=True)
class WriteFile:
    """Write a file the step owns (or the keys of it the step owns)."""

    path: str
    content: str
    mode: int
    why: str

    def describe(self) -> str:
        """One line."""
        return f"write {self.path} ({self.why})"


@dataclass(frozen=True)
class RestartUnit:
    """daemon-reload, then restart a unit so a changed drop-in takes effect."""

    unit: str

    def describe(self) -> str:
        """One line."""
        return f"reload systemd and restart {self.unit}"


@dataclass(frozen=True)
class OpenFirewall:
    """Let Cockpit's port through the host firewall."""

    tool: str
    port: int

    def describe(self) -> str:
        """One line."""
        return f"open port {self.port}/tcp in {self.tool}"


@dataclass(frozen=True)
class ReloadBus:
    """Have the system bus reread its configuration after an install.

    Packages such as libvirt-dbus ship a bus policy for a system user that their postinst
    creates after the policy file is unpacked; the bus, which read the file as soon as it
    appeared, never learns the user, and the service is refused its bus name until the next
    reload or boot (Cockpit's Machines page then says libvirt is not active).
    """

    def describe(self) -> str:
        """One line."""
        return "reload the system bus configuration (policies of the new packages)"


VirtAction = InstallPackages | ReloadBus | EnableUnit | WriteFile | RestartUnit | OpenFirewall


def https_get(url: str, timeout: float) -> tuple[int, str]:
    """GET a URL without verifying its certificate (Cockpit's is self-signed by default).

    A bare client context: the default one loads the system's CA bundle, which verifies
    nothing here and took half a second of every `check` in the lab guest."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    req = urllib.request.Request(url)  # noqa: S310 - the URL is built from our own config
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:  # noqa: S310
            return int(resp.status), resp.read(65536).decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, ""


@dataclass
class VirtStep:
    """Cockpit and the VM stack."""

    name: str = "virt"
    depends_on: tuple[str, ...] = ()
    http_get: Callable[[str, float], tuple[int, str]] = https_get
    serve_wait_seconds: float = 60.0
    sleep: Callable[[float], None] = field(default=time.sleep)

    def enabled(self, config: Config) -> bool:
        """virt.enabled."""
        return config.virt.enabled

    # -- observe ---------------------------------------------------------------------------

    def observe(self, ctx: Ctx) -> VirtObserved:
        """Packages, units, owned files, firewall and /dev/kvm."""
        platform = ctx.facts.platform
        family = platform.os_family if platform else "unknown"
        wanted = self._packages(ctx, family)
        kvm = ctx.files.exists("/dev/kvm")
        bridge = self._bridge_address(ctx)
        if wanted is None:
            problem = (
                f"no virtualisation packages are known for OS family {family!r} "
                f"({platform.pretty_name if platform else 'unknown OS'}): Amazon Linux 2023 has "
                "no cockpit-machines or libvirt packages; use a RHEL- or Debian-family AMI, or "
                f"set virt.packages.{family} if your repositories have them"
            )
            return VirtObserved(family, (), (), {}, {}, None, False, kvm, bridge, problem)
        pm = package_manager(
            platform.package_manager if platform else None,
            ctx.runner,
            ctx.files,
            ctx.config.virt.package_lock_wait_seconds,
        )
        if pm is None:
            problem = "no supported package manager (apt or dnf) on this host"
            return VirtObserved(
                family, tuple(wanted), (), {}, {}, None, False, kvm, bridge, problem
            )
        missing = tuple(pm.missing(wanted))
        units = self._units(ctx, UNITS.get(family, UNITS["debian"]))
        owned = [COCKPIT_CONF, DISALLOWED_USERS, SOCKET_DROPIN, LIBVIRTD_DROPIN, CERT, KEY]
        files = {p: ctx.files.read(p) for p in owned}
        firewall, is_open = self._firewall(ctx)
        return VirtObserved(
            family, tuple(wanted), missing, units, files, firewall, is_open, kvm, bridge
        )

    def _packages(self, ctx: Ctx, family: str) -> list[str] | None:
        names = ctx.config.virt.packages.get(family)
        if names is None:
            return None
        arch = ctx.facts.identity.architecture if ctx.facts.identity else "x86_64"
        swap = ARCH_PACKAGE.get(arch, {})
        return [swap.get(n, n) for n in names]

    def _bridge_address(self, ctx: Ctx) -> str | None:
        for link in ctx.facts.links:
            if link.name == ctx.config.lni.bridge:
                for addr in link.addresses:
                    if addr.family == 2:  # AF_INET
                        return str(addr.address)
        return None

    def _units(self, ctx: Ctx, units: tuple[str, ...]) -> dict[str, UnitState]:
        """One `systemctl show` for every unit: blocks of key=value, in the order asked."""
        result = ctx.runner.run(
            ["systemctl", "show", "-p", "Id,LoadState,UnitFileState,ActiveState", *units]
        )
        blocks = [b for b in result.stdout.strip().split("\n\n") if b.strip()]
        states = {}
        for unit, block in zip(units, blocks, strict=False):
            kv = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
            states[unit] = UnitState(
                kv.get("LoadState", ""), kv.get("UnitFileState", ""), kv.get("ActiveState", "")
            )
        return states

    def _firewall(self, ctx: Ctx) -> tuple[str | None, bool]:
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

    def summarize(self, observed: VirtObserved) -> str:
        """One line."""
        if observed.problem:
            return observed.problem
        parts = [
            f"{len(observed.packages) - len(observed.missing)}/{len(observed.packages)} packages",
            f"{sum(u.ok for u in observed.units.values())}/{len(observed.units)} units running",
        ]
        if not observed.kvm:
            parts.append("no /dev/kvm")
        return ", ".join(parts)

    # -- plan ------------------------------------------------------------------------------

    def plan(self, observed: VirtObserved, ctx: Ctx) -> list[VirtAction]:
        """Install, enable, harden, open the firewall — only what is not already so."""
        if observed.problem:
            raise AgentError(observed.problem)
        actions: list[VirtAction] = []
        if observed.missing:
            actions += [InstallPackages(observed.missing), ReloadBus()]
        for unit, state in observed.units.items():
            if observed.missing or not state.ok:
                actions.append(EnableUnit(unit))
        actions += self._files(observed, ctx)
        if observed.firewall and not observed.firewall_open:
            actions.append(OpenFirewall(observed.firewall, ctx.config.virt.port))
        return actions

    def _files(self, observed: VirtObserved, ctx: Ctx) -> list[VirtAction]:
        cfg = ctx.config.virt
        desired: list[tuple[str, str | None, int, str]] = []
        if cfg.disallow_root:
            current = observed.files.get(DISALLOWED_USERS) or ""
            desired.append(
                (DISALLOWED_USERS, with_users(current, ["root"]), 0o644, "no root login")
            )
        current_conf = observed.files.get(COCKPIT_CONF) or ""
        merged = merge_ini(current_conf, "WebService", {"LoginTo": "false"})
        desired.append((COCKPIT_CONF, merged, 0o644, "LoginTo = false"))
        desired += self._certificate(ctx)
        address = observed.bridge_address if cfg.listen_on_bridge_only else None
        if cfg.port != DEFAULT_PORT or address:
            desired.append((SOCKET_DROPIN, socket_dropin(cfg.port, address), 0o644, "listen"))
        if "libvirtd.service" in observed.units:
            desired.append((LIBVIRTD_DROPIN, LIBVIRTD_STAY_UP, 0o644, "no idle exit"))
        actions: list[VirtAction] = []
        for path, content, mode, why in desired:
            if content is not None and observed.files.get(path) != content:
                actions.append(WriteFile(path, content, mode, why))
        written = {a.path for a in actions if isinstance(a, WriteFile)}
        if SOCKET_DROPIN in written:
            actions.append(RestartUnit("cockpit.socket"))
        if LIBVIRTD_DROPIN in written:
            actions.append(RestartUnit("libvirtd.service"))  # running VMs are not touched
        return actions

    def _certificate(self, ctx: Ctx) -> list[tuple[str, str | None, int, str]]:
        cfg = ctx.config.virt
        if not cfg.tls_certificate or not cfg.tls_key:
            return []
        cert, key = ctx.files.read(cfg.tls_certificate), ctx.files.read(cfg.tls_key)
        if cert is None or key is None:
            raise AgentError(
                f"virt.tls_certificate/tls_key: {cfg.tls_certificate} or {cfg.tls_key} is missing"
            )
        return [(CERT, cert, 0o644, "certificate"), (KEY, key, 0o600, "certificate key")]

    # -- apply -----------------------------------------------------------------------------

    def apply(self, action: VirtAction, ctx: Ctx) -> None:
        """Carry out one action."""
        match action:
            case InstallPackages(names):
                platform = ctx.facts.platform
                pm = package_manager(
                    platform.package_manager if platform else None,
                    ctx.runner,
                    ctx.files,
                    ctx.config.virt.package_lock_wait_seconds,
                )
                if pm is None:
                    raise AgentError("no supported package manager")

                def progress(text: str) -> None:
                    ctx.notifier.status(f"virt: {text}")
                    ctx.log.info(text, step=self.name)

                pm.install(names, progress)
            case ReloadBus():
                ctx.runner.run(["systemctl", "reload", "dbus.service"], timeout=120)
            case EnableUnit(unit):
                ctx.runner.run(["systemctl", "enable", "--now", unit], timeout=300)
            case WriteFile(path, content, mode, _):
                ctx.files.write(path, content, mode)
            case RestartUnit(unit):
                ctx.runner.run(["systemctl", "daemon-reload"])
                ctx.runner.run(["systemctl", "restart", unit], timeout=120)
            case OpenFirewall("firewalld", port):
                spec = (
                    ["--add-service=cockpit"]
                    if port == DEFAULT_PORT
                    else [f"--add-port={port}/tcp"]
                )
                ctx.runner.run(["firewall-cmd", "--permanent", *spec])
                ctx.runner.run(["firewall-cmd", *spec])
            case OpenFirewall("ufw", port):
                ctx.runner.run(["ufw", "allow", f"{port}/tcp"])
            case _:
                raise AgentError(f"virt: cannot apply {action!r}")

    # -- verify ----------------------------------------------------------------------------

    def verify(self, ctx: Ctx, observed: VirtObserved | None = None) -> list[Finding]:
        """Packages, units, Cockpit answering, libvirt answering, Machines page, /dev/kvm."""
        if observed is None:
            observed = self.observe(ctx)
        if observed.problem:
            return [Finding("critical", "virt-unsupported", observed.problem)]
        findings: list[Finding] = []
        if observed.missing:
            findings.append(
                Finding(
                    "critical",
                    "virt-packages-missing",
                    f"not installed: {' '.join(observed.missing)}",
                )
            )
        for unit, state in observed.units.items():
            if not state.ok:
                findings.append(
                    Finding(
                        "critical",
                        "unit-inactive",
                        f"{unit} is {state.active or 'unknown'} "
                        f"({state.enabled or 'not installed'})",
                    )
                )
        findings += self._serving(ctx, observed)
        if not ctx.files.exists(MACHINES_MANIFEST):
            findings.append(
                Finding(
                    "critical", "machines-missing", f"{MACHINES_MANIFEST} missing: no Machines page"
                )
            )
        if not any(ctx.files.exists(p) for p in LIBVIRT_DBUS):
            findings.append(
                Finding(
                    "critical",
                    "libvirt-dbus-missing",
                    "libvirt-dbus is not installed: Cockpit hides the Machines page without it",
                )
            )
        if not observed.kvm:
            findings.append(
                Finding(
                    "warning",
                    "no-kvm",
                    "/dev/kvm is missing: not a metal instance, or nested virtualisation is off; "
                    "VMs would run emulated",
                )
            )
        if not findings:
            findings.append(Finding("ok", "virt-serving", "Cockpit and libvirt are serving"))
        return findings

    def _serving(self, ctx: Ctx, observed: VirtObserved) -> list[Finding]:
        findings = []
        try:
            ctx.runner.run(["virsh", "-c", "qemu:///system", "uri"], timeout=60)
        except (CommandFailed, CommandNotFound) as exc:
            findings.append(Finding("critical", "libvirt-not-answering", str(exc)))
        host = observed.bridge_address if ctx.config.virt.listen_on_bridge_only else "127.0.0.1"
        url = f"https://{host or '127.0.0.1'}:{ctx.config.virt.port}/"
        error = self._login_page(url)
        if error:
            findings.append(Finding("critical", "cockpit-not-serving", f"{url}: {error}"))
        return findings

    def _login_page(self, url: str) -> str | None:
        """None when Cockpit's login page answers (retrying while cockpit-ws starts)."""
        deadline = time.monotonic() + self.serve_wait_seconds
        error = "no answer"
        while True:
            try:
                status, body = self.http_get(url, 10.0)
                if status == 200 and "cockpit" in body.lower():
                    return None
                error = f"HTTP {status}, not Cockpit's login page"
            except (OSError, ValueError) as exc:
                error = str(exc)
            if time.monotonic() >= deadline:
                return error
            self.sleep(2.0)
