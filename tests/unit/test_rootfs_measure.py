"""Measuring: each layer "can grow" only when its tool would make it bigger.

The numbers start from superblocks and reports captured on a real machine
(tests/fixtures/rootfs/*.json) and change only the one value a test is about.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from cockpit_agent.errors import AgentError, CommandFailed
from cockpit_agent.facts.rootfs import RootChain
from cockpit_agent.steps.rootfs.observed import (
    XFS_MIN_AG_BLOCKS,
    LvSize,
    PvSize,
    growpart_dry_run,
    measure_chain,
    measure_pv,
    partition_growth,
)
from tests.fakes import FakeRunner

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "rootfs"


def scenario(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


def call(data: dict[str, Any], program: str) -> dict[str, Any]:
    return dict(next(c for c in data["commands"] if c["argv"][0] == program))


def runner_with(data: dict[str, Any], device_bytes: int, **replace: str) -> FakeRunner:
    """The scenario's answers, with the fs device's lsblk size and some output text changed."""
    runner = FakeRunner()
    chain = RootChain.model_validate(data["chain"])
    assert chain.device is not None
    for c in data["commands"]:
        out = c["stdout"]
        if c["argv"][0] == "lsblk":
            report = json.loads(out)
            for row in report["blockdevices"]:
                if row["kname"] == chain.device.name:
                    row["size"] = device_bytes
            out = json.dumps(report)
        for old, new in replace.items():
            out = out.replace(old, new)
        runner.expect(*c["argv"], rc=c["rc"], stdout=out, stderr=c["stderr"])
    return runner


def superblock(data: dict[str, Any]) -> dict[str, int]:
    text = call(data, "dumpe2fs")["stdout"]
    keys = (
        "Block count",
        "Block size",
        "Blocks per group",
        "Inode blocks per group",
        "First block",
        "Reserved GDT blocks",
    )
    return {k: int(re.search(rf"^{k}:\s+(\d+)", text, re.MULTILINE)[1]) for k in keys}  # type: ignore[index]


# --- ext4: resize2fs drops a last group too small for its metadata + 50 blocks --------------


@pytest.mark.parametrize(("extra", "grows"), [(19, False), (699, False), (1999, True)])
def test_ext4_last_group_too_small_for_its_metadata_is_not_growth(extra: int, grows: bool) -> None:
    data = scenario("ext4-gpt-converged")
    sb = superblock(data)
    # The captured filesystem has 1 KiB blocks, 8192 per group, data from block 1. End it on
    # a group boundary (125 full groups); the device gets `extra` blocks more, so the new last
    # group is group 125 = 5^3, which holds a superblock backup: its metadata is
    # 2 + 510 (inode table) + 1 + 8 (descriptors) + 252 (reserved GDT) = 773 blocks, and
    # resize2fs keeps it only with at least 773 + 50 blocks. blocks + extra is a multiple of 4
    # (1 KiB blocks, 4 KiB pages) so that page rounding plays no part here.
    assert (sb["Block size"], sb["Blocks per group"], sb["First block"]) == (1024, 8192, 1)
    assert sb["Inode blocks per group"] == 510 and sb["Reserved GDT blocks"] == 252
    groups = (sb["Block count"] - 1) // sb["Blocks per group"]
    assert groups == 125
    blocks = 1 + groups * sb["Blocks per group"]
    device = (blocks + extra) * sb["Block size"]
    count = f"Block count:              {sb['Block count']}"
    runner = runner_with(data, device, **{count: f"Block count:              {blocks}"})

    fs = measure_chain(RootChain.model_validate(data["chain"]), runner).fs

    assert fs is not None and fs.size == blocks * sb["Block size"]
    assert fs.can_grow is grows
    assert fs.reachable == (blocks + extra if grows else blocks) * sb["Block size"]


def test_ext4_device_not_a_multiple_of_the_block_size_rounds_down() -> None:
    data = scenario("ext4-gpt-converged")
    sb = superblock(data)
    device = sb["Block count"] * sb["Block size"] + sb["Block size"] - 1

    fs = measure_chain(RootChain.model_validate(data["chain"]), runner_with(data, device)).fs

    assert fs is not None and not fs.can_grow


def test_ext4_without_the_64bit_feature_stops_at_2_to_the_32_blocks() -> None:
    data = scenario("ext4-gpt-converged")
    sb = superblock(data)
    features = re.search(r"^Filesystem features:.*$", call(data, "dumpe2fs")["stdout"], re.M)
    assert features is not None and " 64bit" in features[0]
    top = 2**32 - 1
    count = f"Block count:              {sb['Block count']}"
    replace = {
        count: f"Block count:              {top}",
        features[0]: features[0].replace(" 64bit", ""),
    }
    device = (top + 10 * sb["Blocks per group"]) * sb["Block size"]

    fs = measure_chain(
        RootChain.model_validate(data["chain"]), runner_with(data, device, **replace)
    ).fs

    assert fs is not None and not fs.can_grow
    fs64 = measure_chain(
        RootChain.model_validate(data["chain"]),
        runner_with(data, device, **{count: replace[count]}),
    ).fs
    assert fs64 is not None and fs64.can_grow


# --- XFS: the kernel drops a new last AG smaller than 64 blocks ------------------------------


@pytest.mark.parametrize(
    ("extra", "grows"), [(XFS_MIN_AG_BLOCKS - 1, False), (XFS_MIN_AG_BLOCKS, True)]
)
def test_xfs_new_last_ag_below_the_minimum_is_not_growth(extra: int, grows: bool) -> None:
    data = scenario("xfs-dos-converged")
    info = call(data, "xfs_info")["stdout"]
    bsize, blocks = (int(x) for x in re.search(r"bsize=(\d+)\s+blocks=(\d+)", info).groups())  # type: ignore[union-attr]
    agsize = int(re.search(r"agsize=(\d+)", info)[1])  # type: ignore[index]
    aligned = -(-blocks // agsize) * agsize  # the end of the last (partial) AG
    # Fill the last AG exactly, then add `extra` blocks for a new AG.
    replace = {f"blocks={blocks},": f"blocks={aligned},"}
    device = (aligned + extra) * bsize

    fs = measure_chain(
        RootChain.model_validate(data["chain"]), runner_with(data, device, **replace)
    ).fs

    assert fs is not None and fs.can_grow is grows


# --- btrfs: rounds the device size down to the sector size ---------------------------------


def test_btrfs_less_than_a_sector_more_is_not_growth() -> None:
    data = scenario("btrfs-gpt-converged")
    chain = RootChain.model_validate(data["chain"])
    size = int(re.search(r"devid\s+1\s+size\s+(\d+)", call(data, "btrfs")["stdout"])[1])  # type: ignore[index]
    sector = 4096
    assert f"sectorsize\t\t{sector}" in next(
        c["stdout"] for c in data["commands"] if "dump-super" in c["argv"]
    )

    almost = measure_chain(chain, runner_with(data, size + sector - 1)).fs
    more = measure_chain(chain, runner_with(data, size + sector)).fs

    assert almost is not None and not almost.can_grow
    assert more is not None and more.can_grow and more.reachable == size + sector


# --- LVM ------------------------------------------------------------------------------------


def test_pv_counts_only_whole_extents_and_a_second_metadata_area() -> None:
    mib4 = 4 * 1024**2
    pv = PvSize(
        dev_size=1 + 10 * mib4 + mib4 - 1, pe_start=1, pe_count=10, extent_size=mib4, tail_mda=0
    )
    assert pv.missing_extents == 0
    assert PvSize(1 + 12 * mib4, 1, 10, mib4, 0).missing_extents == 2
    assert PvSize(1 + 12 * mib4, 1, 10, mib4, mib4).missing_extents == 1


@pytest.mark.parametrize(("percent", "expected"), [(0, 40), (10, 29), (39, 0), (90, 0)])
def test_lv_leaves_the_ceiling_of_the_percent_free(percent: int, expected: int) -> None:
    # 10% of 101 extents is 10.1: 11 stay free; 39% is 39.39: 40 stay free, all there is.
    lv = LvSize(name="vg/root", size=0, extent_size=1, extent_count=101, free_count=40)
    assert lv.extendable(percent) == expected


# --- growpart -------------------------------------------------------------------------------


def test_growpart_nochange_and_change() -> None:
    runner = FakeRunner()
    runner.expect(
        "growpart",
        "--dry-run",
        "/dev/sda",
        "1",
        rc=1,
        stdout="NOCHANGE: partition 1 is size 100. it cannot be grown\n",
    )
    runner.expect(
        "growpart",
        "--dry-run",
        "/dev/sda",
        "2",
        stdout="CHANGE: partition=2 start=2048 old: size=1 end=2 new: size=9 end=10\n",
    )

    assert not growpart_dry_run(runner, "/dev/sda", 1).can_grow
    grows = growpart_dry_run(runner, "/dev/sda", 2)
    assert grows.can_grow and grows.detail.startswith("CHANGE: partition=2")


def test_growpart_exit_1_without_nochange_is_a_failure() -> None:
    runner = FakeRunner()
    runner.expect(
        "growpart", "--dry-run", "/dev/sda", "1", rc=1, stdout="", stderr="FAILED: disk too small\n"
    )

    with pytest.raises(CommandFailed, match="disk too small"):
        growpart_dry_run(runner, "/dev/sda", 1)


def test_unreadable_tool_output_is_an_agent_error() -> None:
    data = scenario("xfs-dos-converged")
    chain = RootChain.model_validate(data["chain"])
    runner = runner_with(data, 10**9)
    xfs = call(data, "xfs_info")
    runner.expect(*xfs["argv"], stdout="something else entirely\n")

    with pytest.raises(AgentError, match="xfs_info"):
        measure_chain(chain, runner)


def test_pvs_report_with_a_second_metadata_area_at_the_end() -> None:
    data = scenario("lvm-ext4-gpt-converged")
    pvs = call(data, "pvs")
    report = json.loads(pvs["stdout"])
    row = report["report"][0]["pv"][0]
    assert row["pv_mda_count"] == "1"
    runner = FakeRunner()
    runner.expect(*pvs["argv"], stdout=pvs["stdout"])
    one = measure_pv(runner, pvs["argv"][-1])
    row["pv_mda_count"] = "2"
    runner.expect(*pvs["argv"], stdout=json.dumps(report))

    two = measure_pv(runner, pvs["argv"][-1])

    assert one.tail_mda == 0
    assert two.tail_mda == int(row["pv_mda_size"]) > 0
    assert one.pe_count == int(row["pv_pe_count"]) and one.dev_size == int(row["dev_size"])


@pytest.mark.parametrize(
    ("room", "asks_growpart"), [(0, False), (1024**2 - 512, False), (1024**2, True)]
)
def test_growpart_is_asked_only_when_the_disk_has_a_mebibyte_after_the_partition(
    room: int, asks_growpart: bool
) -> None:
    chain = RootChain.model_validate(scenario("ext4-gpt-disk-grown")["chain"])
    part = chain.partition
    assert part is not None
    size = 1024**3
    sizes = {part.device.name: size, part.disk.name: part.start_bytes + size + room}
    runner = FakeRunner()
    said = f"NOCHANGE: partition {part.number} is size 2097152. it cannot be grown"
    runner.expect("growpart", "--dry-run", part.disk.path, str(part.number), rc=1, stdout=said)

    growth = partition_growth(runner, part, sizes)

    assert not growth.can_grow
    assert bool(runner.calls) == asks_growpart
