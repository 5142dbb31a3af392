"""Reading the guest from e2e tests: commands, state.json, md arrays, links."""

from __future__ import annotations

import json
import ssl
import urllib.request
from typing import Any

from cockpit_lab.vm import Lab

MP = "/var/lib/libvirt/images"
ARRAY = "/dev/md/cockpit-data"
AGENT_NETPLAN = "/etc/netplan/90-cockpit-agent-br-lni.yaml"
CLOUD_INIT_NETPLAN = "/etc/netplan/50-cloud-init.yaml"


def sh(lab: Lab, cmd: str) -> str:
    return lab.ssh(cmd).stdout


def state(lab: Lab) -> dict[str, Any]:
    return json.loads(sh(lab, "cat /var/lib/cockpit-agent/state.json"))  # type: ignore[no-any-return]


def step_record(lab: Lab, name: str, saved: dict[str, Any] | None = None) -> dict[str, Any]:
    """Step `name`'s record in the last run."""
    [record] = [s for s in (saved or state(lab))["runs"][-1]["steps"] if s["name"] == name]
    return record  # type: ignore[no-any-return]


def export(lab: Lab, cmd: str) -> dict[str, str]:
    """KEY=value lines of a command's output (mdadm --export, blkid -o export)."""
    pairs = (line.partition("=") for line in sh(lab, cmd).splitlines() if "=" in line)
    return {k: v for k, _, v in pairs}


def by_serial(lab: Lab) -> dict[str, str]:
    """Guest device path of each drive, by its serial (lab-nvme-N, lab-root)."""
    found = json.loads(sh(lab, "lsblk -J -d -o NAME,SERIAL"))["blockdevices"]
    return {d["serial"]: f"/dev/{d['name']}" for d in found if d.get("serial")}


def members(lab: Lab) -> set[str]:
    detail = export(lab, f"mdadm --detail --export {ARRAY}")
    return {v for k, v in detail.items() if k.startswith("MD_DEVICE_") and k.endswith("_DEV")}


def fs_uuid(lab: Lab, device: str = ARRAY) -> str:
    return sh(lab, f"blkid -p -s UUID -o value {device}").strip()


def links(lab: Lab) -> dict[str, dict[str, Any]]:
    """`ip -j -d addr` in the guest, by link name."""
    return {link["ifname"]: link for link in json.loads(sh(lab, "ip -j -d addr show"))}


def ipv4(link: dict[str, Any]) -> list[str]:
    return [a["local"] for a in link["addr_info"] if a["family"] == "inet"]


def tear_down(wipe: bool) -> str:
    """Shell that takes the array apart as an admin would; `wipe` first erases the
    filesystem's signature (else a new array over the same members shows it again)."""
    return f"""
set -e
members=$(mdadm --detail --export {ARRAY} | sed -n 's/^MD_DEVICE_.*_DEV=//p')
umount {MP}
{f"wipefs -a -q {ARRAY}" if wipe else ""}
mdadm --stop {ARRAY}
for m in $members; do mdadm --zero-superblock "$m"; done
udevadm settle
"""


def cockpit_login_page(port: int) -> str:
    """Cockpit's login page through a forward on 127.0.0.1 (its certificate is self-signed)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    url = f"https://127.0.0.1:{port}/"
    with urllib.request.urlopen(url, timeout=60, context=context) as resp:
        assert resp.status == 200
        return resp.read().decode(errors="replace")  # type: ignore[no-any-return]


def guest_json(lab: Lab, cmd: str) -> Any:
    return json.loads(lab.ssh(cmd).stdout)


def facts(lab: Lab) -> dict[str, Any]:
    return guest_json(lab, "cockpit-agent --json facts")  # type: ignore[no-any-return]


def disks_by_serial(lab: Lab) -> dict[str, dict[str, Any]]:
    return {d["serial"]: d for d in facts(lab)["disks"]}


# The one finding that depends on the emulated CPU: TCG's `-cpu max` offers AMD's SVM, so
# kvm_amd loads and /dev/kvm exists; a CPU model without it makes `no-kvm` a WARNING.
EXPECTED_HERE = {"no-kvm"}


def check(lab: Lab, *args: str) -> tuple[int, dict[str, Any]]:
    # The emulated guest needs more than the 8 s a plugin executor's default allows.
    proc = lab.ssh(
        f"cockpit-agent check --timeout 120 --json {' '.join(args)}", check=False, timeout=600
    )
    return proc.returncode, json.loads(proc.stdout)


def problems(report: dict[str, Any]) -> dict[str, str]:
    return {
        f["code"]: f["severity"]
        for f in report["findings"]
        if f["severity"] != "ok" and f["code"] not in EXPECTED_HERE
    }


def has_kvm(lab: Lab) -> bool:
    return lab.ssh("test -e /dev/kvm", check=False).returncode == 0
