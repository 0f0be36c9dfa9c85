#!/usr/bin/env python3
"""Bounded soak of the hot operations: does anything grow?

    python tools/soak.py                         # 1,000,000 calls against sim:///default
    python tools/soak.py --calls 200000 --uri xen:///   # shorter, on a real Xen dom0 (as root)

Issues ``--calls`` calls of the hot operations in turn -- ``domains()``,
``domain_info()``, ``xen_version()``, ``physinfo()`` -- on one handle, and
samples at start, after warm-up, in the middle and at the end:

* resident memory (``VmRSS`` of ``/proc/self/status``),
* open file descriptors (``/proc/self/fd``),
* mappings (``/proc/self/maps`` lines) and the transport's hypercall buffers
  (``transport.stats()``: live buffers and their bytes).

It prints a table and exits 1 when, between the end of the warm-up and the
end, resident memory grew by more than ``--rss-tolerance`` KiB, or fds,
buffers or mapped buffer bytes grew at all, or mappings by more than
``--maps-tolerance`` lines (the Python allocator maps and unmaps arenas on
its own).  ``--json`` prints the figures as one JSON document instead.
Exit status 2: the soak could not run (no such URI, not a dom0, an error).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import xenprivcmd  # noqa: E402

DEFAULT_CALLS = 1_000_000
DEFAULT_URI = "sim:///default"
HOT_OPS = ("domains", "domain_info", "xen_version", "physinfo")


def rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def maps_lines() -> int:
    with open("/proc/self/maps", encoding="ascii", errors="replace") as f:
        return sum(1 for _ in f)


def sample(h: Any, label: str, done: int, elapsed: float) -> Dict[str, Any]:
    gc.collect()
    st = h.transport.stats()
    return {
        "point": label, "calls": done, "hypercalls": int(st["calls"]), "seconds": round(elapsed, 3),
        "rss_kib": rss_kib(), "fds": open_fds(), "maps": maps_lines(),
        "buffers": int(st["buffers"]), "mapped_bytes": int(st["mapped_bytes"]),
    }


def _ops(h: Any, domid: int) -> List[Callable[[], Any]]:
    return [lambda: h.domains(names=False), lambda: h.domain_info(domid, name=False), h.xen_version, h.physinfo]


def soak(calls: int = DEFAULT_CALLS, uri: str = DEFAULT_URI, warmup: Optional[int] = None,
         progress: Optional[Callable[[Dict[str, Any]], None]] = None) -> Dict[str, Any]:
    """Run the soak; return ``{"samples": [...], "rate": calls/s, ...}`` (no verdict)."""
    if calls < 4:
        raise ValueError("--calls must be at least 4")
    if warmup is None:
        warmup = min(max(calls // 10, 4), 50_000)
    warmup = min(warmup, calls // 2)
    h = xenprivcmd.open(None if uri in ("", "xen:///") else uri)
    try:
        h.abi  # noqa: B018 - detection is not part of the soak
        domid = h.domains()[0].domid
        ops = _ops(h, domid)
        n_ops = len(ops)
        samples = [sample(h, "start", 0, 0.0)]
        marks = sorted({warmup: "after warm-up", calls // 2: "middle"}.items())
        start = time.perf_counter()
        done = 0
        for mark, label in marks + [(calls, "end")]:
            # the hot loop: no bookkeeping but the counter
            i = done
            while i < mark:
                ops[i % n_ops]()
                i += 1
            done = mark
            s = sample(h, label, done, time.perf_counter() - start)
            samples.append(s)
            if progress is not None:
                progress(s)
        elapsed = time.perf_counter() - start
        return {
            "uri": uri, "transport": h.transport.describe(), "release": h.abi.release, "calls": calls,
            "warmup": warmup, "ops": list(HOT_OPS), "seconds": round(elapsed, 3),
            "rate": round(calls / elapsed if elapsed else 0.0, 1), "samples": samples,
        }
    finally:
        h.close()


def verdict(result: Dict[str, Any], rss_tolerance_kib: int = 4096, maps_tolerance: int = 8) -> List[str]:
    """What grew beyond tolerance between the end of the warm-up and the end (empty: flat)."""
    by = {s["point"]: s for s in result["samples"]}
    base, end = by.get("after warm-up", by["start"]), by["end"]
    problems = []
    if end["rss_kib"] - base["rss_kib"] > rss_tolerance_kib:
        problems.append(f"resident memory grew by {end['rss_kib'] - base['rss_kib']} KiB "
                        f"(tolerance {rss_tolerance_kib} KiB)")
    if end["fds"] > base["fds"]:
        problems.append(f"open fds grew from {base['fds']} to {end['fds']}")
    if end["buffers"] > base["buffers"] or end["mapped_bytes"] > base["mapped_bytes"]:
        problems.append(f"hypercall buffers grew from {base['buffers']} ({base['mapped_bytes']} bytes) "
                        f"to {end['buffers']} ({end['mapped_bytes']} bytes)")
    if end["maps"] - base["maps"] > maps_tolerance:
        problems.append(f"/proc/self/maps grew by {end['maps'] - base['maps']} lines (tolerance {maps_tolerance})")
    return problems


def table(result: Dict[str, Any]) -> str:
    cols = [("point", "point", 14), ("calls", "calls", 10), ("hypercalls", "hypercalls", 10),
            ("seconds", "seconds", 8), ("rss_kib", "VmRSS KiB", 10), ("fds", "fds", 4), ("maps", "maps", 5),
            ("buffers", "buffers", 7), ("mapped_bytes", "buf bytes", 10)]
    head = "  ".join(f"{title:>{w}}" if k != "point" else f"{title:<{w}}" for k, title, w in cols)
    lines = [head, "-" * len(head)]
    for s in result["samples"]:
        lines.append("  ".join(f"{s[k]!s:>{w}}" if k != "point" else f"{s[k]:<{w}}" for k, _t, w in cols))
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="soak.py", description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--calls", type=int, default=DEFAULT_CALLS, help=f"calls of the hot ops (default {DEFAULT_CALLS:,})")
    ap.add_argument("--uri", default=DEFAULT_URI, help=f"hypervisor URI (default {DEFAULT_URI}; xen:/// for this dom0)")
    ap.add_argument("--warmup", type=int, default=None, help="calls before the baseline (default 10%%, at most 50,000)")
    ap.add_argument("--rss-tolerance", type=int, default=4096, metavar="KIB",
                    help="resident memory growth allowed after warm-up (default 4096 KiB)")
    ap.add_argument("--maps-tolerance", type=int, default=8, metavar="LINES",
                    help="/proc/self/maps growth allowed after warm-up (default 8 lines)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    args = ap.parse_args(argv)

    def progress(s: Dict[str, Any]) -> None:
        if not args.quiet and not args.json:
            print(f"  {s['point']}: {s['calls']:,} calls in {s['seconds']:.1f} s", file=sys.stderr, flush=True)

    try:
        result = soak(args.calls, args.uri, args.warmup, progress)
    except (xenprivcmd.XenprivcmdError, OSError, ValueError) as exc:
        print(f"soak: error: {exc}", file=sys.stderr)
        return 2
    problems = verdict(result, args.rss_tolerance, args.maps_tolerance)
    result["problems"] = problems
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(f"soak: {result['calls']:,} calls of {', '.join(HOT_OPS)} on {result['uri']} "
              f"({result['transport']}, Xen {result['release']}): {result['seconds']:.1f} s, "
              f"{result['rate']:,.0f} calls/s")
        print(table(result))
        print("verdict: " + ("FLAT" if not problems else "GREW: " + "; ".join(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
