"""Files under a root prefix (tests point the root at a temporary directory): atomic writes,
modes, owners, directories and removal."""

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
    """File access rooted at `root`: absolute host paths are mapped below it.

    Steps and facts read and write the host's files only through here, so that a test points
    `root` at a temporary directory and sees every file the code touched.
    """

    def __init__(self, root: Path = Path("/")) -> None:
        self.root = root

    def path(self, host_path: str | Path) -> Path:
        """The real path of an absolute host path (for host/ itself)."""
        return self.root / Path(host_path).relative_to("/")

    def for_program(self, host_path: str | Path) -> str:
        """The path to put on the command line of a program the Runner starts: it sees this
        machine's filesystem, so the root prefix is applied."""
        return str(self.path(host_path))

    def read(self, host_path: str | Path) -> str | None:
        """The file's text, or None when it does not exist."""
        try:
            return self.path(host_path).read_text()
        except FileNotFoundError:
            return None

    def read_bytes(self, host_path: str | Path) -> bytes | None:
        """The file's bytes, or None when it does not exist."""
        try:
            return self.path(host_path).read_bytes()
        except FileNotFoundError:
            return None

    def write(self, host_path: str | Path, content: str, mode: int = 0o644) -> None:
        """Write atomically."""
        atomic_write(self.path(host_path), content, mode)

    def exists(self, host_path: str | Path) -> bool:
        """Whether the path exists."""
        return self.path(host_path).exists()

    def is_dir(self, host_path: str | Path) -> bool:
        """Whether the path is a directory (or a symlink to one)."""
        return self.path(host_path).is_dir()

    def is_file(self, host_path: str | Path) -> bool:
        """Whether the path is a regular file (or a symlink to one)."""
        return self.path(host_path).is_file()

    def listdir(self, host_path: str | Path) -> list[str]:
        """The directory's entries, sorted; OSError when it cannot be listed."""
        return sorted(os.listdir(self.path(host_path)))

    def glob(self, host_dir: str | Path, pattern: str) -> list[str]:
        """The host paths in `host_dir` whose names match `pattern`, sorted; none when it is
        not a directory."""
        directory = self.path(host_dir)
        if not directory.is_dir():
            return []
        return sorted(str(Path(host_dir) / p.name) for p in directory.glob(pattern))

    def mode(self, host_path: str | Path) -> int | None:
        """The file's permission bits, or None when it does not exist."""
        owner = self.owner(host_path)
        return owner[2] if owner else None

    def owner(self, host_path: str | Path) -> tuple[int, int, int] | None:
        """(uid, gid, permission bits) of the path (through a symlink), or None when it
        cannot be read."""
        try:
            st = self.path(host_path).stat()
        except OSError:
            return None
        return st.st_uid, st.st_gid, st.st_mode & 0o7777

    def set_owner(self, host_path: str | Path, uid: int, gid: int, mode: int) -> None:
        """chown, then chmod."""
        path = self.path(host_path)
        os.chown(path, uid, gid)
        os.chmod(path, mode)

    def link_target(self, host_path: str | Path) -> str | None:
        """Where a symlink points, or None when the path is not a symlink."""
        path = self.path(host_path)
        return os.readlink(path) if path.is_symlink() else None

    def mkdir(self, host_path: str | Path, mode: int = 0o777) -> None:
        """Make the directory and its parents (`mode`, less the umask, for the last one);
        nothing when it exists."""
        self.path(host_path).mkdir(mode=mode, parents=True, exist_ok=True)

    def remove(self, host_path: str | Path) -> None:
        """Delete a file; nothing when it does not exist."""
        self.path(host_path).unlink(missing_ok=True)
