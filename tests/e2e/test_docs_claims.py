"""What docs/security.md and docs/backup.md claim, run in the lab from the pages' own blocks.

- backup.md, *A running VM*: its `virsh backup-begin` block, run as written against a running
  VM whose qcow2 disk is on the array, then the disk is lost (deleted, as a stop/start blanks
  the instance store) and the recovery block (step 3 of *After a stop/start*) restores it; the
  restored disk must hold every byte the original held. The lab has no S3: `aws` is a shell
  function standing in for `aws s3 cp`, with s3://BUCKET/ a directory on the guest's root
  volume (off the array, not off the host). The VM is a disk and SeaBIOS finding nothing to
  boot on it: backup-begin needs a running QEMU, not a running guest OS. It runs on the main
  instance (conftest's stock_lab) and leaves nothing behind.
- security.md, *TLS with a real certificate* and *Where Cockpit answers*, on the main
  instance (this module runs last of those that share it, and leaves this configuration):
  `virt.listen_on_bridge_only = true` in a drop-in, then the page's blocks install a
  certificate from a CA made here; Cockpit serves exactly that certificate on the LNI path,
  verified against the CA for the bridge's address, and no longer answers on the management
  path. In `make e2e` only (marked extended), one boot of its own with the option set from
  the first boot shows the documented gap: Cockpit on every address and `check` saying so.
"""

from __future__ import annotations

import re
import shlex
import socket
import ssl
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest
from cockpit_lab.recipe import LNI_GUEST_IP
from cockpit_lab.vm import Lab, LabSpec
from tests.e2e.guest import MP, check, cockpit_login_page, problems, sh

pytestmark = pytest.mark.e2e

DOCS = Path(__file__).resolve().parents[2] / "docs"
VM = "docs-vm1"  # the pages' `vm1`, renamed so that nothing else in the guest is touched
FAKE_S3 = "/var/tmp/docs-fake-s3"
# `aws s3 cp SRC DST` with s3://BUCKET/ as a directory on the root volume.
AWS = f"""
aws() {{
    [ "$1 $2" = "s3 cp" ] || {{ echo "stand-in aws: only s3 cp" >&2; return 2; }}
    src=$(printf %s "$3" | sed 's|^s3://BUCKET/|{FAKE_S3}/|')
    dst=$(printf %s "$4" | sed 's|^s3://BUCKET/|{FAKE_S3}/|')
    mkdir -p "$(dirname "$dst")" && cp "$src" "$dst"
}}
"""
SOCKET_DROPIN = "/etc/systemd/system/cockpit.socket.d/50-cockpit-agent.conf"
CERT = "/etc/cockpit/ws-certs.d/50-cockpit-agent.cert"


def doc_block(page: str, containing: str, section: str = "") -> tuple[str, str]:
    """(language, text) of the one fenced block of docs/`page` (after heading `section`, if
    given) that contains `containing`; indented blocks (in list items) are dedented."""
    text = (DOCS / page).read_text()
    if section:
        text = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^( *)```(\w*)\n(.*?)^\1```", text, re.M | re.S)
    found = [(lang, textwrap.dedent(body)) for _, lang, body in blocks if containing in body]
    assert len(found) == 1, f"{page}: {len(found)} blocks contain {containing!r}"
    return found[0]


def run_block(lab: Lab, body: str, *, cwd: str = "/", prelude: str = "") -> str:
    """A page's shell block, run as written (set -e) in the guest; its output."""
    script = f"set -e\ncd {shlex.quote(cwd)}\n{prelude}\n{body}"
    return lab.ssh(f"bash -c {shlex.quote(script)}", timeout=600).stdout


# --- backup.md: a running VM's disk, backed up and restored ---------------------------------


def test_a_running_vms_disk_backed_up_as_documented_is_restored_byte_for_byte(lab: Lab) -> None:
    disk = f"{MP}/{VM}.qcow2"
    reference = f"/var/tmp/{VM}.raw"
    _, backup = doc_block("backup.md", "virsh backup-begin vm1")
    _, restore = doc_block("backup.md", "qemu-img check", "Recovery, step by step")
    try:
        # 8 MiB of text (no boot signature: SeaBIOS boots nothing) as the VM's only disk.
        sh(lab, f"yes 'cockpit-agent backup test' | head -c 8M > {reference}")
        sh(lab, f"qemu-img convert -f raw -O qcow2 {reference} {disk}")
        sh(
            lab,
            f"virt-install --connect qemu:///system --name {VM} --memory 64 --vcpus 1 "
            f"--osinfo detect=on,require=off --import --disk path={disk},format=qcow2,bus=virtio "
            "--network none --graphics none --noautoconsole",
        )
        assert sh(lab, f"virsh domstate {VM}").strip() == "running"
        assert "vda" in sh(lab, f"virsh domblklist {VM}")

        out = run_block(lab, backup.replace("vm1", VM), prelude=AWS)
        assert re.search(r"^Job type: +Completed", out, re.M), out
        assert lab.ssh(f"test -e {MP}/{VM}.backup.qcow2", check=False).returncode == 1
        saved = f"{FAKE_S3}/HOST/{VM}.qcow2"
        assert "Images are identical" in sh(lab, f"qemu-img compare -f raw {reference} {saved}")

        # The instance store is blanked: the VM is down and its disk is gone.
        sh(lab, f"virsh destroy {VM} && rm {disk}")
        out = run_block(lab, restore.replace("vm1", VM), prelude=AWS)
        assert "No errors were found on the image." in out, out
        assert sh(lab, f"virsh domstate {VM}").strip() == "running"
        # -U: the running VM holds the image's write lock.
        compared = sh(lab, f"qemu-img compare -U -f raw {reference} {disk}")
        assert "Images are identical" in compared, compared
    finally:
        lab.ssh(
            f"virsh destroy {VM}; virsh undefine {VM}; "
            f"rm -rf {disk} {MP}/{VM}.backup.qcow2 {reference} /var/tmp/{VM}-backup.xml {FAKE_S3}",
            check=False,
        )


# --- security.md: a real certificate, and Cockpit on the bridge only -------------------------

LISTEN = "\n[virt]\nlisten_on_bridge_only = true\n"
LISTEN_DROPIN = "/etc/cockpit-agent/config.d/70-docs-listen.toml"


def listening(lab: Lab) -> set[str]:
    """Local addresses of the sockets listening on TCP port 9090."""
    return {line.split()[3] for line in sh(lab, "ss -Hltn 'sport = :9090'").splitlines()}


def make_certificate(out: Path) -> tuple[Path, Path, Path]:
    """A CA made for the test and a certificate it signs for the bridge's address
    and the name cockpit-lab: (ca.pem, host.pem, host.key)."""
    ca, ca_key = out / "ca.pem", out / "ca.key"
    host, key, csr, ext = out / "host.pem", out / "host.key", out / "host.csr", out / "ext.cnf"
    ext.write_text(
        f"subjectAltName = IP:{LNI_GUEST_IP}, DNS:cockpit-lab\n"
        "basicConstraints = critical, CA:FALSE\n"
        "keyUsage = critical, digitalSignature, keyEncipherment\n"
        "extendedKeyUsage = serverAuth\n"
        "subjectKeyIdentifier = hash\n"
        "authorityKeyIdentifier = keyid\n"
    )
    openssl = ["openssl", "req", "-newkey", "rsa:2048", "-noenc"]
    for argv in (
        [*openssl, "-x509", "-days", "2", "-keyout", ca_key, "-out", ca,
         "-subj", "/CN=cockpit-agent docs test CA",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        [*openssl, "-keyout", key, "-out", csr, "-subj", "/CN=cockpit-lab"],
        ["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
         "-days", "2", "-out", host, "-extfile", ext],
    ):  # fmt: skip
        subprocess.run([str(a) for a in argv], check=True, capture_output=True)
    return ca, host, key


def served_certificate(port: int, ca: Path, name: str) -> tuple[bytes, str]:
    """The certificate Cockpit serves through the forward on `port` (DER), verified against
    `ca` for `name`, and the head of its answer to GET /."""
    context = ssl.create_default_context(cafile=str(ca))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=60) as raw,
        context.wrap_socket(raw, server_hostname=name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        tls.sendall(b"GET / HTTP/1.1\r\nHost: " + name.encode() + b"\r\nConnection: close\r\n\r\n")
        answer = b""
        while b"\r\n\r\n" not in answer and (chunk := tls.recv(65536)):
            answer += chunk
    assert der is not None
    return der, answer.decode(errors="replace")


@pytest.fixture(scope="module")
def bridge_only(module_lab: Lab) -> Lab:
    """The main instance told `listen_on_bridge_only` by a drop-in, as an admin does on a host
    that runs (kept: this module comes last of the modules that share the instance)."""
    where = Path(LISTEN_DROPIN)
    module_lab.ssh(f"mkdir -p {where.parent} && cat > {where} <<'DOCS_EOF'\n{LISTEN}DOCS_EOF\n")
    return module_lab


@pytest.fixture(scope="module")
def configured(bridge_only: Lab, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """security.md's certificate blocks run as written on the main instance (its reconcile
    also writes the listen drop-in, the bridge being up); the CA that signed the
    certificate."""
    ca, host, key = make_certificate(tmp_path_factory.mktemp("tls"))
    _, toml = doc_block("security.md", "tls_certificate", "TLS with a real certificate")
    _, commands = doc_block("security.md", "install -m 0600", "TLS with a real certificate")
    dropin = toml.splitlines()[0].removeprefix("# ").strip()
    assert dropin.startswith("/etc/cockpit-agent/config.d/"), toml
    staging = "/var/tmp/docs-tls"
    files = {f"{staging}/host.pem": host.read_text(), f"{staging}/host.key": key.read_text()}
    files[dropin] = toml
    for path, content in files.items():
        bridge_only.ssh(
            f"mkdir -p {shlex.quote(str(Path(path).parent))} && "
            f"cat > {shlex.quote(path)} <<'DOCS_EOF'\n{content}DOCS_EOF\n"
        )
    out = run_block(bridge_only, commands, cwd=staging)
    assert f"Would use certificate {CERT}" in out, out
    return ca


def test_cockpit_serves_the_configured_certificate_verified_by_its_ca(
    bridge_only: Lab, configured: Path
) -> None:
    der, answer = served_certificate(bridge_only.ports.lni_cockpit, configured, LNI_GUEST_IP)
    host = (configured.parent / "host.pem").read_text()
    assert der == ssl.PEM_cert_to_DER_cert(host)
    assert answer.startswith("HTTP/1.1 200 "), answer
    key = CERT.removesuffix(".cert") + ".key"
    assert sh(bridge_only, f"stat -c '%a %n' {CERT} {key}").splitlines() == [
        f"644 {CERT}",
        f"600 {key}",
    ]


def test_cockpit_answers_on_the_lni_path_only(bridge_only: Lab, configured: Path) -> None:
    assert listening(bridge_only) == {f"{LNI_GUEST_IP}:9090"}
    assert f"ListenStream={LNI_GUEST_IP}:9090" in sh(bridge_only, f"cat {SOCKET_DROPIN}")
    assert "cockpit" in cockpit_login_page(bridge_only.ports.lni_cockpit).lower()
    with pytest.raises(OSError):  # the forward's far end is refused: reset or EOF
        cockpit_login_page(bridge_only.ports.mgmt_cockpit)
    _, report = check(bridge_only)
    assert not [c for c in problems(report) if c.startswith("virt")], report


# --- the first boot's gap, on a boot of its own (make e2e) ------------------------------------


@pytest.fixture(scope="module")
def hardened(lab_factory: Any) -> Lab:
    """One boot of the stock image with listen_on_bridge_only, no instance-store drive."""
    lab: Lab = lab_factory(LabSpec(nvme_count=0, extra_config=LISTEN), variant="stock")
    lab.boot()
    lab.wait_agent()
    return lab


@pytest.mark.extended
def test_first_boot_leaves_cockpit_on_every_address_and_check_says_so(hardened: Lab) -> None:
    # The virt step runs before the LNI step has made the bridge (security.md says so).
    assert hardened.ssh(f"test -e {SOCKET_DROPIN}", check=False).returncode == 1
    seen = listening(hardened)
    assert seen and seen <= {"*:9090", "[::]:9090", "0.0.0.0:9090"}, seen
    _, report = check(hardened)
    assert problems(report).get("virt-drift") == "warning", report
    [drift] = [f for f in report["findings"] if f["code"] == "virt-drift"]
    assert SOCKET_DROPIN in drift["message"], drift
