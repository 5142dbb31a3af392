"""The virt step: Cockpit, cockpit-machines, libvirt and qemu: installed, enabled, serving."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cockpit_agent.config import Config
from cockpit_agent.engine import Ctx, Finding
from cockpit_agent.errors import CommandFailed, CommandNotFound
from cockpit_agent.host.http import https_get
from cockpit_agent.host.run import at_once
from cockpit_agent.steps.virt.actions import VirtAction
from cockpit_agent.steps.virt.observed import LIBVIRT_DBUS, MACHINES_MANIFEST, VirtObserved, observe
from cockpit_agent.steps.virt.plan import plan_virt


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

    def observe(self, ctx: Ctx) -> VirtObserved:
        """See observed.observe."""
        return observe(ctx)

    def plan(self, observed: VirtObserved, ctx: Ctx) -> list[VirtAction]:
        """See plan.py."""
        return plan_virt(observed, ctx.config.virt)

    def apply(self, action: VirtAction, ctx: Ctx) -> None:
        """See apply.py."""
        from cockpit_agent.steps.virt.apply import apply_action  # noqa: PLC0415 - check never applies

        apply_action(action, ctx)

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
        host = observed.bridge_address if ctx.config.virt.listen_on_bridge_only else "127.0.0.1"
        url = f"https://{host or '127.0.0.1'}:{ctx.config.virt.port}/"
        libvirt: list[Finding] = []
        cockpit: list[Finding] = []

        def ask_libvirt() -> None:
            try:
                ctx.runner.run(["virsh", "-c", "qemu:///system", "uri"], timeout=60)
            except (CommandFailed, CommandNotFound) as exc:
                libvirt.append(Finding("critical", "libvirt-not-answering", str(exc)))

        def ask_cockpit() -> None:
            error = self._login_page(url, self.serve_wait_seconds if ctx.waits else 0.0)
            if error:
                cockpit.append(Finding("critical", "cockpit-not-serving", f"{url}: {error}"))

        at_once(ask_libvirt, ask_cockpit)
        return libvirt + cockpit

    def _login_page(self, url: str, wait: float) -> str | None:
        """None when Cockpit's login page answers (retrying for `wait` seconds while
        cockpit-ws starts)."""
        deadline = time.monotonic() + wait
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
