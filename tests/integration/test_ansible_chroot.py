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
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.ansible_run import PLAYBOOK, PlaybookRun, run_playbook
from tests.helpers.tools import need_tools
from tests.integration.debian_chroot import RECONCILE, Chroot, debian_chroot, standin_deb

pytestmark = pytest.mark.integration

WORK = Path("/var/tmp/cockpit-agent-ansible-test")


@pytest.fixture(scope="module")
def chroot() -> Iterator[Chroot]:
    with debian_chroot(WORK) as box:
        remote_tmp = WORK / "ansible-tmp"
        remote_tmp.mkdir()
        box.bind(remote_tmp, remote_tmp)
        yield box


def run_role(box: Chroot, tmp: Path, **variables: object) -> PlaybookRun:
    """site.yml against the chroot: local connection, a Python that enters the root."""
    if not PLAYBOOK.exists():
        need_tools(str(PLAYBOOK))  # `make tools` makes it; `make integration` runs that first
    python = tmp / "chroot-python"
    python.write_text(f'#!/bin/sh\nexec chroot {box.root} /usr/bin/python3 "$@"\n')
    python.chmod(0o755)
    host = (
        f"standin ansible_connection=local ansible_python_interpreter={python} ansible_become=false"
    )
    return run_playbook(host, tmp, variables, {"ANSIBLE_REMOTE_TMP": str(WORK / "ansible-tmp")})


def reconcile_says(box: Chroot, **statuses: str) -> None:
    """The run record the stand-in's `--json reconcile` prints next."""
    path = box.root / RECONCILE.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    steps = [{"name": name, "status": status} for name, status in statuses.items()]
    path.write_text(json.dumps({"result": "converged", "steps": steps}))


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
    run = run_role(chroot, tmp_path, cockpit_agent_package=str(old), **site)
    assert run.rc == 0, run.output
    assert run.changed == {
        "Copy the package to the host",
        "Install the package",
        "Remove the copy of the package",
        "Place config.toml",
        "Make the drop-in directory",
        "Place the drop-ins",
        "Reconcile",
    }, run.output
    assert chroot.installed()["cockpit-agent"] == "0.0.1"
    assert not (chroot.root / "var/tmp" / old.name).exists()
    assert (etc / "config.toml").read_text() == site["cockpit_agent_config"]
    assert (etc / "config.d/60-site.toml").read_text() == "[lni]\ndevice_index = 2\n"
    assert '"lni": "changed"' in run.output  # each step's outcome is shown

    reconcile_says(chroot, rootfs="converged", lni="converged")
    run = run_role(chroot, tmp_path, cockpit_agent_package=str(old), **site)
    assert run.rc == 0, run.output
    assert run.changed == set(), run.output
    assert run.results["Copy the package to the host"] == "skipping"
    assert run.results["Reconcile"] == "ok"

    run = run_role(chroot, tmp_path, cockpit_agent_package=str(new), **site)
    assert run.rc == 0, run.output
    assert "Install the package" in run.changed, run.output
    assert chroot.installed()["cockpit-agent"] == "0.0.2"


def test_an_invalid_drop_in_stops_the_play_and_keeps_the_old_file(
    chroot: Chroot, tmp_path: Path
) -> None:
    reconcile_says(chroot, lni="converged")
    good = {"60-site": "[lni]\ndevice_index = 3\n"}
    run = run_role(chroot, tmp_path, cockpit_agent_dropins=good)
    assert run.rc == 0, run.output
    bad = {"60-site": "[lni]\ninvalid = true\n"}
    run = run_role(chroot, tmp_path, cockpit_agent_dropins=bad)
    assert run.rc != 0
    assert run.results["Place the drop-ins"] == "failed", run.output
    assert "Reconcile" not in run.results  # nothing runs on a configuration the agent refused
    dropin = chroot.root / "etc/cockpit-agent/config.d/60-site.toml"
    assert dropin.read_text() == good["60-site"]
