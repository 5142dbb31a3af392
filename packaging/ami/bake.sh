#!/bin/sh
# Turn a stock AMI into a cockpit-agent AMI: install the agent's package and the
# virtualisation stack, scan the image, and clean what must not be baked so that every
# instance boots as new. Debian 12, Ubuntu 24.04, RHEL 9 / Rocky 9, Amazon Linux 2023.
#
# Runs as root on a live builder instance (Packer, EC2 Image Builder) or inside a chroot of
# the image with no running systemd (the lab's image build): then nothing is started and what
# needs a running system is skipped. Idempotent: a second run leaves the same image.
#
# usage: bake.sh [--upgrade] [--scan auto|lynis|openscap|none] [--scan-profile ID]
#                [--config-dir DIR] PACKAGE|DIR
#        bake.sh --print-family [OS_RELEASE_FILE]
#
#   PACKAGE          cockpit-agent_<version>_amd64.deb or cockpit-agent-<version>.x86_64.rpm;
#                    a DIR holding them: the one for this OS family is taken
#   --upgrade        apply the OS's updates first (a rebake of an older stock AMI)
#   --config-dir     DIR/config.toml -> /etc/cockpit-agent/, DIR/config.d/*.toml ->
#                    /etc/cockpit-agent/config.d/ (validated by the agent; the package lists
#                    of the bake are those of this configuration)
#   --scan           compliance scan of the image (default none; auto = lynis on the Debian
#                    family, OpenSCAP with the distribution's SCAP Security Guide otherwise);
#                    its report is kept in /var/lib/cockpit-agent-bake/
#   --print-family   print "<family> <package manager>" as the bake (and the agent) see it
set -eu

REPORT_DIR=/var/lib/cockpit-agent-bake
SSG_DIR=/usr/share/xml/scap/ssg/content

started=$(date +%s)
say() { printf 'bake: [%4s s] %s\n' "$(($(date +%s) - started))" "$*"; }
die() {
    printf 'bake: error: %s\n' "$*" >&2
    exit 1
}

# --- what this OS is ---------------------------------------------------------------------

os_release_file() {
    for f in /etc/os-release /usr/lib/os-release; do
        [ -r "$f" ] && echo "$f" && return
    done
    die "no /etc/os-release: cannot tell which OS this is"
}

# os_field FILE KEY: the value of KEY in an os-release file (shell-quoted assignments).
os_field() {
    # shellcheck disable=SC1090
    (. "$1" && eval "printf '%s' \"\${$2:-}\"")
}

# The OS family from ID, then ID_LIKE in order, as the agent's facts/platform.py decides it
# (tests/unit/test_bake.py holds the two to the same answers).
os_family() {
    for word in $(os_field "$1" ID) $(os_field "$1" ID_LIKE); do
        case "$word" in
        debian | ubuntu) echo debian && return ;;
        amzn) echo amazon && return ;;
        rhel | fedora | centos | rocky | almalinux) echo rhel && return ;;
        esac
    done
    echo unknown
}

package_manager() {
    case "$1" in
    debian) echo apt ;;
    rhel | amazon) echo dnf ;;
    *) echo none ;;
    esac
}

# Inside a chroot (the lab's build) or without systemd as PID 1, nothing can be started and
# the journal is not open: / is not PID 1's root, or there is no /proc to tell.
running_system() {
    [ -d /run/systemd/system ] || return 1
    [ "$(stat -c %d:%i / 2>/dev/null)" = "$(stat -c %d:%i /proc/1/root/. 2>/dev/null)" ]
}

# --- packages ----------------------------------------------------------------------------

apt_get() {
    DEBIAN_FRONTEND=noninteractive apt-get -y -q -o DPkg::Lock::Timeout=600 \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@"
}

install_packages() { # names or paths of package files
    case "$pm" in
    apt) apt_get install --no-install-recommends "$@" ;;
    dnf) dnf install -y -q "$@" ;;
    esac
}

remove_packages() {
    case "$pm" in
    apt) apt_get purge "$@" ;;
    dnf) dnf remove -y -q "$@" ;;
    esac
}

installed() {
    case "$pm" in
    apt) dpkg-query -W -f '${db:Status-Status}' "$1" 2>/dev/null | grep -qx installed ;;
    dnf) rpm -q "$1" >/dev/null 2>&1 ;;
    esac
}

refresh_lists() {
    case "$pm" in
    apt) apt_get update ;;
    dnf) dnf makecache -q ;;
    esac
}

upgrade_os() {
    case "$pm" in
    apt) apt_get dist-upgrade ;;
    dnf) dnf upgrade -y -q ;;
    esac
}

# The agent's package for this family: the file given, or the one file in a directory.
agent_package() {
    if [ -f "$1" ]; then
        case "$1" in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac
        return
    fi
    [ -d "$1" ] || die "$1: no such package file or directory"
    case "$pm" in
    apt) pattern='cockpit-agent_*_amd64.deb' ;;
    dnf) pattern='cockpit-agent-*.x86_64.rpm' ;;
    esac
    found=$(find "$1" -maxdepth 1 -type f -name "$pattern" | sort)
    [ -n "$found" ] || die "$1: no $pattern in it"
    [ "$(printf '%s\n' "$found" | wc -l)" -eq 1 ] || die "$1: more than one $pattern: $found"
    case "$found" in /*) echo "$found" ;; *) echo "$PWD/$found" ;; esac
}

# virt_packages: the names the agent's virt step wants for this family, from the agent's own
# validated configuration (none when the step is off).
virt_packages() {
    config=$(cockpit-agent --json config validate) ||
        die "the configuration in /etc/cockpit-agent does not validate (above)"
    printf '%s' "$config" | python3 -c '
import json, sys
virt = json.load(sys.stdin)["config"]["virt"]
print(" ".join(virt["packages"].get(sys.argv[1], []) if virt["enabled"] else []))
' "$family"
}

# --- cleaning what must not be baked -----------------------------------------------------

clean_instance_identity() {
    if command -v cloud-init >/dev/null 2>&1; then
        if cloud-init clean --help 2>&1 | grep -q -- --machine-id; then
            cloud-init clean --logs --machine-id
        else
            cloud-init clean --logs
        fi
    else
        rm -rf /var/lib/cloud/instance /var/lib/cloud/instances /var/lib/cloud/data \
            /var/lib/cloud/sem
    fi
    # Empty, not removed: systemd makes a new id at the next boot, which is then not taken
    # for a first boot, so presets are not applied again over the baked units.
    : >/etc/machine-id
    if [ -f /var/lib/dbus/machine-id ] && [ ! -L /var/lib/dbus/machine-id ]; then
        rm -f /var/lib/dbus/machine-id
    fi
    rm -f /var/lib/systemd/random-seed
    rm -f /etc/ssh/ssh_host_*_key /etc/ssh/ssh_host_*_key.pub
    regenerate_host_keys
    if [ -d /var/lib/cockpit-agent ]; then
        find /var/lib/cockpit-agent -mindepth 1 -delete
    fi
    for home in /root /home/*; do
        [ -d "$home" ] || continue
        rm -f "$home/.bash_history" "$home/.sh_history" "$home/.python_history" \
            "$home/.lesshst" "$home/.viminfo"
    done
}

# Something must make new SSH host keys at the next boot: cloud-init does on a new instance,
# RHEL's sshd-keygen@ units do; Debian's ssh.service alone does not (sshd -t fails without
# keys), so it gets `ssh-keygen -A` before its own check.
regenerate_host_keys() {
    command -v cloud-init >/dev/null 2>&1 && [ ! -e /etc/cloud/cloud-init.disabled ] && return
    for unit in sshd-keygen@.service sshd-keygen.target; do
        [ -e "/usr/lib/systemd/system/$unit" ] && return
    done
    [ -e /lib/systemd/system/ssh.service ] || [ -e /usr/lib/systemd/system/ssh.service ] ||
        return 0
    mkdir -p /etc/systemd/system/ssh.service.d
    cat >/etc/systemd/system/ssh.service.d/50-host-keys.conf <<'EOF'
# Written by cockpit-agent's bake: the image carries no SSH host keys; make them at boot.
[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
EOF
}

clean_caches_and_logs() {
    case "$pm" in
    apt)
        apt-get clean
        # The agent refreshes empty lists itself before it installs anything.
        find /var/lib/apt/lists -mindepth 1 -maxdepth 1 ! -name lock ! -name partial -delete
        ;;
    dnf) dnf clean all -q ;;
    esac
    if running_system; then
        # journald goes back to /run until the next boot, so nothing of the rest of this
        # build (the builder's shutdown) lands in the image's journal.
        journalctl --relinquish-var
    fi
    if [ -d /var/log/journal ]; then
        find /var/log/journal -mindepth 1 -delete
    fi
    find /var/log -type f \( -name '*.gz' -o -name '*.xz' -o -name '*.[0-9]' \
        -o -name '*.old' -o -name '*-[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]' \) -delete
    find /var/log -type f -exec truncate -s 0 {} +
}

# --- compliance scan ---------------------------------------------------------------------

scanner_packages() {
    case "$1:$family" in
    lynis:*) echo lynis ;;
    openscap:debian) echo "openscap-scanner ssg-debian ssg-debderived" ;;
    openscap:*) echo "openscap-scanner scap-security-guide" ;;
    esac
}

# The SCAP Security Guide's data stream for this OS: ssg-rhel9-ds.xml, ssg-al2023-ds.xml, ...
ssg_datastream() {
    id=$(os_field "$os_release" ID)
    version=$(os_field "$os_release" VERSION_ID)
    major=${version%%.*}
    for name in "$id$(echo "$version" | tr -d .)" "$id$major" "al$version" "rl$major" \
        "rhel$major"; do
        [ -f "$SSG_DIR/ssg-$name-ds.xml" ] && echo "$SSG_DIR/ssg-$name-ds.xml" && return
    done
    die "the SCAP Security Guide has no data stream for $id $version in $SSG_DIR;" \
        "use --scan lynis or --scan none"
}

scan_lynis() {
    lynis audit system --quick --no-colors --logfile "$REPORT_DIR/lynis.log" \
        --report-file "$REPORT_DIR/lynis-report.dat" >"$REPORT_DIR/lynis.txt"
    index=$(sed -n 's/^hardening_index=//p' "$REPORT_DIR/lynis-report.dat")
    warnings=$(grep -c '^warning\[\]=' "$REPORT_DIR/lynis-report.dat" || true)
    scan_summary="lynis: hardening index $index, $warnings warning(s)"
}

scan_openscap() {
    datastream=$(ssg_datastream)
    rc=0
    oscap xccdf eval --profile "$scan_profile" --results "$REPORT_DIR/openscap-results.xml" \
        --report "$REPORT_DIR/openscap-report.html" "$datastream" \
        >"$REPORT_DIR/openscap.txt" 2>&1 || rc=$?
    # 0: every rule passed, 2: some failed (that is the report's news, not the bake's error).
    [ "$rc" -eq 0 ] || [ "$rc" -eq 2 ] || {
        tail -n 20 "$REPORT_DIR/openscap.txt" >&2
        die "oscap failed (exit $rc); profiles of $datastream: oscap info $datastream"
    }
    # The counts from the XCCDF results (oscap's console layout differs between versions).
    counts=$(python3 -c '
import collections, sys, xml.etree.ElementTree as ET
results = collections.Counter(
    e.findtext("{*}result") for e in ET.parse(sys.argv[1]).iter() if e.tag.endswith("rule-result")
)
print(", ".join(f"{n} {r}" for r, n in sorted(results.items())) or "no rule")
' "$REPORT_DIR/openscap-results.xml")
    scan_summary="openscap $(basename "$datastream") ${scan_profile##*_profile_}: $counts"
}

scan_image() {
    [ "$scan" != none ] || return 0
    # shellcheck disable=SC2046
    set -- $(scanner_packages "$scan")
    added=""
    for p in "$@"; do
        installed "$p" || added="$added $p"
    done
    if [ -n "$added" ]; then
        say "installing the scanner:$added"
        # shellcheck disable=SC2086
        install_packages $added || die "cannot install$added for --scan $scan" \
            "(lynis is in EPEL on the RHEL family; --scan openscap or --scan none)"
    fi
    say "scanning the image ($scan; report in $REPORT_DIR)"
    "scan_$scan"
    if [ -n "$added" ]; then
        say "removing the scanner:$added"
        # shellcheck disable=SC2086
        remove_packages $added
    fi
    say "$scan_summary"
}

write_manifest() {
    python3 - "$REPORT_DIR/bake.json" "$(os_field "$os_release" PRETTY_NAME)" "$family" \
        "$(cockpit-agent version)" "$(basename "$package")" "$virt" "$scan" "$scan_summary" \
        "$(running_system && echo true || echo false)" <<'EOF'
import json, sys, time
path, os_name, family, agent, package, virt, scan, summary, live = sys.argv[1:]
manifest = {
    "baked_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    "os": os_name,
    "family": family,
    "agent": agent,
    "agent_package": package,
    "virt_packages": virt.split(),
    "running_system": live == "true",
    "scan": scan,
    "scan_summary": summary,
}
with open(path, "w") as fh:
    fh.write(json.dumps(manifest, indent=2) + "\n")
EOF
}

# --- main --------------------------------------------------------------------------------

scan=none
upgrade=false
scan_profile=""
config_dir=""
while [ "$#" -gt 0 ]; do
    case "$1" in
    --print-family)
        release=${2:-$(os_release_file)}
        family=$(os_family "$release")
        echo "$family $(package_manager "$family")"
        exit 0
        ;;
    --upgrade)
        upgrade=true
        shift
        ;;
    --scan)
        [ "$#" -ge 2 ] || die "--scan needs a value"
        scan=$2
        shift 2
        ;;
    --scan-profile)
        [ "$#" -ge 2 ] || die "--scan-profile needs a value"
        scan_profile=$2
        shift 2
        ;;
    --config-dir)
        [ "$#" -ge 2 ] || die "--config-dir needs a value"
        config_dir=$2
        shift 2
        ;;
    -h | --help)
        sed -n '2,/^set -eu/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
        exit 0
        ;;
    -*) die "unknown option $1 (--help)" ;;
    *) break ;;
    esac
done
[ "$#" -eq 1 ] || die "usage: bake.sh [--scan MODE] [--config-dir DIR] PACKAGE|DIR (--help)"
[ "$(id -u)" -eq 0 ] || die "run as root"

os_release=$(os_release_file)
family=$(os_family "$os_release")
pm=$(package_manager "$family")
[ "$pm" != none ] || die "unsupported OS: $(os_field "$os_release" PRETTY_NAME)" \
    "(the Debian and RHEL families and Amazon Linux are)"
case "$scan" in
auto) [ "$family" = debian ] && scan=lynis || scan=openscap ;;
lynis | openscap | none) ;;
*) die "--scan $scan: auto, lynis, openscap or none" ;;
esac
scan_profile=${scan_profile:-xccdf_org.ssgproject.content_profile_cis_server_l1}
scan_summary="not scanned"
package=$(agent_package "$1")
if running_system; then
    say "$(os_field "$os_release" PRETTY_NAME), $family family, on a running system"
    if command -v cloud-init >/dev/null 2>&1; then
        # A builder just booted: cloud-init may still be installing or upgrading packages.
        say "waiting for cloud-init to finish"
        cloud-init status --wait >/dev/null || say "cloud-init ended with an error; going on"
    fi
else
    say "$(os_field "$os_release" PRETTY_NAME), $family family, offline (chroot): nothing is started"
    if [ "$pm" = apt ] && [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 0755 /usr/sbin/policy-rc.d
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
fi

refresh_lists
if [ "$upgrade" = true ]; then
    say "applying the OS's updates"
    upgrade_os
fi
say "installing the agent: $package"
install_packages "$package"
if [ -n "$config_dir" ]; then
    say "configuration from $config_dir"
    mkdir -p /etc/cockpit-agent/config.d
    [ ! -f "$config_dir/config.toml" ] || cp "$config_dir/config.toml" /etc/cockpit-agent/
    for f in "$config_dir"/config.d/*.toml; do
        [ ! -f "$f" ] || cp "$f" /etc/cockpit-agent/config.d/
    done
fi
virt=$(virt_packages)
if [ -n "$virt" ]; then
    say "installing the virtualisation stack: $virt"
    # shellcheck disable=SC2086
    install_packages $virt
else
    say "no virtualisation packages for the $family family in the agent's configuration" \
        "(virt.packages.$family, or virt.enabled = false): none baked"
fi

rm -rf "$REPORT_DIR"
mkdir -p "$REPORT_DIR"
say "cleaning instance identity, SSH host keys, machine-id, the agent's state, history"
clean_instance_identity
scan_image
write_manifest
say "cleaning package caches, logs and the journal"
clean_caches_and_logs
sync
say "done: $(cockpit-agent version); report in $REPORT_DIR"
