"""Shared fixtures for every test layer."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from cockpit_lab.imds_stub import ImdsStub
from hypothesis import HealthCheck, settings

FIXTURES = Path(__file__).parent / "fixtures"

# Property-based tests (tests/unit/test_fuzz.py) run in `make unit`: few examples, and a
# deadline generous enough for a busy 2-core machine. HYPOTHESIS_PROFILE=fuzz searches longer.
settings.register_profile("unit", max_examples=60, deadline=2000)
settings.register_profile(
    "fuzz", max_examples=5000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "unit"))


@pytest.fixture
def imds_tree() -> dict[str, Any]:
    """The Outposts-server IMDS tree (LNI at device index 1), fresh per test."""
    tree: dict[str, Any] = json.loads((FIXTURES / "imds" / "outposts-server.json").read_text())
    return tree


@pytest.fixture
def imds_stub(imds_tree: dict[str, Any]) -> Iterator[ImdsStub]:
    """A running IMDSv2 stub on 127.0.0.1 serving imds_tree."""
    with ImdsStub(imds_tree) as stub:
        yield stub


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    """A test that configures logging must not leave it writing to a closed capture stream."""
    yield
    structlog.reset_defaults()
