"""Host-side plumbing of the image build: commands, a loop device, mounts and a chroot.

Everything here acts only on the image file it is given and on the loop device it attached
itself, and undoes what it did on the way out (even on failure). This host kernel has no
partition-table parser and no device-mapper: partitions of a loop device come from
`partx --add`, and nothing uses kpartx or LVM on the host.
"""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

from cockpit_lab.procs import run_group

CHROOT_ENV = {
    "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LC_ALL": "C.UTF-8",
    "DEBIAN_FRONTEND": "noninteractive",
    "DEBCONF_NONINTERACTIVE_SEEN": "true",
}


_build_log: list[Path] = []  # the log of the build in progress, if any (logging_to)


@contextmanager
def logging_to(path: Path) -> Iterator[Path]:
    """Keep a full log of what runs inside the block (every command and its output) in
    `path`, started afresh: a failed build's one-line message points there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    _build_log.append(path)
    try:
        yield path
    finally:
        _build_log.remove(path)


def _to_build_log(text: str) -> None:
    if _build_log:
        with _build_log[-1].open("a") as fh:
            fh.write(text if text.endswith("\n") else text + "\n")


def log(msg: str) -> None:
    """Progress on stderr, so that stdout stays data (and into the build log)."""
    line = f"[lab {time.strftime('%H:%M:%S')}] {msg}"
    print(line, file=sys.stderr, flush=True)
    _to_build_log(line)


def run(
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    quiet: bool = False,
    input_text: str | None = None,
) -> str:
    """Run a command (never through a shell) in a process group that an interrupt kills
    whole; raise with its output when it fails."""
    proc = run_group(
        argv, env=env, input=input_text, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    _to_build_log(f"$ {shlex.join(argv)}\n{proc.stdout or ''}# exit {proc.returncode}")
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-40:])
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}:\n{tail}")
    if not quiet and proc.stdout.strip():
        for line in proc.stdout.splitlines()[-5:]:
            log(f"  | {line}")
    return proc.stdout


@contextmanager
def loop_device(image: Path) -> Iterator[str]:
    """Attach `image` to a free loop device with its partitions (via partx); detach after."""
    dev = run(["losetup", "--find", "--show", str(image)], quiet=True).strip()
    try:
        run(["partx", "--add", dev], quiet=True)
        yield dev
    finally:
        subprocess.run(["partx", "--delete", dev], capture_output=True, check=False)
        subprocess.run(["losetup", "--detach", dev], capture_output=True, check=False)


LVM_CONFIG = (
    # No device-mapper on the build host: LVM writes metadata only, never activates; no
    # backups under the host's /etc/lvm; and it looks at no device but the one given.
    "global { activation = 0 } backup { backup = 0 archive = 0 } "
    "devices { obtain_device_list_from_udev = 0 }"
)


def _lvm(pv: str, *argv: str) -> str:
    """An lvm command restricted to device `pv`; returns its stdout (warnings go to stderr)."""
    env = {"PATH": CHROOT_ENV["PATH"], "LVM_SUPPRESS_FD_WARNINGS": "1"}
    full = ["lvm", argv[0], "--config", LVM_CONFIG, "--devices", pv, *argv[1:]]
    proc = subprocess.run(full, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(full)} exited {proc.returncode}:\n{proc.stderr}")
    return proc.stdout


@contextmanager
def lvm_volume(pv: str, vg: str, lv: str, *, create: bool = True) -> Iterator[str]:
    """Yield a loop device over exactly the extents of LV `lv` of VG `vg` on PV `pv`, without
    device-mapper (its data starts at the PV's pe_start, the LV being the first and only one),
    to make or mount its filesystem on. With `create`, `pv` first becomes that PV, VG and one
    linear LV over all of it."""
    if create:
        _lvm(pv, "pvcreate", "--quiet", pv)
        _lvm(pv, "vgcreate", "--quiet", vg, pv)
        _lvm(pv, "lvcreate", "--quiet", "--activate", "n", "--zero", "n", "--extents",
             "100%FREE", "--name", lv, vg)  # fmt: skip
    units = ("--noheadings", "--units", "b", "--nosuffix")
    pe_start = int(_lvm(pv, "pvs", *units, "-o", "pe_start", pv).split()[0])
    ranges = _lvm(pv, "lvs", *units, "-o", "lv_size,seg_start_pe", f"{vg}/{lv}").split()
    size, first_extent = int(ranges[0]), int(ranges[1])
    if first_extent != 0:
        raise RuntimeError(f"{vg}/{lv} does not start at the PV's first extent")
    dev = run(["losetup", "--find", "--show", "--offset", str(pe_start), "--sizelimit",
               str(size), pv], quiet=True).strip()  # fmt: skip
    try:
        yield dev
    finally:
        subprocess.run(["losetup", "--detach", dev], capture_output=True, check=False)


def partition(dev: str, number: int) -> str:
    """The device node of partition `number` of loop device `dev`, once it exists."""
    path = f"{dev}p{number}"
    for _ in range(50):
        if os.path.exists(path):
            return path
        time.sleep(0.1)
    raise RuntimeError(f"{path} did not appear after partx --add")


@contextmanager
def mounted(source: str, target: Path, *options: str) -> Iterator[Path]:
    """mount SOURCE TARGET [options]; unmount on the way out."""
    target.mkdir(parents=True, exist_ok=True)
    run(["mount", *options, source, str(target)], quiet=True)
    try:
        yield target
    finally:
        if (
            subprocess.run(["umount", str(target)], capture_output=True, check=False).returncode
            != 0
        ):
            time.sleep(1)
            subprocess.run(["umount", "--lazy", str(target)], capture_output=True, check=False)


def _mknod(path: Path, rdev: int, *, block: bool = False, mode: int = 0o666) -> None:
    os.mknod(path, (stat.S_IFBLK if block else stat.S_IFCHR) | mode, rdev)
    os.chmod(path, mode)


def private_dev(
    stack: ExitStack, root: Path, block_devices: Sequence[str], by_uuid: dict[str, str]
) -> None:
    """A tmpfs /dev inside the chroot holding only what the build needs.

    The host's /dev is never bind-mounted, so nothing in the chroot can reach its disks; the
    loop device and its partitions get nodes, and /dev/disk/by-uuid links as udev would make
    (grub-mkconfig writes root=UUID=... only when that link exists).
    """
    dev = root / "dev"
    stack.enter_context(mounted("tmpfs", dev, "-t", "tmpfs", "-o", "mode=755,size=16m"))
    for name, major, minor in (
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ):
        _mknod(dev / name, os.makedev(major, minor))
    for block in block_devices:
        _mknod(dev / Path(block).name, os.stat(block).st_rdev, block=True, mode=0o660)
    (dev / "pts").mkdir()
    stack.enter_context(
        mounted("devpts", dev / "pts", "-t", "devpts", "-o", "newinstance,ptmxmode=0666")
    )
    (dev / "ptmx").symlink_to("pts/ptmx")
    (dev / "shm").mkdir()
    for i, name in enumerate(("stdin", "stdout", "stderr")):
        (dev / name).symlink_to(f"/proc/self/fd/{i}")
    (dev / "fd").symlink_to("/proc/self/fd")
    (dev / "disk" / "by-uuid").mkdir(parents=True)
    for uuid, block in by_uuid.items():
        (dev / "disk" / "by-uuid" / uuid).symlink_to(f"../../{Path(block).name}")


def chroot_mounts(
    stack: ExitStack, root: Path, block_devices: Sequence[str], by_uuid: dict[str, str]
) -> None:
    """/proc, /sys and a private /dev in the chroot."""
    stack.enter_context(mounted("proc", root / "proc", "-t", "proc"))
    stack.enter_context(mounted("sysfs", root / "sys", "-t", "sysfs", "-o", "ro"))
    private_dev(stack, root, block_devices, by_uuid)


def in_chroot(root: Path, *argv: str, quiet: bool = False, input_text: str | None = None) -> str:
    """Run a command inside the chroot with a clean environment."""
    return run(
        ["chroot", str(root), *argv], env=dict(CHROOT_ENV), quiet=quiet, input_text=input_text
    )
