"""Runs inside the lab guest with its system python3 (standard library only), sent over SSH.

    python3 - STEP K SETUP FOREIGN_JSON < crash_guest.py

SETUP (a shell script) puts the step back in the state that makes it act. With K = 0 the
agent plans afterwards (the planned actions are reported), then converges the step again.
With K >= 1, `cockpit-agent reconcile --only STEP` starts in a session of its own and, as
soon as its JSON log on stderr says it applies its K-th action, the whole session is killed
with SIGKILL, as systemd kills a unit's cgroup (no child such as mdadm or mkfs lives on).
Then the agent runs again, and once more with --dry-run. One JSON object on stdout says what
a test must judge: the action being applied when the kill came, both runs' exit codes and
records, the plan after, whether state.json parses, and for each file the step edits
(FOREIGN_JSON: {path: substring marking our lines}) a digest of the lines that are not the
agent's and a count of those that are, before SETUP and after the second run.
"""

import hashlib
import json
import os
import signal
import subprocess
import sys

STATE = "/var/lib/cockpit-agent/state.json"


def foreign(spec: dict[str, str]) -> dict[str, object]:
    """For each file, the sha256 of its lines that do not contain its marker (what is not the
    agent's) and how many do (the agent's own lines)."""
    out: dict[str, object] = {}
    for path, ours in sorted(spec.items()):
        try:
            with open(path) as fh:
                lines = fh.readlines()
        except FileNotFoundError:
            lines = ["<missing>"]
        kept = [line for line in lines if not ours or ours not in line]
        digest = hashlib.sha256("".join(kept).encode()).hexdigest()
        out[path] = {"foreign_sha256": digest, "ours": len(lines) - len(kept)}
    return out


def agent(*args: str) -> tuple[int, dict[str, object]]:
    proc = subprocess.run(
        ["cockpit-agent", "--json", *args], capture_output=True, text=True, check=False
    )
    try:
        return proc.returncode, json.loads(proc.stdout)
    except ValueError:
        return proc.returncode, {"stdout": proc.stdout, "stderr": proc.stderr[-2000:]}


def step_of(run: dict[str, object], name: str) -> dict[str, object]:
    steps = run.get("steps") or []
    assert isinstance(steps, list)
    return next((s for s in steps if s.get("name") == name), {})


def main() -> int:
    step, k, setup, spec = sys.argv[1], int(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
    report: dict[str, object] = {"step": step, "k": k, "foreign_before": foreign(spec)}
    subprocess.run(["sh", "-ec", setup], check=True, stdout=subprocess.DEVNULL)
    if k == 0:
        _, planned = agent("reconcile", "--only", step, "--dry-run")
        report["planned"] = step_of(planned, step).get("planned")
        report["converge_rc"], _ = agent("reconcile", "--only", step)
        print(json.dumps(report))
        return 0
    argv = ["cockpit-agent", "--log-format", "json", "reconcile", "--only", step]
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stderr is not None
    applied: list[str] = []
    for line in proc.stderr:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == "applying" and event.get("step") == step:
            applied.append(str(event.get("detail")))
            if len(applied) == k:
                os.killpg(proc.pid, signal.SIGKILL)
                break
    proc.wait()
    report["killed"] = len(applied) == k
    report["killed_during"] = applied[-1] if applied else None
    report["killed_rc"] = proc.returncode
    rc, run = agent("reconcile", "--only", step)
    report["recovery_rc"], report["recovery"] = rc, step_of(run, step)
    rc, plan = agent("reconcile", "--only", step, "--dry-run")
    report["plan_rc"], report["planned_after"] = rc, step_of(plan, step).get("planned")
    try:
        with open(STATE) as fh:
            json.load(fh)
        report["state_valid"] = True
    except (OSError, ValueError) as exc:
        report["state_valid"] = str(exc)
    report["foreign_after"] = foreign(spec)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
