"""Golden tests of the storage renderers: ARRAY line, mdadm.conf, fstab, the udev rule.

Set COCKPIT_UPDATE_GOLDEN=1 to rewrite the golden files, then review the diff.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cockpit_agent.render import fstab, mdadm
from cockpit_agent.render.fstab import MountSpec
from cockpit_agent.render.mdadm import ArraySpec
from cockpit_agent.render.owned_lines import foreign, owned, replace_owned
from tests.helpers.golden import check_golden_file

GOLDEN = Path(__file__).resolve().parent.parent / "fixtures" / "storage" / "golden"
UUID = "0f1e2d3c:4b5a6978:8796a5b4:c3d2e1f0"
OLD_UUID = "99999999:88888888:77777777:66666666"
FS_UUID = "11111111-2222-3333-4444-555555555555"
OLD_FS_UUID = "deaddead-0000-4000-8000-000000000000"
SPEC = ArraySpec("cockpit-data", UUID, "any:cockpit-data")
MOUNT = MountSpec(FS_UUID, "/var/lib/libvirt/images", "xfs")


def golden(name: str, text: str) -> None:
    check_golden_file(GOLDEN / name, text)


def admin(name: str) -> str:
    return (GOLDEN / name).read_text()


# --- mdadm.conf -----------------------------------------------------------------------------


def test_array_line_has_the_fields_of_mdadm_detail_brief() -> None:
    assert mdadm.array_line(SPEC) == (
        "ARRAY /dev/md/cockpit-data metadata=1.2 name=any:cockpit-data UUID=" + UUID
    )


def test_mdadm_conf_gains_our_line_and_keeps_the_admins() -> None:
    text = mdadm.render_conf(admin("mdadm.conf.admin"), [SPEC])
    golden("mdadm.conf.ours", text)
    assert text.startswith(admin("mdadm.conf.admin"))
    assert mdadm.owned_lines(text) == [mdadm.array_line(SPEC)]


def test_mdadm_conf_replaces_a_stale_line_in_place() -> None:
    stale = mdadm.render_conf(
        admin("mdadm.conf.admin"), [ArraySpec("cockpit-data", OLD_UUID, "any:cockpit-data")]
    )
    text = mdadm.render_conf(stale + "MAILFROM agent\n", [SPEC])
    golden("mdadm.conf.replaced", text)
    assert OLD_UUID not in text
    assert text.endswith("MAILFROM agent\n")


def test_mdadm_conf_without_arrays_loses_only_our_lines() -> None:
    ours = mdadm.render_conf(admin("mdadm.conf.admin"), [SPEC])
    assert mdadm.render_conf(ours, []) == admin("mdadm.conf.admin")


def test_mdadm_conf_rendering_is_idempotent() -> None:
    once = mdadm.render_conf(admin("mdadm.conf.admin"), [SPEC])
    assert mdadm.render_conf(once, [SPEC]) == once


def test_listed_by_admin_reads_only_lines_we_do_not_own() -> None:
    conf = admin("mdadm.conf.admin")
    assert mdadm.listed_by_admin(conf, "aaaaaaaa:bbbbbbbb:cccccccc:dddddddd")
    assert not mdadm.listed_by_admin(conf, UUID)
    assert not mdadm.listed_by_admin(mdadm.render_conf(conf, [SPEC]), UUID)


def test_line_uuid() -> None:
    assert mdadm.line_uuid(mdadm.array_line(SPEC)) == UUID
    assert mdadm.line_uuid("ARRAY /dev/md0 metadata=1.2") is None


def test_stripe_cache_rule() -> None:
    golden("stripe-cache.rules", mdadm.stripe_cache_rule(UUID, 4096))


# --- fstab ----------------------------------------------------------------------------------


def test_fstab_line_mounts_by_uuid_without_holding_up_the_boot() -> None:
    assert fstab.fstab_line(MOUNT) == (
        f"UUID={FS_UUID} /var/lib/libvirt/images xfs "
        "defaults,nofail,x-systemd.device-timeout=60s 0 0"
    )


def test_ext4_is_checked_at_boot() -> None:
    line = fstab.fstab_line(MountSpec(FS_UUID, "/srv/data", "ext4"))
    assert line.endswith(" ext4 defaults,nofail,x-systemd.device-timeout=60s 0 2")


def test_fstab_gains_our_line_and_keeps_the_admins() -> None:
    text = fstab.render_fstab(admin("fstab.admin"), MOUNT)
    golden("fstab.ours", text)
    assert text.startswith(admin("fstab.admin"))


def test_fstab_stale_line_is_replaced() -> None:
    stale = fstab.render_fstab(
        admin("fstab.admin"), MountSpec(OLD_FS_UUID, MOUNT.mount_point, "xfs")
    )
    text = fstab.render_fstab(stale, MOUNT)
    golden("fstab.ours", text)  # the same file as a fresh one
    assert OLD_FS_UUID not in text


def test_fstab_line_removed() -> None:
    ours = fstab.render_fstab(admin("fstab.admin"), MOUNT)
    assert fstab.render_fstab(ours, None) == admin("fstab.admin")


def test_mount_point_with_a_space_is_escaped_and_parsed_back() -> None:
    spec = MountSpec(FS_UUID, "/srv/vm images", "xfs")
    line = fstab.fstab_line(spec)
    assert " /srv/vm\\040images " in line
    assert fstab.parse_line(line) == spec


@pytest.mark.parametrize(
    "line", ["/dev/md127 /mnt xfs defaults 0 0", "# UUID=x /mnt xfs", "UUID=x", ""]
)
def test_parse_line_ignores_lines_not_by_uuid(line: str) -> None:
    assert fstab.parse_line(line) is None


def test_foreign_mounts_at() -> None:
    text = fstab.render_fstab(
        admin("fstab.admin") + "/dev/sdb1 /var/lib/libvirt/images/ ext4 defaults 0 2\n", MOUNT
    )
    assert fstab.foreign_mounts_at(text, "/var/lib/libvirt/images") == [
        "/dev/sdb1 /var/lib/libvirt/images/ ext4 defaults 0 2"
    ]
    assert fstab.foreign_mounts_at(admin("fstab.admin"), "/var/lib/libvirt/images") == []


# --- owned lines ----------------------------------------------------------------------------

M = "# mine"


def test_owned_lines_edge_cases() -> None:
    assert owned("", M) == []
    assert owned(f"a\n{M}\n", M) == []  # a marker on the last line owns nothing
    assert owned(f"a\n{M}\nx\nb\n{M}\ny", M) == ["x", "y"]
    assert foreign(f"a\n{M}\nx\nb\n", M) == ["a", "b"]


def test_replace_owned_adds_a_final_newline_and_appends_at_the_end() -> None:
    assert replace_owned("a", M, ["x"]) == f"a\n{M}\nx\n"
    assert replace_owned("", M, []) == ""
    assert replace_owned(f"a\n{M}\nx\nb\n{M}\ny\n", M, ["z"]) == f"a\n{M}\nz\nb\n"
