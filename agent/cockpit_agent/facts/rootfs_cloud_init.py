"""Whether cloud-init grows the root at boot: its growpart and resizefs modules and config.

cloud-init is installed and enabled (not disabled by /etc/cloud/cloud-init.disabled,
/run/cloud-init/disabled or `cloud-init=disabled` on the kernel command line), and its config,
/etc/cloud/cloud.cfg merged with cloud.cfg.d/*.cfg, lists `growpart` in a module list with a
`growpart.mode` that is not off/false and `growpart.devices` that name the root. The rootfs
step leaves the root to cloud-init then (docs/adr/0004-rootfs-and-cloud-init.md).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any

from cockpit_agent.facts.model import Frozen
from cockpit_agent.host.files import Files

CLOUD_INIT = "/usr/bin/cloud-init"
CLOUD_CFG = "/etc/cloud/cloud.cfg"
CLOUD_CFG_D = "/etc/cloud/cloud.cfg.d"
CLOUD_INIT_OFF = (
    ("/etc/cloud/cloud-init.disabled", "cloud-init is disabled by /etc/cloud/cloud-init.disabled"),
    ("/run/cloud-init/disabled", "cloud-init is disabled for this boot (/run/cloud-init/disabled)"),
)
MODULE_LISTS = ("cloud_init_modules", "cloud_config_modules", "cloud_final_modules")
# cloudinit.util.is_false and translate_bool (+ resizefs' "noblock"), compared in lower case.
FALSE_WORDS = frozenset({"off", "false", "no", "0"})
TRUE_WORDS = frozenset({"true", "on", "yes", "1", "noblock"})


class CloudInitGrowth(Frozen):
    """Whether cloud-init's growpart (partition) and resizefs (filesystem) modules act at boot."""

    growpart: bool
    resizefs: bool
    detail: str


def read_cloud_init_growth(files: Files, targets: Collection[str]) -> CloudInitGrowth:
    """What cloud-init does to the root at boot, from /etc/cloud (read below `files.root`).

    `targets` are the names under which cloud-init's `growpart.devices` could list the root
    (its mount point, source and device paths). User data is not read: it is per instance and
    may not have been fetched yet; the ADR (0004) says why the image's config is what counts.
    """
    off = _cloud_init_off(files)
    if off:
        return CloudInitGrowth(growpart=False, resizefs=False, detail=off)
    config = _cloud_config(files)
    modules = _module_names(config)
    growpart = config.get("growpart")
    options = growpart if isinstance(growpart, dict) else {}
    mode = str(options.get("mode", "auto"))
    devices = options.get("devices", ["/"])
    devices = [str(d) for d in devices] if isinstance(devices, list) else [str(devices)]
    resize = str(config.get("resize_rootfs", True)).lower() in TRUE_WORDS
    resizefs = "resizefs" in modules and resize
    fs_note = "resizefs grows the filesystem" if resizefs else "resizefs is off"
    if "growpart" not in modules:
        why = "growpart is not in cloud-init's module lists"
    elif mode.lower() in FALSE_WORDS:
        why = f"cloud-init's growpart mode is {mode}"
    elif not set(devices) & set(targets):
        why = f"cloud-init's growpart devices {devices} do not include it"
    else:
        detail = f"cloud-init's growpart module (mode {mode}) grows it at every boot; {fs_note}"
        return CloudInitGrowth(growpart=True, resizefs=resizefs, detail=detail)
    return CloudInitGrowth(growpart=False, resizefs=resizefs, detail=f"{why}; {fs_note}")


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


def _cloud_config(files: Files) -> dict[str, Any]:
    """cloud.cfg merged with cloud.cfg.d/*.cfg in name order: a later file wins, maps merge."""
    texts = [files.read(CLOUD_CFG) or ""]
    confd = files.path(CLOUD_CFG_D)
    if confd.is_dir():
        texts += [p.read_text(errors="replace") for p in sorted(confd.glob("*.cfg"))]
    merged: dict[str, Any] = {}
    for text in texts:
        _merge(merged, parse_cloud_config(text))
    return merged


def _merge(base: dict[str, Any], over: dict[str, Any]) -> None:
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def _module_names(config: dict[str, Any]) -> set[str]:
    """Module names in the three lists; an entry is `name` or `[name, frequency]`."""
    names = set()
    for key in MODULE_LISTS:
        entries = config.get(key)
        for entry in entries if isinstance(entries, list) else []:
            name = entry[0] if isinstance(entry, list) and entry else entry
            if isinstance(name, str):
                # cloud-init's own normalisation: cc_ prefix optional, - and _ alike.
                names.add(name.strip().replace("-", "_").removeprefix("cc_"))
    return names


# --- the part of YAML that cloud.cfg uses ---------------------------------------------------
# The agent needs three things from cloud-init's YAML: the module lists, the `growpart` map and
# `resize_rootfs`. PyYAML is not one of the agent's dependencies (cloud-init's own copy lives
# in the system Python), so this reads block maps and sequences, flow [lists] and {maps},
# quoted and plain scalars, and skips what it does not understand (block scalars, anchors).

_YamlLine = tuple[int, str]  # (indent, text without comment)


def parse_cloud_config(text: str) -> dict[str, Any]:
    """The top-level map of one cloud-config file; {} when it is not a map."""
    lines = _yaml_lines(text)
    if not lines:
        return {}
    node, _ = _y_node(lines, 0, lines[0][0])
    return node if isinstance(node, dict) else {}


def _yaml_lines(text: str) -> list[_YamlLine]:
    lines = []
    for raw in text.splitlines():
        body = _strip_comment(raw).rstrip()
        if body.strip() and body.strip() not in ("---", "..."):
            lines.append((len(body) - len(body.lstrip(" ")), body.strip()))
    return lines


def _strip_comment(line: str) -> str:
    quote = ""
    for i, ch in enumerate(line):
        before = line[i - 1] if i else " "
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"" and before in " \t:[{,-":
            quote = ch
        elif ch == "#" and before in " \t":
            return line[:i]
    return line


def _is_item(text: str) -> bool:
    return text == "-" or text.startswith("- ")


def _y_node(lines: list[_YamlLine], i: int, indent: int) -> tuple[Any, int]:
    """The block node at lines[i], whose lines are indented by `indent`."""
    if _is_item(lines[i][1]):
        return _y_seq(lines, i, indent)
    return _y_map(lines, i, indent)


def _y_seq(lines: list[_YamlLine], i: int, indent: int) -> tuple[list[Any], int]:
    items: list[Any] = []
    while i < len(lines) and lines[i][0] == indent and _is_item(lines[i][1]):
        rest = lines[i][1][1:].strip()
        i += 1
        if rest:
            items.append(_y_scalar(rest))
            i = _skip_deeper(lines, i, indent)
        elif i < len(lines) and lines[i][0] > indent:
            node, i = _y_node(lines, i, lines[i][0])
            items.append(node)
        else:
            items.append(None)
    return items, i


def _y_map(lines: list[_YamlLine], i: int, indent: int) -> tuple[dict[str, Any], int]:
    result: dict[str, Any] = {}
    while i < len(lines) and lines[i][0] == indent and not _is_item(lines[i][1]):
        match = re.match(r"^(\"[^\"]*\"|'[^']*'|[^:]+?)\s*:(?:\s+(.*))?$", lines[i][1])
        i += 1
        if match is None:
            i = _skip_deeper(lines, i, indent)
            continue
        key, rest = _unquote(match.group(1)), match.group(2)
        nested = i < len(lines) and (
            lines[i][0] > indent or (lines[i][0] == indent and _is_item(lines[i][1]))
        )
        if rest:
            result[key] = _y_scalar(rest)
            i = _skip_deeper(lines, i, indent)
        elif nested:
            result[key], i = _y_node(lines, i, lines[i][0])
        else:
            result[key] = None
    return result, _skip_deeper(lines, i, indent)


def _skip_deeper(lines: list[_YamlLine], i: int, indent: int) -> int:
    """Past lines indented deeper than `indent` that belong to nothing this reader keeps."""
    while i < len(lines) and lines[i][0] > indent:
        i += 1
    return i


def _y_scalar(text: str) -> Any:
    if text[0] in "[{":
        return _flow(text, 0)[0]
    return _unquote(text)


def _flow(s: str, i: int) -> tuple[Any, int]:
    """A flow node starting at s[i]: [a, b], {k: v}, 'quoted' or plain; returns (node, end)."""
    i = _skip_space(s, i)
    if i < len(s) and s[i] in "[{":
        closing = "]" if s[i] == "[" else "}"
        items: list[Any] = []
        pairs: dict[str, Any] = {}
        i += 1
        while i < len(s) and s[i] != closing:
            start = i
            node, i = _flow_scalar(s, i, ":,]}") if closing == "}" else _flow(s, i)
            i = _skip_space(s, i)
            if closing == "}":
                value = None
                if i < len(s) and s[i] == ":":
                    value, i = _flow(s, i + 1)
                pairs[str(node)] = value
            else:
                items.append(node)
            i = _skip_space(s, i)
            i = i + 1 if i < len(s) and s[i] == "," else max(i, start + 1)
            i = _skip_space(s, i)
        return (pairs if closing == "}" else items), i + 1
    return _flow_scalar(s, i, ",]}")


def _flow_scalar(s: str, i: int, stops: str) -> tuple[str, int]:
    if i < len(s) and s[i] in "'\"":
        end = s.find(s[i], i + 1)
        end = len(s) if end < 0 else end
        return s[i + 1 : end], end + 1
    j = i
    while j < len(s) and s[j] not in stops:
        j += 1
    return s[i:j].strip(), j


def _skip_space(s: str, i: int) -> int:
    while i < len(s) and s[i] in " \t":
        i += 1
    return i


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text
