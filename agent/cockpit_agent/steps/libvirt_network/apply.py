"""Carrying out the libvirt_network step's actions with virsh.

What the step moves (libvirt's stock `default`) and creates (its own `default`) goes into its
step_data, and the state file is saved (ctx.checkpoint), before it acts: a run killed half-way
through is finished by the next from that record.
"""

from __future__ import annotations

from typing import Any, assert_never

from cockpit_agent.engine import Ctx
from cockpit_agent.render.libvirt_network import renamed_xml
from cockpit_agent.steps.libvirt_network.actions import (
    AutostartLibvirtNetwork,
    DefineLibvirtNetwork,
    LibvirtNetworkAction,
    MoveLibvirtNetwork,
    RemoveLibvirtNetwork,
    StartLibvirtNetwork,
)
from cockpit_agent.steps.libvirt_network.observed import DEFAULT_NETWORK, STOCK_RENAMED, virsh

XML_DIR = "/run/cockpit-agent"


def apply_action(action: LibvirtNetworkAction, ctx: Ctx) -> None:
    """Carry out one action, recording first what it moves or creates."""
    match action:
        case DefineLibvirtNetwork(name, xml, replace, active):
            if name == DEFAULT_NETWORK:
                # Only the `default` part of the plan defines it: it is the agent's from here.
                record(ctx)["created"] = xml
                ctx.checkpoint()
            if replace:
                remove_network(ctx, name, active)
            define_network(ctx, name, xml)
        case AutostartLibvirtNetwork(name):
            ctx.runner.run(virsh("net-autostart", name))
        case StartLibvirtNetwork(name):
            ctx.runner.run(virsh("net-start", name))
        case MoveLibvirtNetwork():
            _move(action, ctx)
        case RemoveLibvirtNetwork(name, active):
            remove_network(ctx, name, active)
            record(ctx).pop("created", None)
            ctx.checkpoint()
        case _:
            assert_never(action)


def record(ctx: Ctx) -> dict[str, Any]:
    """The step's record of libvirt's `default`: what it moved ("stock") and made ("created")."""
    data = ctx.step_data.setdefault("libvirt_network", {})
    kept: dict[str, Any] = data.setdefault("default_network", {})
    return kept


def define_network(ctx: Ctx, name: str, xml: str) -> None:
    """`virsh net-define` from a file the agent writes."""
    path = f"{XML_DIR}/libvirt-network-{name}.xml"
    ctx.files.write(path, xml, 0o600)
    ctx.runner.run(virsh("net-define", ctx.files.for_program(path)))


def remove_network(ctx: Ctx, name: str, active: bool) -> None:
    """Stop (if active) and undefine a network."""
    if active:
        ctx.runner.run(virsh("net-destroy", name))
    ctx.runner.run(virsh("net-undefine", name))


def _move(action: MoveLibvirtNetwork, ctx: Ctx) -> None:
    kept = record(ctx)
    if action.new == STOCK_RENAMED and action.present:
        kept["stock"] = {"xml": action.xml, "active": action.active, "autostart": action.autostart}
        ctx.checkpoint()
    if action.present:
        remove_network(ctx, action.old, action.active)
    define_network(ctx, action.new, renamed_xml(action.xml, action.new))
    if action.autostart:
        ctx.runner.run(virsh("net-autostart", action.new))
    if action.active:
        ctx.runner.run(virsh("net-start", action.new))
    if action.new == DEFAULT_NETWORK:
        # The stock network has its name back: nothing of the agent's is left to undo.
        kept.clear()
        ctx.checkpoint()
