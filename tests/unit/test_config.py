from __future__ import annotations

from pathlib import Path

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
