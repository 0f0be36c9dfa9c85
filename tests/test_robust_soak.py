"""Robustness: never leak.

A fast version of ``tools/soak.py`` (20,000 calls of the hot operations on
the simulator) asserting that resident memory, fds, mappings and hypercall
buffers stay flat after warm-up; plus churn: handles opened and closed,
threads started and finished, buffers grown, without anything accumulating.
The full soak is ``python tools/soak.py`` (1,000,000 calls by default).
"""

from __future__ import annotations

import gc
import importlib.util
import os
import subprocess
import sys
import threading

import pytest

import xenprivcmd
from xenprivcmd.transport import privcmd as _privcmd

from .test_robust_common import FIGURES, count, maps_lines, open_fds, report, rss_kib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOAK_PATH = os.path.join(ROOT, "tools", "soak.py")
FAST_CALLS = int(os.environ.get("ROBUST_SOAK_CALLS", "20000"))


def _soak_module():
    spec = importlib.util.spec_from_file_location("xenprivcmd_soak_tool", SOAK_PATH)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module", autouse=True)
def _summary(request):
    yield
    report(request.config, "leaks (tests/test_robust_soak.py)", prefix="soak/")


def test_fast_soak_is_flat():
    soak = _soak_module()
    result = soak.soak(FAST_CALLS, "sim:///default", warmup=FAST_CALLS // 4)
    problems = soak.verdict(result, rss_tolerance_kib=1024, maps_tolerance=4)
    by = {s["point"]: s for s in result["samples"]}
    start, base, end = by["start"], by["after warm-up"], by["end"]
    FIGURES["soak/fast calls"] = FAST_CALLS
    FIGURES["soak/fast rate calls/s"] = result["rate"]
    for label, s in (("start", start), ("after warm-up", base), ("end", end)):
        FIGURES[f"soak/fast {label}"] = (f"rss {s['rss_kib']} KiB, fds {s['fds']}, maps {s['maps']}, "
                                         f"buffers {s['buffers']} ({s['mapped_bytes']} bytes)")
    count("soak/calls", FAST_CALLS)
    assert not problems, problems + [soak.table(result)]
    assert end["buffers"] == 1 and end["hypercalls"] >= FAST_CALLS


def test_soak_tool_runs_and_reports():
    proc = subprocess.run([sys.executable, SOAK_PATH, "--calls", "4000", "-q"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "verdict: FLAT" in proc.stdout and "VmRSS KiB" in proc.stdout
    bad = subprocess.run([sys.executable, SOAK_PATH, "--calls", "10", "--uri", "nosuch:"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "error:" in bad.stderr


def test_soak_verdict_flags_growth():
    soak = _soak_module()
    sample = {"point": "after warm-up", "calls": 1, "hypercalls": 1, "seconds": 0, "rss_kib": 1000, "fds": 5,
              "maps": 100, "buffers": 1, "mapped_bytes": 4096}
    grown = dict(sample, point="end", rss_kib=9000, fds=6, maps=200, buffers=2, mapped_bytes=8192)
    problems = soak.verdict({"samples": [dict(sample, point="start"), sample, grown]})
    assert len(problems) == 4, problems


def test_handles_opened_and_closed_leak_nothing():
    def churn(n: int) -> None:
        for _ in range(n):
            h = xenprivcmd.open("sim:///default")
            h.domain_info(0)
            h.physinfo()
            h.close()

    churn(50)
    gc.collect()
    fds, maps, rss = open_fds(), maps_lines(), rss_kib()
    live = len(_privcmd._live_transports)
    churn(500)
    gc.collect()
    assert open_fds() <= fds
    assert maps_lines() - maps <= 4
    assert len(_privcmd._live_transports) <= live
    assert rss_kib() - rss <= 2048, f"{rss_kib() - rss} KiB after 500 handles"
    count("soak/handles opened and closed", 550)


def test_threads_and_grown_buffers_leak_nothing():
    h = xenprivcmd.open("sim:///?domains=2000")
    h.abi  # noqa: B018

    def work() -> None:
        h.domains()  # 2000 domains: a grown, 2-chunk buffer
        h.transport.scratch(1 << 20)  # and once more, to a MiB

    def rounds(n: int) -> None:
        for _ in range(n):
            ts = [threading.Thread(target=work) for _ in range(8)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()

    rounds(3)
    gc.collect()
    maps, rss = maps_lines(), rss_kib()
    rounds(30)
    gc.collect()
    assert h.transport.stats()["buffers"] <= 1, h.transport.stats()
    assert maps_lines() - maps <= 4
    assert rss_kib() - rss <= 4096, f"{rss_kib() - rss} KiB after 240 threads with 1 MiB buffers"
    h.close()
    count("soak/threads with grown buffers", 33 * 8)
