"""Create-to-running: ``xpsh create`` against ``xl create`` of the same config, in one dom0 (issue 25).

Runs inside a real dom0 (tools/xenvm boots one)::

    python3 tools/xenvm/xenvm.py run --suite bookworm --guests 1 --timeout 3600 -- \\
        python3 benchmarks/create_dom0.py --rounds 5 --json results/create-bookworm.json

(Under QEMU's TCG a round takes minutes: xenvm's default timeout of 900 s is too short.
First run, bookworm, 2 rounds on a loaded host, medians: xl create 22.9 s, xpsh create
62.5 s (2.73x, MISS), --no-monitor 39.5 s (1.73x), Handle.create 36.9 s (1.61x); noisy.)

Per round, interleaved (so drift hits all alike), each a whole command as an
administrator runs it, timed from its start to its return (the domain then runs: both
unpause it before they return; xl has forked its monitor, xpsh waited for its own to
watch the domain):

* ``xl create FILE`` (the floor: libxl, libxenguest);
* ``xpsh create FILE`` (``python3 -m xenprivcmd create``: Python's start-up included);
* ``xpsh create --no-monitor FILE`` (the build alone);
* ``Handle.create(config)`` in this process (no start-up, no monitor).

After each, the domain is checked running (``xl list``: not paused) and destroyed as
``xpsh destroy`` does (its xenstore nodes removed too), before the next.  The guest is the one
the suite's xl guests boot (``/opt/xenvm/guest``), 128 MiB, one vcpu.  Prints the
medians and each ratio to ``xl create``, PASS when xpsh create is no slower
(target <= 1.0), MISS otherwise; nothing is asserted.  Standard library and xenprivcmd
only (Python 3.9 on bullseye's dom0).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import xenprivcmd  # noqa: E402 - the tree above first
from xenprivcmd.build.config import DomainConfig  # noqa: E402

KERNEL, RAMDISK = "/opt/xenvm/guest/vmlinuz", "/opt/xenvm/guest/initrd.gz"
NAME = "bench-create"
TARGET = 1.0
VARIANTS = ("xl create", "xpsh create", "xpsh create --no-monitor", "Handle.create")


def config_text(memory):
    return (f'name = "{NAME}"\nkernel = "{KERNEL}"\nramdisk = "{RAMDISK}"\nmemory = {memory}\nvcpus = 1\n'
            'extra = "console=hvc0 quiet"\n')


def _run(argv):
    out = subprocess.run(argv, capture_output=True, universal_newlines=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({out.returncode}): {out.stderr.strip()}")
    return out.stdout


def _state(name):
    for line in _run(["xl", "list"]).splitlines()[1:]:
        f = line.split()
        if f and f[0] == name:
            return f[-2]
    return None


def _destroy(xen, name):
    """xpsh destroy's way (xenprivcmd.control.destroy): the domain and its xenstore nodes."""
    from xenprivcmd import control
    from xenprivcmd.errors import NoSuchDomain

    try:
        control.destroy(xen, name)
    except (NoSuchDomain, LookupError):
        pass
    deadline = time.monotonic() + 60
    while _state(name) is not None and time.monotonic() < deadline:
        time.sleep(0.2)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--memory", type=int, default=128, help="MiB (default 128, as the suite's guests)")
    ap.add_argument("--json", default=None, help="write every time here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        cfg = os.path.join(d, "bench.cfg")
        with open(cfg, "w") as f:
            f.write(config_text(args.memory))
        py = [sys.executable, "-m", "xenprivcmd"]
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        os.environ.update(env)
        commands = {"xl create": ["xl", "create", "-q", cfg], "xpsh create": py + ["create", cfg],
                    "xpsh create --no-monitor": py + ["create", "--no-monitor", cfg]}
        times = {v: [] for v in VARIANTS}
        with xenprivcmd.open() as xen:
            _destroy(xen, NAME)
            config = DomainConfig.from_xl(config_text(args.memory), arch=xen.abi.arch)
            for r in range(args.rounds):
                for v in VARIANTS:
                    t0 = time.perf_counter()
                    if v == "Handle.create":
                        xen.create(config)
                    else:
                        _run(commands[v])
                    dt = time.perf_counter() - t0
                    state = _state(NAME)
                    if state is None or "p" in state:
                        raise RuntimeError(f"{v}: {NAME} is not running after it returned (state {state})")
                    times[v].append(dt)
                    _destroy(xen, NAME)
                print(f"round {r + 1}: " + ", ".join(f"{v} {times[v][-1]:.3f} s" for v in VARIANTS), flush=True)
    floor = statistics.median(times["xl create"])
    rows = []
    for v in VARIANTS:
        med = statistics.median(times[v])
        rows.append({"variant": v, "median_s": med, "ratio": med / floor, "times_s": times[v]})
        verdict = "" if v == "xl create" else (" PASS" if med / floor <= TARGET else " MISS")
        print(f"{v:<26} median {med:7.3f} s  {med / floor:5.2f}x xl create{verdict}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rounds": args.rounds, "memory_mib": args.memory, "target": TARGET, "rows": rows}, f,
                      indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
