"""Where this host runs: on EC2 or not, virtual or metal, on an Outpost; from DMI and IMDS.

DMI (/sys/class/dmi/id: the firmware's SMBIOS tables, which nothing on the host can change):
an EC2 Nitro instance, virtual or metal, names "Amazon EC2" as its system manufacturer
(sys_vendor), and as bios_vendor, board_vendor, chassis_vendor and chassis_asset_tag; its
product_name is its instance type. Its system UUID begins with "ec2" (product_uuid, readable
by root only; /sys/hypervisor/uuid on the older Xen instances, whose DMI says "Xen"): the test
of cloud-init's ds-identify and of AWS's documentation, which also accepts the UUID's other
byte order. Any of these makes the host EC2. A metal instance type has ".metal" as its size,
or ".metal-<n>xl" (the rule of systemd-detect-virt).

IMDS, when it answered: the instance type of the identity document, and
meta-data/outpost-arn, which exists only on an instance launched on an Outpost. An IMDS alone
does not make the host EC2: other clouds and the lab serve one too.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

from pydantic import ConfigDict

from cockpit_agent.facts.model import Frozen
from cockpit_agent.host.sysfs import SYSFS, attr

EC2_VENDOR = "Amazon EC2"
VENDOR_FIELDS = ("sys_vendor", "bios_vendor", "board_vendor", "chassis_vendor", "chassis_asset_tag")
METAL = re.compile(r"\.metal(-|$)")


# Both are kept in the state file: a field a newer agent adds must not make an older one
# (after a rollback) distrust the whole file, so unknown fields are ignored, not refused.
_STORED = ConfigDict(frozen=True, extra="ignore")


class Dmi(Frozen):
    """The DMI fields the agent reads ("" where absent or unreadable)."""

    model_config = _STORED

    sys_vendor: str = ""
    bios_vendor: str = ""
    board_vendor: str = ""
    chassis_vendor: str = ""
    chassis_asset_tag: str = ""
    product_name: str = ""
    board_asset_tag: str = ""  # the instance id on Nitro
    ec2_uuid: bool = False  # product_uuid or /sys/hypervisor/uuid begins with "ec2"


class Location(Frozen):
    """Where this host runs, and what said so."""

    model_config = _STORED

    ec2: bool
    metal: bool = False
    instance_type: str | None = None
    outpost_arn: str | None = None
    evidence: list[str] = []
    summary: str
    dmi: Dmi


def read_dmi(sysfs: Path = SYSFS) -> Dmi:
    """The DMI fields under `sysfs` (tests point it at a hand-made tree)."""
    ids = sysfs / "class" / "dmi" / "id"
    fields = {name: attr(ids, name) for name in (*VENDOR_FIELDS, "product_name", "board_asset_tag")}
    uuids = (attr(ids, "product_uuid"), attr(sysfs / "hypervisor", "uuid"))
    return Dmi(**fields, ec2_uuid=any(_ec2_uuid(u) for u in uuids))


def locate(dmi: Dmi, instance_type: str | None = None, outpost_arn: str | None = None) -> Location:
    """Where the host is, from DMI and what IMDS said (None where it said nothing)."""
    evidence = [f"DMI {name} {EC2_VENDOR!r}" for name in VENDOR_FIELDS if _is_ec2(dmi, name)]
    if dmi.ec2_uuid:
        evidence.append("DMI system UUID ec2...")
    ec2 = bool(evidence)
    kind = instance_type or (dmi.product_name if ec2 and dmi.product_name else None)
    if instance_type:
        evidence.append(f"IMDS instance type {instance_type}")
    elif kind:
        evidence.append(f"DMI product_name {kind}")
    if outpost_arn:
        evidence.append(f"IMDS outpost-arn {outpost_arn}")
    metal = ec2 and bool(kind and METAL.search(kind))
    return Location(
        ec2=ec2,
        metal=metal,
        instance_type=kind,
        outpost_arn=outpost_arn,
        evidence=evidence,
        summary=_summary(ec2, metal, kind, outpost_arn, dmi),
        dmi=dmi,
    )


def _summary(ec2: bool, metal: bool, kind: str | None, outpost: str | None, dmi: Dmi) -> str:
    if not ec2:
        vendor = f"DMI says {dmi.sys_vendor!r}" if dmi.sys_vendor else "no DMI"
        return f"not EC2 ({vendor})" + (f", on Outpost {outpost}" if outpost else "")
    what = f"EC2 {'metal' if metal else 'virtual'} instance" + (f" {kind}" if kind else "")
    return what + (f" on Outpost {outpost}" if outpost else " in an AWS Region")


def _is_ec2(dmi: Dmi, field: str) -> bool:
    value: str = getattr(dmi, field)
    return value.startswith(EC2_VENDOR)


def _ec2_uuid(text: str) -> bool:
    """Whether a system UUID is EC2's, in either byte order (cloud-init's identify_aws)."""
    text = text.strip().lower()
    if text.startswith("ec2"):
        return True
    try:
        return uuid.UUID(text).bytes_le.hex().startswith("ec2")
    except ValueError:
        return False
