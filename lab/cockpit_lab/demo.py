"""`make demo`: boot the lab, wait for the agent's first boot, print how to get in, stay up."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import time
from pathlib import Path

from cockpit_lab.build import agent_package, baked_image
from cockpit_lab.recipe import VARIANTS, default_recipe
from cockpit_lab.vm import Lab, LabError, LabSpec, new_run_dir


def _say(msg: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _report(lab: Lab, phases: list[tuple[str, float]]) -> None:
    """What a person needs to get in, and what the demo measured."""
    assert lab.accel is not None
    print(lab.ssh("cockpit-agent status", check=False).stdout)
    print(f"Accelerator:           {lab.accel.name.upper()} ({lab.accel.reason})")
    print("Phases:                " + ", ".join(f"{name} {s:.0f} s" for name, s in phases))
    print(f"SSH (management path): {lab.ssh_command()}")
    print(f"SSH (LNI path):        {lab.ssh_command(lab.ports.lni_ssh)}")
    print(
        f"Cockpit (LNI path):    https://127.0.0.1:{lab.ports.lni_cockpit}/  "
        "(user lab, password lab; self-signed certificate)"
    )
    print(f"Cockpit (management):  https://127.0.0.1:{lab.ports.mgmt_cockpit}/")
    print(f"Run directory:         {lab.run_dir}")
    print("\nThe guest stays up until Ctrl-C.", flush=True)


def main(argv: list[str]) -> int:
    """Boot one lab instance and keep it up until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m cockpit_lab demo")
    parser.add_argument(
        "--variant",
        choices=VARIANTS,
        default="stock",
        help="image variant (stock: an EC2 AMI with cloud-init and the virtualisation stack)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the run directory at exit")
    args = parser.parse_args(argv)
    # SIGTERM and SIGINT end the demo the same way: the guest is powered off (bounded), and
    # QEMU dies with this process in any case (cockpit_lab/procs.py).
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started in background
    phases: list[tuple[str, float]] = []
    started = time.monotonic()
    recipe = default_recipe(args.variant)
    try:
        # COCKPIT_LAB_IMAGE boots an image as it is (the lab driver's tests: a stand-in's).
        given = os.environ.get("COCKPIT_LAB_IMAGE")
        image = Path(given) if given else baked_image(recipe, agent_package())
    except KeyboardInterrupt:
        _say("interrupted while building the image; nothing is left half-built")
        return 130
    except Exception as exc:  # the build's own errors carry the command and its output
        print(
            f"lab image build failed: {_one_line(exc)}",
            file=sys.stderr,
        )
        return 1
    phases.append(("image", time.monotonic() - started))
    _say(f"image {image} ready after {phases[-1][1]:.0f} s")
    lab = Lab(new_run_dir("demo"), image, LabSpec(), say=_say)
    try:
        mark = time.monotonic()
        _say(f"booting the lab; serial console: {lab.serial_log}")
        lab.boot()
        assert lab.accel is not None
        phases.append((f"boot to SSH ({lab.accel.name.upper()})", time.monotonic() - mark))
        _say(
            f"SSH up after {phases[-1][1]:.0f} s; waiting for the agent's first boot "
            "(about 1 min more under TCG) ..."
        )
        mark = time.monotonic()
        unit = lab.wait_agent()
        phases.append(("agent's first boot", time.monotonic() - mark))
        _say(f"cockpit-agent.service: {unit.get('Result')} after {phases[-1][1]:.0f} s more\n")
        phases.append(("in all", time.monotonic() - started))
        _report(lab, phases)
        while lab.running:
            time.sleep(1)
        print(f"lab failed: QEMU exited; its log: {lab.run_dir / 'qemu.log'}", file=sys.stderr)
        args.keep = True
        return 1
    except (LabError, RuntimeError, OSError) as exc:
        print(f"lab failed: {_one_line(exc)} (run directory kept: {lab.run_dir})", file=sys.stderr)
        args.keep = True
        return 1
    except KeyboardInterrupt:
        _say("stopping the guest ...")
        return 0
    finally:
        lab.close()
        if not args.keep:
            shutil.rmtree(lab.run_dir, ignore_errors=True)
