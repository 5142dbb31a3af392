"""Property-based tests of every parser of outside input (issue 14).

Each parser either returns its value or raises the agent's own error (an AgentError, with a
message); nothing else may escape. Examples are few (the "unit" profile in tests/conftest.py)
so that `make unit` stays fast; HYPOTHESIS_PROFILE=fuzz searches for longer.

/proc/mdstat has no parser to fuzz: the agent reads md state from sysfs (facts/md.py).
"""

from __future__ import annotations

import io
import json
import tempfile
import urllib.error
from collections.abc import Callable, Iterator
from contextlib import redirect_stderr, redirect_stdout
from email.message import Message
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cockpit_agent.cli import main
from cockpit_agent.config import ImdsConfig, load_config
from cockpit_agent.errors import AgentError
from cockpit_agent.facts import disks, md, platform
from cockpit_agent.facts.imds import (
    IDENTITY_PATH,
    MACS_PATH,
    OUTPOST_ARN_PATH,
    PRIMARY_MAC_PATH,
    TOKEN_PATH,
    ImdsClient,
)
from cockpit_agent.host import block, mounts
from cockpit_agent.render import fstab, mdadm
from cockpit_agent.state import read_state
from cockpit_agent.steps.rootfs import observed as rootfs_measure
from cockpit_agent.steps.storage.observed import level_number
from tests.fakes import FakeRunner


def parses_or_agent_error(parse: Callable[[], Any]) -> Any:
    """Run `parse`; an AgentError is a fine outcome, as long as it says something."""
    try:
        return parse()
    except AgentError as exc:
        assert str(exc).strip(), f"{type(exc).__name__} without a message"
        return None


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    """One directory for every example of a module (hypothesis reruns a test many times)."""
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp)


# Text as hosts and tools write it: mostly printable, sometimes anything at all; and the
# characters that trip parsers ("²".isdigit() is true, int("²") raises; quotes; escapes).
LINE_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=80)
TRICKY = st.sampled_from(
    ["", " ", "0", "²", "\u0661", "-1", "1e3", '"', "'", "\\", "\\040", "\x00"]
)
ANY_TEXT = st.one_of(
    LINE_TEXT,
    st.binary(max_size=80).map(lambda b: b.decode("latin-1")),
    st.lists(TRICKY | LINE_TEXT, max_size=4).map("".join),
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | LINE_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(LINE_TEXT, inner, max_size=4),
    max_leaves=12,
)


# --- configuration TOML and drop-ins ------------------------------------------------------

SECTIONS = {
    "imds": ["endpoint", "token_ttl_seconds", "request_timeout_seconds", "boot_wait_seconds"],
    "storage": ["level", "mount_point", "devices", "min_device_size", "label", "chunk_kib"],
    "virt": ["port", "tls_certificate", "tls_key", "packages", "disallow_root"],
    "lni": ["device_index", "mac", "address", "dns", "mode", "route_subnet", "gateway"],
    "rootfs": ["enabled", "leave_free_percent"],
    "nosuch": ["key"],
}


def toml_value(value: Any) -> str:
    """A TOML literal for a JSON-ish value (strings as JSON strings, which TOML reads too)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return {"inf": "inf", "-inf": "-inf", "nan": "nan"}.get(str(value), repr(value))
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value if v is not None) + "]"
    if isinstance(value, dict):
        items = (f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items() if v is not None)
        return "{" + ", ".join(items) + "}"
    return json.dumps(value)


@st.composite
def toml_documents(draw: st.DrawFn) -> bytes:
    """Tables and keys of the real schema (and a few others) with values of any type."""
    lines = []
    for section in draw(st.lists(st.sampled_from(sorted(SECTIONS)), max_size=4, unique=True)):
        lines.append(f"[{section}]")
        for key in draw(st.lists(st.sampled_from(SECTIONS[section]), max_size=4, unique=True)):
            value = draw(JSON_VALUES.filter(lambda v: v is not None))
            lines.append(f"{key} = {toml_value(value)}")
    text = "\n".join(lines) + "\n"
    noise = draw(st.sampled_from(["", "", "", "\xff", "[", "a = [[[[", "\x00"]))
    return (text + noise).encode("utf-8", errors="surrogateescape")


@given(main=toml_documents() | st.binary(max_size=200), dropin=st.none() | toml_documents())
def test_configuration_parses_or_is_a_config_error(
    workdir: Path, main: bytes, dropin: bytes | None
) -> None:
    config = workdir / "config.toml"
    config.write_bytes(main)
    extra = workdir / "config.d" / "50-x.toml"
    extra.parent.mkdir(exist_ok=True)
    extra.unlink(missing_ok=True)
    if dropin is not None:
        extra.write_bytes(dropin)
    parses_or_agent_error(lambda: load_config(config))


# --- IMDS answers ---------------------------------------------------------------------------

OUTPOST = "arn:aws:outposts:us-west-2:111122223333:outpost/op-0123456789abcdef0"
MACS = st.from_regex(r"\A[0-9a-f]{2}(:[0-9a-f]{2}){5}\Z") | LINE_TEXT


def plausible_or_anything(plausible: st.SearchStrategy[str]) -> st.SearchStrategy[bytes]:
    """An answer that is plausible, text of any kind, or bytes (not UTF-8, a megabyte, ...)."""
    return st.one_of(
        plausible.map(str.encode),
        ANY_TEXT.map(lambda t: t.encode("utf-8", errors="surrogateescape")),
        st.binary(max_size=64),
        st.just(b"x" * ((1 << 20) + 1)),
    )


IDENTITY = st.fixed_dictionaries(
    {
        "instanceId": st.just("i-0123456789abcdef0") | JSON_VALUES,
        "region": st.just("us-west-2") | JSON_VALUES,
        "availabilityZone": st.just("us-west-2a") | JSON_VALUES,
        "instanceType": st.just("c6id.metal") | JSON_VALUES,
        "accountId": st.just("111122223333") | JSON_VALUES,
    }
).map(json.dumps)


@st.composite
def imds_answers(draw: st.DrawFn) -> dict[str, bytes | int]:
    """A body (or an HTTP status) for every path the client asks; "*" for any other."""
    macs = draw(st.lists(MACS, max_size=3))
    answer: dict[str, bytes | int] = {
        TOKEN_PATH: draw(plausible_or_anything(st.just("AQAEAtoken=="))),
        IDENTITY_PATH: draw(plausible_or_anything(IDENTITY | JSON_VALUES.map(json.dumps))),
        PRIMARY_MAC_PATH: draw(plausible_or_anything(MACS)),
        MACS_PATH: draw(plausible_or_anything(st.just("\n".join(f"{m}/" for m in macs)))),
        "keys": draw(
            plausible_or_anything(st.just("device-number\nnetwork-card\nlocal-ipv4s\nsubnet-id"))
        ),
        OUTPOST_ARN_PATH: draw(plausible_or_anything(st.just(OUTPOST))),
        "*": draw(plausible_or_anything(st.sampled_from(["0", "1", "10.0.0.1", "subnet-1"]))),
    }
    statuses = st.sampled_from([401, 404, 500])
    for path in draw(st.lists(st.sampled_from(sorted(answer)), max_size=2)):
        answer[path] = draw(statuses)
    return answer


class AnsweringOpener:
    """Stands in for urllib's opener: answers each path from a table, without a socket."""

    def __init__(self, answers: dict[str, bytes | int]) -> None:
        self.answers = answers

    def open(self, req: Any, timeout: float) -> io.BytesIO:
        path = urlsplit(req.full_url).path
        if path.startswith(MACS_PATH) and path != MACS_PATH:
            key = "keys" if path.endswith("/") else "*"
        else:
            key = path if path in self.answers else "*"
        answer = self.answers[key]
        if isinstance(answer, int):
            raise urllib.error.HTTPError(req.full_url, answer, "no", Message(), None)
        return io.BytesIO(answer)


@settings(suppress_health_check=[HealthCheck.large_base_example, HealthCheck.too_slow])
@given(answers=imds_answers())
def test_imds_answers_parse_or_are_an_imds_error(answers: dict[str, bytes | int]) -> None:
    config = ImdsConfig(boot_wait_seconds=0, retries=1)
    client = ImdsClient(config, sleep=lambda s: None, opener=AnsweringOpener(answers))  # type: ignore[arg-type]
    identity = parses_or_agent_error(client.identity)
    interfaces = parses_or_agent_error(client.interfaces)
    outpost = parses_or_agent_error(client.outpost_arn)
    assert outpost is None or outpost.startswith("arn:aws")
    if identity is not None:
        assert identity.instance_id.startswith("i-")
    for interface in interfaces or []:
        assert interface.device_number >= 0 and len(interface.mac) == 17


# --- blkid, wipefs, mdadm --detail --export -------------------------------------------------

EXPORT_LINES = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["TYPE", "UUID", "LABEL", "MD_NAME", "MD_UUID"]), ANY_TEXT).map(
            "=".join
        ),
        ANY_TEXT,
    ),
    max_size=6,
).map("\n".join)


@given(text=EXPORT_LINES)
def test_key_value_exports_always_parse(text: str) -> None:
    for parse in (block.parse_export, md.parse_export):
        pairs = parse(text)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in pairs.items())
    uuid = md.normalize_uuid(md.parse_export(text).get("MD_UUID", ""))
    assert uuid is None or len(uuid) == 35


WIPEFS = st.one_of(
    st.fixed_dictionaries({"signatures": st.lists(JSON_VALUES, max_size=3) | JSON_VALUES}),
    JSON_VALUES,
).map(json.dumps)


@given(blkid=EXPORT_LINES, rc=st.sampled_from([0, 2, 8]), wipefs=WIPEFS | ANY_TEXT)
def test_a_disk_probe_parses_or_records_why_not(blkid: str, rc: int, wipefs: str) -> None:
    runner = FakeRunner()
    runner.expect("blkid", "-p", "-o", "export", "/dev/x", rc=rc, stdout=blkid)
    runner.expect("wipefs", "--json", "--no-act", "/dev/x", stdout=wipefs)
    probed = disks._probe(runner, "/dev/x", [])
    if probed["probe"] is None:
        assert probed["probe_error"]
    else:
        assert all(isinstance(s, str) for s in probed["signatures"])


MD_ATTRS = [
    "size", "dev", "md/level", "md/raid_disks", "md/array_state", "md/degraded",
    "md/sync_action", "md/sync_completed", "md/metadata_version", "md/chunk_size",
    "md/stripe_cache_size", "md/uuid", "md/dev-nvme1n1/slot", "md/dev-nvme1n1/state",
]  # fmt: skip
SYSFS_VALUES = st.one_of(
    st.sampled_from(["", "0", "3", "raid5", "clean", "inactive", "idle", "in_sync,write_mostly"]),
    st.sampled_from(["²", "raid²", "5 / ²", "\u0661"]),
    ANY_TEXT,
)


@given(attrs=st.dictionaries(st.sampled_from(MD_ATTRS), SYSFS_VALUES), detail=EXPORT_LINES)
def test_an_md_array_reads_from_any_sysfs_and_mdadm_answer(
    workdir: Path, attrs: dict[str, str], detail: str
) -> None:
    node = workdir / "sys" / "block" / "md127"
    member = node / "md" / "dev-nvme1n1"
    member.mkdir(parents=True, exist_ok=True)
    for name in MD_ATTRS:
        (node / name).unlink(missing_ok=True)
        if name in attrs:
            (node / name).write_text(attrs[name])
    runner = FakeRunner()
    runner.expect("mdadm", "--detail", "--export", "/dev/md127", stdout=detail)
    array = md.read_array(runner, node)
    assert array.raid_disks >= 0 and array.size_bytes >= 0
    assert array.progress is None or array.progress.endswith("%")
    assert level_number(array.level) in (None, *range(100))


# --- JSON and text reports of the root chain's tools (lsblk, LVM, dumpe2fs, xfs_info, ...) ----

LSBLK = st.one_of(
    st.lists(st.fixed_dictionaries({"kname": JSON_VALUES, "size": JSON_VALUES}), max_size=3).map(
        lambda rows: json.dumps({"blockdevices": rows})
    ),
    JSON_VALUES.map(json.dumps),
    ANY_TEXT,
)


@given(out=LSBLK)
def test_lsblk_sizes_parse_or_are_an_agent_error(out: str) -> None:
    runner = FakeRunner()
    argv = ["lsblk", "--json", "--bytes", "--nodeps", "--output", "KNAME,SIZE", "/dev/x"]
    runner.expect(*argv, stdout=out)
    sizes = parses_or_agent_error(lambda: rootfs_measure.block_sizes(runner, ["/dev/x"]))
    assert sizes is None or all(isinstance(v, int) and v >= 0 for v in sizes.values())


LVM_ROW = st.dictionaries(
    st.sampled_from(rootfs_measure.PVS_FIELDS.split(",") + rootfs_measure.LVS_FIELDS.split(",")),
    JSON_VALUES | st.integers(0, 1 << 40).map(str),
)
LVM_REPORT = st.one_of(
    st.lists(LVM_ROW, max_size=2).map(
        lambda rows: json.dumps({"report": [{"pv": rows, "lv": rows}]})
    ),
    JSON_VALUES.map(json.dumps),
    ANY_TEXT,
)


@given(pvs=LVM_REPORT, lvs=LVM_REPORT)
def test_lvm_reports_parse_or_are_an_agent_error(pvs: str, lvs: str) -> None:
    runner = FakeRunner()
    report = list(rootfs_measure.LVM_REPORT)
    runner.expect("pvs", *report, rootfs_measure.PVS_FIELDS, "/dev/pv", stdout=pvs)
    runner.expect("lvs", *report, rootfs_measure.LVS_FIELDS, "/dev/lv", stdout=lvs)
    parses_or_agent_error(lambda: rootfs_measure.measure_pv(runner, "/dev/pv").missing_extents)
    parses_or_agent_error(lambda: rootfs_measure.measure_lv(runner, "/dev/lv").extendable(10))


DUMPE2FS_KEYS = [
    "Block size", "Block count", "First block", "Blocks per group", "Inode blocks per group",
    "Filesystem features", "Cluster size", "Group descriptor size", "Reserved GDT blocks",
]  # fmt: skip


@given(
    sb=st.dictionaries(
        st.sampled_from(DUMPE2FS_KEYS),
        st.integers(-2, 1 << 34).map(str) | st.sampled_from(["64bit sparse_super"]) | ANY_TEXT,
    ),
    blocks=st.integers(0, 1 << 36),
)
def test_dumpe2fs_parses_or_is_an_agent_error(sb: dict[str, str], blocks: int) -> None:
    text = "\n".join(f"{k}:   {v}" for k, v in sb.items())
    fs = parses_or_agent_error(lambda: rootfs_measure.ext_size(text, "/dev/x", blocks * 4096))
    assert fs is None or 0 <= fs.reachable <= blocks * 4096


@given(out=ANY_TEXT | st.builds(
    "data     =  bsize={} blocks={}, imaxpct=25\n  agcount=4, agsize={} blks".format,
    st.integers(0, 1 << 20), st.integers(0, 1 << 40), st.integers(0, 1 << 30),
), device_size=st.integers(0, 1 << 50))  # fmt: skip
def test_xfs_info_parses_or_is_an_agent_error(out: str, device_size: int) -> None:
    fs = parses_or_agent_error(lambda: rootfs_measure.xfs_size(out, "/", device_size))
    assert fs is None or fs.reachable >= 0


# --- mountinfo, /proc/swaps, fstab, mdadm.conf, os-release ------------------------------------

MOUNTINFO_LINE = st.one_of(
    st.builds(
        "{} {} {} {} {} rw - {} {} rw".format,
        st.integers(0, 99), st.integers(0, 99), st.sampled_from(["8:1", "0:52", "9:127", ""]),
        st.just("/"), st.sampled_from(["/", "/srv", "/var/lib/libvirt/images", "/a\\040b"]),
        st.sampled_from(["xfs", "ext4", ""]), st.sampled_from(["/dev/md127", "/dev/x\\134"]),
    ),
    ANY_TEXT,
)  # fmt: skip


@given(lines=st.lists(MOUNTINFO_LINE, max_size=5), swaps=st.lists(ANY_TEXT, max_size=3))
def test_mount_tables_always_parse(workdir: Path, lines: list[str], swaps: list[str]) -> None:
    proc = workdir / "proc"
    (proc / "self").mkdir(parents=True, exist_ok=True)
    (proc / "self" / "mountinfo").write_text("\n".join(lines), errors="surrogateescape")
    (proc / "swaps").write_text("\n".join(["Filename Type", *swaps]), errors="surrogateescape")
    found = mounts.read_mountinfo(proc)
    assert all(isinstance(m.mountpoint, str) and isinstance(m.fstype, str) for m in found)
    assert all(isinstance(s, str) for s in mounts.read_swaps(proc))
    at = mounts.mount_at("/srv", proc)
    assert at is None or (isinstance(at.dev, str) and isinstance(at.source, str))


FSTAB = st.lists(
    st.one_of(
        st.just(fstab.MARKER),
        st.just(mdadm.MARKER),
        st.builds("UUID={} {} xfs defaults 0 0".format, ANY_TEXT, st.just("/srv")),
        ANY_TEXT,
    ),
    max_size=6,
).map("\n".join)


@given(text=FSTAB)
def test_fstab_and_mdadm_conf_always_parse(text: str) -> None:
    for line in fstab.owned_lines(text):
        spec = fstab.parse_line(line)
        assert spec is None or isinstance(spec.mount_point, str)
    assert isinstance(fstab.foreign_mounts_at(text, "/srv"), list)
    assert fstab.owned_lines(fstab.render_fstab(text, None)) == []
    for line in mdadm.owned_lines(text):
        mdadm.line_uuid(line)
    assert isinstance(mdadm.listed_by_admin(text, "a:b:c:d"), bool)


OS_RELEASE = st.lists(
    st.one_of(st.builds("{}={}".format, st.sampled_from(["ID", "ID_LIKE"]), ANY_TEXT), ANY_TEXT),
    max_size=5,
).map("\n".join)


@given(text=OS_RELEASE)
@example(text='ID="debian')  # shlex: "No closing quotation"
def test_os_release_always_parses(text: str) -> None:
    release = platform.parse_os_release(text)
    assert platform.os_family(release) in ("debian", "rhel", "unknown") or release


# --- the state file ---------------------------------------------------------------------------

STATE = st.fixed_dictionaries(
    {},
    optional={
        "schema_version": st.just(1) | JSON_VALUES,
        "instance_id": st.just("i-1") | JSON_VALUES,
        "runs": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "run_id": JSON_VALUES,
                    "started_at": st.just("2026-12-01T00:00:00Z") | JSON_VALUES,
                    "result": st.sampled_from(["failed", "converged"]) | JSON_VALUES,
                    "location": st.fixed_dictionaries({"summary": JSON_VALUES}) | JSON_VALUES,
                    "steps": st.lists(st.dictionaries(LINE_TEXT, JSON_VALUES), max_size=2)
                    | JSON_VALUES,
                },
            )
            | JSON_VALUES,
            max_size=2,
        )
        | JSON_VALUES,
        "step_data": JSON_VALUES,
    },
)


@given(content=STATE.map(json.dumps) | JSON_VALUES.map(json.dumps) | ANY_TEXT)
def test_the_state_file_parses_or_is_a_state_error(workdir: Path, content: str) -> None:
    path = workdir / "state.json"
    path.write_text(content, errors="surrogateescape")
    parses_or_agent_error(lambda: read_state(path))


@given(content=STATE.map(json.dumps) | JSON_VALUES.map(json.dumps) | ANY_TEXT)
def test_status_shows_any_state_file_or_says_why_not(workdir: Path, content: str) -> None:
    # `status` reads the JSON itself (ADR 0002): it must cope with any shape on its own.
    path = workdir / "state.json"
    path.write_text(content, errors="surrogateescape")
    for flags in ([], ["--json"]):
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            code = main(["status", "--state", str(path), *flags])
        assert code in (0, 1, 2)
        assert "internal error" not in err.getvalue()
        if flags:
            assert isinstance(json.loads(out.getvalue()), dict)
