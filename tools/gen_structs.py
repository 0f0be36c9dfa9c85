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

Method: for every release the public headers are compiled (gcc -g, target
compiler per arch) in one translation unit; struct layouts are read back
from the DWARF (pyelftools) and macro values are evaluated by the compiler.
Only names, offsets, sizes and numbers are emitted.  pyelftools is a
generation-time dependency only.
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

from genstructs import releases as rel_mod  # noqa: E402
from genstructs.dwarf import TARGETS, Extracted, extract  # noqa: E402
from genstructs.emit import Tables, build_tables, compare_release, render  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_OUT = os.path.join(ROOT, "xenprivcmd", "structs")
DEFAULT_GIT = "/work/.mirror/xen-project+xen/repo"


def _extract_ref(args: Tuple[str, str, str]) -> Tuple[str, Extracted]:
    gitdir, ref, arch = args
    with tempfile.TemporaryDirectory(prefix="xenhdr-") as tmp:
        inc = rel_mod.export_headers(gitdir, ref, tmp)
        return ref, extract(inc, TARGETS[arch])


def extract_all(gitdir: str, rels: Sequence[rel_mod.Release], arch: str,
                jobs: int) -> Dict[str, Extracted]:
    """Extract every release; identical header trees are compiled once."""
    by_tree: Dict[str, str] = {}
    refs: List[str] = []
    tree_of: Dict[str, str] = {}
    for r in rels:
        t = rel_mod.tree_id(gitdir, r.ref)
        tree_of[r.name] = t
        if t not in by_tree:
            by_tree[t] = r.ref
            refs.append(r.ref)
    out: Dict[str, Extracted] = {}
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
    for arch in arches:
        use = [r for r in rels if r.xen >= TARGETS[arch].min_xen]
        print("extracting %d releases for %s ..." % (len(use), arch), file=sys.stderr)
        per_arch[arch] = extract_all(gitdir, use, arch, jobs)
    return build_tables(rels, per_arch)


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
    problems = compare_release(e, release, arch)
    for p in problems:
        print("MISMATCH %s" % p)
    nstructs = len(e.structs)
    if problems:
        print("%s: %d mismatches against committed %s/%s tables (%d structs, %d constants read)"
              % (headers, len(problems), release, arch, nstructs, len(e.constants)))
        return 1
    print("%s: matches committed %s/%s tables (%d structs, %d constants read)"
          % (headers, release, arch, nstructs, len(e.constants)))
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
    ap.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1)
    a = ap.parse_args(argv)
    arches = a.arch or committed_arches(a.out)
    if a.headers:
        arches = a.arch or ["x86_64"]
        if not a.check or not a.release:
            ap.error("--headers is only supported with --check and --release")
        return max(check_headers(a.headers, a.release, arch) for arch in arches)
    _check_compilers(arches)
    gitdir = rel_mod.find_gitdir(a.xen_git or DEFAULT_GIT)
    tables = generate(gitdir, arches, a.head_ref, a.jobs)
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
