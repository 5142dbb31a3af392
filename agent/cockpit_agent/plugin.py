"""The monitoring-plugin output format (Nagios plugin development guidelines): a status line
`COCKPIT-AGENT <STATE> - <text> | <perfdata>` and exit codes 0-3. Light on purpose: the
command line answers a bad argument or a crash in this format without loading the agent."""

from __future__ import annotations

import re

PLUGIN = "COCKPIT-AGENT"  # the service name that starts the status line
LABEL = {0: "OK", 1: "WARNING", 2: "CRITICAL", 3: "UNKNOWN"}
UNKNOWN = 3
DEFAULT_TIMEOUT = 8.0  # seconds; under check_nrpe's default of 10


def status_text(code: int, text: str) -> str:
    """`COCKPIT-AGENT <STATE> - <text>`, the text on one line and without `|`, which would
    start the perfdata."""
    return f"{PLUGIN} {LABEL[code]} - {' '.join(text.replace('|', '/').split())}"


def perf(label: str, value: float | str, uom: str = "", *thresholds: object) -> str:
    """One perfdata item, 'label'=value[UOM];[warn];[crit];[min];[max]; the label is quoted,
    and its ' and = (which the syntax cannot hold) and white space (which some readers split
    on) become _."""
    clean = re.sub(r"['=\s]", "_", label)
    tail = ";".join("" if t is None else str(t) for t in thresholds).rstrip(";")
    return f"'{clean}'={value}{uom}" + (f";{tail}" if tail else "")
