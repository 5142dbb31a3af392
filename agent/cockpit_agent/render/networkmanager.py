"""NetworkManager keyfiles for the LNI bridge: a bridge profile and a port profile.

Keyfiles must be 0600 (NetworkManager ignores others). The port profile has a higher
autoconnect-priority than any profile cloud-init or the distribution made for the NIC, so
NetworkManager picks it for the LNI while the management interface keeps its own profile.
"""

from __future__ import annotations

import uuid

from cockpit_agent.render.bridge import HEADER, BridgeSpec, RenderedFile

NM_DIR = "/etc/NetworkManager/system-connections"
# A fixed namespace so a profile's UUID is the same at every run (uuid5 of its id).
_UUID_NAMESPACE = uuid.UUID("6b1e6f0e-5a41-4c3b-9a55-6c6f636b7069")
PORT_PRIORITY = 100


def nm_ids(bridge: str) -> tuple[str, str]:
    """The connection ids (profile names) of the bridge and of its port."""
    return f"cockpit-agent-{bridge}", f"cockpit-agent-{bridge}-port"


def nm_paths(bridge: str) -> tuple[str, str]:
    """The keyfile paths of the bridge and of its port."""
    bridge_id, port_id = nm_ids(bridge)
    return f"{NM_DIR}/{bridge_id}.nmconnection", f"{NM_DIR}/{port_id}.nmconnection"


def _uuid(connection_id: str) -> str:
    return str(uuid.uuid5(_UUID_NAMESPACE, connection_id))


def _ipv4(spec: BridgeSpec) -> list[str]:
    lines = ["[ipv4]"]
    if spec.static is None:
        lines += ["method=auto", "dhcp-client-id=mac", f"route-metric={spec.route_metric}"]
        return lines
    lines += ["method=manual", f"address1={spec.static.address.with_prefixlen}"]
    if spec.static.gateway is not None:
        lines += [f"gateway={spec.static.gateway}", f"route-metric={spec.route_metric}"]
    if spec.static.dns:
        lines.append("dns=" + ";".join(str(d) for d in spec.static.dns) + ";")
    return lines


def _bridge(spec: BridgeSpec) -> str:
    bridge_id, _ = nm_ids(spec.bridge)
    lines = [
        f"# {HEADER}",
        "[connection]",
        f"id={bridge_id}",
        f"uuid={_uuid(bridge_id)}",
        "type=bridge",
        f"interface-name={spec.bridge}",
        "autoconnect=true",
        # autoconnect-ports is the 1.46+ name of this property; every version reads this one.
        "autoconnect-slaves=1",
        "",
        "[ethernet]",
        f"cloned-mac-address={spec.mac}",
        "",
        "[bridge]",
        "stp=false",
        "forward-delay=0",
        "",
        *_ipv4(spec),
        "",
        "[ipv6]",
        "method=ignore",
    ]
    return "\n".join(lines) + "\n"


def _port(spec: BridgeSpec) -> str:
    _, port_id = nm_ids(spec.bridge)
    lines = [
        f"# {HEADER}",
        "[connection]",
        f"id={port_id}",
        f"uuid={_uuid(port_id)}",
        "type=ethernet",
        f"interface-name={spec.port}",
        f"master={spec.bridge}",
        "slave-type=bridge",
        "autoconnect=true",
        f"autoconnect-priority={PORT_PRIORITY}",
        "",
        "[ethernet]",
        f"mac-address={spec.port_mac}",
    ]
    return "\n".join(lines) + "\n"


def render_networkmanager(spec: BridgeSpec) -> list[RenderedFile]:
    """The bridge and port keyfiles (mode 0600)."""
    bridge_path, port_path = nm_paths(spec.bridge)
    return [
        RenderedFile(bridge_path, _bridge(spec), 0o600),
        RenderedFile(port_path, _port(spec), 0o600),
    ]
