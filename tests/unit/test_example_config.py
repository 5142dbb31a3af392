"""packaging/config.toml, the example the packages install in /etc/cockpit-agent, is what
packaging/example_config.py makes of the model's schema, and keeps every default both as
shipped (all commented) and with every key uncommented."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

from cockpit_agent.config import Config, config_schema, parse_config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "packaging" / "config.toml"


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "example_config", ROOT / "packaging" / "example_config.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_example_is_the_generated_one() -> None:
    made = generator().example_config(config_schema())
    assert EXAMPLE.read_text() == made, "run `make example-config` and commit the result"


def test_as_shipped_every_key_is_commented_and_default(tmp_path: Path) -> None:
    text = EXAMPLE.read_text()
    assert all(not line or line.startswith("#") for line in text.splitlines())
    copy = tmp_path / "config.toml"
    copy.write_text(text)
    assert parse_config([copy]) == Config()


def test_uncommented_the_example_still_gives_the_defaults(tmp_path: Path) -> None:
    # Every "#key = value" and "#[table]" line uncommented: valid TOML, known keys, and the
    # values shown are the defaults.
    text = re.sub(r"^#(?=[\[A-Za-z_])", "", EXAMPLE.read_text(), flags=re.MULTILINE)
    uncommented = tmp_path / "config.toml"
    uncommented.write_text(text)
    assert parse_config([uncommented]) == Config()
    for section, field in Config.model_fields.items():
        assert f"\n[{section}]\n" in text, section
        model = field.annotation
        assert model is not None
        for key, info in model.model_fields.items():
            if info.default is not None:
                assert f"\n{key} = " in text or f"\n[{section}.{key}]\n" in text, key
