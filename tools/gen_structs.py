#!/usr/bin/env python3
"""Generate xenprivcmd/structs/ from Xen's public headers.

Typical uses::

    # regenerate everything from a xen.git mirror (all releases, x86_64)
    python3 tools/gen_structs.py --xen-git /path/to/xen.git

    # CI: committed output still equals what the full history gives
    python3 tools/gen_structs.py --check --xen-git /path/to/xen.git

    # CI without a mirror: an installed header tree (Debian libxen-dev)
    # agrees with the committed tables of one release
    python3 tools/gen_structs.py --check --headers /usr/include/xen --release 4.17.5

    # the Linux uapi tables from unpacked linux-libc-dev trees instead of
    # downloading Debian bookworm's (or --no-linux: keep the committed ones)
    python3 tools/gen_structs.py --linux-root x86_64=DIR --linux-root aarch64=DIR2

Method: for every release the public headers are compiled (gcc -g, target
compiler per arch) in one translation unit for the core tables and one for
the table families (genstructs/families.py); struct layouts are read back
from the DWARF (pyelftools), macro values are evaluated by the compiler and
enum constants are read from the DWARF.  The Linux uapi tables
(genstructs/linux.py) come the same way from Debian bookworm's
linux-libc-dev of each arch.  Only names, offsets, sizes and numbers are
emitted.  pyelftools is a generation-time dependency only.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import difflib
import os
import sys
import tempfile
from typing import Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from genstructs import linux as linux_mod  # noqa: E402
from genstructs import releases as rel_mod  # noqa: E402
from genstructs.dwarf import TARGETS, Extracted, extract, extract_families  # noqa: E402
from genstructs.emit import ArchTables, Tables, build_tables, committed_linux, compare_release, linux_tables, render  # noqa: E402
from genstructs.families import FAMILIES  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_OUT = os.path.join(ROOT, "xenprivcmd", "structs")
DEFAULT_GIT = "/work/.mirror/xen-project+xen/repo"


Both = Tuple[Extracted, Dict[str, Extracted]]  # the core tables, the families


def _extract_ref(args: Tuple[str, str, str]) -> Tuple[str, Both]:
    gitdir, ref, arch = args
    with tempfile.TemporaryDirectory(prefix="xenhdr-") as tmp:
        inc = rel_mod.export_headers(gitdir, ref, tmp)
        return ref, (extract(inc, TARGETS[arch]), extract_families(inc, TARGETS[arch], FAMILIES))


def extract_all(gitdir: str, rels: Sequence[rel_mod.Release], arch: str,
                jobs: int) -> Dict[str, Both]:
    """Extract every release (core and families); identical header trees are compiled once."""
    by_tree: Dict[str, str] = {}
    refs: List[str] = []
    tree_of: Dict[str, str] = {}
    for r in rels:
        t = rel_mod.tree_id(gitdir, r.ref)
        tree_of[r.name] = t
        if t not in by_tree:
            by_tree[t] = r.ref
            refs.append(r.ref)
    out: Dict[str, Both] = {}
    work = [(gitdir, ref, arch) for ref in refs]
    if jobs > 1:
        with concurrent.futures.ProcessPoolExecutor(jobs) as ex:
            for ref, e in ex.map(_extract_ref, work):
                out[ref] = e
    else:
        for w in work:
            ref, e = _extract_ref(w)
            out[ref] = e
    return {r.name: out[by_tree[tree_of[r.name]]] for r in rels}


def generate(gitdir: str, arches: Sequence[str], head_ref: str, jobs: int) -> Tables:
    rels = rel_mod.list_releases(gitdir, head_ref)
    per_arch: Dict[str, Dict[str, Extracted]] = {}
    per_fam: Dict[str, Dict[str, Dict[str, Extracted]]] = {}
    for arch in arches:
        use = [r for r in rels if r.xen >= TARGETS[arch].min_xen]
        print("extracting %d releases for %s ..." % (len(use), arch), file=sys.stderr)
        both = extract_all(gitdir, use, arch, jobs)
        per_arch[arch] = {r: b[0] for r, b in both.items()}
        per_fam[arch] = {f.name: {r: b[1][f.name] for r, b in both.items()} for f in FAMILIES}
    return build_tables(rels, per_arch, per_fam, FAMILIES)


def generate_linux(gitdir: str, arches: Sequence[str], head_ref: str,
                   roots: Dict[str, str]) -> Dict[str, Tuple[ArchTables, str, str]]:
    """arch -> (Linux uapi table, title, source); headers from ``roots`` or downloaded."""
    out: Dict[str, Tuple[ArchTables, str, str]] = {}
    with tempfile.TemporaryDirectory(prefix="xenlinux-") as tmp:
        xen_public = rel_mod.export_headers(gitdir, head_ref, os.path.join(tmp, "xen"))
        for arch in arches:
            if arch in roots:
                tree = linux_mod.local(arch, roots[arch])
            else:
                print("downloading linux-libc-dev (%s, %s) ..." % (linux_mod.SUITE, arch), file=sys.stderr)
                tree = linux_mod.fetch(arch, os.path.join(tmp, "apt"))
            e = linux_mod.extract_linux(tree, xen_public)
            out[arch] = (linux_tables(e, tree.kernel()), linux_mod.LINUX.title, tree.source())
    return out


def committed_arches(outdir: str) -> List[str]:
    """Arches of the committed output (so --check covers exactly those)."""
    import ast

    text = _read(os.path.join(outdir, "_gen_releases.py")) or ""
    for node in ast.parse(text).body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "ARCHES":
            return list(ast.literal_eval(node.value))  # type: ignore[arg-type]
    return ["x86_64"]


def _check_compilers(arches: Sequence[str]) -> None:
    import shutil

    for arch in arches:
        if shutil.which(TARGETS[arch].cc) is None:
            raise SystemExit("compiler %r for %s not found (Debian: apt-get install %s)"
                             % (TARGETS[arch].cc, arch,
                                "gcc" if arch == "x86_64" else "gcc-%s-linux-gnu" % arch))


def _read(path: str) -> Optional[str]:
    try:
        with open(path) as fh:
            return fh.read()
    except FileNotFoundError:
        return None


def write_or_check(files: Dict[str, str], outdir: str, check: bool) -> int:
    bad = 0
    for name in sorted(files):
        path = os.path.join(outdir, name)
        old = _read(path)
        new = files[name]
        if old == new:
            continue
        if check:
            bad += 1
            if old is None:
                print("MISSING %s" % path)
                continue
            diff = list(difflib.unified_diff(old.splitlines(), new.splitlines(),
                                             "committed/" + name, "generated/" + name,
                                             n=0, lineterm=""))
            adds = sum(1 for d in diff if d.startswith("+") and not d.startswith("+++"))
            dels = sum(1 for d in diff if d.startswith("-") and not d.startswith("---"))
            print("DIFFERS %s: +%d -%d lines" % (path, adds, dels))
            for line in diff[:40]:
                print("    " + line[:200])
            if len(diff) > 40:
                print("    ... (%d more diff lines)" % (len(diff) - 40))
        else:
            with open(path, "w") as fh:
                fh.write(new)
            print("wrote %s (%d bytes)" % (path, len(new)), file=sys.stderr)
    if check:
        # stale generated files that would no longer be produced
        for fn in sorted(os.listdir(outdir)):
            if fn.startswith("_gen_") and fn.endswith(".py") and fn not in files:
                print("STALE %s" % os.path.join(outdir, fn))
                bad += 1
    return bad


def check_headers(headers: str, release: str, arch: str) -> int:
    """Compare an installed header tree with the committed tables of one release."""
    sys.path.insert(0, ROOT)
    e = extract(headers, TARGETS[arch])
    fams = extract_families(headers, TARGETS[arch], FAMILIES)
    problems = compare_release(e, release, arch, fams)
    nconsts = len(e.constants) + sum(len(f.constants) for f in fams.values())
    for p in problems:
        print("MISMATCH %s" % p)
    nstructs = len(e.structs) + sum(len(f.structs) for f in fams.values())
    if problems:
        print("%s: %d mismatches against committed %s/%s tables (%d structs, %d constants read)"
              % (headers, len(problems), release, arch, nstructs, nconsts))
        return 1
    print("%s: matches committed %s/%s tables (%d structs, %d constants read)"
          % (headers, release, arch, nstructs, nconsts))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--xen-git", help="xen.git directory (bare or not); default %s" % DEFAULT_GIT)
    ap.add_argument("--head-ref", default=rel_mod.HEAD_REF,
                    help="git ref of the development head (default %(default)s)")
    ap.add_argument("--arch", action="append", choices=sorted(TARGETS),
                    help="target arch (repeatable; default x86_64)")
    ap.add_argument("--out", default=DEFAULT_OUT, help="output package dir")
    ap.add_argument("--check", action="store_true",
                    help="do not write; exit 1 if the committed output differs")
    ap.add_argument("--headers", help="check one installed public header tree (needs --release)")
    ap.add_argument("--release", help="release whose committed tables --headers is checked against")
    ap.add_argument("--linux-root", action="append", default=[], metavar="ARCH=DIR",
                    help="an unpacked linux-libc-dev of ARCH for the Linux uapi tables "
                         "(default: download Debian %s's)" % linux_mod.SUITE)
    ap.add_argument("--no-linux", action="store_true",
                    help="keep the committed Linux uapi tables (no download)")
    ap.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1)
    a = ap.parse_args(argv)
    arches = a.arch or committed_arches(a.out)
    if a.headers:
        arches = a.arch or ["x86_64"]
        if not a.check or not a.release:
            ap.error("--headers is only supported with --check and --release")
        return max(check_headers(a.headers, a.release, arch) for arch in arches)
    _check_compilers(arches)
    roots: Dict[str, str] = {}
    for item in a.linux_root:
        arch, sep, path = item.partition("=")
        if not sep or arch not in TARGETS:
            ap.error("--linux-root wants ARCH=DIR with ARCH one of %s" % ", ".join(sorted(TARGETS)))
        roots[arch] = path
    gitdir = rel_mod.find_gitdir(a.xen_git or DEFAULT_GIT)
    tables = generate(gitdir, arches, a.head_ref, a.jobs)
    if a.no_linux:
        tables.linux = {k: v for k, v in committed_linux().items() if k in arches}
    else:
        tables.linux = generate_linux(gitdir, arches, a.head_ref, roots)
    files = render(tables)
    bad = write_or_check(files, a.out, a.check)
    if a.check:
        if bad:
            print("gen_structs --check: %d generated file(s) differ from %s" % (bad, a.out))
            return 1
        print("gen_structs --check: %d files up to date" % len(files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
