"""The steps, one module per resource the agent owns, in the order a run takes them."""

from __future__ import annotations

from typing import Any

from cockpit_agent.engine import Step


def all_steps() -> list[Step[Any, Any]]:
    """Every step in run order. Each step issue registers its step here when it lands."""
    from cockpit_agent.steps.lni import LniStep  # noqa: PLC0415
    from cockpit_agent.steps.rootfs import RootfsStep  # noqa: PLC0415
    from cockpit_agent.steps.storage import StorageStep  # noqa: PLC0415
    from cockpit_agent.steps.virt import VirtStep  # noqa: PLC0415

    return [RootfsStep(), StorageStep(), VirtStep(), LniStep()]
