"""The agent's configuration: /etc/cockpit-agent/config.toml plus config.d/*.toml drop-ins.

Every key has a default, so an empty or missing file is a valid configuration. Drop-ins are
merged over the main file in name order, table by table; a later file wins for a key it sets.
Unknown keys, wrong types and bad values are errors that name the file and the key's dotted
path. Nothing region-, AZ- or account-specific lives here: that comes from IMDS.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ByteSize,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from cockpit_agent.errors import ConfigError
from cockpit_agent.paths import CONFIG_PATH

DEFAULT_CONFIG_PATH = CONFIG_PATH

EC2_INSTANCE_STORE_MODEL = "Amazon EC2 NVMe Instance Storage"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ImdsConfig(_Section):
    """How to reach the instance metadata service (IMDSv2)."""

    endpoint: Annotated[str, Field(pattern=r"^https?://[^/\s]+/?$")] = Field(
        "http://169.254.169.254", description="Base URL of IMDS (http or https, no path)."
    )
    token_ttl_seconds: Annotated[int, Field(ge=1, le=21600)] = Field(
        21600, description="TTL requested for the IMDSv2 session token."
    )
    request_timeout_seconds: Annotated[float, Field(gt=0)] = Field(
        2.0, description="Timeout of one HTTP request."
    )
    boot_wait_seconds: Annotated[float, Field(ge=0)] = Field(
        60.0,
        description="How long to keep retrying while IMDS is not reachable yet (early boot).",
    )
    retries: Annotated[int, Field(ge=0, le=20)] = Field(
        3, description="Retries of a request that failed with a server error or timeout."
    )


class RootfsConfig(_Section):
    """Growing the root partition, LVM and filesystem."""

    enabled: bool = Field(True, description="Grow the root volume at every run.")
    leave_free_percent: Annotated[int, Field(ge=0, le=90)] = Field(
        0, description="LVM only: percent of the volume group to leave unallocated."
    )


class StorageConfig(_Section):
    """The RAID array built from unused NVMe instance-store drives."""

    enabled: bool = Field(True, description="Build and mount the data array.")
    level: Literal[0, 1, 5, 6, 10] = Field(5, description="RAID level.")
    min_devices: Annotated[int, Field(ge=1)] = Field(
        3, description="Drives needed for `level`; fewer uses `fallback`."
    )
    fallback: Literal["auto", "none"] = Field(
        "auto",
        description="With fewer drives than min_devices: auto = two drives RAID1, one drive "
        "used plain; none = skip the step.",
    )
    allowed_models: list[str] = Field(
        [EC2_INSTANCE_STORE_MODEL],
        description="NVMe models that may be used (exact match of the model string).",
    )
    devices: list[str] = Field(
        [], description="Explicit device paths; when set, only these are considered."
    )
    min_device_size: ByteSize = Field(
        ByteSize(1024**3), description="Drives smaller than this are excluded."
    )
    array_name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")] = Field(
        "cockpit-data", description="md array name (/dev/md/<name>)."
    )
    filesystem: Literal["xfs", "ext4"] = Field("xfs", description="Filesystem on the array.")
    label: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,12}$")] = Field(
        "cockpit-data", description="Filesystem label (at most 12 characters, for XFS)."
    )
    chunk_kib: Annotated[int, Field(ge=4, le=256)] = Field(
        256, description="RAID chunk size in KiB (at most 256 so an XFS log stripe stays valid)."
    )
    mount_point: str = Field(
        "/var/lib/libvirt/images", description="Where the array's filesystem is mounted."
    )
    auto_replace: bool = Field(False, description="Add a fresh eligible drive to a degraded array.")
    stripe_cache_size: Annotated[int, Field(ge=0, le=32768)] = Field(
        4096,
        description="RAID4/5/6 stripe cache in entries (one page per member each); "
        "0 leaves the kernel's default (256).",
    )


DEFAULT_PACKAGES: dict[str, list[str]] = {
    "debian": [
        "cockpit",
        "cockpit-machines",
        "libvirt-daemon-system",
        "libvirt-clients",
        "libvirt-dbus",
        "qemu-system-x86",
        "qemu-utils",
        "virtinst",
    ],
    "rhel": [
        "cockpit",
        "cockpit-machines",
        "libvirt-daemon-driver-qemu",
        "libvirt-daemon-driver-network",
        "libvirt-daemon-driver-nodedev",
        "libvirt-daemon-driver-storage-core",
        "libvirt-dbus",
        "qemu-kvm",
        "virt-install",
    ],
}


class VirtConfig(_Section):
    """Cockpit, cockpit-machines, libvirt and qemu."""

    enabled: bool = Field(True, description="Install, enable and verify the virtualisation stack.")
    packages: dict[str, list[str]] = Field(
        DEFAULT_PACKAGES,
        description="Packages per OS family (debian, rhel).",
    )
    port: Annotated[int, Field(ge=1, le=65535)] = Field(9090, description="Cockpit's port.")
    tls_certificate: str | None = Field(None, description="Certificate for Cockpit (PEM path).")
    tls_key: str | None = Field(None, description="Key of tls_certificate (PEM path).")
    disallow_root: bool = Field(True, description="Keep root out of Cockpit's login.")
    listen_on_bridge_only: bool = Field(
        False, description="Cockpit listens only on the LNI bridge's address."
    )
    package_lock_wait_seconds: Annotated[float, Field(ge=0)] = Field(
        600.0, description="How long to wait for the package manager's lock."
    )


class LniConfig(_Section):
    """The Local Network Interface as a bridge for libvirt."""

    enabled: bool = Field(True, description="Bridge the LNI.")
    device_index: Annotated[int, Field(ge=1)] = Field(
        1, description="Device index of the LNI (the subnet's EnableLniAtDeviceIndex)."
    )
    network_card: Annotated[int, Field(ge=0)] = Field(0, description="Network card of the LNI.")
    mac: Annotated[str, Field(pattern=r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$")] | None = Field(
        None, description="Pin the LNI by MAC (lower case) instead of device index."
    )
    bridge: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,15}$")] = Field(
        "br-lni", description="Name of the bridge."
    )
    libvirt_network: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] = Field(
        "lni", description="Name of the libvirt network on the bridge."
    )
    mode: Literal["bridge", "route"] = Field("bridge", description="How VMs reach the LNI.")
    default_vm_network: bool = Field(
        True,
        description="Bridge mode: libvirt's `default` network (what virt-install and Cockpit's "
        "Create VM give a VM when none is named) on the bridge, the stock NAT network kept as "
        "`default-nat`; false gives libvirt's stock `default` back.",
    )
    address_timeout_seconds: Annotated[float, Field(gt=0)] = Field(
        60.0, description="How long the bridge may take to get its address before rollback."
    )
    address: IPv4Interface | None = Field(
        None,
        description="Static address of the bridge (CIDR, e.g. 10.0.3.20/24); unset = DHCP.",
    )
    gateway: IPv4Address | None = Field(
        None, description="With `address`: a default route via this gateway at `route_metric`."
    )
    dns: list[IPv4Address] = Field([], description="With `address`: DNS servers.")
    route_metric: Annotated[int, Field(ge=0, le=4294967295)] = Field(
        200,
        description="Metric of routes learnt on the bridge; above the management interface's "
        "so its default route stays preferred.",
    )
    route_subnet: IPv4Network | None = Field(
        None,
        description="mode = route: the block of the LNI's subnet routed to VMs (e.g. "
        "10.0.3.192/26); required in that mode.",
    )

    @field_validator("libvirt_network")
    @classmethod
    def _not_a_name_default_vm_network_owns(cls, name: str) -> str:
        if name in ("default", "default-nat"):
            raise ValueError(
                f"{name!r} is libvirt's own network (or its renamed copy); use "
                "default_vm_network to put `default` on the bridge"
            )
        return name

    @model_validator(mode="after")
    def _route_mode_needs_a_subnet(self) -> LniConfig:
        if self.mode == "route" and self.route_subnet is None:
            raise ValueError("mode = 'route' needs route_subnet (the VMs' block of the LNI subnet)")
        return self


class HealthConfig(_Section):
    """`cockpit-agent check`."""

    auto_repair: bool = Field(False, description="Reconcile drifted steps from the check timer.")


class Config(_Section):
    """The whole configuration."""

    imds: ImdsConfig = ImdsConfig()
    rootfs: RootfsConfig = RootfsConfig()
    storage: StorageConfig = StorageConfig()
    virt: VirtConfig = VirtConfig()
    lni: LniConfig = LniConfig()
    health: HealthConfig = HealthConfig()


def _merge(
    base: dict[str, Any],
    over: Mapping[str, Any],
    origin: dict[str, Path],
    source: Path,
    prefix: str = "",
) -> None:
    """Merge `over` into `base` table by table, recording which file set each key."""
    for key, value in over.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value, origin, source, path + ".")
        else:
            base[key] = dict(value) if isinstance(value, Mapping) else value
        origin[path] = source


def config_files(path: Path) -> list[Path]:
    """The main file (if present) followed by its drop-ins in name order."""
    files = [path] if path.exists() else []
    dropins = path.parent / "config.d"
    if dropins.is_dir():
        files += sorted(p for p in dropins.glob("*.toml") if p.is_file())
    return files


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc


def _describe(errors: ValidationError, origin: Mapping[str, Path], files: list[Path]) -> str:
    lines = []
    for err in errors.errors():
        dotted = ".".join(str(p) for p in err["loc"])
        source = _origin_of(dotted, origin) or (files[-1] if files else "<defaults>")
        if err["type"] == "extra_forbidden":
            what = "unknown key"
        else:
            what = f"{err['msg']} (got {err.get('input')!r})"
        lines.append(f"{source}: {dotted}: {what}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def _origin_of(dotted: str, origin: Mapping[str, Path]) -> Path | None:
    parts = dotted.split(".")
    while parts:
        found = origin.get(".".join(parts))
        if found is not None:
            return found
        parts.pop()
    return None


def parse_config(files: list[Path]) -> Config:
    """Merge and validate the given files (in order) into a Config."""
    merged: dict[str, Any] = {}
    origin: dict[str, Path] = {}
    for file in files:
        _merge(merged, _read_toml(file), origin, file)
    try:
        return Config.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, origin, files)) from exc


def load_config(path: Path = DEFAULT_CONFIG_PATH) -> Config:
    """Load the configuration at `path` and its config.d/ drop-ins; absent files mean defaults."""
    return parse_config(config_files(path))


def config_schema() -> dict[str, Any]:
    """JSON Schema of the configuration."""
    return Config.model_json_schema()
