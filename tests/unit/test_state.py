from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from cockpit_agent.errors import LockHeld, StateError
from cockpit_agent.state import (
    KEEP_RUNS,
    RunRecord,
    State,
    StepRecord,
    load_for_instance,
    now,
    read_state,
    run_lock,
    save_state,
)
from tests.helpers.lock import start_holder


def a_run(run_id: str = "r1", result: str = "changed") -> RunRecord:
    run = RunRecord(run_id=run_id, started_at=now(), agent_version="0.1.0")
    run.steps.append(
        StepRecord(
            name="storage",
            status="changed",
            summary="3 eligible drives",
            actions=["create RAID5"],
            started_at=now(),
            duration_seconds=1.5,
        )
    )
    run.finished_at = now()
    run.result = result  # type: ignore[assignment]
    return run


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    state = State(instance_id="i-1", step_data={"storage": {"array_uuid": "abc"}})
    state.add_run(a_run())
    save_state(path, state)
    loaded = read_state(path)
    assert loaded == state
    assert loaded is not None and loaded.last_run is not None
    assert loaded.last_run.steps[0].actions == ["create RAID5"]
    assert json.loads(path.read_text())["schema_version"] == 1


# A state file as the agent wrote it while the lni step kept the record of libvirt's `default`
# network (before the libvirt_network step had a name of its own).
LNI_KEPT_DEFAULT = {
    "schema_version": 1,
    "instance_id": "i-1",
    "runs": [],
    "step_data": {
        "storage": {"array_uuid": "abc"},
        "lni": {
            "default_network": {
                "stock": {"xml": "<network/>", "active": True, "autostart": True},
                "created": "<network><name>default</name></network>",
            }
        },
    },
}


def test_the_lni_steps_record_of_default_is_the_libvirt_network_steps(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps(LNI_KEPT_DEFAULT))
    state = read_state(path)
    assert state is not None
    record = LNI_KEPT_DEFAULT["step_data"]["lni"]["default_network"]  # type: ignore[index]
    assert state.step_data == {
        "storage": {"array_uuid": "abc"},
        "libvirt_network": {"default_network": record},
    }
    save_state(path, state)
    assert read_state(path) == state  # and saved under its new name


def test_other_lni_data_stays_the_lni_steps() -> None:
    data = {"lni": {"other": 1, "default_network": {"created": "x"}}}
    state = State.model_validate({"step_data": data})
    assert state.step_data == {
        "lni": {"other": 1},
        "libvirt_network": {"default_network": {"created": "x"}},
    }


def test_keeps_only_the_newest_runs() -> None:
    state = State(instance_id="i-1")
    for n in range(KEEP_RUNS + 3):
        state.add_run(a_run(f"r{n}"))
    assert len(state.runs) == KEEP_RUNS
    assert state.last_run is not None and state.last_run.run_id == f"r{KEEP_RUNS + 2}"


def test_crash_between_write_and_rename_leaves_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "state.json"
    save_state(path, State(instance_id="i-old"))
    before = path.read_bytes()

    def crash(src: str, dst: str) -> None:
        raise OSError("power cut")

    monkeypatch.setattr(os, "replace", crash)  # files.py writes with os.replace
    with pytest.raises(StateError, match=r"cannot write the state file .*: power cut"):
        save_state(path, State(instance_id="i-new"))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temp file left behind


def test_state_of_another_instance_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    old = State(instance_id="i-baked", step_data={"storage": {"array_uuid": "x"}})
    old.add_run(a_run())
    save_state(path, old)
    state, moved = load_for_instance(path, "i-new")
    assert state.instance_id == "i-new"
    assert state.runs == [] and state.step_data == {}
    assert moved is not None and moved.name.startswith("state.json.i-baked.")
    assert read_state(moved) == old
    assert not path.exists()


def test_state_of_this_instance_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    save_state(path, State(instance_id="i-1", step_data={"a": {"b": 1}}))
    state, moved = load_for_instance(path, "i-1")
    assert moved is None
    assert state.step_data == {"a": {"b": 1}}


def test_unknown_instance_never_trusts_a_named_file(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    save_state(path, State(instance_id="i-1", step_data={"a": {}}))
    state, moved = load_for_instance(path, None)
    assert moved is not None
    assert state.step_data == {}


def test_corrupt_state_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("{not json")
    with pytest.raises(StateError):
        read_state(path)
    state, moved = load_for_instance(path, "i-1")
    assert moved is not None and moved.name.startswith("state.json.corrupt.")
    assert state.instance_id == "i-1"


def test_other_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"schema_version": 99, "instance_id": "i-1"}))
    with pytest.raises(StateError, match="schema version 99"):
        read_state(path)


def test_lock_held_by_another_process_names_its_pid(tmp_path: Path) -> None:
    lock = tmp_path / "run" / "lock"
    holder = start_holder(lock, 30)
    try:
        with pytest.raises(LockHeld) as err, run_lock(lock, wait_seconds=0.3):
            pass
        assert err.value.pid == holder.pid
        assert str(holder.pid) in str(err.value)
    finally:
        holder.kill()
        holder.wait()


def test_second_run_waits_for_the_first(tmp_path: Path) -> None:
    lock = tmp_path / "lock"
    holder = start_holder(lock, 0.5)
    started = time.monotonic()
    with run_lock(lock, wait_seconds=20):
        waited = time.monotonic() - started
        assert lock.read_text().strip() == str(os.getpid())
    assert waited > 0.3  # it could only get the lock once the holder let go
    holder.wait()


def test_lock_is_released_when_holder_dies(tmp_path: Path) -> None:
    lock = tmp_path / "lock"
    holder = start_holder(lock, 30)
    holder.kill()
    holder.wait()
    with run_lock(lock, wait_seconds=0):
        pass


# --- runs that change nothing, and a lock that cannot be turned against a file ---------------


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path under `root` with its bytes (None for directories), symlinks not followed."""
    return {
        str(p.relative_to(root)): (None if p.is_dir() and not p.is_symlink() else p.read_bytes())
        for p in sorted(root.rglob("*"))
    }


@pytest.mark.parametrize("instance", [None, "i-other"], ids=["imds-down", "other-instance"])
def test_a_dry_run_never_moves_a_state_file_aside(tmp_path: Path, instance: str | None) -> None:
    # Issue 14: plan with IMDS briefly down moved a valid state away, and status then said
    # the agent had never run here.
    path = tmp_path / "state.json"
    save_state(path, State(instance_id="i-1", step_data={"storage": {"array_uuid": "x"}}))
    before = tree(tmp_path)
    state, moved = load_for_instance(path, instance, move=False)
    assert moved is None and state.step_data == {}  # not trusted, but left where it is
    assert tree(tmp_path) == before


def test_a_dry_run_leaves_a_corrupt_state_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("{not json")
    state, moved = load_for_instance(path, "i-1", move=False)
    assert moved is None and state.instance_id == "i-1"
    assert path.read_text() == "{not json"


def test_a_foreign_instance_id_cannot_name_a_path(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    save_state(path, State(instance_id="../../i-evil"))
    _, moved = load_for_instance(path, "i-1")
    assert moved is not None and moved.parent == tmp_path
    assert moved.name.startswith("state.json..._.._i-evil.")


def test_a_lock_that_writes_nothing_creates_nothing(tmp_path: Path) -> None:
    lock = tmp_path / "run" / "cockpit-agent" / "lock"
    with run_lock(lock, write=False):
        assert not lock.parent.exists()
    assert list(tmp_path.iterdir()) == []


def test_a_lock_that_writes_nothing_still_waits_for_a_holder(tmp_path: Path) -> None:
    lock = tmp_path / "lock"
    holder = start_holder(lock, 30)
    try:
        with pytest.raises(LockHeld) as err, run_lock(lock, wait_seconds=0.3, write=False):
            pass
        assert err.value.pid == holder.pid
        assert lock.read_text().strip() == str(holder.pid)  # not truncated
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("write", [True, False], ids=["reconcile", "plan"])
def test_the_lock_never_follows_a_symlink(tmp_path: Path, write: bool) -> None:
    # Issue 14: a link at the lock path to a file holding data left that file truncated to
    # a pid, even on `plan`.
    victim = tmp_path / "precious"
    victim.write_text("data nobody may lose\n")
    lock = tmp_path / "lock"
    lock.symlink_to(victim)
    with pytest.raises(StateError, match="cannot open the run lock"), run_lock(lock, write=write):
        pass
    assert victim.read_text() == "data nobody may lose\n"


def test_the_lock_directory_is_0755_whatever_the_umask(tmp_path: Path) -> None:
    lock = tmp_path / "run" / "lock"
    old = os.umask(0)
    try:
        with run_lock(lock):
            pass
    finally:
        os.umask(old)
    assert (lock.parent.stat().st_mode & 0o777) == 0o755


def test_a_lock_path_that_is_a_directory_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "lock").mkdir()
    with pytest.raises(StateError, match="cannot open the run lock"), run_lock(tmp_path / "lock"):
        pass


# --- issue 14: what a host does to the state file; moved aside only by a run that writes ------


def _break(path: Path, case: str) -> None:
    good = State(instance_id="i-1", step_data={"storage": {"array_uuid": "x"}})
    text = good.model_dump_json(indent=2)
    if case == "truncated":
        path.write_text(text[: len(text) // 2])  # a copy or a restore cut short
    elif case == "empty":
        path.write_text("")
    elif case == "corrupt":
        path.write_bytes(b"\x00\x00" + text.encode()[2:])  # a torn block
    elif case == "invalid":
        path.write_text(json.dumps({"runs": "none"}))
    elif case == "foreign":
        save_state(path, State(instance_id="i-baked"))
    elif case == "symlink":
        save_state(path.with_name("elsewhere.json"), good)
        path.symlink_to(path.with_name("elsewhere.json"))
    elif case == "not-a-file":
        path.mkdir()


@pytest.mark.parametrize(
    ("case", "logged", "tag"),
    [
        ("truncated", "state file is truncated", "truncated"),
        ("empty", "state file is truncated", "truncated"),
        ("corrupt", "state file is not JSON", "corrupt"),
        ("invalid", "state file is JSON of the wrong shape", "invalid"),
        ("foreign", "state file belongs to another instance", "i-baked"),
        ("symlink", "state file is a symlink", "symlink"),
        ("not-a-file", "state file is not a regular file", "not-a-file"),
    ],
)
def test_an_untrusted_state_file_is_moved_aside_saying_why(
    tmp_path: Path, case: str, logged: str, tag: str
) -> None:
    path = tmp_path / "state.json"
    _break(path, case)
    before = tree(tmp_path)
    with capture_logs() as logs:
        state, moved = load_for_instance(path, "i-1", move=False)  # plan, --dry-run
    assert moved is None and tree(tmp_path) == before
    assert state.step_data == {} and state.instance_id == "i-1"
    assert [e["event"] for e in logs] == [f"{logged}: not trusted"]
    assert logs[0]["left_in_place"]
    with capture_logs() as logs:
        state, moved = load_for_instance(path, "i-1")  # reconcile, which writes a new one
    assert moved is not None and moved.name.startswith(f"state.json.{tag}.")
    assert not os.path.lexists(path)
    assert [e["event"] for e in logs] == [f"{logged}: not trusted"]
    assert logs[0]["moved_to"] == str(moved) and logs[0]["case"] in (case, "truncated")


def test_a_state_file_is_read_without_following_a_symlink(tmp_path: Path) -> None:
    save_state(tmp_path / "elsewhere.json", State(instance_id="i-1"))
    (tmp_path / "state.json").symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(StateError, match="a symlink, not trusted") as err:
        read_state(tmp_path / "state.json")
    assert err.value.case == "symlink"


def test_the_state_directory_is_0755_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "var" / "lib" / "cockpit-agent" / "state.json"
    old = os.umask(0)
    try:
        save_state(path, State(instance_id="i-1"))
    finally:
        os.umask(old)
    for directory in (path.parent, path.parent.parent, path.parent.parent.parent):
        assert (directory.stat().st_mode & 0o777) == 0o755, directory
    assert (path.stat().st_mode & 0o777) == 0o644


def test_a_lock_below_a_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    lock = tmp_path / "file" / "run" / "lock"  # mkdir: Not a directory
    with pytest.raises(StateError, match="cannot open the run lock"), run_lock(lock):
        pass
