"""The steps together: their order, what each depends on, and the libvirt network blocked
by a failed LNI step."""

from __future__ import annotations

from pathlib import Path

from cockpit_agent.config import LniConfig
from cockpit_agent.engine import Engine
from cockpit_agent.steps import all_steps
from tests.helpers.lni import FRESH, INTERFACES, World


def test_steps_run_in_order_each_after_those_it_depends_on() -> None:
    steps = all_steps()
    names = [s.name for s in steps]
    assert names == ["rootfs", "storage", "virt", "lni", "libvirt_network"]
    for i, step in enumerate(steps):
        assert set(step.depends_on) <= set(names[:i]), step.name
    assert {s.name: s.depends_on for s in steps}["libvirt_network"] == ("virt", "lni")


def test_the_libvirt_network_waits_for_a_failed_lni_and_touches_nothing(tmp_path: Path) -> None:
    world = World(tmp_path, virsh=True)
    ctx = world.ctx(FRESH, interfaces=INTERFACES[:1])  # no LNI in IMDS: the lni step fails
    run = Engine([world.step(), world.libvirt_step()]).run(ctx)
    status = {s.name: (s.status, s.summary) for s in run.steps}
    assert status["lni"][0] == "failed"
    assert status["libvirt_network"] == ("blocked", "blocked: lni did not succeed")
    assert world.runner.calls == []


def test_lni_enabled_false_turns_both_network_steps_off(tmp_path: Path) -> None:
    world = World(tmp_path, virsh=True)
    ctx = world.ctx(FRESH, LniConfig(enabled=False))
    run = Engine([world.step(), world.libvirt_step()]).run(ctx)
    assert [(s.name, s.status) for s in run.steps] == [
        ("lni", "skipped"),
        ("libvirt_network", "skipped"),
    ]
