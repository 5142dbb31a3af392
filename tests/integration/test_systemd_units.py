"""The units in systemd/ pass `systemd-analyze verify` and say what the design asks of them."""

from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

import pytest
from tests.helpers.tools import need_tools

UNITS = Path(__file__).resolve().parents[2] / "systemd"
INSTALLED_AT = "/usr/bin/cockpit-agent"

pytestmark = pytest.mark.integration


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment, method-assign]
    parser.read(UNITS / name)
    return parser


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    need_tools("systemd-analyze")
    # Point ExecStart at the agent installed in this environment, so verify checks a real file.
    agent = Path(sys.executable).parent / "cockpit-agent"
    assert agent.exists()
    for src in UNITS.iterdir():
        text = src.read_text().replace(INSTALLED_AT, str(agent))
        (tmp_path / src.name).write_text(text)
    proc = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *sorted(str(p) for p in tmp_path.iterdir())],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "", proc.stderr


def test_reconcile_service_contract() -> None:
    svc = unit("cockpit-agent.service")
    assert svc["Service"]["Type"] == "oneshot"
    assert svc["Service"]["RemainAfterExit"] == "yes"
    assert svc["Service"]["ExecStart"].startswith(f"{INSTALLED_AT} reconcile")
    assert svc["Service"]["NotifyAccess"] in ("main", "all")
    assert "network-online.target" in svc["Unit"]["Wants"]
    after = svc["Unit"]["After"].split()
    assert "network-online.target" in after
    # After cloud-init's init stage (either name), never pulling it in; not after
    # cloud-final.service, which is after multi-user.target and so after this unit.
    assert {"cloud-init.service", "cloud-init-network.service"} <= set(after)
    assert "cloud-final.service" not in after
    assert "cloud-init" not in svc["Unit"]["Wants"] + svc["Unit"].get("Requires", "")
    assert svc["Service"]["TimeoutStartSec"] == "45min"
    assert svc["Install"]["WantedBy"] == "multi-user.target"


def test_check_timer_contract() -> None:
    timer = unit("cockpit-agent-check.timer")
    assert timer["Timer"]["OnBootSec"] == "2min"
    assert timer["Timer"]["OnUnitActiveSec"] == "5min"
    assert unit("cockpit-agent-check.service")["Service"]["ExecStart"] == f"{INSTALLED_AT} check"
