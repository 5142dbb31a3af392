"""The .deb and the .rpm that `make package` builds (packaging/README.md).

Their file lists; their layout unpacked (`dpkg -x`) and installed into an empty root (`rpm
--root --noscripts`), where the command they install runs on this machine's Python and the
preset enables the units (`systemctl --root`); their maintainer scripts through the real dpkg
and rpm against a throwaway root, into which dpkg and rpm chroot to run them, with stand-ins for
systemctl and Debian's helpers that log their arguments: install, upgrade, remove and purge
never touch this host's systemd. Then lintian and rpmlint, which must find nothing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.helpers.tools import need_tools

ROOT = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
UNITS = ("cockpit-agent.service", "cockpit-agent-check.service", "cockpit-agent-check.timer")
PREFIX = "usr/lib/cockpit-agent"

pytestmark = pytest.mark.integration


def sh(*argv: str | Path) -> str:
    """Run a command that must succeed; its stdout and stderr."""
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"{argv}: {proc.returncode}\n{proc.stdout}{proc.stderr}"
    return proc.stdout + proc.stderr


@dataclass(frozen=True)
class Packages:
    deb: Path
    rpm: Path


@pytest.fixture(scope="module")
def packages() -> Packages:
    """`make package`: builds both (installing its tools first) or reuses an up-to-date build."""
    if os.geteuid() != 0:
        pytest.skip("make package installs its tools with apt; the scripts' roots need root")
    lines = sh("make", "-s", "-C", ROOT, "package").split()
    built = Packages(
        deb=Path(next(x for x in lines if x.endswith(".deb"))),
        rpm=Path(next(x for x in lines if x.endswith(".rpm"))),
    )
    assert built.deb.name == f"cockpit-agent_{VERSION}-1_amd64.deb"
    assert built.rpm.name == f"cockpit-agent-{VERSION}-1.x86_64.rpm"
    return built


# -- what the packages hold ------------------------------------------------------------------


def test_the_deb_holds_the_agent_its_libraries_units_config_and_docs(packages: Packages) -> None:
    listing = sh("dpkg-deb", "--contents", packages.deb)
    files = {line.split()[-1].removeprefix(".") for line in listing.splitlines()}
    expected = {
        "/usr/bin/cockpit-agent",
        f"/{PREFIX}/lib/cockpit_agent/cli.py",
        f"/{PREFIX}/lib/pydantic/main.py",
        f"/{PREFIX}/lib/pyroute2/__init__.py",
        f"/{PREFIX}/python3.11/pydantic_core/_pydantic_core.cpython-311-x86_64-linux-gnu.so",
        f"/{PREFIX}/python3.12/pydantic_core/_pydantic_core.cpython-312-x86_64-linux-gnu.so",
        *(f"/lib/systemd/system/{unit}" for unit in UNITS),
        "/lib/systemd/system-preset/50-cockpit-agent.preset",
        "/etc/cockpit-agent/config.toml",
        "/usr/share/doc/cockpit-agent/README.md",
        "/usr/share/doc/cockpit-agent/docs/configuration.md",
        "/usr/share/doc/cockpit-agent/copyright",
    }
    assert expected <= files, expected - files
    assert re.search(r"^-rwxr-xr-x root/root .* \./usr/bin/cockpit-agent$", listing, re.M)
    assert not [f for f in files if f.startswith(("/opt", "/usr/local"))]
    assert not [f for f in files if "imds_stub" in f or "imds-stub" in f]
    assert not [f for f in files if f.endswith(".pyc")]
    assert not [f for f in files if f.startswith(f"/{PREFIX}/lib/pydantic_core")]
    control = sh("dpkg-deb", "--field", packages.deb, "Depends")
    assert "python3 (>= 3.11), python3 (<< 3.13)" in control
    assert sh("dpkg-deb", "--info", packages.deb, "conffiles") == "/etc/cockpit-agent/config.toml\n"


def test_the_rpm_holds_the_agent_for_python3_11(packages: Packages) -> None:
    files = set(sh("rpm", "-qlp", packages.rpm).split())
    expected = {
        "/usr/bin/cockpit-agent",
        f"/{PREFIX}/lib/cockpit_agent/cli.py",
        f"/{PREFIX}/lib/cockpit_agent/__pycache__/cli.cpython-311.pyc",
        f"/{PREFIX}/python3.11/pydantic_core/_pydantic_core.cpython-311-x86_64-linux-gnu.so",
        *(f"/usr/lib/systemd/system/{unit}" for unit in UNITS),
        "/usr/lib/systemd/system-preset/50-cockpit-agent.preset",
        "/etc/cockpit-agent/config.toml",
        "/usr/share/doc/cockpit-agent/README.md",
        "/usr/share/doc/cockpit-agent/docs/configuration.md",
        "/usr/share/licenses/cockpit-agent/LICENSE",
    }
    assert expected <= files, expected - files
    assert not [f for f in files if f.startswith((f"/{PREFIX}/python3.12", "/usr/lib/.build-id"))]
    assert not [f for f in files if "imds_stub" in f or "imds-stub" in f]
    assert not [f for f in files if f.startswith(("/opt", "/usr/local"))]
    flags = sh("rpm", "-qp", "--qf", "[%{FILEFLAGS:fflags} %{FILENAMES}\n]", packages.rpm)
    assert "cn /etc/cockpit-agent/config.toml" in flags  # %config(noreplace)
    requires = sh("rpm", "-qp", "--requires", packages.rpm).split("\n")
    assert "python3.11" in requires


def test_the_wheel_and_the_sdist_carry_the_units_and_the_example(packages: Packages) -> None:
    built = ROOT / "build/package/agent"  # make_packages.py builds them on the way
    (wheel,) = built.glob("cockpit_agent-*.whl")
    (sdist,) = built.glob("cockpit_agent-*.tar.gz")
    data = f"cockpit_agent-{VERSION}.data/data/share/cockpit-agent"
    with zipfile.ZipFile(wheel) as whl:
        names = set(whl.namelist())
        assert {f"{data}/systemd/{unit}" for unit in UNITS} <= names
        assert whl.read(f"{data}/config.toml") == (ROOT / "packaging/config.toml").read_bytes()
        assert f"cockpit_agent-{VERSION}.dist-info/licenses/LICENSE" in names
    with tarfile.open(sdist) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    assert {f"systemd/{unit}" for unit in UNITS} | {"packaging/config.toml", "LICENSE"} <= names


# -- unpacked, the command runs ---------------------------------------------------------------


def run_agent(python: str, tree: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The package's launcher, from `tree`, on this machine's Python, isolated (-I) as its
    shebang says; -S also drops the host's site-packages, so only the package's libraries count."""
    return subprocess.run(
        [python, "-I", "-S", str(tree / "usr/bin/cockpit-agent"), *args],
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_deb_unpacked_runs_and_its_preset_enables_the_units(
    packages: Packages, tmp_path: Path
) -> None:
    tree = tmp_path / "deb"
    sh("dpkg", "-x", packages.deb, tree)
    version = run_agent("python3", tree, "version")
    assert version.returncode == 0, version.stderr
    assert version.stdout == f"cockpit-agent {VERSION}\n"
    # pydantic and its compiled core load from the package: the shipped example is valid.
    valid = run_agent(
        "python3", tree, "config", "validate", str(tree / "etc/cockpit-agent/config.toml")
    )
    assert valid.returncode == 0, valid.stderr
    for unit in UNITS:
        for line in (tree / "lib/systemd/system" / unit).read_text().splitlines():
            if line.startswith("ExecStart="):
                assert os.access(tree / line.split("=", 1)[1].split()[0].lstrip("/"), os.X_OK)
    need_tools("systemctl")
    sh("systemctl", f"--root={tree}", "preset", *UNITS)
    wants = tree / "etc/systemd/system"
    assert (wants / "multi-user.target.wants/cockpit-agent.service").is_symlink()
    assert (wants / "timers.target.wants/cockpit-agent-check.timer").is_symlink()
    # A Python the package was not built for gets a clear message, not an ImportError.
    (tree / PREFIX / "python3.11").rename(tree / PREFIX / "python3.10")
    refused = run_agent("python3", tree, "version")
    assert refused.returncode == 1
    assert "has no libraries for python3.11 (it has python3.10, python3.12" in refused.stderr


def test_the_rpm_installed_into_an_empty_root_runs_on_python3_11(
    packages: Packages, tmp_path: Path
) -> None:
    root = tmp_path / "rpm"
    sh("rpm", "--root", root, "--initdb")
    sh("rpm", "--root", root, "-i", "--nodeps", "--noscripts", packages.rpm)
    version = run_agent("python3.11", root, "version")
    assert version.returncode == 0, version.stderr
    assert version.stdout == f"cockpit-agent {VERSION}\n"
    shebang = (root / "usr/bin/cockpit-agent").read_text().splitlines()[0]
    assert shebang == "#!/usr/bin/python3.11 -I"
    # The shipped bytecode was used as it is: nothing was rewritten under the prefix.
    assert sh("rpm", "--root", root, "-V", "--nodeps", "cockpit-agent") == ""


# -- maintainer scripts against a throwaway root -----------------------------------------------

STAND_INS = ("systemctl", "deb-systemd-helper", "deb-systemd-invoke", "py3compile")
TOOLS = ("/bin/dash", "/usr/bin/find", "/bin/rm")


@pytest.fixture
def script_root(tmp_path: Path) -> Iterator[Path]:
    """An empty root with /bin/sh, find and rm (with their libraries), a /dev/null, a systemd
    that looks booted (/run/systemd/system) and stand-ins that append `name args` to /calls.log;
    `python3` answers 3.11 (the postinst asks it which libraries to byte-compile)."""
    root = tmp_path / "root"
    libs = re.findall(r"(/\S+\.so[.\d]*) \(", sh("ldd", *TOOLS))
    for tool in {*TOOLS, *libs, "/lib64/ld-linux-x86-64.so.2"}:
        (root / tool.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(tool, root / tool.lstrip("/"))
    (root / "bin/sh").symlink_to("dash")
    (root / "dev").mkdir()
    sh("mknod", "-m", "666", root / "dev/null", "c", "1", "3")
    (root / "run/systemd/system").mkdir(parents=True)
    for name in (*STAND_INS, "python3"):
        answer = "echo 3.11\n" if name == "python3" else ""
        stand_in = root / "usr/bin" / name
        stand_in.write_text(f'#!/bin/sh\necho "{name} $*" >> /calls.log\n{answer}')
        stand_in.chmod(0o755)
    for name in ("updates", "info"):
        (root / "var/lib/dpkg" / name).mkdir(parents=True)
    for name in ("status", "available"):
        (root / "var/lib/dpkg" / name).touch()
    yield root


def calls(root: Path) -> list[str]:
    """What the stand-ins were asked since the last call, and forget it."""
    log = root / "calls.log"
    lines = log.read_text().splitlines() if log.exists() else []
    log.write_text("")
    return lines


def test_deb_install_enables_upgrade_keeps_remove_stops_purge_cleans(
    packages: Packages, script_root: Path
) -> None:
    root = script_root
    dpkg = ("dpkg", f"--root={root}", "--force-depends")
    config = root / "etc/cockpit-agent/config.toml"
    state = root / "var/lib/cockpit-agent/state.json"

    sh(*dpkg, "-i", packages.deb)
    installed = calls(root)
    for unit in ("cockpit-agent.service", "cockpit-agent-check.timer"):
        assert f"deb-systemd-helper enable {unit}" in installed
    assert f"py3compile -q /{PREFIX}/lib /{PREFIX}/python3.11" in installed
    assert "systemctl --system daemon-reload" in installed
    assert not [c for c in installed if c.startswith("deb-systemd-invoke")], installed
    assert config.read_text().startswith("# cockpit-agent configuration")

    config.write_text(config.read_text() + "[storage]\nlevel = 6\n")
    state.parent.mkdir(parents=True)
    state.write_text("{}")
    sh(*dpkg, "-i", packages.deb)  # the same version again: dpkg's upgrade path
    upgraded = calls(root)
    assert not [c for c in upgraded if c.startswith("deb-systemd-invoke")], upgraded
    assert not [c for c in upgraded if re.match(r"systemctl .*(start|restart)", c)], upgraded
    assert config.read_text().endswith("level = 6\n")
    assert state.read_text() == "{}"

    stray = root / PREFIX / "lib/__pycache__/written-by-a-run.pyc"
    stray.parent.mkdir()
    stray.touch()
    sh(*dpkg, "-r", "cockpit-agent")
    stopped = " ".join(UNITS[::-1])
    assert calls(root) == [f"deb-systemd-invoke stop {stopped}", "systemctl --system daemon-reload"]
    assert not (root / PREFIX).exists()
    assert not (root / "usr/bin/cockpit-agent").exists()
    assert config.read_text().endswith("level = 6\n")
    assert state.read_text() == "{}"

    dropin = root / "etc/cockpit-agent/config.d/50-site.toml"
    dropin.parent.mkdir()
    dropin.write_text("[lni]\ndevice_index = 2\n")
    sh(*dpkg, "-P", "cockpit-agent")
    assert calls(root) == [
        "deb-systemd-helper purge cockpit-agent-check.timer cockpit-agent.service"
    ]
    assert not config.exists()
    assert not state.parent.exists()
    assert dropin.exists()


def test_rpm_install_presets_upgrade_reloads_erase_disables(
    packages: Packages, script_root: Path
) -> None:
    root = script_root
    config = root / "etc/cockpit-agent/config.toml"
    state = root / "var/lib/cockpit-agent/state.json"
    sh("rpm", "--root", root, "--initdb")

    sh("rpm", "--root", root, "-i", "--nodeps", packages.rpm)
    assert calls(root) == [
        "systemctl --no-reload preset cockpit-agent.service cockpit-agent-check.timer"
    ]

    config.write_text(config.read_text() + "[storage]\nlevel = 6\n")
    state.parent.mkdir(parents=True)
    state.write_text("{}")
    sh("rpm", "--root", root, "-U", "--replacepkgs", "--nodeps", packages.rpm)
    assert calls(root) == ["systemctl daemon-reload"]
    assert config.read_text().endswith("level = 6\n")

    sh("rpm", "--root", root, "-e", "cockpit-agent")
    assert calls(root) == [f"systemctl --no-reload disable --now {' '.join(UNITS)}"]
    assert not (root / "usr/bin/cockpit-agent").exists()
    assert (root / "etc/cockpit-agent/config.toml.rpmsave").read_text().endswith("level = 6\n")
    assert state.read_text() == "{}"


# -- the distributions' own checkers --------------------------------------------------------------


def test_lintian_finds_nothing(packages: Packages) -> None:
    need_tools("lintian")
    out = sh("lintian", "--fail-on", "error,warning", packages.deb)
    assert not re.search(r"^[EW]: ", out, re.M), out


def test_rpmlint_finds_nothing(packages: Packages) -> None:
    need_tools("rpmlint")
    out = sh("rpmlint", "-c", ROOT / "packaging/rpm/rpmlint.toml", packages.rpm)
    assert "0 errors, 0 warnings" in out, out
