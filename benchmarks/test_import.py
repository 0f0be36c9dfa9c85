"""Group ``import``: ``import xenprivcmd`` and opening a handle, in fresh interpreters.

Each round starts a new ``python`` (same interpreter, same flags, the
checkout on ``PYTHONPATH``, bytecode already cached by a warm-up round) that
times itself with ``perf_counter`` and reports which modules got loaded:

* floor: ``python -c pass`` (interpreter start-up alone);
* import: ``import xenprivcmd``;
* open: ``import xenprivcmd`` + ``open("sim:///default")`` + ``domains()``;
* open+construct: the same with ``construct`` imported first (its own time
  is reported apart), to show what construct costs when something loads it.

The benchmark statistics are wall time per interpreter (start-up included);
``extra_info`` holds the in-process times, which the targets use:
``import xenprivcmd`` < 30 ms and ``construct`` absent from ``sys.modules``
after import, open and listing.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest

ROOT = Path(__file__).resolve().parent.parent
GROUP = "import"

CHILD = r"""
import sys, time, json
t0 = time.perf_counter()
pre = {pre!r}
if pre:
    import construct
t1 = time.perf_counter()
import xenprivcmd
t2 = time.perf_counter()
after_import = "construct" in sys.modules
opened = {open!r}
if opened:
    h = xenprivcmd.open("sim:///default")
    h.domains(names=False)
    h.close()
t3 = time.perf_counter()
print(json.dumps({{"construct_ms": (t1 - t0) * 1e3, "import_ms": (t2 - t1) * 1e3, "open_ms": (t3 - t2) * 1e3,
                  "construct_after_import": after_import, "construct_after_open": "construct" in sys.modules,
                  "modules": len(sys.modules)}}))
"""


def _env() -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _child(code: str) -> Dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", code], env=_env(), cwd="/", check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out) if out.strip() else {}


def _run(benchmark: Any, role: str, code: str, rounds: int) -> List[Dict[str, Any]]:
    _child(code)  # warm-up: writes .pyc files, fills the page cache
    samples: List[Dict[str, Any]] = []

    def once() -> None:
        samples.append(_child(code))

    benchmark.extra_info["role"] = role
    benchmark.pedantic(once, rounds=rounds, iterations=1, warmup_rounds=1)
    samples = samples[1:]  # the pedantic warm-up round
    if samples and samples[0]:
        for key in ("construct_ms", "import_ms", "open_ms"):
            vals = [s[key] for s in samples]
            benchmark.extra_info[key + "_median"] = statistics.median(vals)
            benchmark.extra_info[key + "_min"] = min(vals)
        for key in ("construct_after_import", "construct_after_open"):
            benchmark.extra_info[key] = any(s[key] for s in samples)
        benchmark.extra_info["modules"] = samples[0]["modules"]
    return samples


@pytest.mark.benchmark(group=GROUP)
def test_floor_python_startup(benchmark: Any, import_rounds: int) -> None:
    _run(benchmark, "floor", "pass", import_rounds)


@pytest.mark.benchmark(group=GROUP)
def test_import_xenprivcmd(benchmark: Any, import_rounds: int) -> None:
    samples = _run(benchmark, "import", CHILD.format(pre=False, open=False), import_rounds)
    assert not any(s["construct_after_import"] for s in samples)


@pytest.mark.benchmark(group=GROUP)
def test_open_sim_handle(benchmark: Any, import_rounds: int) -> None:
    _run(benchmark, "open", CHILD.format(pre=False, open=True), import_rounds)


@pytest.mark.benchmark(group=GROUP)
def test_open_sim_handle_construct_loaded(benchmark: Any, import_rounds: int) -> None:
    _run(benchmark, "open+construct", CHILD.format(pre=True, open=True), import_rounds)
