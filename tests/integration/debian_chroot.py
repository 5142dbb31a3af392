"""A Debian 12 root to run the deployment artifacts in (bake.sh, the Ansible role), and a
stand-in of the agent's package.

The root is debootstrap's minbase with what a stock Debian AMI has that they touch (python3,
openssh-server, systemd, iproute2), cached as a tarball under /var/cache/cockpit-agent-tests.
It lives under /var/tmp, outside pytest's temporary directories, which a later pytest run
deletes wholesale: a mount left by a killed run must never be under a tree something removes.
It gets its own /proc and the host's basic device nodes bound one by one (a bound file cannot
be unlinked through its mount point, so no rm -r reaches the host's /dev); no /sys.

The stand-in .deb (the real package is issue 18's) carries /usr/bin/cockpit-agent answering
what the artifacts ask: `version`, `--json config validate` (whose virt packages are one small
package, `hello`), `config validate PATH` (a file containing "invalid" is refused) and
`--json reconcile` (the run record a test puts in /etc/cockpit-agent-standin/reconcile.json).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.helpers.tools import need_tools

CACHE = Path(os.environ.get("COCKPIT_TEST_CACHE", "/var/cache/cockpit-agent-tests"))
MIRROR = "http://deb.debian.org/debian"
INCLUDE = "python3,openssh-server,systemd,iproute2,ca-certificates"
DEBOOTSTRAP = ["debootstrap", "--variant=minbase", f"--include={INCLUDE}", "bookworm"]
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
VIRT = ["hello"]  # what the stand-in's configuration lists for the Debian family
RECONCILE = "/etc/cockpit-agent-standin/reconcile.json"

STANDIN_AGENT = """#!/bin/sh
# Stand-in for the cockpit-agent command (tests/integration/debian_chroot.py).
case "$*" in
version) echo "cockpit-agent @VERSION@-standin" ;;
"--json config validate")
    ls /etc/cockpit-agent/config.d/*.toml >/dev/null 2>&1 || { echo "no drop-in" >&2; exit 2; }
    printf '{"valid": true, "files": [], "config": {"virt": {"enabled": true,
      "packages": {"debian": @VIRT@, "rhel": ["x"]}}}}\\n' ;;
"config validate "*)
    if grep -q invalid "$3"; then echo "$3: invalid configuration" >&2; exit 2; fi
    echo "valid: $3" ;;
"--json reconcile --wait "*) cat @RECONCILE@ ;;
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


def standin_deb(dest: Path, version: str = "0.0.1") -> Path:
    """cockpit-agent_<version>_amd64.deb with the stand-in command and an example config."""
    tree = dest / f"standin-{version}"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN/control").write_text(
        f"Package: cockpit-agent\nVersion: {version}\nArchitecture: amd64\n"
        "Maintainer: tests <tests@localhost>\nDescription: stand-in for the deployment tests\n"
    )
    agent = tree / "usr/bin/cockpit-agent"
    agent.parent.mkdir(parents=True)
    script = STANDIN_AGENT.replace("@VERSION@", version).replace("@RECONCILE@", RECONCILE)
    agent.write_text(script.replace("@VIRT@", json.dumps(VIRT)))
    agent.chmod(0o755)
    (tree / "etc/cockpit-agent").mkdir(parents=True)
    (tree / "etc/cockpit-agent/config.toml").write_text("# example\n")
    deb = dest / f"cockpit-agent_{version}_amd64.deb"
    proc = sh("dpkg-deb", "--root-owner-group", "--build", str(tree), str(deb))
    assert proc.returncode == 0, proc.stderr
    return deb


def mounts_under(path: Path) -> list[str]:
    """Mount points below `path`."""
    prefix = f"{path}/"
    fields = (line.split() for line in Path("/proc/self/mounts").read_text().splitlines())
    return [f[1] for f in fields if len(f) > 1 and f[1].startswith(prefix)]


def unmount_all(path: Path) -> None:
    """Unmount everything below `path`, deepest first, and check nothing is left."""
    for where in sorted(mounts_under(path), key=len, reverse=True):
        sh("umount", "-l", where)
    assert mounts_under(path) == [], f"mounts left under {path}: {mounts_under(path)}"


class Chroot:
    """An unpacked root with its own /proc and the host's basic device nodes."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def bind(self, source: Path, target: Path) -> None:
        """Bind `source` (a file or directory of the test's own) at `target` in the root."""
        where = self.root / str(target).lstrip("/")
        if source.is_dir():
            where.mkdir(parents=True, exist_ok=True)
        else:
            where.unlink(missing_ok=True)
            where.touch()
        assert sh("mount", "--bind", str(source), str(where)).returncode == 0

    def run(self, *argv: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return sh("chroot", str(self.root), *argv, timeout=timeout)

    def installed(self) -> dict[str, str]:
        """Installed packages and their versions."""
        fmt = "${Package} ${Version} ${db:Status-Status}\\n"
        out = self.run("dpkg-query", "-W", "-f", fmt).stdout
        rows = (line.split() for line in out.splitlines())
        return {f[0]: f[1] for f in rows if f[2:] == ["installed"]}

    def processes(self) -> list[str]:
        """Processes whose root is this chroot (a daemon started from inside would be one)."""
        found = []
        for proc in Path("/proc").glob("[0-9]*"):
            with contextlib.suppress(OSError):
                if os.readlink(proc / "root") == str(self.root):
                    found.append((proc / "cmdline").read_text().replace("\0", " "))
        return found


@contextlib.contextmanager
def debian_chroot(work: Path) -> Iterator[Chroot]:
    """A fresh Debian 12 root under `work` (a directory under /var/tmp of the test's own)."""
    if os.geteuid() != 0:
        pytest.skip("a chroot needs root")
    need_tools("debootstrap", "dpkg-deb", "chroot", "mount", "tar")
    if work.exists():  # a run that was killed: its mounts first, then its files
        unmount_all(work)
        shutil.rmtree(work)
    root = work / "root"
    root.mkdir(parents=True)
    box = Chroot(root)
    try:
        assert sh("tar", "-C", str(root), "-xf", str(base_tarball())).returncode == 0
        (root / "proc").mkdir(exist_ok=True)
        assert sh("mount", "-t", "proc", "proc", str(root / "proc")).returncode == 0
        for name in DEVICES:
            box.bind(Path("/dev") / name, Path("/dev") / name)
        shutil.copyfile("/etc/resolv.conf", root / "etc/resolv.conf")
        yield box
    finally:
        unmount_all(work)
        shutil.rmtree(work)
