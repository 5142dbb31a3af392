"""`make bench`: measured figures behind the project's speed and memory targets.

status: `cockpit-agent status` on a full state file against `cloud-init status`, interleaved in
one run; the target is a median wall time at most 0.25x cloud-init's and a peak RSS at most
25 MiB. Prints a Markdown table (paste it into docs/benchmarks.md) and exits 1 when a target
is missed.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

AGENT = Path(sys.executable).parent / "cockpit-agent"
TIME = "/usr/bin/time"


def measure(argv: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one run.

    The peak comes from GNU time, a small C program: a child forked from this Python process
    would report this process's own RSS as its peak (exec keeps the old high-water mark).
    """
    with tempfile.NamedTemporaryFile("r") as out:
        started = time.perf_counter()
        proc = subprocess.run(
            [TIME, "-f", "%M", "-o", out.name, *argv],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
        wall = time.perf_counter() - started
        if proc.returncode not in (0, 1):
            raise SystemExit(f"{argv} exited {proc.returncode}")
        return wall, int(out.read().split()[-1])


def sample_state(path: Path) -> None:
    """A state file as a host has it after ten runs of four steps."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "agent"))
    from cockpit_agent.state import RunRecord, State, StepRecord, save_state  # noqa: PLC0415

    state = State(instance_id="i-0bench00000000001")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for n in range(10):
        run = RunRecord(
            run_id=f"{n:016x}",
            started_at=start + timedelta(hours=n),
            agent_version="0.1.0",
            result="converged",
        )
        for name in ("rootfs", "storage", "virt", "lni"):
            run.steps.append(
                StepRecord(
                    name=name,
                    status="converged",
                    summary=f"{name} ok",
                    started_at=run.started_at,
                    duration_seconds=0.4,
                )
            )
        state.add_run(run)
    save_state(path, state)


def bench_status(rounds: int) -> tuple[list[str], bool]:
    """Rows of the table and whether the targets hold."""
    cloud_init = shutil.which("cloud-init")
    if cloud_init is None:
        raise SystemExit("cloud-init is not installed: run `make bench`, which installs it")
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "state.json"
        sample_state(state)
        ours_cmd = [str(AGENT), "status", "--state", str(state)]
        theirs_cmd = [cloud_init, "status"]
        for cmd in (ours_cmd, theirs_cmd):  # warm the page cache
            measure(cmd)
        ours, theirs = [], []
        for _ in range(rounds):  # interleaved, so load on the machine hits both alike
            ours.append(measure(ours_cmd))
            theirs.append(measure(theirs_cmd))
    o_wall = statistics.median(w for w, _ in ours)
    t_wall = statistics.median(w for w, _ in theirs)
    o_rss = max(r for _, r in ours) / 1024
    t_rss = max(r for _, r in theirs) / 1024
    ratio = o_wall / t_wall
    ok = ratio <= 0.25 and o_rss <= 25
    rows = [
        "| command | median wall | peak RSS |",
        "|---|---|---|",
        f"| `cockpit-agent status` | {o_wall * 1000:.1f} ms | {o_rss:.1f} MiB |",
        f"| `cloud-init status` | {t_wall * 1000:.1f} ms | {t_rss:.1f} MiB |",
        "",
        f"ratio {ratio:.2f} (target <= 0.25), peak {o_rss:.1f} MiB (target <= 25 MiB), "
        f"{rounds} interleaved rounds: {'PASS' if ok else 'FAIL'}",
    ]
    return rows, ok


def main() -> int:
    """Run every benchmark and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    rows, ok = bench_status(args.rounds)
    print("## status vs cloud-init status\n")
    print("\n".join(rows))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
