"""The fleet playbook (packaging/ansible/site.yml) from this host against a lab guest over SSH.

One guest, kept cheap: no instance-store drives and no virtualisation stack (the role and the
agent's reconcile are what is under test, not the RAID or Cockpit), no fact gathering,
pipelining, the interpreter named. The agent's package is the .deb built from the checkout
(`make package`, or COCKPIT_AGENT_DEB=path): removed from the guest first, so the first run
really installs it. Then a second run changes nothing, and a bridge taken down makes the
reconcile task, and only it, report changed.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from cockpit_lab.vm import Lab, LabSpec
from tests.ansible_run import PLAYBOOK, REPO, run_playbook

pytestmark = pytest.mark.e2e

NO_VIRT = "\n[virt]\nenabled = false\n"
DROPIN = {"60-fleet": "[health]\nauto_repair = false\n"}
DEB_NAME = re.compile(r"^cockpit-agent_(.+)_amd64\.deb$")


def package() -> Path:
    """The .deb built from this checkout."""
    if os.environ.get("COCKPIT_AGENT_DEB"):
        return Path(os.environ["COCKPIT_AGENT_DEB"]).resolve()
    found = sorted((REPO / "dist").glob("cockpit-agent_*_amd64.deb"))
    if not found:
        pytest.fail("no dist/cockpit-agent_*_amd64.deb: `make package` (or COCKPIT_AGENT_DEB)")
    return found[-1]


@pytest.fixture(scope="module")
def lab(lab_factory: Any) -> Lab:
    if not PLAYBOOK.exists():
        pytest.fail(f"{PLAYBOOK} is missing: run `make tools`")
    lab: Lab = lab_factory(LabSpec(nvme_count=0, extra_config=NO_VIRT))
    lab.boot()
    lab.wait_agent()
    lab.ssh("dpkg -r cockpit-agent >/dev/null 2>&1 || true")
    return lab


def playbook(lab: Lab, tmp: Path, **variables: object) -> Any:
    host = (
        f"lab ansible_host=127.0.0.1 ansible_port={lab.ports.mgmt_ssh} ansible_user=root "
        f"ansible_ssh_private_key_file={lab.key} ansible_python_interpreter=/usr/bin/python3 "
        "ansible_become=false ansible_ssh_common_args='-o StrictHostKeyChecking=no "
        "-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR'"
    )
    return run_playbook(host, tmp, {"cockpit_agent_dropins": DROPIN, **variables})


def installed_version(lab: Lab) -> str:
    proc = lab.ssh("dpkg-query -W -f '${Version}' cockpit-agent", check=False)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def test_first_run_installs_the_package_and_places_the_configuration(
    lab: Lab, tmp_path: Path
) -> None:
    deb = package()
    match = DEB_NAME.match(deb.name)
    assert match, deb.name
    assert installed_version(lab) == ""
    run = playbook(lab, tmp_path, cockpit_agent_package=str(deb))
    assert run.rc == 0, run.output
    assert {"Install the package", "Place the drop-ins"} <= run.changed, run.output
    assert installed_version(lab) == match.group(1)
    assert lab.ssh("cat /etc/cockpit-agent/config.d/60-fleet.toml").stdout == DROPIN["60-fleet"]
    last = json.loads(lab.ssh("cockpit-agent --json status").stdout)["runs"][-1]
    assert last["result"] != "failed", last


def test_second_run_changes_nothing(lab: Lab, tmp_path: Path) -> None:
    run = playbook(lab, tmp_path, cockpit_agent_package=str(package()))
    assert run.rc == 0, run.output
    assert run.changed == set(), run.output
    assert run.results["Reconcile"] == "ok"


def test_reconcile_reports_changed_when_the_agent_repairs(lab: Lab, tmp_path: Path) -> None:
    lab.ssh("ip link set br-lni down")
    run = playbook(lab, tmp_path)
    assert run.rc == 0, run.output
    assert run.changed == {"Reconcile"}, run.output
    assert '"lni": "changed"' in run.output
    [link] = json.loads(lab.ssh("ip -j link show br-lni").stdout)
    assert "UP" in link["flags"], link
