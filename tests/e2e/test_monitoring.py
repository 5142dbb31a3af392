"""The monitoring contract (issue 20) judged by the clients admins run, on the main instance.

- node_exporter: Debian's prometheus-node-exporter, installed in the stock image as an admin
  installs it, with the Prometheus drop-in the agent ships
  (packaging/monitoring/cockpit-agent-check-prometheus.conf) on the sandboxed check unit. The
  timer's unit writes the textfile; node_exporter serves it on its /metrics; promtool (Debian's
  prometheus, unpacked on this host) checks what node_exporter served.
- a plugin executor: the monitoring-plugins' check_by_ssh (unpacked on this host), as Nagios
  or Icinga runs a check on a remote host, reads the agent's state from its exit code and its
  status line: OK (or WARNING where the guest has no /dev/kvm), CRITICAL once Cockpit's socket
  is stopped, and back once it is started again.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from cockpit_lab.vm import Lab
from tests.e2e.guest import has_kvm, sh
from tests.helpers.tools import UNPACKED, unpacked

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
PROMTOOL = UNPACKED / "prometheus/usr/bin/promtool"
CHECK_BY_SSH = UNPACKED / "monitoring-plugins-basic/usr/lib/nagios/plugins/check_by_ssh"
DROPIN = REPO / "packaging/monitoring/cockpit-agent-check-prometheus.conf"
DROPIN_PATH = "/etc/systemd/system/cockpit-agent-check.service.d/50-prometheus.conf"
SCRAPE = (
    "python3 -c 'import urllib.request,sys; "
    'sys.stdout.write(urllib.request.urlopen("http://127.0.0.1:9100/metrics", timeout=10)'
    ".read().decode())'"
)


def by_ssh(
    lab: Lab, command: str = "cockpit-agent check --timeout 50"
) -> subprocess.CompletedProcess[str]:
    argv = [
        str(unpacked(CHECK_BY_SSH)),
        *("-H", "127.0.0.1", "-p", str(lab.ports.mgmt_ssh), "-l", "root", "-i", str(lab.key)),
        *("-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-E"),
        *("-t", "60", "-C", command),
    ]
    return subprocess.run(argv, check=False, capture_output=True, text=True, timeout=120)


def test_node_exporter_serves_the_metrics_the_check_unit_writes(lab: Lab) -> None:
    dropin = DROPIN.read_text()
    lab.ssh(f"mkdir -p {Path(DROPIN_PATH).parent} && cat > {DROPIN_PATH} <<'EOF'\n{dropin}EOF")
    try:
        lab.ssh(
            "systemctl daemon-reload && systemctl start cockpit-agent-check.service", timeout=300
        )
        unit = sh(lab, "systemctl show -p Result -p ExecMainStatus cockpit-agent-check.service")
        assert "Result=success" in unit, unit
        assert sh(lab, "systemctl is-active prometheus-node-exporter").strip() == "active"
        served = sh(lab, SCRAPE)
    finally:
        lab.ssh(f"rm -f {DROPIN_PATH} && systemctl daemon-reload")
    ours = [line for line in served.splitlines() if "cockpit_agent_" in line]
    assert any(line.startswith("cockpit_agent_build_info{") for line in ours), ours
    assert "node_textfile_scrape_error 0" in served, "node_exporter could not read the textfile"
    proc = subprocess.run(
        [str(unpacked(PROMTOOL)), "check", "metrics"],
        check=False,
        input="\n".join(ours) + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_plugin_executor_reads_the_state_from_the_status_line_and_exit_code(lab: Lab) -> None:
    healthy = (0, "COCKPIT-AGENT OK - ") if has_kvm(lab) else (1, "COCKPIT-AGENT WARNING - ")
    proc = by_ssh(lab)
    assert (proc.returncode, proc.stdout[: len(healthy[1])]) == healthy, proc
    assert " | " in proc.stdout.splitlines()[0], proc.stdout  # perfdata after the status text
    lab.ssh("systemctl stop cockpit.socket cockpit.service")
    try:
        proc = by_ssh(lab)
        assert proc.returncode == 2, proc
        assert proc.stdout.startswith("COCKPIT-AGENT CRITICAL - "), proc.stdout
    finally:
        lab.ssh("systemctl start cockpit.socket")
    proc = by_ssh(lab)
    assert (proc.returncode, proc.stdout[: len(healthy[1])]) == healthy, proc
