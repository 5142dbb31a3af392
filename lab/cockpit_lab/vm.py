"""The lab VM: an emulated Outposts server in QEMU, driven from pytest or `make demo`.

One Lab is one instance: a qcow2 overlay on the cached base image (the root EBS volume, on
NVMe as on Nitro), raw files as NVMe instance-store drives, NIC 0 = management and NIC 1 =
the LNI, each on its own QEMU user network with forwards bound to 127.0.0.1 only. Everything
it makes lives in its run directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cockpit_lab import accel as accels
from cockpit_lab.accel import Accel
from cockpit_lab.chroot import log
from cockpit_lab.procs import PID_FILE, reap_stale, record_driver, spawn_tied, stop
from cockpit_lab.recipe import (
    CACHE_DIR,
    LNI_GUEST_IP,
    LNI_MAC,
    LNI_NET,
    MGMT_MAC,
    MGMT_NET,
    REPO_DIR,
)
from cockpit_lab.seed import LAB_CONFIG, imds_tree, write_seed

RUNS_DIR = Path(os.environ.get("COCKPIT_LAB_RUNS", REPO_DIR / "runs"))
KEY_PATH = CACHE_DIR / "ssh" / "id_ed25519"
AGENT_UNIT = "cockpit-agent.service"
# The guest kernel's first line on the serial console (GRUB's own lines have no timestamp).
KERNEL_LINE = re.compile(rb"^\[\s*\d+\.\d+\] ", re.MULTILINE)
# How long after QEMU starts the kernel must have printed: under KVM a hang is told from a
# slow boot this way (seconds natively); under TCG, the last resort, a boot that never gets
# there fails early instead of waiting for SSH.
KERNEL_BOUND = {"kvm": 60.0, "tcg": 300.0}


class LabError(RuntimeError):
    """The lab could not do what was asked; the message says where to look."""


@dataclass
class LabSpec:
    """What one lab instance looks like."""

    nvme_count: int = 3
    nvme_size: str = "256M"
    root_disk_size: str | None = None  # grow the root volume beyond the image's 4 GiB
    memory_mib: int = 2048
    cpus: int = 2
    config: str = LAB_CONFIG
    extra_config: str = ""
    # No way out of the QEMU user networks (restrict=on): no mirror, no DNS; forwards still work.
    offline: bool = False
    # False: the LNI's cable is unplugged from QEMU's start (Lab.set_link plugs it).
    lni_cable: bool = True


@dataclass
class Ports:
    """Host ports (127.0.0.1) forwarded into the guest."""

    mgmt_ssh: int
    mgmt_cockpit: int
    lni_ssh: int
    lni_cockpit: int


@dataclass
class Timings:
    """Measured durations of this lab's boots, in seconds."""

    boots: list[dict[str, float]] = field(default_factory=list)


def ssh_key() -> Path:
    """The lab's SSH key (generated once, kept beside the image cache)."""
    KEY_PATH.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with (KEY_PATH.parent / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not KEY_PATH.exists():
            subprocess.run(
                [
                    "ssh-keygen",
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    "cockpit-lab",
                    "-f",
                    str(KEY_PATH),
                ],
                check=True,
            )
    return KEY_PATH


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def new_run_dir(label: str) -> Path:
    """A fresh run directory under runs/ (kept when a test fails)."""
    RUNS_DIR.mkdir(parents=True, exist_ok=True)
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in label)[:60]
    path = RUNS_DIR / f"{time.strftime('%Y%m%d-%H%M%S')}-{safe}-{secrets.token_hex(2)}"
    path.mkdir()
    return path


def _size_bytes(size: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(size[:-1]) * units[size[-1]] if size[-1] in units else int(size)


class Lab:
    """One emulated Outposts server. Call boot(), then ssh(); close() at the end."""

    def __init__(
        self,
        run_dir: Path,
        image: Path,
        spec: LabSpec | None = None,
        say: Callable[[str], None] = log,
    ) -> None:
        self.run_dir = run_dir
        self.say = say  # progress for a person (stderr by default)
        self.image = image
        self.spec = spec or LabSpec()
        self.key = ssh_key()
        self.instance_id = "i-0lab" + secrets.token_hex(6)
        self.ports = Ports(free_port(), free_port(), free_port(), free_port())
        self.timings = Timings()
        self.overlay = run_dir / "root.qcow2"
        self.serial_log = run_dir / "serial.log"
        self.seed = run_dir / "seed.tar"
        self._proc: subprocess.Popen[bytes] | None = None
        self._boot_started = 0.0
        self._serial_offset = 0  # where this boot's serial output starts (the log is appended)
        self.accel: Accel | None = None  # what the guest runs under, once booted

    # --- drives ---------------------------------------------------------------------------

    def nvme_path(self, index: int) -> Path:
        """The raw file behind instance-store drive `index` (serial lab-nvme-<index>)."""
        return self.run_dir / f"nvme{index}.raw"

    def _prepare_disks(self) -> None:
        if not self.overlay.exists():
            argv = [
                "qemu-img",
                "create",
                "-q",
                "-f",
                "qcow2",
                "-F",
                "qcow2",
                "-b",
                str(self.image),
                str(self.overlay),
            ]
            if self.spec.root_disk_size:
                argv.append(self.spec.root_disk_size)
            subprocess.run(argv, check=True)
        for i in range(self.spec.nvme_count):
            path = self.nvme_path(i)
            if not path.exists():
                with path.open("wb") as fh:
                    fh.truncate(_size_bytes(self.spec.nvme_size))

    def wipe_nvme(self) -> None:
        """What a stop/start does to instance store: the guest stops, every drive comes back
        blank, and the instance boots again (same instance id, same root volume)."""
        was_running = self.running
        if was_running:
            self.shutdown()
        for i in range(self.spec.nvme_count):
            path = self.nvme_path(i)
            path.unlink(missing_ok=True)
        self._prepare_disks()
        if was_running:
            self.boot()

    def write_nvme(self, index: int, data: bytes, offset: int = 0) -> None:
        """Write raw bytes into drive `index` while the guest is down (hostile drives)."""
        self._require_stopped("write_nvme")
        self._prepare_disks()
        with self.nvme_path(index).open("r+b") as fh:
            fh.seek(offset)
            fh.write(data)

    def mkfs_nvme(self, index: int, fstype: str = "ext4") -> None:
        """Put a filesystem on drive `index` while the guest is down (a drive in use)."""
        self._require_stopped("mkfs_nvme")
        self._prepare_disks()
        force = "-f" if fstype == "xfs" else "-F"
        subprocess.run([f"mkfs.{fstype}", "-q", force, str(self.nvme_path(index))], check=True)

    def read_nvme(self, index: int, offset: int = 0, length: int = 4096) -> bytes:
        """Bytes of drive `index` as the host sees them."""
        with self.nvme_path(index).open("rb") as fh:
            fh.seek(offset)
            return fh.read(length)

    def _require_stopped(self, what: str) -> None:
        if self.running:
            raise LabError(f"{what} needs the guest stopped (call shutdown() first)")

    # --- lifecycle ------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the QEMU process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def qemu_argv(self) -> list[str]:
        """The QEMU command line of this lab."""
        p = self.ports
        argv = [
            accels.emulator(),
            "-name",
            "cockpit-lab",
            "-machine",
            "q35",
            *(self.accel or Accel("tcg", "")).argv(),
            "-smp",
            str(self.spec.cpus),
            "-m",
            str(self.spec.memory_mib),
            "-display",
            "none",
            "-vga",
            "none",
            "-nodefaults",
            "-chardev",
            f"file,id=serial0,path={self.serial_log},append=on",
            "-serial",
            "chardev:serial0",
            "-qmp",
            f"unix:{self.run_dir / 'qmp.sock'},server=on,wait=off",
            "-pidfile",
            str(self.run_dir / PID_FILE),
            "-fw_cfg",
            f"name=opt/cockpit-lab/seed,file={self.seed}",
            *self.smbios_argv(),
            "-object",
            "rng-random,filename=/dev/urandom,id=rng0",
            "-device",
            "virtio-rng-pci,rng=rng0",
            # The root volume: NVMe, as an EBS root volume is on Nitro; GRUB boots from it.
            "-drive",
            f"file={self.overlay},if=none,id=root,format=qcow2,discard=unmap",
            "-device",
            "nvme,serial=lab-root,drive=root,bootindex=0",
        ]
        for i in range(self.spec.nvme_count):
            argv += [
                "-drive",
                f"file={self.nvme_path(i)},if=none,id=nvme{i},format=raw",
                "-device",
                f"nvme,serial=lab-nvme-{i},drive=nvme{i}",
            ]
        restrict = "restrict=on," if self.spec.offline else ""
        argv += [
            "-netdev",
            f"user,id=mgmt,net={MGMT_NET},{restrict}"
            f"hostfwd=tcp:127.0.0.1:{p.mgmt_ssh}-:22,"
            f"hostfwd=tcp:127.0.0.1:{p.mgmt_cockpit}-:9090",
            "-device",
            f"virtio-net-pci,netdev=mgmt,mac={MGMT_MAC}",
            "-netdev",
            f"user,id=lni,net={LNI_NET},{restrict}"
            f"hostfwd=tcp:127.0.0.1:{p.lni_ssh}-{LNI_GUEST_IP}:22,"
            f"hostfwd=tcp:127.0.0.1:{p.lni_cockpit}-{LNI_GUEST_IP}:9090",
            "-device",
            f"virtio-net-pci,netdev=lni,mac={LNI_MAC}",
        ]
        return argv

    def smbios_argv(self) -> list[str]:
        """The firmware identity of an EC2 Nitro instance, which cloud-init's ds-identify and
        the agent read from DMI: vendor "Amazon EC2" everywhere, the instance type as the
        product, and a system UUID and serial number that both start with "ec2"."""
        digest = hashlib.sha256(self.instance_id.encode()).hexdigest()
        uuid = f"ec2{digest[:5]}-{digest[5:9]}-{digest[9:13]}-{digest[13:17]}-{digest[17:29]}"
        kind = imds_tree(self.instance_id)["latest"]["meta-data"]["instance-type"]
        vendor = "Amazon EC2"
        return [
            "-smbios", f"type=0,vendor={vendor},version=1.0",
            "-smbios", f"type=1,manufacturer={vendor},product={kind},serial={uuid},uuid={uuid}",
            "-smbios", f"type=2,manufacturer={vendor}",
            "-smbios", f"type=3,manufacturer={vendor},asset={vendor}",
        ]  # fmt: skip

    def boot(self, timeout: float = 600) -> None:
        """Start the guest (first boot of a fresh instance, or after shutdown) and wait for SSH.

        The first boot of this Lab tries each candidate accelerator (accel.py) in turn: one
        whose QEMU exits, or whose kernel prints nothing within KERNEL_BOUND, is killed and
        the next one booted. The choice is remembered only once SSH answered."""
        if self.running:
            raise LabError("the guest is already running")
        reap_stale(RUNS_DIR, self.say)
        self._prepare_disks()
        if not self.seed.exists():
            write_seed(
                self.seed,
                instance_id=self.instance_id,
                public_key=self.key.with_suffix(".pub").read_text(),
                config=self.spec.config + self.spec.extra_config,
            )
        record_driver(self.run_dir)
        if self.accel is not None:  # a later boot of this instance: what worked before
            self._start_qemu()
            self._wait_kernel()
            self.wait_ssh(timeout)
            return
        tried = accels.candidates()
        for n, candidate in enumerate(tried):
            self.accel = candidate
            self.say(f"booting under {candidate.name.upper()}: {candidate.reason}")
            self._start_qemu()
            try:
                self._wait_kernel()
            except LabError as exc:
                if not candidate.fallback or n == len(tried) - 1:
                    raise
                self.say(f"{exc}; killed it")
                if self._proc is not None:
                    stop(self._proc)
                self._proc = None
                self.timings.boots.pop()
                reason = f"{str(exc).split(';')[0]}; {accels.TCG_FALLBACK}"
                tried[n + 1] = Accel(tried[n + 1].name, reason)
                continue
            break
        self.wait_ssh(timeout)
        accels.remember(candidate)

    def _start_qemu(self) -> None:
        """QEMU up with its forwards bound; tied to this process (procs.py)."""
        for attempt in range(3):
            argv = self.qemu_argv()
            (self.run_dir / "qemu.cmdline").write_text(shlex.join(argv) + "\n")
            exists = self.serial_log.exists()
            self._serial_offset = self.serial_log.stat().st_size if exists else 0
            with (self.run_dir / "qemu.log").open("ab") as qemu_log:
                self._boot_started = time.monotonic()
                self.timings.boots.append({})
                self._proc = spawn_tied(argv, qemu_log)
            # A forward's port taken between our probe and QEMU's bind (another lab starting
            # at the same moment) makes QEMU exit at once: retry with fresh ports.
            time.sleep(1)
            if self.running and not self.spec.lni_cable:
                self.set_link("lni", up=False)
            if self.running or "host forwarding" not in self._qemu_log_tail():
                return
            self.timings.boots.pop()
            with (self.run_dir / "qemu.log").open("a") as qemu_log:
                qemu_log.write(f"lab: forwards not bound (attempt {attempt + 1}); new ports\n")
            self.ports = Ports(free_port(), free_port(), free_port(), free_port())

    def _wait_kernel(self) -> None:
        """Wait until the guest kernel prints on the serial console (past the bootloader)."""
        assert self.accel is not None
        name = self.accel.name
        bound = float(os.environ.get("COCKPIT_LAB_KERNEL_BOUND", KERNEL_BOUND[name]))
        while True:
            waited = time.monotonic() - self._boot_started
            if not self.running:
                tail = self._qemu_log_tail().strip().splitlines()
                last = tail[-1][:160] if tail else "no output"
                raise LabError(f"QEMU under {name.upper()} exited at once: {last}")
            with contextlib.suppress(OSError), self.serial_log.open("rb") as fh:
                fh.seek(self._serial_offset)
                if KERNEL_LINE.search(fh.read()):
                    self._record("kernel", waited)
                    return
            if waited > bound:
                raise LabError(
                    f"no kernel output within {bound:.0f} s under {name.upper()}; "
                    f"serial console: {self.serial_log}"
                )
            time.sleep(0.5)

    def _qemu_log_tail(self) -> str:
        with contextlib.suppress(OSError), (self.run_dir / "qemu.log").open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 4096))
            return fh.read().decode(errors="replace")
        return ""

    def wait_ssh(self, timeout: float = 600) -> None:
        """Wait until the guest answers on SSH (management path)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise LabError(
                    f"QEMU exited; see {self.run_dir / 'qemu.log'} and {self.serial_log}"
                )
            if self.ssh("true", timeout=20, check=False).returncode == 0:
                self._record("ssh", time.monotonic() - self._boot_started)
                return
            time.sleep(2)
        raise LabError(f"no SSH after {timeout:.0f} s; serial console: {self.serial_log}")

    def ssh_argv(self, port: int | None = None) -> list[str]:
        """The ssh command (without the remote command) that logs in as root."""
        return [
            "ssh",
            "-i",
            str(self.key),
            "-p",
            str(port or self.ports.mgmt_ssh),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "ServerAliveInterval=5",
            "-o",
            "ServerAliveCountMax=6",
            "root@127.0.0.1",
        ]

    def ssh_command(self, port: int | None = None) -> str:
        """A one-line SSH command for a person: no prompt (the lab's key; the port changes
        every run, so the host key is neither checked nor recorded)."""
        return (
            f"ssh -i {self.key} -p {port or self.ports.mgmt_ssh} -o StrictHostKeyChecking=no "
            "-o UserKnownHostsFile=/dev/null root@127.0.0.1"
        )

    def ssh(
        self, cmd: str, *, timeout: float = 300, check: bool = True, port: int | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run `cmd` (a shell command line) in the guest as root; return its result."""
        try:
            proc = subprocess.run(
                [*self.ssh_argv(port), cmd],
                capture_output=True,
                text=True,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            if check:
                raise LabError(f"ssh {cmd!r} timed out after {timeout} s") from exc
            return subprocess.CompletedProcess(exc.cmd, 255, "", f"timed out after {timeout} s")
        if check and proc.returncode != 0:
            raise LabError(f"ssh {cmd!r} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
        return proc

    def qmp(self, command: str, **arguments: object) -> object:
        """Run one QMP command on this guest's QEMU and return its answer."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(30)
            sock.connect(str(self.run_dir / "qmp.sock"))
            stream = sock.makefile("rw")
            stream.readline()  # the greeting
            answer: dict[str, object] = {}
            requests: list[dict[str, object]] = [
                {"execute": "qmp_capabilities"},
                {"execute": command, "arguments": arguments},
            ]
            for request in requests:
                stream.write(json.dumps(request) + "\n")
                stream.flush()
                while True:  # events may come before the answer
                    answer = json.loads(stream.readline())
                    if "return" in answer or "error" in answer:
                        break
                if "error" in answer:
                    raise LabError(f"QMP {request['execute']}: {answer['error']}")
            return answer["return"]

    def set_link(self, nic: str, up: bool) -> None:
        """Plug or unplug the cable of NIC "mgmt" or "lni" (the guest sees its carrier go)."""
        self.qmp("set_link", name=nic, up=up)

    def boot_id(self) -> str:
        """The guest kernel's boot id (changes at every boot)."""
        return self.ssh("cat /proc/sys/kernel/random/boot_id").stdout.strip()

    def wait_agent(self, timeout: float = 900) -> dict[str, str]:
        """Wait until cockpit-agent.service has run to its end in this boot; return the unit's
        properties (Result, ExecMainStatus, ...)."""
        props = (
            "LoadState",
            "ActiveState",
            "SubState",
            "Result",
            "ExecMainStatus",
            "ExecMainStartTimestampMonotonic",
            "ExecMainExitTimestampMonotonic",
        )
        cmd = f"cat /proc/uptime; systemctl show {AGENT_UNIT} " + " ".join(f"-p {p}" for p in props)
        deadline = time.monotonic() + timeout
        values: dict[str, str] = {}
        while time.monotonic() < deadline:
            proc = self.ssh(cmd, check=False, timeout=60)
            if proc.returncode == 0:
                lines = proc.stdout.splitlines()
                uptime = float(lines[0].split()[0])
                values = dict(line.split("=", 1) for line in lines[1:] if "=" in line)
                start = int(values.get("ExecMainStartTimestampMonotonic") or 0)
                end = int(values.get("ExecMainExitTimestampMonotonic") or 0)
                if end and values.get("ActiveState") != "activating":
                    host_uptime = time.monotonic() - self._boot_started
                    self._record("agent_start", host_uptime - (uptime - start / 1e6))
                    self._record("agent_end", host_uptime - (uptime - end / 1e6))
                    return values
            time.sleep(3)
        raise LabError(
            f"{AGENT_UNIT} did not finish within {timeout:.0f} s (last: {values}); "
            f"serial console: {self.serial_log}"
        )

    def reboot(self, timeout: float = 600) -> None:
        """Reboot from inside the guest (its own GRUB, kernel and initramfs) and wait for SSH."""
        before = self.boot_id()
        self.ssh("systemctl reboot", check=False, timeout=30)
        self._boot_started = time.monotonic()
        self.timings.boots.append({})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise LabError(f"QEMU exited during the reboot; serial: {self.serial_log}")
            proc = self.ssh("cat /proc/sys/kernel/random/boot_id", check=False, timeout=15)
            if proc.returncode == 0 and proc.stdout.strip() != before:
                self._record("ssh", time.monotonic() - self._boot_started)
                return
            time.sleep(1)
        raise LabError(f"the guest did not come back after reboot; serial: {self.serial_log}")

    def shutdown(self, timeout: float = 180) -> None:
        """Power the guest off cleanly (as a stop would), waiting up to `timeout` s for it; a
        guest that does not take the request over SSH is stopped at once (SIGTERM, then
        SIGKILL), so a hung guest costs seconds, not minutes."""
        if not self.running:
            return
        assert self._proc is not None
        try:
            asked = self.ssh("systemctl --no-block poweroff", check=False, timeout=20)
            if asked.returncode == 0:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._proc.wait(timeout)
            else:
                self.say("the guest did not take the poweroff over SSH; stopping QEMU")
        finally:
            stop(self._proc)
            self._proc = None

    def close(self) -> None:
        """Stop the guest if it runs: a clean poweroff bounded to 60 s, else QEMU is stopped."""
        self.shutdown(timeout=60)

    def _record(self, name: str, seconds: float) -> None:
        if not self.timings.boots:
            self.timings.boots.append({})
        self.timings.boots[-1][name] = round(seconds, 1)

    # --- evidence -------------------------------------------------------------------------

    COLLECT: dict[str, str] = {
        "state.json": "cat /var/lib/cockpit-agent/state.json",
        "journal-cockpit-agent.txt": "journalctl --no-pager -o short-precise "
        "-u cockpit-agent.service -u cockpit-agent-check.service",
        "journal-boot.txt": "journalctl --no-pager -o short-precise -b",
        "boots.txt": "journalctl --no-pager --list-boots",
        "units.txt": "systemctl --no-pager --all list-units 'cockpit*'; "
        "systemctl --no-pager --failed",
        "mdadm.txt": "cat /proc/mdstat; mdadm --detail --scan --verbose; "
        "for md in /dev/md?*; do [ -b $md ] && mdadm --detail $md; done",
        "findmnt.json": "findmnt -J",
        "lsblk.json": "lsblk -J -O",
        "ip-addr.json": "ip -j addr",
        "ip-route.json": "ip -j route",
        "virsh-net-list.txt": "virsh net-list --all",
        "facts.json": "cockpit-agent --json facts",
        "status.txt": "cockpit-agent status",
    }

    def collect(self, label: str = "collect") -> Path:
        """Save the guest's evidence into run_dir/<label>/ and return that directory. The
        serial console (serial.log) is already in the run directory."""
        dest = self.run_dir / label
        dest.mkdir(parents=True, exist_ok=True)
        (dest / "timings.json").write_text(json.dumps(self.timings.boots, indent=2) + "\n")
        if not self.running:
            (dest / "README").write_text("the guest was not running; see ../serial.log\n")
            return dest
        if self.ssh("true", check=False, timeout=30).returncode != 0:
            (dest / "README").write_text("the guest did not answer on SSH; see ../serial.log\n")
            return dest
        for name, cmd in self.COLLECT.items():
            proc = self.ssh(cmd, check=False, timeout=120)
            text = proc.stdout
            if proc.returncode != 0:
                text += f"\n# exit {proc.returncode}\n{proc.stderr}"
            (dest / name).write_text(text)
        return dest

    def remove(self) -> None:
        """Delete the run directory (after a passing test)."""
        self.close()
        shutil.rmtree(self.run_dir, ignore_errors=True)
