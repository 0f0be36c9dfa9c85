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

OPS = ("xen_version", "getdomaininfo", "getdomaininfolist", "physinfo", "vcpu_info", "sched_params")
# The C programs' ops are these, with getvcpuinfo in place of vcpu_info (derived below:
# getdomaininfo + one getvcpuinfo per vcpu of dom0, what the library's vcpu_info issues).
#: vcpus per domain / domains per batch for the batch section (issue: 1, 8, 64 and 256).
BATCH_COUNTS = (1, 8, 64, 256)


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


def bytecodes(fn):
    """Where a call's Python time goes under emulation, where every bytecode and frame costs
    microseconds: [frames, bytecodes] of one call of ``fn`` (``sys.settrace`` with opcode
    events; the benchmark's own lambda not counted)."""
    seen = {"frames": 0, "codes": 0}
    top = fn.__code__ if getattr(fn, "__name__", "") == "<lambda>" else None

    def trace(frame, event, arg):
        if frame.f_code is top:
            return None
        if event == "call":
            seen["frames"] += 1
            frame.f_trace_opcodes = True
        elif event == "opcode":
            seen["codes"] += 1
        return trace

    sys.settrace(trace)
    try:
        fn()
    finally:
        sys.settrace(None)
    return [seen["frames"], seen["codes"]]


def run_c(path, iters, repeats):
    """{op: [per-call ns per batch]} and the header lines of a C program."""
    return run_c_args(path, iters, repeats, [])


def run_c_args(path, iters, repeats, ops):
    res = subprocess.run([path, str(iters), str(repeats)] + list(ops), capture_output=True, universal_newlines=True,
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
        "getdomaininfo": lambda: h.domain_info(0, name=False),
        "getdomaininfolist": lambda: h.domains(names=False),
        "physinfo": h.physinfo,
        "vcpu_info": lambda: h.vcpu_info(0),
        "sched_params": lambda: h.sched_params(0),
    }


def pyref_ops(h):
    """benchmarks/pyref.py: the same hypercalls in the least Python (the Python floor)."""
    from pyref import PyRef

    r = PyRef(h.abi)
    return {
        "xen_version": r.xen_version,
        "getdomaininfo": r.getdomaininfo,
        "getdomaininfolist": r.getdomaininfolist,
        "physinfo": r.physinfo,
        "vcpu_info": r.vcpu_info,
        "sched_params": r.sched_params,
    }, r


def batch_section(h, bindir, iters, repeats):
    """Batched vs single vs libxenctrl's C loop, per vcpu and per domain, at
    BATCH_COUNTS; domains() vs xc_domain_getinfolist at 64 domains.  Every
    domain made here is an empty paused one (create_domain), destroyed after."""
    from xenprivcmd.errors import TryAgain
    from xenprivcmd.ops.domains import retry_while_busy

    made = []
    out = {"vcpus": {}, "domains": {}, "list64": {}, "errors": []}
    xc = os.path.join(bindir, "xc_ops")

    def c_loop(arg, n_iters):
        got, _head = run_c_args(xc, n_iters, repeats, [arg])
        return statistics.median(next(iter(got.values())))

    def timed(fn, n_iters):
        return statistics.median(batches(fn, n_iters, repeats))

    try:
        # 64 domains in all first: the listing against xc_domain_getinfolist
        while len(h.domains(names=False)) < 64:
            made.append(h.create_domain())
        n_list = len(h.domains(names=False))
        out["list64"] = {
            "domains": n_list,
            "xenprivcmd": timed(lambda: h.domains(names=False), max(2, iters // 20)),
            "libxenctrl_c": c_loop("getdomaininfolist", max(2, iters // 20)),
        }
        ones = list(made)
        while len(ones) < max(BATCH_COUNTS):
            try:
                d = h.create_domain()
            except TryAgain as exc:
                # Xen on Arm: EBUSY once its VMID pool is empty (8-bit VMIDs, e.g. QEMU's
                # cortex-a57: 255 domains in all, dom0 and the guests included).  Give
                # back room for the vcpu rows' domains and measure the counts that fit.
                out["errors"].append(f"create_domain() after {len(h.domains(names=False))} domains: {exc}")
                for d in ones[-len(BATCH_COUNTS):]:
                    h.destroy(d)
                    made.remove(d)
                ones = ones[:-len(BATCH_COUNTS)]
                break
            made.append(d)
            ones.append(d)
        for n in BATCH_COUNTS:
            k = max(2, iters // (8 * n))
            ids = ones[:n]
            if len(ids) < n:
                out["errors"].append(f"getdomaininfo x{n}: skipped, only {len(ones)} domains could be made")
            else:
                row = {"batched": timed(lambda ids=ids: h.domain_infos(ids, names=False), k) / n,
                       "single": timed(lambda ids=ids: [h.domain_info(i, name=False) for i in ids], k) / n,
                       "libxenctrl_c": c_loop("infos:" + ",".join(map(str, ids)), k) / n}
                out["domains"][str(n)] = row
            try:
                # EBUSY while a destroyed domain's Arm VMID is not yet given back (an RCU callback)
                d = retry_while_busy(lambda n=n: h.create_domain(max_vcpus=n), 5.0)
            except Exception as exc:  # e.g. more vcpus than an Arm GIC takes
                out["errors"].append(f"create_domain(max_vcpus={n}): {exc}")
                continue
            made.append(d)

            info = h.domain_info(d, name=False)
            h.engine.shapes.clear()

            def batched(info=info):
                # getvcpuinfo of every vcpu in one shaped trap (what vcpu_list does, less the affinities)
                return _vcpus(h, [info])

            got = batched()
            assert len(got) == n, (len(got), n)
            trap = _trap_only(h)
            # the trap alone first: the other ops may grow (and so replace) the buffer it was laid out in
            trap_ns = timed(trap, k) / n if trap else None
            out["vcpus"][str(n)] = {
                "batched": timed(batched, k) / n,
                "trap_only": trap_ns,
                "vcpu_list": timed(lambda info=info: h.vcpu_list([info.domid]), k) / n,
                "single": timed(lambda d=d: h.vcpu_info(d), k) / n,
                "libxenctrl_c": c_loop(f"vcpus:{d}:{n}", k) / n,
                "traps_batched": _traps(h, batched),
            }
    finally:
        for d in made:
            try:
                h.destroy(d)
            except Exception as exc:
                out["errors"].append(f"destroy({d}): {exc}")
    out["multicall"] = h.state.multicall
    return out


def _vcpus(h, infos):
    from xenprivcmd.ops import batch

    rows = batch.vcpus_shaped(h.engine, infos, affinity=False)
    if rows is None:
        raise RuntimeError("vcpu batch fell back to the general path")
    return rows


def _trap_only(h):
    """The newest vcpu trap image issued as it is: the multicall alone, no Python around it."""
    shapes = [s for k, s in h.engine.shapes.items() if k[0] == "vcpus"]
    if len(shapes) != 1 or not h.state.multicall:
        return None
    shape = shapes[0]
    t = h.transport
    buf = t.scratch(len(shape.image))
    if buf.address != shape.base:
        return None
    view, image, n = buf.view, shape.image, shape.n
    results = shape.results

    def go():
        view[:len(image)] = image
        t.hypercall(13, shape.base, n)
        if any(results.unpack_from(view, 0)):
            raise RuntimeError("an entry of the replayed trap failed")

    return go


def _traps(h, fn):
    before = h.transport.calls
    fn()
    return h.transport.calls - before


def libxenctrl_ctypes_ops():
    """The same calls through ctypes on the dom0's libxenctrl (None when absent)."""
    cands = sorted(glob.glob("/usr/lib/*-linux-gnu/libxenctrl.so.*") + glob.glob("/usr/lib/libxenctrl.so.*"))
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
    doms = h.domains(names=False)
    py = {op: fn for op, fn in xenprivcmd_ops(h).items()}
    ref, ref_handle = pyref_ops(h)
    xc, xc_lib = libxenctrl_ctypes_ops()
    for fn in list(py.values()) + list(ref.values()):
        fn()  # warm up (buffers mapped, ABI detected)
    if ref["xen_version"]() != py["xen_version"]() or len(ref["vcpu_info"]()) != len(py["vcpu_info"]()):
        raise SystemExit("realxen_dom0: PYREF and the library disagree on what they read")
    dom0_vcpus = len(h.vcpu_info(0))
    for fn in list((xc or {}).values()):
        fn()

    # Interleave: each round runs every implementation once (C programs as
    # one batch per round too), so drifts of the machine hit all alike.
    samples = {op: {"ioctl_c": [], "libxenctrl_c": [], "libxenctrl_ctypes": [], "xenprivcmd": [], "pyref": []}
               for op in OPS + ("getvcpuinfo",)}
    heads = {}
    py_iters = max(1, args.iters // 4)  # Python is slower; keep rounds short
    for _ in range(args.repeats):
        for impl, prog in (("ioctl_c", "ioctl_floor"), ("libxenctrl_c", "xc_ops")):
            got, head = run_c(os.path.join(args.bin, prog), args.iters, 1)
            heads[impl] = head
            for op, vals in got.items():
                samples[op][impl] += vals
        for op in OPS:
            # library and its Python floor alternate, batch by batch
            samples[op]["xenprivcmd"] += batches(py[op], py_iters, 1)
            samples[op]["pyref"] += batches(ref[op], py_iters, 1)
            if xc and op in xc:
                samples[op]["libxenctrl_ctypes"] += batches(xc[op], py_iters, 1)

    ops = {}
    for op in OPS + ("getvcpuinfo",):
        ops[op] = {impl: statistics.median(v) for impl, v in samples[op].items() if v}
        ops[op].update({f"{impl}_min": min(v) for impl, v in samples[op].items() if v})
    # vcpu_info in C: what the library op issues, getdomaininfo + one getvcpuinfo per vcpu
    for impl in ("ioctl_c", "libxenctrl_c"):
        if impl in ops["getdomaininfo"] and impl in ops["getvcpuinfo"]:
            ops["vcpu_info"][impl] = ops["getdomaininfo"][impl] + dom0_vcpus * ops["getvcpuinfo"][impl]
    del ops["getvcpuinfo"]
    for op in OPS:
        ops[op]["bytecodes"] = {"xenprivcmd": bytecodes(py[op]), "pyref": bytecodes(ref[op])}
    batch = batch_section(h, args.bin, args.iters, max(3, args.repeats // 3))
    ref_handle.close()

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
        "dom0_vcpus": dom0_vcpus,
        "batch": batch,
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
                           for k, v in m.items() if not k.endswith("_min") and k != "bytecodes"),
              "frames/bytecodes:", m["bytecodes"])
    print("batch:", json.dumps(batch))
    print("commands (ms):", json.dumps(commands))
    print("python3 xenprivcmd list, phases (ms):", json.dumps(list_phases))
    return 0


if __name__ == "__main__":
    sys.exit(main())
