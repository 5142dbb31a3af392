from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from cockpit_agent.config import DEFAULT_PACKAGES, Config
from cockpit_agent.engine import Ctx
from cockpit_agent.errors import AgentError
from cockpit_agent.facts.gather import Facts
from cockpit_agent.facts.platform import Platform
from cockpit_agent.host.files import Files
from cockpit_agent.host.packages import LockWaiter
from cockpit_agent.render.cockpit import merge_ini, socket_dropin, with_users
from cockpit_agent.steps.virt.actions import (
    EnableUnit,
    InstallPackages,
    OpenFirewall,
    ReloadBus,
    RestartUnit,
    WriteFile,
)
from cockpit_agent.steps.virt.observed import (
    COCKPIT_CONF,
    DISALLOWED_USERS,
    LIBVIRT_DBUS,
    LIBVIRTD_DROPIN,
    LIBVIRTD_STAY_UP,
    MACHINES_MANIFEST,
    SOCKET_DROPIN,
    UNITS,
)
from cockpit_agent.steps.virt.step import VirtStep
from tests.fakes import FakeRunner

SHOW = ("systemctl", "show", "-p", "Id,LoadState,UnitFileState,ActiveState")


def platform(family: str, pm: str | None) -> Platform:
    return Platform(
        os_id={"debian": "debian", "rhel": "rocky", "amazon": "amzn"}[family],
        os_version="12",
        os_family=family,
        pretty_name=f"{family} test",
        package_manager=pm,
        network_manager="networkd",
        netplan=False,
        init="systemd",
        cloud_init=False,
    )


def show_output(states: dict[str, tuple[str, str, str]]) -> str:
    return "\n\n".join(
        f"Id={u}\nLoadState={ld}\nUnitFileState={en}\nActiveState={ac}"
        for u, (ld, en, ac) in states.items()
    )


class World:
    """A fake host: FakeRunner answers plus a rooted file tree."""

    def __init__(self, tmp: Path, family: str = "debian", pm: str = "apt", **config: Any) -> None:
        self.root = tmp
        self.runner = FakeRunner(absent={"firewall-cmd", "ufw"})
        self.config = Config.model_validate({"virt": config}) if config else Config()
        self.family = family
        self.ctx = Ctx(
            runner=self.runner,
            files=Files(tmp),
            facts=Facts(platform=platform(family, pm)),
            config=self.config,
        )

    def packages(self, installed: list[str]) -> None:
        wanted = self.config.virt.packages[self.family]
        lines = "".join(f"{p}\tinstalled\n" for p in installed)
        rc = 0 if len(installed) == len(wanted) else 1
        if self.family == "debian":
            fmt = "${Package}\t${db:Status-Status}\n"
            self.runner.expect("dpkg-query", "-W", "-f", fmt, *wanted, rc=rc, stdout=lines)
        else:
            out = "".join(f"{p}\n" for p in installed)
            self.runner.expect(
                "rpm",
                "-q",
                "--qf",
                "%{NAME}\n",
                *wanted,
                rc=len(wanted) - len(installed),
                stdout=out,
            )

    def units(self, running: bool) -> None:
        units = UNITS[self.family]
        state = ("loaded", "enabled", "active") if running else ("not-found", "", "inactive")
        self.runner.expect(*SHOW, *units, stdout=show_output(dict.fromkeys(units, state)))

    def file(self, path: str, text: str) -> None:
        self.ctx.files.write(path, text)

    def converge_files(self) -> None:
        self.file(DISALLOWED_USERS, "root\n")
        self.file(COCKPIT_CONF, "[WebService]\nLoginTo = false\n")
        if self.family == "debian":
            self.file(LIBVIRTD_DROPIN, LIBVIRTD_STAY_UP)


def plan(world: World) -> list[Any]:
    step = VirtStep()
    return step.plan(step.observe(world.ctx), world.ctx)


def test_fresh_debian_host_installs_enables_and_hardens(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.packages([])
    w.units(running=False)
    actions = plan(w)
    assert actions[0] == InstallPackages(tuple(DEFAULT_PACKAGES["debian"]))
    assert "qemu-system-x86" in actions[0].names and "libvirt-dbus" in actions[0].names
    assert actions[1] == ReloadBus()  # before anything starts a service of the new packages
    assert EnableUnit("cockpit.socket") in actions and EnableUnit("libvirtd.service") in actions
    writes = {a.path: a for a in actions if isinstance(a, WriteFile)}
    assert writes[DISALLOWED_USERS].content == "root\n"
    assert "LoginTo = false" in writes[COCKPIT_CONF].content
    assert SOCKET_DROPIN not in writes  # port 9090 needs no drop-in
    assert "Environment=LIBVIRTD_ARGS=\n" in writes[LIBVIRTD_DROPIN].content  # no --timeout
    restarts = [a for a in actions if isinstance(a, RestartUnit)]
    assert restarts == [RestartUnit("libvirtd.service")]
    assert actions.index(writes[LIBVIRTD_DROPIN]) > actions.index(EnableUnit("libvirtd.service"))


def test_partly_installed_installs_only_what_is_missing(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.packages(["cockpit", "libvirt-daemon-system", "libvirt-clients", "qemu-utils"])
    w.units(running=False)
    actions = plan(w)
    assert actions[0] == InstallPackages(
        ("cockpit-machines", "libvirt-dbus", "qemu-system-x86", "virtinst")
    )


def test_converged_host_plans_nothing(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.packages(list(DEFAULT_PACKAGES["debian"]))
    w.units(running=True)
    w.converge_files()
    assert plan(w) == []


def test_admins_cockpit_conf_is_merged_not_replaced(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.packages(list(DEFAULT_PACKAGES["debian"]))
    w.units(running=True)
    w.file(DISALLOWED_USERS, "# site policy\nadmin2\n")
    w.file(
        COCKPIT_CONF,
        "[WebService]\nLoginTitle = Rack 7\nLoginTo = true\n\n[Session]\nIdleTimeout = 15\n",
    )
    writes = {a.path: a.content for a in plan(w) if isinstance(a, WriteFile)}
    assert writes[DISALLOWED_USERS] == "# site policy\nadmin2\nroot\n"
    assert writes[COCKPIT_CONF] == (
        "[WebService]\nLoginTitle = Rack 7\nLoginTo = false\n\n[Session]\nIdleTimeout = 15\n"
    )


def test_rhel_family_uses_modular_libvirt_daemons(tmp_path: Path) -> None:
    w = World(tmp_path, family="rhel", pm="dnf")
    w.packages(["cockpit"])
    w.units(running=False)
    actions = plan(w)
    assert actions[0] == InstallPackages(tuple(DEFAULT_PACKAGES["rhel"][1:]))
    assert EnableUnit("virtqemud.socket") in actions
    assert EnableUnit("libvirtd.service") not in actions
    assert LIBVIRTD_DROPIN not in {a.path for a in actions if isinstance(a, WriteFile)}


def test_amazon_linux_fails_with_the_reason(tmp_path: Path) -> None:
    w = World(tmp_path, family="amazon", pm="dnf")
    step = VirtStep()
    observed = step.observe(w.ctx)
    with pytest.raises(AgentError, match="Amazon Linux 2023 has no cockpit-machines"):
        step.plan(observed, w.ctx)
    assert w.runner.calls == []


def test_other_port_writes_socket_dropin_and_restarts(tmp_path: Path) -> None:
    w = World(tmp_path, port=9443)
    w.packages(list(DEFAULT_PACKAGES["debian"]))
    w.units(running=True)
    w.converge_files()
    actions = plan(w)
    assert actions == [
        WriteFile(SOCKET_DROPIN, socket_dropin(9443, None), 0o644, "listen"),
        RestartUnit("cockpit.socket"),
    ]
    assert "ListenStream=\nListenStream=9443\n" in actions[0].content


def test_firewalld_gets_the_cockpit_service(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.runner.absent = {"ufw"}
    w.runner.expect("firewall-cmd", "--state", stdout="running\n")
    w.runner.expect("firewall-cmd", "--query-service", "cockpit", rc=1, stdout="no\n")
    w.packages(list(DEFAULT_PACKAGES["debian"]))
    w.units(running=True)
    w.converge_files()
    assert plan(w) == [OpenFirewall("firewalld", 9090)]


def test_ufw_active_without_the_port(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.runner.absent = {"firewall-cmd"}
    w.runner.expect(
        "ufw", "status", stdout="Status: active\n\nTo  Action  From\n22/tcp  ALLOW  Anywhere\n"
    )
    w.packages(list(DEFAULT_PACKAGES["debian"]))
    w.units(running=True)
    w.converge_files()
    assert plan(w) == [OpenFirewall("ufw", 9090)]


def test_apply_installs_non_interactively(tmp_path: Path) -> None:
    w = World(tmp_path)
    names = ("cockpit", "cockpit-machines")
    argv = (
        "apt-get", "install", "-y", "-q", "--no-install-recommends",
        "-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold",
        "-o", "DPkg::Lock::Timeout=600", *names,
    )  # fmt: skip
    w.runner.expect(*argv)
    VirtStep().apply(InstallPackages(names), w.ctx)
    assert w.runner.calls == [argv]


def test_apply_reloads_the_system_bus(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.runner.expect("systemctl", "reload", "dbus.service")
    VirtStep().apply(ReloadBus(), w.ctx)
    assert w.runner.calls == [("systemctl", "reload", "dbus.service")]


def test_apply_refreshes_empty_package_lists_once(tmp_path: Path) -> None:
    w = World(tmp_path)
    names = ("cockpit",)
    argv = (
        "apt-get", "install", "-y", "-q", "--no-install-recommends",
        "-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold",
        "-o", "DPkg::Lock::Timeout=600", *names,
    )  # fmt: skip
    w.runner.expect(*argv, rc=100, stderr="E: Unable to locate package cockpit")
    w.runner.expect("apt-get", "update", "-q", rc=0)
    with pytest.raises(AgentError, match="Unable to locate package"):
        VirtStep().apply(InstallPackages(names), w.ctx)
    assert w.runner.calls == [argv, ("apt-get", "update", "-q"), argv]


LOCK_HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.lockf(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(30)
"""


def test_lock_wait_gives_up_with_a_clear_error(tmp_path: Path) -> None:
    lock = tmp_path / "lock-frontend"
    lock.write_text("")
    holder = subprocess.Popen(  # holds the lock as apt would under cloud-init
        [sys.executable, "-c", LOCK_HOLDER, str(lock)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        clock = [0.0]
        lines: list[str] = []

        def sleep(s: float) -> None:
            clock[0] += s

        waiter = LockWaiter([lock], timeout=12, sleep=sleep, clock=lambda: clock[0])
        assert waiter.held() == lock
        with pytest.raises(AgentError, match="still held after 12 s"):
            waiter.wait(lines.append)
        assert len(lines) == 3 and "waiting for the package manager lock" in lines[0]
    finally:
        holder.kill()
        holder.wait()
    assert LockWaiter([lock], timeout=0).held() is None


def verify_world(tmp_path: Path, *, serving: bool, kvm: bool) -> tuple[World, VirtStep]:
    w = World(tmp_path)
    w.packages(list(DEFAULT_PACKAGES["debian"]))
    w.units(running=True)
    w.converge_files()
    w.runner.expect("virsh", "-c", "qemu:///system", "uri", stdout="qemu:///system\n")
    for path in (MACHINES_MANIFEST, LIBVIRT_DBUS[0]) + (("/dev/kvm",) if kvm else ()):
        w.file(path, "")
    answer = (200, "<html><title>Cockpit</title>login</html>") if serving else (502, "")
    step = VirtStep(http_get=lambda url, t: answer, serve_wait_seconds=0, sleep=lambda s: None)
    return w, step


def test_verify_ok_when_serving(tmp_path: Path) -> None:
    w, step = verify_world(tmp_path, serving=True, kvm=True)
    findings = step.verify(w.ctx)
    assert [(f.severity, f.code) for f in findings] == [("ok", "virt-serving")]


def test_verify_flags_cockpit_not_serving_and_missing_kvm(tmp_path: Path) -> None:
    w, step = verify_world(tmp_path, serving=False, kvm=False)
    codes = {f.code: f.severity for f in step.verify(w.ctx)}
    assert codes == {"cockpit-not-serving": "critical", "no-kvm": "warning"}


def test_a_check_asks_cockpit_once_a_reconcile_waits_for_it(tmp_path: Path) -> None:
    # A check reports what it sees now (Ctx.waits False); after a reconcile started Cockpit,
    # verify gives cockpit-ws its time to come up.
    w, _ = verify_world(tmp_path, serving=False, kvm=True)
    asked: list[str] = []

    def http_get(url: str, timeout: float) -> tuple[int, str]:
        asked.append(url)
        return 502, ""

    step = VirtStep(http_get=http_get, serve_wait_seconds=60, sleep=lambda s: None)
    w.ctx.waits = False
    assert "cockpit-not-serving" in {f.code for f in step.verify(w.ctx)}
    assert len(asked) == 1
    step = VirtStep(http_get=http_get, serve_wait_seconds=0.05, sleep=lambda s: time.sleep(0.01))
    w.ctx.waits = True
    asked.clear()
    step.verify(w.ctx)
    assert len(asked) > 1


def test_verify_flags_missing_libvirt_dbus(tmp_path: Path) -> None:
    w, step = verify_world(tmp_path, serving=True, kvm=True)
    (tmp_path / LIBVIRT_DBUS[0].lstrip("/")).unlink()
    codes = {f.code for f in step.verify(w.ctx)}
    assert codes == {"libvirt-dbus-missing"}


def test_merge_ini_adds_section_when_absent() -> None:
    assert merge_ini("", "WebService", {"LoginTo": "false"}) == "[WebService]\nLoginTo = false\n"
    assert merge_ini("[Log]\nFatal = criticals\n", "WebService", {"LoginTo": "false"}) == (
        "[Log]\nFatal = criticals\n\n[WebService]\nLoginTo = false\n"
    )


def test_with_users_is_idempotent() -> None:
    once = with_users("admin\n", ["root"])
    assert with_users(once, ["root"]) == once == "admin\nroot\n"
