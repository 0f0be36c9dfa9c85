"""``python3 -m xenprivcmd.abi``: read the layout tables as C.

    python3 -m xenprivcmd.abi show 4.17 xen_domctl_getdomaininfo   # C, with offsets and sizes
    python3 -m xenprivcmd.abi show 4.17.0 xen_domctl --arch aarch64 --depth 2
    python3 -m xenprivcmd.abi structs 4.17 [PATTERN]               # the struct names of a release
    python3 -m xenprivcmd.abi releases                             # every release, its interface versions

A release is ``MAJOR.MINOR`` (the newest point release of the series) or a
full release name.  Every field line carries ``/* offset size */`` in bytes,
as pahole prints them; holes the compiler left are shown as comments.  Only
the tables are read: no hypervisor is needed.
"""

from __future__ import annotations

import argparse
import difflib
import fnmatch
import sys

from .. import abi as _abi
from .. import structs as _structs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import List, Optional, Sequence, Set, Tuple

__all__ = ["main", "show", "c_declaration"]

#: Type specs of the tables -> C spelling (as Xen's public headers spell them).
_C_NAMES = {"u8": "uint8_t", "u16": "uint16_t", "u32": "uint32_t", "u64": "uint64_t", "i8": "int8_t",
            "i16": "int16_t", "i32": "int32_t", "i64": "int64_t", "c": "char", "h": "XEN_GUEST_HANDLE_64(...)",
            "p": "void *"}
#: Column of the ``/* offset size */`` comments.
_COMMENT_AT = 48


class AbiShowError(LookupError):
    """A release, arch or struct the tables do not have (the CLI prints it as one line)."""


def _row_of(arch: str, spec: str) -> Optional[Tuple[int, Tuple[str, str, int, int, Tuple[Tuple[str, int, str], ...]]]]:
    base, _dims = _structs.parse_spec(spec)
    if base[:1] != "#":
        return None
    sid = int(base[1:])
    return sid, _structs.struct_row(arch, sid)


def _type_name(arch: str, spec: str) -> Tuple[str, str]:
    """(C type, array suffix) of a field spec."""
    base, dims = _structs.parse_spec(spec)
    suffix = "".join(f"[{d}]" for d in dims)
    found = _row_of(arch, spec)
    if found is None:
        return _C_NAMES.get(base, base), suffix
    _sid, (name, kind, _size, _align, _fields) = found
    return f"{'union' if kind == 'u' else 'struct'} {name}", suffix


def c_declaration(arch: str, spec: str, depth: int = 1, indent: int = 0, seen: Optional[Set[int]] = None) -> List[str]:
    """The C lines of the struct or union ``spec`` (``'#N'`` of table ``arch``, an arch or a
    family's table id), nested types expanded ``depth`` levels."""
    found = _row_of(arch, spec)
    if found is None:
        raise AbiShowError(f"{spec} is not a struct or union")
    sid, (name, kind, size, align, fields) = found
    seen = set() if seen is None else seen
    pad = "    " * indent
    lines = [f"{pad}{'union' if kind == 'u' else 'struct'} {name} {{"]
    end = 0
    for fname, off, fspec in fields:
        if kind == "s" and off > end:
            lines.append(f"{pad}    /* XXX {off - end} byte hole */")
        fsize = _structs.spec_sizeof(arch, fspec)
        sub = _row_of(arch, fspec)
        ctype, suffix = _type_name(arch, fspec)
        _base, dims = _structs.parse_spec(fspec)
        if sub is not None and depth > 1 and not dims and sub[0] not in seen:
            inner = c_declaration(arch, fspec, depth - 1, indent + 1, seen | {sid})
            inner[-1] = inner[-1][:-1] + f" {fname};"  # "};" -> "} name;"
            text = inner[-1]
            inner[-1] = f"{text:<{_COMMENT_AT}} /* {off:4d} {fsize:4d} */"
            lines += inner
        else:
            text = f"{pad}    {ctype} {fname}{suffix};"
            lines.append(f"{text:<{_COMMENT_AT}} /* {off:4d} {fsize:4d} */")
        end = max(end, off + fsize)
    if kind == "s" and size > end:
        lines.append(f"{pad}    /* XXX {size - end} byte padding at the end */")
    lines.append(f"{pad}}};")
    if indent == 0:
        lines[-1] = f"{lines[-1]:<{_COMMENT_AT}} /* size {size}, align {align} */"
    return lines


def _variant(release: str, arch: str) -> _abi.Variant:
    try:
        return _abi.variant(release, arch=arch)
    except _abi.UnknownABIError as exc:  # an unknown release, or none at all ("four")
        raise AbiShowError(str(exc)) from None


def show(release: str, name: str, arch: str = _abi.DEFAULT_ARCH, depth: int = 1) -> str:
    """``struct NAME`` of ``release`` on ``arch`` as C, with offsets and sizes."""
    v = _variant(release, arch)
    if name not in v.structs:
        near = difflib.get_close_matches(name, [n for n in v.structs if not n.endswith("_t")], n=3)
        hint = f"; did you mean {', '.join(near)}?" if near else " (see: python3 -m xenprivcmd.abi structs)"
        raise AbiShowError(f"Xen {v.release} ({arch}) has no struct {name!r}{hint}")
    head = f"/* Xen {v.release} {arch}: {_interfaces(v)} */"
    tid, spec = v.structs.where(name)  # the core tables or a family's (its own struct indexes)
    if _row_of(tid, spec) is None:
        ctype, suffix = _type_name(tid, spec)
        return f"{head}\ntypedef {ctype} {name}{suffix};  /* size {_structs.spec_sizeof(tid, spec)} */\n"
    return head + "\n" + "\n".join(c_declaration(tid, spec, depth)) + "\n"


def _structs_of(release: str, arch: str, pattern: Optional[str]) -> str:
    v = _variant(release, arch)
    names = [n for n in v.structs if not n.endswith("_t") and (pattern is None or fnmatch.fnmatch(n, pattern))]
    if pattern is not None and not names:
        raise AbiShowError(f"Xen {v.release} ({arch}) has no struct matching {pattern!r}")
    return "".join(f"{n}\n" for n in names)


def _interfaces(v: _abi.Variant) -> str:
    if v.is_dom0_op:
        return f"dom0_op interface {_abi._h(v.dom0_op_interface_version)}"
    return f"domctl interface {_abi._h(v.domctl_interface_version)}, sysctl interface {_abi._h(v.sysctl_interface_version)}"


def _releases(arch: str) -> str:
    out = []
    for r in _abi.releases():
        try:
            v = _abi.variant(r, arch=arch)
        except _abi.UnknownABIError:
            continue  # a release the arch has no tables for (arm64 before 4.x)
        out.append(f"{r:<16} {_interfaces(v)}\n")
    return "".join(out)


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m xenprivcmd.abi", description="Read xenprivcmd's ABI tables.")
    ap.add_argument("--arch", default=_abi.DEFAULT_ARCH, help="x86_64 (default) or aarch64")
    sub = ap.add_subparsers(dest="what", required=True)
    p = sub.add_parser("show", help="a struct as C, with offsets and sizes")
    p.add_argument("release")
    p.add_argument("struct")
    p.add_argument("--depth", type=int, default=1, help="levels of nested structs to expand (default 1)")
    p.add_argument("--arch", dest="arch_sub", help=argparse.SUPPRESS)
    p = sub.add_parser("structs", help="the struct names of a release")
    p.add_argument("release")
    p.add_argument("pattern", nargs="?", help="a shell pattern, e.g. 'xen_sysctl_*'")
    p.add_argument("--arch", dest="arch_sub", help=argparse.SUPPRESS)
    p = sub.add_parser("releases", help="every release with its interface versions")
    p.add_argument("--arch", dest="arch_sub", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    arch = a.arch_sub or a.arch
    try:
        if arch not in _abi.arches():
            raise AbiShowError(f"no ABI tables for arch {arch!r} (known: {', '.join(_abi.arches())})")
        if a.what == "show":
            if a.depth < 1:
                raise AbiShowError(f"--depth must be 1 or more, not {a.depth}")
            text = show(a.release, a.struct, arch, a.depth)
        elif a.what == "structs":
            text = _structs_of(a.release, arch, a.pattern)
        else:
            text = _releases(arch)
    except AbiShowError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        sys.stdout.write(text)
    except BrokenPipeError:
        pass
    return 0
