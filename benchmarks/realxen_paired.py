"""Runs inside a real dom0: the library's ops of two trees of xenprivcmd, paired in one boot.

``tools/bench-realxen --baseline REV`` starts it after ``realxen_dom0.py``: the
tree at ``--new`` and an export of an earlier commit at ``--base`` each run
the same ops (``xen_version``, ``domain_info(0)``, ``domains()``,
``physinfo()``, ``vcpu_info(0)``, ``sched_params(0)``) in a process of their
own, the two trees alternating round after round, so both see the same boot,
the same guests and the same noise.  Each value is the median over every
batch of the per-call time; ``new / base`` below 1 is faster.  Standard
library only; Python 3.9 (bullseye's dom0).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

#: What one process runs: each op in ``batches`` batches of ``iters`` calls, as JSON on stdout.
CHILD = r"""
import json, sys, time
import xenprivcmd
iters, batches = int(sys.argv[1]), int(sys.argv[2])
h = xenprivcmd.open()
ops = {
    "xen_version": h.xen_version,
    "domain_info": lambda: h.domain_info(0, name=False),
    "domains": lambda: h.domains(names=False),
    "physinfo": h.physinfo,
    "vcpu_info": lambda: h.vcpu_info(0),
    "sched_params": lambda: h.sched_params(0),
}
out = {}
clock = time.perf_counter_ns
for name, fn in ops.items():
    fn()
    rng = range(iters)
    got = []
    for _ in range(batches):
        t0 = clock()
        for _ in rng:
            fn()
        got.append((clock() - t0) / iters)
    out[name] = got
print(json.dumps({"file": xenprivcmd.__file__, "ns": out}))
"""


def run(tree, iters, batches):
    env = dict(os.environ, PYTHONPATH=os.path.abspath(tree))
    # run in the tree: ``python3 -c`` puts the working directory first on sys.path
    res = subprocess.run([sys.executable, "-c", CHILD, str(iters), str(batches)], capture_output=True,
                         universal_newlines=True, env=env, timeout=1200, cwd=os.path.abspath(tree))
    if res.returncode != 0:
        raise RuntimeError(f"{tree}: {res.stderr.strip()[-2000:]}")
    doc = json.loads(res.stdout.strip().splitlines()[-1])
    want = os.path.join(os.path.abspath(tree), "xenprivcmd")
    if not doc["file"].startswith(want):
        raise RuntimeError(f"{tree}: imported {doc['file']}, not the tree's own package")
    return doc["ns"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--new", required=True, help="the tree measured (holds xenprivcmd/)")
    ap.add_argument("--base", required=True, help="the earlier tree it is paired with")
    ap.add_argument("--label", default="", help="what the base is (a commit)")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--iters", type=int, default=1000)
    ap.add_argument("--batches", type=int, default=3)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    samples = {"new": {}, "base": {}}
    for r in range(args.rounds):
        order = ("new", "base") if r % 2 == 0 else ("base", "new")
        for which in order:
            got = run(args.new if which == "new" else args.base, args.iters, args.batches)
            for op, ns in got.items():
                samples[which].setdefault(op, []).extend(ns)
    rows = {}
    for op in samples["new"]:
        new, base = statistics.median(samples["new"][op]), statistics.median(samples["base"][op])
        rows[op] = {"new_ns": new, "base_ns": base, "ratio": new / base}
        print(f"paired {op:14s} new {new / 1000:9.1f} us  base {base / 1000:9.1f} us  new/base {new / base:5.2f}",
              flush=True)
    with open(args.out, "w") as f:
        json.dump({"base": args.label, "rounds": args.rounds, "iters": args.iters, "batches": args.batches,
                   "ops": rows, "samples": samples}, f)


if __name__ == "__main__":
    main()
