"""A crash at any action converges (issue 14), on the main instance (the stock image).

For each step that changes the host here, the step is made to act again (storage: the array
taken apart as an admin would; lni: the bridge and its files removed) and the agent killed
with SIGKILL to its session while it applies its k-th action, for every k; the next run must
converge (crash_guest.py says what each run saw). The per-k results are kept next to the
run directory (runs/<run>-crash-<step>.json). Then a new array that shows an old filesystem
is refused, not formatted, and an LNI whose cable is unplugged is rolled back under netplan.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pytest
from cockpit_lab.recipe import LNI_GUEST_IP, LNI_MAC, MGMT_GUEST_IP, MGMT_MAC
from cockpit_lab.vm import Lab
from tests.e2e.guest import (
    AGENT_NETPLAN,
    ARRAY,
    CLOUD_INIT_NETPLAN,
    MP,
    fs_uuid,
    ipv4,
    links,
    sh,
    step_record,
    tear_down,
)

pytestmark = pytest.mark.e2e

CRASH_GUEST = (Path(__file__).parent / "crash_guest.py").read_text()
# What makes each step act again, and the files it edits: {path: a substring of our lines}.
CRASH_SETUP = {
    "storage": tear_down(wipe=True),
    "lni": f"""
rm -f {AGENT_NETPLAN}
ip link delete br-lni || true
netplan apply
""",
    "libvirt_network": """
virsh -q -c qemu:///system net-destroy lni || true
virsh -q -c qemu:///system net-undefine lni || true
""",
}
UNTOUCHED = {CLOUD_INIT_NETPLAN: "", "/etc/fstab": "", "/etc/mdadm/mdadm.conf": ""}
CRASH_FILES = {
    "storage": {"/etc/fstab": MP, "/etc/mdadm/mdadm.conf": "cockpit-data"},
    "lni": UNTOUCHED,
    "libvirt_network": UNTOUCHED,
}
OURS = {
    "storage": {"/etc/fstab": 1, "/etc/mdadm/mdadm.conf": 1},
    "lni": {},
    "libvirt_network": {},
}


def crash(lab: Lab, step: str, k: int) -> dict[str, Any]:
    """Run crash_guest.py in the guest: the step made to act, killed at its k-th action."""
    args = [step, str(k), CRASH_SETUP[step], json.dumps(CRASH_FILES[step])]
    cmd = f"python3 - {shlex.join(args)} <<'CRASH_GUEST_EOF'\n{CRASH_GUEST}CRASH_GUEST_EOF\n"
    return json.loads(lab.ssh(cmd, timeout=900).stdout)  # type: ignore[no-any-return]


def crash_problems(report: dict[str, Any]) -> list[str]:
    """What is wrong after a kill and a second run (empty when it converged)."""
    step = report["step"]
    found = []
    if not report["killed"]:
        found.append("the agent finished before its k-th action")
    recovery = report["recovery"]
    if report["recovery_rc"] != 0 or recovery.get("error"):
        found.append(f"second run exited {report['recovery_rc']}: {recovery.get('error')}")
    if report["planned_after"] != []:
        found.append(f"plan after it: {report['planned_after']}")
    if report["state_valid"] is not True:
        found.append(f"state.json: {report['state_valid']}")
    before, after = report["foreign_before"], report["foreign_after"]
    for path in before:
        if before[path]["foreign_sha256"] != after[path]["foreign_sha256"]:
            found.append(f"{path}: lines that are not the agent's changed")
        want = OURS[step].get(path)
        if want is not None and after[path]["ours"] != want:
            found.append(f"{path}: {after[path]['ours']} lines of ours, want {want}")
    return found


@pytest.mark.parametrize("step", ["storage", "lni", "libvirt_network"])
def test_a_kill_at_any_action_converges_on_the_next_run(lab: Lab, step: str) -> None:
    # Issue 14: for every k, the step is made to act and the agent is killed (SIGKILL to its
    # session, as systemd kills a unit) while it applies its k-th action; the next run must
    # exit 0 and leave nothing planned, state.json valid, our lines once, nothing else
    # touched, and (lni) the management path alive throughout: every command here goes
    # over it.
    first = crash(lab, step, 0)
    planned = first["planned"]
    assert planned, f"setting up {step} left it nothing to do"
    assert first["converge_rc"] == 0, first
    results = [crash(lab, step, k) for k in range(1, len(planned) + 1)]
    summary = lab.run_dir.parent / f"{lab.run_dir.name}-crash-{step}.json"
    summary.write_text(json.dumps({"planned": planned, "runs": results}, indent=2) + "\n")
    failed = {r["k"]: (r["killed_during"], crash_problems(r)) for r in results}
    assert not {k: v for k, v in failed.items() if v[1]}, failed
    if step == "lni":
        assert ipv4(links(lab)["br-lni"]) == [LNI_GUEST_IP]
    elif step == "libvirt_network":
        info = sh(lab, "virsh -c qemu:///system net-info lni")
        assert "Active:         yes" in info and "Autostart:      yes" in info, info
    else:
        assert sh(lab, f"findmnt -n -o FSTYPE {MP}").strip() == "xfs"


def test_a_new_array_that_shows_an_old_filesystem_is_not_formatted(lab: Lab) -> None:
    # Superblocks zeroed but the data left: the new array over the same members shows the old
    # XFS, which the agent no longer knows as its own. It refuses to format it and says how
    # to let it; once the admin wipes it, the next run builds the filesystem.
    old = fs_uuid(lab)
    sh(lab, tear_down(wipe=False))
    proc = lab.ssh("cockpit-agent reconcile --only storage", check=False, timeout=600)
    record = step_record(lab, "storage")
    assert proc.returncode == 1, (record, proc.stdout, proc.stderr)
    assert record["status"] == "failed", record
    assert "is not blank (TYPE=xfs" in record["error"], record
    assert f"wipefs -a {ARRAY}" in record["error"], record
    assert fs_uuid(lab) == old  # nothing was written over it
    sh(lab, f"wipefs -a -q {ARRAY}")
    proc = lab.ssh("cockpit-agent reconcile --only storage", check=False, timeout=600)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert fs_uuid(lab) not in ("", old)


def test_an_lni_that_gets_no_address_is_rolled_back_under_netplan(lab: Lab) -> None:
    # Issue 17: the cable of the LNI unplugged and the bridge made anew, as on a host whose
    # LAN's DHCP does not answer. The bridge gets no address within its timeout and the agent
    # rolls back to cloud-init's netplan, the management path alive throughout (every command
    # here goes over it); plugged in, the next run bridges it again.
    lab.set_link("lni", up=False)
    try:
        sh(lab, CRASH_SETUP["lni"])
        proc = lab.ssh(
            "cockpit-agent reconcile --only lni --only libvirt_network", check=False, timeout=900
        )
        record = step_record(lab, "lni")
        assert (proc.returncode, record["status"]) == (1, "failed"), (record, proc.stderr)
        assert "rolled back" in (record["error"] or ""), record
        seen = links(lab)
        assert "br-lni" not in seen, seen["br-lni"]
        lni = next(link for link in seen.values() if link["address"] == LNI_MAC)
        assert "master" not in lni, lni
        mgmt = next(link for link in seen.values() if link["address"] == MGMT_MAC)
        assert ipv4(mgmt) == [MGMT_GUEST_IP]
        assert sh(lab, f"ls {AGENT_NETPLAN} 2>/dev/null; true").strip() == ""
        assert f"macaddress: {LNI_MAC}" in sh(lab, f"cat {CLOUD_INIT_NETPLAN}")
    finally:
        lab.set_link("lni", up=True)
    proc = lab.ssh("cockpit-agent reconcile", check=False, timeout=900)
    assert proc.returncode == 0, (step_record(lab, "lni"), proc.stderr)
    assert ipv4(links(lab)["br-lni"]) == [LNI_GUEST_IP]
    assert lab.ssh("hostname", port=lab.ports.lni_ssh).returncode == 0  # SSH over the LNI
    plan = json.loads(sh(lab, "cockpit-agent --json plan"))
    assert [s["planned"] for s in plan["steps"]] == [[]] * len(plan["steps"]), plan
