"""An md array as the agent reads it (facts/md.py), for tests of what check and its metrics
report about one."""

from __future__ import annotations

from typing import Any

from cockpit_agent.facts.md import MdArray


def md_array(name: str | None = "any:cockpit-data", device: str = "md127", **kw: Any) -> MdArray:
    """A clean RAID5 of 3 x 256 MiB with one member missing unless `kw` says otherwise."""
    fields: dict[str, Any] = {
        "device": device, "path": f"/dev/{device}", "dev": "9:127", "name": name,
        "uuid": f"uuid-{device}", "level": "raid5", "raid_disks": 3, "state": "clean",
        "degraded": 1, "sync_action": "idle", "sync_completed": "none", "metadata": "1.2",
        "chunk_bytes": 262144, "stripe_cache_size": 4096, "size_bytes": 536870912,
        "members": [],
    }  # fmt: skip
    return MdArray.model_validate({**fields, **kw})
