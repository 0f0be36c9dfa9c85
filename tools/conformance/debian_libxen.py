#!/usr/bin/env python3
"""C-layout conformance of the committed ABI tables against Debian's libxen-dev.

For each Debian suite (bullseye = Xen 4.14, bookworm = 4.17, trixie = 4.20,
sid = newest) and each target (``--arch x86_64``: Debian's amd64 package and
the host gcc; ``--arch aarch64``: its arm64 package and
``aarch64-linux-gnu-gcc``, no arm64 machine needed) this script

1. downloads the ``libxen-dev`` .deb of that Debian architecture with a
   PRIVATE apt state (own sources.list with ``[arch=...]``, lists and cache
   directories, ``APT::Architecture``; the system's apt configuration is
   neither read for sources nor modified),
2. unpacks it with ``dpkg-deb -x`` into a scratch directory,
3. maps the package's upstream version (e.g. ``4.17.5+72-g01140da4e8-1``)
   to a committed release (``4.17.5``),
4. generates a C file holding, in one ``const`` array, sizeof/_Alignof of
   every struct, offsetof+sizeof of every field (nested anonymous members
   included) and the value of every constant that the committed tables carry
   for that release; compiles it with ``-c`` for the target (the program is
   never run), reads the array back from the object's ELF symbol table and
   compares it with the package's ctypes classes and constants
   (``abi.variant(release, arch=...)``),
5. runs ``tools/gen_structs.py --check --headers <dir> --release <rel> --arch <arch>``.

It exits non-zero listing every mismatch (download and compile failures
included).  Standard library only; pyelftools (needed by step 5) is
pip-installed and the cross compiler (``gcc-aarch64-linux-gnu``) apt-get
installed when missing, unless --no-install is given.

    python3 tools/conformance/debian_libxen.py                      # x86_64, all suites
    python3 tools/conformance/debian_libxen.py --arch aarch64 --suite trixie
"""

from __future__ import annotations

import argparse
import ctypes
import glob
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tools"))

from genstructs.dwarf import TARGETS  # noqa: E402  (same compilers as the generator)
from genstructs.families import ext_headers  # noqa: E402

from xenprivcmd import abi, structs  # noqa: E402

sys.path.insert(0, os.path.join(ROOT, "tools", "xenvm"))
from xenvmlib.mirrors import host_mirrors  # noqa: E402  (the mirror of this machine's apt sources)

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

# our arch name -> (Debian architecture, Debian package of the compiler)
DEB_ARCH: Dict[str, Tuple[str, str]] = {
    "x86_64": ("amd64", "gcc"),
    "aarch64": ("arm64", "gcc-aarch64-linux-gnu"),
}


class Failure(Exception):
    pass


def log(msg: str) -> None:
    print(msg, flush=True)


def run(cmd: Sequence[str], **kw: object) -> "subprocess.CompletedProcess[str]":
    p: "subprocess.CompletedProcess[str]" = subprocess.run(  # type: ignore[call-overload]
        list(cmd), capture_output=True, text=True, **kw)
    return p


# --------------------------------------------------------------------------
# download


def apt_opts(state: str, debarch: str) -> List[str]:
    return [
        "-o", "Dir::Etc::sourcelist=%s" % os.path.join(state, "sources.list"),
        "-o", "Dir::Etc::sourceparts=%s" % os.path.join(state, "sources.list.d"),
        "-o", "Dir::State::Lists=%s" % os.path.join(state, "lists"),
        "-o", "Dir::State::status=%s" % os.path.join(state, "status"),
        "-o", "Dir::Cache=%s" % os.path.join(state, "cache"),
        "-o", "Dir::Etc::preferences=%s" % os.path.join(state, "preferences"),
        "-o", "Dir::Etc::preferencesparts=%s" % os.path.join(state, "preferences.d"),
        "-o", "APT::Architecture=%s" % debarch,
        "-o", "APT::Architectures=%s" % debarch,
        "-o", "Acquire::Languages=none",
        "-o", "Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled=false",
        "-o", "Acquire::Retries=3",
        "-o", "Debug::NoLocking=1",
        "-o", "APT::Get::List-Cleanup=false",
    ]


def download(suite: str, scratch: str, arch: str, package: str = "libxen-dev") -> str:
    """The .deb of ``package`` in ``suite`` for ``arch``, downloaded with a private apt state."""
    lines, _series = SUITES[suite]
    debarch = DEB_ARCH[arch][0]
    tag = "%s-%s" % (debarch, suite)
    state = os.path.join(scratch, "apt-" + tag)
    for d in ("lists/partial", "cache/archives/partial", "sources.list.d", "preferences.d"):
        os.makedirs(os.path.join(state, d), exist_ok=True)
    open(os.path.join(state, "status"), "w").close()
    mirror, security = host_mirrors()
    with open(os.path.join(state, "sources.list"), "w") as fh:
        for line in lines:
            fh.write("deb [arch=%s signed-by=%s] %s\n"
                     % (debarch, KEYRING, line.format(m=mirror, s=security)))
    opts = apt_opts(state, debarch)
    p = run(["apt-get", *opts, "-q", "update"])
    if p.returncode != 0:
        raise Failure("%s: apt-get update failed:\n%s%s" % (suite, p.stdout[-2000:], p.stderr[-2000:]))
    dl = os.path.join(scratch, "deb-" + tag)
    os.makedirs(dl, exist_ok=True)
    p = run(["apt-get", *opts, "-q", "download", "%s:%s" % (package, debarch)], cwd=dl)
    debs = glob.glob(os.path.join(dl, "%s_*_%s.deb" % (package, debarch)))
    if p.returncode != 0 or len(debs) != 1:
        raise Failure("%s: apt-get download %s failed:\n%s%s"
                      % (suite, package, p.stdout[-2000:], p.stderr[-2000:]))
    return debs[0]


def unpack(deb: str, dest: str, arch: str) -> Tuple[str, str]:
    p = run(["dpkg-deb", "-f", deb, "Version", "Architecture"])
    if p.returncode != 0:
        raise Failure("dpkg-deb -f %s failed: %s" % (deb, p.stderr))
    fields = dict(line.split(": ", 1) for line in p.stdout.strip().splitlines() if ": " in line)
    version = fields.get("Version", "")
    if fields.get("Architecture") != DEB_ARCH[arch][0]:
        raise Failure("%s: Architecture %r, wanted %s" % (deb, fields.get("Architecture"), DEB_ARCH[arch][0]))
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
# the C check program
#
# The program is never run (an arm64 binary cannot run here): every number
# is a constant expression in one ``const`` array, the file is compiled with
# ``-c`` for the target and the array is read back from the object's ELF
# symbol table.  The same path serves x86_64, compiled with the host gcc.


def _ctype_expr(name: str, kind: str, spec_of: Mapping[str, Tuple[str, str]], spec: Tuple[str, str]) -> str:
    if spec_of.get(name + "_t") == spec:
        return name + "_t"
    return ("union " if kind == "u" else "struct ") + name


def _is_synth(cname: str) -> bool:
    return "__" in cname.lstrip("_")


def _member(cls: Any, name: str) -> Optional[Tuple[int, Any]]:
    """(offset, ctypes type) of member ``name`` of ctypes class ``cls``,
    looking through anonymous members (``_anonymous_``)."""
    types = dict((f[0], f[1]) for f in cls._fields_)
    if name in types and name not in getattr(cls, "_anonymous_", ()):
        return getattr(cls, name).offset, types[name]
    for an in getattr(cls, "_anonymous_", ()):
        sub = _member(types[an], name)
        if sub is not None:
            return getattr(cls, an).offset + sub[0], sub[1]
    return None


def _designator(cls: Any, desig: str) -> Tuple[int, int]:
    """(offset, size) of C designator ``a.b.c`` in ctypes class ``cls``."""
    off = 0
    t = cls
    for part in desig.split("."):
        got = _member(t, part)
        if got is None:
            raise KeyError("%s has no member %s" % (getattr(cls, "_xen_name_", cls), desig))
        off += got[0]
        t = got[1]
    return off, ctypes.sizeof(t)


Entry = Tuple[str, str, str, str, Tuple[int, int, int]]  # label, #if-guard, expr a, expr b, expected


def c_program(release: str, arch: str) -> Tuple[List[Entry], List[str]]:
    """Every check for ``release``/``arch``.

    Expected numbers come from the package's ctypes classes and constants
    (``abi.variant(release, arch=arch)``); the list of fields comes from
    the committed tables.  Returns (entries, internal inconsistencies
    between the tables and the ctypes classes)."""
    v = abi.variant(release, arch=arch)
    smap = v.structs
    # (table id, spec): the core tables' or a family's (each has its own struct indexes)
    spec_of = {n: smap.where(n) for n in smap}  # type: ignore[attr-defined]
    out: List[Entry] = []
    internal: List[str] = []

    def walk(ctype: str, cls: Any, tid: str, sid: int, prefix: str, base: int) -> None:
        """Fields of layout ``sid`` of table ``tid`` placed at ``base`` in ``ctype``; C
        designators get ``prefix``.  Synthesized (anonymous C) types are walked into."""
        rows = structs.struct_rows(tid)
        for fname, off, spec in rows[sid][4]:
            mo = re.match(r"#(\d+)((?:\[\d+\])*)$", spec)
            if not fname:  # anonymous member: its fields are reached directly
                if mo:
                    walk(ctype, cls, tid, int(mo.group(1)), prefix, base + off)
                continue
            if fname.startswith("_bitfield"):
                continue
            desig = prefix + fname
            lab = "%s.%s" % (ctype, desig)
            try:
                got = _designator(cls, desig)
            except KeyError as e:
                internal.append("%s: ctypes class: %s" % (lab, e))
                continue
            if got != (base + off, structs.spec_sizeof(tid, spec)):
                internal.append("%s: table (offset, size) %r, ctypes class %r"
                                % (lab, (base + off, structs.spec_sizeof(tid, spec)), got))
            if "[0]" in spec:  # flexible array member: no sizeof
                size_expr = "0"
            else:
                size_expr = "sizeof(((%s *)0)->%s)" % (ctype, desig)
            out.append((lab, "", "offsetof(%s, %s)" % (ctype, desig), size_expr,
                        (got[0], got[1], 1)))
            if mo and not mo.group(2) and _is_synth(rows[int(mo.group(1))][0]):
                walk(ctype, cls, tid, int(mo.group(1)), desig + ".", base + off)

    for name in sorted(spec_of):
        tid, spec = spec_of[name]
        mo = re.match(r"#(\d+)$", spec)
        cls = smap[name]
        if not mo:
            # typedef of a non-struct (xen_extraversion_t, xen_domain_handle_t ...)
            if name.endswith("_t"):
                lab = "sizeof(%s)" % name
                out.append((lab, "", "sizeof(%s)" % name, "_Alignof(%s)" % name,
                            (ctypes.sizeof(cls), ctypes.alignment(cls), 1)))
            continue
        sid = int(mo.group(1))
        cname, kind, size, align, _fields = structs.struct_row(tid, sid)
        if cname != name or _is_synth(cname):
            continue  # aliases and synthesized anonymous types are covered via their parent
        ctype = _ctype_expr(name, kind, spec_of, (tid, spec))
        if (ctypes.sizeof(cls), cls._xen_align_) != (size, align):
            internal.append("%s: table (size, align) %r, ctypes class %r"
                            % (ctype, (size, align), (ctypes.sizeof(cls), cls._xen_align_)))
        out.append(("sizeof(%s)" % ctype, "", "sizeof(%s)" % ctype, "_Alignof(%s)" % ctype,
                    (ctypes.sizeof(cls), cls._xen_align_, 1)))
        walk(ctype, cls, tid, sid, "", 0)
    consts = v.constants
    for name in consts:
        val = consts[name]
        out.append(("const %s" % name, name, "(%s)" % name, "((%s) < 0)" % name,
                    (val & ((1 << 64) - 1), 1 if val < 0 else 0, 1)))
    return out, internal


_SYM = "xenprivcmd_layout_check"


def _source(headers: Sequence[str], entries: Sequence[Entry],
            dropped: "set[str]") -> Tuple[str, Dict[int, str], List[Entry]]:
    src = ["/* generated by tools/conformance/debian_libxen.py; compiled with -c, never run */",
           "#include <stdint.h>", "#include <stddef.h>"]
    src += ['#include "%s"' % h for h in headers]
    src += ["__attribute__((used)) const unsigned long long %s[][3] = {" % _SYM,
            "    { 0x58656e436f6e66ULL, sizeof(void *), 1 },"]
    lines: Dict[int, str] = {}
    kept: List[Entry] = []
    for e in entries:
        lab, guard, a, b, _want = e
        if lab in dropped:
            continue
        kept.append(e)
        row = "    { (unsigned long long)(%s), (unsigned long long)(%s), 1 }," % (a, b)
        if guard:
            # a macro, else an enumerator (XS_*: flag 2); neither does not compile
            for c in ("#ifdef %s" % guard, row, "#else", row.replace(", 1 },", ", 2 },"), "#endif"):
                src.append(c)
                lines[len(src)] = lab
        else:
            src.append(row)
            lines[len(src)] = lab
    src += ["};"]
    return "\n".join(src) + "\n", lines, kept


def elf_symbol(path: str, name: str) -> Tuple[bytes, str]:
    """Contents of data symbol ``name`` in a relocatable ELF64 object, and its
    byte order ('<' or '>').  Standard library only."""
    with open(path, "rb") as fh:
        data = fh.read()
    if data[:4] != b"\x7fELF" or data[4] != 2:
        raise Failure("%s: not an ELF64 object" % path)
    bo = "<" if data[5] == 1 else ">"
    shoff = struct.unpack_from(bo + "Q", data, 0x28)[0]
    shentsize, shnum = struct.unpack_from(bo + "HH", data, 0x3A)
    secs = [struct.unpack_from(bo + "IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    for sh in secs:
        if sh[1] != 2:  # SHT_SYMTAB
            continue
        strtab = secs[sh[6]]
        for i in range(sh[5] // 24):
            st_name, _info, _other, shndx, value, size = struct.unpack_from(
                bo + "IBBHQQ", data, sh[4] + i * 24)
            s0 = strtab[4] + st_name
            if data[s0:data.index(b"\0", s0)].decode() != name:
                continue
            if shndx == 0 or shndx >= 0xFF00:
                raise Failure("%s: symbol %s is not defined in a section" % (path, name))
            sec = secs[shndx]
            if sec[1] == 8:  # SHT_NOBITS (all zero)
                return bytes(size), bo
            return data[sec[4] + value:sec[4] + value + size], bo
    raise Failure("%s: no symbol %s" % (path, name))


# Constants whose value in a Debian package is a later upstream one than its
# release's (a fix Debian carries ahead of the release): tolerated only when
# gcc's value is the one the development head's tables hold.
DEBIAN_AHEAD: Dict[str, str] = {
    "PSR_GUEST64_INIT": "xen/arm: mask debug exceptions in initial AArch64 guest state "
                        "(upstream after 4.20.4; PSR_DBG_MASK added)",
}


def ahead_of_release(name: str, got: int, arch: str) -> Optional[str]:
    """Why ``name`` = ``got`` in a Debian header is tolerated (None: it is not)."""
    if name not in DEBIAN_AHEAD:
        return None
    head = abi.variant(abi.head_release(), arch=arch).constants.get(name)
    return DEBIAN_AHEAD[name] if head == got else None


# arch-specific items whose gcc numbers are logged (x86_64 and aarch64 differ here)
HIGHLIGHTS = (
    "sizeof(struct xen_arch_domainconfig)", "sizeof(xen_domctl_getdomaininfo_t)",
    "xen_domctl_getdomaininfo_t.arch_config", "sizeof(struct xen_domctl_createdomain)",
    "struct xen_domctl_createdomain.arch", "const XEN_LEGACY_MAX_VCPUS",
)


def conformance(inc: str, release: str, arch: str, work: str,
                measured: Optional[Dict[str, Tuple[int, int, int]]] = None) -> Tuple[int, List[str]]:
    """-> (number of checks compared, problems).  gcc's numbers go to ``measured``."""
    headers = [h for h in ("xen.h", "version.h", "domctl.h", "sysctl.h")
               if os.path.exists(os.path.join(inc, h))]
    if "domctl.h" not in headers or "sysctl.h" not in headers:
        return 0, ["%s: domctl.h/sysctl.h not shipped" % inc]
    # and the table families' headers (memory.h, event_channel.h, ... io/xs_wire.h)
    headers += [h for h in ext_headers(inc) if h not in headers]
    entries, problems = c_program(release, arch)
    target = TARGETS[arch]
    cpath = os.path.join(work, "layout_check.c")
    obj = os.path.join(work, "layout_check.o")
    dropped: "set[str]" = set()
    for _attempt in range(10):
        src, lines, kept = _source(headers, entries, dropped)
        with open(cpath, "w") as fh:
            fh.write(src)
        p = run([target.cc, *target.cflags, "-ffreestanding", "-std=gnu11", "-w", "-O0",
                 "-D__XEN_TOOLS__", "-D__XEN_INTERFACE_VERSION__=__XEN_LATEST_INTERFACE_VERSION__",
                 "-iquote", inc, "-c", "-o", obj, cpath])
        if p.returncode == 0:
            break
        bad = {lines[int(m.group(1))] for m in re.finditer(r"layout_check\.c:(\d+):\d+: error", p.stderr)
               if int(m.group(1)) in lines}
        if not bad:
            return 0, problems + ["compiling %s failed:\n%s" % (cpath, p.stderr[-3000:])]
        for lab in sorted(bad):
            problems.append("%s: in the tables, does not compile against the headers" % lab)
        dropped |= bad
    else:
        return 0, problems + ["compiling %s failed repeatedly" % cpath]
    raw, bo = elf_symbol(obj, _SYM)
    vals = [struct.unpack_from(bo + "3Q", raw, i) for i in range(0, len(raw), 24)]
    if len(vals) != len(kept) + 1 or vals[0] != (0x58656e436f6e66, target.pointer_size, 1):
        return 0, problems + ["%s: %s has %d rows (want %d), header row %r"
                              % (obj, _SYM, len(vals), len(kept) + 1, vals[:1])]
    for (lab, _guard, _a, _b, want), got in zip(kept, vals[1:]):
        if measured is not None:
            measured[lab] = got
        if got[2] == 0:
            problems.append("%s: in the tables (%d), not defined by the headers" % (lab, want[0]))
        elif got[:2] != want[:2]:
            why = None
            if lab.startswith("const "):
                why = ahead_of_release(lab[6:], got[0] - (1 << 64) if got[1] else got[0], arch)
            if why is not None:
                log("  note: %s: package says %s, gcc (%s) says %s, as the development head: %s"
                    % (lab, _fmt(lab, want), target.cc, _fmt(lab, got), why))
            else:
                problems.append("%s: package says %s, gcc (%s) says %s"
                                % (lab, _fmt(lab, want), target.cc, _fmt(lab, got)))
    return len(kept), problems


def _fmt(lab: str, v: Tuple[int, int, int]) -> str:
    if lab.startswith("const "):
        return str(v[0] - (1 << 64) if v[1] else v[0])
    if lab.startswith("sizeof("):
        return "size %d align %d" % (v[0], v[1])
    return "offset %d size %d" % (v[0], v[1])


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


def ensure_compiler(arch: str, allow_install: bool) -> None:
    """The target compiler (the generator's, ``XENPRIVCMD_CC_<ARCH>`` overrides);
    installed with the system's apt-get when missing (idempotent)."""
    cc = TARGETS[arch].cc
    if shutil.which(cc):
        return
    pkg = DEB_ARCH[arch][1]
    if not allow_install:
        raise Failure("compiler %s for %s not found (Debian: apt-get install %s)" % (cc, arch, pkg))
    log("installing %s (for %s) ..." % (pkg, cc))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    inst = ["apt-get", "-q", "-y", "--no-install-recommends", "install", pkg]
    p = run(inst, env=env)
    if p.returncode != 0:  # stale or missing package lists: update once and retry
        run(["apt-get", "-q", "update"], env=env)
        p = run(inst, env=env)
    if p.returncode != 0:
        raise Failure("apt-get install %s failed:\n%s%s" % (pkg, p.stdout[-2000:], p.stderr[-2000:]))
    if not shutil.which(cc):
        raise Failure("apt-get installed %s, but there is still no %s" % (pkg, cc))


def check_suite(suite: str, scratch: str, arch: str) -> List[str]:
    t0 = time.time()
    deb = download(suite, scratch, arch)
    tag = "%s-%s" % (DEB_ARCH[arch][0], suite)
    dest = os.path.join(scratch, "root-" + tag)
    version, inc = unpack(deb, dest, arch)
    release = map_release(version)
    series = SUITES[suite][1]
    problems: List[str] = []
    if series is not None and tuple(abi.variant(release).xen[:2]) != series:
        problems.append("%s ships Xen %s, expected series %d.%d" % (suite, version, *series))
    try:
        v = abi.variant(release, arch=arch)
    except abi.UnknownABIError as e:
        return ["%s/%s: %s" % (suite, arch, e)]
    log("%s/%s: libxen-dev %s -> release %s (%s)" % (suite, DEB_ARCH[arch][0], version, release, v))
    work = os.path.join(scratch, "work-" + tag)
    os.makedirs(work, exist_ok=True)
    measured: Dict[str, Tuple[int, int, int]] = {}
    nchecks, found = conformance(inc, release, arch, work, measured)
    problems += found
    log("  gcc: %d checks (sizeof/_Alignof, offsetof+sizeof of every field, constants), %d mismatches"
        % (nchecks, len(found)))
    for lab in HIGHLIGHTS:
        if lab in measured:
            log("  gcc %s: %s = %s" % (arch, lab, _fmt(lab, measured[lab])))
    p = run([sys.executable, os.path.join(ROOT, "tools", "gen_structs.py"), "--check",
             "--headers", inc, "--release", release, "--arch", arch])
    out = (p.stdout + p.stderr).strip()
    # "MISMATCH <family>: constant NAME: committed A, headers B" of a tolerated constant
    ahead = [m for m in re.finditer(r"^MISMATCH (?:\w+: )?constant (\w+): committed \S+, headers (-?\d+)$", out, re.M)
             if ahead_of_release(m.group(1), int(m.group(2)), arch) is not None]
    if p.returncode != 0 and ahead and len(ahead) == out.count("MISMATCH "):
        log("  gen_structs: %s (%d constants as the development head: %s)"
            % (out.splitlines()[-1], len(ahead), ", ".join(m.group(1) for m in ahead)))
    elif p.returncode != 0:
        problems.append("gen_structs --check --headers --arch %s failed:\n%s" % (arch, out[-6000:]))
    else:
        log("  gen_structs: " + out.splitlines()[-1])
    log("  %s/%s: %d problems (%.1fs)" % (suite, arch, len(problems), time.time() - t0))
    return ["%s/%s: %s" % (suite, arch, x) for x in problems]


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--suite", action="append", choices=sorted(SUITES),
                    help="Debian suite (repeatable; default: all of %s)" % ", ".join(DEFAULT_SUITES))
    ap.add_argument("--arch", action="append", choices=sorted(DEB_ARCH),
                    help="target (repeatable; default x86_64): x86_64 checks Debian's amd64 "
                         "package with gcc, aarch64 its arm64 package with aarch64-linux-gnu-gcc")
    ap.add_argument("--scratch", help="scratch directory (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    ap.add_argument("--no-install", action="store_true",
                    help="never install pyelftools (pip) or the cross compiler (apt-get)")
    a = ap.parse_args(argv)
    arches = a.arch or ["x86_64"]
    suites = a.suite or list(DEFAULT_SUITES)
    scratch = a.scratch or tempfile.mkdtemp(prefix="xen-conformance-")
    os.makedirs(scratch, exist_ok=True)
    problems: List[str] = []
    t0 = time.time()
    try:
        ensure_pyelftools(not a.no_install)
        for arch in arches:
            try:
                ensure_compiler(arch, not a.no_install)
            except Failure as e:
                problems.append(str(e))
                continue
            for s in suites:
                try:
                    problems += check_suite(s, scratch, arch)
                except Failure as e:
                    problems.append("%s/%s: %s" % (s, arch, e))
    except Failure as e:
        problems.append(str(e))
    finally:
        if not a.keep and not a.scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    for p in problems:
        log("MISMATCH " + p)
    log("conformance: %d suite(s) x %d arch(es), %d problem(s) (%.1fs)"
        % (len(suites), len(arches), len(problems), time.time() - t0))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
