"""Atomic file writes under a root prefix (tests point the root at a temporary directory)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write(path: Path, data: bytes | str, mode: int = 0o644) -> None:
    """Write `data` to `path` atomically: temp file, fsync, rename, fsync of the directory.

    A crash at any point leaves either the old file or the new one, never a mix.
    """
    raw = data.encode() if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """fsync a directory so a rename in it is durable."""
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class Files:
    """File access rooted at `root`: absolute host paths are mapped below it."""

    def __init__(self, root: Path = Path("/")) -> None:
        self.root = root

    def path(self, host_path: str | Path) -> Path:
        """The real path of an absolute host path."""
        return self.root / Path(host_path).relative_to("/")

    def read(self, host_path: str | Path) -> str | None:
        """The file's text, or None when it does not exist."""
        try:
            return self.path(host_path).read_text()
        except FileNotFoundError:
            return None

    def write(self, host_path: str | Path, content: str, mode: int = 0o644) -> None:
        """Write atomically."""
        atomic_write(self.path(host_path), content, mode)

    def exists(self, host_path: str | Path) -> bool:
        """Whether the path exists."""
        return self.path(host_path).exists()
