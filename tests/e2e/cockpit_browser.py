"""A headless Chromium (Debian's, driven by Playwright) that logs in to Cockpit in the lab."""

from __future__ import annotations

from pathlib import Path

from cockpit_lab.vm import Lab

CHROMIUM = Path("/usr/bin/chromium")
USER, PASSWORD = "labadmin", "lab-cockpit-2026"
# This machine reaches nothing but the package registries: no background traffic.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def machines_networks_screenshot(lab: Lab, port: int, network: str) -> Path:
    """Log in as an admin through the forward on `port`, take administrative access, open the
    Machines page's networks and wait for `network`; return the screenshot (kept next to the
    run directory, which is deleted when the module passes: the evidence stays)."""
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 - only the browser needs it

    lab.ssh(
        f"id {USER} || useradd -m -s /bin/bash -G sudo,libvirt {USER}; "
        f"echo '{USER}:{PASSWORD}' | chpasswd"
    )
    base = f"https://127.0.0.1:{port}"
    shot = lab.run_dir.parent / f"{lab.run_dir.name}-cockpit-machines-networks.png"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
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
                frame.get_by_text(network, exact=True).first.wait_for()
            finally:  # the screenshot is the evidence either way
                page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    return shot
