"""packaging/ami/bake.sh for real, offline, in a chroot of Debian 12 (as the lab runs it).

The root and the stand-in of the agent's package are tests/integration/debian_chroot.py's: the
stand-in's configuration names one small package (`hello`) for the virt step, so the test
proves that the bake installs what the agent's configuration lists, not what the real lists
cost. The mirror is Debian's, as for the lab's image build.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.integration.debian_chroot import VIRT, Chroot, debian_chroot, standin_deb

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BAKE = REPO / "packaging" / "ami" / "bake.sh"


@pytest.fixture(scope="module")
def chroot() -> Iterator[Chroot]:
    with debian_chroot(Path("/var/tmp/cockpit-agent-bake-test")) as box:
        yield box


def leftovers(root: Path) -> dict[str, object]:
    """What the bake must have cleaned, as found under `root`."""
    logs = [p for p in (root / "var/log").rglob("*") if p.is_file() and not p.is_symlink()]
    return {
        "machine-id": (root / "etc/machine-id").read_text(),
        "host keys": sorted(p.name for p in (root / "etc/ssh").glob("ssh_host_*")),
        "agent state": sorted(p.name for p in (root / "var/lib/cockpit-agent").iterdir()),
        "history": [p.name for p in (root / "root").glob(".*history")],
        "debs": [p.name for p in (root / "var/cache/apt/archives").glob("*.deb")],
        "lists": [p.name for p in (root / "var/lib/apt/lists").glob("*Packages*")],
        "non-empty logs": [str(p) for p in logs if p.stat().st_size],
        "rotated logs": [str(p) for p in logs if p.suffix in (".1", ".gz")],
        "journal": [p.name for p in (root / "var/log/journal").iterdir()],
        "random-seed": (root / "var/lib/systemd/random-seed").exists(),
        "policy-rc.d": (root / "usr/sbin/policy-rc.d").exists(),
    }


CLEAN = {
    "machine-id": "",
    "host keys": [],
    "agent state": [],
    "history": [],
    "debs": [],
    "lists": [],
    "non-empty logs": [],
    "rotated logs": [],
    "journal": [],
    "random-seed": False,
    "policy-rc.d": False,
}


def dirty(root: Path) -> None:
    """What a used builder has: an instance's identity, state, history, logs."""
    (root / "etc/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    state = root / "var/lib/cockpit-agent"
    state.mkdir(parents=True, exist_ok=True)
    (state / "state.json").write_text('{"instance_id": "i-0builder"}\n')
    (root / "root/.bash_history").write_text("aws configure\n")
    (root / "var/log/syslog.1").write_text("old\n")
    journal = root / "var/log/journal/0123456789abcdef0123456789abcdef"
    journal.mkdir(parents=True, exist_ok=True)
    (journal / "system.journal").write_bytes(b"LPKSHHRH")
    (root / "var/lib/systemd").mkdir(parents=True, exist_ok=True)
    (root / "var/lib/systemd/random-seed").write_bytes(os.urandom(512))


def bake(box: Chroot, deb: Path, *options: str) -> subprocess.CompletedProcess[str]:
    work = box.root / "tmp/bake"
    work.mkdir(parents=True, exist_ok=True)
    shutil.copy(BAKE, work / "bake.sh")
    shutil.copy(deb, work / deb.name)
    conf = work / "conf/config.d"
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "60-site.toml").write_text("[lni]\ndevice_index = 2\n")
    return box.run("sh", "/tmp/bake/bake.sh", *options, "--config-dir", "/tmp/bake/conf",
                   "/tmp/bake")  # fmt: skip


def test_bake_in_a_chroot_installs_scans_cleans_and_is_idempotent(
    chroot: Chroot, tmp_path: Path
) -> None:
    deb = standin_deb(tmp_path)
    root = chroot.root
    dirty(root)
    assert sorted(p.name for p in (root / "etc/ssh").glob("ssh_host_*_key"))  # debootstrap's

    started = time.monotonic()
    first = bake(chroot, deb, "--scan", "lynis")
    seconds = time.monotonic() - started
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    print(f"first bake: {seconds:.0f} s")
    assert "offline (chroot): nothing is started" in first.stdout

    packages = chroot.installed()
    assert {"cockpit-agent", *VIRT} <= set(packages)
    assert "lynis" not in packages  # the scanner the bake added is gone again
    assert leftovers(root) == CLEAN
    assert (root / "etc/cockpit-agent/config.d/60-site.toml").read_text().endswith("= 2\n")
    dropin = root / "etc/systemd/system/ssh.service.d/50-host-keys.conf"
    assert "ExecStartPre=/usr/bin/ssh-keygen -A" in dropin.read_text()
    assert chroot.processes() == []  # nothing started from inside the chroot

    report = root / "var/lib/cockpit-agent-bake"
    manifest = json.loads((report / "bake.json").read_text())
    assert manifest["family"] == "debian"
    assert manifest["agent"] == "cockpit-agent 0.0.1-standin"
    assert manifest["virt_packages"] == VIRT
    assert manifest["running_system"] is False
    assert manifest["scan"] == "lynis"
    lynis = (report / "lynis-report.dat").read_text()
    assert "hardening_index=" in lynis
    assert manifest["scan_summary"].startswith("lynis: hardening index ")

    print(first.stdout)
    dirty(root)
    again = bake(chroot, deb)  # no scan: the install and the cleaning are what must hold
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-4000:]
    assert chroot.installed() == packages
    assert leftovers(root) == CLEAN
    assert dropin.exists()


def test_bake_refuses_a_package_directory_without_this_familys_package(
    chroot: Chroot, tmp_path: Path
) -> None:
    work = chroot.root / "tmp/empty"
    work.mkdir(parents=True, exist_ok=True)
    (work / "cockpit-agent-0.0.1.x86_64.rpm").write_text("not for Debian\n")
    shutil.copy(BAKE, work / "bake.sh")
    proc = chroot.run("sh", "/tmp/empty/bake.sh", "/tmp/empty")
    assert proc.returncode == 1
    assert "no cockpit-agent_*_amd64.deb in it" in proc.stderr


def test_openscap_scan_runs_and_counts_the_rules(chroot: Chroot, tmp_path: Path) -> None:
    """Debian 12's SCAP Security Guide (0.1.65) carries content up to Debian 11 only, so the
    root says 11 for this test: that runs the OpenSCAP path (scanner installed, data stream
    found, oscap eval, the counts from the XCCDF results, the reports, the scanner removed).
    Debian 11's rules then find a Debian 12 mostly not applicable, which the counts say."""
    release = chroot.root / "usr/lib/os-release"
    original = release.read_text()
    release.write_text(original.replace('VERSION_ID="12"', 'VERSION_ID="11"'))
    try:
        proc = bake(chroot, standin_deb(tmp_path), "--scan", "openscap", "--scan-profile",
                    "xccdf_org.ssgproject.content_profile_standard")  # fmt: skip
    finally:
        release.write_text(original)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    report = chroot.root / "var/lib/cockpit-agent-bake"
    summary = json.loads((report / "bake.json").read_text())["scan_summary"]
    assert summary.startswith("openscap ssg-debian11-ds.xml standard: "), summary
    assert re.search(r"\b[1-9][0-9]* notapplicable\b", summary), summary
    assert "<rule-result" in (report / "openscap-results.xml").read_text()
    assert (report / "openscap-report.html").stat().st_size > 0
    assert not {"openscap-scanner", "ssg-debian"} & set(chroot.installed())


def test_openscap_without_content_for_this_os_stops_the_bake(
    chroot: Chroot, tmp_path: Path
) -> None:
    proc = bake(chroot, standin_deb(tmp_path), "--scan", "openscap")
    assert proc.returncode == 1
    assert "has no data stream for debian 12" in proc.stderr
    assert "use --scan lynis or --scan none" in proc.stderr
