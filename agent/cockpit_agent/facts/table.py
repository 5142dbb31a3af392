"""Plain-text rendering of Facts for `cockpit-agent facts`."""

from __future__ import annotations

from cockpit_agent.config import Config
from cockpit_agent.facts.gather import Facts


def render_facts(facts: Facts, config: Config) -> str:
    """Tables an admin can read: platform, instance, interfaces, disks with reasons, links."""
    out: list[str] = []
    p = facts.platform
    if p:
        out.append(
            f"platform  {p.pretty_name} (family {p.os_family}, packages {p.package_manager}, "
            f"network {p.network_manager or 'none'}{', netplan' if p.netplan else ''}, "
            f"init {p.init}{', cloud-init' if p.cloud_init else ''})"
        )
    where = facts.location
    if where:
        out.append(f"location  {where.summary} ({'; '.join(where.evidence) or 'no evidence'})")
    ident = facts.identity
    if ident:
        out.append(
            f"instance  {ident.instance_id} {ident.instance_type} in {ident.availability_zone} "
            f"({ident.region})"
        )
    out.append("")
    out.append("IMDS INTERFACES")
    out.append(f"  {'MAC':<18} {'CARD':>4} {'INDEX':>5}  {'SUBNET':<26} IPV4")
    for i in facts.interfaces:
        role = ""
        if i.device_number == 0:
            role = "  (management)"
        elif (config.lni.mac and i.mac == config.lni.mac) or (
            not config.lni.mac
            and (i.network_card, i.device_number)
            == (config.lni.network_card, config.lni.device_index)
        ):
            role = "  (LNI)"
        out.append(
            f"  {i.mac:<18} {i.network_card:>4} {i.device_number:>5}  {i.subnet_id or '-':<26} "
            f"{' '.join(i.local_ipv4s) or '-'}{role}"
        )
    out.append("")
    out.append("DISKS")
    out.append(f"  {'DEVICE':<16} {'SIZE':>10} {'MODEL':<34} USE")
    for d in facts.disks:
        use = (
            "eligible"
            if d.eligible
            else "excluded: " + "; ".join(f"{r.code} ({r.detail})" for r in d.reasons)
        )
        out.append(f"  {d.path:<16} {_size(d.size_bytes):>10} {(d.model or '-')[:34]:<34} {use}")
    out.append("")
    out.append("LINKS")
    for link in facts.links:
        addrs = " ".join(f"{a.address}/{a.prefixlen}" for a in link.addresses)
        master = f" master {link.master}" if link.master else ""
        out.append(
            f"  {link.name:<16} {link.hardware_mac or '-':<18} {link.kind or 'device':<8} "
            f"{link.operstate:<8}{master} {addrs}"
        )
    for part, error in facts.errors.items():
        out.append(f"unavailable: {part}: {error}")
    return "\n".join(out)


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(n)
