"""Cold start of a one-shot ``xpsh list`` without Xen: what the dom0 path costs, natively.

    python3 benchmarks/coldstart_native.py                 # in-process ms, modules loaded
    python3 benchmarks/coldstart_native.py --instructions  # + instruction counts (valgrind)

Runs the very code a dom0's ``xpsh list`` runs -- a real ``PrivcmdTransport``
(its ioctl answered by the simulator, as ``tests/test_fast.py`` does), the ABI
cache (warm, in a private directory), names read from a xenstored socket
(``tests/fakexenstored.py``) -- in a fresh interpreter.  The simulator is
imported first and every ``xenprivcmd`` module is then dropped from
``sys.modules``, so what follows is the dom0 path's own imports and work.

Timings on a shared host are noisy; ``--instructions`` counts instructions
under valgrind (deterministic) for the listing, for ``python3 -c pass``, for
``import ctypes`` (loaded by the simulator before the measured part) and
for pip's console-script wrapper (``import re`` and one ``re.sub``, which
``bin/xpsh`` avoids), and prints the ratio they predict for issue 23's
target (``xpsh list`` <= 1.5x ``python3 -c pass``).  Real figures:
``tools/bench-coldstart`` in a dom0.  Standard library only.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def child(mode: str, argv: list) -> int:
    """The measured interpreter: the simulator first, then a listing on a fresh import of the package."""
    import xenprivcmd
    from xenprivcmd.sim._transport import SimTransport

    sim = SimTransport(xenprivcmd.open("sim:///default").transport.host)
    for name in [m for m in sys.modules if m == "xenprivcmd" or m.startswith("xenprivcmd.")]:
        del sys.modules[name]
    if mode == "stop":
        return 0
    before = set(sys.modules)
    t0 = time.perf_counter()
    import xenprivcmd.transport.privcmd as privcmd

    def open_device(*_args: object, **_kw: object) -> object:
        t = privcmd.PrivcmdTransport(os.open(os.devnull, os.O_RDWR), "/dev/xen/privcmd", None)
        t.ioctl = lambda fd, req, arg, mutate=True: sim.handle(int(arg.op), tuple(int(x) for x in arg.arg))
        t._map = lambda size: privcmd._map_anonymous(size, locked=False)  # no RLIMIT_MEMLOCK needed
        return t

    privcmd.open_privcmd = open_device
    from xenprivcmd.shell.cli import main

    rc = main(argv)
    ms = (time.perf_counter() - t0) * 1e3
    new = sorted(set(sys.modules) - before)
    print(f"coldstart-native: {ms:.2f} ms {len(new)} modules: {' '.join(new)}", file=sys.stderr)
    return rc


def instructions(py: str, args: list, env: dict) -> int:
    out = subprocess.run(["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
                          py] + args, capture_output=True, text=True, env=env, cwd="/")
    for line in out.stderr.splitlines():
        if "I   refs:" in line or "I refs:" in line:
            return int(line.split(":")[1].replace(",", "").strip())
    raise SystemExit(f"coldstart-native: no instruction count from valgrind: {out.stderr[-300:]}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--python", default=shutil.which("python3") or sys.executable)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--instructions", action="store_true", help="count instructions under valgrind")
    ap.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child[0], args.child[1:])
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from fakexenstored import FakeXenstored

    with tempfile.TemporaryDirectory() as tmp, FakeXenstored(tmp) as xs:
        cache = os.path.join(tmp, "cache")
        os.mkdir(cache, 0o700)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env.update(PYTHONPATH=ROOT, PYTHONHASHSEED="0", XENSTORED_PATH=xs.path, XENPRIVCMD_CACHE_DIR=cache)
        me = os.path.abspath(__file__)

        def run(mode: str) -> str:
            out = subprocess.run([args.python, "-S", me, "--child", mode, "list"], capture_output=True,
                                 text=True, env=env, cwd="/")
            if out.returncode != 0:
                raise SystemExit(f"coldstart-native: the listing failed: {out.stderr[-500:]}")
            return out.stderr

        for _ in range(2):
            run("run")  # writes the ABI cache and the .pyc files
        samples, line = [], ""
        for _ in range(args.rounds):
            line = next(ln for ln in run("run").splitlines() if ln.startswith("coldstart-native:"))
            samples.append(float(line.split()[1]))
        print(f"listing after the simulator (in process): median {statistics.median(samples):.2f} ms, "
              f"min {min(samples):.2f} ms of {args.rounds}")
        print("loaded:", line.split(" ", 3)[3])
        if not args.instructions:
            return 0
        if not shutil.which("valgrind"):
            raise SystemExit("coldstart-native: --instructions needs valgrind")
        py = os.path.realpath(args.python)
        floor = instructions(py, ["-c", "pass"], env)
        ctypes_ = instructions(py, ["-c", "import ctypes"], env) - floor
        wrapper = instructions(py, ["-c", "import re; re.sub(r'(-script\\.pyw|\\.exe)?$', '', 'xpsh')"], env) - floor
        listing = (instructions(py, ["-S", me, "--child", "run", "list"], env)
                   - instructions(py, ["-S", me, "--child", "stop"], env))
        m = 1e6
        print(f"instructions: python3 -c pass {floor / m:.1f} M; import ctypes +{ctypes_ / m:.1f} M; "
              f"the listing +{listing / m:.1f} M; pip's console-script wrapper (re) +{wrapper / m:.1f} M")
        print(f"predicted xpsh list / python3 -c pass: {(floor + ctypes_ + listing) / floor:.2f}x "
              f"(with pip's wrapper {(floor + ctypes_ + listing + wrapper) / floor:.2f}x; target 1.5x: "
              f"{0.5 * floor / m:.1f} M beyond the floor)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
