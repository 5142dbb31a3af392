"""What cloud-init grows of the root at boot, and whether it has had its turn in this boot.

cloud-init runs at boot when it is installed and not disabled (/etc/cloud/cloud-init.disabled,
/run/cloud-init/disabled, `cloud-init=disabled` on the kernel command line). Its configuration
is /etc/cloud/cloud.cfg merged with cloud.cfg.d/*.cfg: each file read with PyYAML's safe_load,
as cloud-init reads it, and merged as cloud-init merges them (a later file wins, maps merge
key by key). Its growpart module grows the partitions named in `growpart.devices` (the root by
default) but skips a device-mapper device (an LVM root); resizefs grows the root filesystem.
Each runs in the stage of the module list that names it, and cloud-init's own
/run/cloud-init/status.json says which stages have finished in this boot.

The rootfs step grows what cloud-init leaves, after it, and nothing while a stage that runs
growpart or resizefs has yet to finish in this boot (docs/adr/0011-rootfs-after-cloud-init.md).
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from cockpit_agent.errors import AgentError
from cockpit_agent.facts.model import Frozen
from cockpit_agent.facts.rootfs import RootChain
from cockpit_agent.host.files import Files

CLOUD_INIT = "/usr/bin/cloud-init"
CLOUD_CFG = "/etc/cloud/cloud.cfg"
CLOUD_CFG_D = "/etc/cloud/cloud.cfg.d"
STATUS_JSON = "/run/cloud-init/status.json"  # this boot's (/run is a tmpfs)
CLOUD_INIT_OFF = (
    ("/etc/cloud/cloud-init.disabled", "cloud-init is disabled by /etc/cloud/cloud-init.disabled"),
    ("/run/cloud-init/disabled", "cloud-init is disabled for this boot (/run/cloud-init/disabled)"),
)
# Each module list and the stage that runs it, as status.json names the stages.
MODULE_STAGES = {
    "cloud_init_modules": "init",
    "cloud_config_modules": "modules-config",
    "cloud_final_modules": "modules-final",
}
# cloudinit.util.is_false and translate_bool (+ resizefs' "noblock"), compared in lower case.
NOBLOCK = "noblock"  # resizefs forks the resize and lets the stage finish without waiting
FALSE_WORDS = frozenset({"off", "false", "no", "0"})
TRUE_WORDS = frozenset({"true", "on", "yes", "1", NOBLOCK})


class CloudInitGrowth(Frozen):
    """What cloud-init grows of the root at boot, and which of its stages are still to run."""

    grows: list[str] = []  # layers of the root cloud-init grows, bottom up: "partition 2", ...
    pending: list[str] = []  # stages that run them and have not finished in this boot
    background_resize: bool = False  # resize_rootfs: noblock, resizefs forks its resize
    detail: str


def read_cloud_init_growth(files: Files, chain: RootChain) -> CloudInitGrowth:
    """What cloud-init does to `chain` at boot, from /etc/cloud and /run/cloud-init (read
    below `files.root`). User data is not read: it is per instance and may not have been
    fetched yet; the image's configuration is what the agent can see before cloud-init acts.

    Raises AgentError, naming the file, for a configuration file that is not YAML or whose
    document is not a mapping.
    """
    off = _cloud_init_off(files)
    if off:
        return CloudInitGrowth(detail=off)
    config = read_cloud_config(files)
    stages = _module_stages(config)
    devices, why_not = _growpart_devices(config, stages)
    resize_rootfs = _word(config.get("resize_rootfs", True))
    resizefs = "resizefs" in stages and resize_rootfs in TRUE_WORDS
    modules = (["growpart"] if devices is not None else []) + (["resizefs"] if resizefs else [])
    if not modules:
        return CloudInitGrowth(detail=f"cloud-init's {why_not} and resizefs is off")
    grows, skipped = _layers_grown(chain, devices, resizefs)
    ran = list(dict.fromkeys(stage for name in modules for stage in stages[name]))
    verb = "runs" if len(modules) == 1 else "run"
    detail = f"cloud-init's {' and '.join(modules)} {verb} in its {', '.join(ran)} stage"
    return CloudInitGrowth(
        grows=grows,
        pending=_unfinished(files, ran),
        background_resize=resizefs and resize_rootfs == NOBLOCK,
        detail="; ".join(n for n in (detail, why_not, skipped) if n),
    )


def read_cloud_config(files: Files) -> dict[str, Any]:
    """cloud.cfg merged with cloud.cfg.d/*.cfg in name order: a later file wins, maps merge."""
    paths = [CLOUD_CFG, *(p for p in files.glob(CLOUD_CFG_D, "*.cfg") if files.is_file(p))]
    merged: dict[str, Any] = {}
    for path in paths:
        _merge(merged, _load(files, path))
    return merged


def _load(files: Files, name: str) -> dict[str, Any]:
    """One file's mapping; {} when it is missing or empty (cloud-init reads those as {})."""
    try:
        data = yaml.safe_load(files.read_bytes(name) or b"")
    except OSError as exc:
        raise AgentError(f"{name}: cannot read cloud-init's configuration: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        why = f"{name}: cloud-init's configuration is not YAML: {problem}{where}"
        raise AgentError(why) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise AgentError(f"{name}: cloud-init's configuration is a {kind}, not a mapping")
    return data


def _merge(base: dict[str, Any], over: dict[str, Any]) -> None:
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def _cloud_init_off(files: Files) -> str | None:
    """Why cloud-init will not run at all, or None when it is installed and enabled."""
    if not files.exists(CLOUD_INIT):
        return "cloud-init is not installed"
    for marker, why in CLOUD_INIT_OFF:
        if files.exists(marker):
            return why
    if "cloud-init=disabled" in (files.read("/proc/cmdline") or "").split():
        return "cloud-init is disabled on the kernel command line"
    return None


def _module_stages(config: dict[str, Any]) -> dict[str, list[str]]:
    """Each module named in the three lists -> the stages that run it. An entry is `name` or
    `[name, frequency, ...]`; cloud-init's own normalisation: cc_ prefix optional, - and _ alike."""
    stages: dict[str, list[str]] = {}
    for key, stage in MODULE_STAGES.items():
        entries = config.get(key)
        for entry in entries if isinstance(entries, list) else []:
            name = entry[0] if isinstance(entry, list) and entry else entry
            if isinstance(name, str):
                module = name.strip().replace("-", "_").removeprefix("cc_")
                stages.setdefault(module, []).append(stage)
    return stages


def _growpart_devices(
    config: dict[str, Any], stages: dict[str, list[str]]
) -> tuple[list[str] | None, str]:
    """growpart's devices when it runs (cc_growpart's defaults: mode auto, devices ["/"]),
    else None and why not."""
    options = config.get("growpart")
    options = options if isinstance(options, dict) else {}
    mode = options.get("mode", "auto")
    devices = options.get("devices", ["/"])
    devices = [str(d) for d in devices] if isinstance(devices, list) else [str(devices)]
    if "growpart" not in stages:
        return None, "growpart is not in its module lists"
    if _word(mode) in FALSE_WORDS:
        return None, f"growpart mode is {_word(mode)}"
    if not devices:
        return None, "growpart has no devices"
    return devices, ""


def _layers_grown(
    chain: RootChain, devices: list[str] | None, resizefs: bool
) -> tuple[list[str], str]:
    """The layers of `chain` cloud-init grows, bottom up, and why growpart grows none of them.

    cc_growpart grows a partition named in `devices` directly, or the partition under a
    mount point or filesystem device named there; a name that leads to a device-mapper
    device (an LVM logical volume) is skipped. The growpart script then resizes an LVM PV on
    the partition it grew. resizefs fills the root filesystem's device: a layer of its own
    only when nothing the agent grows lies below it.
    """
    if devices is None:
        return [], ""  # growpart does not run (the caller says why): nothing below resizefs grew
    part = chain.partition
    root_names = {chain.mountpoint, chain.source, *([chain.device.path] if chain.device else [])}
    named = bool(set(devices) & root_names)
    grows: list[str] = []
    skipped = ""
    if (part and part.device.path in devices) or (named and part and not chain.lv):
        grows.append(f"partition {part.number}")
    elif named and chain.lv:
        skipped = f"its growpart skips the device-mapper root {chain.lv.device.path}"
    elif part:
        skipped = f"its growpart devices {devices} do not name the root"
    if part and grows and not part.last:
        return [], f"partition {part.number} is not the last on its disk, growpart cannot grow it"
    if grows and chain.lv:
        grows.append("the PV")
    if resizefs and grows and not chain.lv:
        grows.append("the filesystem")
    return grows, skipped


def _unfinished(files: Files, stages: list[str]) -> list[str]:
    """The stages that have not finished in this boot, by cloud-init's status.json."""
    try:
        status = json.loads(files.read(STATUS_JSON) or "{}")["v1"]
        finished = {s for s, v in status.items() if isinstance(v, dict) and v.get("finished")}
    except (ValueError, TypeError, KeyError, AttributeError):
        finished = set()  # no status of this boot yet, or not one cloud-init wrote
    return [s for s in stages if s not in finished]


def _word(value: Any) -> str:
    """A YAML scalar as cloud-init compares it: `off` loads as False, which it reads as false."""
    return str(value).lower().strip()
