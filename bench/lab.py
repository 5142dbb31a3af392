"""`make bench-lab`: figures that only the QEMU lab (root, TCG) can give. Prints Markdown
tables for docs/benchmarks.md and exits 1 when a target is missed.

storage: the storage step's time to a mounted array against the drives' size. The step must
not wait for the RAID5 initial resync, so its time from start to a mounted
filesystem should not grow with the drives. For 3 x 256 MiB and then 3 x 4 GiB drives: the
first boot's run, then `rounds - 1` more first runs of the step from blank drives (array
stopped, members wiped, its fstab/mdadm.conf lines and state removed). The figure per size is
the median; the target is a difference under 20%.

check: `cockpit-agent check` on a converged guest (the stock image with the agent baked in,
every step on) against `cloud-init status` in the same guest, interleaved, once cloud-init
has finished its boot stages. Target: a median at most 1x.
`cockpit-agent config validate` runs alongside as a reference: what reading the configuration
costs before any look at the host.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import statistics
import sys
import tempfile
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.e2e.guest
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lab"))

from cockpit_lab.build import agent_package, baked_image
from cockpit_lab.recipe import default_recipe
from cockpit_lab.vm import Lab, LabSpec
from tests.e2e.guest import ARRAY, MP, members, step_record

OTHERS_OFF = "\n[virt]\nenabled = false\n\n[lni]\nenabled = false\n"

# Back to blank drives and no trace of the array, as at first boot; then the step alone.
REBUILD = f"""
set -e
umount {MP}
wipefs -a -q {ARRAY}  # else a new array over the same members shows the old filesystem
mdadm --stop {ARRAY}
for member in $MEMBERS; do wipefs -a -q $member; done
sed -i '/^# cockpit-agent storage:/,+1d' /etc/fstab /etc/mdadm/mdadm.conf
rm -f /etc/udev/rules.d/69-cockpit-agent-md-stripe-cache.rules /var/lib/cockpit-agent/state.json
systemctl daemon-reload
udevadm settle
cockpit-agent --log-format json reconcile --only storage
"""


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def to_mounted(lab: Lab, log: str) -> tuple[float, str]:
    """Seconds from the step's start (state.json) to the end of its Mount action (the agent's
    JSON log events), and the phases that make them up."""
    record = step_record(lab, "storage")
    if record["status"] != "changed":
        raise RuntimeError(f"the storage step did not build an array: {record}")
    started = at(record["started_at"])
    events = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    steps = [e for e in events if e.get("step") == "storage" and at(e["timestamp"]) >= started]
    times = [started] + [at(e["timestamp"]) for e in steps]
    names = ["observe, plan"] + [e.get("action", e["event"]) for e in steps]
    spans = [(names[i], (times[i + 1] - times[i]).total_seconds()) for i in range(len(steps))]
    end = next(i for i, (name, _) in enumerate(spans) if name == "Mount")
    spans = spans[: end + 1]
    return sum(s for _, s in spans), ", ".join(f"{n} {s:.2f}" for n, s in spans)


def measure(size: str, rounds: int, image: Path, work: Path) -> tuple[list[float], bool]:
    """Samples for one drive size, and whether the array was still resyncing after the first."""
    (work / size).mkdir()
    lab = Lab(work / size, image, LabSpec(nvme_count=3, nvme_size=size, extra_config=OTHERS_OFF))
    try:
        lab.boot()
        lab.wait_agent()
        first = lab.ssh("journalctl -b -o cat -u cockpit-agent.service").stdout
        seconds, phases = to_mounted(lab, first)
        syncing = any(w in lab.ssh("cat /proc/mdstat").stdout for w in ("resync", "recovery"))
        print(f"{size} first boot: {seconds:.2f} s ({phases}); resyncing after: {syncing}")
        samples = [seconds]
        for n in range(2, rounds + 1):
            drives = " ".join(sorted(members(lab)))
            proc = lab.ssh(f"MEMBERS='{drives}'\n" + REBUILD, timeout=600)
            seconds, phases = to_mounted(lab, proc.stderr)
            print(f"{size} run {n}: {seconds:.2f} s ({phases})")
            samples.append(seconds)
        return samples, syncing
    finally:
        lab.close()


def bench_storage(rounds: int, work: Path) -> bool:
    image = baked_image(default_recipe("base"), agent_package())
    results = {size: measure(size, rounds, image, work) for size in ("256M", "4G")}
    small, big = (statistics.median(results[s][0]) for s in ("256M", "4G"))
    diff = abs(big - small) / small
    print("\n| drives | samples (s) | median | still resyncing when mounted |")
    print("|---|---|---|---|")
    for size, (samples, syncing) in results.items():
        figures = ", ".join(f"{s:.2f}" for s in samples)
        median = statistics.median(samples)
        print(f"| 3 x {size} | {figures} | {median:.2f} s | {'yes' if syncing else 'no'} |")
    print(f"\nDifference {diff:.0%} (target < 20%).")
    return diff < 0.2


# Runs in the guest: the commands interleaved, wall seconds of each run as JSON.
TIMER = """
import json, subprocess, sys, time
rounds, argvs = int(sys.argv[1]), json.loads(sys.argv[2])
times = {name: [] for name in argvs}
for _ in range(rounds):
    for name, argv in argvs.items():
        started = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times[name].append(time.perf_counter() - started)
print(json.dumps(times))
"""
# Where a check's time goes: its phases one after another, through the agent's own functions,
# with the packaged launcher's sys.path (the package's libraries, no site-packages).
PHASES = """
import json, site, sys, time
prefix = "/usr/lib/cockpit-agent"
minor = f"python{sys.version_info[0]}.{sys.version_info[1]}"
sys.path[:] = [f"{prefix}/{minor}", f"{prefix}/lib"] + [
    p for p in sys.path if p not in site.getsitepackages()
]
times = {}
started = time.perf_counter()
def phase(name):
    global started
    now = time.perf_counter()
    times[name] = now - started
    started = now
import cockpit_agent.cli
phase("the CLI")
from cockpit_agent.config import load_config
config = load_config()
phase("importing and loading the configuration")
from cockpit_agent import check
from cockpit_agent.paths import STATE_PATH
phase("importing the check")
facts = check._gather(config)
phase("the facts")
from cockpit_agent.steps import all_steps
steps = all_steps()
phase("importing the steps")
check.run_check(config, facts, STATE_PATH, steps)
phase("the steps")
print(json.dumps(times))
"""
# The contenders, and for reference what any command that reads the configuration pays
# before it looks at the host: Python with pydantic, the models built, the file validated.
COMMANDS = {
    # A whole check, however long it takes: past the default 8 s it would answer UNKNOWN early.
    "cockpit-agent check": ["cockpit-agent", "check", "--timeout", "120"],
    "cloud-init status": ["cloud-init", "status"],
    "cockpit-agent config validate (reference)": ["cockpit-agent", "config", "validate"],
}


def bench_check(rounds: int, work: Path) -> bool:
    image = baked_image(default_recipe("stock"), agent_package())
    (work / "check").mkdir()
    lab = Lab(work / "check", image, LabSpec())
    try:
        lab.boot()
        lab.wait_agent(timeout=1200)
        lab.ssh("cloud-init status --wait >/dev/null", check=False, timeout=600)
        check = lab.ssh("cockpit-agent check --timeout 120", check=False).stdout.splitlines()[0]
        print(f"check on the converged guest: {check}")
        argvs = shlex.quote(json.dumps(COMMANDS))
        proc = lab.ssh(f"python3 - {rounds} {argvs} <<'EOF'\n{TIMER}\nEOF", timeout=3600)
        times: dict[str, list[float]] = json.loads(proc.stdout)
        phases: dict[str, list[float]] = {}
        for _ in range(5):
            out = lab.ssh(f"python3 -I - <<'EOF'\n{PHASES}\nEOF", timeout=600).stdout
            for name, seconds in json.loads(out.splitlines()[-1]).items():
                phases.setdefault(name, []).append(seconds)
    finally:
        lab.close()
    print("\n| phase of a check, one after another (median of 5) | seconds |\n|---|---|")
    for name, samples in phases.items():
        print(f"| {name} | {statistics.median(samples):.2f} |")
    print(f"\n| command (in the TCG guest, {rounds} rounds) | median wall |\n|---|---|")
    for name, samples in times.items():
        print(f"| `{name}` | {statistics.median(samples):.2f} s |")
    ours = statistics.median(times["cockpit-agent check"])
    theirs = statistics.median(times["cloud-init status"])
    print(f"\nRatio {ours / theirs:.2f} (target <= 1).")
    return ours <= theirs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", nargs="*", help="storage, check (default: both)")
    parser.add_argument("--rounds", type=int, default=3, help="storage samples per size")
    parser.add_argument("--check-rounds", type=int, default=10)
    args = parser.parse_args()
    which = args.which or ["storage", "check"]
    if unknown := set(which) - {"storage", "check"}:
        parser.error(f"unknown benchmark: {', '.join(sorted(unknown))}")
    work = Path(tempfile.mkdtemp(prefix="bench-lab-"))
    ok = True
    try:
        if "storage" in which:
            ok &= bench_storage(args.rounds, work)
        if "check" in which:
            ok &= bench_check(args.check_rounds, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
