from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cockpit_agent import check as checking
from cockpit_agent.check import (
    drifted_steps,
    exit_code,
    prometheus_text,
    run_check,
    should_log,
    summary_line,
)
from cockpit_agent.config import Config
from cockpit_agent.engine import Ctx, Finding
from cockpit_agent.errors import LockHeld
from cockpit_agent.facts.gather import Facts
from cockpit_agent.facts.imds import InstanceIdentity
from cockpit_agent.facts.md import MdArray
from cockpit_agent.state import RunRecord, State, StepRecord, now, read_state, save_state
from tests.fakes import FakeRunner


@dataclass
class FixedStep:
    """A step whose verify() returns what the test says."""

    name: str
    findings: list[Finding]
    depends_on: tuple[str, ...] = ()
    crash: bool = False

    def enabled(self, config: Config) -> bool:
        return True

    observed: int = 0

    def verify(self, ctx: Ctx, observed: int | None = None) -> list[Finding]:
        if self.crash:
            raise RuntimeError("mdadm vanished")
        assert observed == self.observed, "verify judges the one observation of this check"
        return self.findings

    def observe(self, ctx: Ctx) -> int:
        self.observed += 1
        return self.observed

    def plan(self, observed: int, ctx: Ctx) -> list[Any]:
        return []


def facts(instance: str = "i-1") -> Facts:
    ident = InstanceIdentity.model_validate(
        {
            "instanceId": instance,
            "region": "r",
            "availabilityZone": "r1",
            "instanceType": "t",
            "accountId": "0",
        }
    )
    return Facts(identity=ident)


def state_file(tmp_path: Path, result: str = "converged", instance: str = "i-1") -> Path:
    state = State(instance_id=instance)
    run = RunRecord(run_id="r", started_at=now(), finished_at=now(), agent_version="0")
    run.result = result  # type: ignore[assignment]
    status = "failed" if result == "failed" else "converged"
    run.steps.append(
        StepRecord(name="storage", status=status, started_at=now(), error="mdadm: busy")
    )
    state.add_run(run)
    path = tmp_path / "state.json"
    save_state(path, state)
    return path


def check(tmp_path: Path, steps: list[FixedStep], **kw: str) -> list[Finding]:
    return run_check(Config(), facts(), state_file(tmp_path, **kw), steps, FakeRunner())  # type: ignore[arg-type]


def test_converged_host_is_ok(tmp_path: Path) -> None:
    found = check(tmp_path, [FixedStep("storage", [Finding("ok", "array-clean", "clean")])])
    assert exit_code(found) == 0
    assert summary_line(found) == "OK - host converged"


@pytest.mark.parametrize(("severity", "code"), [("warning", 1), ("critical", 2), ("unknown", 3)])
def test_worst_severity_sets_exit_code(tmp_path: Path, severity: str, code: int) -> None:
    step = FixedStep("lni", [Finding(severity, "x", "bridge down"), Finding("ok", "y", "fine")])  # type: ignore[arg-type]
    found = check(tmp_path, [step])
    assert exit_code(found) == code
    assert summary_line(found).endswith("- bridge down")


def test_summary_names_the_worst_first_and_counts_the_rest(tmp_path: Path) -> None:
    steps = [
        FixedStep("virt", [Finding("warning", "no-kvm", "/dev/kvm is missing")]),
        FixedStep("storage", [Finding("critical", "array-degraded", "md127 degraded")]),
    ]
    assert summary_line(check(tmp_path, steps)) == "CRITICAL - md127 degraded (+1 more)"


def test_findings_carry_their_step_and_drift_lists_steps(tmp_path: Path) -> None:
    steps = [
        FixedStep("virt", [Finding("warning", "no-kvm", "no kvm")]),
        FixedStep("storage", [Finding("ok", "clean", "clean")]),
        FixedStep("lni", [Finding("critical", "bridge-missing", "no br-lni")]),
    ]
    found = check(tmp_path, steps)
    assert {f.code: f.step for f in found}["bridge-missing"] == "lni"
    assert drifted_steps(found) == ["lni", "virt"]


def test_a_verify_that_crashes_is_unknown(tmp_path: Path) -> None:
    found = check(tmp_path, [FixedStep("storage", [], crash=True)])
    assert [(f.severity, f.code, f.step) for f in found] == [
        ("unknown", "storage-unverifiable", "storage")
    ]
    assert exit_code(found) == 3


def test_last_failed_reconcile_is_critical(tmp_path: Path) -> None:
    found = check(tmp_path, [], result="failed")
    assert exit_code(found) == 2
    assert "storage: mdadm: busy" in summary_line(found)


def test_state_of_another_instance_is_a_warning(tmp_path: Path) -> None:
    found = check(tmp_path, [], instance="i-baked")
    assert [f.code for f in found] == ["state-foreign"]


def test_no_state_is_a_warning(tmp_path: Path) -> None:
    found = run_check(Config(), facts(), tmp_path / "none.json", [], FakeRunner())
    assert [f.code for f in found] == ["never-reconciled"]


def test_unreadable_facts_are_reported(tmp_path: Path) -> None:
    f = Facts(errors={"imds": "IMDS unreachable"})
    found = run_check(Config(), f, state_file(tmp_path), [], FakeRunner())
    assert [(x.severity, x.code) for x in found] == [("warning", "facts-unavailable")]


def test_prometheus_textfile_parses(tmp_path: Path) -> None:
    path = state_file(tmp_path, result="failed")
    findings = [
        Finding("critical", "array-degraded", 'md127 "degraded"', step="storage"),
        Finding("ok", "fine", "fine", step="virt"),
    ]
    text = prometheus_text(findings, read_state(path), facts(), 1_700_000_000.0)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["cockpit_agent_check_status"].samples[0].value == 2
    assert families["cockpit_agent_drift_count"].samples[0].value == 1
    finding = families["cockpit_agent_finding"].samples[0]
    assert finding.labels == {"step": "storage", "code": "array-degraded", "severity": "critical"}
    assert families["cockpit_agent_last_run_success"].samples[0].value == 0
    statuses = {s.labels["status"]: s.value for s in families["cockpit_agent_step_status"].samples}
    assert statuses == {"converged": 0, "changed": 0, "failed": 1, "blocked": 0, "skipped": 0}


def test_prometheus_array_gauges(tmp_path: Path) -> None:
    array = MdArray(
        device="md127", path="/dev/md127", dev="9:127", name="any:cockpit-data", uuid="u",
        level="raid5", raid_disks=3, state="clean", degraded=1, sync_action="idle",
        sync_completed="none", metadata="1.2", chunk_bytes=262144, stripe_cache_size=4096,
        size_bytes=536870912, members=[],
    )  # fmt: skip
    with_array = facts().model_copy(update={"arrays": [array]})
    text = prometheus_text([], None, with_array, 1_700_000_000.0)
    families = {f.name: f.samples for f in text_string_to_metric_families(text)}
    assert [(s.labels, s.value) for s in families["cockpit_agent_array_degraded"]] == [
        ({"array": "cockpit-data"}, 1)
    ]
    assert families["cockpit_agent_array_size_bytes"][0].value == 536870912
    [active] = families["cockpit_agent_array_active"]
    assert (active.labels, active.value) == ({"array": "cockpit-data", "state": "clean"}, 1)


def test_same_findings_logged_at_most_once_an_hour(tmp_path: Path) -> None:
    memo = tmp_path / "check-log.json"
    a = [Finding("warning", "no-kvm", "no kvm")]
    b = [Finding("critical", "bridge-missing", "no br-lni")]
    assert should_log(a, memo, 1000.0)
    assert not should_log(a, memo, 1000.0 + 3599)
    assert should_log(b, memo, 1000.0 + 3599)  # something changed: log it
    assert should_log(a, memo, 1000.0 + 3600)
    assert should_log(a, memo, 1000.0 + 3600 + 3600)


@dataclass(frozen=True)
class Rewrite:
    path: str

    def describe(self) -> str:
        return f"rewrite {self.path}"


@dataclass
class DriftingStep(FixedStep):
    """verify() is happy, but the plan would change something: drift."""

    planned: tuple[Rewrite, ...] = ()

    def plan(self, observed: int, ctx: Ctx) -> list[Rewrite]:
        return list(self.planned)


def test_a_non_empty_plan_is_drift(tmp_path: Path) -> None:
    step = DriftingStep(
        "storage", [Finding("ok", "mounted", "mounted")], planned=(Rewrite("/etc/fstab"),)
    )
    found = check(tmp_path, [step])
    drift = [f for f in found if f.code == "storage-drift"]
    assert [(f.severity, f.step, f.message) for f in drift] == [
        ("warning", "storage", "reconcile would: rewrite /etc/fstab")
    ]
    assert exit_code(found) == 1
    assert drifted_steps(found) == ["storage"]


def test_no_plan_no_drift(tmp_path: Path) -> None:
    step = DriftingStep("storage", [Finding("ok", "mounted", "mounted")])
    assert exit_code(check(tmp_path, [step])) == 0


@dataclass
class Repairs:
    """Stands in for reconcile: records what it was asked to reconcile, then makes `step`
    converge (or raises `error`)."""

    step: FixedStep
    error: Exception | None = None
    only: list[list[str]] = field(default_factory=list)

    def __call__(self, config: Config, **kwargs: Any) -> RunRecord:
        self.only.append(list(kwargs["only"]))
        if self.error is not None:
            raise self.error
        self.step.findings = [Finding("ok", "storage-array", "clean")]
        return RunRecord(run_id="r", started_at=now(), agent_version="0")


def drifted(tmp_path: Path, auto_repair: bool = False) -> tuple[FixedStep, dict[str, Any]]:
    step = FixedStep("storage", [Finding("critical", "storage-not-mounted", "not mounted")])
    config = Config.model_validate({"health": {"auto_repair": auto_repair}})
    kwargs: dict[str, Any] = {
        "state_path": state_file(tmp_path),
        "lock_path": tmp_path / "lock",
        "gather_facts": lambda _config: facts(),
        "steps": [step],
        "config": config,
    }
    return step, kwargs


def test_repair_reconciles_the_drifted_steps_then_checks_again(tmp_path: Path) -> None:
    step, kwargs = drifted(tmp_path)
    repairs = Repairs(step)
    report = checking.check(kwargs.pop("config"), repair=True, reconcile=repairs, **kwargs)
    assert repairs.only == [["storage"]]
    assert (report.code, report.repaired, report.notes) == (0, ["storage"], [])
    assert report.lines()[:2] == ["OK - host converged", "repaired: reconciled storage"]
    assert report.as_json()["repaired_steps"] == ["storage"]


def test_auto_repair_repairs_without_being_asked(tmp_path: Path) -> None:
    step, kwargs = drifted(tmp_path, auto_repair=True)
    repairs = Repairs(step)
    assert checking.check(kwargs.pop("config"), reconcile=repairs, **kwargs).repaired == ["storage"]
    assert repairs.only == [["storage"]]


def test_without_repair_nothing_is_reconciled(tmp_path: Path) -> None:
    step, kwargs = drifted(tmp_path)
    repairs = Repairs(step)
    report = checking.check(kwargs.pop("config"), reconcile=repairs, **kwargs)
    assert repairs.only == [] and report.repaired == []
    assert (report.code, report.summary) == (2, "CRITICAL - not mounted")


def test_a_held_lock_skips_the_repair_and_says_so(tmp_path: Path) -> None:
    step, kwargs = drifted(tmp_path)
    repairs = Repairs(step, error=LockHeld(str(tmp_path / "lock"), 4242))
    report = checking.check(kwargs.pop("config"), repair=True, reconcile=repairs, **kwargs)
    assert report.repaired == [] and report.code == 2
    assert report.notes == [
        f"repair skipped: another cockpit-agent run (process 4242) holds {tmp_path / 'lock'}"
    ]


def test_the_report_as_json_and_as_lines(tmp_path: Path) -> None:
    _, kwargs = drifted(tmp_path)
    report = checking.check(kwargs.pop("config"), **kwargs)
    assert report.as_json() == {
        "status": "CRITICAL",
        "exit_code": 2,
        "summary": "CRITICAL - not mounted",
        "repaired_steps": [],
        "findings": [
            {
                "severity": "critical",
                "code": "storage-not-mounted",
                "message": "not mounted",
                "step": "storage",
            }
        ],
    }
    assert report.lines() == [
        "CRITICAL - not mounted",
        "[CRITICAL] storage: storage-not-mounted: not mounted",
    ]
