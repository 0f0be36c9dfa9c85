"""Loader for the generated Xen ABI tables (hand-written; the data is not).

The ``_gen_*`` modules beside this file are written by
``tools/gen_structs.py``.  They hold compact, deduplicated data only; this
module turns them into ``ctypes`` classes lazily, caching each class per
(arch, struct layout), so releases sharing a layout share their classes.

Nothing here is imported by ``import xenprivcmd``; use :mod:`xenprivcmd.abi`.
"""

from __future__ import annotations

import ctypes
import importlib
import json
import re
import threading
from types import ModuleType
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple, Type

__all__ = [
    "release_table", "head_release", "arches", "keys_for", "layout_set", "const_set",
    "ctype_for", "spec_sizeof", "struct_class", "layout_data", "struct_rows", "StructMap",
]

StructRow = Tuple[str, str, int, int, Tuple[Tuple[str, int, str], ...]]
ReleaseRow = Tuple[str, Tuple[int, ...], Optional[int], Optional[int], Optional[int], bool, str]

_lock = threading.RLock()
_SPEC_RE = re.compile(r"^([a-z]\d*|c|h|p|#\d+)((?:\[\d+\])*)$")
_DIM_RE = re.compile(r"\[(\d+)\]")


def _gen(name: str) -> ModuleType:
    return importlib.import_module("%s._gen_%s" % (__name__, name))


def release_table() -> Tuple[ReleaseRow, ...]:
    """Rows (release, xen tuple, domctl iface, sysctl iface, dom0_op iface, exact, source)."""
    rows: Tuple[ReleaseRow, ...] = _gen("releases").RELEASES
    return rows


def head_release() -> str:
    head: str = _gen("releases").HEAD
    return head


def arches() -> Tuple[str, ...]:
    a: Tuple[str, ...] = _gen("releases").ARCHES
    return a


def keys_for(arch: str, release: str) -> Optional[Tuple[str, str]]:
    """(layout set key, constant set key) of ``release`` on ``arch``, if known."""
    keys: Dict[str, Dict[str, Tuple[str, str]]] = _gen("releases").KEYS
    return keys.get(arch, {}).get(release)


_json_cache: Dict[Tuple[str, str], Any] = {}


def _data(arch: str, table: str) -> Any:
    """Parsed JSON table ``STRUCTS``/``LAYOUTS``/``CONSTS`` of ``arch`` (cached)."""
    ck = (arch, table)
    got = _json_cache.get(ck)
    if got is None:
        mod = _gen("%s_%s" % (arch, "consts" if table == "CONSTS" else "layouts"))
        got = json.loads(getattr(mod, table + "_JSON"))
        if table == "STRUCTS":
            got = tuple((r[0], r[1], r[2], r[3], tuple((f[0], f[1], f[2]) for f in r[4]))
                        for r in got)
        else:
            got = {r[0]: (r[0], r[1], r[2], tuple(r[3])) for r in got}
        with _lock:
            got = _json_cache.setdefault(ck, got)
    return got


def struct_rows(arch: str) -> Tuple[StructRow, ...]:
    """All struct layouts of ``arch``: (C name, 's'|'u', size, align, fields)."""
    rows: Tuple[StructRow, ...] = _data(arch, "STRUCTS")
    return rows


_set_cache: Dict[Tuple[str, str, str], Dict[str, Any]] = {}


def _resolve(arch: str, table: str, key: str) -> Dict[str, Any]:
    ck = (arch, table, key)
    with _lock:
        got = _set_cache.get(ck)
        if got is not None:
            return got
        index: Dict[str, Tuple[str, Optional[str], Dict[str, Any], Tuple[str, ...]]] = _data(arch, table)
        if key not in index:
            raise KeyError(key)
        # walk up to the nearest cached ancestor (or the root), then replay
        chain = []
        k: Optional[str] = key
        base: Dict[str, Any] = {}
        while k is not None:
            cached = _set_cache.get((arch, table, k))
            if cached is not None:
                base = cached
                break
            chain.append(index[k])
            k = index[k][1]
        cur = dict(base)
        for _rkey, _parent, changed, removed in reversed(chain):
            for name in removed:
                cur.pop(name, None)
            cur.update(changed)
        _set_cache[ck] = cur
        return cur


def layout_set(arch: str, key: str) -> Dict[str, str]:
    """name -> type spec for one (deduplicated) layout set. Do not mutate."""
    return _resolve(arch, "LAYOUTS", key)


def const_set(arch: str, key: str) -> Dict[str, int]:
    """macro name -> value for one (deduplicated) constant set. Do not mutate."""
    return _resolve(arch, "CONSTS", key)


def layout_data(arch: str, release: str) -> Tuple[Tuple[StructRow, ...], Dict[str, str], Dict[str, int]]:
    """Raw committed tables of one release: (struct rows, layout set, constants)."""
    keys = keys_for(arch, release)
    if keys is None:
        raise KeyError("no tables for release %r on %s" % (release, arch))
    return struct_rows(arch), layout_set(arch, keys[0]), const_set(arch, keys[1])


# --------------------------------------------------------------------------
# ctypes class construction

_SCALARS: Dict[str, Any] = {
    "u8": ctypes.c_uint8, "u16": ctypes.c_uint16, "u32": ctypes.c_uint32, "u64": ctypes.c_uint64,
    "i8": ctypes.c_int8, "i16": ctypes.c_int16, "i32": ctypes.c_int32, "i64": ctypes.c_int64,
    "c": ctypes.c_char, "f32": ctypes.c_float, "f64": ctypes.c_double,
}
_PTR_SIZE: Dict[str, int] = {"x86_64": 8, "aarch64": 8, "x86_32": 4, "arm32": 4}

_class_cache: Dict[Tuple[str, int], Type[Any]] = {}
_type_cache: Dict[Tuple[str, str], Any] = {}


def _scalar(arch: str, base: str) -> Any:
    if base in ("h", "p"):
        # guest handles and raw pointers: an integer of the target's width
        # (XEN_GUEST_HANDLE_64 is always 8 bytes; on 64-bit targets so is
        # XEN_GUEST_HANDLE)
        return ctypes.c_uint64 if _PTR_SIZE.get(arch, 8) == 8 or base == "h" else ctypes.c_uint32
    try:
        return _SCALARS[base]
    except KeyError:
        raise ValueError("unknown type spec %r" % base) from None


def ctype_for(arch: str, spec: str) -> Any:
    """The ctypes type for a generated type spec (cached)."""
    ck = (arch, spec)
    t = _type_cache.get(ck)
    if t is not None:
        return t
    mo = _SPEC_RE.match(spec)
    if not mo:
        raise ValueError("bad type spec %r" % spec)
    base, dims = mo.group(1), mo.group(2)
    if base.startswith("#"):
        t = struct_class(arch, int(base[1:]))
    else:
        t = _scalar(arch, base)
    for d in reversed([int(x) for x in _DIM_RE.findall(dims)]):
        t = t * d
    with _lock:
        _type_cache.setdefault(ck, t)
        return _type_cache[ck]


def spec_sizeof(arch: str, spec: str) -> int:
    """sizeof of a generated type spec, in bytes."""
    return ctypes.sizeof(ctype_for(arch, spec))


def struct_class(arch: str, sid: int) -> Type[Any]:
    """Build (once) the ctypes class for struct layout ``sid`` of ``arch``.

    The class is packed (``_pack_ = 1``) with explicit ``_pad_<offset>``
    byte-array fields for every gap and for tail padding, so its ``sizeof``
    and field offsets equal the compiler's regardless of ctypes' own
    alignment rules.  The C alignment is kept as ``_xen_align_``.
    """
    ck = (arch, sid)
    with _lock:
        cls = _class_cache.get(ck)
        if cls is not None:
            return cls
        cname, kind, size, align, fields = struct_rows(arch)[sid]
        flist: List[Tuple[str, Any]] = []
        anonymous: List[str] = []
        names = {f[0] for f in fields}
        pos = 0
        for i, (fname, off, spec) in enumerate(fields):
            ft = ctype_for(arch, spec)
            if kind == "s":
                if off < pos:
                    raise ValueError("%s: overlapping field %s" % (cname, fname))
                if off > pos:
                    flist.append((_padname(pos, names), ctypes.c_uint8 * (off - pos)))
            if not fname:
                fname = "_anon%d" % i
                anonymous.append(fname)
            flist.append((fname, ft))
            end = off + ctypes.sizeof(ft)
            pos = end if kind == "s" else max(pos, end)
        if pos < size:
            if kind == "s":
                flist.append((_padname(pos, names), ctypes.c_uint8 * (size - pos)))
            else:
                flist.append((_padname(size, names), ctypes.c_uint8 * size))
        base: Any = ctypes.Union if kind == "u" else ctypes.Structure
        ns: Dict[str, Any] = {
            "__module__": __name__,
            "__doc__": "Xen %s %s (%s): %d bytes, align %d." % (
                "union" if kind == "u" else "struct", cname, arch, size, align),
            "_pack_": 1,
            "_layout_": "ms",  # explicit: all padding is spelled out (Python >= 3.14)
            "_xen_name_": cname,
            "_xen_arch_": arch,
            "_xen_size_": size,
            "_xen_align_": align,
            "_xen_fields_": fields,
        }
        if anonymous:
            ns["_anonymous_"] = tuple(anonymous)
        ns["_fields_"] = flist
        cls = type(cname, (base,), ns)
        if ctypes.sizeof(cls) != size:
            raise AssertionError("%s: ctypes size %d != %d" % (cname, ctypes.sizeof(cls), size))
        _class_cache[ck] = cls
        return cls


def _padname(off: int, names: Any) -> str:
    n = "_pad_%d" % off
    while n in names:
        n = "_" + n
    return n


class StructMap(Mapping[str, Any]):
    """Read-only, lazy mapping: Xen C type name -> ctypes type."""

    __slots__ = ("_arch", "_key", "_specs")

    def __init__(self, arch: str, key: str) -> None:
        self._arch = arch
        self._key = key
        self._specs: Optional[Dict[str, str]] = None

    def _s(self) -> Dict[str, str]:
        if self._specs is None:
            self._specs = layout_set(self._arch, self._key)
        return self._specs

    def __getitem__(self, name: str) -> Any:
        spec = self._s()[name]
        return ctype_for(self._arch, spec)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._s()))

    def __len__(self) -> int:
        return len(self._s())

    def __contains__(self, name: object) -> bool:
        return name in self._s()

    def spec(self, name: str) -> str:
        """The raw type spec of ``name`` (e.g. ``'#12'``, ``'c[16]'``)."""
        return self._s()[name]

    def __repr__(self) -> str:
        return "<StructMap %s/%s: %d types>" % (self._arch, self._key, len(self))
