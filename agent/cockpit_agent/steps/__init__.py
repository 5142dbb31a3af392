"""The steps, one package per resource the agent owns, in the order a run takes them.

Each package has the same modules (docs/architecture.md): actions.py, observed.py, plan.py,
apply.py and step.py.
"""

from __future__ import annotations

from typing import Any

from cockpit_agent.engine import Step


def all_steps() -> list[Step[Any, Any]]:
    """Every step in run order; a step comes after those it depends on."""
    from cockpit_agent.steps.libvirt_network.step import LibvirtNetworkStep  # noqa: PLC0415
    from cockpit_agent.steps.lni.step import LniStep  # noqa: PLC0415
    from cockpit_agent.steps.rootfs.step import RootfsStep  # noqa: PLC0415
    from cockpit_agent.steps.storage.step import StorageStep  # noqa: PLC0415
    from cockpit_agent.steps.virt.step import VirtStep  # noqa: PLC0415

    return [RootfsStep(), StorageStep(), VirtStep(), LniStep(), LibvirtNetworkStep()]
