"""The main job at the first boot of the main instance, the stock-AMI image, as users run it.

The image is what a user bakes from an EC2 AMI with packaging/ami/bake.sh and the agent's .deb:
cloud-init active (its EC2 datasource finds the lab's IMDS from the SMBIOS identity "Amazon
EC2"), netplan over systemd-networkd with cloud-init's 50-cloud-init.yaml matching the NICs by
MAC, and Cockpit, libvirt and qemu installed by the bake. The instance (conftest's stock_lab,
launched with a 6 GiB root volume) is shared with test_vm_on_lni.py, test_crash.py and
test_reboot.py, which run after this module. Here: the agent ran at boot as its unit after
cloud-init; the root fills its disk, a RAID5 of the three drives is mounted, Cockpit serves
(a browser logs in), the LNI is bridged with its DHCP address; `check` is OK, then drift and
its repair. Hostile drives and RAID1 are test_storage.py's; the LVM root under
NetworkManager is test_lvm_nm.py's; installing the virtualisation stack at first boot is
test_virt.py's.
"""

from __future__ import annotations

import json

import pytest
from cockpit_lab.recipe import LNI_GUEST_IP, LNI_MAC, MGMT_GUEST_IP, MGMT_MAC
from cockpit_lab.vm import Lab
from tests.e2e.cockpit_browser import CHROMIUM, machines_networks_screenshot
from tests.e2e.guest import (
    AGENT_NETPLAN,
    ARRAY,
    CLOUD_INIT_NETPLAN,
    MP,
    by_serial,
    check,
    cockpit_login_page,
    disks_by_serial,
    export,
    facts,
    fs_uuid,
    guest_json,
    has_kvm,
    ipv4,
    links,
    members,
    problems,
    sh,
    state,
    step_record,
)

pytestmark = pytest.mark.e2e

GIB = 1 << 30
NVME_SERIALS = ["lab-nvme-0", "lab-nvme-1", "lab-nvme-2"]
MARKER = b"lab: not blank"


def test_agent_ran_at_boot_as_its_systemd_unit(lab: Lab) -> None:
    props = lab.wait_agent()
    assert props["LoadState"] == "loaded"
    assert int(props["ExecMainStartTimestampMonotonic"]) > 0
    # PID 1 started the unit in this boot's transaction: nobody ran it by hand.
    journal = lab.ssh("journalctl -b -o cat _PID=1 -u cockpit-agent.service").stdout
    assert "Starting cockpit-agent.service" in journal
    enabled = lab.ssh("systemctl is-enabled cockpit-agent.service", check=False).stdout
    assert enabled.strip() == "enabled"
    # Reached through root's PATH, as an operator would.
    assert lab.ssh("command -v cockpit-agent").stdout.strip()


def unit_times(lab: Lab, unit: str) -> dict[str, int]:
    props = ["ExecMainStartTimestampMonotonic", "ActiveEnterTimestampMonotonic"]
    out = sh(lab, f"systemctl show {unit} " + " ".join(f"-p {p}" for p in props))
    return {k: int(v) for k, _, v in (line.partition("=") for line in out.splitlines())}


def test_cloud_init_ran_from_the_ec2_datasource_before_the_agent(lab: Lab) -> None:
    assert "status: done" in sh(lab, "cloud-init status --wait")
    result = json.loads(sh(lab, "cat /run/cloud-init/result.json"))["v1"]
    assert result["errors"] == [], result
    assert result["datasource"].startswith("DataSourceEc2"), result
    assert sh(lab, "cat /run/cloud-init/cloud-id").strip() == "aws"
    # cloud-init's network stage (growpart, resizefs, the network configuration) was over
    # before the agent started: the agent's unit is ordered after it.
    cloud_init = unit_times(lab, "cloud-init.service")["ActiveEnterTimestampMonotonic"]
    agent = unit_times(lab, "cockpit-agent.service")["ExecMainStartTimestampMonotonic"]
    assert 0 < cloud_init < agent
    after = sh(lab, "systemctl show -p After --value cockpit-agent.service").split()
    assert "network-online.target" in after


def test_agent_reached_the_imds_stub_inside_the_guest(lab: Lab) -> None:
    found = facts(lab)
    assert found["identity"]["instance_id"] == lab.instance_id  # only the stub serves it
    # The lab's SMBIOS says "Amazon EC2", IMDS the instance type and the Outpost's ARN.
    where = found["location"]
    assert (where["ec2"], where["metal"], where["instance_type"]) == (True, False, "c6id.8xlarge")
    assert where["outpost_arn"].startswith("arn:aws:outposts:"), where
    lo = guest_json(lab, "ip -j addr show dev lo")
    assert "169.254.169.254" in {a["local"] for a in lo[0]["addr_info"]}


def test_facts_list_the_nvme_drives_and_exclude_the_root_disk(lab: Lab) -> None:
    disks = disks_by_serial(lab)
    for serial in NVME_SERIALS:
        assert disks[serial]["model"] == "QEMU NVMe Ctrl"
        assert disks[serial]["nvme"] is True
    root = disks["lab-root"]
    assert root["root_disk"] is True
    assert root["eligible"] is False
    assert "root-disk" in {r["code"] for r in root["reasons"]}


def test_facts_identify_the_lni_by_mac_at_device_index_1(lab: Lab) -> None:
    found = facts(lab)
    by_index = {i["device_number"]: i["mac"] for i in found["interfaces"]}
    assert by_index == {0: MGMT_MAC, 1: LNI_MAC}
    assert LNI_MAC in {link["mac"] for link in found["links"]} | {
        link.get("permanent_mac") for link in found["links"]
    }


def test_state_json_belongs_to_this_instance_and_this_boot(lab: Lab) -> None:
    saved = state(lab)
    assert saved["instance_id"] == lab.instance_id
    last = saved["runs"][-1]
    assert last["finished_at"]
    assert last["boot_id"] == lab.boot_id()


def test_lni_path_forwards_reach_the_guest(lab: Lab) -> None:
    hostname = lab.ssh("hostname", port=lab.ports.lni_ssh).stdout.strip()
    assert hostname == "cockpit-lab"


# --- first boot: each step's result -----------------------------------------------------------


def test_first_boot_fills_the_disk_with_the_root_partition_and_ext4(lab: Lab) -> None:
    # cloud-init's growpart and resizefs grew them (its init stage runs before the agent);
    # the agent's record says who grows the root on this host.
    record = step_record(lab, "rootfs")
    assert (record["status"], record["actions"], record["error"]) == ("converged", [], None)
    assert record["summary"].endswith(
        "cloud-init grows partition 2 and the filesystem at boot, the agent what it leaves after it"
    ), record
    codes = [f["code"] for f in record["findings"]]
    assert "rootfs-growth-shared-with-cloud-init" in codes, record["findings"]
    source = sh(lab, "findmnt -n -o SOURCE /").strip()
    size = int(sh(lab, f"blockdev --getsize64 {source}"))
    # The image's 2 GiB root partition is the last of the 6 GiB disk: after the BIOS boot
    # partition and the alignment gap, it now ends where GPT's backup header begins.
    assert size > 6 * GIB - 4 * (1 << 20)
    assert int(sh(lab, "df -B1 --output=size / | tail -1")) > 0.9 * size


def test_first_boot_builds_a_mounted_raid5(lab: Lab) -> None:
    record = step_record(lab, "storage")
    assert (record["status"], record["error"]) == ("changed", None), record
    detail = export(lab, f"mdadm --detail --export {ARRAY}")
    assert (detail["MD_LEVEL"], detail["MD_DEVICES"]) == ("raid5", "3")
    assert detail["MD_NAME"] == "any:cockpit-data"
    drives = by_serial(lab)
    assert members(lab) == {drives[serial] for serial in NVME_SERIALS}
    [mount] = json.loads(sh(lab, f"findmnt -J -o SOURCE,FSTYPE,TARGET {MP}"))["filesystems"]
    assert mount["fstype"] == "xfs" and mount["source"].startswith("/dev/md")
    assert sh(lab, f"stat -c '%u:%g %a' {MP}").split() == ["0:0", "711"]
    fstab = sh(lab, "cat /etc/fstab")
    assert f"UUID={fs_uuid(lab)} {MP} xfs defaults,nofail,x-systemd.device-timeout=60s" in fstab
    conf = sh(lab, "cat /etc/mdadm/mdadm.conf")
    assert f"ARRAY {ARRAY} metadata=1.2 name=any:cockpit-data UUID={detail['MD_UUID']}" in conf
    assert "HOMEHOST <system>" in conf  # Debian's own lines are kept
    md = sh(lab, f"basename $(readlink -f {ARRAY})").strip()
    assert sh(lab, f"cat /sys/block/{md}/md/stripe_cache_size").strip() == "4096"
    assert sh(lab, "findmnt --verify --tab-file /etc/fstab; echo rc=$?").endswith("rc=0\n")


def test_first_boot_bridges_the_lni_with_its_dhcp_address(lab: Lab) -> None:
    record = step_record(lab, "lni")
    assert (record["status"], record["error"]) == ("changed", None), record
    assert "via netplan" in record["summary"], record
    seen = links(lab)
    bridge = seen["br-lni"]
    assert bridge["address"] == LNI_MAC
    assert bridge["linkinfo"]["info_kind"] == "bridge"
    assert ipv4(bridge) == [LNI_GUEST_IP]
    port = next(
        link
        for link in seen.values()
        if link.get("permaddr", link["address"]) == LNI_MAC and link["ifname"] != "br-lni"
    )
    assert port.get("master") == "br-lni"
    assert ipv4(port) == []


def test_management_interface_is_untouched(lab: Lab) -> None:
    mgmt = next(link for link in links(lab).values() if link["address"] == MGMT_MAC)
    assert "master" not in mgmt
    assert ipv4(mgmt) == [MGMT_GUEST_IP]
    route = sh(lab, "ip -4 route show default").splitlines()[0]
    assert f"dev {mgmt['ifname']}" in route, route


def test_the_bridge_is_a_netplan_file_merged_over_cloud_inits(lab: Lab) -> None:
    # cloud-init's file still configures both NICs by MAC; the agent's, later in name order,
    # takes the LNI out of it and into the bridge. netplan itself renders the pair.
    cloud = sh(lab, f"cat {CLOUD_INIT_NETPLAN}")
    assert f"macaddress: {LNI_MAC}" in cloud and f"macaddress: {MGMT_MAC}" in cloud
    ours = sh(lab, f"cat {AGENT_NETPLAN}")
    assert "br-lni" in ours and MGMT_MAC not in ours
    assert sh(lab, "ls /run/systemd/network").split().count("10-netplan-br-lni.netdev") == 1


# --- Cockpit, libvirt and qemu, installed at bake time -------------------------------------


def test_virt_step_found_the_baked_stack_and_only_configured_it(lab: Lab) -> None:
    record = step_record(lab, "virt")
    assert record["error"] is None, record
    assert not any(a.startswith("install packages") for a in record["actions"]), record
    for unit in ("cockpit.socket", "libvirtd.service"):
        props = sh(lab, f"systemctl show -p ActiveState -p UnitFileState {unit}")
        assert "ActiveState=active" in props and "UnitFileState=enabled" in props, props
    disallowed = sh(lab, "grep -v '^#' /etc/cockpit/disallowed-users").split()
    assert disallowed == ["root"], disallowed  # the package's own file already says so
    # No idle exit (ADR 0009): an idle libvirtd would read as a stopped one.
    argv = sh(lab, "tr '\\0' ' ' < /proc/$(systemctl show -p MainPID --value libvirtd)/cmdline")
    assert argv.startswith("/usr/sbin/libvirtd") and "--timeout" not in argv


def test_cockpit_answers_on_the_management_and_lni_paths(lab: Lab) -> None:
    for port in (lab.ports.mgmt_cockpit, lab.ports.lni_cockpit):
        body = cockpit_login_page(port)
        assert "login" in body.lower() and "cockpit" in body.lower(), port


def test_the_lni_network_is_active_and_autostarted(lab: Lab) -> None:
    record = step_record(lab, "libvirt_network")
    assert (record["status"], record["error"]) == ("changed", None), record
    info = sh(lab, "virsh -c qemu:///system net-info lni")
    assert "Active:         yes" in info and "Autostart:      yes" in info, info
    xml = sh(lab, "virsh -c qemu:///system net-dumpxml lni")
    assert "<forward mode='bridge'/>" in xml and "<bridge name='br-lni'/>" in xml


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")
def test_browser_logs_in_and_sees_the_lni_network(lab: Lab) -> None:
    shot = machines_networks_screenshot(lab, lab.ports.lni_cockpit, "lni")
    assert shot.stat().st_size > 10_000


# --- check: converged, then drift and its repair ---------------------------------------------


def test_check_is_ok_on_the_converged_guest(lab: Lab) -> None:
    lab.ssh(f"mdadm --wait {ARRAY}", check=False, timeout=600)  # the initial build, if any
    code, report = check(lab)
    assert problems(report) == {}, report
    codes = {f["code"]: f["severity"] for f in report["findings"]}
    for name in ("lni-bridge", "lni-ssh", "storage-array", "storage-mounted"):
        assert codes.get(name) == "ok", (name, report)
    first = lab.ssh("cockpit-agent check --timeout 120", check=False).stdout.splitlines()[0]
    if has_kvm(lab):
        assert (code, report["status"]) == (0, "OK"), report
        assert first.startswith("COCKPIT-AGENT OK - host converged | 'drift'=0;0;;0 ")
    else:
        assert (code, report["status"]) == (1, "WARNING"), report
        assert first.startswith("COCKPIT-AGENT WARNING - /dev/kvm is missing")


def test_the_sandboxed_check_unit_reads_all_it_needs(lab: Lab) -> None:
    # Issue 20: cockpit-agent-check.service runs sandboxed (systemd-analyze security 2.7):
    # read-only file system, two capabilities, a system-call filter. On the converged guest
    # its check must still see everything: OK (WARNING without /dev/kvm), never UNKNOWN.
    lab.ssh("systemctl start cockpit-agent-check.service", check=False, timeout=300)
    shown = sh(lab, "systemctl show -p ExecMainStatus cockpit-agent-check.service").strip()
    assert shown == f"ExecMainStatus={0 if has_kvm(lab) else 1}", shown
    logged = sh(lab, "journalctl -u cockpit-agent-check.service -o cat --no-pager | grep summary")
    last = json.loads(logged.splitlines()[-1])
    expected = "COCKPIT-AGENT OK - " if has_kvm(lab) else "COCKPIT-AGENT WARNING - /dev/kvm"
    assert last["summary"].startswith(expected), last


def test_drift_shows_then_repair_restores_it(lab: Lab) -> None:
    lab.ssh("systemctl stop cockpit.socket cockpit.service")
    lab.ssh("ip link set br-lni down")
    lab.ssh(
        r"sed -i '/cockpit-agent/,+1 s/nofail/nofail,noatime/' /etc/fstab && "
        "systemctl daemon-reload"
    )
    code, report = check(lab)
    found = problems(report)
    assert code == 2, report
    assert found.get("unit-inactive") == "critical", found
    assert found.get("cockpit-not-serving") == "critical", found
    assert "critical" in {found.get("lni-bridge-broken"), found.get("lni-bridge-missing")}, found
    assert found.get("storage-drift") == "warning", found
    assert found.get("virt-drift") == "warning", found
    code, report = check(lab, "--repair")
    assert sorted(report["repaired_steps"]) == ["lni", "storage", "virt"], report
    assert problems(report) == {}, report
    code, report = check(lab)
    assert problems(report) == {} and code == (0 if has_kvm(lab) else 1), report
