"""The virt step in the lab: Cockpit and the VM stack installed by the agent at first boot.

The bare image has the packages only in its apt cache (as an AMI whose bake kept them), so the
agent's install works without a mirror. A headless Chromium logs in to Cockpit through the
management forward and opens the Machines page's networks, which list the LNI's network; the
screenshot is kept next to the run directory (runs/<run>-cockpit-machines-networks.png).
"""

from __future__ import annotations

import ssl
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from cockpit_lab.vm import Lab, LabSpec
from tests.e2e.guest import state, step_record

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
# Storage and root growth have scenarios of their own; this one pays for the install.
VIRT_AND_LNI = "\n[rootfs]\nenabled = false\n"
USER, PASSWORD = "labadmin", "lab-cockpit-2026"


@pytest.fixture(scope="module")
def lab(lab_factory: Any) -> Lab:
    """A lab whose agent installed the virtualisation stack at first boot."""
    lab: Lab = lab_factory(LabSpec(extra_config=VIRT_AND_LNI))
    lab.boot()
    lab.wait_agent(timeout=1800)
    return lab


def test_first_boot_installs_and_enables_the_stack(lab: Lab) -> None:
    virt = step_record(lab, "virt")
    assert virt["status"] == "changed", virt
    assert any(a.startswith("install packages: cockpit ") for a in virt["actions"]), virt
    for unit in ("cockpit.socket", "libvirtd.service"):
        props = lab.ssh(f"systemctl show -p ActiveState -p UnitFileState {unit}").stdout
        assert "ActiveState=active" in props and "UnitFileState=enabled" in props, props
    installed = lab.ssh(
        "dpkg-query -W -f '${Package} ${db:Status-Status}\\n' cockpit cockpit-machines "
        "libvirt-daemon-system libvirt-dbus qemu-system-x86"
    ).stdout
    assert installed.count(" installed") == 5, installed
    assert lab.ssh("cat /etc/cockpit/disallowed-users").stdout.split() == ["root"]
    assert "qemu:///system" in lab.ssh("virsh -c qemu:///system uri").stdout
    # No idle exit (ADR 0009): an idle libvirtd would read as a stopped one.
    argv = lab.ssh("tr '\\0' ' ' < /proc/$(systemctl show -p MainPID --value libvirtd)/cmdline")
    assert argv.stdout.startswith("/usr/sbin/libvirtd") and "--timeout" not in argv.stdout


def test_cockpit_login_page_answers_through_the_forward(lab: Lab) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    url = f"https://127.0.0.1:{lab.ports.mgmt_cockpit}/"
    with urllib.request.urlopen(url, timeout=60, context=context) as resp:
        body = resp.read().decode(errors="replace")
        assert resp.status == 200
    assert "login" in body.lower() and "cockpit" in body.lower()


def test_the_lni_network_is_active_and_autostarted(lab: Lab) -> None:
    lni = step_record(lab, "lni")
    assert lni["status"] == "changed", lni
    info = lab.ssh("virsh -c qemu:///system net-info lni").stdout
    assert "Active:         yes" in info and "Autostart:      yes" in info, info
    xml = lab.ssh("virsh -c qemu:///system net-dumpxml lni").stdout
    assert "<forward mode='bridge'/>" in xml and "<bridge name='br-lni'/>" in xml


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")
def test_browser_logs_in_and_sees_the_lni_network(lab: Lab) -> None:
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 - only this test needs it

    lab.ssh(
        f"id {USER} || useradd -m -s /bin/bash -G sudo,libvirt {USER}; "
        f"echo '{USER}:{PASSWORD}' | chpasswd"
    )
    base = f"https://127.0.0.1:{lab.ports.mgmt_cockpit}"
    # Next to the run directory, which is deleted when the module passes: the evidence stays.
    shot = lab.run_dir.parent / f"{lab.run_dir.name}-cockpit-machines-networks.png"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            page = browser.new_context(
                ignore_https_errors=True, viewport={"width": 1280, "height": 900}
            ).new_page()
            page.set_default_timeout(180_000)  # cockpit-ws under TCG is slow to start pages
            page.goto(f"{base}/")
            page.fill("#login-user-input", USER)
            page.fill("#login-password-input", PASSWORD)
            page.click("#login-button")
            page.wait_for_selector("#nav-system", state="attached")
            # A sudo user starts in limited access, where the Machines page sees only the
            # user's own libvirt session; switch to administrative access as an admin would.
            page.get_by_role("button", name="Limited access").click()
            page.locator("input[type=password]").fill(PASSWORD)
            page.get_by_role("button", name="Authenticate").click()
            page.get_by_text("Administrative access", exact=True).wait_for()
            page.reload()  # pages loaded before the switch keep their limited connection
            page.goto(f"{base}/machines#/networks")
            frame = page.frame_locator("iframe[name='cockpit1:localhost/machines']")
            try:
                frame.get_by_text("lni", exact=True).first.wait_for()
            finally:  # the screenshot is the evidence either way
                page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000


def test_reboot_plans_nothing(lab: Lab) -> None:
    lab.reboot()
    lab.wait_agent(timeout=900)
    run = state(lab)["runs"][-1]
    assert run["result"] == "converged", run
    for step in run["steps"]:
        assert step["actions"] == [] and step["planned"] == [], step
