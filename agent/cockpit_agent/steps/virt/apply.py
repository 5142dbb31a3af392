"""Carrying out the virt step's actions."""

from __future__ import annotations

from typing import assert_never

from cockpit_agent.engine import Ctx
from cockpit_agent.errors import AgentError
from cockpit_agent.host import systemd
from cockpit_agent.steps.virt.actions import (
    EnableUnit,
    InstallPackages,
    OpenFirewall,
    ReloadBus,
    RestartUnit,
    VirtAction,
    WriteFile,
)
from cockpit_agent.steps.virt.observed import DEFAULT_PORT, host_package_manager


def apply_action(action: VirtAction, ctx: Ctx) -> None:
    """Carry out one action."""
    match action:
        case InstallPackages(names):
            _install(names, ctx)
        case ReloadBus():
            systemd.reload(ctx.runner, "dbus.service")
        case EnableUnit(unit):
            systemd.enable_now(ctx.runner, unit)
        case WriteFile(path, content, mode, _):
            ctx.files.write(path, content, mode)
        case RestartUnit(unit):
            systemd.daemon_reload(ctx.runner)
            systemd.restart(ctx.runner, unit)
        case OpenFirewall():
            _open_firewall(action, ctx)
        case _:
            assert_never(action)


def _install(names: tuple[str, ...], ctx: Ctx) -> None:
    pm = host_package_manager(ctx)
    if pm is None:
        raise AgentError("no supported package manager")

    def progress(text: str) -> None:
        ctx.notifier.status(f"virt: {text}")
        ctx.log.info(text, step="virt")

    pm.install(names, progress)


def _open_firewall(action: OpenFirewall, ctx: Ctx) -> None:
    if action.tool == "firewalld":
        port = action.port
        spec = ["--add-service=cockpit"] if port == DEFAULT_PORT else [f"--add-port={port}/tcp"]
        ctx.runner.run(["firewall-cmd", "--permanent", *spec])
        ctx.runner.run(["firewall-cmd", *spec])
    elif action.tool == "ufw":
        ctx.runner.run(["ufw", "allow", f"{action.port}/tcp"])
    else:
        raise AgentError(f"virt: cannot apply {action!r}")
