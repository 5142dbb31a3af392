"""The reconcile loop: for each step in order, observe -> plan -> apply -> verify."""

from __future__ import annotations

import secrets
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Literal, Protocol, TypeVar

import structlog

from cockpit_agent import __version__
from cockpit_agent.config import Config
from cockpit_agent.errors import AgentError
from cockpit_agent.facts.gather import Facts
from cockpit_agent.host.files import Files
from cockpit_agent.host.run import Runner
from cockpit_agent.host.systemd import Notifier
from cockpit_agent.state import FindingRecord, RunRecord, StepRecord, now

Severity = Literal["ok", "warning", "critical", "unknown"]


class Action(Protocol):
    """A frozen value with an imperative name and a one-line description."""

    def describe(self) -> str:
        """One line saying what applying this does."""
        ...


@dataclass(frozen=True)
class Finding:
    """Something verify() or check saw, with a severity."""

    severity: Severity
    code: str
    message: str
    step: str = ""

    def record(self) -> FindingRecord:
        """The stored form."""
        return FindingRecord(severity=self.severity, code=self.code, message=self.message)


@dataclass
class Ctx:
    """Everything a step may use; nothing global."""

    runner: Runner
    files: Files
    facts: Facts
    config: Config
    log: Any = field(default_factory=lambda: structlog.get_logger("cockpit_agent"))
    notifier: Notifier = field(default_factory=Notifier)
    step_data: dict[str, dict[str, Any]] = field(default_factory=dict)
    state_dir: Path = Path("/var/lib/cockpit-agent")
    # Saves the state file (step_data included) now, not only at the end of the run: a step
    # calls it after recording what it is about to create, so a kill cannot lose the record.
    checkpoint: Callable[[], None] = lambda: None
    # What one action of a step hands to a later action of the same step in this run (the
    # LNI step's rollback snapshot): emptied before each step, never saved. Steps themselves
    # keep nothing between calls.
    scratch: dict[str, object] = field(default_factory=dict)
    # False in a check, which reports what it sees now: verify then never waits for a service
    # to come up (a reconcile does, after it started or restarted one).
    waits: bool = True


ObsT = TypeVar("ObsT")
ActT = TypeVar("ActT", bound=Action)


class Step(Protocol, Generic[ObsT, ActT]):
    """One resource the agent owns. plan(observe()) is empty on a converged host."""

    name: str
    depends_on: tuple[str, ...]

    def enabled(self, config: Config) -> bool:
        """Whether the configuration turns this step on."""
        ...

    def observe(self, ctx: Ctx) -> ObsT:
        """Read what is there now (from facts and read-only commands)."""
        ...

    def plan(self, observed: ObsT, ctx: Ctx) -> list[ActT]:
        """The actions that would bring the host to the desired state."""
        ...

    def apply(self, action: ActT, ctx: Ctx) -> None:
        """Carry out one action."""
        ...

    def verify(self, ctx: Ctx, observed: ObsT | None = None) -> list[Finding]:
        """Check the result on the live host; critical findings fail the step.

        `observed` is what observe() returned when nothing has been applied since (a converged
        run, `check`): verify then judges it instead of reading the host a second time.
        """
        ...

    def summarize(self, observed: ObsT) -> str:
        """One line on what was found."""
        ...


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, AgentError):
        return str(exc)
    return f"internal error: {type(exc).__name__}: {exc}"


@dataclass
class Engine:
    """Runs steps in order and records what happened."""

    steps: Sequence[Step[Any, Any]]

    def names(self) -> list[str]:
        """The step names in order."""
        return [s.name for s in self.steps]

    def run(self, ctx: Ctx, *, only: Sequence[str] = (), dry_run: bool = False) -> RunRecord:
        """One reconcile (or, with dry_run, only observe and plan) over every step."""
        run = RunRecord(
            run_id=secrets.token_hex(8),
            started_at=now(),
            agent_version=__version__,
            only=list(only),
        )
        outcome: dict[str, str] = {}
        for step in self.steps:
            record = self._run_step(step, ctx, only, outcome, dry_run)
            outcome[step.name] = record.status
            run.steps.append(record)
            ctx.log.info(
                "step finished",
                step=step.name,
                status=record.status,
                summary=record.summary,
                actions=len(record.actions),
                error=record.error,
                seconds=record.duration_seconds,
            )
        run.finished_at = now()
        statuses = {s.status for s in run.steps}
        if statuses & {"failed", "blocked"}:
            run.result = "failed"
        elif "changed" in statuses:
            run.result = "changed"
        else:
            run.result = "converged"
        ctx.notifier.status(f"run {run.result}")
        return run

    def _run_step(
        self,
        step: Step[Any, Any],
        ctx: Ctx,
        only: Sequence[str],
        outcome: dict[str, str],
        dry_run: bool,
    ) -> StepRecord:
        record = StepRecord(name=step.name, status="converged", started_at=now())
        started = time.monotonic()
        blockers = [d for d in step.depends_on if outcome.get(d) in ("failed", "blocked")]
        if only and step.name not in only:
            record.status, record.summary = "skipped", "not selected by --only"
        elif not step.enabled(ctx.config):
            record.status, record.summary = "skipped", "disabled in the configuration"
        elif blockers:
            record.status = "blocked"
            record.summary = f"blocked: {', '.join(blockers)} did not succeed"
        else:
            self._converge(step, ctx, record, dry_run)
        record.duration_seconds = round(time.monotonic() - started, 3)
        return record

    def _converge(self, step: Step[Any, Any], ctx: Ctx, record: StepRecord, dry_run: bool) -> None:
        log = ctx.log.bind(step=step.name)
        ctx.scratch.clear()
        phase = "observe"
        try:
            ctx.notifier.status(f"{step.name}: observing")
            observed = step.observe(ctx)
            record.summary = step.summarize(observed)
            phase = "plan"
            actions = step.plan(observed, ctx)
            record.planned = [a.describe() for a in actions]
            if dry_run:
                record.status = "changed" if actions else "converged"
                return
            for action in actions:
                phase = "apply"
                text = action.describe()
                ctx.notifier.status(f"{step.name}: {text}")
                log.info("applying", action=type(action).__name__, detail=text)
                step.apply(action, ctx)
                record.actions.append(text)
            phase = "verify"
            findings = step.verify(ctx, None if actions else observed)
            record.findings = [f.record() for f in findings]
            critical = [f for f in findings if f.severity == "critical"]
            if critical:
                record.status = "failed"
                record.error = "verify: " + "; ".join(f.message for f in critical)
            else:
                record.status = "changed" if actions else "converged"
        except Exception as exc:
            record.status = "failed"
            record.error = f"{phase}: {_error_text(exc)}"
            if not isinstance(exc, AgentError):
                log.error("step crashed", traceback=traceback.format_exc())
