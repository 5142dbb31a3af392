"""The state file: what each step found, did and why, for one instance; and the run lock."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cockpit_agent.errors import LockHeld, StateError
from cockpit_agent.facts.location import Location
from cockpit_agent.host.files import atomic_write
from cockpit_agent.paths import LOCK_PATH, STATE_PATH

SCHEMA_VERSION = 1
DEFAULT_STATE_PATH = STATE_PATH
DEFAULT_LOCK_PATH = LOCK_PATH
KEEP_RUNS = 10

StepStatus = Literal["converged", "changed", "failed", "blocked", "skipped"]
RunResult = Literal["converged", "changed", "failed"]


def now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class FindingRecord(BaseModel):
    """A verify() finding as stored."""

    model_config = ConfigDict(frozen=True)

    severity: Literal["ok", "warning", "critical", "unknown"]
    code: str
    message: str


class StepRecord(BaseModel):
    """One step's outcome in one run."""

    name: str
    status: StepStatus
    summary: str = ""
    planned: list[str] = []
    actions: list[str] = []
    error: str | None = None
    findings: list[FindingRecord] = []
    started_at: datetime
    duration_seconds: float = 0.0


class RunRecord(BaseModel):
    """One reconcile run."""

    run_id: str
    started_at: datetime
    finished_at: datetime | None = None
    result: RunResult | None = None
    agent_version: str
    boot_id: str | None = None
    location: Location | None = Field(None, description="Where the host ran: EC2, metal, Outpost.")
    only: list[str] = []
    steps: list[StepRecord] = []


class State(BaseModel):
    """The whole state file."""

    schema_version: int = SCHEMA_VERSION
    instance_id: str | None = None
    runs: list[RunRecord] = Field(default_factory=list, description="Newest last.")
    step_data: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="What each step created, to recognise it later."
    )

    @property
    def last_run(self) -> RunRecord | None:
        """The newest run, if any."""
        return self.runs[-1] if self.runs else None

    def add_run(self, run: RunRecord) -> None:
        """Append a run, keeping the newest KEEP_RUNS."""
        self.runs = [*self.runs, run][-KEEP_RUNS:]


def read_state(path: Path) -> State | None:
    """The state at `path`, None when absent; StateError when unreadable or of another schema."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        state = State.model_validate_json(text)
    except ValidationError as exc:
        raise StateError(f"{path}: not a valid state file: {exc.error_count()} error(s)") from exc
    if state.schema_version != SCHEMA_VERSION:
        raise StateError(f"{path}: schema version {state.schema_version} is not {SCHEMA_VERSION}")
    return state


def load_for_instance(
    path: Path, instance_id: str | None, *, move: bool = True
) -> tuple[State, Path | None]:
    """The state for this instance; a file of another instance (or unreadable) is moved aside.

    Returns the state to use and where an untrusted file was moved, if one was. An unknown
    current instance id (IMDS unreachable) never trusts a file that names one. With
    `move=False` (a run that writes nothing: plan, --dry-run) an untrusted file is left
    where it is and a fresh state used in its place.
    """
    try:
        state = read_state(path)
    except StateError as exc:
        _warn("state file unreadable: not trusted", path=str(path), error=str(exc))
        return State(instance_id=instance_id), _move_aside(path, "invalid") if move else None
    if state is None:
        return State(instance_id=instance_id), None
    if state.instance_id is not None and state.instance_id != instance_id:
        _warn(
            "state file of another instance: not trusted",
            path=str(path),
            file_instance=state.instance_id,
            instance=instance_id or "unknown (IMDS unreachable)",
        )
        fresh = State(instance_id=instance_id)
        return fresh, _move_aside(path, state.instance_id) if move else None
    if state.instance_id is None and instance_id is not None:
        state.instance_id = instance_id
    return state, None


def _warn(event: str, **fields: str) -> None:
    import structlog  # noqa: PLC0415 (only a run that meets an untrusted file pays for it)

    structlog.get_logger("cockpit_agent").warning(event, **fields)


def _move_aside(path: Path, tag: str) -> Path:
    stamp = now().strftime("%Y%m%dT%H%M%SZ")
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in tag)  # ids are data
    target = path.with_name(f"{path.name}.{safe}.{stamp}")
    os.replace(path, target)
    return target


def save_state(path: Path, state: State) -> None:
    """Write the state atomically."""
    atomic_write(path, state.model_dump_json(indent=2) + "\n", mode=0o644)


@contextlib.contextmanager
def run_lock(
    path: Path = DEFAULT_LOCK_PATH, wait_seconds: float = 0.0, *, write: bool = True
) -> Iterator[None]:
    """Hold the run lock; wait up to `wait_seconds` for it, then raise LockHeld with the holder.

    The lock file is never opened through a symlink. Its directory is made 0755 whatever the
    umask. A run that changes nothing (`write=False`: plan, --dry-run) creates nothing: with
    no lock file no run holds the lock, and an existing one is locked but not written.
    """
    flags = os.O_NOFOLLOW | os.O_CLOEXEC
    if write:
        _make_dir(path.parent)
        flags |= os.O_RDWR | os.O_CREAT
    else:
        flags |= os.O_RDONLY
    try:
        fd = os.open(path, flags, 0o644)
    except FileNotFoundError:
        if write:
            raise
        yield
        return
    except OSError as exc:
        raise StateError(f"cannot open the run lock {path}: {exc.strerror}") from exc
    try:
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockHeld(str(path), _holder(fd)) from None
                time.sleep(0.1)
        if write:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def _make_dir(directory: Path, mode: int = 0o755) -> None:
    """Create `directory` with exactly `mode` (not the caller's umask's idea of it)."""
    if not directory.is_dir():
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, mode)


def _holder(fd: int) -> int | None:
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return int(text) if text.isascii() and text.isdigit() else None
