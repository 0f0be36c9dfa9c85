"""Runs inside a real dom0 (``tools/bench-realxen`` starts it through tools/xenvm).

Per op (xen_version, getdomaininfo of dom0, getdomaininfolist of up to 1024
domains, physinfo), all in this one boot, interleaved round by round:

* ``ioctl_c``: the privcmd ioctl on prebuilt requests (benchmarks/c/ioctl_floor.c), the floor;
* ``libxenctrl_c``: the suite's libxenctrl (benchmarks/c/xc_ops.c);
* ``libxenctrl_ctypes``: the same libxenctrl calls from Python through ctypes;
* ``xenprivcmd``: ``Handle.xen_version()``, ``domain_info(0)``, ``domains()``, ``physinfo()``;

then whole commands: ``xl list`` and a Python process listing with
xenprivcmd (start-up included).  Each value is the median over batches of
the per-call time; the JSON keeps every batch.  Standard library only;
Python 3.9 (bullseye's dom0).
"""

import argparse
import ctypes
import glob
import json
import os
import platform
import statistics
import subprocess
import sys
import time

OPS = ("xen_version", "getdomaininfo", "getdomaininfolist", "physinfo")


def batches(fn, iters, repeats):
    out = []
    clock = time.perf_counter_ns
    rng = range(iters)
    for _ in range(repeats):
        t0 = clock()
        for _ in rng:
            fn()
        out.append((clock() - t0) / iters)
    return out


def run_c(path, iters, repeats):
    """{op: [per-call ns per batch]} and the header lines of a C program."""
    res = subprocess.run([path, str(iters), str(repeats)], capture_output=True, universal_newlines=True,
                         timeout=1200)
    if res.returncode != 0:
        raise RuntimeError(f"{path} failed ({res.returncode}): {res.stderr.strip()}")
    ops, head = {}, {}
    for line in res.stdout.splitlines():
        d = json.loads(line)
        if "op" in d:
            ops[d["op"]] = d["per_call_ns"]
        else:
            head.update(d)
    return ops, head


def xenprivcmd_ops(h):
    return {
        "xen_version": h.xen_version,
        "getdomaininfo": lambda: h.domain_info(0),
        "getdomaininfolist": h.domains,
        "physinfo": h.physinfo,
    }


def libxenctrl_ctypes_ops():
    """The same calls through ctypes on the dom0's libxenctrl (None when absent)."""
    cands = sorted(glob.glob("/usr/lib/x86_64-linux-gnu/libxenctrl.so.*") + glob.glob("/usr/lib/libxenctrl.so.*"))
    if not cands:
        return None, "no libxenctrl.so in dom0"
    lib = ctypes.CDLL(cands[0], use_errno=True)
    lib.xc_interface_open.restype = ctypes.c_void_p
    lib.xc_interface_open.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint]
    xch = lib.xc_interface_open(None, None, 0)
    if not xch:
        return None, "xc_interface_open failed"
    xch = ctypes.c_void_p(xch)
    lib.xc_version.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
    lib.xc_domain_getinfolist.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint, ctypes.c_void_p]
    lib.xc_physinfo.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    one = ctypes.create_string_buffer(4096)
    many = ctypes.create_string_buffer(1024 * 512)
    phys = ctypes.create_string_buffer(4096)
    if hasattr(lib, "xc_domain_getinfo_single"):
        lib.xc_domain_getinfo_single.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_void_p]
        f = lib.xc_domain_getinfo_single

        def getinfo():
            if f(xch, 0, one) != 0:
                raise OSError(ctypes.get_errno(), "xc_domain_getinfo_single")
    else:
        lib.xc_domain_getinfo.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint, ctypes.c_void_p]
        f = lib.xc_domain_getinfo

        def getinfo():
            if f(xch, 0, 1, one) != 1:
                raise OSError(ctypes.get_errno(), "xc_domain_getinfo")
    ver, lst, ph = lib.xc_version, lib.xc_domain_getinfolist, lib.xc_physinfo

    def version():
        if ver(xch, 0, None) < 0:
            raise OSError(ctypes.get_errno(), "xc_version")

    def getinfolist():
        if lst(xch, 0, 1024, many) < 0:
            raise OSError(ctypes.get_errno(), "xc_domain_getinfolist")

    def physinfo():
        if ph(xch, phys) != 0:
            raise OSError(ctypes.get_errno(), "xc_physinfo")

    return {"xen_version": version, "getdomaininfo": getinfo, "getdomaininfolist": getinfolist,
            "physinfo": physinfo}, os.path.basename(cands[0])


def whole_command(cmd, repeats, phases=None):
    """Wall ms per run; JSON lines the command prints are appended to ``phases``."""
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=True,
                             universal_newlines=True)
        out.append((time.perf_counter_ns() - t0) / 1e6)
        if phases is not None:
            phases.append(json.loads(res.stdout.strip().splitlines()[-1]))
    return out


# Where the time of a one-shot listing goes (ms): import, open (no hypercall),
# ABI detection, domains() with names from xenstore.
LIST_CHILD = """
import json, time
t0 = time.perf_counter()
import xenprivcmd
t1 = time.perf_counter()
h = xenprivcmd.open()
t2 = time.perf_counter()
h.abi
t3 = time.perf_counter()
n = len(h.domains(names=True))
t4 = time.perf_counter()
print(json.dumps({"import": (t1 - t0) * 1e3, "open": (t2 - t1) * 1e3, "detect": (t3 - t2) * 1e3,
                  "domains_names": (t4 - t3) * 1e3, "domains": n}))
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--suite", default="")
    ap.add_argument("--libxen-dev", default="")
    ap.add_argument("--iters", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--cmd-repeats", type=int, default=20)
    args = ap.parse_args()

    import xenprivcmd

    t0 = time.monotonic()
    h = xenprivcmd.open()
    major, minor = h.xen_version()
    release = h.version().release or f"{major}.{minor}"
    doms = h.domains()
    py = {op: fn for op, fn in xenprivcmd_ops(h).items()}
    xc, xc_lib = libxenctrl_ctypes_ops()
    for fn in list(py.values()) + list((xc or {}).values()):
        fn()  # warm up (buffers mapped, ABI detected)

    # Interleave: each round runs every implementation once (C programs as
    # one batch per round too), so drifts of the machine hit all alike.
    samples = {op: {"ioctl_c": [], "libxenctrl_c": [], "libxenctrl_ctypes": [], "xenprivcmd": []} for op in OPS}
    heads = {}
    py_iters = max(1, args.iters // 4)  # Python is slower; keep rounds short
    for _ in range(args.repeats):
        for impl, prog in (("ioctl_c", "ioctl_floor"), ("libxenctrl_c", "xc_ops")):
            got, head = run_c(os.path.join(args.bin, prog), args.iters, 1)
            heads[impl] = head
            for op, vals in got.items():
                samples[op][impl] += vals
        for op in OPS:
            samples[op]["xenprivcmd"] += batches(py[op], py_iters, 1)
            if xc:
                samples[op]["libxenctrl_ctypes"] += batches(xc[op], py_iters, 1)

    ops = {}
    for op in OPS:
        ops[op] = {impl: statistics.median(v) for impl, v in samples[op].items() if v}
        ops[op].update({f"{impl}_min": min(v) for impl, v in samples[op].items() if v})

    commands = {}
    cmd_samples = {}
    phases = []
    for name, cmd in (("xl list", ["xl", "list"]), ("python3 xenprivcmd list", [sys.executable, "-c", LIST_CHILD]),
                      ("python3 -c pass", [sys.executable, "-c", "pass"])):
        try:
            whole_command(cmd, 1)
            cmd_samples[name] = whole_command(cmd, args.cmd_repeats, phases if "xenprivcmd" in name else None)
            commands[name] = statistics.median(cmd_samples[name])
        except (OSError, subprocess.CalledProcessError) as exc:
            print(f"realxen_dom0: {name}: {exc}", file=sys.stderr)
    list_phases = {k: statistics.median(p[k] for p in phases) for k in (phases[0] if phases else {})}

    doc = {
        "kind": "xenprivcmd-realxen-bench",
        "suite": args.suite,
        "xen": release,
        "libxen_dev": args.libxen_dev,
        "libxenctrl_ctypes": xc_lib,
        "domains": len(doms),
        "buffer_kind": h.buffer_kind,
        "iters": {"c": args.iters, "python": py_iters, "repeats": args.repeats},
        "machine": {"kernel": platform.release(), "python": platform.python_version(),
                    "cpus": os.cpu_count(), "note": "dom0 under QEMU (tools/xenvm)"},
        "c_headers": heads,
        "ops": ops,
        "commands": commands,
        "list_phases_ms": list_phases,
        "samples": {"ops": samples, "commands": cmd_samples},
        "seconds": round(time.monotonic() - t0, 1),
    }
    h.close()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
    for op in OPS:
        m = ops[op]
        floor = m.get("ioctl_c")
        print(op, " ".join(f"{k}={v:.0f}ns" + (f"({v / floor:.2f}x)" if floor else "")
                           for k, v in m.items() if not k.endswith("_min")))
    print("commands (ms):", json.dumps(commands))
    print("python3 xenprivcmd list, phases (ms):", json.dumps(list_phases))
    return 0


if __name__ == "__main__":
    sys.exit(main())
