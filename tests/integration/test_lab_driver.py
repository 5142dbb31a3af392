"""The lab driver with a stand-in emulator (tests/integration/lab_standin.py): the accelerator
is proven by a boot, and no QEMU outlives the process that started it, whatever ends it.

No guest boots here: the stand-in plays QEMU as the machines this project meets behave (a
/dev/kvm that runs firmware and hangs the kernel, a KVM on which QEMU aborts). Every driver
is a separate process; what is left running is checked with psutil.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from cockpit_lab.build import image_path
from cockpit_lab.procs import reap_stale, record_driver
from cockpit_lab.recipe import default_recipe
from tests.helpers.tools import need_tools

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
STANDIN = Path(__file__).with_name("lab_standin.py")


@pytest.fixture(scope="module")
def lab_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lab cache of this module's own: the lab's SSH key and a tiny qcow2 as the images."""
    need_tools("qemu-img", "ssh-keygen")
    cache = tmp_path_factory.mktemp("lab-cache")
    for variant in ("base", "stock"):
        image = image_path(default_recipe(variant), cache)
        image.parent.mkdir(parents=True)
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "16M"], check=True)
    return cache


@pytest.fixture
def env(lab_cache: Path, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of a driver that boots the stand-in; the processes it leaves behind
    are killed (and reported by the test that looks for them)."""
    qemu = tmp_path / "qemu-standin"
    qemu.write_text(f'#!/bin/sh\nexec {sys.executable} {STANDIN} qemu "$@"\n')
    qemu.chmod(0o755)
    kvm = tmp_path / "kvm"  # a node the lab may open: the probe then runs the stand-in
    kvm.write_text("")
    runs = tmp_path / "runs"
    runs.mkdir()
    yield {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'lab'}:{ROOT}",
        "COCKPIT_LAB_QEMU": str(qemu),
        "COCKPIT_LAB_KVM_DEVICE": str(kvm),
        "COCKPIT_LAB_CACHE": str(lab_cache),
        "COCKPIT_LAB_RUNS": str(runs),
        "COCKPIT_LAB_KERNEL_BOUND": "3",
        "STANDIN_IMAGE": str(image_path(default_recipe("base"), lab_cache)),
        "COCKPIT_LAB_IMAGE": str(image_path(default_recipe("stock"), lab_cache)),
    }
    for proc in standins(runs):
        proc.kill()
    (lab_cache / "accel.json").unlink(missing_ok=True)


def standins(under: Path) -> list[psutil.Process]:
    """Live stand-in emulators whose arguments name a path under `under`."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        argv = proc.info["cmdline"] or []
        if "qemu" in argv and str(STANDIN) in argv and any(str(under) in a for a in argv):
            found.append(proc)
    return found


def wait_for(predicate: object, timeout: float, what: str) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def boot(env: dict[str, str], run_dir: Path, **extra: str) -> dict[str, object]:
    run_dir.mkdir(exist_ok=True)
    proc = subprocess.run(
        [sys.executable, str(STANDIN), "boot", str(run_dir)],
        env={**env, **extra},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["stderr"] = proc.stderr
    return result


def test_kvm_that_hangs_the_kernel_falls_back_to_tcg_and_says_so(
    env: dict[str, str], tmp_path: Path, lab_cache: Path
) -> None:
    result = boot(env, tmp_path / "runs" / "hang", STANDIN_SSH="listen")
    assert result.get("booted"), result
    assert result["accel"] == "tcg"
    assert "no kernel output within 3 s under KVM" in str(result["reason"])
    assert "fell back to TCG" in str(result["reason"])
    assert "booting under KVM" in str(result["stderr"])
    assert "booting under TCG" in str(result["stderr"])
    cmdlines = (tmp_path / "runs" / "hang" / "qemu.cmdline").read_text()
    assert "tcg,thread=multi" in cmdlines
    # Proven by a boot that reached SSH: remembered, and the next boot goes straight to TCG.
    assert json.loads((lab_cache / "accel.json").read_text())["accel"] == "tcg"
    again = boot(env, tmp_path / "runs" / "again", STANDIN_SSH="listen")
    assert again["accel"] == "tcg"
    assert "reached SSH on this host" in str(again["reason"])
    assert "booting under KVM" not in str(again["stderr"])


def test_qemu_aborting_under_kvm_falls_back_to_tcg(env: dict[str, str], tmp_path: Path) -> None:
    result = boot(env, tmp_path / "runs" / "abort", STANDIN_SSH="listen", STANDIN_KVM="abort")
    assert result.get("booted"), result
    assert result["accel"] == "tcg"
    assert "MSR" in str(result["reason"])


def test_a_boot_that_never_reaches_ssh_is_not_remembered(
    env: dict[str, str], tmp_path: Path, lab_cache: Path
) -> None:
    result = boot(env, tmp_path / "runs" / "nossh", STANDIN_SSH_TIMEOUT="3")
    assert "no SSH after 3 s" in str(result.get("error")), result
    assert result["accel"] == "tcg"  # the kernel printed under TCG; SSH never answered
    assert not (lab_cache / "accel.json").exists()
    assert not standins(tmp_path), "the driver left its stand-in running"


def test_forced_kvm_does_not_fall_back(env: dict[str, str], tmp_path: Path) -> None:
    result = boot(env, tmp_path / "runs" / "forced", COCKPIT_LAB_ACCEL="kvm")
    assert "no kernel output within 3 s under KVM" in str(result.get("error")), result
    assert "booting under TCG" not in str(result["stderr"])


def start_demo(env: dict[str, str], **extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cockpit_lab", "demo"],
        env={**env, **extra},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def demo_standins(tmp_path: Path, timeout: float = 90) -> list[psutil.Process]:
    """Wait until the demo's stand-in runs under TCG and has printed its kernel line, so it
    is set up (its signal handling among it) and the demo is waiting for SSH."""
    found: list[psutil.Process] = []

    def tcg_up() -> bool:
        found[:] = [p for p in standins(tmp_path) if "tcg,thread=multi" in p.cmdline()]
        consoles = (log.read_text() for log in tmp_path.glob("runs/*/serial.log"))
        return bool(found) and any("Linux version" in text for text in consoles)

    wait_for(tcg_up, timeout, "the demo's stand-in under TCG")
    return found


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_mid_boot_leaves_no_qemu(
    env: dict[str, str], tmp_path: Path, sig: signal.Signals
) -> None:
    demo = start_demo(env)
    try:
        qemu = demo_standins(tmp_path)
        demo.send_signal(sig)
        out, _ = demo.communicate(timeout=30)
    finally:
        demo.kill()
    _, alive = psutil.wait_procs(qemu, timeout=10)
    assert not alive, f"QEMU left running after {sig.name}: {alive}\n{out}"
    assert "stopping QEMU" in out, out


def test_signal_mid_shutdown_leaves_no_qemu(env: dict[str, str], tmp_path: Path) -> None:
    # A QEMU that ignores SIGTERM keeps the driver in its shutdown grace period; a second
    # signal there ends the driver, and its QEMU must go with it.
    demo = start_demo(env, STANDIN_SIGTERM="ignore")
    try:
        qemu = demo_standins(tmp_path)
        demo.send_signal(signal.SIGINT)
        time.sleep(2)  # inside the 5 s between SIGTERM and SIGKILL
        assert demo.poll() is None, f"the driver did not wait for QEMU to stop: {demo.stdout}"
        demo.send_signal(signal.SIGTERM)
        out, _ = demo.communicate(timeout=30)
    finally:
        demo.kill()
    _, alive = psutil.wait_procs(qemu, timeout=10)
    assert not alive, f"QEMU left running after a signal mid-shutdown: {alive}\n{out}"


def test_driver_killed_outright_takes_qemu_with_it(env: dict[str, str], tmp_path: Path) -> None:
    demo = start_demo(env)
    try:
        qemu = demo_standins(tmp_path)
        demo.kill()  # SIGKILL: no handler runs; the kernel's parent-death signal does it
        demo.wait(10)
    finally:
        demo.kill()
    _, alive = psutil.wait_procs(qemu, timeout=10)
    assert not alive, f"QEMU outlived a SIGKILLed driver: {alive}"


def test_a_stale_pidfile_from_a_killed_run_is_reaped(env: dict[str, str], tmp_path: Path) -> None:
    # A QEMU orphaned by a driver that died without taking it along (as an older driver
    # did): started on its own session, not tied to anyone, with its pidfile in a run
    # directory whose driver.json names a process that no longer exists.
    stale = tmp_path / "runs" / "stale"
    stale.mkdir()
    pidfile = stale / "qemu.pid"
    serial = f"file,id=serial0,path={stale / 'serial.log'}"
    argv = [env["COCKPIT_LAB_QEMU"], "-accel", "tcg", "-pidfile", str(pidfile), "-chardev", serial]
    orphan = subprocess.Popen(
        argv,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    dead = subprocess.Popen(["true"])
    dead.wait()
    (stale / "driver.json").write_text(json.dumps({"pid": dead.pid, "create_time": 1.0}))
    wait_for(pidfile.exists, 10, "the orphan's pidfile")
    # A live run beside it is left alone: its driver (this test) is alive.
    live = tmp_path / "runs" / "live"
    live.mkdir()
    record_driver(live)
    (live / "qemu.pid").write_text(f"{os.getpid()}\n")
    said: list[str] = []
    assert reap_stale(tmp_path / "runs", said.append) == [orphan.pid]
    assert not psutil.pid_exists(orphan.pid)  # reaped (psutil waits for its own children)
    assert not pidfile.exists()
    assert (live / "qemu.pid").exists()
    assert "left running by a dead driver" in said[0]
    # A pidfile whose pid is now some other process is never acted on.
    (stale / "qemu.pid").write_text(f"{os.getpid()}\n")
    assert reap_stale(tmp_path / "runs", said.append) == []
