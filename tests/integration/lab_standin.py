"""A stand-in for qemu-system-x86_64, and a driver that boots it through the lab's own code.

`lab_standin.py qemu ARGS...` behaves, as far as the lab driver can tell, like QEMU on the
machines this project meets. The KVM probe sees SeaBIOS run. Under KVM the guest stops after
GRUB's lines (STANDIN_KVM=hang, a /dev/kvm that runs firmware but hangs a kernel), or QEMU
aborts (STANDIN_KVM=abort, PVM-only hosts). Under TCG it prints a kernel line and, with
STANDIN_SSH=listen, accepts TCP on the forwarded SSH port. STANDIN_SIGTERM=ignore makes it
ignore SIGTERM, like a QEMU that will not stop. It writes its -pidfile as QEMU does.

`lab_standin.py boot RUN_DIR` boots a Lab whose SSH check is "the forwarded port accepts"
and prints what the lab chose as JSON. Both run as separate processes, so COCKPIT_LAB_*
variables in their environment are read as the lab reads them.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _options(argv: list[str], name: str) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == name]


def _chardevs(argv: list[str]) -> dict[str, str]:
    devs = {}
    for spec in _options(argv, "-chardev"):
        fields = dict(kv.split("=", 1) for kv in spec.split(",")[1:] if "=" in kv)
        devs[fields["id"]] = fields.get("path", "")
    return devs


def qemu(argv: list[str]) -> int:
    """Play QEMU."""
    if argv == ["--version"]:
        print("QEMU emulator version 7.2.0 (cockpit-lab stand-in)")
        return 0
    if os.environ.get("STANDIN_SIGTERM") == "ignore":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for pidfile in _options(argv, "-pidfile"):
        Path(pidfile).write_text(f"{os.getpid()}\n")
    accel = _options(argv, "-accel")[0].split(",")[0]
    kvm_mode = os.environ.get("STANDIN_KVM", "hang")
    devs = _chardevs(argv)
    if accel == "kvm" and kvm_mode == "abort":
        print("qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69", file=sys.stderr)
        return 134
    if "dbg" in devs:  # the lab's KVM probe: the firmware runs
        Path(devs["dbg"]).write_text("SeaBIOS (version stand-in)\n")
        time.sleep(3600)
        return 0
    serial = Path(devs["serial0"])

    def console(line: str) -> None:
        with serial.open("a") as fh:
            fh.write(line + "\n")

    console("SeaBIOS (version stand-in)")
    console("Loading Linux 6.1.0-stand-in ...")
    console("Loading initial ramdisk ...")
    if accel == "kvm":
        time.sleep(3600)  # the kernel never prints
        return 0
    console("[    0.000000] Linux version 6.1.0-stand-in")
    if os.environ.get("STANDIN_SSH") == "listen":
        forwards = " ".join(_options(argv, "-netdev"))
        port = int(re.findall(r"hostfwd=tcp:127\.0\.0\.1:(\d+)-:22", forwards)[0])
        server = socket.create_server(("127.0.0.1", port))
        held = []
        while True:
            conn, _ = server.accept()
            held.append(conn)
    time.sleep(3600)
    return 0


def boot(run_dir: Path) -> int:
    """Boot a stand-in lab through Lab.boot and print what it chose."""
    sys.path.insert(0, str(ROOT / "lab"))
    from cockpit_lab.vm import Lab, LabSpec  # noqa: PLC0415 (lab/ is on the path only now)

    class PortLab(Lab):
        def ssh(
            self, cmd: str, *, timeout: float = 300, check: bool = True, port: int | None = None
        ) -> subprocess.CompletedProcess[str]:
            try:
                socket.create_connection(("127.0.0.1", port or self.ports.mgmt_ssh), 1).close()
            except OSError:
                return subprocess.CompletedProcess([cmd], 255, "", "refused")
            return subprocess.CompletedProcess([cmd], 0, "", "")

    lab = PortLab(run_dir, Path(os.environ["STANDIN_IMAGE"]), LabSpec(nvme_count=0))
    (run_dir / "seed.tar").write_bytes(b"")  # the stand-in reads no seed
    result: dict[str, object] = {}
    try:
        lab.boot(timeout=float(os.environ.get("STANDIN_SSH_TIMEOUT", "20")))
        result["booted"] = True
    except Exception as exc:
        result["error"] = str(exc)
    result["accel"] = lab.accel.name if lab.accel else None
    result["reason"] = lab.accel.reason if lab.accel else None
    result["qemu_pid"] = lab._proc.pid if lab._proc else None
    print(json.dumps(result), flush=True)
    if os.environ.get("STANDIN_STAY") == "1":
        time.sleep(3600)
    lab.shutdown(timeout=1)
    return 0


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    sys.exit(qemu(args) if mode == "qemu" else boot(Path(args[0])))
