"""The data filesystem's /etc/fstab line: spec -> text, and merging it into an fstab."""

from __future__ import annotations

from dataclasses import dataclass

from cockpit_agent.render.owned_lines import foreign, owned, replace_owned

MARKER = "# cockpit-agent storage: the next line is managed by cockpit-agent, do not edit it"

# A data filesystem must never hold up the boot: `nofail` keeps it out of local-fs.target's
# requirements (and ordering), and the device timeout bounds how long systemd's mount job
# waits for a device that a stop/start wiped away (the default is 90 s). 60 s leaves time
# for a degraded array, which mdadm-last-resort@ starts only after 30 s.
DEVICE_TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class MountSpec:
    """A filesystem, by UUID, and where it is mounted."""

    fs_uuid: str
    mount_point: str
    fstype: str

    @property
    def options(self) -> str:
        """Mount options: the defaults plus what keeps a boot from waiting on the array."""
        return f"defaults,nofail,x-systemd.device-timeout={DEVICE_TIMEOUT_SECONDS}s"

    @property
    def passno(self) -> int:
        """fsck order: 0 for XFS (fsck.xfs does nothing), 2 for the others."""
        return 0 if self.fstype == "xfs" else 2


def fstab_line(spec: MountSpec) -> str:
    """One fstab line, fields separated by a space."""
    where = escape(spec.mount_point)
    return f"UUID={spec.fs_uuid} {where} {spec.fstype} {spec.options} 0 {spec.passno}"


def escape(field: str) -> str:
    r"""fstab's octal escapes for the characters that would split a field (space is \040)."""
    return "".join(f"\\{ord(c):03o}" if c in " \t\n\\#" else c for c in field)


def unescape(field: str) -> str:
    """Undo `escape`."""
    out, i = [], 0
    while i < len(field):
        octal = field[i + 1 : i + 4]
        if field[i] == "\\" and len(octal) == 3 and all(c in "01234567" for c in octal):
            out.append(chr(int(octal, 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def owned_lines(text: str) -> list[str]:
    """The fstab lines this agent wrote."""
    return owned(text, MARKER)


def render_fstab(text: str, spec: MountSpec | None) -> str:
    """fstab `text` with the agent's line set to `spec` (removed when None), the rest untouched."""
    return replace_owned(text, MARKER, [fstab_line(spec)] if spec else [])


def parse_line(line: str) -> MountSpec | None:
    """An fstab line mounting a filesystem by UUID, as a spec; None for anything else."""
    fields = line.split()
    if len(fields) < 3 or not fields[0].startswith("UUID="):
        return None
    return MountSpec(fields[0].removeprefix("UUID="), unescape(fields[1]), fields[2])


def foreign_mounts_at(text: str, mount_point: str) -> list[str]:
    """Lines the agent does not own that mount something at `mount_point`."""
    hits = []
    for line in foreign(text, MARKER):
        fields = line.split()
        real = len(fields) >= 2 and not fields[0].startswith("#")
        if real and unescape(fields[1]).rstrip("/") == mount_point.rstrip("/"):
            hits.append(line)
    return hits
