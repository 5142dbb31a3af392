"""The per-run seed: what one instance adds to the cached image, as one tar passed by fw_cfg.

The agent itself is in the image, baked from its .deb (build.py). The seed carries what is
this instance's: the agent's configuration, the IMDS tree (this run's instance id, the MACs of
the QEMU NICs) with the IMDS stand-in that serves it, and root's authorized_keys. Inside the
guest, the generator cockpit-lab-seed puts it in place before systemd loads units, as user
data and IMDS would on EC2.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

from cockpit_lab.recipe import LNI_GUEST_IP, LNI_MAC, MGMT_GUEST_IP, MGMT_MAC, REPO_DIR

FIXTURE_TREE = REPO_DIR / "tests/fixtures/imds/outposts-server.json"
# The IMDS stand-in (standard library only): the guest runs it with its own python3.
IMDS_STUB = Path(__file__).with_name("imds_stub.py")

LAB_CONFIG = """\
# The lab's agent configuration (written by lab/cockpit_lab/seed.py).
[imds]
endpoint = "http://169.254.169.254"

[storage]
allowed_models = ["QEMU NVMe Ctrl"]
min_device_size = "64MiB"
"""


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


def write_seed(path: Path, *, instance_id: str, public_key: str, config: str = LAB_CONFIG) -> str:
    """Write the seed tar to `path`; return its id (a hash of its contents)."""
    files: dict[str, tuple[bytes, int]] = {
        "etc/cockpit-agent/config.toml": (config.encode(), 0o644),
        "imds.json": (json.dumps(imds_tree(instance_id), indent=2).encode(), 0o644),
        "authorized_keys": (public_key.encode(), 0o600),
        "imds_stub.py": (IMDS_STUB.read_bytes(), 0o644),
    }
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
            tar.addfile(info, io.BytesIO(data))
    return seed_id
