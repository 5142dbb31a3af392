"""The Ansible role (packaging/ansible) for real, against a Debian 12 root on this machine.

ansible-core's local connection with an interpreter that enters the chroot runs every module
inside the root; Ansible's temporary directory is bound into the root at the same path, so
the files it transfers are where the modules look for them. The agent is the stand-in of
tests/integration/debian_chroot.py: its reconcile prints the run record the test writes, so
this proves the role's own logic (install when the version differs, validated configuration,
changed only when a step changed); tests/e2e/test_ansible.py runs it against the real agent
in the lab over SSH.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.integration.conftest import need_tools
from tests.integration.debian_chroot import RECONCILE, Chroot, debian_chroot, standin_deb

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ANSIBLE = REPO / "packaging" / "ansible"
PLAYBOOK = REPO / ".tools" / "bin" / "ansible-playbook"
WORK = Path("/var/tmp/cockpit-agent-ansible-test")
TASK = re.compile(r"^TASK \[(?:cockpit_agent : )?(.+?)\]")
RESULT = re.compile(r"^(ok|changed|skipping|failed|fatal): \[standin\]")


@pytest.fixture(scope="module")
def chroot() -> Iterator[Chroot]:
    with debian_chroot(WORK) as box:
        remote_tmp = WORK / "ansible-tmp"
        remote_tmp.mkdir()
        box.bind(remote_tmp, remote_tmp)
        yield box


def run_role(box: Chroot, tmp: Path, **variables: object) -> tuple[int, dict[str, str], str]:
    """ansible-playbook site.yml against the chroot; (rc, each task's result, output)."""
    if not PLAYBOOK.exists():
        need_tools(str(PLAYBOOK))  # `make tools` makes it; `make integration` runs that first
    python = tmp / "chroot-python"
    python.write_text(f'#!/bin/sh\nexec chroot {box.root} /usr/bin/python3 "$@"\n')
    python.chmod(0o755)
    inventory = tmp / "inventory.ini"
    inventory.write_text(
        "[cockpit_agent]\n"
        f"standin ansible_connection=local ansible_python_interpreter={python} "
        "ansible_become=false\n"
    )
    extra = tmp / "vars.json"
    extra.write_text(json.dumps(variables))
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ANSIBLE / "ansible.cfg"),
        "ANSIBLE_REMOTE_TMP": str(WORK / "ansible-tmp"),
        "ANSIBLE_LOCAL_TEMP": str(tmp / "local-tmp"),
        "ANSIBLE_NOCOLOR": "1",
    }
    proc = subprocess.run(
        [str(PLAYBOOK), "-i", str(inventory), "-e", f"@{extra}", "site.yml"],
        cwd=ANSIBLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    results: dict[str, str] = {}
    task = ""
    for line in proc.stdout.splitlines():
        if m := TASK.match(line):
            task = m.group(1)
        elif (m := RESULT.match(line)) and task:
            results[task] = m.group(1)
    return proc.returncode, results, proc.stdout + proc.stderr


def reconcile_says(box: Chroot, **statuses: str) -> None:
    """The run record the stand-in's `--json reconcile` prints next."""
    path = box.root / RECONCILE.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    steps = [{"name": name, "status": status} for name, status in statuses.items()]
    path.write_text(json.dumps({"result": "converged", "steps": steps}))


def changed(results: dict[str, str]) -> set[str]:
    return {task for task, result in results.items() if result == "changed"}


def test_the_role_installs_configures_reconciles_and_is_idempotent(
    chroot: Chroot, tmp_path: Path
) -> None:
    old, new = standin_deb(tmp_path, "0.0.1"), standin_deb(tmp_path, "0.0.2")
    site = {
        "cockpit_agent_config": "# the site's config.toml\n",
        "cockpit_agent_dropins": {"60-site": "[lni]\ndevice_index = 2\n"},
    }
    etc = chroot.root / "etc/cockpit-agent"

    reconcile_says(chroot, rootfs="converged", lni="changed")
    rc, results, out = run_role(chroot, tmp_path, cockpit_agent_package=str(old), **site)
    assert rc == 0, out
    assert changed(results) == {
        "Copy the package to the host",
        "Install the package",
        "Remove the copy of the package",
        "Place config.toml",
        "Make the drop-in directory",
        "Place the drop-ins",
        "Reconcile",
    }, out
    assert chroot.installed()["cockpit-agent"] == "0.0.1"
    assert not (chroot.root / "var/tmp" / old.name).exists()
    assert (etc / "config.toml").read_text() == site["cockpit_agent_config"]
    assert (etc / "config.d/60-site.toml").read_text() == "[lni]\ndevice_index = 2\n"
    assert '"lni": "changed"' in out  # each step's outcome is shown

    reconcile_says(chroot, rootfs="converged", lni="converged")
    rc, results, out = run_role(chroot, tmp_path, cockpit_agent_package=str(old), **site)
    assert rc == 0, out
    assert changed(results) == set(), out
    assert results["Copy the package to the host"] == "skipping"
    assert results["Reconcile"] == "ok"

    rc, results, out = run_role(chroot, tmp_path, cockpit_agent_package=str(new), **site)
    assert rc == 0, out
    assert "Install the package" in changed(results), out
    assert chroot.installed()["cockpit-agent"] == "0.0.2"


def test_an_invalid_drop_in_stops_the_play_and_keeps_the_old_file(
    chroot: Chroot, tmp_path: Path
) -> None:
    reconcile_says(chroot, lni="converged")
    good = {"60-site": "[lni]\ndevice_index = 3\n"}
    rc, _, out = run_role(chroot, tmp_path, cockpit_agent_dropins=good)
    assert rc == 0, out
    bad = {"60-site": "[lni]\ninvalid = true\n"}
    rc, results, out = run_role(chroot, tmp_path, cockpit_agent_dropins=bad)
    assert rc != 0
    assert results["Place the drop-ins"] == "failed", out
    assert "Reconcile" not in results  # nothing runs on a configuration the agent refused
    dropin = chroot.root / "etc/cockpit-agent/config.d/60-site.toml"
    assert dropin.read_text() == good["60-site"]
