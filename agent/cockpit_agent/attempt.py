"""The record of a reconcile that failed before it could record a run (issue 14).

A run records itself in the state file, but the state file belongs to an instance id that
IMDS gives, and IMDS is reached through the configuration: a run stopped by a typo in a
drop-in, a lock that cannot be opened or a crash before its steps has no state to write into.
It leaves this small record next to the state file instead (`state.failed-attempt.json` for
`state.json`), written atomically; `status` and `check` report it until a run is recorded.

Light on purpose (json and os only): `status` reads it without loading pydantic.
"""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cockpit_agent import __version__


def attempt_path(state_path: Path) -> Path:
    """Where the failed-attempt record of `state_path` lives."""
    return state_path.with_name(f"{state_path.stem}.failed-attempt.json")


def record_attempt(state_path: Path, *, command: str, error: str, exit_code: int) -> str | None:
    """Record a failed attempt; returns why it could not be written (None when it was)."""
    from cockpit_agent.host.files import atomic_write  # noqa: PLC0415 (status never writes)

    record = {
        "at": datetime.now(UTC).isoformat(),
        "command": command,
        "error": error,
        "exit_code": exit_code,
        "agent_version": __version__,
    }
    try:
        atomic_write(attempt_path(state_path), json.dumps(record, indent=2) + "\n", mode=0o644)
    except OSError as exc:
        return f"{attempt_path(state_path)}: {exc.strerror or exc}"
    return None


def clear_attempt(state_path: Path) -> None:
    """Forget a failed attempt: a run has been recorded since."""
    from cockpit_agent.host.files import fsync_dir  # noqa: PLC0415

    path = attempt_path(state_path)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
        fsync_dir(path.parent)


def read_attempt(state_path: Path) -> dict[str, Any] | None:
    """The failed attempt, if one is recorded; a record that cannot be read still says one was."""
    path = attempt_path(state_path)
    try:
        record = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        return {"at": None, "error": f"{path} cannot be read: {exc}", "exit_code": None}
    if not isinstance(record, dict):
        return {"at": None, "error": f"{path} is not a JSON object", "exit_code": None}
    return {k: record.get(k) for k in ("at", "command", "error", "exit_code", "agent_version")}
