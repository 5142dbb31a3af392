"""Golden files: rendered output compared with a file kept under tests/fixtures.

Set COCKPIT_UPDATE_GOLDEN=1 to rewrite the golden files from what the code renders now, then
read the diff before committing it (docs/testing.md).
"""

from __future__ import annotations

import os
from pathlib import Path

UPDATE_VARIABLE = "COCKPIT_UPDATE_GOLDEN"


def updating() -> bool:
    """Whether this run rewrites the golden files."""
    return os.environ.get(UPDATE_VARIABLE) == "1"


def check_golden_file(path: Path, text: str) -> None:
    """`text` is the content of the golden file at `path`."""
    if updating():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"{path.name} differs from its golden file"


def check_golden_dir(folder: Path, files: dict[str, str]) -> None:
    """`files` (name -> content) are exactly the golden files in `folder`."""
    if updating():
        folder.mkdir(parents=True, exist_ok=True)
        for name, content in files.items():
            (folder / name).write_text(content)
    expected = {p.name: p.read_text() for p in sorted(folder.iterdir())}
    assert files == expected
