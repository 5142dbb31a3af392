from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cockpit_lab.imds_stub import ImdsStub

from cockpit_agent.config import Config
from cockpit_agent.engine import Ctx, Engine, Finding
from cockpit_agent.errors import CommandFailed
from cockpit_agent.facts.gather import Facts
from cockpit_agent.host.files import Files
from cockpit_agent.reconcile import reconcile
from tests.fakes import FakeRunner


@dataclass(frozen=True)
class Touch:
    """Test action: add a name to the step's fake world."""

    name: str

    def describe(self) -> str:
        return f"touch {self.name}"


@dataclass
class WorldStep:
    """A small step over an in-memory world: desired names must exist."""

    name: str
    want: list[str]
    world: set[str]
    depends_on: tuple[str, ...] = ()
    fail_apply: BaseException | None = None
    fail_verify: bool = False
    on: bool = True
    log: list[str] = field(default_factory=list)

    def enabled(self, config: Config) -> bool:
        return self.on

    def observe(self, ctx: Ctx) -> set[str]:
        self.log.append(f"observe {self.name}")
        return set(self.world)

    def plan(self, observed: set[str], ctx: Ctx) -> list[Touch]:
        return [Touch(n) for n in self.want if n not in observed]

    def apply(self, action: Touch, ctx: Ctx) -> None:
        self.log.append(f"apply {self.name} {action.name}")
        if self.fail_apply is not None:
            raise self.fail_apply
        self.world.add(action.name)

    def verify(self, ctx: Ctx, observed: set[str] | None = None) -> list[Finding]:
        self.log.append(f"verify {self.name} {'re-reads' if observed is None else 'judges'}")
        missing = [n for n in self.want if n not in self.world]
        if self.fail_verify or missing:
            return [Finding("critical", "missing", f"missing {missing or 'by request'}")]
        return [Finding("ok", "present", "all present")]

    def summarize(self, observed: set[str]) -> str:
        return f"{len(observed)} present"


class RecordingNotifier:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def status(self, text: str) -> None:
        self.lines.append(text)


@pytest.fixture
def ctx(tmp_path: Path) -> Ctx:
    return Ctx(
        runner=FakeRunner(),
        files=Files(tmp_path),
        facts=Facts(),
        config=Config(),
        notifier=RecordingNotifier(),  # type: ignore[arg-type]
    )


def test_steps_run_in_order_and_apply_their_plan(ctx: Ctx) -> None:
    log: list[str] = []
    a = WorldStep("a", ["x"], set(), log=log)
    b = WorldStep("b", ["y", "z"], {"y"}, log=log)
    run = Engine([a, b]).run(ctx)
    assert log == [
        "observe a",
        "apply a x",
        "verify a re-reads",
        "observe b",
        "apply b z",
        "verify b re-reads",
    ]
    assert [s.status for s in run.steps] == ["changed", "changed"]
    assert run.steps[1].actions == ["touch z"]
    assert run.result == "changed"
    assert run.steps[0].summary == "0 present"
    assert any("b: touch z" in line for line in ctx.notifier.lines)  # type: ignore[attr-defined]


def test_second_run_is_converged_and_applies_nothing(ctx: Ctx) -> None:
    world: set[str] = set()
    log: list[str] = []
    engine = Engine([WorldStep("a", ["x"], world, log=log)])
    engine.run(ctx)
    log.clear()
    again = engine.run(ctx)
    assert log == ["observe a", "verify a judges"]  # nothing changed: no second read
    assert again.result == "converged"
    assert again.steps[0].actions == [] and again.steps[0].planned == []


def test_failure_is_recorded_and_dependents_blocked(ctx: Ctx) -> None:
    boom = CommandFailed(["mdadm", "--create"], 1, "mdadm: device busy")
    a = WorldStep("storage", ["x"], set(), fail_apply=boom)
    b = WorldStep("virt", ["v"], set())
    c = WorldStep("images", ["i"], set(), depends_on=("storage",))
    d = WorldStep("later", ["l"], set(), depends_on=("images",))
    run = Engine([a, b, c, d]).run(ctx)
    status = {s.name: s for s in run.steps}
    assert status["storage"].status == "failed"
    assert status["storage"].error == "apply: mdadm --create exited 1; mdadm: device busy"
    assert status["virt"].status == "changed"  # independent steps go on
    assert status["images"].status == "blocked"
    assert "storage" in status["images"].summary
    assert status["later"].status == "blocked"  # transitively
    assert run.result == "failed"


def test_unexpected_exception_is_an_internal_error(ctx: Ctx) -> None:
    run = Engine([WorldStep("a", ["x"], set(), fail_apply=KeyError("k"))]).run(ctx)
    assert run.steps[0].status == "failed"
    assert run.steps[0].error == "apply: internal error: KeyError: 'k'"


def test_critical_verify_finding_fails_the_step(ctx: Ctx) -> None:
    run = Engine([WorldStep("a", ["x"], set(), fail_verify=True)]).run(ctx)
    assert run.steps[0].status == "failed"
    assert run.steps[0].error is not None and run.steps[0].error.startswith("verify: missing")


def test_dry_run_plans_without_applying(ctx: Ctx) -> None:
    world: set[str] = set()
    run = Engine([WorldStep("a", ["x", "y"], world)]).run(ctx, dry_run=True)
    assert world == set()
    assert run.steps[0].planned == ["touch x", "touch y"]
    assert run.steps[0].actions == []


def test_only_and_disabled_steps_are_skipped(ctx: Ctx) -> None:
    a = WorldStep("a", ["x"], set())
    b = WorldStep("b", ["y"], set())
    c = WorldStep("c", ["z"], set(), on=False)
    run = Engine([a, b, c]).run(ctx, only=["b", "c"])
    status = {s.name: (s.status, s.summary) for s in run.steps}
    assert status["a"] == ("skipped", "not selected by --only")
    assert status["b"][0] == "changed"
    assert status["c"] == ("skipped", "disabled in the configuration")
    assert a.world == set()


def test_a_step_whose_dependency_only_skipped_is_planned_as_usual(ctx: Ctx) -> None:
    # `reconcile --only libvirt_network`: virt and lni are not run, and not failed either.
    a = WorldStep("a", ["x"], set())
    b = WorldStep("b", ["y"], set(), depends_on=("a",))
    run = Engine([a, b]).run(ctx, only=["b"])
    status = {s.name: s.status for s in run.steps}
    assert status == {"a": "skipped", "b": "changed"}
    assert b.world == {"y"}


def test_a_step_whose_dependency_is_disabled_is_planned_as_usual(ctx: Ctx) -> None:
    a = WorldStep("a", ["x"], set(), on=False)
    b = WorldStep("b", ["y"], set(), depends_on=("a",))
    run = Engine([a, b]).run(ctx)
    assert [s.status for s in run.steps] == ["skipped", "changed"]


def test_scratch_is_emptied_before_each_step(ctx: Ctx) -> None:
    seen: list[dict[str, object]] = []

    @dataclass
    class Handing(WorldStep):
        def apply(self, action: Touch, ctx: Ctx) -> None:
            seen.append(dict(ctx.scratch))
            ctx.scratch[self.name] = action.name

    Engine([Handing("a", ["x", "y"], set()), Handing("b", ["z"], set())]).run(ctx)
    assert seen == [{}, {"a": "x"}, {}]


def test_timings_are_recorded(ctx: Ctx) -> None:
    run = Engine([WorldStep("a", ["x"], set())]).run(ctx)
    assert run.finished_at is not None and run.finished_at >= run.started_at
    assert run.steps[0].duration_seconds >= 0


def test_empty_engine_converges(ctx: Ctx) -> None:
    run: Any = Engine([]).run(ctx)
    assert run.result == "converged" and run.steps == []


@dataclass
class RecordingStep(WorldStep):
    """Records each name in step_data, checkpoints, then reads the state file back."""

    on_disk: list[Any] = field(default_factory=list)
    state_path: Path = Path()

    def apply(self, action: Touch, ctx: Ctx) -> None:
        ctx.step_data.setdefault(self.name, {})[action.name] = "recorded"
        ctx.checkpoint()
        saved = json.loads(self.state_path.read_text()) if self.state_path.exists() else {}
        self.on_disk.append(saved.get("step_data", {}).get(self.name))
        raise CommandFailed(["killed-here"], 137, "")


def test_a_checkpoint_saves_step_data_before_the_run_ends(
    tmp_path: Path, imds_stub: ImdsStub
) -> None:
    # A step records what it is about to create and calls ctx.checkpoint(): the state file has
    # the record although the action then fails (as a kill would end it) before the run's save.
    step = RecordingStep("a", ["x"], set(), state_path=tmp_path / "state.json")
    config = Config.model_validate({"imds": {"endpoint": imds_stub.url, "boot_wait_seconds": 1}})
    reconcile(
        config,
        state_path=step.state_path,
        lock_path=tmp_path / "lock",
        wait_seconds=0,
        engine=Engine([step]),
    )
    assert step.on_disk == [{"x": "recorded"}]
