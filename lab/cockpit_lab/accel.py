"""Which accelerator the lab boots with, decided by what actually boots on this host.

Machines differ: one has no usable KVM (QEMU aborts on it), another a /dev/kvm that runs the
firmware but hangs the guest kernel. So a quick probe is only a first guess; the lab boots
with the first candidate and falls back to TCG when the kernel shows no progress (vm.py), and
only a boot that reached SSH is remembered, per host (kernel, CPU model, QEMU version).
COCKPIT_LAB_ACCEL=kvm|tcg forces one (no fallback), COCKPIT_LAB_CPU the CPU model,
COCKPIT_LAB_QEMU the emulator.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cockpit_lab.procs import spawn_tied, stop
from cockpit_lab.recipe import CACHE_DIR

PROVEN_FILE = "accel.json"


def emulator() -> str:
    """The QEMU binary (COCKPIT_LAB_QEMU, else qemu-system-x86_64 on PATH)."""
    return os.environ.get("COCKPIT_LAB_QEMU", "qemu-system-x86_64")


@dataclass(frozen=True)
class Accel:
    """One way to run the guest, and why it was chosen."""

    name: str  # "kvm" or "tcg"
    reason: str
    fallback: bool = True  # may the lab fall back to TCG when it shows no progress?

    def argv(self) -> list[str]:
        """QEMU's accelerator and CPU options."""
        if self.name == "kvm":
            return ["-accel", "kvm", "-cpu", os.environ.get("COCKPIT_LAB_CPU", "host")]
        return ["-accel", "tcg,thread=multi", "-cpu", os.environ.get("COCKPIT_LAB_CPU", "max")]


TCG_FALLBACK = "fell back to TCG"


def candidates(cache: Path = CACHE_DIR) -> list[Accel]:
    """The accelerators to try, in order; the last one is the one the lab settles for."""
    forced = os.environ.get("COCKPIT_LAB_ACCEL")
    if forced:
        if forced not in ("kvm", "tcg"):
            raise ValueError(f"COCKPIT_LAB_ACCEL={forced!r}: expected kvm or tcg")
        return [Accel(forced, f"forced by COCKPIT_LAB_ACCEL={forced}", fallback=False)]
    proven = _proven(cache)
    if proven:
        name, when = proven
        accel = Accel(name, f"a {name.upper()} boot reached SSH on this host on {when}")
        return [accel] if name == "tcg" else [accel, Accel("tcg", TCG_FALLBACK)]
    works, why = probe_kvm()
    if works:
        return [Accel("kvm", why), Accel("tcg", TCG_FALLBACK)]
    return [Accel("tcg", why)]


def host_fingerprint() -> str:
    """What the choice depends on: this kernel, this CPU, this QEMU."""
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line
                break
    try:
        version = subprocess.run(
            [emulator(), "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout.split("\n", 1)[0]
    except (OSError, subprocess.TimeoutExpired):
        version = ""
    text = "\0".join((platform.release(), cpu, version, kvm_device()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def remember(accel: Accel, cache: Path = CACHE_DIR) -> None:
    """Record that `accel` booted a guest to SSH on this host (forced choices are not kept)."""
    if not accel.fallback:
        return
    cache.mkdir(parents=True, exist_ok=True)
    data = {
        "accel": accel.name,
        "host": host_fingerprint(),
        "proven_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    tmp = cache / f".{PROVEN_FILE}.{os.getpid()}"
    tmp.write_text(json.dumps(data) + "\n")
    tmp.rename(cache / PROVEN_FILE)


def _proven(cache: Path) -> tuple[str, str] | None:
    try:
        data = json.loads((cache / PROVEN_FILE).read_text())
    except (OSError, ValueError):
        return None
    if data.get("host") != host_fingerprint() or data.get("accel") not in ("kvm", "tcg"):
        return None
    return str(data["accel"]), str(data.get("proven_at", "?"))


def kvm_device() -> str:
    """The KVM device node (COCKPIT_LAB_KVM_DEVICE, for tests of the fallback)."""
    return os.environ.get("COCKPIT_LAB_KVM_DEVICE", "/dev/kvm")


def probe_kvm() -> tuple[bool, str]:
    """Whether KVM runs the firmware here, with the reason: SeaBIOS writes to the debug port
    0x402 once the CPU runs; a host that offers only PVM fails here (QEMU aborts on the MSR
    setup). It says nothing about the guest kernel, hence the boot-time fallback."""
    device = kvm_device()
    if not os.access(device, os.R_OK | os.W_OK):
        return False, f"no usable {device}"
    with _tempfile() as log, _tempfile() as out:
        argv = [emulator(), "-accel", "kvm", "-cpu", "host", "-m", "64", "-display", "none",
                "-nodefaults", "-no-reboot", "-chardev", f"file,id=dbg,path={log}",
                "-device", "isa-debugcon,iobase=0x402,chardev=dbg"]  # fmt: skip
        with out.open("wb") as fh:
            proc = spawn_tied(argv, fh)
        deadline = time.monotonic() + 5
        ran = False
        while not ran and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
            ran = "SeaBIOS" in log.read_text(errors="replace")
        stop(proc)
        if ran or "SeaBIOS" in log.read_text(errors="replace"):
            return True, f"{device} ran the firmware in a probe"
        rc = proc.returncode
        stderr = out.read_text(errors="replace")
    first = next((line for line in stderr.splitlines() if line.strip()), f"exit {rc}")
    return False, f"QEMU under KVM did not run the firmware ({first.strip()[:120]})"


@contextlib.contextmanager
def _tempfile() -> Iterator[Path]:
    fd, name = tempfile.mkstemp(prefix="cockpit-lab-kvm-")
    os.close(fd)
    try:
        yield Path(name)
    finally:
        os.unlink(name)
