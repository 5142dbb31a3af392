"""The host tools and unpacked packages a test needs: skipped without them, failed under `make
integration` (COCKPIT_TEST_REQUIRE_TOOLS=1)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

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


UNPACKED = Path("/var/cache/cockpit-agent-deps")  # tests/install-deps.sh: group_unpacked


def unpacked(path: Path) -> Path:
    """A file of a package tests/install-deps.sh unpacked; skipped (failed under `make
    integration`) when it is not there."""
    if not path.is_file():
        message = f"no {path} (tests/install-deps.sh)"
        if os.environ.get("COCKPIT_TEST_REQUIRE_TOOLS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path
