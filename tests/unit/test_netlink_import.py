"""The netlink reads load pyroute2's IPRoute without pyroute2's __init__, which imports every
pyroute2 module; pyroute2 used the usual way still works in the same process afterwards."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import sys
from cockpit_agent.host import netlink
netlink._without_init("pyroute2")
from pyroute2.iproute.linux import IPRoute
print("ndb loaded:", "pyroute2.ndb" in sys.modules)
from pyroute2 import NDB, IPRoute as Same
print("NDB:", NDB.__name__, "same IPRoute:", Same is IPRoute)
"""


def test_iproute_loads_without_the_rest_of_pyroute2() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out == ["ndb loaded: False", "NDB: NDB same IPRoute: True"]


def test_a_name_pyroute2_does_not_have_is_an_import_error() -> None:
    from cockpit_agent.host import netlink  # noqa: PLC0415

    code = "from cockpit_agent.host import netlink; netlink._without_init('pyroute2')\n"
    code += "from pyroute2 import NoSuchThing"
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    assert proc.returncode == 1
    assert "ImportError: cannot import name 'NoSuchThing'" in proc.stderr
    with pytest.raises(ImportError, match="no package"):
        netlink._without_init("no_such_package_here")
