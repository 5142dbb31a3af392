#!/bin/sh
# The host packages (Debian 12) that the make targets need, by group. Idempotent and quiet:
# it asks dpkg first, runs apt only for what is missing, and keeps apt's output in a log.
# Run as root. `make deps` (and so `make test`, which CI runs) installs every group; `make
# demo` installs `venv` and `lab`.
#
#   venv         what the virtual environment builds against (systemd-python is compiled)
#   integration  loop devices, partitions, filesystems, network namespaces, systemd-analyze,
#                the lab driver with a stand-in emulator (qemu-img, ssh-keygen); cloud-init's
#                own code (unpacked, never installed: its units must not run here) and the
#                Python libraries it imports, to read cloud-init's configuration as it does;
#                libvirt's network schema and stock network (unpacked) with xmllint; busybox
#                and cpio for the lab's tiny VM (lab/cockpit_lab/tinyvm.py); Prometheus's
#                promtool (unpacked: the package ships a service) for the metrics' lint
#   lab          the QEMU lab: image build (debootstrap, chroot, loop devices) and QEMU
#   browser      headless Chromium for the e2e test that logs in to Cockpit
#   package      make package: dpkg-buildpackage with debhelper, rpmbuild; lintian, rpmlint
#   deploy       make validate and the bake's chroot test: shellcheck, packer, debootstrap
#   e2e          the lab's monitoring clients on this side: promtool (Debian's prometheus) and
#                the monitoring-plugins' check_by_ssh, both unpacked
set -eu

group_packages() {
    case "$1" in
    venv) echo "python3 python3-venv python3-dev gcc pkg-config libsystemd-dev" ;;
    integration) echo "systemd udev util-linux mount fdisk gdisk e2fsprogs xfsprogs btrfs-progs
        cloud-guest-utils iproute2 dnsmasq-base isc-dhcp-client qemu-utils openssh-client
        python3-yaml python3-requests python3-jinja2 python3-jsonpatch python3-jsonschema
        python3-configobj python3-netifaces libxml2-utils busybox cpio" ;;
    lab) echo "qemu-system-x86 qemu-utils debootstrap debian-archive-keyring gdisk util-linux
        mount e2fsprogs xfsprogs openssh-client lvm2" ;;
    browser) echo "chromium" ;;
    package) echo "build-essential debhelper rpm lintian rpmlint" ;;
    deploy) echo "shellcheck packer debootstrap debian-archive-keyring" ;;
    e2e) ;;
    *) echo "install-deps.sh: unknown group '$1' (venv, integration, lab, browser, package, deploy, e2e)" >&2
        exit 2 ;;
    esac
}

# Packages whose files a test reads but whose services must never run on this machine:
# unpacked (apt-get download, dpkg -x) under $UNPACKED/<package>, not installed.
UNPACKED=/var/cache/cockpit-agent-deps
group_unpacked() {
    case "$1" in
    integration) echo "cloud-init libvirt0 libvirt-daemon-config-network prometheus" ;;
    e2e) echo "prometheus monitoring-plugins-basic" ;;
    *) ;;
    esac
}

[ "$#" -gt 0 ] || set -- venv integration lab browser package deploy e2e
wanted=""
for group in "$@"; do
    wanted="$wanted $(group_packages "$group")"
done
missing=""
for pkg in $wanted; do
    case " $missing " in *" $pkg "*) continue ;; esac
    dpkg-query -W -f '${Status}\n' "$pkg" 2>/dev/null | grep -q '^install ok installed$' \
        || missing="$missing $pkg"
done
unpack=""
for group in "$@"; do
    for pkg in $(group_unpacked "$group"); do
        [ -d "$UNPACKED/$pkg" ] || unpack="$unpack $pkg"
    done
done
if [ -z "$missing$unpack" ]; then
    echo "host packages ($*): all installed"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "host packages missing:$missing$unpack; run this as root (apt-get install)" >&2
    exit 1
fi
log=/var/log/cockpit-agent-deps.log
echo "host packages ($*):${missing:+ installing$missing}${unpack:+ unpacking$unpack}" \
    "(apt log: $log)"
export DEBIAN_FRONTEND=noninteractive
# Another apt (cloud-init at first boot, a second make) may hold dpkg's lock: wait for it.
lock="-o DPkg::Lock::Timeout=600"
# shellcheck disable=SC2086
if ! { apt-get $lock update -q && { [ -z "$missing" ] \
    || apt-get $lock install -y -q --no-install-recommends $missing; }; } >>"$log" 2>&1; then
    tail -n 20 "$log" >&2
    echo "host packages: apt-get failed; full log: $log" >&2
    exit 1
fi
for pkg in $unpack; do
    tmp=$(mktemp -d)
    # shellcheck disable=SC2086
    if ! { (cd "$tmp" && apt-get $lock download -q "$pkg") && dpkg -x "$tmp/${pkg}"_*.deb \
        "$tmp/root" && mkdir -p "$UNPACKED" && mv "$tmp/root" "$UNPACKED/$pkg"; } >>"$log" 2>&1
    then
        tail -n 20 "$log" >&2
        echo "host packages: unpacking $pkg failed; full log: $log" >&2
        exit 1
    fi
    rm -rf "$tmp"
done
