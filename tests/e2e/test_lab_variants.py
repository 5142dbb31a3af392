"""The lab's image variants: an LVM root with the baked package cache (offline), and the image
with the virtualisation packages installed, serving Cockpit over the LNI path."""

from __future__ import annotations

import ssl
import urllib.request

import pytest
from cockpit_lab.recipe import VIRT_PACKAGES
from cockpit_lab.seed import LAB_CONFIG
from cockpit_lab.vm import Lab, LabSpec

pytestmark = pytest.mark.e2e

NO_VIRT = LAB_CONFIG + "\n[virt]\nenabled = false\n"


@pytest.fixture(scope="module")
def lvm_lab(lab_factory: object) -> Lab:
    """The LVM-root image, cut off from any mirror, with no instance-store drive."""
    assert callable(lab_factory)
    lab: Lab = lab_factory(LabSpec(nvme_count=0, config=NO_VIRT, offline=True), variant="lvm")
    lab.boot()
    lab.wait_agent()
    return lab


def test_lvm_root_is_a_logical_volume_on_the_last_partition(lvm_lab: Lab) -> None:
    source = lvm_lab.ssh("findmnt -n -o SOURCE /").stdout.strip()
    assert source == "/dev/mapper/labvg-root"
    pvs = lvm_lab.ssh("pvs --noheadings -o pv_name,vg_name").stdout.split()
    assert pvs[1] == "labvg"
    assert pvs[0].endswith("p3")
    # Booted by the image's own GRUB from its /boot partition.
    assert "BOOT_IMAGE=/vmlinuz-" in lvm_lab.ssh("cat /proc/cmdline").stdout


def test_virtualisation_packages_install_from_the_baked_cache_offline(lvm_lab: Lab) -> None:
    offline = lvm_lab.ssh("curl -sS -m 5 -o /dev/null http://deb.debian.org/", check=False)
    assert offline.returncode != 0  # the mirror is out of reach
    # Every .deb the install needs is in the image's own apt cache (fails on any missing one).
    packages = " ".join(VIRT_PACKAGES)
    fetch = lvm_lab.ssh(
        f"apt-get install -y -q --no-install-recommends --download-only --no-download {packages}",
        check=False,
    )
    assert fetch.returncode == 0, fetch.stdout + fetch.stderr


def test_virt_image_serves_cockpit_over_the_lni_path(lab_factory: object) -> None:
    assert callable(lab_factory)
    lab: Lab = lab_factory(LabSpec(nvme_count=0), variant="virt")
    lab.boot()
    lab.wait_agent()
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # Cockpit's self-signed certificate
    url = f"https://127.0.0.1:{lab.ports.lni_cockpit}/"
    with urllib.request.urlopen(url, context=context, timeout=60) as response:
        assert response.status == 200
        assert b"cockpit" in response.read().lower()
