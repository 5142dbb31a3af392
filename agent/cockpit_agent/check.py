"""`cockpit-agent check`: observe the live host and report findings; changes nothing
(unless it repairs).

Findings come from the facts that could not be read, the state file (last run, instance, a
failed attempt) and each enabled step's verify() and drift (a non-empty plan). Repair (opt-in)
reconciles only the steps whose findings are not OK, then checks again. `--prometheus` writes
a node_exporter textfile; under its timer the check logs the same findings at most once an
hour.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from cockpit_agent.attempt import read_attempt
from cockpit_agent.config import Config
from cockpit_agent.engine import Ctx, Finding, Step
from cockpit_agent.errors import LockHeld, StateError
from cockpit_agent.facts.gather import Facts, gather
from cockpit_agent.facts.md import MdArray
from cockpit_agent.host.files import Files, atomic_write
from cockpit_agent.host.run import Runner, SubprocessRunner
from cockpit_agent.reconcile import reconcile as reconcile_steps
from cockpit_agent.state import RunRecord, State, read_state
from cockpit_agent.steps import all_steps

SEVERITY_EXIT = {"ok": 0, "warning": 1, "critical": 2, "unknown": 3}
LABEL = {0: "OK", 1: "WARNING", 2: "CRITICAL", 3: "UNKNOWN"}
LOG_REPEAT_SECONDS = 3600.0
REPAIR_WAIT_SECONDS = 60.0
MEMO_NAME = "check-log.json"

Reconcile = Callable[..., RunRecord]


@dataclass
class CheckReport:
    """What one check found, what it repaired, and what it has to say besides (on stderr)."""

    findings: list[Finding]
    repaired: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def code(self) -> int:
        """The monitoring-plugin exit code."""
        return exit_code(self.findings)

    @property
    def summary(self) -> str:
        """The first line a monitoring system shows."""
        return summary_line(self.findings)

    def as_json(self) -> dict[str, Any]:
        """The report as `check --json` prints it."""
        return {
            "status": LABEL[self.code],
            "exit_code": self.code,
            "summary": self.summary,
            "repaired_steps": self.repaired,
            "findings": [dataclasses.asdict(f) for f in self.findings],
        }

    def lines(self) -> list[str]:
        """The report as `check` prints it: the summary line, what was repaired, each finding."""
        out = [self.summary]
        if self.repaired:
            out.append(f"repaired: reconciled {', '.join(self.repaired)}")
        for f in self.findings:
            where = f"{f.step}: " if f.step else ""
            out.append(f"[{f.severity.upper()}] {where}{f.code}: {f.message}")
        return out


def check(
    config: Config,
    *,
    state_path: Path,
    lock_path: Path,
    repair: bool = False,
    prometheus: Path | None = None,
    gather_facts: Callable[[Config], Facts] | None = None,
    reconcile: Reconcile | None = None,
    steps: Sequence[Step[Any, Any]] | None = None,
) -> CheckReport:
    """The whole check: facts, findings, repair when asked (or health.auto_repair) and
    something drifted, then facts and findings again; the Prometheus textfile; one log line.
    `gather_facts`, `reconcile` and `steps` are the real ones unless a test passes its own."""
    gather_facts = gather_facts or _gather
    reconcile = reconcile or reconcile_steps
    facts = gather_facts(config)
    report = CheckReport(run_check(config, facts, state_path, steps))
    drifted = drifted_steps(report.findings)
    if (repair or config.health.auto_repair) and drifted:
        try:
            reconcile(
                config,
                state_path=state_path,
                lock_path=lock_path,
                wait_seconds=REPAIR_WAIT_SECONDS,
                only=drifted,
            )
        except LockHeld as exc:
            report.notes.append(f"repair skipped: {exc}")
        else:
            facts = gather_facts(config)
            report = CheckReport(run_check(config, facts, state_path, steps), repaired=drifted)
    if prometheus is not None:
        state, _ = load_state(state_path)
        write_prometheus(prometheus, prometheus_text(report.findings, state, facts, now()))
    log_report(report, memo_path(lock_path))
    return report


def _gather(config: Config) -> Facts:
    return gather(config, SubprocessRunner())


def memo_path(lock_path: Path) -> Path | None:
    """Under its timer (systemd sets INVOCATION_ID) the check dedupes its journal line with a
    memo in the runtime directory (/run/cockpit-agent); run by hand it logs every time and
    writes nothing."""
    return lock_path.parent / MEMO_NAME if os.environ.get("INVOCATION_ID") else None


def log_report(report: CheckReport, memo: Path | None) -> None:
    """One journal line per check; with a memo, the same findings at most once an hour."""
    if memo is None or should_log(report.findings, memo, now()):
        level = {0: "info", 1: "warning"}.get(report.code, "error")
        getattr(structlog.get_logger("cockpit_agent"), level)("check", summary=report.summary)


def state_findings(facts: Facts, state: State | None, state_path: Path) -> list[Finding]:
    """What the state file says about the last reconcile, and whether it is this instance's."""
    if state is None:
        return [Finding("warning", "never-reconciled", f"no state file at {state_path}")]
    findings = []
    if state.instance_id and facts.instance_id and state.instance_id != facts.instance_id:
        findings.append(
            Finding(
                "warning",
                "state-foreign",
                f"state file belongs to instance {state.instance_id}, this is "
                f"{facts.instance_id}; the next reconcile moves it aside",
            )
        )
    last = state.last_run
    if last is None:
        findings.append(Finding("warning", "never-reconciled", "no run recorded"))
    elif last.result == "failed":
        bad = [
            f"{s.name}: {s.error or s.summary}"
            for s in last.steps
            if s.status in ("failed", "blocked")
        ]
        findings.append(
            Finding("critical", "last-reconcile-failed", "last reconcile failed: " + "; ".join(bad))
        )
    return findings


def attempt_findings(state_path: Path) -> list[Finding]:
    """A reconcile that failed before its steps (and so before it could record a run)."""
    attempt = read_attempt(state_path)
    if attempt is None:
        return []
    when = attempt["at"] or "at an unknown time"
    message = f"the last reconcile ({when}) failed before its steps: {attempt['error']}"
    return [Finding("critical", "last-attempt-failed", message)]


def load_state(state_path: Path) -> tuple[State | None, list[Finding]]:
    """The state file, or a finding saying why it cannot be read."""
    try:
        return read_state(state_path), []
    except StateError as exc:
        return None, [Finding("warning", "state-unreadable", str(exc))]


def step_findings(step: Step[Any, Any], ctx: Ctx) -> list[Finding]:
    """One observation of the live host, judged twice: verify(), and drift — whatever
    reconcile would change now, i.e. a non-empty plan."""
    observed = step.observe(ctx)
    findings = step.verify(ctx, observed)
    actions = step.plan(observed, ctx)
    if not actions:
        return findings
    described = "; ".join(a.describe() for a in actions)
    return [*findings, Finding("warning", f"{step.name}-drift", f"reconcile would: {described}")]


def run_check(
    config: Config,
    facts: Facts,
    state_path: Path,
    steps: Sequence[Step[Any, Any]] | None = None,
    runner: Runner | None = None,
) -> list[Finding]:
    """Every finding: unreadable facts, the state file, then each enabled step's verify() and
    its drift (what its plan would change)."""
    if steps is None:
        steps = all_steps()
    findings = [
        Finding("warning", "facts-unavailable", f"{part}: {err}")
        for part, err in facts.errors.items()
    ]
    state, unreadable = load_state(state_path)
    findings += attempt_findings(state_path)
    findings += unreadable or state_findings(facts, state, state_path)
    ctx = Ctx(runner=runner or SubprocessRunner(), files=Files(), facts=facts, config=config)
    for step in steps:
        if not step.enabled(config):
            continue
        try:
            found = step_findings(step, ctx)
        except Exception as exc:  # a check that cannot run is UNKNOWN
            found = [Finding("unknown", f"{step.name}-unverifiable", str(exc))]
        findings += [dataclasses.replace(f, step=f.step or step.name) for f in found]
    if not any(f.severity != "ok" for f in findings):
        findings.append(Finding("ok", "converged", "host converged"))
    return findings


def exit_code(findings: Sequence[Finding]) -> int:
    """The monitoring-plugin exit code: the worst severity."""
    return max((SEVERITY_EXIT[f.severity] for f in findings), default=0)


def summary_line(findings: Sequence[Finding]) -> str:
    """The first line Nagios/Icinga/Sensu show: STATUS - first problem (+N more)."""
    problems = sorted(
        (f for f in findings if f.severity != "ok"), key=lambda f: -SEVERITY_EXIT[f.severity]
    )
    first = problems[0].message if problems else "host converged"
    more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"{LABEL[exit_code(findings)]} - {first}{more}"


def drifted_steps(findings: Sequence[Finding]) -> list[str]:
    """Steps with a finding that is not OK: what repair may reconcile."""
    return sorted({f.step for f in findings if f.step and f.severity in ("warning", "critical")})


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def prometheus_text(
    findings: Sequence[Finding], state: State | None, facts: Facts, now: float
) -> str:
    """node_exporter textfile-collector metrics."""
    out = [
        "# HELP cockpit_agent_check_status Worst finding: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.",
        "# TYPE cockpit_agent_check_status gauge",
        f"cockpit_agent_check_status {exit_code(findings)}",
        "# HELP cockpit_agent_drift_count Findings that are not OK.",
        "# TYPE cockpit_agent_drift_count gauge",
        f"cockpit_agent_drift_count {sum(f.severity != 'ok' for f in findings)}",
        "# HELP cockpit_agent_finding One per finding that is not OK.",
        "# TYPE cockpit_agent_finding gauge",
    ]
    for f in findings:
        if f.severity != "ok":
            out.append(
                f'cockpit_agent_finding{{step="{_escape(f.step)}",code="{_escape(f.code)}",'
                f'severity="{f.severity}"}} 1'
            )
    out += [
        "# HELP cockpit_agent_check_timestamp_seconds When this check ran.",
        "# TYPE cockpit_agent_check_timestamp_seconds gauge",
        f"cockpit_agent_check_timestamp_seconds {now:.0f}",
    ]
    last = state.last_run if state else None
    attempted = any(f.code == "last-attempt-failed" for f in findings)
    if last is not None:
        ended = (last.finished_at or last.started_at).timestamp()
        out += [
            "# HELP cockpit_agent_last_run_timestamp_seconds When the last reconcile finished.",
            "# TYPE cockpit_agent_last_run_timestamp_seconds gauge",
            f"cockpit_agent_last_run_timestamp_seconds {ended:.0f}",
            "# HELP cockpit_agent_last_run_success 1 when the last reconcile did not fail.",
            "# TYPE cockpit_agent_last_run_success gauge",
            f"cockpit_agent_last_run_success {int(last.result != 'failed' and not attempted)}",
            "# HELP cockpit_agent_step_status Status of each step in the last reconcile.",
            "# TYPE cockpit_agent_step_status gauge",
        ]
        for s in last.steps:
            for status in ("converged", "changed", "failed", "blocked", "skipped"):
                value = int(s.status == status)
                out.append(
                    f'cockpit_agent_step_status{{step="{s.name}",status="{status}"}} {value}'
                )
    out += _array_metrics(facts)
    return "\n".join(out) + "\n"


def _array_metrics(facts: Facts) -> list[str]:
    if not facts.arrays:
        return []
    out: list[str] = []
    # (name, help, value, whether the array's state is a label too)
    gauges: list[tuple[str, str, Callable[[MdArray], int], bool]] = [
        ("degraded", "Missing members of each md array.", lambda a: a.degraded, False),
        ("size_bytes", "Size of each md array.", lambda a: a.size_bytes, False),
        ("active", "1 when the md array is running.", lambda a: int(a.active), True),
    ]
    for name, text, value, with_state in gauges:
        metric = f"cockpit_agent_array_{name}"
        out += [f"# HELP {metric} {text}", f"# TYPE {metric} gauge"]
        for array in facts.arrays:
            labels = f'array="{_escape(array.short_name or array.device)}"'
            if with_state:
                labels += f',state="{_escape(array.state)}"'
            out.append(f"{metric}{{{labels}}} {value(array)}")
    return out


def write_prometheus(path: Path, text: str) -> None:
    """Atomically, so node_exporter never reads half a file."""
    atomic_write(path, text, mode=0o644)


def should_log(findings: Sequence[Finding], memo: Path, now: float) -> bool:
    """False when the same findings were logged less than an hour ago; remembers this one."""
    key = hashlib.sha256(
        json.dumps(sorted((f.severity, f.code, f.message) for f in findings)).encode()
    ).hexdigest()
    try:
        last = json.loads(memo.read_text())
    except (OSError, ValueError):
        last = {}
    if last.get("key") == key and now - float(last.get("at", 0)) < LOG_REPEAT_SECONDS:
        return False
    if memo.parent.is_dir():  # the check creates no directory
        with contextlib.suppress(OSError):  # and a read-only one must not break monitoring
            atomic_write(memo, json.dumps({"key": key, "at": now}))
    return True


def now() -> float:
    """Wall-clock seconds (a function so tests can see where time comes from)."""
    return time.time()
