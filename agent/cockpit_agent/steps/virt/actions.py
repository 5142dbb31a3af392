"""The virt step's actions: frozen values with an imperative name and a one-line describe()."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class InstallPackages:
    """Install the missing packages."""

    names: tuple[str, ...]

    def describe(self) -> str:
        """One line."""
        return f"install packages: {' '.join(self.names)}"


@dataclass(frozen=True)
class EnableUnit:
    """systemctl enable --now."""

    unit: str

    def describe(self) -> str:
        """One line."""
        return f"enable and start {self.unit}"


@dataclass(frozen=True)
class WriteFile:
    """Write a file the step owns (or the keys of it the step owns)."""

    path: str
    content: str
    mode: int
    why: str

    def describe(self) -> str:
        """One line."""
        return f"write {self.path} ({self.why})"


@dataclass(frozen=True)
class RestartUnit:
    """daemon-reload, then restart a unit so a changed drop-in takes effect."""

    unit: str

    def describe(self) -> str:
        """One line."""
        return f"reload systemd and restart {self.unit}"


@dataclass(frozen=True)
class OpenFirewall:
    """Let Cockpit's port through the host firewall."""

    tool: str
    port: int

    def describe(self) -> str:
        """One line."""
        return f"open port {self.port}/tcp in {self.tool}"


@dataclass(frozen=True)
class ReloadBus:
    """Have the system bus reread its configuration after an install.

    Packages such as libvirt-dbus ship a bus policy for a system user that their postinst
    creates after the policy file is unpacked; the bus, which read the file as soon as it
    appeared, never learns the user, and the service is refused its bus name until the next
    reload or boot (Cockpit's Machines page then says libvirt is not active).
    """

    def describe(self) -> str:
        """One line."""
        return "reload the system bus configuration (policies of the new packages)"


VirtAction = InstallPackages | ReloadBus | EnableUnit | WriteFile | RestartUnit | OpenFirewall
