"""Where the host runs, from DMI (a hand-made /sys) and what IMDS said."""

from __future__ import annotations

from pathlib import Path

import pytest

from cockpit_agent.facts.location import Dmi, Location, locate, read_dmi

# What the firmware of an EC2 Nitro instance presents (dmidecode of an m5.large: manufacturer
# "Amazon EC2", product name the instance type, UUID ec2...; board asset tag the instance id).
NITRO = {
    "sys_vendor": "Amazon EC2",
    "bios_vendor": "Amazon EC2",
    "board_vendor": "Amazon EC2",
    "chassis_vendor": "Amazon EC2",
    "chassis_asset_tag": "Amazon EC2",
    "product_name": "m5.large",
    "board_asset_tag": "i-0123456789abcdef0",
    "product_uuid": "ec2886be-249a-a171-88f6-f6648c7d03c0",
}
OUTPOST = "arn:aws:outposts:us-west-2:111122223333:outpost/op-0fixture00000001"


def sysfs(tmp_path: Path, dmi: dict[str, str], hypervisor_uuid: str = "") -> Path:
    ids = tmp_path / "class" / "dmi" / "id"
    ids.mkdir(parents=True)
    for name, value in dmi.items():
        (ids / name).write_text(value + "\n")
    if hypervisor_uuid:
        (tmp_path / "hypervisor").mkdir()
        (tmp_path / "hypervisor" / "uuid").write_text(hypervisor_uuid + "\n")
    return tmp_path


def test_a_nitro_instance_in_a_region(tmp_path: Path) -> None:
    dmi = read_dmi(sysfs(tmp_path, NITRO))

    where = locate(dmi, "m5.large")

    assert (where.ec2, where.metal, where.outpost_arn) == (True, False, None)
    assert where.summary == "EC2 virtual instance m5.large in an AWS Region"
    assert "DMI sys_vendor 'Amazon EC2'" in where.evidence
    assert "DMI system UUID ec2..." in where.evidence
    assert dmi.board_asset_tag == "i-0123456789abcdef0"


@pytest.mark.parametrize(
    ("kind", "metal"),
    [
        ("c6id.metal", True),
        ("m7i.metal-24xl", True),
        ("c6id.8xlarge", False),
        ("x.metallic", False),
    ],
)
def test_metal_is_the_instance_types_size(tmp_path: Path, kind: str, metal: bool) -> None:
    dmi = read_dmi(sysfs(tmp_path, {**NITRO, "product_name": kind}))

    assert locate(dmi, kind).metal is metal
    assert locate(dmi).metal is metal  # without IMDS, from DMI's product name
    assert locate(dmi).instance_type == kind


def test_an_outposts_server_says_so_from_imds(tmp_path: Path) -> None:
    dmi = read_dmi(sysfs(tmp_path, {**NITRO, "product_name": "c6id.8xlarge"}))

    where = locate(dmi, "c6id.8xlarge", OUTPOST)

    assert where.ec2 and where.outpost_arn == OUTPOST
    assert where.summary == f"EC2 virtual instance c6id.8xlarge on Outpost {OUTPOST}"
    assert f"IMDS outpost-arn {OUTPOST}" in where.evidence


def test_imds_instance_type_is_preferred_to_dmi(tmp_path: Path) -> None:
    dmi = read_dmi(sysfs(tmp_path, {**NITRO, "product_name": "c6id.metal"}))

    where = locate(dmi, "c6id.8xlarge")

    assert (where.instance_type, where.metal) == ("c6id.8xlarge", False)


@pytest.mark.parametrize(
    ("product_uuid", "hypervisor_uuid"),
    [
        ("EC2E1916-9099-7CAF-FD21-012345ABCDEF", ""),  # a Xen HVM instance's DMI
        ("45E12AEC-DCD1-B213-94ED-012345ABCDEF", ""),  # the other byte order
        ("", "ec2e1916-9099-7caf-fd21-012345abcdef"),  # Xen's own uuid
    ],
)
def test_a_xen_instance_by_its_uuid(
    tmp_path: Path, product_uuid: str, hypervisor_uuid: str
) -> None:
    dmi = {"sys_vendor": "Xen", "product_name": "HVM domU", "product_uuid": product_uuid}

    where = locate(read_dmi(sysfs(tmp_path, dmi, hypervisor_uuid)), "m4.large")

    assert where.ec2 and not where.metal
    assert where.evidence[0] == "DMI system UUID ec2..."


def test_an_imds_alone_is_not_ec2(tmp_path: Path) -> None:
    """QEMU without an EC2 SMBIOS identity, serving an IMDS (the lab before issue 16)."""
    dmi = {"sys_vendor": "QEMU", "product_name": "Standard PC (Q35 + ICH9, 2009)"}

    where = locate(read_dmi(sysfs(tmp_path, {**dmi, "product_uuid": "6a1b5c"})), "c6id.metal")

    assert (where.ec2, where.metal) == (False, False)
    assert where.summary == "not EC2 (DMI says 'QEMU')"


def test_qemu_with_the_ec2_smbios_manufacturer_is_ec2(tmp_path: Path) -> None:
    """`-smbios type=1,manufacturer=Amazon EC2,product=c6id.metal`: what the lab presents."""
    dmi = {"sys_vendor": "Amazon EC2", "product_name": "c6id.metal", "bios_vendor": "SeaBIOS"}

    where = locate(read_dmi(sysfs(tmp_path, dmi)), "c6id.metal", OUTPOST)

    assert (where.ec2, where.metal) == (True, True)
    assert where.evidence == [
        "DMI sys_vendor 'Amazon EC2'",
        "IMDS instance type c6id.metal",
        f"IMDS outpost-arn {OUTPOST}",
    ]


def test_no_dmi_at_all(tmp_path: Path) -> None:
    dmi = read_dmi(tmp_path)

    assert dmi == Dmi()
    assert locate(dmi).summary == "not EC2 (no DMI)"


def test_a_stored_location_with_a_newer_agents_field_still_loads(tmp_path: Path) -> None:
    stored = locate(read_dmi(sysfs(tmp_path, NITRO)), "m5.large").model_dump(mode="json")
    stored["rack"] = "r-1"
    stored["dmi"]["board_serial"] = "x"

    assert Location.model_validate(stored).summary == stored["summary"]
