"""The agent's node_exporter textfile passes Prometheus's own lint, `promtool check metrics`
(Debian's prometheus package, unpacked by tests/install-deps.sh integration), in the states a
host goes through: never reconciled, converged, drifted, degraded, and a check that ran out of
time. The first two come from the command line against the IMDS stub; the others from the
same check() with steps and facts that drift or degrade."""

from __future__ import annotations

import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cockpit_lab.imds_stub import ImdsStub
from tests.helpers.tools import UNPACKED, unpacked

from cockpit_agent.check import check
from cockpit_agent.config import Config
from cockpit_agent.engine import Ctx, Finding
from cockpit_agent.facts.gather import Facts
from cockpit_agent.facts.md import MdArray

pytestmark = pytest.mark.integration

PROMTOOL = UNPACKED / "prometheus" / "usr" / "bin" / "promtool"
AGENT = Path(sys.executable).parent / "cockpit-agent"


def promtool(textfile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(unpacked(PROMTOOL)), "check", "metrics"],
        stdin=textfile.open(),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def assert_lint_clean(textfile: Path) -> None:
    text = textfile.read_text()
    assert "cockpit_agent_build_info{" in text
    proc = promtool(textfile)
    assert (proc.returncode, proc.stdout + proc.stderr) == (0, ""), text


def test_promtool_catches_what_it_should(tmp_path: Path) -> None:
    # The lint the issue found, on the old name: proof that promtool runs and judges.
    bad = tmp_path / "bad.prom"
    bad.write_text("# HELP x_drift_count d\n# TYPE x_drift_count gauge\nx_drift_count 1\n")
    proc = promtool(bad)
    assert proc.returncode == 3 and 'should not have "_count" suffix' in proc.stdout + proc.stderr


@pytest.fixture
def host(tmp_path: Path, imds_stub: ImdsStub) -> list[str]:
    """The CLI's options for a host with every step off and IMDS answering."""
    config = tmp_path / "config.toml"
    steps = "".join(f"[{name}]\nenabled = false\n" for name in ("rootfs", "storage", "virt", "lni"))
    config.write_text(f'[imds]\nendpoint = "{imds_stub.url}"\n' + steps)
    state, lock = tmp_path / "state.json", tmp_path / "lock"
    return ["--config", str(config), "--state", str(state), "--lock", str(lock)]


def test_never_reconciled_then_converged_from_the_command_line(
    host: list[str], tmp_path: Path
) -> None:
    prom = tmp_path / "cockpit_agent.prom"
    first = subprocess.run([str(AGENT), "check", *host, "--prometheus", str(prom)], check=False)
    assert first.returncode == 1  # never reconciled: WARNING
    assert "cockpit_agent_last_run_success" not in prom.read_text()
    assert_lint_clean(prom)
    subprocess.run([str(AGENT), "reconcile", *host], check=True, capture_output=True)
    second = subprocess.run([str(AGENT), "check", *host, "--prometheus", str(prom)], check=False)
    assert second.returncode == 0
    assert "cockpit_agent_last_run_success 1" in prom.read_text()
    assert_lint_clean(prom)


@dataclass
class Step:
    """A step with fixed findings and a plan of `planned` actions, or an observation that
    waits on `hold`."""

    name: str
    findings: list[Finding]
    planned: int = 0
    hold: threading.Event | None = None
    depends_on: tuple[str, ...] = ()

    def enabled(self, config: Config) -> bool:
        return True

    def observe(self, ctx: Ctx) -> None:
        if self.hold is not None:
            self.hold.wait(30)

    def verify(self, ctx: Ctx, observed: None) -> list[Finding]:
        return self.findings

    def plan(self, observed: None, ctx: Ctx) -> list[Any]:
        return [Action() for _ in range(self.planned)]


class Action:
    def describe(self) -> str:
        return "mount /var/lib/libvirt/images"


def degraded_array(device: str, name: str) -> MdArray:
    return MdArray(
        device=device, path=f"/dev/{device}", dev="9:127", name=name, uuid=f"u-{device}",
        level="raid5", raid_disks=3, state="active", degraded=1, sync_action="recover",
        sync_completed="10 / 100", metadata="1.2", chunk_bytes=524288, stripe_cache_size=4096,
        size_bytes=2 * 1024**3, members=[],
    )  # fmt: skip


@pytest.mark.parametrize("case", ["drifted", "degraded", "timed-out"])
def test_drifted_degraded_and_timed_out(case: str, host: list[str], tmp_path: Path) -> None:
    subprocess.run([str(AGENT), "reconcile", *host], check=True, capture_output=True)
    arrays = [degraded_array("md127", "any:cockpit-data"), degraded_array("md126", "h:data")]
    hold = threading.Event()
    steps = {
        "drifted": [Step("storage", [Finding("ok", "mounted", "ok")], planned=2)],
        "degraded": [Step("storage", [Finding("critical", "storage-degraded", "md127")])],
        "timed-out": [Step("storage", [], hold=hold)],
    }[case]
    prom = tmp_path / "cockpit_agent.prom"
    report = check(
        Config(),
        state_path=Path(host[3]),
        lock_path=Path(host[5]),
        prometheus=prom,
        timeout=1.0 if case == "timed-out" else 30.0,
        gather_facts=lambda _: Facts(arrays=arrays if case == "degraded" else []),
        steps=steps,  # type: ignore[arg-type]
    )
    hold.set()
    assert report.code == {"drifted": 1, "degraded": 2, "timed-out": 3}[case]
    assert_lint_clean(prom)
