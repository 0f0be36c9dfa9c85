"""C-layout conformance of the committed tables against Debian's libxen-dev.

Downloads libxen-dev for each suite with a private apt state, compiles a C
program against its headers and compares sizeof/offsetof/constants with the
committed tables, then runs ``gen_structs.py --check --headers``.  Network
trouble is a FAILURE, never a skip.  Run: ``pytest -m conformance``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "tools", "conformance", "debian_libxen.py")

pytestmark = pytest.mark.conformance


@pytest.mark.parametrize("suite", ["bullseye", "bookworm", "trixie", "sid"])
def test_libxen_dev_matches_tables(suite: str) -> None:
    p = subprocess.run([sys.executable, SCRIPT, "--suite", suite], capture_output=True,
                       text=True, timeout=600, cwd=ROOT)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-8000:]
    assert "0 problem(s)" in out, out[-8000:]
    # the comparisons really ran: one gcc line per arch checked, each with thousands of checks
    counts = [int(n) for n in re.findall(r"^\s*gcc: (\d+) checks", out, re.M)]
    assert counts and all(n >= 1000 for n in counts), (counts, out[-4000:])
    assert "gen_structs: " in out, out[-4000:]
