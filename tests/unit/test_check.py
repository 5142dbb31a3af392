from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cockpit_agent import __version__
from cockpit_agent import check as checking
from cockpit_agent.check import (
    CheckReport,
    drifted_steps,
    exit_code,
    prometheus_text,
    run_check,
    should_log,
    summary_line,
)
from cockpit_agent.config import Config
from cockpit_agent.engine import Ctx, Finding
from cockpit_agent.errors import CommandFailed, LockHeld
from cockpit_agent.facts.gather import Facts
from cockpit_agent.facts.imds import InstanceIdentity
from cockpit_agent.state import RunRecord, State, StepRecord, now, read_state, save_state
from tests.fakes import FakeRunner
from tests.helpers.md import md_array


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
    assert summary_line(found) == "COCKPIT-AGENT OK - host converged"


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
    assert (
        summary_line(check(tmp_path, steps)) == "COCKPIT-AGENT CRITICAL - md127 degraded (+1 more)"
    )


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


def metrics(report: CheckReport, state: State | None = None) -> dict[str, Any]:
    text = prometheus_text(report, state, 1_700_000_000.0, 0.25)
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_prometheus_textfile_parses(tmp_path: Path) -> None:
    path = state_file(tmp_path, result="failed")
    findings = [
        Finding("critical", "array-degraded", 'md127 "degraded"', step="storage"),
        Finding("warning", "storage-drift", "reconcile would: mount", step="storage"),
        Finding("ok", "fine", "fine", step="virt"),
    ]
    report = CheckReport(findings, durations={"storage": 0.5, "virt": 0.25})
    families = metrics(report, read_state(path))
    assert families["cockpit_agent_check_status"].samples[0].value == 2
    assert families["cockpit_agent_drifted_steps"].samples[0].value == 1
    assert [s.labels for s in families["cockpit_agent_finding"].samples] == [
        {"step": "storage", "code": "array-degraded", "severity": "critical"},
        {"step": "storage", "code": "storage-drift", "severity": "warning"},
    ]
    assert families["cockpit_agent_last_run_success"].samples[0].value == 0
    statuses = {s.labels["status"]: s.value for s in families["cockpit_agent_step_status"].samples}
    assert statuses == {"converged": 0, "changed": 0, "failed": 1, "blocked": 0, "skipped": 0}
    [build] = families["cockpit_agent_build_info"].samples
    assert (build.labels, build.value) == ({"version": __version__}, 1)
    steps = families["cockpit_agent_check_step_duration_seconds"].samples
    assert {s.labels["step"]: s.value for s in steps} == {"storage": 0.5, "virt": 0.25}
    assert families["cockpit_agent_check_duration_seconds"].samples[0].value == 0.25


def test_prometheus_names_follow_the_conventions(tmp_path: Path) -> None:
    state = read_state(state_file(tmp_path))
    families = metrics(CheckReport([], arrays=[md_array()], durations={"storage": 1}), state)
    for name, family in families.items():
        assert family.type == "gauge", name
        assert not name.endswith(("_count", "_sum", "_bucket", "_total")), name
        if name.endswith("_info"):
            assert {s.value for s in family.samples} == {1}, name
    assert "cockpit_agent_build_info" in families


def test_prometheus_array_labels_are_stable_and_apart() -> None:
    # Two arrays called cockpit-data from two homehosts; md's array_state is not a label.
    arrays = [md_array("any:cockpit-data"), md_array("other:cockpit-data", device="md126")]
    families = metrics(CheckReport([], arrays=arrays))
    for name in ("active", "degraded_members", "size_bytes"):
        samples = families[f"cockpit_agent_array_{name}"].samples
        assert [s.labels for s in samples] == [
            {"array": "any:cockpit-data", "uuid": "uuid-md127"},
            {"array": "other:cockpit-data", "uuid": "uuid-md126"},
        ]
    assert families["cockpit_agent_array_degraded_members"].samples[0].value == 1
    assert families["cockpit_agent_array_size_bytes"].samples[0].value == 536870912
    [info, _] = families["cockpit_agent_array_info"].samples
    assert info.labels["device"] == "md127" and info.labels["level"] == "raid5"
    active = [md_array(state=state) for state in ("clean", "active")]
    text = [prometheus_text(CheckReport([], arrays=[a]), None, 0, 0) for a in active]
    assert text[0] == text[1]  # a clean/active flip is the same series, same value


# The monitoring-plugin guidelines' status line and perfdata, as a grammar.
NUM = r"-?[0-9]+(?:\.[0-9]+)?"
RANGE = rf"@?(?:(?:~|{NUM}):)?(?:{NUM})?"
PERF_ITEM = re.compile(
    rf"(?P<label>'[^'=]+'|[^'=\s]+)=(?P<value>{NUM}|U)(?P<uom>s|ms|us|%|B|KB|MB|TB|c)?"
    rf"(?:;(?P<warn>{RANGE})(?:;(?P<crit>{RANGE})(?:;(?P<min>{NUM})?(?:;(?P<max>{NUM})?)?)?)?)?"
)
STATUS_LINE = re.compile(r"COCKPIT-AGENT (OK|WARNING|CRITICAL|UNKNOWN) - ([^|\n]+) \| (.*)")


def parse_status_line(line: str) -> tuple[str, str, dict[str, dict[str, str | None]]]:
    """(state, text, perfdata by label); fails unless the line follows the grammar."""
    match = STATUS_LINE.fullmatch(line)
    assert match, line
    perf: dict[str, dict[str, str | None]] = {}
    for item in match[3].split(" ") if match[3] else []:
        parsed = PERF_ITEM.fullmatch(item)
        assert parsed, item
        perf[parsed["label"].strip("'")] = parsed.groupdict()
    return match[1], match[2], perf


def test_status_line_and_perfdata_follow_the_plugin_grammar(tmp_path: Path) -> None:
    step = DriftingStep(
        "storage", [Finding("critical", "x", "a | b\nc")], planned=(Rewrite("/etc/fstab"),)
    )
    found = check(tmp_path, [step])
    arrays = [md_array("any:data"), md_array("h:it's=odd", device="md126", degraded=0)]
    report = CheckReport(found, arrays=arrays, durations={"storage": 0.1234})
    state, text, perf = parse_status_line(report.lines()[0])
    assert (state, text) == ("CRITICAL", "a / b c (+1 more)")
    assert (perf["drift"]["value"], perf["drift"]["warn"], perf["drift"]["min"]) == ("1", "0", "0")
    degraded = perf["any:data_degraded"]
    assert (degraded["value"], degraded["crit"], degraded["max"]) == ("1", "0", "3")
    assert perf["h:it_s_odd_degraded"]["value"] == "0"
    assert (perf["any:data_size"]["value"], perf["any:data_size"]["uom"]) == ("536870912", "B")
    assert (perf["storage_seconds"]["value"], perf["storage_seconds"]["uom"]) == ("0.123", "s")


def test_no_message_can_put_a_pipe_in_the_status_line(tmp_path: Path) -> None:
    error = CommandFailed(["systemctl", "show"], 1, "Failed to connect\nto bus | really\n")
    found = [Finding("unknown", "virt-unverifiable", str(error), step="virt")]
    state, text, _ = parse_status_line(CheckReport(found).lines()[0])
    assert (state, text) == (
        "UNKNOWN",
        "systemctl show exited 1; Failed to connect / to bus / really",
    )


@dataclass
class SlowStep(FixedStep):
    """A step whose observation waits: on an event, or on a real command."""

    command: tuple[str, ...] = ()
    release: threading.Event = field(default_factory=threading.Event)

    def observe(self, ctx: Ctx) -> int:
        if self.command:
            ctx.runner.run(self.command)
        else:
            self.release.wait(30)
        return 1


def test_a_slow_step_ends_in_unknown_within_the_timeout(tmp_path: Path) -> None:
    _, kwargs = drifted(tmp_path)
    step = SlowStep("storage", [])
    prom = tmp_path / "agent.prom"
    started = time.monotonic()
    report = checking.check(
        kwargs.pop("config"), **{**kwargs, "steps": [step]}, timeout=0.3, prometheus=prom
    )
    step.release.set()
    assert time.monotonic() - started < 2
    assert report.code == 3
    assert report.summary == (
        "COCKPIT-AGENT UNKNOWN - the check did not finish within 0.3 s (still running: storage)"
    )
    families = {f.name: f for f in text_string_to_metric_families(prom.read_text())}
    assert families["cockpit_agent_check_status"].samples[0].value == 3


def test_slow_facts_end_in_unknown_and_name_them(tmp_path: Path) -> None:
    _, kwargs = drifted(tmp_path)
    release = threading.Event()
    kwargs["gather_facts"] = lambda _config: release.wait(30) and facts()
    report = checking.check(kwargs.pop("config"), **kwargs, timeout=0.2)
    release.set()
    assert report.code == 3 and report.summary.endswith("(still running: facts)")


def test_a_command_past_the_timeout_is_killed(tmp_path: Path) -> None:
    _, kwargs = drifted(tmp_path)
    step = SlowStep("storage", [], command=("sleep", "30"))
    kwargs["steps"] = [step]
    report = checking.check(kwargs.pop("config"), **kwargs, timeout=0.5)
    assert report.code == 3
    deadline = time.monotonic() + 5
    while running_commands() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not running_commands(), "the sleep outlived the check"


def running_commands() -> list[Any]:
    from cockpit_agent.host import run  # noqa: PLC0415

    return [p for p in run._RUNNING if p.poll() is None]


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
    assert report.lines()[0].startswith("COCKPIT-AGENT OK - host converged | 'drift'=0;0;;0 ")
    assert report.lines()[1] == "repaired: reconciled storage"
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
    assert (report.code, report.summary) == (2, "COCKPIT-AGENT CRITICAL - not mounted")


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
    report.durations = {"storage": 0.0123}  # the time it took, fixed for the comparison
    assert report.as_json() == {
        "status": "CRITICAL",
        "exit_code": 2,
        "summary": "COCKPIT-AGENT CRITICAL - not mounted",
        "perfdata": "'drift'=0;0;;0 'storage_seconds'=0.012s;;;0",
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
        "COCKPIT-AGENT CRITICAL - not mounted | 'drift'=0;0;;0 'storage_seconds'=0.012s;;;0",
        "[CRITICAL] storage: storage-not-mounted: not mounted",
    ]


@dataclass
class SleepyStep(FixedStep):
    """A step whose observation takes `seconds`, as one waiting on a command does."""

    seconds: float = 0.0

    def observe(self, ctx: Ctx) -> int:
        time.sleep(self.seconds)
        return super().observe(ctx)


def test_steps_are_observed_concurrently_and_reported_in_order(tmp_path: Path) -> None:
    steps = [
        SleepyStep("rootfs", [Finding("warning", "slow", "slow first")], seconds=0.6),
        SleepyStep("storage", [Finding("critical", "fast", "fast second")], seconds=0.1),
        SleepyStep("virt", [Finding("ok", "fine", "fine")], seconds=0.6),
    ]
    durations: dict[str, float] = {}
    started = time.monotonic()
    found = run_check(
        Config(),
        facts(),
        state_file(tmp_path),
        steps,  # type: ignore[arg-type]
        FakeRunner(),
        durations=durations,
    )
    assert time.monotonic() - started < 1.1  # not 0.6 + 0.1 + 0.6
    assert [(f.step, f.code) for f in found] == [
        ("rootfs", "slow"),
        ("storage", "fast"),
        ("virt", "fine"),
    ]
    assert list(durations) == ["rootfs", "storage", "virt"]
    assert durations["rootfs"] >= 0.6 and durations["storage"] < 0.5


def test_the_timeout_bounds_the_checks_not_the_repair(tmp_path: Path) -> None:
    step, kwargs = drifted(tmp_path)
    repairs = Repairs(step)

    def slow_repair(config: Config, **kw: Any) -> RunRecord:
        time.sleep(0.5)  # longer than the timeout: a reconcile is never cut short
        return repairs(config, **kw)

    report = checking.check(
        kwargs.pop("config"), repair=True, reconcile=slow_repair, timeout=0.3, **kwargs
    )
    assert (report.code, report.repaired) == (0, ["storage"])
