"""The storage step's world: fixture facts for one host (disks, arrays, files under a temporary
directory, mountinfo), shared by the storage step's plan and apply tests."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cockpit_agent.config import EC2_INSTANCE_STORE_MODEL, Config, StorageConfig
from cockpit_agent.engine import Ctx
from cockpit_agent.facts.disks import RawDisk, classify
from cockpit_agent.facts.gather import Facts
from cockpit_agent.facts.md import MdArray, parse_export, read_arrays
from cockpit_agent.facts.platform import Platform
from cockpit_agent.host.files import Files
from cockpit_agent.host.sysfs import HostPaths
from cockpit_agent.render import fstab, mdadm
from cockpit_agent.render.fstab import MountSpec
from cockpit_agent.render.mdadm import ArraySpec
from cockpit_agent.steps.storage.actions import StorageAction
from cockpit_agent.steps.storage.observed import RULE_PATH, StorageObserved
from cockpit_agent.steps.storage.step import StorageStep
from tests.fakes import FakeRunner

STORAGE = Path(__file__).resolve().parents[1] / "fixtures" / "storage"
GIB = 1024**3
MP = "/var/lib/libvirt/images"
CONF = "/etc/mdadm/mdadm.conf"
UUID = "0f1e2d3c:4b5a6978:8796a5b4:c3d2e1f0"  # the array of the fixtures
FS_UUID = "11111111-2222-3333-4444-555555555555"  # its filesystem (blkid-xfs.export)
NEW = ["0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "11111111-2222-3333-4444-555555555555"]
OLD_UUID = "99999999:88888888:77777777:66666666"
OLD_FS = "deaddead-0000-4000-8000-000000000000"
DEBIAN = Platform(
    os_id="debian", os_version="12", os_family="debian", pretty_name="Debian GNU/Linux 12",
    package_manager="apt", network_manager="networkd", netplan=False, init="systemd",
    cloud_init=False,
)  # fmt: skip
MEMBER_PROBE = parse_export((STORAGE / "blkid-member.export").read_text())
XFS_PROBE = (STORAGE / "blkid-xfs.export").read_text()


def nvme(name: str, **fields: Any) -> RawDisk:
    """A clean instance-store namespace of 100 GiB unless `fields` say otherwise."""
    base: dict[str, Any] = {
        "name": name,
        "path": f"/dev/{name}",
        "dev": f"259:{name[4]}",
        "model": EC2_INSTANCE_STORE_MODEL,
        "size_bytes": 100 * GIB,
        "nvme": True,
        "probe": {},
    }
    return RawDisk(**(base | fields))


ROOT = nvme(
    "nvme0n1", model="Amazon Elastic Block Store", partitions=["nvme0n1p1"], root_disk=True,
    mountpoints=["/"], signatures=["gpt"], probe={"PTTYPE": "gpt"},
)  # fmt: skip


def member(name: str, array: str = "md127") -> RawDisk:
    """A drive in our array (the fixtures' UUID and name)."""
    sigs = ["linux_raid_member"]
    return nvme(name, probe=MEMBER_PROBE, signatures=sigs, holders=[array] if array else [])


def md_disk() -> RawDisk:
    """md127 as disks.py sees it: a block device carrying our XFS."""
    probe = parse_export(XFS_PROBE)
    return RawDisk(name="md127", path="/dev/md127", dev="9:127", probe=probe, signatures=["xfs"],
                   mountpoints=[MP], size_bytes=200 * GIB)  # fmt: skip


@dataclass
class World:
    """One host for the storage step: edit the fields, then call plan()/ctx()."""

    tmp: Path
    disks: list[RawDisk] = field(default_factory=list)
    array_tree: str | None = None  # a fixture sysfs tree under tests/fixtures/storage
    storage: dict[str, Any] = field(default_factory=dict)
    step_data: dict[str, dict[str, Any]] = field(default_factory=dict)
    mountinfo: list[str] = field(default_factory=list)
    platform: Platform | None = DEBIAN
    runner: FakeRunner = field(default_factory=FakeRunner)

    def __post_init__(self) -> None:
        self.root = self.tmp / "root"
        self.root.mkdir()
        self.proc = self.tmp / "proc"
        (self.proc / "self").mkdir(parents=True)
        self.files = Files(self.root)

    @property
    def config(self) -> Config:
        return Config(storage=StorageConfig(**self.storage))

    def arrays(self) -> list[MdArray]:
        if self.array_tree is None:
            return []
        runner = FakeRunner()
        detail = (
            "detail-inactive.export" if "inactive" in self.array_tree else "detail-raid5.export"
        )
        runner.expect("mdadm", "--detail", "--export", "/dev/md127",
                      stdout=(STORAGE / detail).read_text())  # fmt: skip
        return read_arrays(runner, sysfs=self.sysfs)

    @property
    def sysfs(self) -> Path:
        return STORAGE / (self.array_tree or "raid5-clean") / "sys"

    def write(self, host_path: str, text: str) -> None:
        self.files.write(host_path, text)

    def ctx(self) -> Ctx:
        (self.proc / "self" / "mountinfo").write_text("".join(m + "\n" for m in self.mountinfo))
        disks = [classify(d, self.config.storage) for d in self.disks]
        facts = Facts(platform=self.platform, disks=disks, arrays=self.arrays())
        return Ctx(runner=self.runner, files=self.files, facts=facts, config=self.config,
                   step_data=self.step_data)  # fmt: skip

    def step(self) -> StorageStep:
        ids = iter(NEW + [f"00000000-0000-4000-8000-{i:012d}" for i in range(10)])
        owner = (os.getuid(), os.getgid(), 0o711)
        return StorageStep(host=HostPaths(sysfs=self.sysfs, proc=self.proc),
                           new_uuid=lambda: next(ids), mount_owner=owner)  # fmt: skip

    def observe(self) -> StorageObserved:
        return self.step().observe(self.ctx())

    def plan(self) -> list[StorageAction]:
        step, ctx = self.step(), self.ctx()
        return step.plan(step.observe(ctx), ctx)

    def mounted(self, dev: str = "9:127", source: str = "/dev/md127") -> None:
        """Our filesystem at the mount point, with the owner libvirt expects."""
        self.mountinfo.append(f"209 27 {dev} / {MP} rw,relatime shared:84 - xfs {source} rw")
        self.files.path(MP).mkdir(parents=True, exist_ok=True)
        os.chmod(self.files.path(MP), 0o711)

    def converged_array(self) -> None:
        """Our RAID5 assembled as md127, everything persisted and mounted."""
        self.disks = [ROOT, member("nvme1n1"), member("nvme2n1"), member("nvme3n1"), md_disk()]
        self.array_tree = "raid5-clean"
        self.write(CONF, mdadm.render_conf("HOMEHOST <system>\n", [OUR_SPEC]))
        self.write("/etc/fstab", fstab.render_fstab("", MountSpec(FS_UUID, MP, "xfs")))
        self.write(RULE_PATH, mdadm.stripe_cache_rule(UUID, 4096))
        self.mounted()
        self.runner.expect("blkid", "-p", "-o", "export", "/dev/md127", stdout=XFS_PROBE)


OUR_SPEC = ArraySpec("cockpit-data", UUID, "any:cockpit-data")


def clean(*names: str) -> list[RawDisk]:
    """Clean instance-store namespaces of these names."""
    return [nvme(n) for n in names]
