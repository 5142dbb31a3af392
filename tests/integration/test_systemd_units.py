"""The units in systemd/ pass `systemd-analyze verify` and say what the design asks of them."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tests.helpers.tools import need_tools

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "systemd"
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
    assert (
        unit("cockpit-agent-check.service")["Service"]["ExecStart"]
        == f"{INSTALLED_AT} check --timeout 60"
    )


# --- issue 20: the units' sandboxes, rated by `systemd-analyze security --offline=true` ------

CHECK_UNIT = "cockpit-agent-check.service"
DROPINS = ROOT / "packaging" / "monitoring"


def exposure(tmp_path: Path, name: str, *dropins: Path) -> float:
    """The overall exposure systemd-analyze gives the unit as installed in a root with these
    drop-ins (0 safe ... 10 unsafe)."""
    need_tools("systemd-analyze")
    root = tmp_path / "root"
    shutil.rmtree(root, ignore_errors=True)
    (root / "usr/lib/systemd/system").mkdir(parents=True)
    shutil.copy(UNITS / name, root / "usr/lib/systemd/system" / name)
    dropin_dir = root / "etc/systemd/system" / f"{name}.d"
    dropin_dir.mkdir(parents=True)
    for dropin in dropins:
        shutil.copy(dropin, dropin_dir / f"50-{dropin.name}")
    proc = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", f"--root={root}", "--no-pager", name],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", proc.stdout)
    assert match, proc.stdout + proc.stderr
    return float(match[1])


def test_the_check_unit_is_sandboxed_to_at_most_5(tmp_path: Path) -> None:
    assert exposure(tmp_path, CHECK_UNIT) <= 5.0  # 2.7 with systemd 252
    # The Prometheus drop-in opens its textfile directory and nothing else.
    prometheus = DROPINS / "cockpit-agent-check-prometheus.conf"
    assert exposure(tmp_path, CHECK_UNIT, prometheus) <= 5.0
    dropin = prometheus.read_text()
    textfile = re.search(r"--prometheus (\S+)/[^/\s]+\.prom", dropin)
    assert textfile and f"ReadWritePaths=-{textfile[1]}\n" in dropin


def test_the_repair_dropin_lifts_the_sandbox_to_the_reconcile_units(tmp_path: Path) -> None:
    repair = DROPINS / "cockpit-agent-check-repair.conf"
    plain = unit(CHECK_UNIT)["Service"]
    lifted = configparser.ConfigParser(strict=False, interpolation=None)
    lifted.optionxform = str  # type: ignore[assignment, method-assign]
    lifted.read(repair)
    sandbox = set(plain) - {"Type", "ExecStart", "SuccessExitStatus", "Nice", "IOSchedulingClass"}
    assert sandbox <= set(lifted["Service"]), "a sandbox setting the drop-in does not reset"
    # Everything reset, the check unit is rated as an unsandboxed one (9.6 with systemd 252).
    assert exposure(tmp_path, CHECK_UNIT, repair) >= 9.5


def test_the_reconcile_unit_is_sandboxed_as_far_as_its_work_allows(tmp_path: Path) -> None:
    assert exposure(tmp_path, "cockpit-agent.service") <= 9.3
    service = unit("cockpit-agent.service")["Service"]
    # It mounts for the whole host, writes /etc, loads modules and changes links: no setting
    # that gives it a mount or network namespace of its own (a mount made inside one is gone
    # for the host: the lab once lost its array that way, to ProtectKernelLogs=), no device
    # allow-list (ProtectClock=).
    namespaced = {
        "ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices", "PrivateMounts",
        "ProtectKernelLogs", "ProtectKernelModules", "ProtectKernelTunables",
        "ProtectControlGroups", "ProtectProc", "ProcSubset", "ReadOnlyPaths", "ReadWritePaths",
        "InaccessiblePaths", "TemporaryFileSystem", "BindPaths", "BindReadOnlyPaths",
        "MountFlags", "RootDirectory", "RootImage", "PrivateNetwork", "NetworkNamespacePath",
        "PrivateUsers", "ProtectClock",
    }  # fmt: skip
    assert not namespaced & set(service), namespaced & set(service)


def test_repair_in_the_read_only_sandbox_is_skipped_and_said(tmp_path: Path) -> None:
    # ProtectSystem=strict as the check sees it: the state directory on a read-only mount.
    from tests.unit.test_check import FixedStep  # noqa: PLC0415

    from cockpit_agent.check import check  # noqa: PLC0415
    from cockpit_agent.config import Config  # noqa: PLC0415
    from cockpit_agent.engine import Finding  # noqa: PLC0415
    from cockpit_agent.facts.gather import Facts  # noqa: PLC0415

    need_tools("mount", "umount")
    state_dir = tmp_path / "var-lib"
    state_dir.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "h9-ro", str(state_dir)], check=True
    )
    try:
        asked: list[object] = []
        report = check(
            Config(),
            state_path=state_dir / "cockpit-agent" / "state.json",
            lock_path=tmp_path / "lock",
            repair=True,
            gather_facts=lambda _: Facts(),
            reconcile=lambda *a, **kw: asked.append(kw),  # type: ignore[arg-type]
            steps=[FixedStep("storage", [Finding("critical", "not-mounted", "not mounted")])],  # type: ignore[list-item]
        )
    finally:
        subprocess.run(["umount", str(state_dir)], check=True)
    assert asked == [] and report.code == 2
    assert report.notes == [
        f"repair skipped: {state_dir}/cockpit-agent is read-only here (the check unit's sandbox: "
        "docs/monitoring.md, Repair, says how to allow repair)"
    ]
