"""Cold start of one-shot commands, inside a real dom0 (``tools/bench-coldstart`` boots it).

1. Installs xenprivcmd on the dom0's own root file system the way a user
   does: the dom0's Python runs pip on the wheel (``--wheel``), so the
   package lands in ``/usr/local/lib/python3.X/dist-packages``, byte-compiled
   by pip, with the package's ``xpsh`` script (``bin/xpsh``, its shebang set
   by pip) in ``/usr/local/bin``.  (If pip cannot run there, the tree is
   copied, ``compileall``-ed and given the same script; the JSON says which.)
   Nothing is read over the 9p share.
2. Times whole processes, interleaved round by round, all in this boot, with
   an environment without PYTHONPATH:

   * ``python3 -c pass``: the floor; ``xl list``: Xen's own tool;
     ``python3 -m this``: what ``-m`` alone adds (runpy and its imports);
   * ``python3 -c 'import xenprivcmd'``;
   * ``python3 -m xenprivcmd list`` and ``xpsh list`` with the per-boot ABI
     cache warm, and cold (the cache file removed before each run: what the
     first run after a boot finds);
   * ``xpsh --json list`` (warm), for monitoring scripts.

3. Prints each median as a ratio to ``python3 -c pass`` (and to ``xl list``)
   with PASS/MISS against the issue's targets; for every miss,
   ``python3 -X importtime`` (the modules that cost most, and what is loaded
   beyond the floor) and a cProfile of the command.

Standard library only; Python 3.9+.
"""

import argparse
import glob
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

# (name, target ratio to `python3 -c pass` or None for information only)
TARGETS = {
    "import xenprivcmd": 1.15,
    "python3 -m xenprivcmd list (warm cache)": 1.5,
    "xpsh list (warm cache)": 1.5,
    "python3 -m xenprivcmd list (cold cache)": 2.0,
    "xpsh list (cold cache)": 2.0,
}


PY = os.path.realpath(shutil.which("python3") or sys.executable)


def log(msg):
    print("coldstart: " + msg, file=sys.stderr, flush=True)


def clean_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.pop("XENPRIVCMD_CACHE_DIR", None)
    return env


def dist_packages(py):
    out = subprocess.run([py, "-c", "import sysconfig, sys; print(sysconfig.get_path('purelib', "
                          "'posix_local' if 'posix_local' in sysconfig.get_scheme_names() else "
                          "sysconfig.get_default_scheme()))"],
                         capture_output=True, universal_newlines=True, env=clean_env(), check=True)
    return out.stdout.strip()


def install(py, wheel, src):
    """pip install the wheel for the system python; fallback: copy + compileall."""
    env = dict(os.environ)  # pip itself comes from the share's wheel dir (PYTHONPATH)
    cmd = [py, "-m", "pip", "install", "--no-deps", "--no-index", "--no-cache-dir", "--force-reinstall",
           "--disable-pip-version-check", "--root-user-action=ignore", "--break-system-packages", wheel]
    res = subprocess.run(cmd, capture_output=True, universal_newlines=True, env=env)
    if res.returncode == 0:
        ver = subprocess.run([py, "-m", "pip", "--version"], capture_output=True, universal_newlines=True,
                             env=env).stdout.split()[1]
        method = "pip %s install (byte-compiled by pip)" % ver
    else:
        log("pip install failed (%d): %s; copying + compileall instead" % (res.returncode, res.stderr.strip()[-400:]))
        dest = dist_packages(py)
        os.makedirs(dest, exist_ok=True)
        shutil.rmtree(os.path.join(dest, "xenprivcmd"), ignore_errors=True)
        shutil.copytree(os.path.join(src, "xenprivcmd"), os.path.join(dest, "xenprivcmd"),
                        ignore=shutil.ignore_patterns("__pycache__"))
        subprocess.run([py, "-m", "compileall", "-q", os.path.join(dest, "xenprivcmd")], check=True, env=clean_env())
        with open(os.path.join(src, "bin", "xpsh")) as f:  # the script pip installs (setup.cfg's scripts)
            body = f.read().split("\n", 1)[1]
        with open("/usr/local/bin/xpsh", "w") as f:
            f.write("#!%s\n%s" % (py, body))
        os.chmod("/usr/local/bin/xpsh", 0o755)
        method = "copied + compileall (pip unavailable)"
    where = subprocess.run([py, "-c", "import xenprivcmd; print(xenprivcmd.__file__)"], capture_output=True,
                           universal_newlines=True, env=clean_env(), cwd="/", check=True).stdout.strip()
    if where.startswith("/host"):
        raise SystemExit("coldstart: the package resolves to the share (%s), not the dom0's disk" % where)
    xpsh = shutil.which("xpsh", path="/usr/local/bin:/usr/bin")
    if not xpsh:
        raise SystemExit("coldstart: no xpsh console script after the install")
    pycs = glob.glob(os.path.join(os.path.dirname(where), "**", "__pycache__", "*.pyc"), recursive=True)
    return {"method": method, "package": os.path.dirname(where), "xpsh": xpsh, "pyc_files": len(pycs)}


def cache_files():
    return glob.glob("/run/xenprivcmd/abi-*")


def clear_cache():
    for p in cache_files():
        os.unlink(p)


def run_once(cmd, env, before=None):
    if before is not None:
        before()
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, env=env, cwd="/")
    dt = (time.perf_counter() - t0) * 1e3
    if res.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(cmd), res.returncode,
                                                   res.stderr.decode(errors="replace")[-500:]))
    return dt, res.stdout


def importtime(cmd, env, floor_mods, top=15):
    """Self time per module (us) of one run, the costliest first, and the modules beyond the floor."""
    full = [cmd[0], "-X", "importtime"] + cmd[1:] if cmd[1:2] in (["-c"], ["-m"]) else [PY, "-X", "importtime"] + cmd
    res = subprocess.run(full, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         env=env, cwd="/", universal_newlines=True)
    rows = []
    for line in res.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        parts = line[len("import time:"):].split("|")
        if len(parts) == 3:
            rows.append((int(parts[0]), int(parts[1]), parts[2].strip()))
    extra = [r for r in rows if r[2] not in floor_mods]
    extra.sort(key=lambda r: -r[0])
    return {"total_self_us_beyond_floor": sum(r[0] for r in extra), "modules_beyond_floor": len(extra),
            "top_self_us": [[r[2], r[0]] for r in extra[:top]], "beyond_floor": sorted(r[2] for r in extra)}


def floor_modules(py, env):
    res = subprocess.run([py, "-X", "importtime", "-c", "pass"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         env=env, cwd="/", universal_newlines=True)
    return {ln.split("|")[-1].strip() for ln in res.stderr.splitlines() if ln.startswith("import time:")}


def profile(cmd, env, top=25):
    """cProfile of one run, sorted by cumulative time (the text pstats prints)."""
    if cmd[1:2] == ["-c"]:
        script = "/tmp/coldstart-profiled.py"
        with open(script, "w") as f:
            f.write(cmd[2] + "\n")
        pcmd = [cmd[0], "-m", "cProfile", "-s", "cumulative", script] + cmd[3:]
    elif cmd[1:2] == ["-m"]:
        pcmd = [cmd[0], "-m", "cProfile", "-s", "cumulative"] + cmd[1:]
    else:  # the console script
        pcmd = [PY, "-m", "cProfile", "-s", "cumulative"] + cmd
    res = subprocess.run(pcmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd="/",
                         universal_newlines=True)
    lines = res.stdout.splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.strip().startswith("ncalls")), None)
    head = [ln for ln in lines if "function calls" in ln][:1]
    return head + (lines[start:start + top + 1] if start is not None else lines[-top:])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wheel", required=True)
    ap.add_argument("--src", default="/host")
    ap.add_argument("--out", required=True)
    ap.add_argument("--suite", default="")
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()
    py = PY
    inst = install(py, os.path.abspath(args.wheel), args.src)
    log("installed: %s" % json.dumps(inst))
    env = clean_env()
    xl = shutil.which("xl")
    xpsh = inst["xpsh"]

    # The very first listing of this boot (no cache file yet: the boot is fresh).
    clear_cache()
    first_ms, _ = run_once([py, "-m", "xenprivcmd", "list"], env)
    if not cache_files():
        raise SystemExit("coldstart: the listing wrote no /run/xenprivcmd cache")

    cmds = [
        ("python3 -c pass", [py, "-c", "pass"], None),
        ("python3 -m this (the floor of -m: runpy)", [py, "-m", "this"], None),
        ("xl list", [xl, "list"], None),
        ("import xenprivcmd", [py, "-c", "import xenprivcmd"], None),
        ("python3 -m xenprivcmd list (warm cache)", [py, "-m", "xenprivcmd", "list"], None),
        ("xpsh list (warm cache)", [xpsh, "list"], None),
        ("xpsh --json list (warm cache)", [xpsh, "--json", "list"], None),
        ("python3 -m xenprivcmd list (cold cache)", [py, "-m", "xenprivcmd", "list"], clear_cache),
        ("xpsh list (cold cache)", [xpsh, "list"], clear_cache),
    ]
    samples = {name: [] for name, _, _ in cmds}
    outputs = {}
    for name, cmd, before in cmds:  # warm-up round (page cache, pycs), not counted
        _, out = run_once(cmd, env, before)
        outputs[name] = out.decode(errors="replace")
    run_once([py, "-m", "xenprivcmd", "list"], env)  # leave the cache warm
    for _ in range(args.rounds):
        for name, cmd, before in cmds:
            if before is None and name.endswith("(warm cache)") and not cache_files():
                run_once([py, "-m", "xenprivcmd", "list"], env)
            dt, _ = run_once(cmd, env, before)
            samples[name].append(dt)
        run_once([py, "-m", "xenprivcmd", "list"], env)  # warm again after the cold runs
    med = {name: statistics.median(v) for name, v in samples.items()}
    floor, xl_ms = med["python3 -c pass"], med["xl list"]
    rows = []
    for name, _, _ in cmds:
        target = TARGETS.get(name)
        ratio = med[name] / floor
        rows.append({"command": name, "ms": round(med[name], 1), "min_ms": round(min(samples[name]), 1),
                     "x_pass": round(ratio, 2), "x_xl_list": round(med[name] / xl_ms, 2), "target": target,
                     "verdict": None if target is None else ("PASS" if ratio <= target else "MISS")})
    floor_mods = floor_modules(py, env)
    misses = {}
    for name, cmd, before in cmds:
        row = next(r for r in rows if r["command"] == name)
        if row["verdict"] != "MISS":
            continue
        if before is not None:
            before()
        it = importtime(cmd, env, floor_mods)
        if before is not None:
            before()
        prof = profile(cmd, env)
        misses[name] = {"importtime": it, "cprofile": prof}
    doc = {
        "kind": "xenprivcmd-coldstart-bench",
        "suite": args.suite,
        "machine": {"kernel": platform.release(), "arch": platform.machine(), "python": platform.python_version(),
                    "cpus": os.cpu_count(), "note": "dom0 under QEMU TCG (tools/xenvm)"},
        "install": inst,
        "rounds": args.rounds,
        "first_list_of_boot_ms": round(first_ms, 1),
        "rows": rows,
        "misses": misses,
        "floor_modules": sorted(floor_mods),
        "samples_ms": samples,
        "outputs": outputs,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
    print_report(doc)
    return 0


def print_report(doc):
    print("cold start, %s (%s, Python %s): medians of %d interleaved rounds; %s"
          % (doc["suite"], doc["machine"]["arch"], doc["machine"]["python"], doc["rounds"], doc["install"]["method"]))
    print("%-42s %9s %9s %9s  %s" % ("command", "ms", "x pass", "x xl", "target"))
    for r in doc["rows"]:
        tgt = "" if r["target"] is None else "<= %.2fx %s" % (r["target"], r["verdict"])
        print("%-42s %9.1f %9.2f %9.2f  %s" % (r["command"], r["ms"], r["x_pass"], r["x_xl_list"], tgt))
    print("first listing of the boot (no cache file): %.1f ms" % doc["first_list_of_boot_ms"])
    for name, m in doc["misses"].items():
        it = m["importtime"]
        print("\nMISS %s: %d modules beyond `python3 -c pass`, %.1f ms of import self time; costliest:"
              % (name, it["modules_beyond_floor"], it["total_self_us_beyond_floor"] / 1e3))
        print("  " + ", ".join("%s %.1f" % (mod, us / 1e3) for mod, us in it["top_self_us"]) + " (ms)")
        print("  cProfile (cumulative):")
        for ln in m["cprofile"]:
            print("    " + ln[:150])


if __name__ == "__main__":
    sys.exit(main())
