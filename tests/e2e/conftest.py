"""Fixtures of the end-to-end suite: the cached lab image and lab VMs with run directories.

A lab's run directory (runs/<time>-<module>-<id>/) holds its disks, serial console, QEMU log
and, when a test fails, the guest's evidence collected right after the failure. It is kept
when any test that used the lab failed (the failure report and the summary say where) and
removed otherwise; COCKPIT_LAB_KEEP=1 keeps it always.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pluggy
import pytest
from cockpit_lab.build import agent_package, baked_image
from cockpit_lab.recipe import default_recipe
from cockpit_lab.vm import Lab, LabSpec, new_run_dir

LabFactory = Callable[..., Lab]

_labs: dict[str, list[Lab]] = {}  # module node id -> labs made for it
_session: dict[str, Lab] = {}  # session fixture name -> the lab it shares
_failed: set[str] = set()  # module node ids and session fixtures with a failed test
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


def _only(lab: Lab) -> None:
    """One guest at a time (2 cores): stop every other lab that runs."""
    for other in (*_session.values(), *(x for labs in _labs.values() for x in labs)):
        if other is not lab and other.running:
            other.close()


def _finish(labs: list[Lab], failed: bool) -> None:
    """Record the labs' boot timings; keep their run directories if a test that used them
    failed (or COCKPIT_LAB_KEEP=1), else remove them."""
    keep = failed or os.environ.get("COCKPIT_LAB_KEEP") == "1"
    for lab in labs:
        for n, boot in enumerate(lab.timings.boots, 1):
            figures = ", ".join(f"{k} {v:.0f} s" for k, v in boot.items())
            _timings.append(f"{lab.run_dir.name} boot {n}: {figures}")
        if keep:
            if failed:
                lab.collect("at-teardown")
            lab.close()
            _kept.append(lab.run_dir)
        else:
            lab.remove()


@pytest.fixture(scope="module")
def lab_factory(
    request: pytest.FixtureRequest, lab_images: Callable[[str], Path]
) -> Iterator[LabFactory]:
    """make_lab(spec=None, variant="base") -> a Lab (not booted) in a fresh run directory;
    every other lab is stopped first."""
    module = request.node.nodeid
    labs = _labs.setdefault(module, [])

    def make(spec: LabSpec | None = None, variant: str = "base") -> Lab:
        lab = Lab(new_run_dir(Path(module).stem), lab_images(variant), spec)
        _only(lab)
        labs.append(lab)
        return lab

    yield make
    _finish(labs, module in _failed)


@pytest.fixture(scope="session")
def stock_lab(lab_images: Callable[[str], Path]) -> Iterator[Lab]:
    """The main instance, shared by the modules that test it (test_lab.py, test_crash.py,
    test_vm_on_lni.py, test_reboot.py, ... in the order `make e2e-ci` names them): the
    stock-AMI image launched with a 6 GiB root volume. Tests take it as the `lab` fixture."""
    lab = Lab(new_run_dir("stock"), lab_images("stock"), LabSpec(root_disk_size="6G"))
    _session["stock_lab"] = lab
    yield lab
    _finish([lab], "stock_lab" in _failed)


def _booted(stock_lab: Lab) -> Lab:
    if not stock_lab.running:
        _only(stock_lab)
        stock_lab.boot()
        stock_lab.wait_agent()
    return stock_lab


@pytest.fixture
def lab(stock_lab: Lab) -> Lab:
    """A test's lab unless its module defines its own: the shared main instance, booted (again,
    as after a stop, when a lab of another module stopped it) and its agent's boot run
    finished; every other lab stopped."""
    return _booted(stock_lab)


@pytest.fixture(scope="module")
def module_lab(stock_lab: Lab) -> Lab:
    """The same, for a module-scoped fixture that changes the main instance once."""
    return _booted(stock_lab)


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
    shared = [name for name in _session if name in getattr(item, "fixturenames", ())]
    _failed.update(shared)
    for lab in [*_labs.get(module, []), *(_session[name] for name in shared)]:
        # Once per boot: the module's later failures point to the same evidence.
        key = (id(lab), len(lab.timings.boots))
        where = _collected.get(key, lab.run_dir)
        if key not in _collected:
            try:
                where = _collected[key] = lab.collect(f"failure-{item.name}"[:80])
            except Exception as exc:  # the report must still say where the run directory is
                report.sections.append(("cockpit-lab", f"collecting evidence failed: {exc}"))
        # What failed, beside the evidence and at once: pytest prints it only at the end.
        with (lab.run_dir / "failures.txt").open("a") as out:
            out.write(f"=== {item.nodeid} ({report.when})\n{report.longreprtext}\n\n")
        report.sections.append(
            (
                "cockpit-lab",
                f"run directory kept: {lab.run_dir}\n"
                f"  what failed, as each test fails: {lab.run_dir / 'failures.txt'}\n"
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
