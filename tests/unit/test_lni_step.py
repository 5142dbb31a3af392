"""The LNI step's plans and applies from fixture facts, with a fake runner and a fake netlink."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cockpit_agent.config import LniConfig
from cockpit_agent.engine import Engine
from cockpit_agent.errors import AgentError, UnsafeDevice
from cockpit_agent.host.files import Files
from cockpit_agent.host.netlink import LinkState
from cockpit_agent.steps.lni.actions import (
    AwaitBridgeAddress,
    EnslaveLink,
    MaskEc2NetUtilsUnits,
    WriteNetworkFiles,
)
from tests.helpers.lni import (
    CONVERGED,
    FRESH,
    INTERFACES,
    LNI_MAC,
    MGMT_MAC,
    NETWORKD_PATHS,
    World,
    bridge,
    lni,
    mgmt,
    names,
    networkd_files,
    platform,
)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


# -- plans -------------------------------------------------------------------------------------


def test_fresh_networkd_host_writes_files_applies_and_waits(world: World) -> None:
    actions = world.plan(world.ctx(FRESH))
    assert names(actions) == [
        "SnapshotNetwork",
        "WriteNetworkFiles",
        "ApplyNetworkConfig",
        "AwaitBridgeAddress",
    ]
    assert actions[0].describe() == (
        f"snapshot {', '.join(NETWORKD_PATHS)} and links ens6 and br-lni for rollback"
    )
    assert [f.path for f in actions[1].files] == NETWORKD_PATHS
    assert actions[1].describe().startswith("write systemd-networkd configuration: ")
    assert actions[3].describe() == "wait up to 5 s for an IPv4 address on br-lni"


def test_converged_networkd_host_plans_nothing(world: World) -> None:
    for path, content in networkd_files().items():
        world.write(path, content)
    assert world.plan(world.ctx(CONVERGED)) == []


def test_edited_file_is_rewritten_and_reapplied(world: World) -> None:
    for path, content in networkd_files().items():
        world.write(path, content)
    world.write(NETWORKD_PATHS[1], "[Match]\nName=br-lni\n")
    actions = world.plan(world.ctx(CONVERGED))
    assert names(actions) == [
        "SnapshotNetwork",
        "WriteNetworkFiles",
        "ApplyNetworkConfig",
        "AwaitBridgeAddress",
    ]


def test_bridge_without_the_lni_mac_gets_it(world: World) -> None:
    for path, content in networkd_files().items():
        world.write(path, content)
    links = [mgmt(), lni(master="br-lni", addresses=()), bridge(mac="aa:bb:cc:dd:ee:ff")]
    assert names(world.plan(world.ctx(links))) == [
        "SnapshotNetwork",
        "SetBridgeMac",
        "AwaitBridgeAddress",
    ]


def test_no_manager_builds_the_bridge_live_with_dhcp(world: World) -> None:
    actions = world.plan(world.ctx(FRESH, platform=platform(manager=None)))
    assert names(actions) == [
        "SnapshotNetwork",
        "CreateBridge",
        "EnslaveLink",
        "StartDhcpClient",
        "AwaitBridgeAddress",
    ]
    assert actions[0].describe() == "snapshot links ens6 and br-lni for rollback"
    assert actions[1].describe() == f"create bridge br-lni with MAC {LNI_MAC}"


def test_no_manager_with_a_static_address(world: World) -> None:
    config = LniConfig(address="192.168.50.30/24", gateway="192.168.50.1")  # type: ignore[arg-type]
    actions = world.plan(world.ctx(FRESH, config, platform=platform(manager=None)))
    assert names(actions) == [
        "SnapshotNetwork",
        "CreateBridge",
        "EnslaveLink",
        "AddBridgeAddress",
        "AwaitBridgeAddress",
    ]
    assert actions[3].describe() == "add 192.168.50.30/24 to br-lni, default route via 192.168.50.1"


def test_no_manager_converged_plans_nothing(world: World) -> None:
    assert world.plan(world.ctx(CONVERGED, platform=platform(manager=None))) == []


@pytest.mark.parametrize(
    ("manager", "netplan", "paths"),
    [
        (
            "NetworkManager",
            False,
            [
                "/etc/NetworkManager/system-connections/cockpit-agent-br-lni.nmconnection",
                "/etc/NetworkManager/system-connections/cockpit-agent-br-lni-port.nmconnection",
            ],
        ),
        ("networkd", True, ["/etc/netplan/90-cockpit-agent-br-lni.yaml"]),
    ],
)
def test_the_host_manager_decides_the_files(
    world: World, manager: str, netplan: bool, paths: list[str]
) -> None:
    actions = world.plan(world.ctx(FRESH, platform=platform(manager, netplan)))
    assert [f.path for f in actions[1].files] == paths


def test_ifupdown_is_refused_with_advice(world: World) -> None:
    with pytest.raises(AgentError, match="ifupdown"):
        world.plan(world.ctx(FRESH, platform=platform("ifupdown")))


def test_lni_missing_from_imds_says_what_to_check(world: World) -> None:
    ctx = world.ctx(FRESH, interfaces=INTERFACES[:1])
    record = Engine([world.step()]).run(ctx).steps[0]
    assert record.status == "failed"
    assert record.error is not None
    assert "no interface at device index 1 on network card 0" in record.error
    assert "EnableLniAtDeviceIndex = 1" in record.error
    assert "launch template" in record.error
    assert world.runner.calls == [] and world.live.calls == []


def test_lni_in_imds_but_without_a_link(world: World) -> None:
    with pytest.raises(AgentError, match=f"IMDS lists the LNI {LNI_MAC}.*no link has that MAC"):
        world.plan(world.ctx([mgmt()]))


def test_lni_enslaved_elsewhere_is_left_alone(world: World) -> None:
    ctx = world.ctx([mgmt(), lni(master="br0", addresses=())])
    record = Engine([world.step()]).run(ctx).steps[0]
    assert record.status == "failed"
    assert "already a port of br0" in (record.error or "")
    assert record.actions == []
    assert world.runner.calls == [] and world.live.calls == []


def test_lni_mac_pinned_to_the_management_interface_is_refused(world: World) -> None:
    ctx = world.ctx(FRESH, LniConfig(mac=MGMT_MAC))
    with pytest.raises(UnsafeDevice, match="management interface ens5"):
        world.plan(ctx)


def test_an_action_on_the_management_interface_never_runs(world: World) -> None:
    ctx = world.ctx(FRESH)
    step = world.step()
    with pytest.raises(UnsafeDevice, match="touches the management interface"):
        step.apply(EnslaveLink("ens5", MGMT_MAC, "br-lni"), ctx)
    assert world.live.calls == [] and world.runner.calls == []


def test_the_step_keeps_nothing_between_calls(world: World) -> None:
    # check calls plan on the step reconcile uses: plan must leave it as it was, and apply
    # needs nothing but the plan's actions (here on another step object).
    world.runner.expect("networkctl", "reload")
    world.runner.expect("networkctl", "reconfigure", "ens6")
    planner, ctx = world.step(), world.ctx(FRESH)
    before = dict(vars(planner))
    actions = planner.plan(planner.observe(ctx), ctx)
    assert vars(planner) == before
    applier = world.step()
    for action in actions:
        applier.apply(action, ctx)
    assert world.live.calls == [("wait_for_ipv4", "br-lni", 5.0)]
    assert ctx.scratch == {}  # the snapshot is gone with the change it covered


def test_a_network_action_without_its_snapshot_is_refused(world: World) -> None:
    with pytest.raises(AgentError, match="no snapshot of the network was taken before it"):
        world.step().apply(AwaitBridgeAddress("br-lni", 5.0), world.ctx(FRESH))
    assert world.live.calls == [] and world.runner.calls == []


def test_lni_pinned_by_mac(world: World) -> None:
    ctx = world.ctx(FRESH, LniConfig(mac=LNI_MAC, device_index=3))
    assert names(world.plan(ctx))[:2] == ["SnapshotNetwork", "WriteNetworkFiles"]


# -- apply ---------------------------------------------------------------------------------------


def test_networkd_apply_writes_reloads_and_waits(world: World) -> None:
    world.runner.expect("networkctl", "reload")
    world.runner.expect("networkctl", "reconfigure", "ens6")
    record = Engine([world.step()]).run(world.ctx(FRESH)).steps[0]
    assert record.status == "changed", record.error
    for path, content in networkd_files().items():
        assert Files(world.tmp_path).read(path) == content
    assert world.runner.calls == [("networkctl", "reload"), ("networkctl", "reconfigure", "ens6")]
    assert world.live.calls == [("wait_for_ipv4", "br-lni", 5.0)]


def test_networkd_brings_a_bridge_set_down_by_hand_up_again(world: World) -> None:
    for path, content in networkd_files().items():
        world.write(path, content)
    # `ip link set br-lni down` keeps the bridge's address: down alone must be drift.
    world.live.links = [mgmt(), lni(master="br-lni", addresses=()), bridge(operstate="DOWN")]
    world.live.bridge_state = LinkState("br-lni", False, None, (), ())
    world.runner.expect("networkctl", "reload")
    world.runner.expect("networkctl", "reconfigure", "ens6", "br-lni")
    step, ctx = world.step(), world.ctx(world.live.links)
    actions = step.plan(step.observe(ctx), ctx)
    assert names(actions) == ["SnapshotNetwork", "ApplyNetworkConfig", "AwaitBridgeAddress"]
    for action in actions:
        step.apply(action, ctx)
    assert world.runner.calls == [
        ("networkctl", "reload"),
        ("networkctl", "reconfigure", "ens6", "br-lni"),
    ]


def test_netplan_brings_a_bridge_set_down_by_hand_up_again(world: World) -> None:
    # Seen in the lab: `netplan apply` left a bridge set down by hand down, so repair did not
    # repair it; under netplan's networkd backend the bridge is reconfigured as under networkd.
    netplan = platform("networkd", netplan=True)
    path = "/etc/netplan/90-cockpit-agent-br-lni.yaml"
    step, ctx = world.step(), world.ctx(FRESH, platform=netplan)
    [write] = [a for a in step.plan(step.observe(ctx), ctx) if isinstance(a, WriteNetworkFiles)]
    world.write(path, write.files[0].content)
    world.live.links = [mgmt(), lni(master="br-lni", addresses=()), bridge(operstate="DOWN")]
    world.live.bridge_state = LinkState("br-lni", False, None, (), ())
    for argv in (("netplan", "generate"), ("netplan", "apply")):
        world.runner.expect(*argv)
    world.runner.expect("networkctl", "reconfigure", "br-lni")
    step, ctx = world.step(), world.ctx(world.live.links, platform=netplan)
    actions = step.plan(step.observe(ctx), ctx)
    assert names(actions) == ["SnapshotNetwork", "ApplyNetworkConfig", "AwaitBridgeAddress"]
    for action in actions:
        step.apply(action, ctx)
    assert world.runner.calls == [
        ("netplan", "generate"),
        ("netplan", "apply"),
        ("networkctl", "reconfigure", "br-lni"),
    ]


def test_no_address_in_time_restores_files_and_links(world: World) -> None:
    old = "# the admin's own file\n[Match]\nName=br-lni\n"
    world.write(NETWORKD_PATHS[1], old)
    os.chmod(Files(world.tmp_path).path(NETWORKD_PATHS[1]), 0o640)
    world.live.address_after_wait = ()
    world.live.links = [mgmt(), lni(master="br-lni", addresses=()), bridge(addresses=())]
    world.runner.expect("networkctl", "reload")
    world.runner.expect("networkctl", "reconfigure", "ens6")

    record = Engine([world.step()]).run(world.ctx(FRESH)).steps[0]

    assert record.status == "failed"
    error = record.error or ""
    assert "no IPv4 address on br-lni after 5 s" in error
    assert "br-lni UP mac 0e:11:22:33:44:02 addresses none, ens6 UP master br-lni" in error
    assert "rolled back to the previous files and links" in error
    files = Files(world.tmp_path)
    assert files.read(NETWORKD_PATHS[1]) == old
    assert files.path(NETWORKD_PATHS[1]).stat().st_mode & 0o777 == 0o640
    assert not files.exists(NETWORKD_PATHS[0]) and not files.exists(NETWORKD_PATHS[2])
    assert world.runner.calls == [
        ("networkctl", "reload"),
        ("networkctl", "reconfigure", "ens6"),
        ("networkctl", "reload"),
        ("networkctl", "reconfigure", "ens6"),
    ]
    assert ("delete_link", "br-lni") in world.live.calls
    assert ("restore", "ens6", None) in world.live.calls


def test_live_apply_builds_the_bridge_then_waits(world: World) -> None:
    world.live.links = [mgmt(), lni("br-lni", ()), bridge(addresses=("192.168.50.30/24",))]
    ctx = world.ctx(FRESH, LniConfig(address="192.168.50.30/24"), platform=platform(None))  # type: ignore[arg-type]
    record = Engine([world.step()]).run(ctx).steps[0]
    assert record.status == "changed", record.error
    assert world.live.calls == [
        ("create_bridge", "br-lni", LNI_MAC),
        ("enslave", "ens6", "br-lni"),
        ("add_address", "br-lni", "192.168.50.30", 24),
        ("wait_for_ipv4", "br-lni", 60.0),
    ]


# -- other owners ------------------------------------------------------------------------------


def test_ec2_net_utils_units_for_the_lni_are_masked(world: World) -> None:
    world.write("/usr/lib/systemd/system/policy-routes@.service", "[Unit]\n")
    world.write("/etc/netplan/50-cloud-init.yaml", "network: {version: 2}\n")
    step = world.step()
    ctx = world.ctx(FRESH)
    observed = step.observe(ctx)
    assert "also configured by cloud-init, amazon-ec2-net-utils" in step.summarize(observed)
    actions = step.plan(observed, ctx)
    assert names(actions)[0] == "MaskEc2NetUtilsUnits"
    mask = actions[0]
    assert isinstance(mask, MaskEc2NetUtilsUnits)
    assert mask.units == ("policy-routes@ens6.service", "refresh-policy-routes@ens6.timer")
    world.runner.expect("systemctl", "mask", *mask.units)
    world.runner.expect("systemctl", "stop", *mask.units)
    step.apply(mask, ctx)
    Files(world.tmp_path).path("/etc/systemd/system").mkdir(parents=True)
    for unit in mask.units:
        os.symlink("/dev/null", Files(world.tmp_path).path(f"/etc/systemd/system/{unit}"))
    assert "MaskEc2NetUtilsUnits" not in names(world.plan(world.ctx(FRESH)))


def test_route_mode_enables_proxy_arp(world: World) -> None:
    for path, content in networkd_files().items():
        world.write(
            path,
            content.replace(
                "IPv6AcceptRA=no\n\n[DHCPv4]", "IPv6AcceptRA=no\nIPv4ProxyARP=yes\n\n[DHCPv4]"
            )
            if path.endswith("br-lni.network")
            else content,
        )
    world.runner.expect("sysctl", "-n", "net/ipv4/conf/br-lni/proxy_arp", stdout="0\n")
    config = LniConfig(mode="route", route_subnet="192.168.50.192/26")  # type: ignore[arg-type]
    actions = world.plan(world.ctx(CONVERGED, config))
    assert names(actions) == ["EnableProxyArp"]


# -- verify ----------------------------------------------------------------------------------------


def test_verify_converged_is_ok(world: World) -> None:
    findings = world.step().verify(world.ctx(CONVERGED))
    assert [(f.severity, f.code) for f in findings] == [("ok", "lni-bridge")]


def test_verify_judges_the_observation_without_reading_again(world: World) -> None:
    step, ctx = world.step(), world.ctx(CONVERGED)
    observed = step.observe(ctx)
    world.live.links = []  # a second netlink read would find no bridge
    calls = (len(world.runner.calls), len(world.live.calls))
    findings = step.verify(ctx, observed)
    assert [(f.severity, f.code) for f in findings] == [("ok", "lni-bridge")]
    assert (len(world.runner.calls), len(world.live.calls)) == calls


def test_verify_reports_what_is_wrong(world: World) -> None:
    world.live.links = [mgmt(), lni(), bridge(mac="aa:bb:cc:dd:ee:ff", addresses=())]
    findings = world.step().verify(world.ctx(CONVERGED))
    assert [f.severity for f in findings] == ["critical"]
    message = findings[0].message
    assert "not the LNI's" in message
    assert "not a port of br-lni" in message
    assert "no IPv4 address" in message


def test_verify_without_lni_is_critical(world: World) -> None:
    findings = world.step().verify(world.ctx(CONVERGED, interfaces=INTERFACES[:1]))
    assert [(f.severity, f.code) for f in findings] == [("critical", "lni-missing")]
