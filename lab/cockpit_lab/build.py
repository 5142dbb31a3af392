"""Build the lab's base image: Debian by debootstrap on a GPT disk booted by its own GRUB.

All heavy work (debootstrap, package installs, the initramfs, the agent's dependency venv)
runs in a chroot at native speed. The image is cached as <cache>/<recipe hash>/base.qcow2,
built in a temporary directory and renamed into place under a lock, so an interrupted or
concurrent build never leaves a broken cache entry. Runs boot qcow2 overlays of it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from cockpit_lab.chroot import (
    chroot_mounts,
    in_chroot,
    log,
    logging_to,
    loop_device,
    lvm_volume,
    mounted,
    partition,
    run,
)
from cockpit_lab.recipe import (
    CACHE_DIR,
    CLOUD_INIT_LOCALE,
    CLOUD_INIT_PACKAGES,
    GUEST_DIR,
    MGMT_GUEST_IP,
    NETWORK_PACKAGES,
    REPO_DIR,
    Recipe,
    default_recipe,
)

IMAGE_NAME = "base.qcow2"
LVM_VG = "labvg"
LVM_LV = "root"
BAKE_SCRIPT = REPO_DIR / "packaging/ami/bake.sh"
BAKE_DIR = "/var/tmp/cockpit-lab-bake"  # in the image, while the bake runs
# Timers that would make a test guest busy at random moments.
MASKED_UNITS = (
    "e2scrub_reap.service",  # 30 s at every boot under TCG, for LVM snapshots nobody takes
    "nvmf-autoconnect.service",  # NVMe over fabrics: none here
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "man-db.timer",
    "e2scrub_all.timer",
    "fstrim.timer",
    "mdcheck_start.timer",
    "mdcheck_continue.timer",
    "mdmonitor-oneshot.timer",
)
ENABLED_UNITS = ("ssh.service", "cockpit-lab-imds.service")


class LabBuildError(RuntimeError):
    """An image build or bake failed: what failed, why (its first line) and its full log."""

    def __init__(self, what: str, full_log: Path) -> None:
        super().__init__(what, full_log)
        self.what, self.full_log = what, full_log

    def __str__(self) -> str:
        first = str(self.__cause__).strip().splitlines()[:1] if self.__cause__ else []
        reason = f": {first[0]}" if first else ""
        return f"{self.what} failed{reason} (full log: {self.full_log})"


def image_path(recipe: Recipe | None = None, cache: Path = CACHE_DIR) -> Path:
    """Where the image of `recipe` lives in the cache (whether built or not)."""
    return cache / (recipe or default_recipe()).digest() / IMAGE_NAME


def build_log(recipe: Recipe, cache: Path = CACHE_DIR) -> Path:
    """The full log of the latest build of `recipe` (kept after it, failed or not)."""
    return cache / "logs" / f"build-{recipe.variant}-{recipe.digest()}.log"


def ensure_image(recipe: Recipe | None = None, cache: Path = CACHE_DIR) -> Path:
    """The cached base image of `recipe`, built first if needed."""
    recipe = recipe or default_recipe()
    image = image_path(recipe, cache)
    if image.exists():
        _touch(image.parent / "last-used")
        return image
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent build of the same image waits here
        if image.exists():
            return image
        for stale in cache.glob(".build-*"):
            _remove_build_dir(stale)
        tmp = Path(tempfile.mkdtemp(prefix=f".build-{image.parent.name}-", dir=cache))
        try:
            started = time.monotonic()
            with logging_to(build_log(recipe, cache)) as full_log:
                log(f"building the {recipe.variant} image (about 2 min; log: {full_log})")
                try:
                    _build(recipe, tmp, cache)
                except Exception as exc:
                    raise LabBuildError(f"building the {recipe.variant} image", full_log) from exc
            manifest = json.loads((tmp / "manifest.json").read_text())
            manifest["build_seconds"] = round(time.monotonic() - started, 1)
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
            if image.parent.exists():
                shutil.rmtree(image.parent)
            tmp.chmod(0o755)
            tmp.rename(image.parent)
            log(f"image ready in {manifest['build_seconds']} s: {image}")
        finally:
            _remove_build_dir(tmp)
        _touch(image.parent / "last-used")
        _prune(cache, keep=image.parent)
    return image


def agent_package(release: int = 1) -> Path:
    """The agent's .deb built from this checkout by `make package` (with this Debian
    revision), which rebuilds it only when one of its inputs changed."""
    argv = [
        "make",
        "--no-print-directory",
        "-C",
        str(REPO_DIR),
        "package",
        f"PKG_RELEASE={release}",
    ]
    debs = [Path(w) for w in run(argv, quiet=True).split() if w.endswith(".deb")]
    if len(debs) != 1:
        raise RuntimeError(f"make package printed no single .deb: {debs}")
    return debs[0]


def bake_config(recipe: Recipe) -> str:
    """The configuration the bake reads (its package lists): the virt step off unless this
    variant's bake installs the virtualisation stack. Each run's seed replaces it."""
    return "" if recipe.virt == "bake" else "[virt]\nenabled = false\n"


def baked_image(recipe: Recipe, package: Path, cache: Path = CACHE_DIR) -> Path:
    """The image of `recipe` with the agent's `package` baked in by packaging/ami/bake.sh, as
    an AMI bake does it: made once per OS image, package and bake script, and kept beside
    the OS image (baked-<key>.qcow2, the two newest of each image)."""
    image = ensure_image(recipe, cache)
    h = hashlib.sha256()
    for part in (image.parent.name.encode(), package.read_bytes(), BAKE_SCRIPT.read_bytes(),
                 bake_config(recipe).encode()):  # fmt: skip
        h.update(hashlib.sha256(part).digest())
    key = h.hexdigest()[:16]
    baked = image.parent / f"baked-{key}.qcow2"
    if baked.exists():
        _touch(baked)
        return baked
    with (cache / ".build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if baked.exists():
            return baked
        tmp = Path(tempfile.mkdtemp(prefix=f".bake-{key}-", dir=image.parent))
        try:
            started = time.monotonic()
            with logging_to(cache / "logs" / f"bake-{recipe.variant}-{key}.log") as full_log:
                log(f"baking {package.name} into the {recipe.variant} image (log: {full_log})")
                try:
                    _bake(recipe, image, package, tmp, cache)
                except Exception as exc:
                    raise LabBuildError(f"baking {package.name}", full_log) from exc
            (tmp / IMAGE_NAME).rename(baked)
            log(f"baked in {time.monotonic() - started:.1f} s: {baked}")
        finally:
            _remove_build_dir(tmp)
        older = sorted(image.parent.glob("baked-*.qcow2"), key=lambda p: p.stat().st_mtime)
        for old in older[:-2]:
            old.unlink(missing_ok=True)
    return baked


def _bake(recipe: Recipe, image: Path, package: Path, tmp: Path, cache: Path) -> None:
    """bake.sh in a chroot of a raw copy of `image`, then that copy as qcow2 in `tmp`."""
    raw = tmp / "disk.raw"
    run(["qemu-img", "convert", "-O", "raw", str(image), str(raw)], quiet=True)
    uuids = json.loads((image.parent / "manifest.json").read_text())["uuids"]
    with loop_device(raw) as dev, ExitStack() as stack:
        root, nodes, by_uuid = _open_disk(recipe, dev, uuids, tmp / "root", stack, create=False)
        chroot_mounts(stack, root, nodes, by_uuid)
        work = root / BAKE_DIR.lstrip("/")
        (work / "config").mkdir(parents=True)
        shutil.copy2(package, work / package.name)
        shutil.copy2(BAKE_SCRIPT, work / "bake.sh")
        (work / "config/config.toml").write_text(bake_config(recipe))
        keep = _set_aside_package_cache(recipe, root, tmp / "kept")
        for deb in (cache / "debs").glob("*.deb"):  # spare the mirror what is cached here
            shutil.copy2(deb, root / "var/cache/apt/archives" / deb.name)
        resolv = root / "etc/resolv.conf"
        guest_resolv = resolv.read_bytes()
        resolv.unlink()
        shutil.copyfile("/etc/resolv.conf", resolv)  # the bake reaches the mirror from here
        try:
            in_chroot(root, "sh", f"{BAKE_DIR}/bake.sh", "--config-dir", f"{BAKE_DIR}/config",
                      f"{BAKE_DIR}/{package.name}")  # fmt: skip
        finally:
            resolv.write_bytes(guest_resolv)
            shutil.rmtree(work)
        keep()
        if recipe.virt == "bake":  # Cockpit's login for the lab user, as test_lab's admin has
            in_chroot(root, "usermod", "--append", "--groups", "libvirt,kvm", "lab", quiet=True)
        run(["fstrim", str(root)], quiet=True)
    run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(tmp / IMAGE_NAME)], quiet=True)
    raw.unlink()
    (tmp / "root").rmdir()


def _set_aside_package_cache(recipe: Recipe, root: Path, aside: Path) -> Callable[[], None]:
    """The bake empties apt's cache and lists, as an AMI's should be; an image whose agent
    installs the virtualisation stack at first boot keeps them (the lab's guest has no mirror
    of its own to count on). Returns what puts them back."""
    if recipe.virt != "first-boot":
        return lambda: None
    aside.mkdir()
    saved = {
        p: aside / p.replace("/", "_") for p in ("var/cache/apt/archives", "var/lib/apt/lists")
    }
    for rel, where in saved.items():
        shutil.copytree(root / rel, where, symlinks=True)

    def put_back() -> None:
        for rel, where in saved.items():
            shutil.rmtree(root / rel)
            shutil.copytree(where, root / rel, symlinks=True)

    return put_back


def _touch(path: Path) -> None:
    path.touch()
    os.utime(path)


def _prune(cache: Path, keep: Path, unused_days: float = 2) -> None:
    """Delete cached images of other recipes unused for `unused_days` and open by nobody
    (a running lab holds its base image open as the backing file of its overlay)."""
    open_files = set()
    for fd in Path("/proc").glob("[0-9]*/fd/*"):
        with contextlib.suppress(OSError):
            open_files.add(os.readlink(fd))
    for entry in cache.iterdir():
        if entry == keep or not (entry / IMAGE_NAME).exists():
            continue
        stamp = entry / "last-used"
        used = (stamp if stamp.exists() else entry / IMAGE_NAME).stat().st_mtime
        busy = any(f.startswith(f"{entry}/") for f in open_files)
        if not busy and time.time() - used > unused_days * 86400:
            log(f"pruning the unused lab image {entry}")
            shutil.rmtree(entry, ignore_errors=True)


def _remove_build_dir(path: Path) -> None:
    """Delete a build directory, but never through a mount point left inside it."""
    if not path.exists():
        return
    mounts = Path("/proc/self/mounts").read_text().split("\n")
    prefix = str(path.resolve()) + "/"
    if any(len(f := line.split()) > 1 and f[1].startswith(prefix) for line in mounts):
        log(f"not removing {path}: something is still mounted inside it")
        return
    shutil.rmtree(path, ignore_errors=True)


def _partition(recipe: Recipe, raw: Path) -> None:
    """GPT: a BIOS boot partition for GRUB's core image, then root as the LAST partition, so
    the root volume can grow into the rest of the disk as on an EC2 root volume. With an LVM
    root: a /boot partition, then the PV last (growpart, pvresize, lvextend, resize2fs)."""
    argv = ["sgdisk", "--set-alignment=2048", "--new=1:2048:+1M", "--typecode=1:ef02",
            "--change-name=1:bios"]  # fmt: skip
    if recipe.root_layout == "lvm":
        argv += ["--new=2:0:+256M", "--typecode=2:8300", "--change-name=2:boot"]
        argv += [f"--new=3:0:+{recipe.root_size}", "--typecode=3:8e00", "--change-name=3:lvm"]
    else:
        argv += [f"--new=2:0:+{recipe.root_size}", "--typecode=2:8300", "--change-name=2:root"]
    run([*argv, str(raw)], quiet=True)


def _open_disk(
    recipe: Recipe,
    dev: str,
    uuids: dict[str, str],
    mountpoint: Path,
    stack: ExitStack,
    *,
    create: bool,
) -> tuple[Path, list[str], dict[str, str]]:
    """Mount the image's root (and /boot) at `mountpoint`, making the filesystems first with
    `create`; return the root and, for the chroot's private /dev, its block devices and the
    /dev/disk/by-uuid links."""
    nodes = [dev, partition(dev, 1), partition(dev, 2)]
    by_uuid: dict[str, str] = {}
    boot_dev = ""
    if recipe.root_layout == "lvm":
        nodes.append(partition(dev, 3))
        lv = lvm_volume(partition(dev, 3), LVM_VG, LVM_LV, create=create)
        root_dev = stack.enter_context(lv)
        boot_dev = partition(dev, 2)
        if create:
            run(["mkfs.ext4", "-q", "-L", "boot", "-U", uuids["boot"], boot_dev], quiet=True)
        by_uuid[uuids["boot"]] = boot_dev
        nodes.append(root_dev)
    else:
        root_dev = partition(dev, 2)
    by_uuid[uuids["root"]] = root_dev
    if create:
        run(["mkfs.ext4", "-q", "-L", "root", "-U", uuids["root"], root_dev], quiet=True)
    root = stack.enter_context(mounted(root_dev, mountpoint))
    if boot_dev:
        stack.enter_context(mounted(boot_dev, root / "boot"))
    return root, nodes, by_uuid


def _build(recipe: Recipe, tmp: Path, cache: Path) -> None:
    timings: dict[str, float] = {}
    raw = tmp / "disk.raw"
    with raw.open("wb") as fh:
        fh.truncate(_bytes(recipe.disk_size))
    _partition(recipe, raw)
    debs = cache / "debs"
    debs.mkdir(exist_ok=True)
    uuids = {"root": str(uuid.uuid4()), "boot": str(uuid.uuid4())}
    with loop_device(raw) as dev, ExitStack() as stack:
        root, nodes, by_uuid = _open_disk(recipe, dev, uuids, tmp / "root", stack, create=True)
        debootstrap = ["debootstrap", "--variant=minbase", f"--cache-dir={debs}", recipe.suite,
                       str(root), recipe.mirror]  # fmt: skip
        _timed(timings, "debootstrap", lambda: run(debootstrap, quiet=True))
        _configure(recipe, root, uuids)
        chroot_mounts(stack, root, nodes, by_uuid)
        facts = _install(recipe, root, dev, debs, timings=timings)
        run(["fstrim", str(root)], quiet=True)  # punch the free blocks out of the raw file
    convert = ["qemu-img", "convert", "-O", "qcow2", str(raw), str(tmp / IMAGE_NAME)]
    _timed(timings, "qcow2", lambda: run(convert, quiet=True))
    raw.unlink()
    (tmp / "root").rmdir()
    manifest = {
        "recipe": recipe.digest(),
        "variant": recipe.variant,
        "root_layout": recipe.root_layout,
        "suite": recipe.suite,
        "uuids": uuids,
        "timings": timings,
        **facts,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def _install(
    recipe: Recipe, root: Path, dev: str, debs: Path, *, timings: dict[str, float]
) -> dict[str, object]:
    """Everything done inside the chroot; returns facts for the manifest."""
    with mounted(str(debs), root / "var/cache/apt/archives", "--bind"):
        _timed(timings, "packages", lambda: _install_packages(recipe, root))
        if recipe.virt == "first-boot":
            _timed(timings, "package_cache", lambda: _bake_package_cache(recipe, root, debs))
        _timed(timings, "bootloader", lambda: _bootloader(root, dev))
        _finish(recipe, root)
    baked = root / "var/cache/apt/archives.lab"
    if baked.exists():
        for deb in baked.iterdir():
            deb.rename(root / "var/cache/apt/archives" / deb.name)
        baked.rmdir()
    initrd = sorted((root / "boot").glob("initrd.img-*"))
    query = ["dpkg-query", "-W", "-f", "${Package} ${Version}\\n"]
    return {
        "kernel": sorted(p.name for p in (root / "boot").glob("vmlinuz-*")),
        "initrd_bytes": initrd[-1].stat().st_size if initrd else 0,
        "packages": in_chroot(root, *query, quiet=True).splitlines(),
    }


def _timed(timings: dict[str, float], name: str, fn: object) -> None:
    assert callable(fn)
    log(f"{name} ...")
    started = time.monotonic()
    try:
        fn()
    except Exception as exc:
        raise RuntimeError(f"{name}: {exc}") from exc
    timings[name] = round(time.monotonic() - started, 1)
    log(f"{name} done in {timings[name]} s")


def _bytes(size: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(size[:-1]) * units[size[-1]] if size[-1] in units else int(size)


def _configure(recipe: Recipe, root: Path, uuids: dict[str, str]) -> None:
    """Files written before any package is installed (initramfs-tools reads its config when
    the kernel package is configured, so the initramfs is made once, the lab's way)."""
    for part in ("common", recipe.network):  # files of every image, then of its network stack
        if (GUEST_DIR / part).is_dir():
            shutil.copytree(GUEST_DIR / part, root, dirs_exist_ok=True, symlinks=True)
    etc = root / "etc"
    if recipe.root_layout == "lvm":
        root_device = f"/dev/mapper/{LVM_VG}-{LVM_LV}"
        (etc / "fstab").write_text(
            f"{root_device} / ext4 errors=remount-ro 0 1\n"
            f"UUID={uuids['boot']} /boot ext4 defaults 0 2\n"
        )
        # grub-mkconfig in the chroot cannot see the LV (no device-mapper on the build host);
        # the last root= on the kernel command line wins, in the guest's update-grub too.
        (etc / "default/grub.d/lvm-root.cfg").write_text(
            f'GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX root={root_device}"\n'
        )
    else:
        (etc / "fstab").write_text(f"UUID={uuids['root']} / ext4 errors=remount-ro 0 1\n")
    (etc / "hostname").write_text(recipe.hostname + "\n")
    (etc / "hosts").write_text(f"127.0.0.1 localhost\n127.0.1.1 {recipe.hostname}\n")
    suites = f"{recipe.suite} {recipe.suite}-updates"
    (etc / "apt/sources.list").write_text(
        f"deb {recipe.mirror} {suites} main\n"
        f"deb {recipe.security_mirror} {recipe.suite}-security main\n"
    )
    shutil.copyfile("/etc/resolv.conf", etc / "resolv.conf")
    for deb in (root / "var/cache/apt/archives").glob("*.deb"):  # debootstrap's leftovers
        deb.unlink()
    policy = root / "usr/sbin/policy-rc.d"  # no daemon starts inside the chroot
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)


def _apt_install(root: Path, packages: tuple[str, ...], *options: str) -> str:
    return in_chroot(
        root,
        "apt-get",
        "install",
        "-y",
        "-q",
        "--no-install-recommends",
        "-o",
        "Dpkg::Options::=--force-confold",
        *options,
        *packages,
        quiet=True,
    )


def _install_packages(recipe: Recipe, root: Path) -> None:
    in_chroot(root, "apt-get", "update", "-q", quiet=True)
    extra = NETWORK_PACKAGES[recipe.network] + (CLOUD_INIT_PACKAGES if recipe.cloud_init else ())
    _apt_install(root, recipe.packages + extra)
    if recipe.cloud_init:  # as on a cloud image: cloud-init finds the locale generated
        (root / "etc/locale.gen").write_text(f"{CLOUD_INIT_LOCALE} UTF-8\n")
        in_chroot(root, "locale-gen", quiet=True)
        (root / "etc/default/locale").write_text(f"LANG={CLOUD_INIT_LOCALE}\n")


def _bake_package_cache(recipe: Recipe, root: Path, debs: Path) -> None:
    """Put the .debs of the virtualisation packages (and their missing dependencies) into the
    image's own /var/cache/apt/archives, so that installing them in the guest needs no
    mirror. They are downloaded into the shared cache first (bind-mounted at that path)."""
    baked = root / "var/cache/apt/archives.lab"
    (baked / "partial").mkdir(parents=True)
    # Against an empty archive directory, --print-uris lists every .deb the install needs.
    empty = "-o=Dir::Cache::Archives=/var/cache/apt/archives.lab"
    uris = _apt_install(root, recipe.virt_packages, "--print-uris", empty)
    names = [line.split()[1] for line in uris.splitlines() if line.startswith("'")]
    _apt_install(root, recipe.virt_packages, "--download-only")
    (baked / "partial").rmdir()
    for name in names:
        shutil.copy2(debs / name, baked / name)
    if not names:
        raise RuntimeError("no package to bake into the apt cache: --print-uris listed none")
    log(f"baked {len(names)} packages into the image's apt cache")


def _bootloader(root: Path, dev: str) -> None:
    """GRUB in the disk's MBR and BIOS boot partition, configured from the image's own
    /boot, so every boot (and reboot) runs the guest's kernel and initramfs."""
    in_chroot(root, "grub-install", "--target=i386-pc", "--modules=part_gpt ext2", dev, quiet=True)
    in_chroot(root, "update-grub", quiet=True)


def _finish(recipe: Recipe, root: Path) -> None:
    # A login for Cockpit (root is kept out of it by the agent's default config); the lab's
    # forwards listen on 127.0.0.1 only.
    in_chroot(root, "useradd", "--create-home", "--shell", "/bin/bash", "--groups", "sudo", "lab",
              quiet=True)  # fmt: skip
    in_chroot(root, "chpasswd", input_text="lab:lab\n", quiet=True)
    (root / "var/log/journal").mkdir(parents=True, exist_ok=True)  # keep earlier boots' logs
    networkd = ("systemd-networkd.service",) if recipe.network != "networkmanager" else ()
    for unit in (*networkd, *ENABLED_UNITS):
        in_chroot(root, "systemctl", "enable", unit, quiet=True)
    in_chroot(root, "systemctl", "mask", *MASKED_UNITS, quiet=True)
    gateway = MGMT_GUEST_IP.rsplit(".", 1)[0]
    (root / "etc/resolv.conf").write_text(f"nameserver {gateway}.3\n")  # QEMU's DNS proxy
    # Each instance gets its own machine id at first boot, as from an AMI.
    (root / "etc/machine-id").write_text("")
    (root / "usr/sbin/policy-rc.d").unlink()


def main(variants: list[str]) -> int:
    """`python -m cockpit_lab build [VARIANT...]`: build (or reuse) the images with the agent's
    package baked in; print their paths."""
    if os.geteuid() != 0:
        print("the lab image build needs root (loop devices, mounts, chroot)", file=sys.stderr)
        return 2
    package = agent_package()
    for variant in variants or ["base"]:
        print(baked_image(default_recipe(variant), package))
    return 0
