"""The main job on one emulated Outposts server booted from the stock-AMI image, as users run it.

The image is what a user bakes from an EC2 AMI: cloud-init active (its EC2 datasource finds
the lab's IMDS from the SMBIOS identity "Amazon EC2"), netplan over systemd-networkd with
cloud-init's 50-cloud-init.yaml matching the NICs by MAC, and Cockpit, libvirt and qemu
installed at bake time. The agent runs at boot as its systemd unit, after cloud-init. One
instance for the module, each step's assertions at each boot: the first boot (the root filled
on a 6 GiB disk, a RAID5 of the three drives mounted, Cockpit serving, the LNI bridged with its
DHCP address), `check` and a repair of drift, a reboot through the guest's own bootloader
(zero actions), a failed array member (check: CRITICAL), and, in `make e2e` only, a stop/start
that blanks the instance store. Hostile drives and RAID1 are test_storage.py's; the LVM root
under NetworkManager is test_rootfs.py's; installing the virtualisation stack at first boot is
test_virt.py's.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pytest
from cockpit_lab.recipe import LNI_GUEST_IP, LNI_MAC, MGMT_GUEST_IP, MGMT_MAC
from cockpit_lab.vm import Lab, LabSpec
from tests.e2e.cockpit_browser import CHROMIUM, machines_networks_screenshot
from tests.e2e.guest import (
    ARRAY,
    MP,
    by_serial,
    cockpit_login_page,
    export,
    fs_uuid,
    ipv4,
    links,
    members,
    sh,
    state,
    step_record,
    tear_down,
)

pytestmark = pytest.mark.e2e

GIB = 1 << 30
NVME_SERIALS = ["lab-nvme-0", "lab-nvme-1", "lab-nvme-2"]
MARKER = b"lab: not blank"
AGENT_NETPLAN = "/etc/netplan/90-cockpit-agent-br-lni.yaml"
CLOUD_INIT_NETPLAN = "/etc/netplan/50-cloud-init.yaml"


@pytest.fixture(scope="module")
def lab(lab_factory: Any) -> Lab:
    """One booted lab instance, launched with a 6 GiB root volume from the 4 GiB stock image,
    whose agent has finished its first boot."""
    lab: Lab = lab_factory(LabSpec(root_disk_size="6G"), variant="stock")
    lab.boot()
    lab.wait_agent()
    return lab


def guest_json(lab: Lab, cmd: str) -> Any:
    return json.loads(lab.ssh(cmd).stdout)


def facts(lab: Lab) -> dict[str, Any]:
    return guest_json(lab, "cockpit-agent --json facts")  # type: ignore[no-any-return]


def disks_by_serial(lab: Lab) -> dict[str, dict[str, Any]]:
    return {d["serial"]: d for d in facts(lab)["disks"]}


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
    info = sh(lab, "virsh -c qemu:///system net-info lni")
    assert "Active:         yes" in info and "Autostart:      yes" in info, info
    xml = sh(lab, "virsh -c qemu:///system net-dumpxml lni")
    assert "<forward mode='bridge'/>" in xml and "<bridge name='br-lni'/>" in xml


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")
def test_browser_logs_in_and_sees_the_lni_network(lab: Lab) -> None:
    shot = machines_networks_screenshot(lab, lab.ports.lni_cockpit, "lni")
    assert shot.stat().st_size > 10_000


# --- check: converged, then drift and its repair ---------------------------------------------

# The one finding that depends on the emulated CPU: TCG's `-cpu max` offers AMD's SVM, so
# kvm_amd loads and /dev/kvm exists; a CPU model without it makes `no-kvm` a WARNING.
EXPECTED_HERE = {"no-kvm"}


def check(lab: Lab, *args: str) -> tuple[int, dict[str, Any]]:
    proc = lab.ssh(f"cockpit-agent check --json {' '.join(args)}", check=False, timeout=600)
    return proc.returncode, json.loads(proc.stdout)


def problems(report: dict[str, Any]) -> dict[str, str]:
    return {
        f["code"]: f["severity"]
        for f in report["findings"]
        if f["severity"] != "ok" and f["code"] not in EXPECTED_HERE
    }


def has_kvm(lab: Lab) -> bool:
    return lab.ssh("test -e /dev/kvm", check=False).returncode == 0


def test_check_is_ok_on_the_converged_guest(lab: Lab) -> None:
    lab.ssh(f"mdadm --wait {ARRAY}", check=False, timeout=600)  # the initial build, if any
    code, report = check(lab)
    assert problems(report) == {}, report
    codes = {f["code"]: f["severity"] for f in report["findings"]}
    for name in ("lni-bridge", "lni-ssh", "storage-array", "storage-mounted"):
        assert codes.get(name) == "ok", (name, report)
    first = lab.ssh("cockpit-agent check", check=False).stdout.splitlines()[0]
    if has_kvm(lab):
        assert (code, report["status"]) == (0, "OK"), report
        assert first.startswith("OK - ")
    else:
        assert (code, report["status"]) == (1, "WARNING"), report
        assert first.startswith("WARNING - /dev/kvm is missing")


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


# --- a crash at any action converges --------------------------------------------------------

CRASH_GUEST = (Path(__file__).parent / "crash_guest.py").read_text()
# What makes each step act again, and the files it edits: {path: a substring of our lines}.
CRASH_SETUP = {
    "storage": tear_down(wipe=True),
    "lni": f"""
rm -f {AGENT_NETPLAN}
ip link delete br-lni || true
netplan apply
""",
    "libvirt_network": """
virsh -q -c qemu:///system net-destroy lni || true
virsh -q -c qemu:///system net-undefine lni || true
""",
}
UNTOUCHED = {CLOUD_INIT_NETPLAN: "", "/etc/fstab": "", "/etc/mdadm/mdadm.conf": ""}
CRASH_FILES = {
    "storage": {"/etc/fstab": MP, "/etc/mdadm/mdadm.conf": "cockpit-data"},
    "lni": UNTOUCHED,
    "libvirt_network": UNTOUCHED,
}
OURS = {
    "storage": {"/etc/fstab": 1, "/etc/mdadm/mdadm.conf": 1},
    "lni": {},
    "libvirt_network": {},
}


def crash(lab: Lab, step: str, k: int) -> dict[str, Any]:
    """Run crash_guest.py in the guest: the step made to act, killed at its k-th action."""
    args = [step, str(k), CRASH_SETUP[step], json.dumps(CRASH_FILES[step])]
    cmd = f"python3 - {shlex.join(args)} <<'CRASH_GUEST_EOF'\n{CRASH_GUEST}CRASH_GUEST_EOF\n"
    return json.loads(lab.ssh(cmd, timeout=900).stdout)  # type: ignore[no-any-return]


def crash_problems(report: dict[str, Any]) -> list[str]:
    """What is wrong after a kill and a second run (empty when it converged)."""
    step = report["step"]
    found = []
    if not report["killed"]:
        found.append("the agent finished before its k-th action")
    recovery = report["recovery"]
    if report["recovery_rc"] != 0 or recovery.get("error"):
        found.append(f"second run exited {report['recovery_rc']}: {recovery.get('error')}")
    if report["planned_after"] != []:
        found.append(f"plan after it: {report['planned_after']}")
    if report["state_valid"] is not True:
        found.append(f"state.json: {report['state_valid']}")
    before, after = report["foreign_before"], report["foreign_after"]
    for path in before:
        if before[path]["foreign_sha256"] != after[path]["foreign_sha256"]:
            found.append(f"{path}: lines that are not the agent's changed")
        want = OURS[step].get(path)
        if want is not None and after[path]["ours"] != want:
            found.append(f"{path}: {after[path]['ours']} lines of ours, want {want}")
    return found


@pytest.mark.parametrize("step", ["storage", "lni", "libvirt_network"])
def test_a_kill_at_any_action_converges_on_the_next_run(lab: Lab, step: str) -> None:
    # Issue 14: for every k, the step is made to act and the agent is killed (SIGKILL to its
    # session, as systemd kills a unit) while it applies its k-th action; the next run must
    # exit 0 and leave nothing planned, state.json valid, our lines once, nothing else
    # touched, and (lni) the management path alive throughout: every command here goes
    # over it.
    first = crash(lab, step, 0)
    planned = first["planned"]
    assert planned, f"setting up {step} left it nothing to do"
    assert first["converge_rc"] == 0, first
    results = [crash(lab, step, k) for k in range(1, len(planned) + 1)]
    summary = lab.run_dir.parent / f"{lab.run_dir.name}-crash-{step}.json"
    summary.write_text(json.dumps({"planned": planned, "runs": results}, indent=2) + "\n")
    failed = {r["k"]: (r["killed_during"], crash_problems(r)) for r in results}
    assert not {k: v for k, v in failed.items() if v[1]}, failed
    if step == "lni":
        assert ipv4(links(lab)["br-lni"]) == [LNI_GUEST_IP]
    elif step == "libvirt_network":
        info = sh(lab, "virsh -c qemu:///system net-info lni")
        assert "Active:         yes" in info and "Autostart:      yes" in info, info
    else:
        assert sh(lab, f"findmnt -n -o FSTYPE {MP}").strip() == "xfs"


def test_a_new_array_that_shows_an_old_filesystem_is_not_formatted(lab: Lab) -> None:
    # Superblocks zeroed but the data left: the new array over the same members shows the old
    # XFS, which the agent no longer knows as its own. It refuses to format it and says how
    # to let it; once the admin wipes it, the next run builds the filesystem.
    old = fs_uuid(lab)
    sh(lab, tear_down(wipe=False))
    proc = lab.ssh("cockpit-agent reconcile --only storage", check=False, timeout=600)
    record = step_record(lab, "storage")
    assert proc.returncode == 1, (record, proc.stdout, proc.stderr)
    assert record["status"] == "failed", record
    assert "is not blank (TYPE=xfs" in record["error"], record
    assert f"wipefs -a {ARRAY}" in record["error"], record
    assert fs_uuid(lab) == old  # nothing was written over it
    sh(lab, f"wipefs -a -q {ARRAY}")
    proc = lab.ssh("cockpit-agent reconcile --only storage", check=False, timeout=600)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert fs_uuid(lab) not in ("", old)


# --- reboot and stop/start ----------------------------------------------------------------------


def test_reboot_boots_the_guests_own_kernel_and_records_a_second_run(lab: Lab) -> None:
    first = state(lab)["runs"]
    lab.reboot()
    lab.wait_agent()
    # GRUB from the disk passes BOOT_IMAGE; a direct -kernel boot would not.
    cmdline = lab.ssh("cat /proc/cmdline").stdout
    assert "BOOT_IMAGE=/boot/vmlinuz-" in cmdline
    runs = state(lab)["runs"]  # the last 10 are kept: count by run id, not by length
    assert runs[-1]["run_id"] != first[-1]["run_id"]
    assert runs[-2]["run_id"] == first[-1]["run_id"]
    assert runs[-1]["boot_id"] == lab.boot_id() != first[-1]["boot_id"]
    boots = lab.ssh("journalctl --list-boots --no-pager").stdout.strip().splitlines()
    assert len(boots) >= 3  # header + two boots: the journal persists across reboots


def test_reboot_changes_nothing(lab: Lab) -> None:
    run = state(lab)["runs"][-1]
    assert run["result"] == "converged", run
    for record in run["steps"]:
        assert (record["planned"], record["actions"]) == ([], []), record
    detail = export(lab, f"mdadm --detail --export {ARRAY}")
    assert f"UUID={detail['MD_UUID']}" in sh(lab, "cat /etc/mdadm/mdadm.conf")  # the same array
    assert sh(lab, f"findmnt -n -o SOURCE {MP}").startswith("/dev/md")
    md = sh(lab, f"basename $(readlink -f {ARRAY})").strip()
    assert sh(lab, f"cat /sys/block/{md}/md/stripe_cache_size").strip() == "4096"  # udev rule
    assert ipv4(links(lab)["br-lni"]) == [LNI_GUEST_IP]
    # cloud-init applied its network configuration again at this boot (the EC2 datasource
    # does at every boot); the agent's file still wins for the LNI.
    assert "status: done" in sh(lab, "cloud-init status")
    plan = json.loads(sh(lab, "cockpit-agent --json plan"))
    assert [s["planned"] for s in plan["steps"]] == [[]] * len(plan["steps"])


def test_check_is_critical_when_an_array_member_fails(lab: Lab) -> None:
    lab.ssh(f"mdadm --wait {ARRAY}", check=False, timeout=600)  # the initial build, if any
    victim = by_serial(lab)["lab-nvme-1"]
    sh(lab, f"mdadm {ARRAY} --fail {victim} --remove {victim}")
    code, report = check(lab)
    assert code == 2, report
    assert problems(report).get("storage-degraded") == "critical", report
    assert report["summary"].startswith("CRITICAL - ")
    lab.ssh("cockpit-agent check --prometheus /run/cockpit-agent.prom", check=False)
    text = sh(lab, "cat /run/cockpit-agent.prom")
    assert "cockpit_agent_check_status 2" in text
    assert 'cockpit_agent_array_degraded{array="cockpit-data"} 1' in text


@pytest.mark.extended
def test_stop_start_blanks_the_instance_store_and_a_new_array_replaces_ours(lab: Lab) -> None:
    runs = state(lab)["runs"]
    old_uuid = export(lab, f"mdadm --detail --export {ARRAY}")["MD_UUID"]
    old_fs = fs_uuid(lab)
    lab.shutdown()
    lab.write_nvme(1, MARKER)
    assert lab.read_nvme(1, length=len(MARKER)) == MARKER  # the host sees the drive's bytes
    lab.wipe_nvme()  # the guest is stopped: blank the drives; boot() is the start
    assert lab.read_nvme(1, length=len(MARKER)) == bytes(len(MARKER))
    lab.boot()
    lab.wait_agent()
    saved = state(lab)
    assert saved["instance_id"] == lab.instance_id  # same instance, same root volume
    assert saved["runs"][-2]["run_id"] == runs[-1]["run_id"]
    assert saved["runs"][-1]["boot_id"] == lab.boot_id()
    assert {d["serial"] for d in facts(lab)["disks"]} >= set(NVME_SERIALS)
    # Boot did not hang on the dead array's entries; the step built a new array.
    assert sh(lab, "systemctl is-active local-fs.target").strip() == "active"
    record = step_record(lab, "storage", saved)
    assert (record["status"], record["error"]) == ("changed", None), record
    assert f"record that our array {old_uuid} is lost" in " ".join(record["actions"])
    new_uuid = export(lab, f"mdadm --detail --export {ARRAY}")["MD_UUID"]
    assert new_uuid != old_uuid
    fstab, conf = sh(lab, "cat /etc/fstab"), sh(lab, "cat /etc/mdadm/mdadm.conf")
    assert old_fs not in fstab and f"UUID={fs_uuid(lab)} {MP}" in fstab
    assert old_uuid not in conf and new_uuid in conf
    lost = saved["step_data"]["storage"]["lost"]
    assert [(x["kind"], x["uuid"]) for x in lost] == [("array", old_uuid)]
    assert sh(lab, f"findmnt -n -o SOURCE {MP}").startswith("/dev/md")
