"""Lines the agent owns inside a file that an admin also edits (fstab, mdadm.conf).

Each owned line sits right below a marker comment. The agent rewrites only marker+line
pairs; every other line, comment and blank of the file is kept byte for byte.
"""

from __future__ import annotations

from collections.abc import Sequence


def owned(text: str, marker: str) -> list[str]:
    """The lines that follow `marker`, in file order."""
    lines = text.splitlines()
    return [lines[i + 1] for i, line in enumerate(lines[:-1]) if line == marker]


def foreign(text: str, marker: str) -> list[str]:
    """Every line that is neither a marker nor an owned line."""
    return _split(text.splitlines(), marker)[0]


def replace_owned(text: str, marker: str, new: Sequence[str]) -> str:
    """`text` with its owned lines replaced by `new` (each below its own marker).

    The new block goes where the first old one was, or at the end of the file; with `new`
    empty the owned lines and their markers are removed.
    """
    kept, first = _split(text.splitlines(), marker)
    block = [part for line in new for part in (marker, line)]
    at = len(kept) if first is None else first
    lines = kept[:at] + block + kept[at:]
    return "".join(line + "\n" for line in lines)


def _split(lines: list[str], marker: str) -> tuple[list[str], int | None]:
    """The lines without marker+owned pairs, and where the first pair was (in the result)."""
    kept: list[str] = []
    first: int | None = None
    skip = False
    for i, line in enumerate(lines):
        if skip:
            skip = False
            continue
        if line == marker:
            first = len(kept) if first is None else first
            skip = i + 1 < len(lines)
            continue
        kept.append(line)
    return kept, first
