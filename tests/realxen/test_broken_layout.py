"""A deliberately broken layout makes the real-Xen tests fail."""

from __future__ import annotations

import subprocess
import sys

TARGET = "tests/realxen/test_realxen.py::test_domains_match_xl_list"


def run(*extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra, TARGET],
        capture_output=True, text=True, timeout=600,
    )


def test_the_listing_test_passes_with_the_real_layouts(guest):
    out = run()
    assert out.returncode == 0, out.stdout[-2000:]


def test_the_listing_test_fails_with_tot_pages_and_max_pages_swapped(guest):
    out = run("-p", "tests.realxen.break_layout")
    assert out.returncode == 1, out.stdout[-2000:]
    assert "memory_kib" in out.stdout and "1 failed" in out.stdout
