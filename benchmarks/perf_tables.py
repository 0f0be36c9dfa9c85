#!/usr/bin/env python3
"""README's Performance table and docs/benchmarks.md's per-suite tables, from real-Xen runs.

    python3 benchmarks/perf_tables.py results      # after tools/bench-realxen --suite S --baseline REV

Reads ``results/realxen-<suite>.json`` (``benchmarks/realxen_dom0.py``: the
ops against PYREF, the batches against libxenctrl) and, where there is one,
``results/realxen-<suite>-paired.json`` (``benchmarks/realxen_paired.py``:
this tree against an earlier commit, interleaved in one process) for each
suite found, and prints markdown; then a row per op of the pairings run alone
(``results/realxen-<suite>-paired-only.json``, ``tools/bench-realxen
--paired-only``).  Bold: the target is met.  Standard library
only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

SUITES = (("bullseye", "Xen 4.14 x86_64"), ("bookworm", "Xen 4.17 x86_64"), ("trixie", "Xen 4.20 x86_64"),
          ("bookworm-arm64", "Xen 4.17 arm64"), ("trixie-arm64", "Xen 4.20 arm64"))
#: (realxen_dom0.py's name, realxen_paired.py's name, the table's)
OPS = (("xen_version", "xen_version", "`xen_version()`"), ("getdomaininfo", "domain_info", "`domain_info(0)`"),
       ("getdomaininfolist", "domains", "`domains()`"), ("physinfo", "physinfo", "`physinfo()`"),
       ("vcpu_info", "vcpu_info", "`vcpu_info(0)`"), ("sched_params", "sched_params", "`sched_params(0)`"))
PYREF_MAX = 1.10
BEFORE_MAX = 1.00
VCPUS64_MAX = 0.25
LIST64_MAX = 0.35


def bold(value: float, ok: bool, digits: int = 2) -> str:
    return f"**{value:.{digits}f}**" if ok else f"{value:.{digits}f}"


def _read(results: str, name: str):
    """The JSON document ``results``/``name``, or None when there is none."""
    path = os.path.join(results, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def load(results: str) -> dict:
    """{suite: (label, the run, the paired run or None)} for the suites with a run."""
    out = {}
    for suite, label in SUITES:
        run = _read(results, f"realxen-{suite}.json")
        if run is not None:
            out[suite] = (label, run, _read(results, f"realxen-{suite}-paired.json"))
    return out


def summary(docs: dict) -> list:
    """README's table: one column per suite."""
    runs = list(docs.values())
    lines = ["| per call (target) | " + " | ".join(label for label, _, _ in runs) + " |",
             "| --- |" + " --- |" * len(runs)]
    for rop, _, name in OPS:
        cells = []
        for _, run, _ in runs:
            m = run["ops"][rop]
            r = m["xenprivcmd"] / m["pyref"]
            cells.append(bold(r, r <= PYREF_MAX))
        lines.append(f"| {name} / PYREF (<= {PYREF_MAX:.2f}) | " + " | ".join(cells) + " |")
    if any(paired for _, _, paired in runs):
        base = next(paired["base"] for _, _, paired in runs if paired)
        for _, pop, name in OPS:
            cells = []
            for _, _, paired in runs:
                r = paired["ops"][pop]["rounds_ratio"] if paired and pop in paired["ops"] else None
                cells.append("-" if r is None else bold(r, r <= BEFORE_MAX, 3))
            lines.append(f"| {name} / {base} (<= {BEFORE_MAX:.2f}; paired rounds) | " + " | ".join(cells) + " |")
    cells_v, cells_l = [], []
    for _, run, _ in runs:
        b = run.get("batch") or {}
        v64 = (b.get("vcpus") or {}).get("64")
        l64 = b.get("list64") or {}
        v = v64["batched"] / v64["libxenctrl_c"] if v64 else None
        w = l64["xenprivcmd"] / l64["libxenctrl_c"] if l64.get("xenprivcmd") else None
        cells_v.append("-" if v is None else bold(v, v <= VCPUS64_MAX))
        cells_l.append("-" if w is None else bold(w, w <= LIST64_MAX))
    lines.append(f"| 64 vcpus batched / `xc_vcpu_getinfo` loop (<= {VCPUS64_MAX:.2f}) | " + " | ".join(cells_v) + " |")
    lines.append(f"| `domains()` at 64 domains / `xc_domain_getinfolist` (<= {LIST64_MAX:.2f}) | "
                 + " | ".join(cells_l) + " |")
    return lines


def per_suite(docs: dict) -> list:
    """docs/benchmarks.md's table of each suite."""
    lines = []
    for suite, (label, run, paired) in docs.items():
        py = (run.get("machine") or {}).get("python", "?")
        lines += [f"{suite} ({label}, Xen {run.get('xen', '?')}, Python {py}):", ""]
        head = "| op | / PYREF: median (fastest batches) | |"
        rule = "| --- | --- | --- |"
        if paired:
            head += f" / {paired['base']}: paired rounds (range) | medians | fastest batches |"
            rule += " --- | --- | --- |"
        lines += [head, rule]
        for rop, pop, name in OPS:
            m = run["ops"][rop]
            r = m["xenprivcmd"] / m["pyref"]
            fast = f" ({m['xenprivcmd_min'] / m['pyref_min']:.2f})" if m.get("pyref_min") else ""
            row = f"| {name} | {r:.2f}{fast} | {'**PASS**' if r <= PYREF_MAX else 'MISS'} |"
            if paired:
                p = paired["ops"][pop]
                rr = p["round_ratios"]
                faster = sum(r < 1 for r in rr)
                row += (f" {bold(p['rounds_ratio'], p['rounds_ratio'] <= BEFORE_MAX, 3)} ({min(rr):.2f}-{max(rr):.2f};"
                        f" faster in {faster} of {len(rr)}) |"
                        f" {p['new_ns'] / 1000:.1f} / {p['base_ns'] / 1000:.1f} us = {p['ratio']:.2f} |"
                        f" {p['fastest_new_ns'] / 1000:.1f} / {p['fastest_base_ns'] / 1000:.1f} us ="
                        f" {p['fastest_ratio']:.2f} |")
            lines.append(row)
        lines.append("")
    return lines


def more_rounds(results: str) -> list:
    """The pairings run alone (``tools/bench-realxen --paired-only``): one row per suite and op."""
    lines = []
    for suite, label in SUITES:
        doc = _read(results, f"realxen-{suite}-paired-only.json")
        if doc is None:
            continue
        if not lines:
            lines = ["| suite | op | / base: paired rounds (range; new faster in) | fastest batches |",
                     "| --- | --- | --- | --- |"]
        for op, p in doc["ops"].items():
            rr = p["round_ratios"]
            faster = sum(r < 1 for r in rr)
            lines.append(f"| {label} | `{op}` vs {doc['base']} | {bold(p['rounds_ratio'], p['rounds_ratio'] <= BEFORE_MAX, 3)}"
                         f" ({min(rr):.2f}-{max(rr):.2f}; {faster} of {len(rr)}) |"
                         f" {p['fastest_new_ns'] / 1000:.1f} / {p['fastest_base_ns'] / 1000:.1f} us ="
                         f" {p['fastest_ratio']:.2f} |")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="?", default="results", help="where tools/bench-realxen wrote (default results)")
    args = ap.parse_args()
    docs = load(args.results)
    if not docs:
        print(f"perf_tables: no realxen-<suite>.json in {args.results}", file=sys.stderr)
        return 1
    more = more_rounds(args.results)
    print("\n".join(summary(docs) + [""] + per_suite(docs) + more))
    return 0


if __name__ == "__main__":
    sys.exit(main())
