#!/usr/bin/env python3
"""C-layout conformance of the committed ABI tables against Debian's libxen-dev.

For each Debian suite (bullseye = Xen 4.14, bookworm = 4.17, trixie = 4.20,
sid = newest) this script

1. downloads the ``libxen-dev`` .deb with a PRIVATE apt state (own
   sources.list, lists and cache directories; the system's apt
   configuration is neither read for sources nor modified),
2. unpacks it with ``dpkg-deb -x`` into a scratch directory,
3. maps the package's upstream version (e.g. ``4.17.5+72-g01140da4e8-1``)
   to a committed release (``4.17.5``),
4. generates a C program printing sizeof/offsetof of every field of every
   struct that the committed tables carry for that release (and the value
   of every constant), compiles it with the host gcc, runs it and compares
   the output with the tables,
5. runs ``tools/gen_structs.py --check --headers <dir> --release <rel>``.

It exits non-zero listing every mismatch (download failures included).
Standard library only (pyelftools is needed by step 5; it is pip-installed
when missing unless --no-install is given).
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, ROOT)

from xenprivcmd import abi, structs  # noqa: E402

MIRROR = os.environ.get("XENPRIVCMD_DEBIAN_MIRROR", "http://deb.debian.org/debian")
SECURITY = os.environ.get("XENPRIVCMD_DEBIAN_SECURITY", "http://deb.debian.org/debian-security")
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"

# suite -> (sources lines, expected Xen series)
SUITES: Dict[str, Tuple[Tuple[str, ...], Optional[Tuple[int, int]]]] = {
    "bullseye": (("{m} bullseye main", "{m} bullseye-updates main",
                  "{s} bullseye-security main"), (4, 14)),
    "bookworm": (("{m} bookworm main", "{m} bookworm-updates main",
                  "{s} bookworm-security main"), (4, 17)),
    "trixie": (("{m} trixie main", "{m} trixie-updates main",
                "{s} trixie-security main"), (4, 20)),
    "sid": (("{m} sid main",), None),
}
DEFAULT_SUITES = ("bullseye", "bookworm", "trixie", "sid")


class Failure(Exception):
    pass


def log(msg: str) -> None:
    print(msg, flush=True)


def run(cmd: Sequence[str], **kw: object) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(list(cmd), capture_output=True, text=True, **kw)  # type: ignore[call-overload]


# --------------------------------------------------------------------------
# download


def apt_opts(state: str) -> List[str]:
    return [
        "-o", "Dir::Etc::sourcelist=%s" % os.path.join(state, "sources.list"),
        "-o", "Dir::Etc::sourceparts=%s" % os.path.join(state, "sources.list.d"),
        "-o", "Dir::State::Lists=%s" % os.path.join(state, "lists"),
        "-o", "Dir::State::status=%s" % os.path.join(state, "status"),
        "-o", "Dir::Cache=%s" % os.path.join(state, "cache"),
        "-o", "Dir::Etc::preferences=%s" % os.path.join(state, "preferences"),
        "-o", "Dir::Etc::preferencesparts=%s" % os.path.join(state, "preferences.d"),
        "-o", "APT::Architecture=amd64",
        "-o", "APT::Architectures=amd64",
        "-o", "Acquire::Languages=none",
        "-o", "Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled=false",
        "-o", "Acquire::Retries=3",
        "-o", "Debug::NoLocking=1",
        "-o", "APT::Get::List-Cleanup=false",
    ]


def download(suite: str, scratch: str) -> str:
    lines, _series = SUITES[suite]
    state = os.path.join(scratch, "apt-" + suite)
    for d in ("lists/partial", "cache/archives/partial", "sources.list.d", "preferences.d"):
        os.makedirs(os.path.join(state, d), exist_ok=True)
    open(os.path.join(state, "status"), "w").close()
    with open(os.path.join(state, "sources.list"), "w") as fh:
        for line in lines:
            fh.write("deb [signed-by=%s] %s\n" % (KEYRING, line.format(m=MIRROR, s=SECURITY)))
    opts = apt_opts(state)
    p = run(["apt-get", *opts, "-q", "update"])
    if p.returncode != 0:
        raise Failure("%s: apt-get update failed:\n%s%s" % (suite, p.stdout[-2000:], p.stderr[-2000:]))
    dl = os.path.join(scratch, "deb-" + suite)
    os.makedirs(dl, exist_ok=True)
    p = run(["apt-get", *opts, "-q", "download", "libxen-dev"], cwd=dl)
    debs = glob.glob(os.path.join(dl, "libxen-dev_*.deb"))
    if p.returncode != 0 or len(debs) != 1:
        raise Failure("%s: apt-get download libxen-dev failed:\n%s%s"
                      % (suite, p.stdout[-2000:], p.stderr[-2000:]))
    return debs[0]


def unpack(deb: str, dest: str) -> Tuple[str, str]:
    p = run(["dpkg-deb", "-f", deb, "Version"])
    if p.returncode != 0:
        raise Failure("dpkg-deb -f %s failed: %s" % (deb, p.stderr))
    version = p.stdout.strip()
    p = run(["dpkg-deb", "-x", deb, dest])
    if p.returncode != 0:
        raise Failure("dpkg-deb -x %s failed: %s" % (deb, p.stderr))
    inc = os.path.join(dest, "usr", "include", "xen")
    if not os.path.exists(os.path.join(inc, "xen.h")):
        raise Failure("%s has no usr/include/xen/xen.h" % deb)
    return version, inc


def map_release(pkg_version: str) -> str:
    """Debian version -> committed release name (e.g. 4.17.5+72-g..-1 -> 4.17.5)."""
    upstream = pkg_version.split(":", 1)[-1]
    mo = re.match(r"(\d+)\.(\d+)\.(\d+)", upstream)
    if not mo:
        raise Failure("cannot parse Debian version %r" % pkg_version)
    major, minor, micro = (int(x) for x in mo.groups())
    want = "%d.%d.%d" % (major, minor, micro)
    if want in abi.releases():
        return want
    older = [v for v in abi.candidates(major, minor) if len(v.xen) >= 3 and v.xen[2] <= micro]
    if older:
        log("  note: %s is not a known release; using %s" % (want, older[0].release))
        return older[0].release
    raise Failure("Debian's Xen %s maps to no committed release" % want)


# --------------------------------------------------------------------------
# the C program


def _ctype_expr(name: str, kind: str, lset: Dict[str, str], spec: str) -> str:
    if name + "_t" in lset and lset[name + "_t"] == spec:
        return name + "_t"
    return ("union " if kind == "u" else "struct ") + name


def _is_synth(cname: str) -> bool:
    return "__" in cname.lstrip("_")


def c_program(release: str, arch: str, headers: Sequence[str]
              ) -> Tuple[List[Tuple[str, str]], Dict[str, str]]:
    """Return ([(label, C statement)], expected output keyed by label)."""
    rows, lset, consts = structs.layout_data(arch, release)
    expect: Dict[str, str] = {}
    body: List[Tuple[str, str]] = []

    def walk(ctype: str, sid: int, prefix: str, base: int) -> None:
        """Fields of layout ``sid`` placed at ``base`` in ``ctype``; C designators
        get ``prefix``.  Synthesized (anonymous C) types are walked into."""
        for fname, off, spec in rows[sid][4]:
            mo = re.match(r"#(\d+)((?:\[\d+\])*)$", spec)
            if not fname:  # anonymous member: its fields are reached directly
                if mo:
                    walk(ctype, int(mo.group(1)), prefix, base + off)
                continue
            if fname.startswith("_bitfield"):
                continue
            desig = prefix + fname
            lab = "%s.%s" % (ctype, desig)
            if "[0]" in spec:  # flexible array member: no sizeof
                size_expr = "(size_t)0"
            else:
                size_expr = "sizeof(((%s *)0)->%s)" % (ctype, desig)
            body.append((lab, 'printf("%s\\t%%zu %%zu\\n", (size_t)offsetof(%s, %s), %s);'
                               % (lab, ctype, desig, size_expr)))
            expect[lab] = "%d %d" % (base + off, structs.spec_sizeof(arch, spec))
            if mo and not mo.group(2) and _is_synth(rows[int(mo.group(1))][0]):
                walk(ctype, int(mo.group(1)), desig + ".", base + off)

    for name in sorted(lset):
        spec = lset[name]
        mo = re.match(r"#(\d+)$", spec)
        if not mo:
            # typedef of a non-struct (xen_extraversion_t ...)
            if name.endswith("_t") and not spec.startswith("#"):
                body.append(("sizeof(%s)" % name,
                             'printf("sizeof(%s)\\t%%zu\\n", sizeof(%s));' % (name, name)))
                expect["sizeof(%s)" % name] = str(structs.spec_sizeof(arch, spec))
            continue
        sid = int(mo.group(1))
        cname, kind, size, align, _fields = rows[sid]
        if cname != name or _is_synth(cname):
            continue  # aliases and synthesized anonymous types are covered via their parent
        ctype = _ctype_expr(name, kind, lset, spec)
        body.append(("sizeof(%s)" % ctype,
                     'printf("sizeof(%s)\\t%%zu %%zu\\n", sizeof(%s), (size_t)_Alignof(%s));'
                     % (ctype, ctype, ctype)))
        expect["sizeof(%s)" % ctype] = "%d %d" % (size, align)
        walk(ctype, sid, "", 0)
    for name in sorted(consts):
        v = consts[name]
        body.append(("const %s" % name, "#ifdef %s\n" % name
                    + 'printf("const %s\\t%%llu %%d\\n", (unsigned long long)(%s), (int)((%s) < 0));\n'
                    % (name, name, name)
                    + "#else\n"
                    + 'printf("const %s\\tmissing\\n");\n' % name
                    + "#endif"))
        expect["const %s" % name] = "%d %d" % (v & ((1 << 64) - 1), 1 if v < 0 else 0)
    return body, expect


def _source(headers: Sequence[str], body: List[Tuple[str, str]],
            dropped: "set[str]") -> Tuple[str, Dict[int, str]]:
    src = ["/* generated by tools/conformance/debian_libxen.py */",
           "#include <stdint.h>", "#include <stddef.h>", "#include <stdio.h>"]
    src += ['#include "%s"' % h for h in headers]
    src += ["int main(void)", "{"]
    lines: Dict[int, str] = {}
    for lab, code in body:
        if lab in dropped:
            continue
        for c in code.split("\n"):
            src.append("    " + c)
            lines[len(src)] = lab
    src += ["    return 0;", "}"]
    return "\n".join(src) + "\n", lines


def conformance(inc: str, release: str, arch: str, work: str) -> List[str]:
    headers = [h for h in ("xen.h", "version.h", "domctl.h", "sysctl.h")
               if os.path.exists(os.path.join(inc, h))]
    if "domctl.h" not in headers or "sysctl.h" not in headers:
        return ["%s: domctl.h/sysctl.h not shipped" % inc]
    body, expect = c_program(release, arch, headers)
    cpath = os.path.join(work, "layout_check.c")
    exe = os.path.join(work, "layout_check")
    dropped: "set[str]" = set()
    problems: List[str] = []
    for _attempt in range(10):
        src, lines = _source(headers, body, dropped)
        with open(cpath, "w") as fh:
            fh.write(src)
        p = run(["gcc", "-std=gnu11", "-w", "-D__XEN_TOOLS__",
                 "-D__XEN_INTERFACE_VERSION__=__XEN_LATEST_INTERFACE_VERSION__",
                 "-iquote", inc, "-o", exe, cpath])
        if p.returncode == 0:
            break
        bad = {lines[int(m.group(1))] for m in re.finditer(r"layout_check\.c:(\d+):\d+: error", p.stderr)
               if int(m.group(1)) in lines}
        if not bad:
            return problems + ["compiling %s failed:\n%s" % (cpath, p.stderr[-3000:])]
        for lab in sorted(bad):
            problems.append("%s: in the tables, does not compile against the headers" % lab)
        dropped |= bad
    else:
        return problems + ["compiling %s failed repeatedly" % cpath]
    p = run([exe])
    if p.returncode != 0:
        return ["%s exited %d" % (exe, p.returncode)]
    got: Dict[str, str] = {}
    for line in p.stdout.splitlines():
        got_lab, got_val = _split(line)
        got[got_lab] = got_val
    for lab in sorted(expect):
        if lab in dropped:
            continue
        if got.get(lab) != expect[lab]:
            problems.append("%s: tables say %r, gcc says %r" % (lab, expect[lab], got.get(lab)))
    return problems


def _split(line: str) -> Tuple[str, str]:
    lab, _, val = line.partition("\t")
    return lab, val


# --------------------------------------------------------------------------


def ensure_pyelftools(allow_install: bool) -> None:
    try:
        import elftools  # noqa: F401
    except ImportError:
        if not allow_install:
            raise Failure("pyelftools is needed by gen_structs.py --check (pip install pyelftools)") from None
        p = run([sys.executable, "-m", "pip", "install", "--quiet", "pyelftools"])
        if p.returncode != 0:
            raise Failure("pip install pyelftools failed:\n" + p.stderr[-2000:]) from None


def check_suite(suite: str, scratch: str, arch: str) -> List[str]:
    t0 = time.time()
    deb = download(suite, scratch)
    dest = os.path.join(scratch, "root-" + suite)
    version, inc = unpack(deb, dest)
    release = map_release(version)
    series = SUITES[suite][1]
    problems: List[str] = []
    if series is not None and tuple(abi.variant(release).xen[:2]) != series:
        problems.append("%s ships Xen %s, expected series %d.%d" % (suite, version, *series))
    log("%s: libxen-dev %s -> release %s (%s)" % (suite, version, release, abi.variant(release)))
    work = os.path.join(scratch, "work-" + suite)
    os.makedirs(work, exist_ok=True)
    problems += conformance(inc, release, arch, work)
    p = run([sys.executable, os.path.join(ROOT, "tools", "gen_structs.py"), "--check",
             "--headers", inc, "--release", release, "--arch", arch])
    out = (p.stdout + p.stderr).strip()
    if p.returncode != 0:
        problems.append("gen_structs --check --headers failed:\n" + out[-6000:])
    else:
        log("  " + out.splitlines()[-1])
    log("  %s: %d problems (%.1fs)" % (suite, len(problems), time.time() - t0))
    return ["%s: %s" % (suite, x) for x in problems]


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--suite", action="append", choices=sorted(SUITES),
                    help="Debian suite (repeatable; default: all of %s)" % ", ".join(DEFAULT_SUITES))
    ap.add_argument("--scratch", help="scratch directory (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    ap.add_argument("--no-install", action="store_true", help="never pip-install pyelftools")
    a = ap.parse_args(argv)
    arch = "x86_64"
    suites = a.suite or list(DEFAULT_SUITES)
    scratch = a.scratch or tempfile.mkdtemp(prefix="xen-conformance-")
    os.makedirs(scratch, exist_ok=True)
    problems: List[str] = []
    try:
        ensure_pyelftools(not a.no_install)
        for s in suites:
            try:
                problems += check_suite(s, scratch, arch)
            except Failure as e:
                problems.append(str(e))
    except Failure as e:
        problems.append(str(e))
    finally:
        if not a.keep and not a.scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    for p in problems:
        log("MISMATCH " + p)
    log("conformance: %d suite(s), %d problem(s)" % (len(suites), len(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
