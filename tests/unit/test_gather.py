"""facts.gather and host.run.at_once: the parts are read at the same time, and one part's
failure is recorded without losing the others."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from cockpit_agent.config import Config
from cockpit_agent.errors import CommandFailed, ImdsError
from cockpit_agent.facts import gather as gather_module
from cockpit_agent.facts.gather import PARTS, gather
from cockpit_agent.host.run import StillRunning, at_once
from tests.fakes import FakeRunner

# Each read the gather makes, with what it returns when nothing is there.
READS: dict[str, Any] = {
    "read_platform": None,
    "gather_disks": [],
    "read_links": [],
    "read_arrays": [],
    "read_root_chain": None,
}


class NoImds:
    def identity(self) -> Any:
        raise ImdsError("IMDS did not answer")


def replace_reads(monkeypatch: pytest.MonkeyPatch, before: Any = lambda: None) -> None:
    """Every read calls `before`, then returns its empty value."""
    for name, empty in READS.items():
        monkeypatch.setattr(gather_module, name, lambda *_, e=empty, **__: before() or e)
    monkeypatch.setattr(gather_module, "locate", lambda *_: None)


def test_every_part_failing_is_recorded_in_order_and_nothing_raises(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def fail() -> None:
        raise CommandFailed(["probe"], 1, "no such thing")

    replace_reads(monkeypatch, fail)
    monkeypatch.setattr(gather_module, "read_dmi", fail)
    facts = gather(Config(), FakeRunner(), NoImds())  # type: ignore[arg-type]
    assert list(facts.errors) == list(PARTS)
    assert facts.errors["imds"] == "IMDS did not answer"
    assert facts.disks == [] and facts.links == [] and facts.rootfs is None


def test_parts_are_read_at_the_same_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # Each read waits until every other part has started: read one after another, the
    # first would time out on the barrier and be recorded as an error.
    barrier = threading.Barrier(len(READS) + 1)  # and read_dmi, after IMDS in its thread

    def wait() -> None:
        try:
            barrier.wait(timeout=5)
        except threading.BrokenBarrierError as exc:
            raise OSError("parts were read one after another") from exc

    replace_reads(monkeypatch, wait)
    monkeypatch.setattr(gather_module, "read_dmi", wait)
    facts = gather(Config(), FakeRunner(), NoImds())  # type: ignore[arg-type]
    assert facts.errors == {"imds": "IMDS did not answer"}


def test_a_bug_in_a_part_is_raised_not_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    replace_reads(monkeypatch)
    monkeypatch.setattr(gather_module, "read_links", lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        gather(Config(), FakeRunner(), NoImds())  # type: ignore[arg-type]


def test_at_once_runs_every_call_then_raises_the_first_error() -> None:
    ran: list[str] = []

    def fails() -> None:
        ran.append("fails")
        raise ValueError("first")

    with pytest.raises(ValueError, match="first"):
        at_once(fails, lambda: ran.append("runs"))
    assert sorted(ran) == ["fails", "runs"]


def test_at_once_gives_up_waiting_after_its_timeout() -> None:
    release = threading.Event()
    with pytest.raises(StillRunning, match=r"within 0\.05 s"):
        at_once(release.wait, timeout=0.05)
    release.set()
