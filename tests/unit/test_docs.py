"""The docs say what is true now: every configuration key and exit code is documented, and what
the docs show is real.

Every page (README.md, docs/, packaging/) is parsed with markdown-it (CommonMark), so code is
told from prose as a renderer tells it:

- every `cockpit-agent ...` command in a code block or code span parses against the CLI's own
  argparse parser (a synopsis such as `reconcile [--only STEP]...` is checked without its
  optional parts, then with each of them filled with a sample value);
- every ```toml block is a valid configuration (keys and values, as the agent validates them),
  and every `section.key` or `section.key = value` in a code span names a key of the model
  (with a value the model accepts);
- every relative link names a file of the repository, and every #anchor a heading of its page
  (GitHub's slugs, as mdit-py-plugins makes them).
"""

from __future__ import annotations

import itertools
import re
import shlex
import tomllib
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from io import StringIO
from pathlib import Path
from typing import Any, get_origin

import pytest
from markdown_it import MarkdownIt
from mdit_py_plugins.anchors.index import slugify
from pydantic import BaseModel, ValidationError

from cockpit_agent.cli import EXIT_CODES, build_parser
from cockpit_agent.config import Config

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
PAGES += sorted((ROOT / "packaging").rglob("*.md"))
MARKDOWN = MarkdownIt("commonmark")

# A command starts where a shell word can: after a prompt, `sudo`, `ExecStart=`, a quote.
COMMAND = re.compile(r"(?<![\w./-])(?:/usr/bin/)?cockpit-agent(?=[ \t]+[-a-z<])")
# Values for the placeholders that synopses use, e.g. `reconcile [--only STEP]...`.
SAMPLES = {"STEP": "storage", "SECONDS": "60", "PATH": "/etc/cockpit-agent/config.toml"}
SUBCOMMANDS = ("reconcile", "plan", "status", "check", "facts", "config", "version")
SECTIONS = "|".join(Config.model_fields)
KEY_MENTION = re.compile(rf"^({SECTIONS})\.([\w<>.-]+?)(?:\s*=\s*(.+))?$")
TABLE_MENTION = re.compile(rf"^\[({SECTIONS})\]\s+(\w+)\s*=\s*(.+)$")


def code(page: Path) -> Iterator[tuple[str, str]]:
    """(kind, text) of every code block (kind: its info string) and code span ("inline")."""
    for token in MARKDOWN.parse(page.read_text()):
        if token.type in ("fence", "code_block"):
            yield token.info.strip(), token.content
        for child in token.children or []:
            if child.type == "code_inline":
                yield "inline", child.content


def commands(text: str) -> Iterator[str]:
    """Each `cockpit-agent ...` command line in a piece of code, as written."""
    for line in text.replace("\\\n", " ").splitlines():
        for match in COMMAND.finditer(line):
            before, rest = line[: match.start()], line[match.start() :]
            if re.search(r"(?:-u|--unit)[ =]$", before):
                continue  # journalctl -u cockpit-agent: a unit name
            first = rest.split()[1]
            if not (first.startswith(("-", "<")) or re.fullmatch(r"[a-z][a-z-]*", first)):
                continue  # "cockpit-agent storage: ..." or a unit: not a command
            if before[-1:] in ("'", '"', "`"):
                rest = rest.split(before[-1], 1)[0]  # a command quoted in code
            yield rest


def shell_words(command: str) -> list[str]:
    """The words of one command, up to the first shell operator or comment."""
    command = re.sub(r"<([\w -]+)>", r"PLACEHOLDER\1", command)
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    words = []
    for word in lexer:
        if set(word) <= set("|&;()<>"):
            break
        words.append(word)
    return words[1:]  # without cockpit-agent itself


def parse_error(argv: list[str]) -> str | None:
    """None when the CLI's parser accepts argv (--help included), else argparse's complaint."""
    err = StringIO()
    try:
        with redirect_stdout(StringIO()), redirect_stderr(err):
            build_parser().parse_args(argv)
    except SystemExit as exc:
        if exc.code:
            lines = err.getvalue().strip().splitlines()
            return lines[-1] if lines else f"exit {exc.code}"
    return None


def command_problem(command: str) -> str | None:
    """Why a command shown in the docs would not parse, or None."""
    groups = re.findall(r"\[([^\]]*)\]", command)
    base = shell_words(re.sub(r"\[[^\]]*\](?:\.\.\.)?", "", command))
    attempts = [base]
    for group in groups:
        words = shell_words(f"cockpit-agent {group}")
        unknown = [w for w in words if w.isupper() and w not in SAMPLES]
        if unknown:
            return f"placeholder {unknown[0]} has no sample value in test_docs.SAMPLES"
        attempts.append(base + [SAMPLES.get(w, w) for w in words])
    for argv in attempts:
        slots = [i for i, w in enumerate(argv) if w.startswith("PLACEHOLDER")]
        errors = []
        # A placeholder stands for some value: for a subcommand, or for an argument.
        for values in itertools.product([*SUBCOMMANDS, "x"], repeat=len(slots)):
            filled = list(argv)
            for slot, value in zip(slots, values, strict=True):
                filled[slot] = value
            errors.append(parse_error(filled))
            if errors[-1] is None:
                break
        else:
            return f"{' '.join(argv)}: {errors[0]}"
    return None


def _field(model: type[BaseModel], key: str) -> Any:
    field = model.model_fields.get(key)
    return None if field is None else field.annotation


def key_problem(section: str, path: str, value: str | None) -> str | None:
    """Why `section.path [= value]` is not a key of the configuration (with that value)."""
    key, _, rest = path.partition(".")
    model = _field(Config, section)
    annotation = _field(model, key)
    if annotation is None:
        return f"{section}.{key}: no such key"
    if rest and get_origin(annotation) is not dict:
        return f"{section}.{path}: {section}.{key} has no keys below it"
    if value is None:
        return None
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError as exc:
        return f"{section}.{path} = {value}: not a TOML value ({exc})"
    return config_problem({section: {key: parsed}})


def config_problem(data: dict[str, Any]) -> str | None:
    """The model's complaints about a configuration, or None."""
    try:
        Config.model_validate(data)
    except ValidationError as exc:
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    return None


def mention_problem(text: str) -> str | None:
    """A code span naming a key (`storage.level`, `lni.mode = "route"`, `[health] x = y`)."""
    match = KEY_MENTION.match(text) or TABLE_MENTION.match(text)
    return None if match is None else key_problem(*match.groups())


def anchors(page: Path) -> set[str]:
    """The #anchors of a page's headings, as GitHub makes them (-1, -2 for repeats)."""
    found: set[str] = set()
    repeats: dict[str, int] = {}
    for opening, inline in itertools.pairwise(MARKDOWN.parse(page.read_text())):
        if opening.type == "heading_open":
            slug = slugify("".join(c.content for c in inline.children or []))
            repeats[slug] = repeats.get(slug, -1) + 1
            found.add(f"{slug}-{repeats[slug]}" if repeats[slug] else slug)
    return found


def link_problem(page: Path, href: str) -> str | None:
    """Why a link of `page` does not resolve: a missing file, or a missing #anchor."""
    if re.match(r"^[a-z][a-z+.-]*:", href):
        return None  # https:, mailto: ...: not ours to check
    path, _, anchor = href.partition("#")
    target = (page.parent / path).resolve() if path else page
    if not target.exists():
        return f"{href}: no {target.relative_to(ROOT) if target.is_relative_to(ROOT) else target}"
    if anchor and target.suffix == ".md" and anchor not in anchors(target):
        return f"{href}: no heading with the anchor #{anchor} in {target.name}"
    return None


def links(page: Path) -> Iterator[str]:
    for token in MARKDOWN.parse(page.read_text()):
        for child in token.children or []:
            if child.type == "link_open":
                yield str(child.attrs["href"])


def _rel(page: Path) -> str:
    return str(page.relative_to(ROOT))


SHOWN_COMMANDS = [(_rel(p), c) for p in PAGES for _, text in code(p) for c in commands(text)]
TOML_BLOCKS = [(_rel(p), text) for p in PAGES for kind, text in code(p) if kind == "toml"]
MENTIONS = [
    (_rel(p), text)
    for p in PAGES
    for kind, text in code(p)
    if kind == "inline" and (KEY_MENTION.match(text) or TABLE_MENTION.match(text))
]
LINKS = [(_rel(p), href) for p in PAGES for href in links(p)]


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


def test_the_docs_show_commands_config_and_links_to_check() -> None:
    # The collectors find what the pages hold: an empty list would make every test pass.
    assert len(SHOWN_COMMANDS) > 80 and len(TOML_BLOCKS) > 4
    assert len(MENTIONS) > 60 and len(LINKS) > 80


@pytest.mark.parametrize(("page", "command"), SHOWN_COMMANDS)
def test_every_command_shown_parses_against_the_cli(page: str, command: str) -> None:
    assert command_problem(command) is None, f"{page}: `{command}`: {command_problem(command)}"


@pytest.mark.parametrize(("page", "block"), TOML_BLOCKS)
def test_every_toml_block_is_a_valid_configuration(page: str, block: str) -> None:
    assert config_problem(tomllib.loads(block)) is None, f"{page}:\n{block}"


@pytest.mark.parametrize(("page", "mention"), MENTIONS)
def test_every_configuration_key_mentioned_exists(page: str, mention: str) -> None:
    assert mention_problem(mention) is None, f"{page}: `{mention}`: {mention_problem(mention)}"


@pytest.mark.parametrize(("page", "href"), LINKS)
def test_every_internal_link_resolves(page: str, href: str) -> None:
    problem = link_problem(ROOT / page, href)
    assert problem is None, f"{page}: {problem}"


# --- each checker catches a broken example ---------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "sudo cockpit-agent reconclie --only storage",  # a misspelt command
        "cockpit-agent check --prometeus /tmp/x.prom",  # a misspelt option
        "cockpit-agent reconcile --wait forever",  # a value the option refuses
        "cockpit-agent reconcile [--onyl STEP]... [--dry-run]",  # a synopsis' option
        "cockpit-agent config validate [PATH] [--strict]",
        "cockpit-agent --json <Action> --bogus",  # no value of the placeholder helps
        "ExecStart=/usr/bin/cockpit-agent check --repair --prometheus",  # a missing value
    ],
)
def test_a_broken_command_is_caught(text: str) -> None:
    [command] = commands(text)
    assert command_problem(command) is not None


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("$ cockpit-agent --json <Action>", ["cockpit-agent --json <Action>"]),
        ("cockpit-agent reconcile [--only STEP]... [--wait SECONDS]", None),
        ('lab.ssh("cockpit-agent --json facts").stdout', ["cockpit-agent --json facts"]),
        ("journalctl -u cockpit-agent -o cat", []),
        ("systemctl status cockpit-agent cockpit-agent-check.timer", []),
        ("# cockpit-agent storage: the next line is managed by cockpit-agent", []),
        ("cockpit-agent check \\\n  --prometheus /tmp/x.prom  # the textfile", None),
    ],
)
def test_commands_are_found_where_a_shell_would_run_them(
    text: str, found: list[str] | None
) -> None:
    shown = list(commands(text))
    if found is not None:
        assert shown == found
    assert all(command_problem(c) is None for c in shown)


@pytest.mark.parametrize(
    "text",
    [
        "storage.raid_levle",  # no such key
        "storage.level = 4",  # a value the model refuses
        'virt.port = "9090"',  # no coercion
        "lni.bridge.name",  # a key below a plain value
        "[health] auto_repiar = true",
        "virt.tls_certificate = /etc/ssl/x.pem",  # not a TOML value
    ],
)
def test_a_wrong_key_or_value_is_caught(text: str) -> None:
    assert mention_problem(text) is not None


def test_a_wrong_toml_block_is_caught() -> None:
    assert config_problem(tomllib.loads("[storage]\nlevel = 6\nmount_pont = '/srv'\n"))
    assert config_problem(tomllib.loads("[virt]\ntls_certificate = '/etc/ssl/c.pem'\n"))
    assert config_problem(tomllib.loads("[virt.packages]\ndebian = ['cockpit']\n")) is None


def test_a_broken_link_is_caught(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n## Second `part`, with words\n\n## Second `part`, with words\n")
    assert anchors(page) == {"title", "second-part-with-words", "second-part-with-words-1"}
    assert link_problem(page, "#second-part-with-words-1") is None
    assert link_problem(page, "page.md#title") is None
    assert link_problem(page, "#third") is not None
    assert link_problem(page, "missing.md") is not None
    assert link_problem(page, "page.md#second-part") is not None
    assert link_problem(page, "https://example.com/missing") is None
