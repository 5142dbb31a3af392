"""Facts: the read-only view of the host, gathered once per run and handed to every step."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict

from cockpit_agent.config import Config
from cockpit_agent.errors import AgentError
from cockpit_agent.facts.disks import Disk, gather_disks
from cockpit_agent.facts.imds import ImdsClient, ImdsInterface, InstanceIdentity
from cockpit_agent.facts.links import Link, read_links
from cockpit_agent.facts.location import Location, locate, read_dmi
from cockpit_agent.facts.md import MdArray, read_arrays
from cockpit_agent.facts.platform import Platform, read_platform
from cockpit_agent.facts.rootfs import RootChain, read_root_chain
from cockpit_agent.host.run import Runner, at_once

T = TypeVar("T")
# The parts in the order `errors` lists them.
PARTS = ("imds", "platform", "location", "disks", "links", "arrays", "rootfs")


class Facts(BaseModel):
    """Everything the steps may know about the host. `errors` names parts that could not be read."""

    model_config = ConfigDict(frozen=True)

    platform: Platform | None = None
    location: Location | None = None
    identity: InstanceIdentity | None = None
    interfaces: list[ImdsInterface] = []
    disks: list[Disk] = []
    links: list[Link] = []
    arrays: list[MdArray] = []
    rootfs: RootChain | None = None
    errors: dict[str, str] = {}

    @property
    def instance_id(self) -> str | None:
        """This instance's id, when IMDS answered."""
        return self.identity.instance_id if self.identity else None


def gather(config: Config, runner: Runner, client: ImdsClient | None = None) -> Facts:
    """Read every part, the parts at the same time (they mostly wait on commands and IMDS);
    a part that fails is recorded in `errors` and the others still load."""
    failed: dict[str, str] = {}
    found: dict[str, Any] = {}

    def part(name: str, read: Callable[[], T], empty: T) -> T:
        try:
            return read()
        except (AgentError, OSError) as exc:
            failed[name] = str(exc)
            return empty

    def into(name: str, read: Callable[[], T], empty: T) -> Callable[[], None]:
        return lambda: found.__setitem__(name, part(name, read, empty))

    imds = client or ImdsClient(config.imds)

    def from_imds() -> None:
        identity = part("imds", imds.identity, None)
        interfaces: list[ImdsInterface] = []
        outpost: str | None = None
        if identity is not None:
            interfaces = part("imds", imds.interfaces, interfaces)
            outpost = part("imds", imds.outpost_arn, None)
        kind = identity.instance_type if identity else None
        location = part("location", lambda: locate(read_dmi(), kind, outpost), None)
        found.update(identity=identity, interfaces=interfaces, location=location)

    at_once(
        from_imds,
        into("platform", read_platform, None),
        into("disks", lambda: gather_disks(config.storage, runner), list[Disk]()),
        into("links", read_links, list[Link]()),
        into("arrays", lambda: read_arrays(runner), list[MdArray]()),
        into("rootfs", lambda: read_root_chain("/"), None),
    )
    errors = {name: failed[name] for name in PARTS if name in failed}
    return Facts(**found, errors=errors)
