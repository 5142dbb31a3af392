"""The virt step's plan: pure, from what was observed and the configuration to the actions
that install, enable, harden and open what is not so already."""

from __future__ import annotations

from cockpit_agent.config import VirtConfig
from cockpit_agent.errors import AgentError
from cockpit_agent.render.cockpit import merge_ini, socket_dropin, with_users
from cockpit_agent.steps.virt.actions import (
    EnableUnit,
    InstallPackages,
    OpenFirewall,
    ReloadBus,
    RestartUnit,
    VirtAction,
    WriteFile,
)
from cockpit_agent.steps.virt.observed import (
    CERT,
    COCKPIT_CONF,
    DEFAULT_PORT,
    DISALLOWED_USERS,
    KEY,
    LIBVIRTD_DROPIN,
    LIBVIRTD_STAY_UP,
    SOCKET_DROPIN,
    VirtObserved,
)

# A file the step owns: (path, content, mode, why); content None = nothing to write.
Desired = tuple[str, str | None, int, str]


def plan_virt(observed: VirtObserved, cfg: VirtConfig) -> list[VirtAction]:
    """Install, enable, harden, open the firewall — only what is not already so."""
    if observed.problem:
        raise AgentError(observed.problem)
    actions: list[VirtAction] = []
    if observed.missing:
        actions += [InstallPackages(observed.missing), ReloadBus()]
    for unit, state in observed.units.items():
        if observed.missing or not state.ok:
            actions.append(EnableUnit(unit))
    actions += _files(observed, cfg)
    if observed.firewall and not observed.firewall_open:
        actions.append(OpenFirewall(observed.firewall, cfg.port))
    return actions


def _files(observed: VirtObserved, cfg: VirtConfig) -> list[VirtAction]:
    desired: list[Desired] = []
    if cfg.disallow_root:
        current = observed.files.get(DISALLOWED_USERS) or ""
        desired.append((DISALLOWED_USERS, with_users(current, ["root"]), 0o644, "no root login"))
    current_conf = observed.files.get(COCKPIT_CONF) or ""
    merged = merge_ini(current_conf, "WebService", {"LoginTo": "false"})
    desired.append((COCKPIT_CONF, merged, 0o644, "LoginTo = false"))
    desired += _certificate(observed, cfg)
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


def _certificate(observed: VirtObserved, cfg: VirtConfig) -> list[Desired]:
    if not cfg.tls_certificate or not cfg.tls_key:
        return []
    cert, key = observed.certificate
    if cert is None or key is None:
        raise AgentError(
            f"virt.tls_certificate/tls_key: {cfg.tls_certificate} or {cfg.tls_key} is missing"
        )
    return [(CERT, cert, 0o644, "certificate"), (KEY, key, 0o600, "certificate key")]
