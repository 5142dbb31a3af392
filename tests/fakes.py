"""The runners of the tests: FakeRunner answers from a table (the unit tests), RecordingRunner
runs for real and remembers every answer (the integration tests, the fixture captures)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from cockpit_agent.errors import CommandFailed, CommandNotFound
from cockpit_agent.host.run import Result, SubprocessRunner


class UnexpectedCommand(AssertionError):
    """The code under test ran a command the test did not script."""


@dataclass
class FakeRunner:
    """A Runner that answers from a table and fails on any command it was not told about.

    `table` maps an argv tuple to (rc, stdout, stderr). Every call is recorded in `calls`.
    Programs in `absent` raise CommandNotFound, as on a host that lacks them.
    """

    table: dict[tuple[str, ...], tuple[int, str, str]] = field(default_factory=dict)
    calls: list[tuple[str, ...]] = field(default_factory=list)
    absent: set[str] = field(default_factory=set)

    def expect(self, *argv: str, rc: int = 0, stdout: str = "", stderr: str = "") -> None:
        """Script the answer to one command."""
        self.table[tuple(argv)] = (rc, stdout, stderr)

    def run(
        self,
        argv: Sequence[str],
        *,
        ok: Sequence[int] = (0,),
        timeout: float | None = 300.0,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Result:
        key = tuple(str(a) for a in argv)
        self.calls.append(key)
        if key[0] in self.absent:
            raise CommandNotFound(key[0])
        if key not in self.table:
            raise UnexpectedCommand(f"unscripted command: {key}")
        rc, out, err = self.table[key]
        if rc not in ok:
            raise CommandFailed(key, rc, err)
        return Result(key, rc, out, err)


class RecordingRunner(SubprocessRunner):
    """The real runner, remembering every command with its answer (failures too) in `results`;
    `calls` are their argv, as FakeRunner's."""

    def __init__(self) -> None:
        self.results: list[Result] = []

    @property
    def calls(self) -> list[tuple[str, ...]]:
        """Every command run, in order."""
        return [r.argv for r in self.results]

    def run(
        self,
        argv: Sequence[str],
        *,
        ok: Sequence[int] = (0,),
        timeout: float | None = 300.0,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Result:
        result = super().run(argv, ok=range(256), timeout=timeout, input=input, env=env)
        self.results.append(result)
        if result.rc not in ok:
            raise CommandFailed(result.argv, result.rc, result.stderr)
        return result
