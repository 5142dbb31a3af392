"""md RAID arrays as facts: sysfs for structure and state, `mdadm --detail --export` for
the array's name and UUID (which sysfs does not show).

Members that are not assembled into any array are seen through the disks' own probe
(`blkid -p` reports TYPE=linux_raid_member with the array's UUID and name): see
`superblock_of`.
"""

from __future__ import annotations

import re
from pathlib import Path

from cockpit_agent.errors import AgentError
from cockpit_agent.facts.disks import MD_MEMBER, Disk
from cockpit_agent.facts.model import Frozen
from cockpit_agent.host.run import Runner
from cockpit_agent.host.sysfs import SYSFS
from cockpit_agent.host.sysfs import attr as _attr
from cockpit_agent.host.sysfs import is_dir as _is_dir
from cockpit_agent.host.sysfs import listdir as _listdir

INACTIVE_STATES = ("", "inactive", "clear")
PARITY_LEVELS = ("raid4", "raid5", "raid6")


class MdMember(Frozen):
    """One component device of an array, as md sees it."""

    name: str  # kernel name of the component (nvme1n1)
    path: str  # /dev/nvme1n1
    role: int | None  # the slot it fills; None for a spare (or a device being rebuilt into)
    state: list[str]  # md's words: in_sync, faulty, spare, write_mostly, ...

    @property
    def faulty(self) -> bool:
        """md has failed this device."""
        return "faulty" in self.state

    @property
    def in_sync(self) -> bool:
        """The device holds current data for its slot."""
        return "in_sync" in self.state and not self.faulty


class MdArray(Frozen):
    """One md array: identity (from mdadm), shape and health (from sysfs)."""

    device: str  # kernel name, md127
    path: str  # /dev/md127
    dev: str  # major:minor
    name: str | None  # as stored in the superblock, e.g. "any:cockpit-data"
    uuid: str | None  # mdadm form, lower case
    level: str  # raid5, raid1, ...; "" while inactive
    raid_disks: int
    state: str  # md/array_state: clean, active, inactive, readonly, ...
    degraded: int  # missing members (md/degraded); 0 for levels without redundancy
    sync_action: str  # idle, resync, recover, check, reshape, ... ("" when not applicable)
    sync_completed: str  # "done / total" sectors, or "none"
    metadata: str
    chunk_bytes: int
    stripe_cache_size: int | None  # RAID4/5/6 only
    size_bytes: int
    members: list[MdMember]
    detail_error: str | None = None

    @property
    def active(self) -> bool:
        """The array is running (it may still be degraded or resyncing)."""
        return self.state not in INACTIVE_STATES

    @property
    def short_name(self) -> str | None:
        """The name without its homehost prefix ("any:cockpit-data" -> "cockpit-data")."""
        return self.name.rsplit(":", 1)[-1] if self.name else None

    @property
    def rebuilding(self) -> list[MdMember]:
        """Members that are neither in sync nor failed: spares, or drives being rebuilt onto.

        A new RAID5 is built that way too: mdadm starts it degraded and recovers onto the
        last drive, so a fresh array is degraded until its first recovery ends.
        """
        return [m for m in self.members if not m.in_sync and not m.faulty]

    @property
    def missing(self) -> int:
        """Slots with no drive at all, not even one being rebuilt onto."""
        return max(self.degraded - len(self.rebuilding), 0)

    @property
    def progress(self) -> str | None:
        """Percent done of a running resync or recovery, e.g. "42.0%"."""
        done, _, total = self.sync_completed.partition("/")
        sectors, of = _digits(done), _digits(total)
        if sectors is None or of is None:
            return None
        return f"{100 * sectors / max(of, 1):.1f}%"


class Superblock(Frozen):
    """The md superblock a disk carries (from its blkid probe)."""

    uuid: str
    name: str


def normalize_uuid(text: str) -> str | None:
    """A UUID in mdadm's form (8:8:8:8 lower-case hex) whatever its punctuation; None if not one.

    blkid prints an array UUID as 8-4-4-4-12 and mdadm as 8:8:8:8; both are the same 32 digits.
    """
    if not re.fullmatch(r"[0-9a-fA-F:-]+", text):
        return None
    digits = text.replace(":", "").replace("-", "").lower()
    if len(digits) != 32:
        return None
    return ":".join(digits[i : i + 8] for i in range(0, 32, 8))


def superblock_of(disk: Disk) -> Superblock | None:
    """The md superblock found by blkid on `disk`, if any."""
    probe = disk.probe
    uuid = normalize_uuid(probe.get("UUID", ""))
    if probe.get("TYPE") != MD_MEMBER or uuid is None:
        return None
    return Superblock(uuid=uuid, name=probe.get("LABEL", ""))


def read_arrays(runner: Runner, *, sysfs: Path = SYSFS) -> list[MdArray]:
    """Every md array the kernel knows (sysfs block/md*), with mdadm's name and UUID. An md
    device with no array behind it is passed over (empty_node)."""
    arrays = []
    for entry in _listdir(sysfs / "block"):
        node = sysfs / "block" / entry
        if entry.startswith("md") and _is_dir(node / "md") and not empty_node(node):
            arrays.append(read_array(runner, node))
    return arrays


def empty_node(node: Path) -> bool:
    """Whether the md device at sysfs `node` is a shell: no member, no size, no running array
    (array_state clear or inactive). `mdadm --stop` can leave one, and so can a create killed
    before it started the array; mdadm --detail fails on it ("does not exist"). It holds no
    data and no superblock, so there is nothing to protect, and nothing to tell about."""
    md = node / "md"
    members = [e for e in _listdir(md) if e.startswith("dev-")]
    state = _attr(md, "array_state")
    return not members and _int(_attr(node, "size")) == 0 and state in ("clear", "inactive", "")


def read_array(runner: Runner, node: Path) -> MdArray:
    """One array from its sysfs directory (/sys/block/mdN)."""
    md = node / "md"
    path = f"/dev/{node.name}"
    detail, error = _detail(runner, path)
    cache = _attr(md, "stripe_cache_size")
    return MdArray(
        device=node.name,
        path=path,
        dev=_attr(node, "dev"),
        name=detail.get("MD_NAME"),
        uuid=normalize_uuid(detail.get("MD_UUID", "")) or _sysfs_uuid(md),
        level=_attr(md, "level"),
        raid_disks=_int(_attr(md, "raid_disks")),
        state=_attr(md, "array_state"),
        degraded=_int(_attr(md, "degraded")),
        sync_action=_attr(md, "sync_action"),
        sync_completed=_attr(md, "sync_completed") or "none",
        metadata=_attr(md, "metadata_version"),
        chunk_bytes=_int(_attr(md, "chunk_size")),
        stripe_cache_size=_digits(cache),
        size_bytes=_int(_attr(node, "size")) * 512,
        members=_members(md),
        detail_error=error,
    )


def parse_export(text: str) -> dict[str, str]:
    """KEY=value lines of `mdadm --detail --export` (mdadm escapes nothing)."""
    pairs = (line.partition("=") for line in text.splitlines() if "=" in line)
    return {key.strip(): value.strip() for key, _, value in pairs}


def _detail(runner: Runner, path: str) -> tuple[dict[str, str], str | None]:
    """`mdadm --detail --export`; an inactive array or a missing mdadm gives an error text."""
    try:
        result = runner.run(["mdadm", "--detail", "--export", path], timeout=30)
    except AgentError as exc:
        return {}, str(exc)
    return parse_export(result.stdout), None


def _sysfs_uuid(md: Path) -> str | None:
    """md/uuid (recent kernels); all zeros while the array is inactive."""
    uuid = normalize_uuid(_attr(md, "uuid"))
    return None if uuid is None or not uuid.strip("0:") else uuid


def _members(md: Path) -> list[MdMember]:
    """The component devices: md/dev-<name>/{slot,state}."""
    members = []
    for entry in _listdir(md):
        if not entry.startswith("dev-"):
            continue
        slot = _attr(md / entry, "slot")
        name = entry.removeprefix("dev-")
        members.append(
            MdMember(
                name=name,
                path=f"/dev/{name}",
                role=_digits(slot),
                state=[w for w in _attr(md / entry, "state").split(",") if w],
            )
        )
    return members


def _int(text: str) -> int:
    return _digits(text) or 0


def _digits(text: str) -> int | None:
    """A number from sysfs: ASCII digits only ("²".isdigit() is true, and int() refuses it)."""
    text = text.strip()
    return int(text) if text.isascii() and text.isdigit() else None
