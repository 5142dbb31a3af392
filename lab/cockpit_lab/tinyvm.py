"""A tiny VM that proves a VM lands on the LNI (issue 17). Runs INSIDE the lab guest (or on any
Debian 12 host with busybox and libvirt), as root, with the system python3 and the standard
library only, so the lab can send it over SSH:

    python3 - build DIR < tinyvm.py            # DIR/vmlinuz, DIR/initrd.cpio.gz
    python3 - create NAME DIR < tinyvm.py      # build, then virt-install without --network
    python3 - lease DIR < tinyvm.py            # wait for the lease on the console; one JSON line

The initramfs holds the host's own busybox (and the libraries `ldd` names), the NIC drivers of
the running kernel (virtio-net, e1000e, e1000) in `modprobe --show-depends` order, and an /init
that brings eth0 up, asks for an address with udhcpc, prints `TINYVM-LEASE <address>` and
`TINYVM-UP <seconds since boot>` on the serial console, and serves one line on TCP port 80
(busybox httpd). The VM is created the way Cockpit's "Create VM" does it, without naming a
network, so it lands on whatever virt-install picks: libvirt's `default`, on the LNI bridge
with default_vm_network. Its console (ttyS0) goes to DIR/console.log; `lease` reads it.
"""

from __future__ import annotations

import gzip
import json
import lzma
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

# virt-install gives a VM virtio-net when osinfo says the OS supports it, e1000e (q35) or e1000
# otherwise: all three drivers go in, and /init loads every one.
MODULES = ("virtio_pci", "virtio_net", "e1000e", "e1000")
ANSWER = "tinyvm answers"

# Where the serial console writes: a file libvirt labels for QEMU (under its own tree).
CONSOLE = "console.log"

NET_SCRIPT = f"""#!/bin/busybox sh
# tinyvm-net IFACE: DHCP on IFACE until a lease, then the one-line answer on port 80.
export PATH=/bin
[ -e /bin/udhcpc ] || /bin/busybox --install -s /bin
iface=${{1:-eth0}}
ip link set lo up
ip link set "$iface" up
until udhcpc -i "$iface" -s /tinyvm-lease -q -n -t 5 -T 2; do :; done
mkdir -p /www
echo "{ANSWER}" > /www/index.html
httpd -p 80 -h /www
"""

# udhcpc calls this with the lease in its environment ($ip, $mask as a prefix length, $router).
LEASE_SCRIPT = """#!/bin/busybox sh
case "$1" in
bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    [ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface"
    echo "TINYVM-LEASE $ip"
    echo "TINYVM-UP $(cut -d' ' -f1 /proc/uptime 2>/dev/null)"
    ;;
esac
exit 0
"""

INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t devtmpfs dev /dev
exec >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sys /sys
for module in /modules/*.ko; do [ -e "$module" ] && insmod "$module"; done
echo "TINYVM-INIT $(cut -d' ' -f1 /proc/uptime)"
/tinyvm-net eth0
while :; do sleep 3600; done
"""


def _newc(name: str, mode: int, data: bytes = b"") -> bytes:
    """One entry of a cpio archive in the kernel's `newc` format."""
    path = name.encode() + b"\0"
    fields = [0, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(path), 0]
    header = b"070701" + b"".join(f"{f:08x}".encode() for f in fields)
    pad = (4 - (len(header) + len(path)) % 4) % 4
    body = header + path + b"\0" * pad + data
    return body + b"\0" * ((4 - len(data) % 4) % 4)


def cpio(files: dict[str, bytes | str], dirs: list[str], symlinks: dict[str, str]) -> bytes:
    """A newc archive: directories, files (str content = executable script), symlinks."""
    out = [_newc(d, stat.S_IFDIR | 0o755) for d in dirs]
    for name, content in files.items():
        data = content.encode() if isinstance(content, str) else content
        out.append(_newc(name, stat.S_IFREG | 0o755, data))
    out += [_newc(name, stat.S_IFLNK | 0o777, target.encode()) for name, target in symlinks.items()]
    out.append(_newc("TRAILER!!!", 0))
    return b"".join(out)


def libraries(binary: str) -> list[str]:
    """The shared libraries `ldd` says `binary` loads (absolute paths)."""
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=False).stdout
    return re.findall(r"(/\S+)\s+\(0x", out)


def module_files(release: str, names: tuple[str, ...] = MODULES) -> list[str]:
    """The .ko files to insmod, dependencies first (built-in or absent ones add none)."""
    found: list[str] = []
    for name in names:
        out = subprocess.run(
            ["modprobe", "--show-depends", "--set-version", release, name],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        for line in out.splitlines():
            words = line.split()
            if words[:1] == ["insmod"] and words[1] not in found:
                found.append(words[1])
    return found


def _module_bytes(path: str) -> bytes:
    raw = Path(path).read_bytes()
    if path.endswith(".xz"):
        return lzma.decompress(raw)
    if path.endswith(".gz"):
        return gzip.decompress(raw)
    if path.endswith(".zst"):
        raise SystemExit(f"{path}: zstd-compressed module; busybox insmod cannot load it")
    return raw


def initramfs(busybox: str = "/bin/busybox", modules: list[str] | None = None) -> bytes:
    """The gzip'd initramfs: busybox and its libraries, the modules, /init and its scripts."""
    files: dict[str, bytes | str] = {
        "init": INIT,
        "tinyvm-net": NET_SCRIPT,
        "tinyvm-lease": LEASE_SCRIPT,
        "bin/busybox": Path(busybox).read_bytes(),
    }
    dirs = {"bin", "dev", "proc", "sys", "modules", "www"}
    for lib in libraries(busybox):
        name = lib.lstrip("/")
        files[name] = Path(lib).read_bytes()
        parts = Path(name).parents
        dirs.update(str(p) for p in parts if str(p) != ".")
    for i, module in enumerate(modules or []):
        files[f"modules/{i:02d}-{Path(module).name.split('.ko')[0]}.ko"] = _module_bytes(module)
    return gzip.compress(cpio(files, sorted(dirs), {"bin/sh": "busybox"}), mtime=0)


def build(out: Path) -> tuple[Path, Path]:
    """DIR/vmlinuz (a readable copy of the running kernel) and DIR/initrd.cpio.gz."""
    release = os.uname().release
    out.mkdir(parents=True, exist_ok=True)
    kernel = out / "vmlinuz"
    shutil.copyfile(f"/boot/vmlinuz-{release}", kernel)
    initrd = out / "initrd.cpio.gz"
    initrd.write_bytes(initramfs(modules=module_files(release)))
    for path in (kernel, initrd):
        path.chmod(0o644)
    return kernel, initrd


def virt_install_argv(name: str, out: Path) -> list[str]:
    """virt-install as Cockpit runs it: no --network, so virt-install picks the network."""
    kernel, initrd = out / "vmlinuz", out / "initrd.cpio.gz"
    boot = f"kernel={kernel},initrd={initrd},kernel_args=console=ttyS0 panic=-1 quiet"
    return [
        "virt-install", "--connect", "qemu:///system", "--name", name,
        "--memory", "128", "--vcpus", "1", "--osinfo", "detect=on,require=off",
        "--disk", "none", "--import",  # no installer: the kernel and initramfs are the VM
        "--boot", boot, "--graphics", "none", "--serial", f"file,path={out / CONSOLE}",
        "--noautoconsole",
    ]  # fmt: skip


def wait_lease(out: Path, timeout: float) -> dict[str, object]:
    """The lease and the boot time from the console log, or what it says after `timeout`."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        log = out / CONSOLE
        text = log.read_text(errors="replace") if log.exists() else ""
        lease = re.search(r"^TINYVM-LEASE (\S+)", text, re.M)
        up = re.search(r"^TINYVM-UP (\S+)", text, re.M)
        if lease and up:
            return {"lease": lease.group(1), "up_seconds": float(up.group(1))}
        time.sleep(1)
    return {"lease": None, "console_tail": text[-2000:]}


def main(argv: list[str]) -> int:
    """build DIR | create NAME DIR | lease DIR [TIMEOUT]"""
    if argv[:1] == ["build"] and len(argv) == 2:
        print(json.dumps([str(p) for p in build(Path(argv[1]))]))
    elif argv[:1] == ["create"] and len(argv) == 3:
        out = Path(argv[2])
        build(out)
        started = time.monotonic()
        subprocess.run(virt_install_argv(argv[1], out), check=True)
        print(json.dumps({"created_in_seconds": round(time.monotonic() - started, 1)}))
    elif argv[:1] == ["lease"] and len(argv) in (2, 3):
        timeout = float(argv[2]) if len(argv) == 3 else 600.0
        print(json.dumps(wait_lease(Path(argv[1]), timeout)))
    else:
        print(main.__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
