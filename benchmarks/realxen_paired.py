"""Runs inside a real dom0: the library's ops of two trees of xenprivcmd, paired in one boot.

``tools/bench-realxen --baseline REV`` starts it after ``realxen_dom0.py``: the
tree at ``--new`` and an export of an earlier commit at ``--base`` run the
same ops (``xen_version``, ``domain_info(0)``, ``domains()``, ``physinfo()``,
``vcpu_info(0)``, ``sched_params(0)``) in one process, each tree's package
imported in turn under its own name and opened on its own handle (which tree
first alternates by round), their batches interleaved (base, new, new, base,
...).  Each round is one such process.  Under TCG on a shared host one op's
batches spread 2-10x, and a process's placement in memory moves all its
batches together, by up to 2x on arm64: two processes, one per tree, compare
their placements as much as their code.  Interleaved in one process, both
trees see the same placement, the same guests and the same moment.

Per op, ``new / base`` (below 1 is faster) by three figures:

* ``rounds`` (the verdict, PASS at <= 1.00: "no op slower"): the median over
  the rounds of new's fastest batch / base's fastest batch in that round
  (with their range and how many of them new was faster in);
* ``median``: the medians over every batch;
* ``fastest``: the means of each side's fastest sixth of the batches.

Standard library only; Python 3.9 (bullseye's dom0).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

OPS = ("xen_version", "domain_info", "domains", "physinfo", "vcpu_info", "sched_params")

#: One round: both trees' packages, one after the other, then their batches interleaved; JSON on stdout.
CHILD = r"""
import json, sys, time
iters, batches = int(sys.argv[1]), int(sys.argv[2])
trees = {"new": sys.argv[3], "base": sys.argv[4]}
uri = sys.argv[5] or None
wanted = sys.argv[7].split(",")
if sys.argv[6] == "base":  # which tree is imported (and its objects made) first alternates by round
    trees = {"base": trees["base"], "new": trees["new"]}
keep, ops, files = [], {}, {}
for label, tree in trees.items():
    for name in [m for m in sys.modules if m == "xenprivcmd" or m.startswith("xenprivcmd.")]:
        keep.append(sys.modules.pop(name))  # the other tree's modules stay alive, out of the way
    sys.path.insert(0, tree)
    import xenprivcmd
    files[label] = xenprivcmd.__file__
    h = xenprivcmd.open(uri)
    keep.append(h)
    fns = {
        "xen_version": h.xen_version,
        "domain_info": lambda h=h: h.domain_info(0, name=False),
        "domains": lambda h=h: h.domains(names=False),
        "physinfo": h.physinfo,
        "vcpu_info": lambda h=h: h.vcpu_info(0),
        "sched_params": lambda h=h: h.sched_params(0),
    }
    fns = {k: fns[k] for k in wanted}
    for fn in fns.values():  # everything an op imports or builds on first use, while its tree is first
        fn()
        fn()
    ops[label] = fns
    sys.path.remove(tree)
    del xenprivcmd
out = {"new": {}, "base": {}}
clock = time.perf_counter_ns
rng = range(iters)
for op in ops["new"]:
    for b in range(batches):
        for label in (("base", "new") if b % 2 == 0 else ("new", "base")):  # base, new, new, base, ...
            fn = ops[label][op]
            t0 = clock()
            for _ in rng:
                fn()
            out[label].setdefault(op, []).append((clock() - t0) / iters)
print(json.dumps({"files": files, "ns": out}))
"""


def run(new, base, iters, batches, uri="", first="new", ops=OPS):
    """One round: {"new": {op: [ns per call, a batch each]}, "base": ...}; ``first``: the tree
    imported first."""
    trees = [os.path.abspath(new), os.path.abspath(base)]
    argv = [sys.executable, "-c", CHILD, str(iters), str(batches)] + trees + [uri, first, ",".join(ops)]
    res = subprocess.run(argv, capture_output=True, universal_newlines=True, timeout=1200, cwd="/")
    if res.returncode != 0:
        raise RuntimeError(f"paired round: {res.stderr.strip()[-2000:]}")
    doc = json.loads(res.stdout.strip().splitlines()[-1])
    for label, tree in zip(("new", "base"), trees):
        if not doc["files"][label].startswith(os.path.join(tree, "xenprivcmd")):
            raise RuntimeError(f"{tree}: imported {doc['files'][label]}, not the tree's own package")
    return doc["ns"]


def summary(new_ns, base_ns, batches):
    """The three figures of one op (see the module doc)."""
    few = max(1, len(new_ns) // 6)
    fast_n, fast_b = sum(sorted(new_ns)[:few]) / few, sum(sorted(base_ns)[:few]) / few
    rounds = [min(new_ns[i:i + batches]) / min(base_ns[i:i + batches]) for i in range(0, len(new_ns), batches)]
    new, base = statistics.median(new_ns), statistics.median(base_ns)
    return {"rounds_ratio": statistics.median(rounds), "round_ratios": rounds,
            "rounds_faster": sum(r < 1 for r in rounds),
            "new_ns": new, "base_ns": base, "ratio": new / base,
            "fastest_new_ns": fast_n, "fastest_base_ns": fast_b, "fastest_ratio": fast_n / fast_b}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--new", required=True, help="the tree measured (holds xenprivcmd/)")
    ap.add_argument("--base", required=True, help="the earlier tree it is paired with")
    ap.add_argument("--label", default="", help="what the base is (a commit)")
    ap.add_argument("--rounds", type=int, default=12, help="processes, each running both trees (default 12)")
    ap.add_argument("--iters", type=int, default=1000, help="calls per batch")
    ap.add_argument("--batches", type=int, default=4, help="batches per op, tree and round (default 4)")
    ap.add_argument("--op", action="append", choices=OPS, help="an op to run (repeatable; default all)")
    ap.add_argument("--uri", default="", help="what both trees open (default: the local privcmd device)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    samples = {"new": {}, "base": {}}
    for r in range(args.rounds):
        got = run(args.new, args.base, args.iters, args.batches, args.uri, "new" if r % 2 == 0 else "base",
                  args.op or OPS)
        for which in samples:
            for op, ns in got[which].items():
                samples[which].setdefault(op, []).extend(ns)
    rows = {}
    for op in samples["new"]:
        r = rows[op] = summary(samples["new"][op], samples["base"][op], args.batches)
        print(f"{'PASS' if r['rounds_ratio'] <= 1.0 else 'MISS'}  paired {op:13s} new/base {r['rounds_ratio']:4.2f}"
              f" (median of {args.rounds} rounds, {min(r['round_ratios']):.2f}-{max(r['round_ratios']):.2f},"
              f" new faster in {r['rounds_faster']});"
              f" medians {r['new_ns'] / 1000:.1f} / {r['base_ns'] / 1000:.1f} us = {r['ratio']:4.2f};"
              f" fastest {r['fastest_new_ns'] / 1000:.1f} / {r['fastest_base_ns'] / 1000:.1f} us ="
              f" {r['fastest_ratio']:4.2f}  (target <= 1.00)", flush=True)
    with open(args.out, "w") as f:
        json.dump({"base": args.label, "rounds": args.rounds, "iters": args.iters, "batches": args.batches,
                   "interleaved": True, "ops": rows, "samples": samples}, f)


if __name__ == "__main__":
    main()
