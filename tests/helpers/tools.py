"""The host tools a test needs: skipped without them, failed under `make integration`."""

from __future__ import annotations

import os
import shutil

import pytest


def need_tools(*tools: str) -> None:
    """Skip the test when a tool is missing; fail it instead under `make integration`
    (COCKPIT_TEST_REQUIRE_TOOLS=1), which installs them first, so a missing install step
    cannot hide behind a skip."""
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if not missing:
        return
    message = f"missing tools: {', '.join(missing)} (tests/install-deps.sh integration)"
    if os.environ.get("COCKPIT_TEST_REQUIRE_TOOLS") == "1":
        pytest.fail(message)
    pytest.skip(message)
