"""`cockpit-agent check`: observe the live host and report findings; changes nothing
(unless it repairs).

Findings come from the facts that could not be read, the state file (last run, instance, a
failed attempt) and each enabled step's verify() and drift (a non-empty plan). Repair (opt-in)
reconciles only the steps whose findings are not OK, then checks again. `--prometheus` writes
a node_exporter textfile; under its timer the check logs the same findings at most once an
hour. The output follows the monitoring-plugin guidelines: a status line with perfdata, exit
0-3, and UNKNOWN (never a hang) when the check does not finish within its timeout.
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
from functools import partial
from pathlib import Path
from typing import Any

import structlog

from cockpit_agent import __version__
from cockpit_agent.attempt import read_attempt
from cockpit_agent.config import Config
from cockpit_agent.engine import Ctx, Finding, Step
from cockpit_agent.errors import LockHeld, StateError
from cockpit_agent.facts.gather import Facts, gather
from cockpit_agent.facts.imds import ImdsClient
from cockpit_agent.facts.md import MdArray
from cockpit_agent.host.files import Files, atomic_write
from cockpit_agent.host.run import Runner, StillRunning, SubprocessRunner, at_once, stop_running
from cockpit_agent.plugin import LABEL, perf, status_text
from cockpit_agent.reconcile import reconcile as reconcile_steps
from cockpit_agent.state import RunRecord, State, read_state
from cockpit_agent.steps import all_steps

SEVERITY_EXIT = {"ok": 0, "warning": 1, "critical": 2, "unknown": 3}
LOG_REPEAT_SECONDS = 3600.0
REPAIR_WAIT_SECONDS = 60.0
MEMO_NAME = "check-log.json"
IMDS_TIMEOUT = 1.0  # one IMDS request during a check: no boot wait, no retry

Reconcile = Callable[..., RunRecord]


@dataclass
class CheckReport:
    """What one check found, what it repaired, and what it has to say besides (on stderr)."""

    findings: list[Finding]
    repaired: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    arrays: Sequence[MdArray] = ()
    durations: dict[str, float] = field(default_factory=dict)  # seconds per step, this check

    @property
    def code(self) -> int:
        """The monitoring-plugin exit code."""
        return exit_code(self.findings)

    @property
    def summary(self) -> str:
        """The first line a monitoring system shows, without its perfdata."""
        return summary_line(self.findings)

    @property
    def perfdata(self) -> str:
        """The performance data after the status line's `|`."""
        return perfdata(self.findings, self.arrays, self.durations)

    def as_json(self) -> dict[str, Any]:
        """The report as `check --json` prints it."""
        return {
            "status": LABEL[self.code],
            "exit_code": self.code,
            "summary": self.summary,
            "perfdata": self.perfdata,
            "repaired_steps": self.repaired,
            "findings": [dataclasses.asdict(f) for f in self.findings],
        }

    def lines(self) -> list[str]:
        """The report as `check` prints it: the status line with its perfdata, what was
        repaired, each finding."""
        out = [f"{self.summary} | {self.perfdata}"]
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
    timeout: float | None = None,
    gather_facts: Callable[[Config], Facts] | None = None,
    reconcile: Reconcile | None = None,
    steps: Sequence[Step[Any, Any]] | None = None,
) -> CheckReport:
    """The whole check: facts, findings, repair when asked (or health.auto_repair) and
    something drifted, then facts and findings again; the Prometheus textfile; one log line.
    An observation still running after `timeout` seconds makes the report UNKNOWN (its
    commands are killed); a repair is never cut short. `gather_facts`, `reconcile` and
    `steps` are the real ones unless a test passes its own."""
    started = time.monotonic()
    running = Running()
    gather_facts = gather_facts or _gather
    reconcile = reconcile or reconcile_steps

    def observe_now() -> CheckReport:
        with running.doing("facts"):
            facts = gather_facts(config)
        return observe(config, facts, state_path, steps, running)

    def bounded() -> CheckReport:
        return observe_now() if timeout is None else within(timeout, observe_now)

    try:
        report = bounded()
        drifted = drifted_steps(report.findings)
        if (repair or config.health.auto_repair) and drifted:
            report = _repair(config, report, drifted, state_path, lock_path, reconcile, bounded)
    except CheckTimeout:
        stop_running()
        what = ", ".join(sorted(running.now)) or "nothing"
        message = f"the check did not finish within {timeout:g} s (still running: {what})"
        report = CheckReport([Finding("unknown", "check-timeout", message)])
    if prometheus is not None:
        state, _ = load_state(state_path)
        took = time.monotonic() - started
        write_prometheus(prometheus, prometheus_text(report, state, now(), took))
    log_report(report, memo_path(lock_path))
    return report


def _repair(  # noqa: PLR0917 - check()'s own, passed on
    config: Config,
    report: CheckReport,
    drifted: list[str],
    state_path: Path,
    lock_path: Path,
    reconcile: Reconcile,
    check_again: Callable[[], CheckReport],
) -> CheckReport:
    """Reconcile the drifted steps, then check again. The timeout bounds each check, never
    the repair: a reconcile cut short would leave its work half done."""
    if read_only(state_path):
        report.notes.append(
            f"repair skipped: {state_path.parent} is read-only here (the check unit's "
            "sandbox: docs/monitoring.md, Repair, says how to allow repair)"
        )
        return report
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
        return report
    report = check_again()
    report.repaired = drifted
    return report


def read_only(path: Path) -> bool:
    """The nearest existing directory of `path` cannot be written: a repair, which records a
    run beside it, would fail half-way (cockpit-agent-check.service's ProtectSystem=strict)."""
    directory = path.parent
    while not directory.exists() and directory != directory.parent:
        directory = directory.parent
    return not os.access(directory, os.W_OK)


def observe(
    config: Config,
    facts: Facts,
    state_path: Path,
    steps: Sequence[Step[Any, Any]] | None,
    running: Running,
) -> CheckReport:
    """One round of findings, with the arrays and each step's time for the perfdata."""
    durations: dict[str, float] = {}
    findings = run_check(config, facts, state_path, steps, durations=durations, running=running)
    return CheckReport(findings, arrays=facts.arrays, durations=durations)


class CheckTimeout(Exception):
    """The check did not finish in time."""


class Running:
    """What the check is doing now (facts, a step, repair), for the timeout's message."""

    def __init__(self) -> None:
        self.now: set[str] = set()

    @contextlib.contextmanager
    def doing(self, what: str) -> Any:
        """Mark `what` as running while the block runs."""
        self.now.add(what)
        try:
            yield
        finally:
            self.now.discard(what)


def within(seconds: float, work: Callable[[], CheckReport]) -> CheckReport:
    """`work()` in a daemon thread; CheckTimeout if it has not returned after `seconds`.
    A thread stuck in a command or a socket cannot hold the process: the caller answers and
    exits, and stop_running() ends the commands."""
    result: list[CheckReport] = []
    try:
        at_once(lambda: result.append(work()), timeout=seconds)
    except StillRunning as exc:
        raise CheckTimeout from exc
    return result[0]


def _gather(config: Config) -> Facts:
    """The facts, asking IMDS once per request with a short timeout: a check is not the boot,
    which waits for IMDS to come up."""
    imds = config.imds.model_copy(
        update={
            "boot_wait_seconds": 0.0,
            "retries": 0,
            "request_timeout_seconds": min(IMDS_TIMEOUT, config.imds.request_timeout_seconds),
        }
    )
    return gather(config, SubprocessRunner(), ImdsClient(imds))


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
    *,
    durations: dict[str, float] | None = None,
    running: Running | None = None,
) -> list[Finding]:
    """Every finding: unreadable facts, the state file, then each enabled step's verify() and
    its drift (what its plan would change), the steps observed concurrently. Each step's time
    goes into `durations`."""
    if steps is None:
        steps = all_steps()
    findings = [
        Finding("warning", "facts-unavailable", f"{part}: {err}")
        for part, err in facts.errors.items()
    ]
    state, unreadable = load_state(state_path)
    findings += attempt_findings(state_path)
    findings += unreadable or state_findings(facts, state, state_path)
    ctx = Ctx(
        runner=runner or SubprocessRunner(), files=Files(), facts=facts, config=config, waits=False
    )
    enabled = [step for step in steps if step.enabled(config)]
    found: dict[str, list[Finding]] = {}
    seconds: dict[str, float] = {}
    doing = running or Running()

    def one(step: Step[Any, Any]) -> None:
        started = time.monotonic()
        try:
            with doing.doing(step.name):
                found[step.name] = step_findings(step, ctx)
        except Exception as exc:  # a check that cannot run is UNKNOWN
            found[step.name] = [Finding("unknown", f"{step.name}-unverifiable", str(exc))]
        seconds[step.name] = time.monotonic() - started

    # Each step observes at the same time as the others: a step's time is mostly waiting on
    # commands (systemctl, virsh, mdadm), and an observation changes nothing.
    at_once(*(partial(one, step) for step in enabled))
    for step in enabled:  # in the steps' order, whichever finished first
        findings += [dataclasses.replace(f, step=f.step or step.name) for f in found[step.name]]
        if durations is not None:
            durations[step.name] = seconds[step.name]
    if not any(f.severity != "ok" for f in findings):
        findings.append(Finding("ok", "converged", "host converged"))
    return findings


def exit_code(findings: Sequence[Finding]) -> int:
    """The monitoring-plugin exit code: the worst severity."""
    return max((SEVERITY_EXIT[f.severity] for f in findings), default=0)


def summary_line(findings: Sequence[Finding]) -> str:
    """The status line without its perfdata: `COCKPIT-AGENT STATE - first problem (+N more)`."""
    problems = sorted(
        (f for f in findings if f.severity != "ok"), key=lambda f: -SEVERITY_EXIT[f.severity]
    )
    first = problems[0].message if problems else "host converged"
    more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
    return status_text(exit_code(findings), first + more)


def drift_count(findings: Sequence[Finding]) -> int:
    """Steps whose plan would change something now."""
    return sum(f.code == f"{f.step}-drift" for f in findings)


def drifted_steps(findings: Sequence[Finding]) -> list[str]:
    """Steps with a finding that is not OK: what repair may reconcile."""
    return sorted({f.step for f in findings if f.step and f.severity in ("warning", "critical")})


def array_label(array: MdArray) -> str:
    """An array's name with its homehost ("any:cockpit-data"), else its device: two arrays
    with the same short name on one host stay apart."""
    return array.name or array.device


def perfdata(
    findings: Sequence[Finding], arrays: Sequence[MdArray], durations: dict[str, float]
) -> str:
    """The status line's perfdata: drifted steps (WARNING above 0), each array's missing
    members (CRITICAL above 0) and size, each step's time in this check."""
    items = [perf("drift", drift_count(findings), "", 0, None, 0)]
    for a in arrays:
        name = array_label(a)
        items.append(perf(f"{name}_degraded", a.degraded, "", None, 0, 0, a.raid_disks))
        items.append(perf(f"{name}_size", a.size_bytes, "B", None, None, 0))
    for step, seconds in durations.items():
        items.append(perf(f"{step}_seconds", f"{seconds:.3f}", "s", None, None, 0))
    return " ".join(items)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


def _family(name: str, text: str, samples: Sequence[tuple[str, float | int]]) -> list[str]:
    """One gauge family: HELP, TYPE, then `name{labels} value` per sample."""
    head = [f"# HELP {name} {text}", f"# TYPE {name} gauge"]
    return head + [f"{name}{labels} {value}" for labels, value in samples]


def prometheus_text(report: CheckReport, state: State | None, now: float, took: float) -> str:
    """node_exporter textfile-collector metrics; every family a gauge, every label set bounded
    (no value that flips under load, such as md's array_state, is a label)."""
    findings = report.findings
    version = [(_labels(version=__version__), 1)]
    out = _family("cockpit_agent_build_info", "The agent's version.", version)
    out += _family(
        "cockpit_agent_check_status",
        "Worst finding: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.",
        [("", exit_code(findings))],
    )
    out += _family(
        "cockpit_agent_drifted_steps",
        "Steps whose plan would change something now.",
        [("", drift_count(findings))],
    )
    out += _family(
        "cockpit_agent_finding",
        "One per finding that is not OK.",
        [
            (_labels(step=f.step, code=f.code, severity=f.severity), 1)
            for f in findings
            if f.severity != "ok"
        ],
    )
    out += _family(
        "cockpit_agent_check_timestamp_seconds", "When this check ran.", [("", round(now))]
    )
    out += _family(
        "cockpit_agent_check_duration_seconds", "How long this check took.", [("", round(took, 3))]
    )
    out += _family(
        "cockpit_agent_check_step_duration_seconds",
        "How long each step's observation took in this check.",
        [(_labels(step=k), round(v, 3)) for k, v in report.durations.items()],
    )
    last = state.last_run if state else None
    if last is not None:
        attempted = any(f.code == "last-attempt-failed" for f in findings)
        ended = (last.finished_at or last.started_at).timestamp()
        statuses = ("converged", "changed", "failed", "blocked", "skipped")
        out += _family(
            "cockpit_agent_last_run_timestamp_seconds",
            "When the last reconcile finished.",
            [("", round(ended))],
        )
        out += _family(
            "cockpit_agent_last_run_success",
            "1 when the last reconcile did not fail.",
            [("", int(last.result != "failed" and not attempted))],
        )
        out += _family(
            "cockpit_agent_step_status",
            "Status of each step in the last reconcile.",
            [
                (_labels(step=s.name, status=status), int(s.status == status))
                for s in last.steps
                for status in statuses
            ],
        )
    out += _array_metrics(report.arrays)
    return "\n".join(out) + "\n"


def _array_metrics(arrays: Sequence[MdArray]) -> list[str]:
    """Per md array, labelled by its full name (homehost:name) and UUID, both stable."""
    if not arrays:
        return []

    def key(a: MdArray) -> dict[str, str]:
        return {"array": array_label(a), "uuid": a.uuid or ""}

    out = _family(
        "cockpit_agent_array_info",
        "Each md array's device and RAID level.",
        [(_labels(**key(a), device=a.device, level=a.level), 1) for a in arrays],
    )
    gauges: list[tuple[str, str, Callable[[MdArray], int]]] = [
        ("active", "1 when the md array is running.", lambda a: int(a.active)),
        ("degraded_members", "Missing members of each md array.", lambda a: a.degraded),
        ("size_bytes", "Size of each md array.", lambda a: a.size_bytes),
    ]
    for name, text, value in gauges:
        samples = [(_labels(**key(a)), value(a)) for a in arrays]
        out += _family(f"cockpit_agent_array_{name}", text, samples)
    return out


def textfile_problem(path: Path) -> str | None:
    """Why `--prometheus PATH` cannot be written, checked before the check runs: the check
    creates no directory (a missing one is a typo or a collector not installed)."""
    if not path.parent.is_dir():
        return f"--prometheus {path}: the directory {path.parent} does not exist"
    if path.is_dir():
        return f"--prometheus {path}: is a directory"
    return None


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
