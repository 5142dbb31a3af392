"""The per-run seed: what a run adds to the cached base image, as one tar passed by fw_cfg.

It carries the agent built from the working tree (its wheel installed by the host's pip into
a staging root laid out as the guest's venv, .pyc included), the agent's systemd units from
systemd/, the lab config, the IMDS tree (MACs matching the QEMU NICs) and root's
authorized_keys. Inside the guest, the generator cockpit-lab-seed puts all of it in place
before systemd loads units. No pip runs in the guest: under TCG it took 10-45 s per boot.
"""

from __future__ import annotations

import copy
import fcntl
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from cockpit_lab.recipe import CACHE_DIR, LNI_GUEST_IP, LNI_MAC, MGMT_GUEST_IP, MGMT_MAC, REPO_DIR

GUEST_VENV = "/opt/cockpit-agent/venv"
GUEST_PYTHON = (3, 11)  # Debian 12's python3: the staged .pyc and the baked wheels need it
FIXTURE_TREE = REPO_DIR / "tests/fixtures/imds/outposts-server.json"
# The IMDS stand-in (standard library only): the guest runs it with its own python3.
IMDS_STUB = REPO_DIR / "agent/cockpit_agent/imds_stub.py"

LAB_CONFIG = """\
# The lab's agent configuration (written by lab/cockpit_lab/seed.py).
[imds]
endpoint = "http://169.254.169.254"

[storage]
allowed_models = ["QEMU NVMe Ctrl"]
min_device_size = "64MiB"
"""


def _sources_digest() -> str:
    h = hashlib.sha256()
    files = [REPO_DIR / "pyproject.toml", *sorted((REPO_DIR / "agent").rglob("*"))]
    for path in files:
        if path.is_file() and "__pycache__" not in path.parts and ".egg-info" not in str(path):
            h.update(str(path.relative_to(REPO_DIR)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def staged_agent(cache: Path = CACHE_DIR, keep: int = 4) -> Path:
    """The working tree's agent staged as the guest's venv (build_agent_wheel, then
    stage_agent), made once per state of its sources and kept in the cache under
    agent/<sources hash>/, so a boot does not wait for pip; the `keep` newest are kept."""
    parent = cache / "agent"
    entry = parent / _sources_digest()[:16]
    venv = entry / GUEST_VENV.lstrip("/")
    if venv.is_dir():
        os.utime(entry)
        return venv
    parent.mkdir(parents=True, exist_ok=True)
    with (parent / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not venv.is_dir():
            tmp = Path(tempfile.mkdtemp(prefix=".stage-", dir=parent))
            try:
                stage_agent(build_agent_wheel(tmp / "wheel"), tmp / "root")
                (tmp / "root").rename(entry)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        entries = sorted(
            (p for p in parent.iterdir() if not p.name.startswith(".")),
            key=lambda p: p.stat().st_mtime,
        )
        for old in entries[:-keep]:
            if old != entry:
                shutil.rmtree(old, ignore_errors=True)
    return venv


def build_agent_wheel(dest: Path) -> Path:
    """A wheel of the working tree's agent in `dest`, built from a clean copy of its sources
    (so that nothing is written into the shared work tree)."""
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cockpit-lab-wheel-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for name in ("pyproject.toml", "README.md", "LICENSE"):
            if (REPO_DIR / name).exists():
                shutil.copy2(REPO_DIR / name, src / name)
        shutil.copytree(
            REPO_DIR / "agent",
            src / "agent",
            ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"),
        )
        # The wheel's data files (pyproject.toml): the units and the example configuration.
        shutil.copytree(REPO_DIR / "systemd", src / "systemd")
        (src / "packaging").mkdir()
        shutil.copy2(REPO_DIR / "packaging/config.toml", src / "packaging/config.toml")
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--quiet",
                "--no-deps",
                "--disable-pip-version-check",
                "--wheel-dir",
                tmp,
                str(src),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"building the agent wheel failed:\n{proc.stdout}{proc.stderr}")
        wheels = sorted(Path(tmp).glob("cockpit_agent-*.whl"))
        if not wheels:
            raise RuntimeError("pip wheel made no cockpit_agent wheel")
        target = dest / wheels[-1].name
        shutil.copy2(wheels[-1], target)
        return target


def stage_agent(wheel: Path, dest: Path) -> Path:
    """Install `wheel` (without dependencies) under `dest` as if into the guest's venv; return
    the staged venv root. Console scripts get the guest venv's interpreter."""
    if sys.version_info[:2] != GUEST_PYTHON:
        raise RuntimeError(
            f"the lab stages the agent with the host's Python {sys.version_info[:2]}, but the "
            f"guest runs {GUEST_PYTHON}: run it from a Python {GUEST_PYTHON} venv"
        )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--ignore-installed",  # else pip uninstalls the host venv's own (editable) agent
            "--disable-pip-version-check",
            "--no-warn-script-location",
            "--prefix",
            GUEST_VENV,
            "--root",
            str(dest),
            str(wheel),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"staging the agent wheel failed:\n{proc.stdout}{proc.stderr}")
    venv = dest / GUEST_VENV.lstrip("/")
    for script in (venv / "bin").iterdir():
        lines = script.read_bytes().split(b"\n", 1)
        if lines[0].startswith(b"#!"):
            script.write_bytes(f"#!{GUEST_VENV}/bin/python3".encode() + b"\n" + lines[1])
    return venv


def imds_tree(instance_id: str) -> dict[str, Any]:
    """The IMDS tree of the lab guest: the foundation's fixture, with this run's instance id
    and the QEMU NICs' MACs at device index 0 (management) and 1 (LNI)."""
    base: dict[str, Any] = {"latest": {"api": {}, "meta-data": {}, "dynamic": {}}}
    if FIXTURE_TREE.exists():
        base = json.loads(FIXTURE_TREE.read_text())
    tree = copy.deepcopy(base)
    meta = tree["latest"].setdefault("meta-data", {})
    region = meta.get("placement", {}).get("region", "us-west-2")
    zone = meta.get("placement", {}).get("availability-zone", region + "a")
    meta.update(
        {
            "instance-id": instance_id,
            "instance-type": meta.get("instance-type", "c6id.8xlarge"),
            "local-ipv4": MGMT_GUEST_IP,
            "mac": MGMT_MAC,
            "hostname": "cockpit-lab",
            "placement": {"availability-zone": zone, "region": region},
        }
    )
    nics = {}
    for index, (mac, ip) in enumerate(((MGMT_MAC, MGMT_GUEST_IP), (LNI_MAC, LNI_GUEST_IP))):
        nics[mac] = {
            "device-number": str(index),
            "network-card": "0",
            "interface-id": f"eni-0lab{index:013d}",
            "local-ipv4s": ip,
            "mac": mac,
            "subnet-id": f"subnet-0lab{index:012d}",
            "vpc-id": "vpc-0lab0000000001",
        }
    meta["network"] = {"interfaces": {"macs": nics}}
    document = {
        "accountId": "111122223333",
        "architecture": "x86_64",
        "availabilityZone": zone,
        "imageId": meta.get("ami-id", "ami-0lab000000000001"),
        "instanceId": instance_id,
        "instanceType": meta["instance-type"],
        "privateIp": MGMT_GUEST_IP,
        "region": region,
        "version": "2017-09-30",
    }
    dynamic = tree["latest"].setdefault("dynamic", {})
    dynamic["instance-identity"] = {"document": json.dumps(document, indent=2)}
    return tree


def write_seed(
    path: Path,
    *,
    venv: Path,
    instance_id: str,
    public_key: str,
    config: str = LAB_CONFIG,
    units_dir: Path = REPO_DIR / "systemd",
) -> str:
    """Write the seed tar to `path`; return its id (a hash of its contents)."""
    files: dict[str, tuple[bytes, int]] = {
        "etc/cockpit-agent/config.toml": (config.encode(), 0o644),
        "imds.json": (json.dumps(imds_tree(instance_id), indent=2).encode(), 0o644),
        "authorized_keys": (public_key.encode(), 0o600),
        "imds_stub.py": (IMDS_STUB.read_bytes(), 0o644),
    }
    staged = sorted(p for p in venv.rglob("*") if p.is_file())
    for file in staged:
        files[f"venv/{file.relative_to(venv)}"] = (file.read_bytes(), file.stat().st_mode & 0o777)
    for unit in sorted(units_dir.glob("*")):
        if unit.suffix in (".service", ".timer", ".socket", ".path", ".target"):
            files[f"units/{unit.name}"] = (unit.read_bytes(), 0o644)
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name][0] + b"\0")
    seed_id = digest.hexdigest()[:16]
    files["seed-id"] = (seed_id.encode() + b"\n", 0o644)
    with tarfile.open(path, "w") as tar:
        for name in sorted(files):
            data, mode = files[name]
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 0
            if name.startswith("venv/"):  # keep sources' mtimes, which the .pyc record
                info.mtime = int((venv / name[len("venv/") :]).stat().st_mtime)
            tar.addfile(info, io.BytesIO(data))
    return seed_id
