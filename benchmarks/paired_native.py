"""The hot ops of this tree against an earlier commit's, natively: machine instructions per call.

    python3 benchmarks/paired_native.py --baseline 19ab255
    python3 benchmarks/paired_native.py --baseline 19ab255 --python python3.11 --python python3.13

Real Xen under QEMU TCG is where speed is judged (``tools/bench-realxen --baseline``),
but there one op's samples spread 2-10x on a shared host and a few per cent are
out of sight.  This counts instead.  Each op runs on a handle over the privcmd
transport (the real one, ``PrivcmdTransport``, with its lanes and prebuilt
requests) whose ioctl is first answered by the simulator, then replays those
answers: one ``memmove`` of the recorded reply per hypercall, the same Python
frame for both trees.  Valgrind (callgrind, ``--dump-before`` at marker calls)
counts the instructions of ``--calls`` calls of each op, and then of the
replaying device alone for as many hypercalls; the difference is the library's
own cost: its Python, the interpreter running it and the C it calls.  With
``PYTHONHASHSEED=0`` and the same interpreter a count is the same on every run,
so a ratio of 1.01 is a real per cent.  Without valgrind: medians of timed
batches (noisy).  ``new / base`` per op, PASS at <= 1.00 ("no op slower").

Both trees run the same driver (this file) and ``benchmarks/bytecodes.py``'s
simulated device; any commit that has ``xenprivcmd.sim`` can be the base.
Standard library only.
"""

from __future__ import annotations

import argparse
import ctypes
import glob
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OPS = ("xen_version", "domain_info", "domains", "physinfo", "vcpu_info", "sched_params")


# -- the measured process --------------------------------------------------------------------

def child(ops: list, calls: int, mode: str) -> None:
    """Runs in the tree under test (first on sys.path): set up, record, replay, mark."""
    sys.path.insert(1, HERE)
    import bytecodes  # noqa: E402 - the simulated device, after the tree's package is first on the path

    h = bytecodes.handle()
    device = (h.transport.ioctl,)
    for _ in range(2):  # the runners built, bound to the simulated device (xen_version's own once the ABI is known)
        for name in ops:
            bytecodes.CALLS[name](h)
    tape: list = []
    memmove, string_at = ctypes.memmove, ctypes.string_at

    def recorder(fd, number, preq, mutate=True):
        rc = device[0](fd, number, preq, mutate)
        at = next((a for a in preq.arg if a >= 1 << 16), 0)  # the request's struct (XENVER_version has none)
        tape.append((at, string_at(at, SIZE[0]) if at else b"", rc))
        return rc

    state: dict = {}

    def replay(fd, number, preq, mutate=True):
        at, reply, rc = state["next"]()
        memmove(at, reply, len(reply))
        return rc

    #: bytes of reply copied back (a listing's records sit past PAYLOAD_OFFSET = 4096)
    SIZE = [1024]
    fns = (recorder, replay)

    def swap(old, new):
        """Every reference to ``old`` the runners hold (closure cells, their globals, an
        object's attribute: the transport's ``ioctl``) made ``new``."""
        import gc

        for ref in gc.get_referrers(old):
            if type(ref).__name__ == "cell":
                ref.cell_contents = new
            elif isinstance(ref, dict) and ref is not state:
                for k, v in list(ref.items()):
                    if v is old:
                        ref[k] = new
            elif hasattr(ref, "__dict__") and not isinstance(ref, type):
                for k, v in list(vars(ref).items()):
                    if v is old:
                        setattr(ref, k, new)

    swap(device[0], fns[0])
    tapes = {}
    for name in ops:
        f = bytecodes.CALLS[name]
        SIZE[0] = 4096 + 1024 if name == "domains" else 1024
        f(h)
        del tape[:]
        tapes[name] = (f(h), list(tape))
    swap(fns[0], fns[1])
    out: dict = {"file": sys.modules["xenprivcmd"].__file__, "hypercalls": {k: len(v[1]) for k, v in tapes.items()}}
    import gc

    gc.collect()
    gc.disable()  # a collection falls in one interval or another by the allocation history: not the op's
    marker = os.getppid
    clock = time.perf_counter_ns
    for name in ops:
        f = bytecodes.CALLS[name]
        want, recorded = tapes[name]
        if not recorded:
            raise SystemExit(f"paired-native: {name} issued no hypercall through the device")
        state["next"] = itertools.cycle(recorded).__next__
        if f(h) != want:
            raise SystemExit(f"paired-native: {name} answers otherwise on the replayed device")
        for _ in range(200):
            f(h)
        if mode == "count":
            marker()
            for _ in range(calls):
                f(h)
            marker()
        else:
            got = []
            for _ in range(7):
                t0 = clock()
                for _ in range(calls):
                    f(h)
                got.append((clock() - t0) / calls)
            out[name] = got
    nothing = lambda h: None  # noqa: E731 - the loop and the call of a lambda: the harness's own
    for _ in range(200):
        nothing(h)
    if mode == "count":
        marker()
        for _ in range(calls):
            nothing(h)
        marker()
    else:
        t0 = clock()
        for _ in range(calls):
            nothing(h)
        out["harness"] = [(clock() - t0) / calls]
    for name in ops:  # the replaying device alone, as many hypercalls as the op's calls issue
        state["next"] = itertools.cycle(tapes[name][1]).__next__
        n = len(tapes[name][1]) * calls
        if mode == "count":
            marker()
            for _ in range(n):
                replay(0, 0, None, True)
            marker()
        else:
            t0 = clock()
            for _ in range(n):
                replay(0, 0, None, True)
            out["device:" + name] = [(clock() - t0) / calls]
    print(json.dumps(out))


# -- the driver -----------------------------------------------------------------------------

def measure(py: str, tree: str, ops: list, calls: int, count: bool) -> dict:
    """{op: library cost per call} of ``tree`` under ``py`` (instructions, or ns)."""
    env = dict(os.environ, PYTHONPATH=tree, PYTHONHASHSEED="0")
    cmd = [py, os.path.abspath(__file__), "--child", ",".join(ops), str(calls), "count" if count else "time"]
    with tempfile.TemporaryDirectory() as d:
        if count:
            cmd = ["valgrind", "--tool=callgrind", "--dump-before=getppid", f"--callgrind-out-file={d}/cg.%p"] + cmd
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=d)
        if res.returncode != 0:
            raise SystemExit(f"paired-native: {tree} under {py}: {res.stderr.strip()[-1500:]}")
        doc = json.loads(res.stdout.strip().splitlines()[-1])
        if not doc["file"].startswith(os.path.abspath(tree)):
            raise SystemExit(f"paired-native: {tree}: imported {doc['file']}, not the tree's own package")
        if not count:
            return {op: statistics.median(doc[op]) - doc["device:" + op][0] - doc["harness"][0] for op in ops}
        dumps = sorted((p for p in glob.glob(d + "/cg.*") if p.rsplit(".", 1)[-1].isdigit() and p.count(".") > 1),
                       key=lambda p: int(p.rsplit(".", 1)[-1]))
        totals = []
        for p in dumps:
            with open(p) as f:
                totals.append(next(int(line.split()[1]) for line in f if line.startswith(("totals:", "summary:"))))
        marks = 4 * len(ops) + 2  # the last dumps are ours: before each start and end marker
        mine = totals[-marks:]
        harness = mine[2 * len(ops) + 1]
        per = {}
        for i, op in enumerate(ops):
            per[op] = (mine[2 * i + 1] - mine[2 * (len(ops) + i) + 3] - harness) / calls
        return per


def export(rev: str, dest: str) -> str:
    archive = subprocess.run(["git", "archive", rev, "xenprivcmd"], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", dest], input=archive, check=True)
    return dest


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2].split(","), int(sys.argv[3]), sys.argv[4])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline", required=True, metavar="REV", help="the earlier commit")
    ap.add_argument("--python", action="append", help="interpreter (repeatable; default this one)")
    ap.add_argument("--op", action="append", choices=OPS, help="op (repeatable; default all)")
    ap.add_argument("--calls", type=int, default=300, help="calls counted per op")
    ap.add_argument("--time", action="store_true", help="timed batches, not valgrind's counts")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    count = not args.time
    if count and not shutil.which("valgrind"):
        print("paired-native: valgrind not found (apt install valgrind), or --time", file=sys.stderr)
        return 2
    ops = args.op or list(OPS)
    rows = []
    with tempfile.TemporaryDirectory() as base:
        export(args.baseline, base)
        for py in args.python or [sys.executable]:
            version = subprocess.run([py, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
                                     capture_output=True, text=True, check=True).stdout.strip()
            new, old = measure(py, ROOT, ops, args.calls, count), measure(py, base, ops, args.calls, count)
            unit = "instructions" if count else "ns"
            for op in ops:
                ratio = new[op] / old[op]
                rows.append({"python": version, "op": op, "new": new[op], "base": old[op], "ratio": ratio,
                             "unit": unit})
                verdict = "PASS" if ratio <= 1.0 else "MISS"
                print(f"{verdict}  [Python {version}] {op:13s} {new[op]:9.0f} / {old[op]:9.0f} {unit} per call"
                      f" (this tree / {args.baseline}) = {ratio:.3f} (target <= 1.00)", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"baseline": args.baseline, "calls": args.calls, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
