"""The rootfs step: grow the root partition, LVM and filesystem to fill the disk.

The chain (filesystem -> LV -> PV -> partition -> disk) comes from facts (`facts.rootfs`);
the step measures each layer live with that layer's own tool (observed.py) and plans (plan.py),
bottom up, an action (actions.py, run by apply.py) for each layer that does not fill the one
below it, and for every layer above it.

"Does not fill" comes from exact numbers and each tool's own rounding, so a converged root
plans nothing. cloud-init grows part of the root at boot on most images (its growpart the
partition, resizefs the filesystem); the agent runs after it and grows what it leaves, and
nothing at all while cloud-init's stage that runs them has yet to finish in this boot
(docs/adr/0011-rootfs-after-cloud-init.md). Nothing is planned either while
/etc/growroot-disabled exists, or for a root the agent cannot grow (md, dm-crypt, ...); a
partition that is not the last on its disk is left alone. The summary says which and why,
and who grows what.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from cockpit_agent.config import Config
from cockpit_agent.engine import Ctx, Finding
from cockpit_agent.facts.rootfs import RootChain
from cockpit_agent.facts.rootfs_cloud_init import CloudInitGrowth, read_cloud_init_growth
from cockpit_agent.host.procs import ProcessLister, processes_named
from cockpit_agent.steps.rootfs.actions import RootAction
from cockpit_agent.steps.rootfs.observed import Hold, RootObserved, measure_chain
from cockpit_agent.steps.rootfs.plan import plan_rootfs

GROWROOT_DISABLED = "/etc/growroot-disabled"
RESIZERS = ("resize2fs", "xfs_growfs")  # what cloud-init's resizefs runs for ext2/3/4 and XFS
MIB = 1024**2


# --- the step -------------------------------------------------------------------------------


@dataclass
class RootfsStep:
    """Grow the root partition, LVM and filesystem to fill the disk.

    `processes` lists the running processes of some names (tests pass a fake)."""

    name: str = "rootfs"
    depends_on: tuple[str, ...] = ()
    processes: ProcessLister = processes_named

    def enabled(self, config: Config) -> bool:
        """rootfs.enabled."""
        return config.rootfs.enabled

    def observe(self, ctx: Ctx) -> RootObserved:
        """The chain from facts, what cloud-init grows of it, then each layer measured live
        (unless something holds)."""
        chain = ctx.facts.rootfs
        if chain is None:
            return RootObserved(chain=None)
        hold = _hold(chain, ctx)
        if hold is not None:
            return RootObserved(chain=chain, hold=hold)
        cloud = read_cloud_init_growth(ctx.files, chain)
        busy = _waiting(cloud, self.processes)
        if busy is not None:
            return RootObserved(chain=chain, hold=busy, cloud=cloud)
        return replace(measure_chain(chain, ctx.runner), cloud=cloud)

    def plan(self, observed: RootObserved, ctx: Ctx) -> list[RootAction]:
        """See plan.py."""
        return plan_rootfs(observed, ctx.config.rootfs.leave_free_percent)

    def apply(self, action: RootAction, ctx: Ctx) -> None:
        """See apply.py."""
        from cockpit_agent.steps.rootfs.apply import apply_action  # noqa: PLC0415 - check never applies

        apply_action(action, ctx)

    def verify(self, ctx: Ctx, observed: RootObserved | None = None) -> list[Finding]:
        """Every layer fills the one below it (within the tools' rounding), measured again
        unless `observed` is given."""
        if observed is None:
            observed = self.observe(ctx)
        chain = observed.chain
        if chain is None:
            return [Finding("warning", "rootfs-unknown", _no_chain(ctx))]
        if observed.hold is not None:
            return [Finding(observed.hold.severity, observed.hold.code, observed.hold.reason)]
        gaps = _gaps(chain, observed, ctx.config.rootfs.leave_free_percent)
        findings = [Finding("warning", "rootfs-not-grown", gap) for gap in gaps]
        if chain.partition and not chain.partition.last:
            findings.append(Finding("ok", "rootfs-partition-not-last", _not_last(chain)))
        if not gaps:
            findings.append(Finding("ok", "rootfs-grown", self.summarize(observed)))
        if observed.cloud is not None:
            findings.append(_growers_finding(observed.cloud))
        return findings

    def summarize(self, observed: RootObserved) -> str:
        """One line: the chain, then each layer's state or why nothing is done."""
        chain = observed.chain
        if chain is None:
            return "no root filesystem in facts: nothing to grow"
        if observed.hold is not None:
            return f"{chain.describe()}: {observed.hold.reason}"
        growers = [_growers(observed.cloud)] if observed.cloud else []
        return f"{chain.describe()}: " + "; ".join(_states(chain, observed) + growers)


# --- deciding -------------------------------------------------------------------------------


def _hold(chain: RootChain, ctx: Ctx) -> Hold | None:
    """Why nothing at all is grown: the opt-out file or an unsupported chain."""
    if ctx.files.exists(GROWROOT_DISABLED):
        return Hold("rootfs-growth-disabled", f"growth disabled by {GROWROOT_DISABLED}")
    if chain.unsupported:
        return Hold("rootfs-unsupported", f"left alone: {chain.unsupported}")
    return None


def _waiting(cloud: CloudInitGrowth, processes: ProcessLister) -> Hold | None:
    """Whether cloud-init has yet to grow its part in this boot: a stage that runs growpart
    or resizefs has not finished, or resizefs' forked resize (resize_rootfs: noblock) still
    runs. The agent touches nothing before, so two tools never grow one layer at once."""
    if cloud.pending:
        why = f"{cloud.detail}, which has not finished in this boot ({', '.join(cloud.pending)})"
    elif cloud.background_resize and (resizing := "; ".join(processes(RESIZERS))):
        why = f"its resizefs still grows the filesystem in the background ({resizing})"
    else:
        return None
    reason = f"waiting for cloud-init: {why}; the agent grows the root after it"
    return Hold("rootfs-waiting-for-cloud-init", reason, "warning")


def _growers(cloud: CloudInitGrowth) -> str:
    """Who grows what, in a few words."""
    if not cloud.grows:
        return f"the agent grows every layer ({cloud.detail})"
    return f"cloud-init grows {_and(cloud.grows)} at boot, the agent what it leaves after it"


def _growers_finding(cloud: CloudInitGrowth) -> Finding:
    if not cloud.grows:
        return Finding("ok", "rootfs-growth-by-agent", _growers(cloud))
    message = f"{_growers(cloud)} ({cloud.detail})"
    return Finding("ok", "rootfs-growth-shared-with-cloud-init", message)


def _and(words: list[str]) -> str:
    return ", ".join(words[:-1]) + " and " + words[-1] if len(words) > 1 else words[0]


def _gaps(chain: RootChain, observed: RootObserved, leave_free_percent: int) -> list[str]:
    """Each layer that does not fill the one below it, in words."""
    gaps = []
    part, growth, pv, lv, fs = (
        chain.partition,
        observed.partition,
        observed.pv,
        observed.lv,
        observed.fs,
    )
    if part and growth and growth.can_grow:
        gaps.append(f"{part.device.path} does not fill {part.disk.path}: {growth.detail}")
    if chain.lv and pv and pv.missing_extents:
        gaps.append(f"PV {chain.lv.pv.path} lacks {pv.missing_extents} extents of its device")
    if lv and lv.extendable(leave_free_percent):
        extents = lv.extendable(leave_free_percent)
        gaps.append(f"{lv.name} could take {extents} more extents of its volume group")
    if fs and fs.can_grow:
        gaps.append(
            f"{chain.fstype} on {chain.mountpoint} is {_size(fs.size)}, "
            f"its device {_size(fs.device_size)}"
        )
    return gaps


def _states(chain: RootChain, observed: RootObserved) -> list[str]:
    """Per layer, a few words for the summary."""
    states = []
    sizes = observed.sizes or {}
    part = chain.partition
    if part and not part.last:
        states.append(_not_last(chain))
    elif part and observed.partition:
        disk = f"the {_size(sizes[part.disk.name])} disk" if part.disk.name in sizes else "disk"
        have = f" ({_size(sizes[part.device.name])})" if part.device.name in sizes else ""
        verb = "can grow into" if observed.partition.can_grow else "fills"
        states.append(f"partition {part.number}{have} {verb} {disk}")
    if observed.pv and observed.lv:
        missing, free = observed.pv.missing_extents, observed.lv.free_count
        states.append(f"PV lacks {missing} extents" if missing else "PV fills its device")
        states.append(f"VG has {free} free extents" if free else "VG has no free extents")
    if observed.fs and observed.fs.can_grow:
        fs = observed.fs
        states.append(f"filesystem {_size(fs.size)} can grow to {_size(fs.reachable)}")
    elif observed.fs:
        states.append(f"filesystem {_size(observed.fs.size)} fills its device")
    return states


def _not_last(chain: RootChain) -> str:
    part = chain.partition
    if part is None:
        return ""
    return (
        f"partition {part.number} is left alone: it is not the last on {part.disk.path} "
        f"({', '.join(part.followed_by)} comes after it)"
    )


def _no_chain(ctx: Ctx) -> str:
    why = ctx.facts.errors.get("rootfs", "nothing is mounted on /")
    return f"cannot find the root filesystem: {why}"


def _size(n: int) -> str:
    return f"{n / 1024**3:.2f} GiB" if n >= 1024**3 else f"{n / MIB:.1f} MiB"
