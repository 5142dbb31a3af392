"""The read-only commands change nothing (issue 14): plan, reconcile --dry-run, check without
repair, facts and status, run as root against a tree holding the agent's paths.

Each runs twice: on the tree made read-only (a read-only bind mount), where any write would
fail and show in its exit code or output, and on the tree left writable, where a write would
succeed and show in the tree. Both with IMDS answering (the stub on 127.0.0.1) and with IMDS
unreachable, which used to move a valid state file aside. The tree is compared before and
after: names, types, modes, contents, symlink targets and mtimes of files and directories.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cockpit_lab.imds_stub import ImdsStub
from tests.helpers.tools import need_tools

from cockpit_agent.state import State, save_state

pytestmark = pytest.mark.integration

AGENT = Path(__file__).resolve().parents[2] / "agent"
# Not under systemd: the check's journal memo is for its timer only.
ENV = {
    **{k: v for k, v in os.environ.items() if k not in ("INVOCATION_ID", "JOURNAL_STREAM")},
    "PYTHONPATH": str(AGENT),
}
INSTANCE = "i-0fixture000000001"  # the stub's


def snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    """Every entry under `root` (and root itself): type and mode, mtime, and content or target."""
    seen: dict[str, tuple[object, ...]] = {}
    for path in [root, *sorted(root.rglob("*"))]:
        st = path.lstat()
        if path.is_symlink():
            what: object = os.readlink(path)
        elif path.is_file():
            what = path.read_bytes()
        else:
            what = None
        seen[str(path.relative_to(root))] = (st.st_mode, st.st_mtime_ns, st.st_size, what)
    return seen


def agent_tree(root: Path, endpoint: str) -> dict[str, str]:
    """Configuration, a state file of a converged run, the lock and its directory."""
    etc, var, run = root / "etc", root / "var" / "lib" / "cockpit-agent", root / "run"
    for directory in (etc / "config.d", var, run):
        directory.mkdir(parents=True)
    # Storage observes (no drive is named, so nothing is eligible); the steps that would look
    # at this machine's root disk, packages and links are off.
    (etc / "config.toml").write_text(
        f'[imds]\nendpoint = "{endpoint}"\nboot_wait_seconds = 0\nrequest_timeout_seconds = 1\n'
        '[storage]\ndevices = ["/dev/h1-no-such-disk"]\n'
        "[rootfs]\nenabled = false\n[virt]\nenabled = false\n[lni]\nenabled = false\n"
    )
    (etc / "config.d" / "50-site.toml").write_text("[storage]\nlevel = 1\n")
    state = State(instance_id=INSTANCE, step_data={"storage": {"array_uuids": []}})
    save_state(var / "state.json", state)
    (run / "lock").write_text("4242\n")
    return {
        "config": str(etc / "config.toml"),
        "state": str(var / "state.json"),
        "lock": str(run / "lock"),
    }


@pytest.fixture
def read_only() -> Iterator[Callable[[Path], None]]:
    """Make a directory read-only with a bind mount of itself; undone at teardown."""
    if os.geteuid() != 0:
        pytest.skip("a read-only bind mount needs root")
    need_tools("mount", "umount")
    mounted: list[Path] = []

    def make(directory: Path) -> None:
        subprocess.run(["mount", "--bind", str(directory), str(directory)], check=True)
        mounted.append(directory)
        subprocess.run(
            ["mount", "-o", "remount,bind,ro", str(directory), str(directory)], check=True
        )
        assert not os.access(directory, os.W_OK)  # even for root: a read-only filesystem

    yield make
    for directory in reversed(mounted):
        subprocess.run(["umount", str(directory)], check=True)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def agent(paths: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    options = ["--config", paths["config"], "--state", paths["state"], "--lock", paths["lock"]]
    return subprocess.run(
        [sys.executable, "-m", "cockpit_agent.cli", *args, *options, "--log-format", "json"],
        check=False,
        capture_output=True,
        text=True,
        env=ENV,
        timeout=120,
    )


# (command, exit code with IMDS up, with IMDS down). With IMDS down the state file names an
# instance that cannot be confirmed: not trusted (a dry run leaves it where it is), and check
# says so; status reads only the file.
COMMANDS = [
    (("plan",), 0, 0),
    (("reconcile", "--dry-run"), 0, 0),
    (("reconcile", "--dry-run", "--json"), 0, 0),
    (("check",), 1, 1),
    (("check", "--json"), 1, 1),
    (("facts",), 0, 0),
    (("facts", "--json"), 0, 0),
    (("status",), 0, 0),
    (("status", "--json"), 0, 0),
]


@pytest.mark.parametrize("imds", ["up", "down"])
@pytest.mark.parametrize("view", ["read-only", "writable"])
def test_read_only_commands_change_nothing(
    tmp_path: Path,
    imds_stub: ImdsStub,
    read_only: Callable[[Path], None],
    imds: str,
    view: str,
) -> None:
    endpoint = imds_stub.url if imds == "up" else f"http://127.0.0.1:{closed_port()}"
    root = tmp_path / "tree"
    paths = agent_tree(root, endpoint)
    before = snapshot(root)
    if view == "read-only":
        read_only(root)
    for args, up, down in COMMANDS:
        proc = agent(paths, *args)
        said = proc.stdout + proc.stderr
        assert proc.returncode == (up if imds == "up" else down), f"{args}: {said}"
        for word in ("Traceback", "internal error", "Read-only file system", "cannot record"):
            assert word not in said, f"{args}: {said}"
        if "--json" in args:
            json.loads(proc.stdout)
    assert snapshot(root) == before


BROKEN = {
    # what is broken: (file, its content, exit code of plan and --dry-run, what they say)
    "state": ("var/lib/cockpit-agent/state.json", '{"instance_id": "i-0fix', 0, "is truncated"),
    "drop-in": ("etc/config.d/60-typo.toml", "[storge]\n", 2, "storge: unknown key"),
}


@pytest.mark.parametrize("view", ["read-only", "writable"])
@pytest.mark.parametrize("broken", sorted(BROKEN))
def test_plan_and_dry_run_leave_what_is_broken_alone(
    tmp_path: Path,
    imds_stub: ImdsStub,
    read_only: Callable[[Path], None],
    broken: str,
    view: str,
) -> None:
    # A truncated state file is not moved aside, a broken drop-in records no failed attempt.
    root = tmp_path / "tree"
    paths = agent_tree(root, imds_stub.url)
    name, content, code, said = BROKEN[broken]
    (root / name).write_text(content)
    before = snapshot(root)
    if view == "read-only":
        read_only(root)
    for args in (("plan",), ("reconcile", "--dry-run")):
        proc = agent(paths, *args)
        assert proc.returncode == code, proc.stderr
        assert said in proc.stderr and "cannot record" not in proc.stderr
    assert snapshot(root) == before


def test_a_lock_on_a_read_only_filesystem_stops_reconcile_with_one_line(
    tmp_path: Path, imds_stub: ImdsStub, read_only: Callable[[Path], None]
) -> None:
    root = tmp_path / "tree"
    paths = agent_tree(root, imds_stub.url)
    read_only(root / "run")
    proc = agent(paths, "reconcile")
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        f"cockpit-agent: cannot open the run lock {paths['lock']}: Read-only file system"
    ]
    status = agent(paths, "status")  # the state file has no run of it: the record says why
    assert status.returncode == 1
    assert "FAILED before its steps (exit 1): cannot open the run lock" in status.stdout
