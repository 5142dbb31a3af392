"""A VM created without naming a network lands on the LNI (issue 17), in the lab guest.

The VM is lab/cockpit_lab/tinyvm.py's: the guest's own kernel and busybox in an initramfs,
booted by libvirt with direct kernel boot (no image from outside), created with virt-install
without --network, as Cockpit's "Create VM" does. It must get an address from the LNI's LAN
(QEMU's user network 10.0.3.0/24, whose DHCP server hands out .15 to the LNI and the next
ones to new MACs) and answer HTTP from the LNI side: a forward from the lab host into that
network, added through QMP once the address is known. It runs on the main instance (the stock
image, conftest's stock_lab) and records the lease and the nested boot's time in
runs/<run>/tinyvm.json.
"""

from __future__ import annotations

import ipaddress
import json
import shlex
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from cockpit_lab.recipe import LNI_GUEST_IP, LNI_NET
from cockpit_lab.vm import Lab, free_port

pytestmark = pytest.mark.e2e

TINYVM = (Path(__file__).resolve().parents[2] / "lab" / "cockpit_lab" / "tinyvm.py").read_text()
DIR = "/var/lib/libvirt/boot/tinyvm"
VIRSH = "virsh -q -c qemu:///system"


def tinyvm(lab: Lab, *args: str, timeout: float = 900) -> Any:
    cmd = f"python3 - {shlex.join(args)} <<'TINYVM_EOF'\n{TINYVM}TINYVM_EOF\n"
    return json.loads(lab.ssh(cmd, timeout=timeout).stdout.splitlines()[-1])


def test_a_vm_created_without_a_network_gets_the_lnis_lan_and_answers_from_it(
    lab: Lab,
) -> None:
    lni = lab.ssh(f"{VIRSH} net-dumpxml default").stdout
    assert "<bridge name='br-lni'/>" in lni, lni
    started = time.monotonic()
    try:
        tinyvm(lab, "create", "tinyvm", DIR)
        lease = tinyvm(lab, "lease", DIR, "1800", timeout=1900)
        vm_on_the_lni(lab, lease, round(time.monotonic() - started, 1))
    finally:  # the later modules' tests want the guest's CPU for themselves
        lab.ssh(f"{VIRSH} destroy tinyvm; {VIRSH} undefine tinyvm", check=False)


def vm_on_the_lni(lab: Lab, lease: dict[str, Any], seconds: float) -> None:
    assert lease.get("lease"), lease
    address = ipaddress.ip_address(lease["lease"])
    assert address in ipaddress.ip_network(LNI_NET) and str(address) != LNI_GUEST_IP, lease
    # Defined on the network `default` (live, libvirt shows a bridge-mode network's port as a
    # bridge interface of br-lni).
    defined = lab.ssh(f"{VIRSH} dumpxml --inactive tinyvm").stdout
    assert "<interface type='network'>" in defined, defined
    assert "<source network='default'/>" in defined, defined
    live = lab.ssh(f"{VIRSH} dumpxml tinyvm").stdout
    assert "bridge='br-lni'" in live, live
    port = free_port()
    lab.qmp(
        "human-monitor-command",
        **{"command-line": f"hostfwd_add lni tcp:127.0.0.1:{port}-{address}:80"},
    )
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=60) as answer:
        assert answer.read().decode() == "tinyvm answers\n"
    note = {"lease": str(address), "guest_up_seconds": lease["up_seconds"], "seconds": seconds}
    # Next to the run directory, which is deleted when the module passes: the figures stay.
    (lab.run_dir.parent / f"{lab.run_dir.name}-tinyvm.json").write_text(json.dumps(note) + "\n")
    print(f"tinyvm: {note}")
