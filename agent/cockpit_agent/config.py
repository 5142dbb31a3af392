"""The agent's configuration: /etc/cockpit-agent/config.toml plus config.d/*.toml drop-ins.

Every key has a default, so a missing file is a valid configuration; but a path where something
is and cannot be read (a dangling symlink, a directory, no permission) is an error, never
"defaults". Drop-ins are merged over the main file in name order, table by table; a later file
wins for a key it sets. The model is strict: no coercion ("off" is not a boolean, "9090" is not
a port), paths absolute and normalised, durations finite and bounded. Unknown keys, wrong types
and bad values are errors that name the file and the key's dotted path. Nothing region-, AZ- or
account-specific lives here: that comes from IMDS.
"""

from __future__ import annotations

import os
import posixpath
import reprlib
import stat
import tomllib
from collections.abc import Mapping
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ByteSize,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from cockpit_agent.errors import ConfigError
from cockpit_agent.paths import CONFIG_PATH

DEFAULT_CONFIG_PATH = CONFIG_PATH

EC2_INSTANCE_STORE_MODEL = "Amazon EC2 NVMe Instance Storage"

MAX_FILE_BYTES = 1 << 20  # a configuration file is a few hundred bytes
MAX_DEPTH = 8  # the deepest key (virt.packages.<family>) is a list three tables down

# EC2 numbers device indices per network card. The most network interfaces one card takes is
# 24 (x8i.*), and the most cards an instance has is 32 (p5.48xlarge, p5e.48xlarge): the
# instance-type table of aws/amazon-vpc-cni-k8s (pkg/vpc/vpc_ip_resource_limit.go, generated
# from DescribeInstanceTypes in 17 regions), read at commit b52188387f2e (August 2026).
MAX_DEVICE_INDEX = 23
MAX_NETWORK_CARD = 31

# A mount point must not hide what the system runs from: nothing at or below these trees...
SYSTEM_TREES = (
    "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/run",
    "/sbin", "/sys", "/usr", "/var/lib/cockpit-agent",
)  # fmt: skip
# ...and none of these directories themselves (a directory below them is fine).
SYSTEM_DIRS = (
    "/", "/home", "/root", "/tmp", "/var", "/var/cache", "/var/lib", "/var/lib/libvirt",
    "/var/log", "/var/spool", "/var/tmp",
)  # fmt: skip


def _text(value: object) -> object:
    """Addresses and networks come as TOML strings, never as numbers (5 is not 0.0.0.5)."""
    if not isinstance(value, str):
        raise ValueError("must be a string")
    return value


def _absolute(value: str) -> str:
    """An absolute, normalised path without control characters."""
    if not value.startswith("/"):
        raise ValueError("must be an absolute path")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("must not contain control characters")
    normal = posixpath.normpath(value)
    if value != normal or value.startswith("//"):
        raise ValueError(f"must be normalised (no '.', '..', '//' or trailing '/'): {normal!r}")
    return value


def _mount_point(value: str) -> str:
    """A directory the data filesystem may cover without hiding the system's own files."""
    _absolute(value)
    if value in SYSTEM_DIRS or any(value == t or value.startswith(t + "/") for t in SYSTEM_TREES):
        raise ValueError(f"{value} is the system's: mount the array on a directory of its own")
    return value


def _endpoint(value: str) -> str:
    """http(s)://host[:port] and nothing else: no credentials, path, query or fragment."""
    try:
        url = urlsplit(value)
        port = url.port  # raises on a port out of range
    except ValueError as exc:
        raise ValueError(f"not a URL: {exc}") from None
    rest = (url.username, url.password, url.query, url.fragment, url.path.strip("/"))
    if url.scheme not in ("http", "https") or not url.hostname or any(rest) or port == 0:
        raise ValueError("must be http://HOST[:PORT] or https://HOST[:PORT]")
    return value


def _integer(value: object) -> object:
    """An integer, not a float or a boolean (a strict Literal still takes 5.0 and true for 5, 1)."""
    if type(value) is not int:
        raise ValueError("must be an integer")
    return value


Ipv4Address = Annotated[IPv4Address, Strict(False), BeforeValidator(_text)]
Ipv4Interface = Annotated[IPv4Interface, Strict(False), BeforeValidator(_text)]
Ipv4Network = Annotated[IPv4Network, Strict(False), BeforeValidator(_text)]
AbsolutePath = Annotated[str, AfterValidator(_absolute)]
MountPoint = Annotated[str, AfterValidator(_mount_point)]
DevicePath = Annotated[str, Field(pattern=r"^/dev/"), AfterValidator(_absolute)]
# Debian and RPM package names (optionally with an architecture); never an option ("-y").
PackageName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9+._:-]{0,127}$")]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class ImdsConfig(_Section):
    """How to reach the instance metadata service (IMDSv2)."""

    endpoint: Annotated[str, Field(pattern=r"^https?://[^/\s]+/?$"), AfterValidator(_endpoint)] = (
        Field("http://169.254.169.254", description="Base URL of IMDS (http or https, no path).")
    )
    token_ttl_seconds: Annotated[int, Field(ge=1, le=21600)] = Field(
        21600, description="TTL requested for the IMDSv2 session token."
    )
    request_timeout_seconds: Annotated[float, Field(gt=0, le=60)] = Field(
        2.0, description="Timeout of one HTTP request (at most 60)."
    )
    boot_wait_seconds: Annotated[float, Field(ge=0, le=600)] = Field(
        60.0,
        description="How long to keep retrying while IMDS is not reachable yet (early boot; "
        "at most 600).",
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
    level: Annotated[Literal[0, 1, 5, 6, 10], BeforeValidator(_integer)] = Field(
        5, description="RAID level."
    )
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
    devices: list[DevicePath] = Field(
        [], description="Explicit device paths (/dev/...); when set, only these are considered."
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
    mount_point: MountPoint = Field(
        "/var/lib/libvirt/images",
        description="Where the array's filesystem is mounted: an absolute, normalised path, "
        "not / nor a directory of the system (/etc, /usr, /var, /boot, ...).",
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
    packages: dict[Annotated[str, Field(pattern=r"^[a-z0-9_-]{1,32}$")], list[PackageName]] = Field(
        DEFAULT_PACKAGES, description="Packages per OS family (debian, rhel)."
    )
    port: Annotated[int, Field(ge=1, le=65535)] = Field(9090, description="Cockpit's port.")
    tls_certificate: AbsolutePath | None = Field(
        None, description="Certificate for Cockpit (absolute PEM path); needs tls_key."
    )
    tls_key: AbsolutePath | None = Field(
        None,
        validate_default=True,
        description="Key of tls_certificate (absolute PEM path); needs tls_certificate.",
    )
    disallow_root: bool = Field(True, description="Keep root out of Cockpit's login.")
    listen_on_bridge_only: bool = Field(
        False, description="Cockpit listens only on the LNI bridge's address."
    )
    package_lock_wait_seconds: Annotated[float, Field(ge=0, le=1800)] = Field(
        600.0, description="How long to wait for the package manager's lock (at most 1800)."
    )

    @field_validator("tls_key")
    @classmethod
    def _both_or_neither(cls, key: str | None, info: ValidationInfo) -> str | None:
        if "tls_certificate" not in info.data:
            return key  # the certificate itself is invalid, and reported
        if (key is None) != (info.data["tls_certificate"] is None):
            raise ValueError("tls_certificate and tls_key go together: set both or neither")
        return key


class LniConfig(_Section):
    """The Local Network Interface as a bridge for libvirt."""

    enabled: bool = Field(True, description="Bridge the LNI.")
    device_index: Annotated[int, Field(ge=1, le=MAX_DEVICE_INDEX)] = Field(
        1,
        description="Device index of the LNI (the subnet's EnableLniAtDeviceIndex; "
        f"1 to {MAX_DEVICE_INDEX}).",
    )
    network_card: Annotated[int, Field(ge=0, le=MAX_NETWORK_CARD)] = Field(
        0, description=f"Network card of the LNI (0 to {MAX_NETWORK_CARD})."
    )
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
    address_timeout_seconds: Annotated[float, Field(gt=0, le=600)] = Field(
        60.0,
        description="How long the bridge may take to get its address before rollback "
        "(at most 600).",
    )
    address: Ipv4Interface | None = Field(
        None,
        description="Static address of the bridge (CIDR, e.g. 10.0.3.20/24); unset = DHCP.",
    )
    gateway: Ipv4Address | None = Field(
        None, description="With `address`: a default route via this gateway at `route_metric`."
    )
    dns: list[Ipv4Address] = Field([], description="With `address`: DNS servers.")
    route_metric: Annotated[int, Field(ge=0, le=4294967295)] = Field(
        200,
        description="Metric of routes learnt on the bridge; above the management interface's "
        "so its default route stays preferred.",
    )
    route_subnet: Ipv4Network | None = Field(
        None,
        validate_default=True,
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

    @field_validator("route_subnet")
    @classmethod
    def _route_mode_needs_a_subnet(
        cls, subnet: IPv4Network | None, info: ValidationInfo
    ) -> IPv4Network | None:
        if info.data.get("mode") == "route" and subnet is None:
            raise ValueError("mode = 'route' needs route_subnet (the VMs' block of the LNI subnet)")
        return subnet


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
    """The main file (if there is one) followed by its drop-ins (config.d/*.toml) in name order.

    Only a path where nothing is counts as absent. A dangling symlink, a symlink loop, or a
    config.d that cannot be listed is a ConfigError naming it: never silently "defaults".
    """
    files = [path] if _present(path) else []
    dropins = path.parent / "config.d"
    if _present(dropins):
        try:
            names = sorted(os.listdir(dropins))
        except OSError as exc:
            raise ConfigError(f"{dropins}: cannot read: {exc.strerror}") from exc
        files += [dropins / name for name in names if name.endswith(".toml")]
    return files


def _present(path: Path) -> bool:
    """Whether anything, even a broken symlink, is at `path`; a ConfigError if that is unknown."""
    try:
        path.lstat()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    return True


def _read_toml(path: Path) -> dict[str, Any]:
    """One file's tables; every way it can be unreadable is a ConfigError that names it."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{path}: cannot read: not a regular file")
        with path.open("rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError as exc:  # lstat saw it: a symlink to nothing
        raise ConfigError(f"{path}: cannot read: a symlink to nothing ({exc.strerror})") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(f"{path}: cannot read: larger than {MAX_FILE_BYTES} bytes")
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text: byte {exc.start}: {exc.reason}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    except RecursionError:
        raise ConfigError(f"{path}: not valid TOML: nested too deeply") from None
    if _depth(data) > MAX_DEPTH:
        raise ConfigError(f"{path}: nested deeper than {MAX_DEPTH} levels; no key is that deep")
    return data


def _depth(data: object) -> int:
    """How deeply tables and arrays nest in `data` (iteratively: the input may be deep)."""
    deepest, stack = 0, [(data, 0)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        if isinstance(node, Mapping):
            stack += [(v, level + 1) for v in node.values()]
        elif isinstance(node, list):
            stack += [(v, level + 1) for v in node]
    return deepest


def _describe(errors: ValidationError, origin: Mapping[str, Path], files: list[Path]) -> str:
    lines = []
    for err in errors.errors():
        dotted = ".".join(str(p) for p in err["loc"])
        source = _origin_of(dotted, origin) or (files[-1] if files else "<defaults>")
        if err["type"] == "extra_forbidden":
            what = "unknown key"
        else:
            what = err["msg"].removeprefix("Value error, ")
            if err.get("input") is not None:  # None: the key is not set (TOML has no null)
                what += f" (got {_short(err['input'])})"
        lines.append(f"{source}: {dotted}: {what}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 80
_REPR.maxlevel = 3


def _short(value: object) -> str:
    """A bounded repr: the input may be a long string or a deep table."""
    return _REPR.repr(value)


def _origin_of(dotted: str, origin: Mapping[str, Path]) -> Path | None:
    parts = dotted.split(".")
    while parts:
        found = origin.get(".".join(parts))
        if found is not None:
            return found
        parts.pop()
    return None


def parse_config(files: list[Path]) -> Config:
    """Merge and validate the given files (in order) into a Config; every file that cannot be
    read is named in one ConfigError."""
    merged: dict[str, Any] = {}
    origin: dict[str, Path] = {}
    unreadable = []
    for file in files:
        try:
            _merge(merged, _read_toml(file), origin, file)
        except ConfigError as exc:
            unreadable.append(str(exc))
    if unreadable:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(unreadable))
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
