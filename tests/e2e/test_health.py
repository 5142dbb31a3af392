"""`cockpit-agent check` in the lab: a converged guest, then drift and faults, then repair.

Runs on the image with the virtualisation packages baked in (as an AMI would have them), with
every step on. Whether the guest has /dev/kvm depends on the CPU QEMU emulates (TCG's `-cpu
max` offers AMD's SVM, so kvm_amd loads); without it, `no-kvm` is the one WARNING a converged
lab guest may show.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from cockpit_lab.vm import Lab, LabSpec

pytestmark = pytest.mark.e2e

EXPECTED_HERE = {"no-kvm"}  # the one finding that depends on the emulated CPU


@pytest.fixture(scope="module")
def lab(lab_factory: Any) -> Lab:
    """A converged guest with every step on."""
    lab: Lab = lab_factory(LabSpec(), variant="virt")
    lab.boot()
    lab.wait_agent(timeout=1200)
    return lab


def check(lab: Lab, *args: str) -> tuple[int, dict[str, Any]]:
    proc = lab.ssh(f"cockpit-agent check --json {' '.join(args)}", check=False, timeout=600)
    return proc.returncode, json.loads(proc.stdout)


def has_kvm(lab: Lab) -> bool:
    return lab.ssh("test -e /dev/kvm", check=False).returncode == 0


def problems(report: dict[str, Any]) -> dict[str, str]:
    return {
        f["code"]: f["severity"]
        for f in report["findings"]
        if f["severity"] != "ok" and f["code"] not in EXPECTED_HERE
    }


def test_converged_guest_has_no_problem(lab: Lab) -> None:
    code, report = check(lab)
    assert problems(report) == {}, report
    first = lab.ssh("cockpit-agent check", check=False).stdout.splitlines()[0]
    if has_kvm(lab):
        assert (code, report["status"]) == (0, "OK"), report
        assert first.startswith("OK - ")
    else:
        assert (code, report["status"]) == (1, "WARNING"), report
        assert first.startswith("WARNING - /dev/kvm is missing")


def test_drift_shows_then_repair_restores_it(lab: Lab) -> None:
    lab.ssh("systemctl stop cockpit.socket cockpit.service")
    lab.ssh("ip link set br-lni down")
    lab.ssh(
        r"sed -i '/cockpit-agent/,+1 s/nofail/nofail,noatime/' /etc/fstab && "
        "systemctl daemon-reload"
    )
    code, report = check(lab)
    found = problems(report)
    assert code == 2, report
    assert found.get("unit-inactive") == "critical", found
    assert found.get("cockpit-not-serving") == "critical", found
    assert "critical" in {found.get("lni-bridge-broken"), found.get("lni-bridge-missing")}, found
    assert found.get("storage-drift") == "warning", found
    assert found.get("virt-drift") == "warning", found

    code, report = check(lab, "--repair")
    assert sorted(report["repaired_steps"]) == ["lni", "storage", "virt"], report
    assert problems(report) == {}, report
    code, report = check(lab)
    assert problems(report) == {} and code == (0 if has_kvm(lab) else 1), report


def test_failed_array_member_is_critical(lab: Lab) -> None:
    detail = lab.ssh("mdadm --detail --export /dev/md/cockpit-data").stdout
    members = sorted(
        line.split("=", 1)[1]
        for line in detail.splitlines()
        if line.startswith("MD_DEVICE_dev_") and line.split("=", 1)[0].endswith("_DEV")
    )
    assert members, detail
    lab.ssh(f"mdadm /dev/md/cockpit-data --fail {members[0]}")
    code, report = check(lab)
    assert code == 2, report
    assert problems(report).get("storage-degraded") == "critical", report
    assert report["summary"].startswith("CRITICAL - ")


def test_prometheus_textfile_in_the_guest(lab: Lab) -> None:
    lab.ssh("cockpit-agent check --prometheus /run/cockpit-agent.prom", check=False)
    text = lab.ssh("cat /run/cockpit-agent.prom").stdout
    assert "cockpit_agent_check_status 2" in text
    assert 'cockpit_agent_array_degraded{array="cockpit-data"} 1' in text
