"""The docs say what is true now: every configuration key and exit code is documented."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from cockpit_agent.cli import EXIT_CODES
from cockpit_agent.config import Config

ROOT = Path(__file__).resolve().parents[2]


def test_every_config_key_is_in_the_reference() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    for section, field in Config.model_fields.items():
        assert f"## [{section}]" in text
        model = field.annotation
        assert isinstance(model, type) and issubclass(model, BaseModel)
        for key in model.model_fields:
            assert f"| `{key}` |" in text, f"{section}.{key} is not documented"


def test_readme_lists_the_exit_codes_of_help() -> None:
    readme = (ROOT / "README.md").read_text()
    for line in EXIT_CODES.splitlines()[1:]:
        assert line.strip() in readme, line
