from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from cockpit_agent.config import Config, config_schema, load_config, parse_config
from cockpit_agent.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_missing_file_gives_defaults(tmp_path: Path) -> None:
    config = load_config(tmp_path / "config.toml")
    assert config == Config()
    assert config.storage.level == 5
    assert config.storage.allowed_models == ["Amazon EC2 NVMe Instance Storage"]
    assert config.storage.mount_point == "/var/lib/libvirt/images"
    assert config.lni.device_index == 1
    assert config.lni.bridge == "br-lni"


def test_dropins_merge_in_name_order_table_by_table(tmp_path: Path) -> None:
    main = write(tmp_path / "config.toml", "[storage]\nlevel = 6\nfilesystem = 'ext4'\n")
    write(tmp_path / "config.d" / "20-b.toml", "[storage]\nlevel = 10\n")
    write(tmp_path / "config.d" / "10-a.toml", "[storage]\nlevel = 1\n[lni]\nbridge = 'br0'\n")
    write(tmp_path / "config.d" / "ignored.conf", "[storage]\nlevel = 0\n")
    config = load_config(main)
    assert config.storage.level == 10  # 20-b sorts last and wins
    assert config.storage.filesystem == "ext4"  # kept from the main file
    assert config.lni.bridge == "br0"


def test_dropins_apply_without_main_file(tmp_path: Path) -> None:
    write(tmp_path / "config.d" / "lab.toml", "[storage]\nallowed_models = ['QEMU NVMe Ctrl']\n")
    assert load_config(tmp_path / "config.toml").storage.allowed_models == ["QEMU NVMe Ctrl"]


def test_unknown_key_names_file_and_dotted_path(tmp_path: Path) -> None:
    main = write(tmp_path / "config.toml", "[storage]\nlevel = 5\n")
    dropin = write(tmp_path / "config.d" / "50-x.toml", "[storage]\nraid_levle = 6\n")
    with pytest.raises(ConfigError) as err:
        load_config(main)
    assert f"{dropin}: storage.raid_levle: unknown key" in str(err.value)


def test_unknown_top_level_table(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config.toml: network: unknown key"):
        load_config(write(tmp_path / "config.toml", "[network]\nx = 1\n"))


@pytest.mark.parametrize(
    ("text", "path", "expected"),
    [
        ("[lni]\ndevice_index = 'one'\n", "lni.device_index", "valid integer"),
        ("[lni]\ndevice_index = 0\n", "lni.device_index", "greater than or equal to 1"),
        ("[storage]\nlevel = 4\n", "storage.level", "Input should be 0, 1, 5, 6 or 10"),
        ("[storage]\nlabel = 'much-too-long-label'\n", "storage.label", "pattern"),
        ("[storage]\nchunk_kib = 512\n", "storage.chunk_kib", "less than or equal to 256"),
        ("[storage]\nmin_device_size = 'lots'\n", "storage.min_device_size", "byte"),
        ("[virt]\nport = 70000\n", "virt.port", "less than or equal to 65535"),
        ("[imds]\nendpoint = 'file:///etc/passwd'\n", "imds.endpoint", "pattern"),
        ("[lni]\nmac = '0E:11:22:33:44:02'\n", "lni.mac", "pattern"),
        ("[rootfs]\nenabled = 'maybe'\n", "rootfs.enabled", "valid boolean"),
        ("[lni]\nlibvirt_network = 'default'\n", "lni.libvirt_network", "use default_vm_network"),
        ("[lni]\nlibvirt_network = 'default-nat'\n", "lni.libvirt_network", "renamed copy"),
        # Issue 14: strict, no coercion.
        ("[virt]\ndisallow_root = 'off'\n", "virt.disallow_root", "valid boolean"),
        ("[virt]\nport = '9090'\n", "virt.port", "valid integer"),
        ("[storage]\nlevel = 5.0\n", "storage.level", "must be an integer"),
        ("[storage]\nlevel = true\n", "storage.level", "must be an integer"),  # was RAID1
        ("[lni]\naddress = 5\n", "lni.address", "must be a string"),
        ("[lni]\ndns = [167772161]\n", "lni.dns.0", "must be a string"),
        # Durations finite and bounded (inf overflowed a socket timeout or retried forever).
        ("[imds]\nrequest_timeout_seconds = inf\n", "imds.request_timeout_seconds", "finite"),
        ("[imds]\nrequest_timeout_seconds = nan\n", "imds.request_timeout_seconds", "finite"),
        ("[imds]\nrequest_timeout_seconds = 1e300\n", "imds.request_timeout_seconds", "60"),
        ("[imds]\nboot_wait_seconds = inf\n", "imds.boot_wait_seconds", "finite"),
        ("[lni]\naddress_timeout_seconds = -inf\n", "lni.address_timeout_seconds", "finite"),
        ("[virt]\npackage_lock_wait_seconds = 1e9\n", "virt.package_lock_wait_seconds", "1800"),
        # Paths absolute and normalised; never a directory of the system.
        ("[storage]\nmount_point = 'images'\n", "storage.mount_point", "absolute path"),
        ("[storage]\nmount_point = '../../etc'\n", "storage.mount_point", "absolute path"),
        ("[storage]\nmount_point = '/'\n", "storage.mount_point", "is the system's"),
        ("[storage]\nmount_point = '/srv/../etc'\n", "storage.mount_point", "normalised"),
        ("[storage]\nmount_point = '/srv/images/'\n", "storage.mount_point", "normalised"),
        ("[storage]\nmount_point = '//srv'\n", "storage.mount_point", "normalised"),
        ('[storage]\nmount_point = "/srv/a\\nb"\n', "storage.mount_point", "control"),
        ("[storage]\nmount_point = '/etc'\n", "storage.mount_point", "is the system's"),
        ("[storage]\nmount_point = '/boot/efi'\n", "storage.mount_point", "is the system's"),
        ("[storage]\nmount_point = '/usr/local'\n", "storage.mount_point", "is the system's"),
        ("[storage]\nmount_point = '/var'\n", "storage.mount_point", "is the system's"),
        ("[storage]\nmount_point = '/var/lib'\n", "storage.mount_point", "is the system's"),
        ("[storage]\nmount_point = '/var/lib/cockpit-agent'\n", "storage.mount_point", "system"),
        ("[storage]\ndevices = ['nvme1n1']\n", "storage.devices.0", "pattern"),
        ("[virt]\ntls_certificate = 'cert.pem'\ntls_key = '/k'\n", "virt.tls_certificate", "abs"),
        ("[virt]\ntls_certificate = '/etc/c.pem'\n", "virt.tls_key", "set both or neither"),
        ("[virt]\ntls_key = '/etc/k.pem'\n", "virt.tls_key", "set both or neither"),
        ("[virt.packages]\ndebian = ['-oAPT::Get::x=1']\n", "virt.packages.debian.0", "pattern"),
        # EC2: at most 24 interfaces on one network card, at most 32 cards.
        ("[lni]\ndevice_index = 24\n", "lni.device_index", "less than or equal to 23"),
        ("[lni]\nnetwork_card = 32\n", "lni.network_card", "less than or equal to 31"),
        ("[lni]\nmode = 'route'\n", "lni.route_subnet", "needs route_subnet"),
        ("[imds]\nendpoint = 'http://169.254.169.254:99999'\n", "imds.endpoint", "Port out"),
        ("[imds]\nendpoint = 'http://user:pw@169.254.169.254'\n", "imds.endpoint", "HOST"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, text: str, path: str, expected: str) -> None:
    main = write(tmp_path / "config.toml", text)
    with pytest.raises(ConfigError) as err:
        load_config(main)
    message = str(err.value)
    assert f"{main}: {path}:" in message
    assert expected in message


def test_every_error_is_listed(tmp_path: Path) -> None:
    main = write(tmp_path / "config.toml", "[storage]\nlevel = 4\nfoo = 1\n")
    with pytest.raises(ConfigError) as err:
        load_config(main)
    assert "storage.level" in str(err.value)
    assert "storage.foo: unknown key" in str(err.value)


def test_invalid_toml(tmp_path: Path) -> None:
    main = write(tmp_path / "config.toml", "[storage\nlevel = 5\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(main)


def test_unreadable_file(tmp_path: Path) -> None:
    (tmp_path / "config.toml").mkdir()
    (tmp_path / "config.toml" / "x").write_text("")
    with pytest.raises(ConfigError, match="cannot read"):
        parse_config([tmp_path / "config.toml"])


def test_size_strings_are_accepted(tmp_path: Path) -> None:
    main = write(tmp_path / "config.toml", "[storage]\nmin_device_size = '64MiB'\n")
    assert load_config(main).storage.min_device_size == 64 * 1024**2


def test_schema_documents_every_key() -> None:
    schema = config_schema()
    storage = schema["$defs"]["StorageConfig"]["properties"]
    assert "allowed_models" in storage
    for section in ("ImdsConfig", "RootfsConfig", "StorageConfig", "VirtConfig", "LniConfig"):
        for name, prop in schema["$defs"][section]["properties"].items():
            assert prop.get("description"), f"{section}.{name} has no description"
            assert "default" in prop, f"{section}.{name} has no default"


def test_no_region_or_account_in_defaults() -> None:
    dumped = Config().model_dump_json()
    for word in ("us-east", "us-west", "eu-", "ap-", "subnet-", "vpc-", "arn:"):
        assert word not in dumped


@pytest.mark.parametrize(
    "text",
    [
        "[storage]\nmount_point = '/srv/vm-images'\n",
        "[storage]\nmount_point = '/var/lib/libvirt/images'\n",
        "[storage]\nmount_point = '/data'\ndevices = ['/dev/nvme1n1']\n",
        "[imds]\nboot_wait_seconds = 5\nendpoint = 'http://[fd00:ec2::254]:80'\n",
        "[virt]\ntls_certificate = '/etc/c.pem'\ntls_key = '/etc/k.pem'\n",
        "[lni]\naddress = '10.0.3.20/24'\ngateway = '10.0.3.1'\ndns = ['10.0.0.2']\n",
        "[lni]\ndevice_index = 23\nnetwork_card = 31\n",
        "[lni]\nmode = 'route'\nroute_subnet = '10.0.3.192/26'\n",
    ],
)
def test_good_values_are_accepted(tmp_path: Path, text: str) -> None:
    load_config(write(tmp_path / "config.toml", text))


# --- files that are there but cannot be read: errors that name them, never "defaults" -------


def test_a_dangling_main_config_is_an_error(tmp_path: Path) -> None:
    main = tmp_path / "config.toml"
    main.symlink_to(tmp_path / "gone.toml")
    with pytest.raises(ConfigError, match=r"config.toml: cannot read: a symlink to nothing"):
        load_config(main)


def test_a_main_config_in_a_symlink_loop_is_an_error(tmp_path: Path) -> None:
    main = tmp_path / "config.toml"
    main.symlink_to(main)
    with pytest.raises(ConfigError, match=r"config.toml: cannot read: Too many levels"):
        load_config(main)


def test_a_config_that_is_not_a_regular_file_is_an_error(tmp_path: Path) -> None:
    main = tmp_path / "config.toml"
    os.mkfifo(main)  # opening it would block for ever
    with pytest.raises(ConfigError, match="not a regular file"):
        load_config(main)


def test_a_config_path_below_a_file_is_an_error(tmp_path: Path) -> None:
    write(tmp_path / "etc", "")
    with pytest.raises(ConfigError, match="cannot read: Not a directory"):
        load_config(tmp_path / "etc" / "config.toml")


def test_a_huge_config_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    main = write(tmp_path / "config.toml", "# " + "x" * (2 << 20) + "\n")
    with pytest.raises(ConfigError, match="larger than 1048576 bytes"):
        load_config(main)


@pytest.mark.parametrize(
    ("name", "make", "expected"),
    [
        ("50-gone.toml", lambda p: p.symlink_to(p.parent / "nowhere"), "a symlink to nothing"),
        ("50-dir.toml", lambda p: p.mkdir(), "not a regular file"),
        ("50-bad.toml", lambda p: p.write_text("[storge]\n"), "storge: unknown key"),
        ("50-typo.toml", lambda p: p.write_text("[storage\n"), "not valid TOML"),
        ("50-latin1.toml", lambda p: p.write_bytes(b"# caf\xe9\n"), "not UTF-8 text: byte 5"),
    ],
)
def test_a_broken_dropin_is_an_error_that_names_it(
    tmp_path: Path, name: str, make: Any, expected: str
) -> None:
    # Issue 14: a broken drop-in was skipped silently.
    main = write(tmp_path / "config.toml", "[storage]\nlevel = 6\n")
    dropins = tmp_path / "config.d"
    dropins.mkdir()
    make(dropins / name)
    with pytest.raises(ConfigError) as err:
        load_config(main)
    assert f"{dropins / name}: " in str(err.value)
    assert expected in str(err.value)


def test_every_unreadable_file_is_named(tmp_path: Path) -> None:
    main = tmp_path / "config.toml"
    main.write_bytes(b"\xff")
    bad = write(tmp_path / "config.d" / "10-bad.toml", "[x\n")
    with pytest.raises(ConfigError) as err:
        load_config(main)
    assert f"{main}: not UTF-8" in str(err.value)
    assert f"{bad}: not valid TOML" in str(err.value)


def test_a_config_d_that_is_not_a_directory_is_an_error(tmp_path: Path) -> None:
    write(tmp_path / "config.d", "")
    with pytest.raises(ConfigError, match=r"config.d: cannot read: Not a directory"):
        load_config(tmp_path / "config.toml")


@pytest.mark.parametrize(
    "text",
    [
        "a = " + "[" * 3000 + "]" * 3000 + "\n",  # RecursionError in tomllib
        "a = " + "{b = " * 3000 + "1" + "}" * 3000 + "\n",
        "a" + ".a" * 3000 + " = 1\n",  # parsed flat, 3000 tables deep
    ],
    ids=["arrays", "inline-tables", "dotted-key"],
)
def test_deep_nesting_is_a_config_error(tmp_path: Path, text: str) -> None:
    main = write(tmp_path / "config.toml", text)
    with pytest.raises(ConfigError, match=r"config.toml: (not valid TOML: )?nested"):
        load_config(main)
