"""Helpers of the exporter tests: parse its text, run it as a process, GET from it.

Used by tests/test_exporter*.py and, inside each real dom0, by
tests/realxen/test_exporter.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Dict, List, Tuple

from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
Samples = Dict[str, List[Tuple[Dict[str, str], float]]]


def parse(text: bytes) -> Samples:
    """name -> [(labels, value)] of every sample (prometheus_client's parser)."""
    out: Samples = {}
    for fam in text_string_to_metric_families(text.decode()):
        for s in fam.samples:
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    return out


def by_domid(samples: Samples, name: str) -> Dict[int, float]:
    return {int(lab["domid"]): v for lab, v in samples.get(name, [])}


def one(samples: Samples, name: str) -> float:
    got = samples[name]
    assert len(got) == 1, got
    return got[0][1]


def env() -> Dict[str, str]:
    """This environment with the checkout first on PYTHONPATH (the dom0's wheels dir stays on it)."""
    rest = os.environ.get("PYTHONPATH")
    return dict(os.environ, PYTHONPATH=str(ROOT) + (os.pathsep + rest if rest else ""))


def start_exporter(uri: str, *extra: str) -> Tuple["subprocess.Popen[str]", int]:
    """The exporter as a process on a free port of 127.0.0.1; -> (process, port)."""
    p = subprocess.Popen([sys.executable, "-m", "xenprivcmd.exporter", "--uri", uri, "--listen", "127.0.0.1:0", *extra],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env())
    assert p.stderr is not None
    line = p.stderr.readline()
    assert "serving http://127.0.0.1:" in line, line + (p.stderr.read() if p.poll() is not None else "")
    port = int(line.split("http://127.0.0.1:", 1)[1].split("/", 1)[0])
    return p, port


def stop_exporter(p: "subprocess.Popen[str]") -> int:
    p.send_signal(signal.SIGTERM)
    try:
        return p.wait(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()


def get(url: str) -> Tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.headers["Content-Type"], r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read()


