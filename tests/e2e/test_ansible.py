"""The fleet playbook (packaging/ansible/site.yml) from this host against the main instance
over SSH, as an admin rolls a new build of the agent out to a fleet: an upgrade.

The instance runs the .deb baked into its image (Debian revision 1 of this checkout's build);
the playbook brings revision 2 of the same build, so dpkg runs the package's upgrade path.
The upgrade keeps the configuration and the state and runs nothing by itself; the playbook's
reconcile then changes nothing. A second run changes nothing at all, and a bridge taken down
makes the reconcile task, and only it, report changed. ansible-playbook comes from the
validators' venv (`make tools`); the interpreter is named and facts are not gathered, to
spare the emulated guest's Python starts.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cockpit_lab.build import agent_package
from cockpit_lab.vm import Lab
from tests.ansible_run import PLAYBOOK, PlaybookRun, run_playbook
from tests.e2e.guest import sh, state

pytestmark = pytest.mark.e2e

DROPIN = {"60-fleet": "[health]\nauto_repair = false\n"}
CONFIG = "/etc/cockpit-agent/config.toml"


@pytest.fixture(scope="module")
def upgrade() -> Path:
    """Revision 2 of the .deb the image has baked (revision 1)."""
    if not PLAYBOOK.exists():
        pytest.fail(f"{PLAYBOOK} is missing: run `make tools`")
    return agent_package(release=2)


def playbook(lab: Lab, tmp: Path, **variables: object) -> PlaybookRun:
    host = (
        f"lab ansible_host=127.0.0.1 ansible_port={lab.ports.mgmt_ssh} ansible_user=root "
        f"ansible_ssh_private_key_file={lab.key} ansible_python_interpreter=/usr/bin/python3 "
        "ansible_become=false ansible_ssh_common_args='-o StrictHostKeyChecking=no "
        "-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR'"
    )
    return run_playbook(host, tmp, {"cockpit_agent_dropins": DROPIN, **variables})


def installed_version(lab: Lab) -> str:
    return sh(lab, "dpkg-query -W -f '${Version}' cockpit-agent").strip()


def agent_started(lab: Lab) -> str:
    return sh(lab, "systemctl show -p ExecMainStartTimestampMonotonic --value cockpit-agent")


def test_the_playbook_upgrades_the_package_keeping_configuration_and_state(
    lab: Lab, upgrade: Path, tmp_path: Path
) -> None:
    assert installed_version(lab).endswith("-1")
    config = sh(lab, f"sha256sum {CONFIG}")
    runs = [r["run_id"] for r in state(lab)["runs"]]
    started = agent_started(lab)
    run = playbook(lab, tmp_path, cockpit_agent_package=str(upgrade))
    assert run.rc == 0, run.output
    assert {"Install the package", "Place the drop-ins"} <= run.changed, run.output
    assert run.results["Reconcile"] == "ok", run.output  # nothing to converge after it
    assert installed_version(lab).endswith("-2")
    assert sh(lab, f"sha256sum {CONFIG}") == config  # the admin's file, not the example
    assert sh(lab, "cat /etc/cockpit-agent/config.d/60-fleet.toml") == DROPIN["60-fleet"]
    # The upgrade ran no reconcile of its own (the unit was not restarted); the state kept
    # every earlier run and gained the playbook's, which planned nothing.
    assert agent_started(lab) == started
    after = state(lab)["runs"]
    assert after[-2]["run_id"] == runs[-1]  # the runs before the upgrade are still there
    assert after[-1]["result"] == "converged", after[-1]
    plan = json.loads(sh(lab, "cockpit-agent --json plan"))
    assert [s["planned"] for s in plan["steps"]] == [[]] * len(plan["steps"])


def test_a_second_run_changes_nothing(lab: Lab, upgrade: Path, tmp_path: Path) -> None:
    run = playbook(lab, tmp_path, cockpit_agent_package=str(upgrade))
    assert run.rc == 0, run.output
    assert run.changed == set(), run.output
    assert run.results["Reconcile"] == "ok"


def test_reconcile_reports_changed_when_the_agent_repairs(lab: Lab, tmp_path: Path) -> None:
    lab.ssh("ip link set br-lni down")
    run = playbook(lab, tmp_path)
    assert run.rc == 0, run.output
    assert run.changed == {"Reconcile"}, run.output
    assert '"lni": "changed"' in run.output
    [link] = json.loads(sh(lab, "ip -j link show br-lni"))
    assert "UP" in link["flags"], link
