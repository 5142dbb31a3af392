"""`make demo`: boot the lab, wait for the agent's first boot, print how to get in, stay up."""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import time

from cockpit_lab.build import ensure_image
from cockpit_lab.recipe import VARIANTS, default_recipe
from cockpit_lab.vm import Lab, LabError, LabSpec, new_run_dir


def main(argv: list[str]) -> int:
    """Boot one lab instance and keep it up until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m cockpit_lab demo")
    parser.add_argument(
        "--variant",
        choices=VARIANTS,
        default="virt",
        help="image variant (virt: the virtualisation packages baked in)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the run directory at exit")
    args = parser.parse_args(argv)
    image = ensure_image(default_recipe(args.variant))
    lab = Lab(new_run_dir("demo"), image, LabSpec())
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started in background
    try:
        started = time.monotonic()
        print(
            f"booting the lab ({args.variant} image); serial console: {lab.serial_log}", flush=True
        )
        lab.boot()
        print(
            f"SSH up after {time.monotonic() - started:.0f} s; waiting for the agent's "
            "first boot to finish ...",
            flush=True,
        )
        unit = lab.wait_agent()
        print(
            f"cockpit-agent.service: {unit.get('Result')} after "
            f"{time.monotonic() - started:.0f} s\n",
            flush=True,
        )
        print(lab.ssh("cockpit-agent status", check=False).stdout)
        print(f"SSH (management path): {lab.ssh_command()}")
        print(f"SSH (LNI path):        {lab.ssh_command(lab.ports.lni_ssh)}")
        print(
            f"Cockpit (LNI path):    https://127.0.0.1:{lab.ports.lni_cockpit}/  "
            "(user lab, password lab; self-signed certificate)"
        )
        print(f"Cockpit (management):  https://127.0.0.1:{lab.ports.mgmt_cockpit}/")
        print(f"Run directory:         {lab.run_dir}")
        print("\nThe guest stays up until Ctrl-C.", flush=True)
        while lab.running:
            time.sleep(1)
        print("QEMU exited.")
        return 1
    except LabError as exc:
        print(f"lab failed: {exc}\nrun directory kept: {lab.run_dir}", file=sys.stderr)
        args.keep = True
        return 1
    except KeyboardInterrupt:
        print("\nstopping the guest ...", flush=True)
        return 0
    finally:
        lab.close()
        if not args.keep:
            shutil.rmtree(lab.run_dir, ignore_errors=True)
