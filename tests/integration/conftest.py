"""Fixtures of the integration tests (root on this machine): loop devices and network
namespaces.

Every image lives under the test's tmp_path, and every command names only a device these
fixtures attached themselves. Teardown always runs, in reverse order of what was done:
unmount, remove partition devices (`partx -d`), detach the loop devices; then it checks with
`losetup -a` that none of the images is still attached. The namespaces are likewise torn down
and checked to be gone.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.helpers.loops import LOOP_TOOLS, LoopDevices, attached_loops
from tests.helpers.tools import need_tools
from tests.integration.netns_helpers import NETNS_TOOLS, Lan, existing_namespaces


@pytest.fixture
def loops(tmp_path: Path) -> Iterator[LoopDevices]:
    """Attach loop devices for one test; always torn down, and checked to be gone."""
    if os.geteuid() != 0:
        pytest.skip("loop devices need root")
    need_tools(*LOOP_TOOLS)
    if not Path("/dev/loop-control").exists():
        pytest.skip("no /dev/loop-control on this machine")
    workdir = tmp_path / "loops"
    workdir.mkdir()
    assert not [line for line in attached_loops() if str(workdir) in line]
    devices = LoopDevices(workdir)
    try:
        yield devices
    finally:
        failed = devices.cleanup()
        left = [line for line in attached_loops() if str(workdir) in line]
        assert not failed, f"teardown failed: {failed}"
        assert not left, f"loop devices left attached: {left}"


@pytest.fixture
def lan(tmp_path: Path) -> Iterator[Lan]:
    """The host and lan namespaces, always torn down and checked to be gone."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    need_tools(*NETNS_TOOLS)
    net = Lan(tmp_path)
    try:
        net.build()
        yield net
    finally:
        failed = net.cleanup()
        left = {net.host, net.lan} & set(existing_namespaces())
        assert not failed, f"teardown failed: {failed}"
        assert not left, f"namespaces left behind: {left}"
        assert not net.etc.exists()
