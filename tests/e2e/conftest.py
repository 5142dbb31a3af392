"""Fixtures of the end-to-end suite: the cached lab image and lab VMs with run directories.

A lab's run directory (runs/<time>-<module>-<id>/) holds its disks, serial console, QEMU log
and, when a test fails, the guest's evidence collected right after the failure. It is kept
when any test that used the lab failed (the failure report and the summary say where) and
removed otherwise; COCKPIT_LAB_KEEP=1 keeps it always.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pluggy
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "lab"))

from cockpit_lab.build import agent_package, baked_image
from cockpit_lab.recipe import default_recipe
from cockpit_lab.vm import Lab, LabSpec, new_run_dir

LabFactory = Callable[..., Lab]

_labs: dict[str, list[Lab]] = {}  # module node id -> labs made for it
_failed: set[str] = set()  # module node ids with a failed test
_kept: list[Path] = []
_timings: list[str] = []
_collected: dict[tuple[int, int], Path] = {}  # (lab, boot count) -> its evidence directory


def _module_id(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


@pytest.fixture(scope="session")
def lab_images() -> Callable[[str], Path]:
    """Build or reuse a cached lab image by variant (recipe.VARIANTS), with the agent's .deb
    from this checkout baked in by packaging/ami/bake.sh."""
    if os.geteuid() != 0:
        pytest.skip("the e2e lab needs root (image build, QEMU); run `make e2e` as root")
    package: list[Path] = []

    def get(variant: str = "base") -> Path:
        if not package:
            package.append(agent_package())
        return baked_image(default_recipe(variant), package[0])

    return get


@pytest.fixture(scope="module")
def lab_factory(
    request: pytest.FixtureRequest, lab_images: Callable[[str], Path]
) -> Iterator[LabFactory]:
    """make_lab(spec=None, variant="base") -> a Lab (not booted) in a fresh run directory."""
    module = request.node.nodeid
    labs = _labs.setdefault(module, [])

    def make(spec: LabSpec | None = None, variant: str = "base") -> Lab:
        name = Path(module).stem
        lab = Lab(new_run_dir(name), lab_images(variant), spec)
        labs.append(lab)
        return lab

    yield make
    keep = module in _failed or os.environ.get("COCKPIT_LAB_KEEP") == "1"
    for lab in labs:
        for n, boot in enumerate(lab.timings.boots, 1):
            figures = ", ".join(f"{k} {v:.0f} s" for k, v in boot.items())
            _timings.append(f"{lab.run_dir.name} boot {n}: {figures}")
        if keep:
            if module in _failed:
                lab.collect("at-teardown")
            lab.close()
            _kept.append(lab.run_dir)
        else:
            lab.remove()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pluggy.Result[pytest.TestReport], None]:
    """On a failure, collect the guest's evidence at once and say where it is."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if not report.failed:
        return
    module = _module_id(item.nodeid)
    _failed.add(module)
    for lab in _labs.get(module, []):
        # Once per boot: the module's later failures point to the same evidence.
        key = (id(lab), len(lab.timings.boots))
        where = _collected.get(key, lab.run_dir)
        if key not in _collected:
            try:
                where = _collected[key] = lab.collect(f"failure-{item.name}"[:80])
            except Exception as exc:  # the report must still say where the run directory is
                report.sections.append(("cockpit-lab", f"collecting evidence failed: {exc}"))
        report.sections.append(
            (
                "cockpit-lab",
                f"run directory kept: {lab.run_dir}\n"
                f"  serial console: {lab.serial_log}\n"
                f"  guest evidence (journal, state.json, mdadm, ...): {where}",
            )
        )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Boot timings (seconds from QEMU start or reboot) and the run directories kept."""
    for line in _timings:
        terminalreporter.write_line(f"cockpit-lab timings: {line}")
    for path in _kept:
        terminalreporter.write_line(f"cockpit-lab: run directory kept: {path}")
