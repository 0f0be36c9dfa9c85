"""The real-Xen pairing's own logic (``benchmarks/realxen_paired.py``, ``benchmarks/perf_tables.py``),
run on the simulator: two trees in one process, each its own package; the verdict's arithmetic."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import perf_tables  # noqa: E402 - benchmarks/ on the path just above
import realxen_paired  # noqa: E402


def _export(dest: str) -> str:
    """This checkout's package copied into ``dest``: a second tree, as ``git archive`` gives one."""
    shutil.copytree(os.path.join(ROOT, "xenprivcmd"), os.path.join(dest, "xenprivcmd"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def test_the_verdict_is_the_median_of_the_rounds_fastest_batches():
    new = [10, 12, 11, 13, 30, 31, 9, 40]  # rounds of 2 batches: fastest 10, 11, 30, 9
    base = [11, 10, 12, 12, 20, 40, 10, 10]  # fastest 10, 12, 20, 10
    got = realxen_paired.summary(new, base, 2)
    assert got["round_ratios"] == [1.0, 11 / 12, 1.5, 0.9]
    assert got["rounds_ratio"] == pytest.approx((11 / 12 + 1.0) / 2)
    assert got["rounds_faster"] == 2
    assert got["ratio"] == pytest.approx(12.5 / 11.5)


def test_both_trees_run_in_one_process_each_its_own_package(tmp_path):
    base = _export(str(tmp_path / "base"))
    out = tmp_path / "paired.json"
    res = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "realxen_paired.py"), "--new", ROOT,
                          "--base", base, "--uri", "sim:///default", "--rounds", "2", "--iters", "20",
                          "--batches", "2", "--op", "domain_info", "--op", "domains", "--out", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    doc = json.loads(out.read_text())
    assert set(doc["ops"]) == {"domain_info", "domains"}
    for op in doc["ops"]:
        assert len(doc["samples"]["new"][op]) == len(doc["samples"]["base"][op]) == 4
        assert len(doc["ops"][op]["round_ratios"]) == 2
    assert [line.split()[2] for line in res.stdout.splitlines()] == ["domain_info", "domains"]
    # a tree whose package is not its own is refused
    with pytest.raises(RuntimeError, match="not the tree's own package"):
        realxen_paired.run(ROOT, str(tmp_path), 1, 1, "sim:///default", "new", ("domains",))


def test_the_tables_mark_what_meets_its_target(tmp_path):
    run = {"xen": "4.17.7", "machine": {"python": "3.11.2"},
           "ops": {rop: {"xenprivcmd": 11.2, "pyref": 10.0} for rop, _, _ in perf_tables.OPS},
           "batch": {"vcpus": {"64": {"batched": 2.0, "libxenctrl_c": 10.0}},
                     "list64": {"xenprivcmd": 5.0, "libxenctrl_c": 10.0}}}
    run["ops"]["getdomaininfo"]["xenprivcmd"] = 10.5
    paired = {"base": "abc1234", "ops": {pop: realxen_paired.summary([9.0, 9.0], [10.0, 10.0], 1)
                                         for _, pop, _ in perf_tables.OPS}}
    paired["ops"]["domains"] = realxen_paired.summary([11.0, 10.1], [10.0, 10.0], 1)
    (tmp_path / "realxen-bookworm.json").write_text(json.dumps(run))
    (tmp_path / "realxen-bookworm-paired.json").write_text(json.dumps(paired))
    lines = perf_tables.summary(perf_tables.load(str(tmp_path)))
    row = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        row[cells[0]] = cells[1]
    assert row["`domain_info(0)` / PYREF (<= 1.10)"] == "**1.05**"
    assert row["`xen_version()` / PYREF (<= 1.10)"] == "1.12"
    assert row["`domains()` / abc1234 (<= 1.00; paired rounds)"] == "1.055"
    assert row["`physinfo()` / abc1234 (<= 1.00; paired rounds)"] == "**0.900**"
    assert row["64 vcpus batched / `xc_vcpu_getinfo` loop (<= 0.25)"] == "**0.20**"
    assert row["`domains()` at 64 domains / `xc_domain_getinfolist` (<= 0.35)"] == "0.50"
    suite = perf_tables.per_suite(perf_tables.load(str(tmp_path)))
    assert suite[0] == "bookworm (Xen 4.17 x86_64, Xen 4.17.7, Python 3.11.2):"
    domains = next(line for line in suite if line.startswith("| `domains()` |"))
    assert "| 1.12 | MISS | 1.055 (1.01-1.10; faster in 0 of 2) |" in domains
    info = next(line for line in suite if line.startswith("| `domain_info(0)` |"))
    assert "| 1.05 | **PASS** | **0.900** (0.90-0.90; faster in 2 of 2) |" in info
