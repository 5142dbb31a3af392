"""`cockpit-agent check`: observe the live host and report findings; changes nothing."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cockpit_agent.config import Config
from cockpit_agent.engine import Ctx, Finding, Step
from cockpit_agent.errors import StateError
from cockpit_agent.facts.gather import Facts
from cockpit_agent.host.files import Files
from cockpit_agent.host.run import Runner, SubprocessRunner
from cockpit_agent.state import read_state


def state_findings(facts: Facts, state_path: Path) -> list[Finding]:
    """What the state file says about the last reconcile, and whether it is this instance's."""
    try:
        state = read_state(state_path)
    except StateError as exc:
        return [Finding("warning", "state-unreadable", str(exc))]
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


def run_check(
    config: Config,
    facts: Facts,
    state_path: Path,
    steps: Sequence[Step[Any, Any]] | None = None,
    runner: Runner | None = None,
) -> list[Finding]:
    """Every finding: unreadable facts, the state file, then each enabled step's verify()."""
    if steps is None:
        from cockpit_agent.steps import all_steps  # noqa: PLC0415

        steps = all_steps()
    findings = [
        Finding("warning", "facts-unavailable", f"{part}: {err}")
        for part, err in facts.errors.items()
    ]
    findings += state_findings(facts, state_path)
    ctx = Ctx(runner=runner or SubprocessRunner(), files=Files(), facts=facts, config=config)
    for step in steps:
        if not step.enabled(config):
            continue
        try:
            findings += step.verify(ctx)
        except Exception as exc:
            findings.append(Finding("unknown", f"{step.name}-unverifiable", str(exc)))
    if not any(f.severity != "ok" for f in findings):
        findings.append(Finding("ok", "converged", "host converged"))
    return findings
