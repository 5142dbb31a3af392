"""Build cockpit-agent's .deb and .rpm from this checkout (`make package`; packaging/README.md).

1. The agent's sdist, and its wheel built from that sdist (`python -m build`), so the sdist is
   proven complete.
2. The Python libraries it needs, pinned with their hashes in packaging/python-deps.txt, as
   manylinux wheels from PyPI for each Python the packages support (pip download into a cache
   under build/; pip refuses a wheel whose hash is not in the lock, and a dependency of the
   agent that the lock lacks).
3. For each Python minor, the agent's wheel and those wheels installed (`pip install
   --target`, no network) into a tree of its own; then what is the same in every tree moves to
   site/lib, and only what differs (pydantic-core, compiled per minor) stays in
   site/python3.X. The packages install site/ as /usr/lib/cockpit-agent.
4. A source tree with site/, the launcher, units, preset, example configuration, docs and
   LICENSE, from which dpkg-buildpackage (packaging/deb/debian) and rpmbuild
   (packaging/rpm/cockpit-agent.spec) each build their package into dist/.

`make_packages.py lock` rewrites packaging/python-deps.txt from what pip resolves today.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from email.parser import HeaderParser
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PACKAGING = ROOT / "packaging"
LOCK = PACKAGING / "python-deps.txt"
# Debian 12's python3 and Ubuntu 24.04's; the .rpm takes 3.11 (the python3.11 of RHEL 9 and
# Amazon Linux 2023, whose python3 is 3.9).
MINORS = ("3.11", "3.12")
PLATFORM = "manylinux2014_x86_64"
ARCH = {"deb": "amd64", "rpm": "x86_64"}
CHANGE = "Built from the cockpit-agent checkout by make package."
Libs = list[tuple[str, str, str]]  # (distribution, version, licence) of each bundled library


def run(argv: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    """Run a build tool; on failure show its output and stop."""
    proc = subprocess.run(
        argv,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def pip(*args: str, minor: str) -> list[str]:
    """A pip command that chooses wheels for CPython `minor` on x86_64 glibc, never an sdist."""
    return [sys.executable, "-m", "pip", "--disable-pip-version-check", *args, *for_python(minor)]


def for_python(minor: str) -> list[str]:
    return [
        "--python-version",
        minor,
        "--implementation",
        "cp",
        "--platform",
        PLATFORM,
        "--only-binary=:all:",
    ]


def project() -> dict[str, Any]:
    """The [project] table of pyproject.toml."""
    data: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return data


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_agent(out: Path) -> Path:
    """The agent's sdist and wheel in `out`; returns the wheel."""
    shutil.rmtree(out, ignore_errors=True)
    run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)])
    (wheel,) = out.glob("cockpit_agent-*.whl")
    return wheel


def install_tree(minor: str, agent: Path, wheels: Path, target: Path) -> None:
    """The agent and its locked dependencies, for one Python minor, installed under `target`."""
    locked = ["--require-hashes", "-r", str(LOCK)]
    run(pip("download", "--quiet", *locked, "-d", str(wheels), minor=minor))
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as req:
        req.write(f"cockpit-agent @ {agent.as_uri()} --hash=sha256:{sha256(agent)}\n")
        req.flush()
        offline = ["--no-index", "--find-links", str(wheels), "--no-compile"]
        into = ["-r", req.name, "--target", str(target)]
        run(pip("install", "--quiet", *offline, *locked, *into, minor=minor))
    # The console script (the launcher replaces it) and
    # the wheel's data files (the recipes install the units and the example themselves).
    for extra in ("bin", "share"):
        shutil.rmtree(target / extra, ignore_errors=True)
    # PyYAML's optional C accelerator links a copy of libyaml that no distribution would
    # patch (lintian: embedded-library); the agent reads YAML with the pure-Python safe_load.
    for accelerator in target.glob("yaml/_yaml*.so"):
        accelerator.unlink()


def tree_digest(path: Path) -> str:
    """A hash of a file, or of a directory's files with their paths."""
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        h.update(str(file.relative_to(path.parent)).encode() + b"\0" + file.read_bytes())
    return h.hexdigest()


def split_trees(trees: dict[str, Path], site: Path) -> None:
    """Move each top-level entry that is identical in every tree to site/lib (once), and the
    others to site/python<minor>; the trees must hold the same entries."""
    names = {minor: sorted(p.name for p in tree.iterdir()) for minor, tree in trees.items()}
    if len({tuple(n) for n in names.values()}) != 1:
        sys.exit(f"the Python trees hold different distributions: {names}")
    (site / "lib").mkdir(parents=True)
    for name in next(iter(names.values())):
        copies = [tree / name for tree in trees.values()]
        if len({tree_digest(c) for c in copies}) == 1:
            copies[0].rename(site / "lib" / name)
            continue
        for minor, tree in trees.items():
            (site / f"python{minor}").mkdir(exist_ok=True)
            (tree / name).rename(site / f"python{minor}" / name)


def licenses(site: Path) -> Libs:
    """(distribution, version, SPDX license expression) of every library under site/."""
    found = []
    for meta in sorted(site.glob("*/*.dist-info/METADATA")):
        headers = HeaderParser().parsestr(meta.read_text())
        expression = headers.get("License-Expression") or headers.get("License")
        if not expression:
            sys.exit(f"{meta}: no license in the metadata")
        found.append((headers["Name"], headers["Version"], expression))
    return sorted(set(found))


def rpm_license(libs: Libs) -> str:
    """The package's License: the agent's and every bundled library's, once each."""
    parts = []
    for expression in [str(project()["license"])] + [lic for _, _, lic in libs]:
        term = f"({expression})" if " " in expression else expression
        if term not in parts:
            parts.append(term)
    return " AND ".join(parts)


def debian_copyright(libs: Libs, agent_version: str, year: str) -> str:
    """The .deb's copyright file: the agent's licence and each bundled library's."""
    lines = [
        "cockpit-agent",
        "",
        f"Copyright {year} the cockpit-agent authors",
        "License: Apache-2.0 (the full text: /usr/share/common-licenses/Apache-2.0)",
        "",
        "The package carries these Python libraries under /usr/lib/cockpit-agent; each one's",
        "licence texts are in its <name>-<version>.dist-info/ there. Licences that Debian keeps",
        "in /usr/share/common-licenses: Apache-2.0, GPL-2 (GPL-2.0-or-later), LGPL-2.1",
        "(LGPL-2.1-or-later).",
        "",
    ]
    lines += [
        f"  {name} {version}: {lic}" for name, version, lic in libs if name != "cockpit-agent"
    ]
    lines += ["", f"This file describes cockpit-agent {agent_version}."]
    return "\n".join(lines) + "\n"


def source_tree(src: Path, site: Path) -> None:
    """Everything the two recipes install, in one directory."""
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    site.rename(src / "site")
    for name in (
        "README.md",
        "LICENSE",
        "packaging/cockpit-agent",
        "packaging/config.toml",
        "packaging/50-cockpit-agent.preset",
        "packaging/rpm/cockpit-agent.spec",
        "packaging/rpm/macros.systemd",
    ):
        shutil.copy2(ROOT / name, src / Path(name).name)
    shutil.copytree(ROOT / "systemd", src / "systemd")
    shutil.copytree(ROOT / "docs", src / "docs")
    shutil.copytree(PACKAGING / "deb" / "debian", src / "debian")


def git(*args: str) -> str:
    """A value from this checkout's git, or "" outside one."""
    argv = ["git", "-C", str(ROOT), *args]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def default_maintainer() -> str:
    """Who builds the packages: this checkout's git identity."""
    name, email = git("config", "user.name"), git("config", "user.email")
    return f"{name} <{email}>" if name and email else "cockpit-agent maintainers <root@localhost>"


@dataclass(frozen=True)
class Release:
    """What both packages are built from and stamped with."""

    src: Path  # the source tree (source_tree)
    out: Path
    version: str  # upstream, from pyproject.toml
    release: str  # the Debian revision and the rpm Release
    maintainer: str  # Name <email>
    epoch: int  # SOURCE_DATE_EPOCH: the commit's time
    libs: Libs

    def when(self) -> datetime:
        return datetime.fromtimestamp(self.epoch, UTC)

    def env(self) -> dict[str, str]:
        return dict(os.environ, SOURCE_DATE_EPOCH=str(self.epoch), DEB_BUILD_OPTIONS="nocheck")


def build_deb(r: Release) -> Path:
    """dpkg-buildpackage with packaging/deb/debian; the changelog and copyright made here."""
    debian = r.src / "debian"
    version = f"{r.version}-{r.release}"
    control = (debian / "control").read_text().replace("@MAINTAINER@", r.maintainer)
    (debian / "control").write_text(control)
    (debian / "changelog").write_text(
        f"cockpit-agent ({version}) unstable; urgency=medium\n\n  * {CHANGE}\n\n"
        f" -- {r.maintainer}  {r.when().strftime('%a, %d %b %Y %H:%M:%S +0000')}\n"
    )
    (debian / "copyright").write_text(debian_copyright(r.libs, version, str(r.when().year)))
    run(["dpkg-buildpackage", "-b", "-us", "-uc", "--no-sign"], cwd=r.src, env=r.env())
    name = f"cockpit-agent_{version}_{ARCH['deb']}.deb"
    shutil.move(r.src.parent / name, r.out / name)
    return r.out / name


def build_rpm(r: Release, top: Path) -> Path:
    """rpmbuild with packaging/rpm/cockpit-agent.spec, its work under `top`."""
    shutil.rmtree(top, ignore_errors=True)
    (r.src / "rpm-changelog").write_text(
        f"* {r.when().strftime('%a %b %d %Y')} {r.maintainer} - {r.version}-{r.release}\n"
        f"- {CHANGE}\n"
    )
    defines = {
        "_topdir": str(top),
        "_sourcedir": str(r.src),
        "pkg_version": r.version,
        "pkg_release": r.release,
        "pkg_license": rpm_license(r.libs),
        "pkg_packager": r.maintainer,
        "use_source_date_epoch_as_buildtime": "1",
    }
    argv = ["rpmbuild", "-bb", "--quiet"]
    for key, value in defines.items():
        argv += ["--define", f"{key} {value}"]
    run([*argv, str(r.src / "cockpit-agent.spec")], env=r.env())
    name = f"cockpit-agent-{r.version}-{r.release}.{ARCH['rpm']}.rpm"
    shutil.move(top / "RPMS" / ARCH["rpm"] / name, r.out / name)
    return r.out / name


def build(work: Path, out: Path, release: str, maintainer: str) -> list[Path]:
    """Both packages into `out`; returns their paths."""
    version = str(project()["version"])
    agent = build_agent(work / "agent")
    trees = {}
    for minor in MINORS:
        trees[minor] = work / "trees" / minor
        shutil.rmtree(trees[minor], ignore_errors=True)
        install_tree(minor, agent, work / "wheels", trees[minor])
    site = work / "site"
    shutil.rmtree(site, ignore_errors=True)
    split_trees(trees, site)
    libs = licenses(site)
    src = work / "src" / f"cockpit-agent-{version}"
    source_tree(src, site)
    out.mkdir(parents=True, exist_ok=True)
    epoch = int(git("log", "-1", "--format=%ct") or 0)
    r = Release(src, out, version, release, maintainer, epoch, libs)
    return [build_deb(r), build_rpm(r, work / "rpmbuild")]


def lock() -> None:
    """Rewrite packaging/python-deps.txt: what pip resolves today for the agent's dependencies
    on each supported Python, pinned, with the hash of every wheel chosen."""
    pins: dict[str, set[str]] = {}
    for minor in MINORS:
        with tempfile.TemporaryDirectory() as tmp:
            report = Path(tmp) / "report.json"
            dry_run = ["--dry-run", "--ignore-installed", "--report", str(report), "--target", tmp]
            run(pip("install", "--quiet", *dry_run, *project()["dependencies"], minor=minor))
            for item in json.loads(report.read_text())["install"]:
                pin = f"{item['metadata']['name']}=={item['metadata']['version']}"
                pins.setdefault(pin, set()).add(
                    item["download_info"]["archive_info"]["hashes"]["sha256"]
                )
    names = [pin.split("==")[0].lower() for pin in pins]
    if len(names) != len(set(names)):
        sys.exit(f"the Pythons resolve to different versions: {sorted(pins)}")
    lines = [
        "# The Python libraries the packages carry, for every Python they support; written by",
        "# `make package-lock` (make_packages.py lock); pip reads it with --require-hashes.",
    ]
    for pin in sorted(pins, key=str.lower):
        lines.append(f"{pin} \\")
        lines += [f"    --hash=sha256:{h} \\" for h in sorted(pins[pin])]
        lines[-1] = lines[-1].removesuffix(" \\")
    LOCK.write_text("\n".join(lines) + "\n")
    print(f"wrote {LOCK.relative_to(ROOT)}: {', '.join(sorted(pins, key=str.lower))}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("command", nargs="?", choices=["build", "lock"], default="build")
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="where the packages go")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "package")
    parser.add_argument("--release", default="1", help="Debian revision and rpm Release")
    parser.add_argument("--maintainer", default=default_maintainer(), help="Name <email>")
    args = parser.parse_args()
    if args.command == "lock":
        lock()
        return
    for path in build(args.work.resolve(), args.out.resolve(), args.release, args.maintainer):
        print(path)


if __name__ == "__main__":
    main()
