"""netplan: the LNI bridge in a file of its own, merged over cloud-init's 50-cloud-init.yaml.

netplan reads /etc/netplan/*.yaml in name order and merges them, later files winning key by
key. 90-cockpit-agent-<bridge>.yaml therefore turns DHCP off on the LNI (under the same id
cloud-init uses on EC2, the kernel name) and adds the bridge, without editing cloud-init's
file. The LNI is matched by name, not by MAC: the bridge carries the same MAC.
"""

from __future__ import annotations

import json

from cockpit_agent.render.bridge import HEADER, BridgeSpec, RenderedFile

NETPLAN_DIR = "/etc/netplan"


def netplan_path(bridge: str) -> str:
    """The agent's netplan file for `bridge`."""
    return f"{NETPLAN_DIR}/90-cockpit-agent-{bridge}.yaml"


def _q(value: object) -> str:
    """A YAML scalar in double quotes (JSON strings are valid YAML)."""
    return json.dumps(str(value))


def _address_lines(spec: BridgeSpec) -> list[str]:
    pad = " " * 6
    if spec.static is None:
        return [
            f"{pad}dhcp4: true",
            f"{pad}dhcp-identifier: mac",
            f"{pad}dhcp4-overrides:",
            f"{pad}  route-metric: {spec.route_metric}",
        ]
    lines = [f"{pad}dhcp4: false", f"{pad}addresses: [{_q(spec.static.address.with_prefixlen)}]"]
    if spec.static.gateway is not None:
        lines += [
            f"{pad}routes:",
            f"{pad}  - to: default",
            f"{pad}    via: {_q(spec.static.gateway)}",
            f"{pad}    metric: {spec.route_metric}",
        ]
    if spec.static.dns:
        servers = ", ".join(_q(d) for d in spec.static.dns)
        lines += [f"{pad}nameservers:", f"{pad}  addresses: [{servers}]"]
    return lines


def render_netplan(spec: BridgeSpec) -> list[RenderedFile]:
    """The agent's netplan file (mode 0600, as netplan wants)."""
    lines = [
        f"# {HEADER}",
        "network:",
        "  version: 2",
        "  ethernets:",
        f"    {_q(spec.port)}:",
        "      dhcp4: false",
        "      dhcp6: false",
        "      accept-ra: false",
        "      link-local: []",
        "  bridges:",
        f"    {_q(spec.bridge)}:",
        f"      interfaces: [{_q(spec.port)}]",
        f"      macaddress: {_q(spec.mac)}",
        *_address_lines(spec),
        "      dhcp6: false",
        "      accept-ra: false",
        "      parameters:",
        "        stp: false",
        "        forward-delay: 0",
    ]
    return [RenderedFile(netplan_path(spec.bridge), "\n".join(lines) + "\n", 0o600)]
