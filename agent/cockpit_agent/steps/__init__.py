"""The steps, one package per resource the agent owns, in the order a run takes them.

Each package has the same modules (docs/architecture.md): observed.py, plan.py, actions.py,
apply.py and step.py.
"""

from __future__ import annotations

from typing import Any

from cockpit_agent.engine import Step


def all_steps() -> list[Step[Any, Any]]:
    """Every step in run order."""
    from cockpit_agent.steps.lni import LniStep  # noqa: PLC0415
    from cockpit_agent.steps.rootfs.step import RootfsStep  # noqa: PLC0415
    from cockpit_agent.steps.storage.step import StorageStep  # noqa: PLC0415
    from cockpit_agent.steps.virt.step import VirtStep  # noqa: PLC0415

    return [RootfsStep(), StorageStep(), VirtStep(), LniStep()]
