"""The libvirt_network step's actions: frozen values with an imperative name and describe().

The `lni` network is defined, autostarted and started; libvirt's `default` network is moved
onto the bridge (the stock NAT network renamed `default-nat`) and back.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DefineLibvirtNetwork:
    """Define a libvirt network from XML (undefining a different definition first)."""

    name: str
    xml: str
    replace: bool = False
    active: bool = False

    def describe(self) -> str:
        """One line."""
        how = "redefine" if self.replace else "define"
        return f"{how} libvirt network {self.name}"


@dataclass(frozen=True)
class AutostartLibvirtNetwork:
    """Mark a libvirt network autostart."""

    name: str

    def describe(self) -> str:
        """One line."""
        return f"autostart libvirt network {self.name}"


@dataclass(frozen=True)
class StartLibvirtNetwork:
    """Start a libvirt network."""

    name: str

    def describe(self) -> str:
        """One line."""
        return f"start libvirt network {self.name}"


@dataclass(frozen=True)
class MoveLibvirtNetwork:
    """Give a network another name. libvirt has no rename: `old` is stopped and undefined,
    then the same definition (UUID, MAC and all) is defined as `new`, autostarted and started
    as `old` was. `present` false: `old` is gone already (a run killed half-way through this
    action), so `xml` comes from the step's record."""

    old: str
    new: str
    xml: str
    active: bool
    autostart: bool
    present: bool = True
    consequence: str = ""

    def describe(self) -> str:
        """One line, with what it means for the VMs that name the network."""
        if self.present:
            text = f"rename libvirt network {self.old} to {self.new}"
        else:
            text = f"define libvirt network {self.new} from the stock definition in the state file"
        return f"{text} ({self.consequence})" if self.consequence else text


@dataclass(frozen=True)
class RemoveLibvirtNetwork:
    """Stop (if active) and undefine the agent's own network."""

    name: str
    active: bool
    consequence: str = ""

    def describe(self) -> str:
        """One line, with what it means for the VMs that name the network."""
        text = f"undefine the agent's libvirt network {self.name}"
        return f"{text} ({self.consequence})" if self.consequence else text


LibvirtNetworkAction = (
    DefineLibvirtNetwork
    | AutostartLibvirtNetwork
    | StartLibvirtNetwork
    | MoveLibvirtNetwork
    | RemoveLibvirtNetwork
)
