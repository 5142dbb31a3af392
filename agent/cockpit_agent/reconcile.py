"""One reconcile run end to end: lock, facts, state, engine, save."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import structlog

from cockpit_agent.attempt import clear_attempt
from cockpit_agent.config import Config
from cockpit_agent.engine import Ctx, Engine
from cockpit_agent.facts.gather import gather
from cockpit_agent.host.files import Files
from cockpit_agent.host.run import SubprocessRunner
from cockpit_agent.host.sysfs import boot_id
from cockpit_agent.state import RunRecord, load_for_instance, run_lock, save_state
from cockpit_agent.steps import all_steps

log = structlog.get_logger("cockpit_agent")


def reconcile(
    config: Config,
    *,
    state_path: Path,
    lock_path: Path,
    wait_seconds: float,
    only: Sequence[str] = (),
    dry_run: bool = False,
    engine: Engine | None = None,
) -> RunRecord:
    """Converge (or, with dry_run, plan) under the run lock; LockHeld if another run has it."""
    engine = engine or Engine(all_steps())
    runner = SubprocessRunner()
    with run_lock(lock_path, wait_seconds, write=not dry_run):
        facts = gather(config, runner)
        for part, error in facts.errors.items():
            log.warning("fact unavailable", part=part, error=error)
        state, _ = load_for_instance(state_path, facts.instance_id, move=not dry_run)
        ctx = Ctx(
            runner=runner,
            files=Files(),
            facts=facts,
            config=config,
            log=log,
            step_data=state.step_data,
            state_dir=state_path.parent,
        )
        if not dry_run:
            ctx.checkpoint = lambda: save_state(state_path, state)
        run = engine.run(ctx, only=only, dry_run=dry_run)
        run.location = facts.location
        if not dry_run:
            run.boot_id = boot_id()
            state.add_run(run)
            save_state(state_path, state)
            clear_attempt(state_path)  # a run is recorded: a failed attempt before it is history
    log.info("run finished", result=run.result, run_id=run.run_id, dry_run=dry_run)
    return run
