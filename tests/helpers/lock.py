"""A second process holding the run lock, for the tests of the lock and of the commands that
wait for it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HOLDER = """
import sys, time
from pathlib import Path
from cockpit_agent.state import run_lock
with run_lock(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def start_holder(lock: Path, seconds: float) -> subprocess.Popen[str]:
    """A process that holds the lock at `lock` for `seconds` (it has it when this returns)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(lock), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "locked"
    return proc
