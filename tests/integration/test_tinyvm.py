"""The lab's tiny VM (lab/cockpit_lab/tinyvm.py) without the VM: its initramfs, unpacked by
cpio, runs its network part with its own busybox and libraries (chroot) in a network namespace
whose LAN has a DHCP server, prints the lease line and answers HTTP from the LAN. Booting it
(kernel, virtio modules, virt-install without --network) is the lab's: the lead runs it."""

from __future__ import annotations

import gzip
import shutil
import subprocess
from pathlib import Path

import pytest
from cockpit_lab.tinyvm import ANSWER, initramfs, wait_lease
from tests.helpers.tools import need_tools
from tests.integration.netns_helpers import LNI_ADDRESS, Lan

pytestmark = pytest.mark.integration


def unpack(image: bytes, root: Path) -> None:
    root.mkdir()
    subprocess.run(["cpio", "-idm", "--quiet"], input=gzip.decompress(image), cwd=root, check=True)


def test_the_initramfs_holds_busybox_its_libraries_and_init(tmp_path: Path) -> None:
    need_tools("busybox", "cpio")
    root = tmp_path / "root"
    unpack(initramfs(busybox=str(shutil.which("busybox"))), root)
    assert (root / "init").stat().st_mode & 0o111
    assert (root / "bin/sh").readlink() == Path("busybox")
    assert (root / "lib64/ld-linux-x86-64.so.2").is_file()
    out = subprocess.run(
        ["chroot", str(root), "/bin/busybox", "echo", "runs"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.stdout == "runs\n", out.stderr


def test_it_prints_its_lease_and_answers_from_the_lan(lan: Lan, tmp_path: Path) -> None:
    need_tools("busybox", "cpio", "chroot")
    lan.start_dhcp_server()
    root = tmp_path / "root"
    unpack(initramfs(busybox=str(shutil.which("busybox"))), root)
    net = subprocess.run(
        ["ip", "netns", "exec", lan.host, "chroot", str(root), "/tinyvm-net", "lni0"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert f"TINYVM-LEASE {LNI_ADDRESS}\n" in net.stdout, (net.stdout, net.stderr)
    console = tmp_path / "console.log"
    console.write_text(net.stdout.replace("TINYVM-UP \n", "TINYVM-UP 3.25\n"))
    assert wait_lease(tmp_path, 1) == {"lease": LNI_ADDRESS, "up_seconds": 3.25}
    fetch = ["/bin/busybox", "wget", "-q", "-O", "-", f"http://{LNI_ADDRESS}/"]
    answer = subprocess.run(
        ["ip", "netns", "exec", lan.lan, "chroot", str(root), *fetch],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert answer.stdout == f"{ANSWER}\n", answer.stderr
