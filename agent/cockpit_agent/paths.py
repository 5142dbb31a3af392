"""Default locations. Import-free on purpose: `status` and `--help` load this and little else."""

from pathlib import Path

CONFIG_PATH = Path("/etc/cockpit-agent/config.toml")
STATE_PATH = Path("/var/lib/cockpit-agent/state.json")
LOCK_PATH = Path("/run/cockpit-agent/lock")
