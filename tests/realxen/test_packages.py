"""The Debian package, installed with Debian's dpkg in this dom0, against xl.

tools/run-tests builds ``python3-xenprivcmd`` from the tree (tools/build-deb),
puts it with the suite's own ``python3-construct`` in a directory and names it
in ``XENPRIVCMD_DEBS`` (bookworm: the .deb is built on this Debian 12 host).
Everything here runs with a clean environment from ``/``: no PYTHONPATH, so
the package's files in /usr are what runs, never the source tree on /host.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
from typing import Dict, List

import pytest

import xenprivcmd

from .conftest import xl_list

DEBS = os.environ.get("XENPRIVCMD_DEBS", "")
SITE = "/usr/lib/python3/dist-packages/"

pytestmark = pytest.mark.skipif(
    not DEBS, reason="the .deb is installed in the bookworm dom0 only (tools/run-tests sets XENPRIVCMD_DEBS)"
)


def system(*cmd: str) -> subprocess.CompletedProcess:
    """cmd as a dom0 admin runs it: a login-like environment, nothing of /host on sys.path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=300, cwd="/", env=env)


def ok(*cmd: str) -> str:
    out = system(*cmd)
    assert out.returncode == 0, f"{' '.join(cmd)} exited {out.returncode}: {out.stderr}{out.stdout}"
    assert "Traceback" not in out.stderr
    return out.stdout


@pytest.fixture(scope="module")
def installed() -> List[str]:
    debs = sorted(glob.glob(os.path.join(DEBS, "*.deb")))
    names = [ok("dpkg-deb", "-f", d, "Package").strip() for d in debs]
    assert sorted(names) == ["python3-construct", "python3-xenprivcmd"], debs
    assert system("dpkg", "-s", "python3-xenprivcmd").returncode != 0, "installed before the test"
    assert not os.path.exists("/usr/bin/xpsh")
    ok("dpkg", "-i", *debs)
    return names


def test_dpkg_installed_the_tree_version(installed: List[str]) -> None:
    status = ok("dpkg", "-s", "python3-xenprivcmd")
    assert "Status: install ok installed" in status
    assert f"Version: {xenprivcmd.__version__}\n" in status  # the tree under test
    assert "python3-construct" in status.split("Depends:", 1)[1].splitlines()[0]
    files = ok("dpkg", "-L", "python3-xenprivcmd").split()
    assert "/usr/bin/xpsh" in files
    assert SITE + "xenprivcmd/__init__.py" in files


def test_the_package_is_what_imports(installed: List[str]) -> None:
    out = ok("/usr/bin/python3", "-c", "import sys, xenprivcmd, construct; print(xenprivcmd.__file__); "
             "print(construct.__file__); print([p for p in sys.path if p.startswith('/host')])").split("\n")
    assert out[0] == SITE + "xenprivcmd/__init__.py"
    assert out[1].startswith(SITE + "construct/")
    assert out[2] == "[]"
    assert ok("/usr/bin/xpsh", "--version").strip() == f"xpsh (xenprivcmd) {xenprivcmd.__version__}"


def _xl_rows() -> Dict[int, Dict[str, str]]:
    return {int(r["id"]): r for r in xl_list()}


def test_deb_xpsh_list_matches_xl_list(installed: List[str], guest: int) -> None:
    text = ok("/usr/bin/xpsh", "list")
    lines = text.splitlines()
    assert lines[0].split() == ["Id", "Name", "State"]
    ours = {int(ln.split()[0]): ln.split()[1] for ln in lines[2:] if ln.strip()}
    theirs = _xl_rows()
    assert ours == {d: r["name"] for d, r in theirs.items()}
    assert ours[guest] == "guest1" and ours[0] == "Domain-0"
    doc = json.loads(ok("/usr/bin/xpsh", "--json", "list"))
    for d in doc["domains"]:
        assert d["memory_kib"] // 1024 == int(theirs[d["id"]]["mem"])
        assert d["vcpus"] >= int(theirs[d["id"]]["vcpus"])


def test_dpkg_removes_it(installed: List[str]) -> None:
    ok("dpkg", "-r", "python3-xenprivcmd")
    assert not os.path.exists("/usr/bin/xpsh")
    assert not os.path.exists(SITE + "xenprivcmd")
    assert "ok installed" not in system("dpkg", "-s", "python3-xenprivcmd").stdout
