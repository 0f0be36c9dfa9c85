"""Shared fixtures of the xenprivcmd benchmarks, and the PASS/MISS summary.

Run with ``python -m pytest benchmarks --benchmark-only`` (see README.md).
The default test run (``testpaths = tests``) never collects this directory.

Every benchmark records in ``extra_info`` what it is (``role``: ``floor``,
``library``, ``sim``, ``construct``, ...) so that :mod:`report` can compute
each group's ratios against the floor measured in the same run; the summary
printed at the end of the session is that same computation.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:  # benchmarks run against the checkout, installed or not
    sys.path.insert(0, str(ROOT))


def _load_report() -> Any:
    spec = importlib.util.spec_from_file_location("xenprivcmd_bench_report", HERE / "report.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


report = _load_report()


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("xenprivcmd benchmarks")
    g.addoption("--bench-sizes", default=os.environ.get("XENPRIVCMD_BENCH_SIZES", "1,100,1000,max"),
                help="domain counts of the list group (comma-separated; 'max' is a full host, "
                     "32752 domains: domids stop at 0x7FEF; default 1,100,1000,max)")
    g.addoption("--bench-import-rounds", type=int, default=int(os.environ.get("XENPRIVCMD_BENCH_IMPORT_ROUNDS", "40")),
                help="fresh interpreters started per import benchmark (default 40)")
    g.addoption("--bench-summary-json", default=None,
                help="also write the PASS/MISS summary rows to this JSON file")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "n_domains" in metafunc.fixturenames:
        from xenprivcmd.sim import MAX_DOMAINS

        sizes = []
        for s in str(metafunc.config.getoption("--bench-sizes")).split(","):
            s = s.strip()
            if s:
                sizes.append(MAX_DOMAINS if s == "max" else min(int(s), MAX_DOMAINS))
        metafunc.parametrize("n_domains", sizes, ids=[f"N{n}" for n in sizes], scope="module")


@pytest.fixture(scope="session")
def bench_xen() -> str:
    """The simulated release the list benchmarks run on (default: the newest)."""
    return os.environ.get("XENPRIVCMD_BENCH_XEN", "")


@pytest.fixture(scope="session")
def import_rounds(request: pytest.FixtureRequest) -> int:
    return int(request.config.getoption("--bench-import-rounds"))


def _session_benchmarks(config: pytest.Config) -> List[Dict[str, Any]]:
    bs = getattr(config, "_benchmarksession", None)
    if bs is None:
        return []
    out = []
    for bench in bs.benchmarks:
        if bench is None or not getattr(bench, "stats", None):
            continue
        try:
            out.append(bench.as_dict(include_data=False))
        except Exception:  # a benchmark that errored has no stats
            continue
    return out


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    benches = _session_benchmarks(config)
    if not benches:
        return
    rows = report.analyse(benches)
    if not rows:
        return
    tr = terminalreporter
    tr.section("xenprivcmd benchmark targets (ratios against floors measured in this run)")
    for line in report.summary_lines(rows):
        tr.write_line(line)
    path = config.getoption("--bench-summary-json")
    if path:
        report.write_json(path, {"kind": "xenprivcmd-bench-summary", "machine": report.machine(), "rows": rows})
        tr.write_line(f"summary written to {path}")


@pytest.fixture
def sim_handle_factory() -> Iterator[Any]:
    """Opens sim handles; closes them at the end of the test."""
    import xenprivcmd

    opened: List[Any] = []

    def make(uri: str) -> Any:
        h = xenprivcmd.open(uri)
        opened.append(h)
        return h

    yield make
    for h in opened:
        h.close()
