"""The state file: what each step found, did and why, for one instance; and the run lock."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

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

    @model_validator(mode="after")
    def _move_step_data(self) -> State:
        """Records a step kept under another step's name before it had its own: the
        libvirt_network step's record of libvirt's `default` was the lni step's
        "default_network" (docs/adr/0016-libvirt-network-step.md)."""
        lni = self.step_data.get("lni", {})
        if "default_network" in lni:
            moved = self.step_data.setdefault("libvirt_network", {})
            moved.setdefault("default_network", lni.pop("default_network"))
            if not lni:
                del self.step_data["lni"]
        return self

    @property
    def last_run(self) -> RunRecord | None:
        """The newest run, if any."""
        return self.runs[-1] if self.runs else None

    def add_run(self, run: RunRecord) -> None:
        """Append a run, keeping the newest KEEP_RUNS."""
        self.runs = [*self.runs, run][-KEEP_RUNS:]


MAX_STATE_BYTES = 16 << 20  # ten runs of a few steps are a few tens of KiB


def read_state(path: Path) -> State | None:
    """The state at `path`, None when absent; StateError (with its `case`) when it is a
    symlink or no regular file, cannot be read, is truncated, corrupt, or of another shape or
    schema. A symlink is never followed: the state decides which arrays are the agent's."""
    text = _read_file(path)
    if text is None:
        return None
    try:
        state = State.model_validate_json(text)
    except ValidationError as exc:
        raise _json_error(path, text, exc) from exc
    if state.schema_version != SCHEMA_VERSION:
        raise StateError(
            f"{path}: schema version {state.schema_version} is not {SCHEMA_VERSION}", "schema"
        )
    return state


def _read_file(path: Path) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise StateError(f"{path}: a symlink, not trusted", "symlink") from exc
        raise StateError(f"{path}: cannot read: {exc.strerror}", "unreadable") from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise StateError(f"{path}: not a regular file", "not-a-file")
        with open(fd, "rb", closefd=False) as fh:
            return fh.read(MAX_STATE_BYTES)
    except OSError as exc:
        raise StateError(f"{path}: cannot read: {exc.strerror}", "unreadable") from exc
    finally:
        os.close(fd)


def _json_error(path: Path, text: bytes, exc: ValidationError) -> StateError:
    """Which way the file is broken: cut short (a crash of something that is not the agent: its
    writes are atomic), not JSON at all, or JSON of the wrong shape."""
    first = exc.errors()[0]
    if first["type"] != "json_invalid":
        return StateError(f"{path}: not a valid state file: {exc.error_count()} error(s)")
    if not text.strip() or "EOF while parsing" in first["msg"]:
        return StateError(f"{path}: truncated ({len(text)} bytes)", "truncated")
    return StateError(f"{path}: not JSON ({first['msg']})", "corrupt")


# The reasons a state file is not trusted, as the log words them.
UNTRUSTED = {
    "symlink": "is a symlink",
    "not-a-file": "is not a regular file",
    "unreadable": "cannot be read",
    "truncated": "is truncated",
    "corrupt": "is not JSON",
    "invalid": "is JSON of the wrong shape",
    "schema": "has another schema version",
    "foreign": "belongs to another instance",
    "unknown-instance": "names an instance, and this one is unknown (IMDS unreachable)",
}


def load_for_instance(
    path: Path, instance_id: str | None, *, move: bool = True
) -> tuple[State, Path | None]:
    """The state for this instance; any other file at `path` is not trusted and moved aside.

    Returns the state to use and where an untrusted file was moved, if one was. A file is not
    trusted when it cannot be read as a state file (a symlink, truncated, corrupt, ...) or
    names another instance; an unknown current instance id (IMDS unreachable) never trusts a
    file that names one. The log says which case it was. With `move=False` (a run that writes
    nothing: plan, --dry-run) the file is left where it is and a fresh state used instead.
    """
    try:
        state = read_state(path)
    except StateError as exc:
        return State(instance_id=instance_id), _untrusted(path, exc.case, move, error=str(exc))
    if state is None:
        return State(instance_id=instance_id), None
    if state.instance_id is not None and state.instance_id != instance_id:
        case = "foreign" if instance_id else "unknown-instance"
        moved = _untrusted(path, case, move, file_instance=state.instance_id, tag=state.instance_id)
        return State(instance_id=instance_id), moved
    if state.instance_id is None and instance_id is not None:
        state.instance_id = instance_id
    return state, None


def _untrusted(path: Path, case: str, move: bool, tag: str = "", **fields: str) -> Path | None:
    """Log why the file at `path` is not trusted; move it aside when `move`."""
    import structlog  # noqa: PLC0415 (only a run that meets an untrusted file pays for it)

    moved = _move_aside(path, tag or case) if move else None
    where = {"moved_to": str(moved)} if moved else {"left_in_place": "a run that writes nothing"}
    structlog.get_logger("cockpit_agent").warning(
        f"state file {UNTRUSTED[case]}: not trusted", path=str(path), case=case, **where, **fields
    )
    return moved


def _move_aside(path: Path, tag: str) -> Path:
    stamp = now().strftime("%Y%m%dT%H%M%SZ")
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in tag)  # ids are data
    target = path.with_name(f"{path.name}.{safe}.{stamp}")
    os.replace(path, target)
    return target


def save_state(path: Path, state: State) -> None:
    """Write the state atomically, in a directory made 0755 whatever the umask."""
    try:
        _make_dir(path.parent)
        atomic_write(path, state.model_dump_json(indent=2) + "\n", mode=0o644)
    except OSError as exc:
        raise StateError(
            f"cannot write the state file {path}: {exc.strerror or exc}", "unwritable"
        ) from exc


@contextlib.contextmanager
def run_lock(
    path: Path = DEFAULT_LOCK_PATH, wait_seconds: float = 0.0, *, write: bool = True
) -> Iterator[None]:
    """Hold the run lock; wait up to `wait_seconds` for it, then raise LockHeld with the holder.

    The lock file is never opened through a symlink. Its directory is made 0755 whatever the
    umask. A run that changes nothing (`write=False`: plan, --dry-run) creates nothing: with
    no lock file no run holds the lock, and an existing one is locked but not written.
    """
    flags = os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_RDWR | os.O_CREAT if write else os.O_RDONLY)
    try:
        if write:
            _make_dir(path.parent)
        fd = os.open(path, flags, 0o644)
    except FileNotFoundError:
        if write:  # a parent vanished while it was made
            raise StateError(
                f"cannot open the run lock {path}: no such directory", "lock"
            ) from None
        fd = None
    except OSError as exc:
        raise StateError(f"cannot open the run lock {path}: {exc.strerror}", "lock") from exc
    if fd is None:
        yield
        return
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
    """Create `directory` and any missing parent with exactly `mode` (not the caller's umask's
    idea of it: under umask 000 any local user could plant a link in a 0777 directory)."""
    missing = []
    while not os.path.lexists(directory):
        missing.append(directory)
        directory = directory.parent
    for new in reversed(missing):
        new.mkdir(exist_ok=True)
        os.chmod(new, mode)


def _holder(fd: int) -> int | None:
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return int(text) if text.isascii() and text.isdigit() else None
