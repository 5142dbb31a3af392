"""The steps, one module per resource the agent owns, in the order a run takes them."""

from __future__ import annotations

from typing import Any

from cockpit_agent.engine import Step


def all_steps() -> list[Step[Any, Any]]:
    """Every step in run order. Each step issue registers its step here when it lands."""
    return []
