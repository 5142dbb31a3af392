"""The agent's error hierarchy: every error the agent raises on purpose is an AgentError."""

from __future__ import annotations

from collections.abc import Sequence


class AgentError(Exception):
    """Base of every error the agent raises deliberately; its message is meant for an admin."""


class ConfigError(AgentError):
    """The configuration is unreadable or invalid."""


class CommandFailed(AgentError):
    """A command exited with a code the caller did not accept."""

    def __init__(self, argv: Sequence[str], rc: int, stderr: str) -> None:
        self.argv = list(argv)
        self.rc = rc
        self.stderr = stderr
        tail = stderr.strip().splitlines()[-3:] if stderr.strip() else []
        # Not " | ": this message may reach check's status line, where "|" starts perfdata.
        detail = ("; " + " / ".join(tail)) if tail else ""
        super().__init__(f"{' '.join(self.argv)} exited {rc}{detail}")


class CommandNotFound(AgentError):
    """A program the agent needs is not installed."""

    def __init__(self, program: str, package: str | None = None) -> None:
        self.program = program
        self.package = package
        hint = f" (install the package that provides it: {package})" if package else ""
        super().__init__(f"{program} is not installed{hint}")


class UnsafeDevice(AgentError):
    """A destructive action was about to touch a device that failed a safety rule."""


class ImdsError(AgentError):
    """The instance metadata service could not be reached or answered something unusable."""


class ImdsNotFound(ImdsError):
    """IMDS has no such path (HTTP 404): a category this instance does not have."""


class LockHeld(AgentError):
    """Another run holds the run lock."""

    def __init__(self, path: str, pid: int | None) -> None:
        self.path = path
        self.pid = pid
        who = f"process {pid}" if pid else "another process"
        super().__init__(f"another cockpit-agent run ({who}) holds {path}")


class StateError(AgentError):
    """The state file is unreadable or does not belong to this instance; `case` says which
    (symlink, not-a-file, unreadable, truncated, corrupt, invalid, schema, lock)."""

    def __init__(self, message: str, case: str = "invalid") -> None:
        self.case = case
        super().__init__(message)
