"""packaging/ami/bake.sh for real, offline, in a chroot of Debian 12 (as the lab runs it).

The root is debootstrap's minbase with what a stock Debian AMI has that the bake touches
(python3, openssh-server, systemd), cached as a tarball under /var/cache/cockpit-agent-tests.
The agent's package is a stand-in .deb made here with dpkg-deb (the real one is issue 18's):
its `cockpit-agent --json config validate` names one small package (`hello`) for the virt
step, so the test proves that the bake installs what the agent's configuration lists, not
what the real lists cost. The mirror is Debian's, as for the lab's image build.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.integration.conftest import need_tools

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BAKE = REPO / "packaging" / "ami" / "bake.sh"
CACHE = Path(os.environ.get("COCKPIT_TEST_CACHE", "/var/cache/cockpit-agent-tests"))
MIRROR = "http://deb.debian.org/debian"
INCLUDE = "python3,openssh-server,systemd,iproute2,ca-certificates"
DEBOOTSTRAP = ["debootstrap", "--variant=minbase", f"--include={INCLUDE}", "bookworm"]
VIRT = ["hello"]  # what the stand-in agent's configuration lists for the Debian family

STANDIN_AGENT = """#!/bin/sh
# Stand-in for the cockpit-agent command: version and `--json config validate` only.
case "$*" in
version) echo "cockpit-agent 0.0.1-standin" ;;
"--json config validate")
    ls /etc/cockpit-agent/config.d/*.toml >/dev/null 2>&1 || { echo "no drop-in" >&2; exit 2; }
    printf '{"valid": true, "files": [], "config": {"virt": {"enabled": true,
      "packages": {"debian": %s, "rhel": ["x"]}}}}\\n' '%s' ;;
*) echo "stand-in: unexpected arguments: $*" >&2; exit 2 ;;
esac
"""


def sh(*argv: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def base_tarball() -> Path:
    """debootstrap once per recipe; later runs unpack the tarball (seconds)."""
    key = hashlib.sha256(" ".join([*DEBOOTSTRAP, MIRROR]).encode()).hexdigest()[:12]
    tarball = CACHE / f"bake-chroot-{key}.tar"
    if tarball.exists():
        return tarball
    CACHE.mkdir(parents=True, exist_ok=True)
    work = CACHE / f".build-{key}-{os.getpid()}"
    debs = CACHE / "debs"
    debs.mkdir(exist_ok=True)
    try:
        proc = sh(*DEBOOTSTRAP[:-1], f"--cache-dir={debs}", DEBOOTSTRAP[-1], str(work), MIRROR)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        partial = tarball.with_suffix(".partial")
        assert sh("tar", "-C", str(work), "-cf", str(partial), ".").returncode == 0
        partial.rename(tarball)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return tarball


def standin_deb(dest: Path) -> Path:
    """cockpit-agent_0.0.1_amd64.deb with /usr/bin/cockpit-agent and an example config."""
    tree = dest / "standin"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN/control").write_text(
        "Package: cockpit-agent\nVersion: 0.0.1\nArchitecture: amd64\n"
        "Maintainer: tests <tests@localhost>\nDescription: stand-in for the bake test\n"
    )
    agent = tree / "usr/bin/cockpit-agent"
    agent.parent.mkdir(parents=True)
    agent.write_text(STANDIN_AGENT.replace("'%s'", f"'{json.dumps(VIRT)}'"))
    agent.chmod(0o755)
    (tree / "etc/cockpit-agent").mkdir(parents=True)
    (tree / "etc/cockpit-agent/config.toml").write_text("# example\n")
    deb = dest / "cockpit-agent_0.0.1_amd64.deb"
    proc = sh("dpkg-deb", "--root-owner-group", "--build", str(tree), str(deb))
    assert proc.returncode == 0, proc.stderr
    return deb


# Outside pytest's temporary directories, which a later pytest run deletes wholesale: a
# mount left behind by a killed run must never be under a tree that something removes.
WORK = Path("/var/tmp/cockpit-agent-bake-test")
# Device nodes bound one by one (a bound file cannot be unlinked through its mount point, so
# no rm -r can reach the host's /dev through the chroot); no /sys at all.
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")


def mounts_under(path: Path) -> list[str]:
    prefix = f"{path}/"
    fields = (line.split() for line in Path("/proc/self/mounts").read_text().splitlines())
    return [f[1] for f in fields if len(f) > 1 and f[1].startswith(prefix)]


def unmount_all(path: Path) -> None:
    for where in sorted(mounts_under(path), key=len, reverse=True):
        sh("umount", "-l", where)
    assert mounts_under(path) == [], f"mounts left under {path}: {mounts_under(path)}"


class Chroot:
    """An unpacked root with its own /proc and the host's basic device nodes."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def mount(self) -> None:
        (self.root / "proc").mkdir(exist_ok=True)
        assert sh("mount", "-t", "proc", "proc", str(self.root / "proc")).returncode == 0
        for name in DEVICES:
            node = self.root / "dev" / name
            node.unlink(missing_ok=True)
            node.touch()
            assert sh("mount", "--bind", f"/dev/{name}", str(node)).returncode == 0

    def run(self, *argv: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return sh("chroot", str(self.root), *argv, timeout=timeout)

    def installed(self) -> set[str]:
        out = self.run("dpkg-query", "-W", "-f", "${Package} ${db:Status-Status}\\n").stdout
        return {line.split()[0] for line in out.splitlines() if line.endswith(" installed")}

    def processes(self) -> list[str]:
        """Processes whose root is this chroot (a daemon the bake started would be one)."""
        found = []
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                if os.readlink(proc / "root") == str(self.root):
                    found.append((proc / "cmdline").read_text().replace("\0", " "))
            except OSError:
                continue
        return found


@pytest.fixture(scope="module")
def chroot() -> Iterator[Chroot]:
    if os.geteuid() != 0:
        pytest.skip("a chroot needs root")
    need_tools("debootstrap", "dpkg-deb", "chroot", "mount", "tar")
    if WORK.exists():  # a run that was killed: its mounts first, then its files
        unmount_all(WORK)
        shutil.rmtree(WORK)
    root = WORK / "root"
    root.mkdir(parents=True)
    box = Chroot(root)
    try:
        assert sh("tar", "-C", str(root), "-xf", str(base_tarball())).returncode == 0
        box.mount()
        shutil.copyfile("/etc/resolv.conf", root / "etc/resolv.conf")
        yield box
    finally:
        unmount_all(WORK)
        shutil.rmtree(WORK)


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
    assert {"cockpit-agent", *VIRT} <= packages
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
