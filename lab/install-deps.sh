#!/bin/sh
# Host packages the QEMU lab needs (image build and e2e runs). Idempotent; run as root.
# Used by CI (.ci/run) on a fresh machine and by developers once.
set -eu
PACKAGES="qemu-system-x86 qemu-utils debootstrap debian-archive-keyring gdisk util-linux
mount e2fsprogs xfsprogs openssh-client lvm2"
missing=""
for pkg in $PACKAGES; do
    dpkg-query -W -f '${Status}\n' "$pkg" 2>/dev/null | grep -q '^install ok installed$' \
        || missing="$missing $pkg"
done
if [ -z "$missing" ]; then
    echo "lab host packages: all installed"
    exit 0
fi
echo "lab host packages: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing
