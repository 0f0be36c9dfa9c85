#!/usr/bin/env python3
"""Independent layout facts for the committed ABI tables (``offsetof``, not DWARF).

The tables in ``xenprivcmd/structs/_gen_*_layouts.py`` come from
``tools/gen_structs.py``, which reads struct layouts back from gcc's DWARF.
This tool measures the same layouts a different way, so that a wrong table
(a swapped pair of offsets, a wrong size) is caught by a test that does not
read the tables' own numbers:

* for every release the package claims (``xenprivcmd.abi.releases()``) and
  every arch it has tables for, the release's git ref of Xen (the mapping of
  ``tools/genstructs/releases.py``) is exported with ``git archive``;
  releases whose ``xen/include/public`` is the same git tree are measured
  once;
* from the committed tables it takes only *names*: the structs of the
  release's layout set, their field names and field types (to spell nested
  members, e.g. ``u.getdomaininfo.tot_pages``, and to know which fields are
  integers); never an offset or a size;
* it writes a C file whose only definition is one array,
  ``const unsigned long long v[] = { sizeof(struct X), offsetof(struct X,
  f), sizeof(((struct X *)0)->f), ... }``, compiles it (``-c`` only: the
  arm64 object is never run) with the generator's compiler, flags, defines
  and headers (``-D__XEN_TOOLS__``, the latest interface version, the same
  translation unit headers), and reads the array back from the object's
  section bytes with a small ELF reader.  No debug information is produced
  or read.

The same is done for every table family (``_gen_<arch>_<family>.py``:
memory, event channels, grants ...): its names, measured in the families'
translation unit (``genstructs.families.ext_tu``, the generator's).

What is measured, per header tree and table:

* ``sizeof`` of every name in the layout set (struct/union tags, typedefs,
  character arrays);
* for every struct/union row: ``offsetof`` and ``sizeof`` of every field, and
  for integer fields (and integer arrays) whether the element type is
  signed, unsigned or plain ``char``;
* nested anonymous types (the generator names them ``parent__member``) are
  reached through their parent: ``offsetof(struct xen_domctl,
  u.getdomaininfo) ...``; fields of an anonymous struct/union member are
  measured relative to the member's first field (which C puts at the
  member's start).  The size of an anonymous member and of a flexible
  array member cannot be taken in C and bit-fields have no ``offsetof``:
  those values are recorded as skipped (``-``);
* the value of every constant the table names (``(NAME)`` and ``(NAME) <
  0`` evaluated by the compiler: macros and, for ``XS_*``, enumerators,
  which the generator reads from the DWARF instead).

Output: ``tests/data/layout_facts/<arch>.json.gz`` (data only: names,
offsets, sizes), read by ``tests/test_layout_facts.py``::

    {"format": 2, "arch": ..., "compiler": ...,
     "releases": {release: tree},          # tree: 12 hex digits of the git tree id
     "trees": {tree: {"ref": ..., "rows": [row index, ...], "consts": [const index, ...],
                      "errors": [...],       # expressions that did not compile
                      "families": {family: {"rows": [...], "consts": [...], "errors": [...]}}}},
     "rows": ["name size field:offset:size[:s|u|c] ...", ...],
     "consts": ["NAME value", ...]}

Each row is the facts for one table name in one tree (``-`` = skipped);
identical rows are stored once; so are the constants (``-``: did not compile).

Regenerate (a xen.git mirror and the cross compiler are needed; the test
needs neither)::

    python3 tools/layout_facts.py [--xen-git DIR] [--arch x86_64 --arch aarch64] [-j2]
    python3 tools/layout_facts.py --check     # exit 1 if the committed facts differ

``--check`` compares the numbers (not the compiler's version string).  A
table that disagrees with the facts is a finding about the generator: fix
the generator, never the facts.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import gzip
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from typing import Any, Dict, List, Optional, Sequence, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)

from genstructs import releases as rel_mod  # noqa: E402
from genstructs.dwarf import TARGETS, _base_flags, pick_headers  # noqa: E402
from genstructs.families import ext_headers, ext_tu  # noqa: E402

DEFAULT_GIT = "/work/.mirror/xen-project+xen/repo"
DEFAULT_OUT = os.path.join(ROOT, "tests", "data", "layout_facts")
SECTION = ".xlfacts"
MAGIC = 0x58504C46414354  # "XPLFACT"

# A plan: what the tables name, without any of their numbers.
#   names: table name -> type spec with "@row-name" for struct references
#   rows:  row name -> (kind, ((field name, type spec), ...))
Plan = Tuple[Dict[str, str], Dict[str, Tuple[str, Tuple[Tuple[str, str], ...]]]]
# What one header tree is measured for: (core plan, core constant names,
#   {family: (plan, constant names)})
TreePlan = Tuple[Plan, List[str], Dict[str, Tuple[Plan, List[str]]]]

_SPEC_RE = re.compile(r"^([^\[]+)((?:\[\d+\])*)$")
_INT_BASES = ("u8", "u16", "u32", "u64", "i8", "i16", "i32", "i64", "c")


def split_spec(spec: str) -> Tuple[str, int]:
    """``'@foo[4][2]'`` -> (``'@foo'``, 2)."""
    mo = _SPEC_RE.match(spec)
    if not mo:
        raise ValueError("bad spec %r" % spec)
    return mo.group(1), mo.group(2).count("[")


# --------------------------------------------------------------------------
# the plan, from the committed tables (names only)


def table_plan(arch: str, release: str, family: Optional[str] = None) -> Plan:
    """The plan of the core tables (or of ``family``'s) of ``release`` on ``arch``."""
    from xenprivcmd import structs

    keys = structs.keys_for(arch, release) if family is None else structs.family_keys(arch, family, release)
    if keys is None:
        raise KeyError("no %s tables for %s" % (structs.table_id(arch, family), release))
    return set_plan(structs.table_id(arch, family), keys[0])


def set_plan(arch: str, key: str) -> Plan:
    """The plan of layout set ``key`` of table ``arch`` (an arch or a table id)."""
    from xenprivcmd import structs

    lset = structs.layout_set(arch, key)
    rows: Dict[str, Tuple[str, Tuple[Tuple[str, str], ...]]] = {}
    sid_name: Dict[int, str] = {}

    def respec(spec: str) -> str:
        base, _n = split_spec(spec)
        if not base.startswith("#"):
            return spec
        sid = int(base[1:])
        return "@" + visit(sid) + spec[len(base):]

    def visit(sid: int) -> str:
        if sid in sid_name:
            return sid_name[sid]
        cname, kind, _size, _align, fields = structs.struct_row(arch, sid)
        sid_name[sid] = cname
        rows[cname] = (kind, ())
        rows[cname] = (kind, tuple((fn, respec(sp)) for fn, _off, sp in fields))
        return cname

    names = {n: respec(sp) for n, sp in sorted(lset.items())}
    for n, sp in names.items():
        if sp.startswith("@") and "[" not in sp and sp[1:] == n:
            continue
        if sp.startswith("@") and sp[1:].split("[")[0] not in names:
            raise ValueError("%s/%s: %s refers to %s, not in the layout set" % (arch, key, n, sp))
    return names, rows


# --------------------------------------------------------------------------
# compiling and reading the answer


def _tu(headers: Sequence[str]) -> str:
    return "/* generated */\n#include <stdint.h>\n" + "".join('#include "%s"\n' % h for h in headers)


def _compile(arch: str, incdir: str, src: str, workdir: str, extra: Sequence[str] = ()) -> Tuple[int, str, str]:
    path = os.path.join(workdir, "facts.c")
    obj = os.path.join(workdir, "facts.o")
    with open(path, "w") as fh:
        fh.write(src)
    cmd = _base_flags(TARGETS[arch], incdir, extra) + ["-fmax-errors=0", "-O0", "-c", "-o", obj, path]
    p = subprocess.run(cmd, capture_output=True, text=True)
    return p.returncode, p.stderr, obj


def read_section(objpath: str, name: str) -> bytes:
    """Bytes of section ``name`` of an ELF64 object (stdlib only)."""
    with open(objpath, "rb") as fh:
        data = fh.read()
    if data[:4] != b"\x7fELF" or data[4] != 2:
        raise ValueError("%s: not an ELF64 object" % objpath)
    e = "<" if data[5] == 1 else ">"
    shoff, = struct.unpack_from(e + "Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from(e + "HHH", data, 0x3A)

    def sh(i: int) -> Tuple[int, int, int]:
        nm, _typ, _flags, _addr, off, size = struct.unpack_from(e + "IIQQQQ", data, shoff + i * shentsize)
        return nm, off, size

    _n, stroff, _s = sh(shstrndx)
    for i in range(shnum):
        nm, off, size = sh(i)
        end = data.index(b"\0", stroff + nm)
        if data[stroff + nm:end].decode() == name:
            return data[off:off + size]
    raise ValueError("%s: no section %s" % (objpath, name))


def const_names(arch: str, release: str, family: Optional[str] = None) -> List[str]:
    """The constant names (only the names) of the core tables or ``family``'s."""
    from xenprivcmd import structs

    keys = structs.keys_for(arch, release) if family is None else structs.family_keys(arch, family, release)
    if keys is None:
        raise KeyError("no %s tables for %s" % (structs.table_id(arch, family), release))
    return sorted(structs.const_set(structs.table_id(arch, family), keys[1]))


def evaluate(arch: str, incdir: str, head: str, exprs: Sequence[str],
             workdir: str, prelude: Sequence[str] = (), extra: Sequence[str] = ()) -> List[Optional[int]]:
    """Let the compiler evaluate integer constant expressions after the translation
    unit ``head``; None for those that do not compile.  ``extra``: more compiler flags.

    ``prelude`` lines come first, one per expression: a line with an error
    drops its expression too.
    """
    alive = list(range(len(exprs)))
    for _attempt in range(20):
        lines = head.rstrip("\n").split("\n")
        line_of: Dict[int, int] = {}
        for i in alive:
            if prelude and prelude[i]:
                lines.append(prelude[i])
                line_of[len(lines)] = i
        lines.append('__attribute__((section("%s"), used))' % SECTION)
        lines.append("const unsigned long long __xlf_values[] = {")
        lines.append("  %dULL," % MAGIC)
        for i in alive:
            lines.append("  (unsigned long long)(%s)," % exprs[i])
            line_of[len(lines)] = i
        lines.append("  %dULL};" % MAGIC)
        rc, err, obj = _compile(arch, incdir, "\n".join(lines) + "\n", workdir, extra)
        if rc == 0:
            raw = read_section(obj, SECTION)
            e = "<"
            if struct.unpack_from("<Q", raw)[0] != MAGIC:
                e = ">"
            vals = struct.unpack(e + "%dQ" % (len(raw) // 8), raw)
            if len(vals) != len(alive) + 2 or vals[0] != MAGIC or vals[-1] != MAGIC:
                raise RuntimeError("facts section: %d values for %d expressions" % (len(vals), len(alive)))
            out: List[Optional[int]] = [None] * len(exprs)
            for i, v in zip(alive, vals[1:-1]):
                out[i] = v - (1 << 64) if v >= 1 << 63 else v
            return out
        bad = set()
        for mo in re.finditer(r"facts\.c:(\d+):\d+: error", err):
            ln = int(mo.group(1))
            if ln in line_of:
                bad.add(line_of[ln])
        if not bad:
            raise RuntimeError("compiling the facts program failed:\n" + err[-4000:])
        alive = [i for i in alive if i not in bad]
    raise RuntimeError("the facts program did not converge")


# --------------------------------------------------------------------------
# spelling the table's types in C


class _Ctx:
    """Where a row lives: root type ``T`` and the member path to it."""

    def __init__(self, root: str, path: str, base: Optional[str], size: Optional[str]) -> None:
        self.root = root  # C type, e.g. "struct xen_domctl"
        self.path = path  # member designator of the row inside root ("" for the root)
        self.base = base  # C expression: offset of the row inside root (None: not expressible)
        self.size = size  # C expression: sizeof the row (None: an anonymous member)

    def member(self, fname: str) -> str:
        return fname if not self.path else self.path + "." + fname

    def off(self, designator: str) -> str:
        return "__builtin_offsetof(%s, %s)" % (self.root, designator)

    def lvalue(self, designator: str) -> str:
        return "((%s *)0)->%s" % (self.root, designator)


def measure_consts(arch: str, incdir: str, head: str, names: Sequence[str],
                   extra: Sequence[str] = ()) -> Tuple[Dict[str, str], List[str]]:
    """Constant facts (name -> ``"NAME value"``, ``-`` when it does not compile) and the failures."""
    exprs: List[str] = []
    for n in names:
        exprs += ["(%s)" % n, "((%s) < 0)" % n]
    with tempfile.TemporaryDirectory(prefix="layoutfacts-") as wd:
        vals = evaluate(arch, incdir, head, exprs, wd, extra=extra)
    out: Dict[str, str] = {}
    errors: List[str] = []
    for i, n in enumerate(names):
        v, neg = vals[2 * i], vals[2 * i + 1]
        if v is None or neg is None:
            out[n] = "%s -" % n
            errors.append("constant %s" % n)
            continue
        v &= (1 << 64) - 1
        out[n] = "%s %d" % (n, v - (1 << 64) if neg else v)
    return out, errors


def measure_tree(arch: str, incdir: str, plan: Plan, head: Optional[str] = None,
                 extra: Sequence[str] = ()) -> Tuple[Dict[str, str], List[str]]:
    """Facts rows (table name -> row text) of one header tree, and the expressions that failed.

    ``head``: the translation unit (default: the core tables' headers); ``extra``: more compiler flags."""
    names, rows = plan
    if head is None:
        head = _tu(pick_headers(incdir))
    with tempfile.TemporaryDirectory(prefix="layoutfacts-") as wd:
        # 1. which table names are C types here (struct X, union X, typedef X)
        cands: List[Tuple[str, str]] = []
        for n, sp in names.items():
            base, _d = split_spec(sp)
            if base.startswith("@") and base[1:] == n and n in rows:
                cands.append((n, "%s %s" % ("union" if rows[n][0] == "u" else "struct", n)))
            cands.append((n, n))
        pre = ["typedef %s __xlf_t%d;" % (sp, i) for i, (_n, sp) in enumerate(cands)]
        got = evaluate(arch, incdir, head, ["sizeof(__xlf_t%d)" % i for i in range(len(cands))], wd, pre, extra)
        spelled: Dict[str, str] = {}
        for (n, spelling), v in zip(cands, got):
            if v is not None:
                spelled.setdefault(n, spelling)
        # 2. a context for every row: directly, else through a parent's member
        ctx: Dict[str, _Ctx] = {}
        for n in rows:
            if n in spelled:
                ctx[n] = _Ctx(spelled[n], "", "0", "sizeof(%s)" % spelled[n])
            else:
                for a, sp in names.items():
                    if sp == "@" + n and a in spelled:
                        ctx[n] = _Ctx(spelled[a], "", "0", "sizeof(%s)" % spelled[a])
                        break

        def anon_base(c: _Ctx, row: str) -> Optional[str]:
            # C puts a struct's first member at its start; a union's members all are
            fields = rows[row][1]
            if not fields:
                return None
            fn, sp = fields[0]
            if fn.startswith("_bitfield"):
                return None
            if fn:
                return c.off(c.member(fn) + "[0]" * split_spec(sp)[1])
            b, _d = split_spec(sp)
            return anon_base(c, b[1:]) if b.startswith("@") else None

        changed = True
        while changed:
            changed = False
            for n in sorted(ctx):
                pc = ctx[n]
                for fn, sp in rows[n][1]:
                    b, dims = split_spec(sp)
                    if not b.startswith("@") or b[1:] in ctx or fn.startswith("_bitfield"):
                        continue
                    child = b[1:]
                    if fn:
                        path = pc.member(fn) + "[0]" * dims
                        ctx[child] = _Ctx(pc.root, path, pc.off(path), "sizeof(%s)" % pc.lvalue(path))
                    else:
                        ctx[child] = _Ctx(pc.root, pc.path, anon_base(pc, child), None)
                    changed = True
        # 3. the expressions
        exprs: List[str] = []
        slots: Dict[Tuple[str, str, str], int] = {}

        def want(key: Tuple[str, str, str], expr: Optional[str]) -> None:
            if expr is not None:
                slots[key] = len(exprs)
                exprs.append(expr)

        def sign_expr(lv: str, sp: str) -> Optional[str]:
            b, dims = split_spec(sp)
            if b not in _INT_BASES:
                return None
            el = lv + "[0]" * dims
            return ("__builtin_types_compatible_p(__typeof__(%s), char) ? 2 : ((__typeof__(%s))-1 < 0)"
                    % (el, el))

        for n, sp in names.items():
            if n in spelled:
                want((n, "", "size"), "sizeof(%s)" % spelled[n])
                if n not in rows:
                    s = sign_expr("(*(%s *)0)" % spelled[n], sp)
                    want((n, "", "sign"), s)
        for n, (_kind, fields) in rows.items():
            c = ctx.get(n)
            if c is None:
                continue
            if n not in spelled:
                want((n, "", "size"), c.size)
            for i, (fn, sp) in enumerate(fields):
                if fn.startswith("_bitfield"):
                    continue
                key = fn or "_anon%d" % i
                if not fn:
                    b, _d = split_spec(sp)
                    ab = anon_base(c, b[1:]) if b.startswith("@") else None
                    if ab is not None and c.base is not None:
                        want((n, key, "off"), "(%s) - (%s)" % (ab, c.base))
                    continue
                des = c.member(fn)
                if c.base is not None:
                    want((n, key, "off"), "%s - (%s)" % (c.off(des), c.base))
                if "[0]" not in sp:  # a flexible array member has no sizeof
                    want((n, key, "size"), "sizeof(%s)" % c.lvalue(des))
                want((n, key, "sign"), sign_expr(c.lvalue(des), sp))
        vals = evaluate(arch, incdir, head, exprs, wd, extra=extra)
    errors = sorted("%s.%s %s: %s" % (n, f or "", what, exprs[i])
                    for (n, f, what), i in slots.items() if vals[i] is None)

    def val(key: Tuple[str, str, str]) -> str:
        i = slots.get(key)
        v = None if i is None else vals[i]
        return "-" if v is None else str(v)

    out: Dict[str, str] = {}
    for n in names:
        parts = [n, val((n, "", "size"))]
        sg = val((n, "", "sign"))
        if sg != "-":
            parts[1] += ":" + "usc"[int(sg)]
        if n in rows and (names[n] == "@" + n):
            for i, (fn, _sp) in enumerate(rows[n][1]):
                key = fn or "_anon%d" % i
                f = "%s:%s:%s" % (key, val((n, key, "off")), val((n, key, "size")))
                sg = val((n, key, "sign"))
                if sg != "-":
                    f += ":" + "usc"[int(sg)]
                parts.append(f)
        out[n] = " ".join(parts)
    return out, errors


# --------------------------------------------------------------------------
# driver


Measured = Tuple[str, Dict[str, str], Dict[str, str], List[str], Dict[str, Tuple[Dict[str, str], Dict[str, str], List[str]]]]


def _measure(args: Tuple[str, str, str, TreePlan]) -> Measured:
    """One header tree: (ref, core rows, core constants, core errors, {family: (rows, constants, errors)})."""
    gitdir, ref, arch, (plan, cnames, fplans) = args
    fams: Dict[str, Tuple[Dict[str, str], Dict[str, str], List[str]]] = {}
    with tempfile.TemporaryDirectory(prefix="xenhdr-") as tmp:
        inc = rel_mod.export_headers(gitdir, ref, tmp)
        facts, errors = measure_tree(arch, inc, plan)
        consts, cerr = measure_consts(arch, inc, _tu(pick_headers(inc)), cnames)
        head = ext_tu(inc, ext_headers(inc))
        for fam, (fplan, fnames) in fplans.items():
            ffacts, ferr = measure_tree(arch, inc, fplan, head)
            fconsts, fcerr = measure_consts(arch, inc, head, fnames)
            fams[fam] = (ffacts, fconsts, ferr + fcerr)
    return ref, facts, consts, errors + cerr, fams


def compiler_version(arch: str) -> str:
    p = subprocess.run([TARGETS[arch].cc, "--version"], capture_output=True, text=True)
    return p.stdout.splitlines()[0] if p.stdout else TARGETS[arch].cc


class _Store:
    """Rows stored once; a tree lists the indexes of its rows."""

    def __init__(self) -> None:
        self.rows: List[str] = []
        self.index: Dict[str, int] = {}

    def ids(self, facts: Dict[str, str]) -> List[int]:
        out = []
        for n in sorted(facts):
            row = facts[n]
            if row not in self.index:
                self.index[row] = len(self.rows)
                self.rows.append(row)
            out.append(self.index[row])
        return out


def build_linux(gitdir: str, arch: str, root: Optional[str]) -> Tuple[Dict[str, Any], Dict[str, str], Dict[str, str]]:
    """The Linux uapi facts of ``arch``: (doc section without row ids, layout facts, constant facts)."""
    from genstructs import linux as linux_mod

    from xenprivcmd import structs

    info = structs.linux_uapi_info(arch)
    if info is None:
        raise SystemExit("no committed Linux uapi table for %s" % arch)
    tid, key, _title, _source = info
    with tempfile.TemporaryDirectory(prefix="xenlinux-") as tmp:
        xen_public = rel_mod.export_headers(gitdir, rel_mod.HEAD_REF, os.path.join(tmp, "xen"))
        tree = linux_mod.local(arch, root) if root else linux_mod.fetch(arch, os.path.join(tmp, "apt"))
        flags = tree.flags(tmp)
        head = linux_mod.linux_tu()
        facts, errors = measure_tree(arch, xen_public, set_plan(tid, key), head, flags)
        consts, cerr = measure_consts(arch, xen_public, head, sorted(structs.const_set(tid, key)), flags)
        section = {"kernel": tree.kernel(), "source": tree.source(), "errors": errors + cerr}
    return section, facts, consts


def build(gitdir: str, arch: str, jobs: int, linux_root: Optional[str] = None) -> Dict[str, Any]:
    from xenprivcmd import abi, structs

    known = {r.name: r for r in rel_mod.list_releases(gitdir)}
    claimed = [r for r in abi.releases() if structs.keys_for(arch, r) is not None]
    missing = [r for r in claimed if r not in known]
    if missing:
        raise SystemExit("releases with no git ref in %s: %s" % (gitdir, " ".join(missing)))
    tree_of: Dict[str, str] = {}
    work: Dict[str, Tuple[str, str, str, TreePlan]] = {}
    for r in claimed:
        t = rel_mod.tree_id(gitdir, known[r].ref)[:12]
        tree_of[r] = t
        if t not in work:
            fplans = {f: (table_plan(arch, r, f), const_names(arch, r, f)) for f in structs.families()
                      if structs.family_keys(arch, f, r) is not None}
            work[t] = (gitdir, known[r].ref, arch, (table_plan(arch, r), const_names(arch, r), fplans))
    print("%s: %d releases, %d header trees" % (arch, len(claimed), len(work)), file=sys.stderr)
    results: Dict[str, Measured] = {}
    trees = list(work)  # in release order
    if jobs > 1:
        with concurrent.futures.ProcessPoolExecutor(jobs) as ex:
            for t, res in zip(trees, ex.map(_measure, [work[t] for t in trees])):
                results[t] = res
    else:
        for t in trees:
            results[t] = _measure(work[t])
    rows, consts = _Store(), _Store()
    linux, lfacts, lconsts = build_linux(gitdir, arch, linux_root)
    linux["rows"], linux["consts"] = rows.ids(lfacts), consts.ids(lconsts)
    if linux["errors"]:
        print("%s Linux uapi: %d expressions did not compile" % (arch, len(linux["errors"])), file=sys.stderr)
    tree_out: Dict[str, Any] = {}
    for t in trees:
        ref, facts, cfacts, errors, fams = results[t]
        tree_out[t] = {"ref": ref, "rows": rows.ids(facts), "consts": consts.ids(cfacts), "errors": errors,
                       "families": {f: {"rows": rows.ids(ff), "consts": consts.ids(fc), "errors": fe}
                                    for f, (ff, fc, fe) in sorted(fams.items())}}
        nerr = len(errors) + sum(len(fe) for _ff, _fc, fe in fams.values())
        if nerr:
            print("%s %s: %d expressions did not compile" % (arch, ref, nerr), file=sys.stderr)
    return {
        "format": 2,
        "arch": arch,
        "compiler": compiler_version(arch),
        "method": "offsetof/sizeof/constants evaluated by the compiler, read from the object's %s section"
                  % SECTION,
        "releases": tree_of,
        "trees": tree_out,
        "linux": linux,
        "rows": rows.rows,
        "consts": consts.rows,
    }


def dump(doc: Dict[str, Any]) -> bytes:
    text = json.dumps(doc, indent=0, sort_keys=True, separators=(",", ":")) + "\n"
    return gzip.compress(text.encode(), compresslevel=9, mtime=0)


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--xen-git", default=DEFAULT_GIT, help="xen.git directory (default %(default)s)")
    ap.add_argument("--arch", action="append", choices=sorted(TARGETS),
                    help="target arch (repeatable; default: every arch with tables)")
    ap.add_argument("--out", default=DEFAULT_OUT, help="output directory (default %(default)s)")
    ap.add_argument("--check", action="store_true", help="do not write; exit 1 if the committed facts differ")
    ap.add_argument("-j", "--jobs", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--linux-root", action="append", default=[], metavar="ARCH=DIR",
                    help="an unpacked linux-libc-dev of ARCH (default: download Debian bookworm's)")
    a = ap.parse_args(argv)
    roots = dict(item.partition("=")[::2] for item in a.linux_root)
    from xenprivcmd import structs

    arches = a.arch or list(structs.arches())
    for arch in arches:
        if shutil.which(TARGETS[arch].cc) is None:
            raise SystemExit("compiler %r for %s not found" % (TARGETS[arch].cc, arch))
    gitdir = rel_mod.find_gitdir(a.xen_git)
    bad = 0
    for arch in arches:
        doc = build(gitdir, arch, a.jobs, roots.get(arch))
        blob = dump(doc)
        path = os.path.join(a.out, "%s.json.gz" % arch)
        if a.check:
            try:
                with open(path, "rb") as fh:
                    old = json.loads(gzip.decompress(fh.read()))
            except FileNotFoundError:
                old = None
            new = json.loads(gzip.decompress(blob))
            if old is None:
                print("MISSING %s" % path)
                bad += 1
                continue
            # the numbers, not the compiler's version string
            for k in sorted(set(old) | set(new)):
                if k != "compiler" and old.get(k) != new.get(k):
                    print("DIFFERS %s: %s" % (path, k))
                    bad += 1
            continue
        os.makedirs(a.out, exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(blob)
        nerr = sum(len(t["errors"]) + sum(len(f["errors"]) for f in t["families"].values())
                   for t in doc["trees"].values())
        print("wrote %s (%d bytes, %d releases, %d trees, %d rows, %d failed expressions)"
              % (path, len(blob), len(doc["releases"]), len(doc["trees"]), len(doc["rows"]), nerr),
              file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
