"""The storage step's actions: frozen values with an imperative name and a one-line describe().

Each action that runs a command builds its argv here, so that a plan, a dry run and the
unit tests all see exactly what would run. Applying them lives in apply.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from cockpit_agent.render.fstab import MountSpec, fstab_line
from cockpit_agent.render.mdadm import ArraySpec, array_line

STRIPED_LEVELS = (0, 4, 5, 6, 10)  # levels where --chunk means something


def level_name(level: int | None) -> str:
    """RAID5, RAID1, ... or "plain drive" (no array)."""
    return "plain drive" if level is None else f"RAID{level}"


@dataclass(frozen=True)
class CreateArray:
    """mdadm --create from drives that passed every safety rule (re-checked before it runs)."""

    name: str
    level: int
    devices: tuple[str, ...]
    chunk_kib: int
    bitmap: str  # "internal" or "none"
    uuid: str
    replaces: str | None = None  # UUID of our previous array, gone (its drives were wiped)
    excluded: tuple[str, ...] = ()  # "nvme0n1: root-disk" for every drive not used

    @property
    def path(self) -> str:
        """The array's stable name."""
        return f"/dev/md/{self.name}"

    def argv(self) -> list[str]:
        """The mdadm command. --run: never stop at a question; nothing waits for the resync."""
        argv = [
            "mdadm", "--create", self.path, "--homehost=any", f"--name={self.name}",
            "--metadata=1.2", f"--level={self.level}", f"--raid-devices={len(self.devices)}",
            f"--uuid={self.uuid}", f"--bitmap={self.bitmap}", "--run",
        ]  # fmt: skip
        if self.level in STRIPED_LEVELS:
            argv.append(f"--chunk={self.chunk_kib}")
        return [*argv, *self.devices]

    def describe(self) -> str:
        """One line for plan and state."""
        chunk = f"chunk {self.chunk_kib} KiB, " if self.level in STRIPED_LEVELS else ""
        text = (
            f"create {level_name(self.level)} array {self.path} (UUID {self.uuid}) from "
            f"{', '.join(self.devices)} [{chunk}bitmap {self.bitmap}]"
        )
        if self.replaces:
            text += f"; replaces lost array {self.replaces}"
        if self.excluded:
            text += f"; not used: {', '.join(self.excluded)}"
        return text


@dataclass(frozen=True)
class RecordLost:
    """Record in the state file that an array (or plain filesystem) of ours is gone.

    Instance store comes back blank after a stop/start: the drives no longer carry it.
    """

    kind: str  # "array" or "filesystem"
    uuid: str

    def describe(self) -> str:
        """One line for plan and state."""
        return f"record that our {self.kind} {self.uuid} is lost (no drive carries it any more)"


@dataclass(frozen=True)
class AssembleArray:
    """Assemble our array from members that carry its superblock but are not running."""

    name: str
    uuid: str
    devices: tuple[str, ...]

    def argv(self) -> list[str]:
        """--run starts it even with a member missing (it then shows as degraded)."""
        return [
            "mdadm", "--assemble", f"/dev/md/{self.name}", f"--uuid={self.uuid}", "--run",
            *self.devices,
        ]  # fmt: skip

    def describe(self) -> str:
        """One line for plan and state."""
        return f"assemble /dev/md/{self.name} (UUID {self.uuid}) from {', '.join(self.devices)}"


@dataclass(frozen=True)
class StartArray:
    """Start our array that udev assembled but left inactive (a member is missing)."""

    device: str

    def argv(self) -> list[str]:
        """What mdadm-last-resort@.service would run a little later."""
        return ["mdadm", "--run", self.device]

    def describe(self) -> str:
        """One line for plan and state."""
        return f"start inactive array {self.device} (degraded)"


@dataclass(frozen=True)
class AddMember:
    """Add a fresh eligible drive to our degraded array (storage.auto_replace)."""

    array: str
    device: str

    def argv(self) -> list[str]:
        """md rebuilds onto the new drive in the background."""
        return ["mdadm", "--manage", self.array, "--add", self.device]

    def describe(self) -> str:
        """One line for plan and state."""
        return f"add {self.device} to degraded array {self.array} (auto_replace)"


@dataclass(frozen=True)
class MakeFilesystem:
    """mkfs on our new array (or our one plain drive), without discard, with a chosen UUID."""

    device: str
    fstype: str
    label: str
    uuid: str
    whole_disk: bool = False  # a plain drive: its eligibility is re-checked first

    def argv(self) -> list[str]:
        """Instance store arrives trimmed: discarding again only costs time."""
        if self.fstype == "xfs":
            return ["mkfs.xfs", "-K", "-L", self.label, "-m", f"uuid={self.uuid}", self.device]
        return [
            "mkfs.ext4", "-q", "-E", "nodiscard", "-L", self.label, "-U", self.uuid, self.device,
        ]  # fmt: skip

    def describe(self) -> str:
        """One line for plan and state."""
        return f"make {self.fstype} filesystem {self.label!r} (UUID {self.uuid}) on {self.device}"


@dataclass(frozen=True)
class PauseInitialSync:
    """Hold md's initial build of a new array while the filesystem is made and mounted.

    The build reads and writes every member end to end; run alongside mkfs it slows the step
    in proportion to the drives' size. Paused (md/sync_action = frozen), the step takes the
    same time whatever the size; ResumeSync lets the build go on in the background.
    """

    array: str

    def describe(self) -> str:
        """One line for plan and state."""
        return f"pause the initial build of {self.array} until its filesystem is mounted"


@dataclass(frozen=True)
class ResumeSync:
    """Let md build (or go on building) the array's redundancy in the background."""

    array: str

    def describe(self) -> str:
        """One line for plan and state."""
        return f"resume the background build of {self.array} (nothing waits for it)"


@dataclass(frozen=True)
class SetStripeCache:
    """Set md's stripe cache of a RAID4/5/6 array now, through sysfs."""

    array: str  # /dev/md/<name> or /dev/mdN
    entries: int

    def describe(self) -> str:
        """One line for plan and state."""
        return f"set the stripe cache of {self.array} to {self.entries} entries"


@dataclass(frozen=True)
class WriteStripeCacheRule:
    """The udev rule that sets the stripe cache whenever the array starts."""

    path: str
    uuid: str
    entries: int

    def describe(self) -> str:
        """One line for plan and state."""
        return f"write {self.path} (stripe cache {self.entries} for array {self.uuid})"


@dataclass(frozen=True)
class RemoveStripeCacheRule:
    """Delete our udev rule: no array of ours needs it any more."""

    path: str

    def describe(self) -> str:
        """One line for plan and state."""
        return f"remove {self.path}"


@dataclass(frozen=True)
class WriteMdadmConf:
    """Set the ARRAY lines the agent owns in mdadm.conf; every other line is kept."""

    path: str
    arrays: tuple[ArraySpec, ...]
    stale: tuple[str, ...] = ()  # owned lines being replaced

    def describe(self) -> str:
        """One line for plan and state."""
        what = "; ".join(array_line(a) for a in self.arrays) or "no ARRAY line"
        gone = f", replacing {len(self.stale)} stale line(s)" if self.stale else ""
        return f"write {what} to {self.path}{gone}"


@dataclass(frozen=True)
class WriteFstabEntry:
    """Set the fstab line the agent owns (None: remove it); every other line is kept."""

    path: str
    spec: MountSpec | None
    stale: tuple[str, ...] = ()

    def describe(self) -> str:
        """One line for plan and state."""
        what = f"'{fstab_line(self.spec)}'" if self.spec else "no line"
        gone = f", replacing stale '{'; '.join(self.stale)}'" if self.stale else ""
        return f"write {what} to {self.path}{gone}"


@dataclass(frozen=True)
class Mount:
    """Mount the data filesystem now, from its fstab line."""

    mount_point: str
    device: str

    def argv(self) -> list[str]:
        """mount(8) finds the source and options in fstab: the line is proven by using it."""
        return ["mount", self.mount_point]

    def describe(self) -> str:
        """One line for plan and state."""
        return f"mount {self.device} at {self.mount_point}"


@dataclass(frozen=True)
class SetMountPointMode:
    """Give the mounted filesystem's root the owner and mode libvirt's image pool expects."""

    mount_point: str
    uid: int
    gid: int
    mode: int

    def describe(self) -> str:
        """One line for plan and state."""
        return f"set {self.mount_point} to {self.uid}:{self.gid} mode {self.mode:04o}"


StorageAction = (
    RecordLost
    | CreateArray
    | AssembleArray
    | StartArray
    | AddMember
    | PauseInitialSync
    | ResumeSync
    | MakeFilesystem
    | SetStripeCache
    | WriteStripeCacheRule
    | RemoveStripeCacheRule
    | WriteMdadmConf
    | WriteFstabEntry
    | Mount
    | SetMountPointMode
)
