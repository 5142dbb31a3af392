from __future__ import annotations

import json
import os
import re
import site
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cockpit_lab.imds_stub import ImdsStub
from prometheus_client.parser import text_string_to_metric_families

from cockpit_agent.cli import main
from tests.helpers.lock import start_holder

OUTPOST = "arn:aws:outposts:us-west-2:111122223333:outpost/op-0fixture00000001"
ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "agent")}


def cli(*args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cockpit_agent.cli", *args],
        capture_output=True,
        text=True,
        env=ENV,
        check=check,
        timeout=60,
    )


@pytest.fixture
def lab(tmp_path: Path, imds_stub: ImdsStub) -> dict[str, str]:
    config = tmp_path / "etc" / "config.toml"
    config.parent.mkdir()
    # Every step off: these tests are about the CLI, and must never act on this machine.
    steps = "".join(f"[{name}]\nenabled = false\n" for name in ("rootfs", "storage", "virt", "lni"))
    config.write_text(f'[imds]\nendpoint = "{imds_stub.url}"\nboot_wait_seconds = 1\n' + steps)
    return {
        "config": str(config),
        "state": str(tmp_path / "state.json"),
        "lock": str(tmp_path / "lock"),
    }


def opts(lab: dict[str, str]) -> list[str]:
    return ["--config", lab["config"], "--state", lab["state"], "--lock", lab["lock"]]


def test_config_validate_unknown_key_exits_2_with_path(tmp_path: Path) -> None:
    bad = tmp_path / "config.toml"
    bad.write_text("[storage]\nlevel = 5\n[lni]\nbrige = 'br0'\n")
    proc = cli("config", "validate", str(bad))
    assert proc.returncode == 2
    assert f"{bad}: lni.brige: unknown key" in proc.stderr


def test_config_validate_good_file(tmp_path: Path) -> None:
    good = tmp_path / "config.toml"
    good.write_text("[storage]\nlevel = 6\n")
    proc = cli("config", "validate", str(good))
    assert proc.returncode == 0, proc.stderr
    assert str(good) in proc.stdout


def test_config_schema_is_json_schema() -> None:
    schema = json.loads(cli("config", "schema", check=True).stdout)
    assert schema["title"] == "Config"
    assert "storage" in schema["properties"]


def test_help_states_every_exit_code() -> None:
    out = cli("--help", check=True).stdout
    for text in ("3 another run holds the lock", "0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN"):
        assert text in out


def test_unknown_command_is_usage_error() -> None:
    assert cli("frobnicate").returncode == 2


def loaded_modules(*args: str) -> set[str]:
    code = (
        "import sys; from cockpit_agent.cli import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "print('\\n'.join(sys.modules), file=sys.stderr)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=ENV, check=True
    )
    return set(proc.stderr.split())


@pytest.mark.parametrize("args", [["version"], ["--help"], ["status", "--state", "/nonexistent"]])
def test_light_commands_import_nothing_heavy(args: list[str]) -> None:
    heavy = {"pydantic", "pyroute2", "pyudev", "psutil", "structlog"}
    assert not heavy & loaded_modules(*args)


def test_reconcile_records_a_run_then_status_shows_it(lab: dict[str, str]) -> None:
    first = cli("reconcile", *opts(lab), "--json")
    assert first.returncode == 0, first.stderr
    run = json.loads(first.stdout)
    assert run["result"] == "converged"
    state = json.loads(Path(lab["state"]).read_text())
    assert state["instance_id"] == "i-0fixture000000001"
    assert state["runs"][-1]["run_id"] == run["run_id"]
    # Where it ran: this machine's DMI (EC2 or not), the stub's Outpost.
    where = state["runs"][-1]["location"]
    assert where["outpost_arn"] == OUTPOST and where["summary"].endswith(f"Outpost {OUTPOST}")
    status = cli("status", "--state", lab["state"])
    assert status.returncode == 0
    assert "i-0fixture000000001" in status.stdout
    assert run["run_id"] in status.stdout
    assert f"location {where['summary']}\n" in status.stdout


def test_plan_prints_the_actions_then_each_steps_summary(lab: dict[str, str]) -> None:
    proc = cli("plan", *opts(lab))

    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[:2] == ["0 action(s) planned", "steps:"]
    assert "  rootfs: skipped: disabled in the configuration" in lines
    assert "  libvirt_network: skipped: disabled in the configuration" in lines
    assert len(lines) == 2 + 5  # one line per step


def test_status_exit_codes(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    assert cli("status", "--state", str(path)).returncode == 2
    path.write_text(json.dumps({"instance_id": "i-1", "runs": [{"result": "failed", "steps": []}]}))
    assert cli("status", "--state", str(path)).returncode == 1
    path.write_text("{broken")
    assert cli("status", "--state", str(path)).returncode == 2


def test_reconcile_exits_3_while_another_run_holds_the_lock(lab: dict[str, str]) -> None:
    holder = start_holder(Path(lab["lock"]), 30)
    try:
        proc = cli("reconcile", *opts(lab), "--wait", "0.5")
        assert proc.returncode == 3
        assert f"process {holder.pid}" in proc.stderr
        assert not Path(lab["state"]).exists()
    finally:
        holder.kill()
        holder.wait()


def test_reconcile_waits_for_a_short_run(lab: dict[str, str]) -> None:
    holder = start_holder(Path(lab["lock"]), 1.0)
    try:
        proc = cli("reconcile", *opts(lab), "--wait", "30")
        assert proc.returncode == 0, proc.stderr
    finally:
        holder.wait()


def test_two_concurrent_reconciles(lab: dict[str, str]) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "cockpit_agent.cli", "reconcile", *opts(lab), "--wait", "30"],
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    codes = [p.wait(timeout=60) for p in procs]
    assert codes == [0, 0]
    state = json.loads(Path(lab["state"]).read_text())
    assert len(state["runs"]) == 2  # both recorded, one after the other, none lost


def test_unknown_only_step_is_usage_error(lab: dict[str, str]) -> None:
    proc = cli("reconcile", *opts(lab), "--only", "nosuchstep")
    assert proc.returncode == 2
    assert "unknown step nosuchstep" in proc.stderr


def test_bad_config_makes_reconcile_exit_2(lab: dict[str, str]) -> None:
    Path(lab["config"]).write_text("[storage]\nlevel = 3\n")
    proc = cli("reconcile", *opts(lab))
    assert proc.returncode == 2
    assert "storage.level" in proc.stderr


def test_check_reports_never_reconciled_as_warning(lab: dict[str, str]) -> None:
    proc = cli("check", *opts(lab))
    assert proc.returncode == 1
    assert proc.stdout.startswith("COCKPIT-AGENT WARNING - ")


def test_check_after_a_failed_run_is_critical(lab: dict[str, str]) -> None:
    assert cli("reconcile", *opts(lab)).returncode == 0
    state = json.loads(Path(lab["state"]).read_text())
    state["runs"][-1]["result"] = "failed"
    Path(lab["state"]).write_text(json.dumps(state))
    proc = cli("check", *opts(lab), "--json")
    assert proc.returncode == 2
    assert json.loads(proc.stdout)["status"] == "CRITICAL"


def test_check_ok_after_a_good_run(lab: dict[str, str]) -> None:
    assert cli("reconcile", *opts(lab)).returncode == 0
    proc = cli("check", *opts(lab))
    assert proc.returncode == 0, proc.stdout
    assert proc.stdout.startswith("COCKPIT-AGENT OK - host converged | 'drift'=0;0;;0")


def test_facts_json_lists_imds_interfaces(lab: dict[str, str]) -> None:
    proc = cli("facts", *opts(lab), "--json")
    assert proc.returncode == 0, proc.stderr
    facts = json.loads(proc.stdout)
    assert facts["identity"]["instance_id"] == "i-0fixture000000001"
    assert {i["device_number"] for i in facts["interfaces"]} == {0, 1}
    assert "platform" in facts and "disks" in facts and "links" in facts
    assert facts["location"]["outpost_arn"] == OUTPOST
    assert facts["location"]["instance_type"] == "c6id.8xlarge"  # IMDS's, not DMI's
    table = cli("facts", *opts(lab))
    assert f"\nlocation  {facts['location']['summary']} (" in table.stdout


def test_version_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    assert capsys.readouterr().out.startswith("cockpit-agent ")


def test_check_writes_a_prometheus_textfile(lab: dict[str, str], tmp_path: Path) -> None:
    assert cli("reconcile", *opts(lab)).returncode == 0
    prom = tmp_path / "cockpit_agent.prom"
    proc = cli("check", *opts(lab), "--prometheus", str(prom))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    names = {f.name for f in text_string_to_metric_families(prom.read_text())}
    assert {"cockpit_agent_check_status", "cockpit_agent_last_run_success"} <= names


# --- issue 20: every error of check is UNKNOWN (3) with a status line ------------------------


@pytest.mark.parametrize(
    "args",
    [["--bogus"], ["--timeout", "soon"], ["--prometheus"], ["--repair=yes"]],
    ids=["unknown-option", "bad-timeout", "missing-value", "bad-flag"],
)
def test_a_bad_argument_to_check_is_unknown(
    lab: dict[str, str], args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", *opts(lab), *args]) == 3
    out, err = capsys.readouterr()
    assert out.startswith("COCKPIT-AGENT UNKNOWN - usage: ") and out.count("\n") == 1
    assert "usage: cockpit-agent" in err  # argparse's own message, on stderr
    assert main(["reconcile", *args[:1]]) == 2  # the other commands keep exit 2


def test_prometheus_refuses_a_missing_directory(lab: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    for prom in (tmp_path / "missing" / "a.prom", tmp_path / "file" / "a.prom", tmp_path):
        proc = cli("check", *opts(lab), "--prometheus", str(prom))
        assert proc.returncode == 3, proc.stdout
        assert proc.stdout.startswith(f"COCKPIT-AGENT UNKNOWN - --prometheus {prom}: ")
    assert not (tmp_path / "missing").exists()


def silent_endpoint() -> socket.socket:
    """A TCP port that accepts connections and never answers: IMDS hung."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    return server


def test_check_with_imds_hung_answers_within_its_timeout(lab: dict[str, str]) -> None:
    with silent_endpoint() as server:
        port = server.getsockname()[1]
        config = Path(lab["config"])
        config.write_text(config.read_text().replace("[imds]\n", "[imds]\nretries = 3\n", 1))
        text = re.sub(
            r'endpoint = ".*"', f'endpoint = "http://127.0.0.1:{port}"', config.read_text()
        )
        config.write_text(text.replace("boot_wait_seconds = 1", "boot_wait_seconds = 600"))
        started = time.monotonic()
        proc = cli("check", *opts(lab))  # IMDS asked once, for one second: WARNING
        assert time.monotonic() - started < 6
        assert proc.returncode == 1, proc.stdout
        assert "imds: IMDS PUT /latest/api/token failed after 1 attempt(s)" in proc.stdout
        proc = cli("check", *opts(lab), "--timeout", "0.5")  # shorter than one IMDS request
        assert proc.returncode == 3
        assert proc.stdout.startswith(
            "COCKPIT-AGENT UNKNOWN - the check did not finish within 0.5 s (still running: facts)"
        )


# --- issue 14: every input error is the agent's own, with its documented exit code ----------


def test_status_json_without_a_state_file_is_a_json_object(tmp_path: Path) -> None:
    proc = cli("status", "--state", str(tmp_path / "state.json"), "--json")
    assert proc.returncode == 2
    shown = json.loads(proc.stdout)
    assert "has not run on this host yet" in shown["error"]
    assert shown["failed_attempt"] is None


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "Is a directory"),
        ("[]", "not a JSON object"),
        ('{"runs": "x"}', "runs is not a list of objects"),
        ('{"runs": [{"steps": {"a": 1}}]}', "runs[0].steps is not a list"),
        ('{"runs": [{"steps": [{"name": 1, "status": "failed"}]}]}', "runs[0].steps[0]"),
        ('{"runs": [{"steps": [{"name": "a", "status": "b", "actions": 5}]}]}', "steps[0]"),
        ("\udcff", "cannot read"),
    ],
    ids=["directory", "list", "runs", "steps", "name", "actions", "not-utf8"],
)
def test_status_of_a_broken_state_file_is_one_line_and_exit_2(
    tmp_path: Path, content: str | None, expected: str
) -> None:
    path = tmp_path / "state.json"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content.encode(errors="surrogateescape"))
    for json_flag in ([], ["--json"]):
        proc = cli("status", "--state", str(path), *json_flag)
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr
        assert expected in (proc.stderr if not json_flag else json.loads(proc.stdout)["error"])


def test_status_never_reads_through_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "elsewhere.json"
    real.write_text(json.dumps({"instance_id": "i-1", "runs": []}))
    (tmp_path / "state.json").symlink_to(real)
    proc = cli("status", "--state", str(tmp_path / "state.json"))
    assert proc.returncode == 2
    assert "a symlink, not trusted" in proc.stderr


@pytest.mark.parametrize("command", [["config", "validate"], ["config", "schema"]])
def test_config_commands_take_the_global_options_after_them(
    tmp_path: Path, command: list[str]
) -> None:
    # Issue 14: the README says global options may come after the command.
    good = tmp_path / "config.toml"
    good.write_text("[storage]\nlevel = 6\n")
    proc = cli(*command, "--config", str(good), "--json", "-v", "--log-format", "text")
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    assert shown.get("valid") is True or shown.get("title") == "Config"


def test_check_json_on_a_configuration_error_is_json(lab: dict[str, str]) -> None:
    Path(lab["config"]).write_text("[storage]\nlevel = 'five'\n")
    proc = cli("check", *opts(lab), "--json")
    assert proc.returncode == 3
    shown = json.loads(proc.stdout)
    assert shown["status"] == "UNKNOWN"
    assert "storage.level" in shown["summary"]


@pytest.mark.parametrize("wait", ["inf", "nan", "-1", "1e9", "soon"])
def test_wait_must_be_a_finite_number_of_seconds(lab: dict[str, str], wait: str) -> None:
    proc = cli("reconcile", *opts(lab), "--wait", wait)
    assert proc.returncode == 2
    assert "is not a number of seconds" in proc.stderr


def test_dry_run_honours_wait(lab: dict[str, str]) -> None:
    holder = start_holder(Path(lab["lock"]), 1.0)
    try:
        assert cli("reconcile", *opts(lab), "--dry-run", "--wait", "0").returncode == 3
        proc = cli("reconcile", *opts(lab), "--dry-run", "--wait", "30")
        assert proc.returncode == 0, proc.stderr
    finally:
        holder.wait()


def test_a_lock_path_that_cannot_be_opened_is_one_line(lab: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    for lock in (tmp_path, tmp_path / "file" / "lock"):  # a directory; below a file
        proc = cli(
            "reconcile", "--config", lab["config"], "--state", lab["state"], "--lock", str(lock)
        )
        assert proc.returncode == 1
        assert proc.stderr.startswith("cockpit-agent: cannot open the run lock")
        assert "Traceback" not in proc.stderr


# --- issue 14: a run that fails before its steps leaves a trace in status and check ----------


def test_a_typo_in_a_dropin_shows_in_status_and_check(lab: dict[str, str]) -> None:
    assert cli("reconcile", *opts(lab)).returncode == 0
    assert cli("status", *opts(lab)).returncode == 0
    dropin = Path(lab["config"]).parent / "config.d" / "50-typo.toml"
    dropin.parent.mkdir()
    dropin.write_text("[storge]\nlevel = 6\n")
    assert cli("plan", *opts(lab)).returncode == 2
    assert cli("reconcile", *opts(lab), "--dry-run").returncode == 2
    assert cli("status", *opts(lab)).returncode == 0  # neither records anything
    assert cli("reconcile", *opts(lab)).returncode == 2  # what the boot unit runs
    status = cli("status", *opts(lab))
    assert status.returncode == 1
    assert "FAILED before its steps (exit 2)" in status.stdout
    assert f"{dropin}: storge: unknown key" in status.stdout
    assert "result converged" in status.stdout  # the run before it is still shown
    shown = json.loads(cli("status", *opts(lab), "--json").stdout)
    assert shown["failed_attempt"]["exit_code"] == 2
    assert "storge" in shown["failed_attempt"]["error"]
    check = cli("check", *opts(lab))  # the configuration is still broken: UNKNOWN, naming it
    assert check.returncode == 3 and "storge: unknown key" in check.stdout
    dropin.unlink()
    check = cli("check", *opts(lab))  # fixed, but not reconciled since
    assert check.returncode == 2, check.stdout
    assert "failed before its steps" in check.stdout
    assert cli("reconcile", *opts(lab)).returncode == 0
    assert cli("status", *opts(lab)).returncode == 0
    assert cli("check", *opts(lab)).returncode == 0


def test_an_unexpected_error_is_one_line_and_the_commands_code(
    lab: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    # A path with a NUL byte: os.open raises ValueError, which no command expects.
    bad = "/tmp/lock\x00"
    assert main(["reconcile", *opts(lab)[:4], "--lock", bad]) == 1
    err = capsys.readouterr().err
    assert err == "cockpit-agent: internal error: ValueError: embedded null byte\n"
    attempt = json.loads(Path(lab["state"]).with_name("state.failed-attempt.json").read_text())
    assert attempt["error"] == "internal error: ValueError: embedded null byte"
    assert main(["check", "--config", lab["config"], "--state", "/tmp/state\x00"]) == 3
    assert capsys.readouterr().out.startswith("COCKPIT-AGENT UNKNOWN - internal error: ValueError")


def packaged(root: Path) -> Path:
    """The packages' layout under `root`: bin/cockpit-agent (the launcher), and the directory
    of the agent's package under lib/cockpit-agent/lib (empty, for the test to fill)."""
    (root / "bin").mkdir()
    (root / "bin" / "cockpit-agent").write_text((ROOT / "packaging/cockpit-agent").read_text())
    lib = root / "lib" / "cockpit-agent"
    (lib / f"python{sys.version_info[0]}.{sys.version_info[1]}").mkdir(parents=True)
    (lib / "lib" / "cockpit_agent").mkdir(parents=True)
    return lib / "lib" / "cockpit_agent"


def test_the_packaged_launcher_answers_a_broken_install_as_unknown(tmp_path: Path) -> None:
    # /usr/bin/cockpit-agent of the packages, over libraries that cannot be imported: check
    # says UNKNOWN (3), not a traceback's exit 1 that the check unit counts as WARNING.
    package = packaged(tmp_path)
    (package / "__init__.py").write_text("import pydantic_core_missing\n")
    run = [sys.executable, "-I", str(tmp_path / "bin" / "cockpit-agent")]
    proc = subprocess.run([*run, "check"], capture_output=True, text=True, check=False)
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout == (
        "COCKPIT-AGENT UNKNOWN - cockpit-agent cannot start: ModuleNotFoundError: "
        "No module named 'pydantic_core_missing'\n"
    )
    proc = subprocess.run([*run, "status"], capture_output=True, text=True, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr


def test_the_packaged_launcher_keeps_site_packages_out_but_python3_systemd(
    tmp_path: Path,
) -> None:
    # This venv's site-packages stand for Debian's: yaml (as rich would) stays out, the
    # systemd package (the journal's fields) is found there.
    package = packaged(tmp_path)
    (package / "__init__.py").write_text("")
    (package / "cli.py").write_text(
        "import importlib.util, json, site, sys\n"
        "def main():\n"
        "    from systemd import journal\n"
        "    spec = importlib.util.find_spec\n"
        "    print(json.dumps({'yaml': spec('yaml') is not None, 'journal': journal.__file__,\n"
        "        'site': [p for p in sys.path if p in site.getsitepackages()]}))\n"
        "    return 0\n"
    )
    proc = subprocess.run(
        [sys.executable, "-I", str(tmp_path / "bin" / "cockpit-agent")],
        capture_output=True,
        text=True,
        check=True,
    )
    shown = json.loads(proc.stdout)
    assert shown["yaml"] is False and shown["site"] == []
    assert shown["journal"].startswith(tuple(site.getsitepackages()))
