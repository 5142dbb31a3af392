"""Running packaging/ansible/site.yml from a test, and reading what each task did.

Shared by tests/integration/test_ansible_chroot.py (a chroot on this machine) and
tests/e2e/test_ansible.py (the lab guest over SSH). ansible-playbook comes from the
validators' venv (.tools, `make tools`).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ANSIBLE = REPO / "packaging" / "ansible"
PLAYBOOK = REPO / ".tools" / "bin" / "ansible-playbook"
TASK = re.compile(r"^TASK \[(?:cockpit_agent : )?(.+?)\]")
RESULT = re.compile(r"^(ok|changed|skipping|failed|fatal): \[[^\]]+\]")


@dataclass(frozen=True)
class PlaybookRun:
    """One ansible-playbook run: its exit code, each task's result, its output."""

    rc: int
    results: dict[str, str]
    output: str

    @property
    def changed(self) -> set[str]:
        """The tasks that reported changed."""
        return {task for task, result in self.results.items() if result == "changed"}


def run_playbook(
    host: str, tmp: Path, variables: dict[str, object], env: dict[str, str] | None = None
) -> PlaybookRun:
    """site.yml against one host, given as an inventory line, with `variables` as extra vars."""
    inventory = tmp / "inventory.ini"
    inventory.write_text(f"[cockpit_agent]\n{host}\n")
    extra = tmp / "vars.json"
    extra.write_text(json.dumps(variables))
    proc = subprocess.run(
        [str(PLAYBOOK), "-i", str(inventory), "-e", f"@{extra}", "site.yml"],
        cwd=ANSIBLE,
        env={
            **os.environ,
            "ANSIBLE_CONFIG": str(ANSIBLE / "ansible.cfg"),
            "ANSIBLE_LOCAL_TEMP": str(tmp / "ansible-local"),
            "ANSIBLE_NOCOLOR": "1",
            **(env or {}),
        },
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    results: dict[str, str] = {}
    task = ""
    for line in proc.stdout.splitlines():
        if m := TASK.match(line):
            task = m.group(1)
        elif (m := RESULT.match(line)) and task:
            results[task] = m.group(1)
    return PlaybookRun(proc.returncode, results, proc.stdout + proc.stderr)
