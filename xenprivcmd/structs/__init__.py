"""Loader for the generated Xen ABI tables (hand-written; the data is not).

The ``_gen_*`` modules beside this file are written by
``tools/gen_structs.py``.  They hold compact, deduplicated data only, as plain
strings: one per struct row, one per layout/constant set (a diff against its
parent set).  This module parses a row only when something asks for it and
turns rows into ``ctypes`` classes lazily, caching each class per (table,
struct layout), so releases sharing a layout share their classes and a
process builds only the structs it touches.

Tables: the *core* tables of an arch (``_gen_<arch>_layouts.py`` and
``_gen_<arch>_consts.py``: domctl, sysctl, xen_version ...) and its *families*
(``_gen_<arch>_<family>.py``: memory, event channels, grants ...), each a
module of its own that is loaded only when one of its names is asked for.
A table id is the arch (``"x86_64"``) for the core tables and
``"<arch>/<family>"`` for a family; struct indexes (``#N`` specs) are per
table.  :class:`StructMap` reaches the families of its release by
:func:`route`, so callers ask for names, never for modules.

Nothing here is imported by ``import xenprivcmd``; use :mod:`xenprivcmd.abi`.
Cheap to import on purpose: no ``re``, ``json``, ``typing``, ``threading`` or ``importlib``.
"""

from __future__ import annotations

import _thread
import ctypes
import sys
from _collections_abc import Mapping as _MappingBase

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import ModuleType
    from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple, Type

    StructRow = Tuple[str, str, int, int, Tuple[Tuple[str, int, str], ...]]
    ReleaseRow = Tuple[str, Tuple[int, ...], Optional[int], Optional[int], Optional[int], bool, str]
    SetRow = Tuple[Optional[str], Dict[str, Any], Tuple[str, ...]]
    _MapBase = Mapping[str, Any]
else:
    _MapBase = _MappingBase

__all__ = [
    "release_table", "head_release", "arches", "keys_for", "tables_id", "layout_set", "const_set", "set_value",
    "ctype_for", "spec_sizeof", "struct_class", "lean_class", "layout_data", "struct_rows", "struct_row",
    "set_rows", "StructMap", "families", "family_title", "family_prefixes", "family_keys", "route", "table_id",
    "family_layout_data", "linux_uapi_info",
]

_lock = _thread.RLock()


def _gen(name: str) -> ModuleType:
    # __import__, not importlib.import_module: importlib's package loads warnings
    full = "%s._gen_%s" % (__name__, name)
    mod = sys.modules.get(full)
    if mod is None:
        __import__(full)
        mod = sys.modules[full]
    return mod


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


def tables_id() -> str:
    """A digest of the generated layout and constant tables."""
    digest: str = _gen("releases").TABLES_ID
    return digest


def keys_for(arch: str, release: str) -> Optional[Tuple[str, str]]:
    """(layout set key, constant set key) of ``release`` on ``arch``, if known."""
    keys: Dict[str, Dict[str, Tuple[str, str]]] = _gen("releases").KEYS
    return keys.get(arch, {}).get(release)


# --------------------------------------------------------------------------
# table families


def families() -> Tuple[str, ...]:
    """The table families (``"memory"``, ``"evtchn"`` ...), in the generator's order."""
    return tuple(_gen("releases").FAMILIES)


def family_title(family: str) -> str:
    """What a family holds, in one line (KeyError for an unknown family)."""
    title: str = _gen("releases").FAMILIES[family][0]
    return title


def family_prefixes(family: str) -> Tuple[str, ...]:
    """The constant name prefixes of a family (KeyError for an unknown family)."""
    prefixes: Tuple[str, ...] = _gen("releases").FAMILIES[family][1]
    return prefixes


def table_id(arch: str, family: Optional[str] = None) -> str:
    """The id of a table: ``arch`` for the core tables, ``arch/family`` for a family."""
    return arch if family is None else "%s/%s" % (arch, family)


def _module_of(tid: str, table: str) -> str:
    arch, _, family = tid.partition("/")
    if family:
        return "%s_%s" % (arch, family)
    return "%s_%s" % (arch, "consts" if table == "CONSTS" else "layouts")


def family_keys(arch: str, family: str, release: str) -> Optional[Tuple[str, str]]:
    """(layout set key, constant set key) of ``release`` in ``family`` on ``arch``, if known."""
    if family not in _gen("releases").FAMILIES:
        return None
    keys: Dict[str, Tuple[str, str]] = _gen(_module_of(table_id(arch, family), "")).KEYS
    return keys.get(release)


def linux_uapi_info(arch: str) -> Optional[Tuple[str, str, str, str]]:
    """(table id, set key, title, source) of the Linux uapi table of ``arch``, if there is one."""
    tid = table_id(arch, "linux_uapi")
    try:
        mod = _gen(_module_of(tid, ""))
    except ImportError:
        return None
    key = next(iter(mod.KEYS))
    return tid, key, mod.TITLE, mod.SOURCE


_routes: Dict[str, Tuple[str, ...]] = {}


def route(name: str) -> Tuple[str, ...]:
    """The families that may hold ``name`` (by their constant prefixes and struct names).

    Cheap: reads only ``_gen_releases.FAMILIES``, never a family's module.
    """
    got = _routes.get(name)
    if got is None:
        fams = _gen("releases").FAMILIES
        key = " %s " % name
        got = _routes.setdefault(name, tuple(
            f for f, (_title, prefixes, snames) in fams.items() if name.startswith(prefixes) or key in snames))
    return got


# --------------------------------------------------------------------------
# rows, parsed on demand

_row_cache: Dict[Tuple[str, int], StructRow] = {}


def _texts(tid: str) -> Tuple[str, ...]:
    texts: Tuple[str, ...] = _gen(_module_of(tid, "LAYOUTS")).STRUCTS
    return texts


def parse_struct(text: str) -> StructRow:
    """One generated struct row: ``name kind size align field:offset:spec ...``."""
    words = text.split(" ")
    fields = []
    for w in words[4:]:
        fname, off, spec = w.split(":")
        fields.append((fname, int(off), spec))
    return (words[0], words[1], int(words[2]), int(words[3]), tuple(fields))


def struct_row(arch: str, sid: int) -> StructRow:
    """Struct layout ``sid`` of table ``arch`` (an arch or a family's table id):
    (C name, 's'|'u', size, align, fields)."""
    ck = (arch, sid)
    row = _row_cache.get(ck)
    if row is None:
        row = _row_cache.setdefault(ck, parse_struct(_texts(arch)[sid]))
    return row


def struct_rows(arch: str) -> Tuple[StructRow, ...]:
    """All struct layouts of table ``arch`` (parses every row: tools and tests, not hot paths)."""
    return tuple(struct_row(arch, i) for i in range(len(_texts(arch))))


def _set_table(tid: str, table: str) -> Dict[str, Tuple[Optional[str], str, str]]:
    rows: Dict[str, Tuple[Optional[str], str, str]] = getattr(_gen(_module_of(tid, table)), table)
    return rows


def _parse_set(changed: str, removed: str, ints: bool) -> Tuple[Dict[str, Any], Tuple[str, ...]]:
    d: Dict[str, Any] = {}
    for w in changed.split():
        name, _, value = w.partition("=")
        d[name] = int(value) if ints else value
    return d, tuple(removed.split())


def set_rows(arch: str, table: str) -> Dict[str, SetRow]:
    """Every row of ``LAYOUTS`` or ``CONSTS``: key -> (parent, changed, removed)."""
    ints = table == "CONSTS"
    out: Dict[str, SetRow] = {}
    for key, (parent, changed, removed) in _set_table(arch, table).items():
        d, rm = _parse_set(changed, removed, ints)
        out[key] = (parent, d, rm)
    return out


_set_cache: Dict[Tuple[str, str, str], Dict[str, Any]] = {}


def _resolve(arch: str, table: str, key: str) -> Dict[str, Any]:
    ck = (arch, table, key)
    got = _set_cache.get(ck)
    if got is not None:
        return got
    with _lock:
        index = _set_table(arch, table)
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
            k = index[k][0]
        cur = dict(base)
        ints = table == "CONSTS"
        for _parent, changed, removed in reversed(chain):
            d, rm = _parse_set(changed, removed, ints)
            for name in rm:
                cur.pop(name, None)
            cur.update(d)
        _set_cache[ck] = cur
        return cur


def set_value(arch: str, table: str, key: str, name: str) -> Any:
    """One name of the set ``key`` of ``LAYOUTS`` or ``CONSTS`` without resolving the whole
    set: the nearest row from ``key`` up to the root that names ``name`` decides (a row's
    changes apply after its removals, as :func:`_resolve` replays them).  KeyError when
    the set lacks it.  What a one-shot command needs: a few names of one release, not the
    replay of every delta since Xen 3.0.0 (hundreds of names parsed)."""
    whole = _set_cache.get((arch, table, key))
    if whole is not None:
        return whole[name]
    index = _set_table(arch, table)
    if key not in index:
        raise KeyError(key)
    changed_tag, removed_tag = " %s=" % name, " %s " % name
    k: Optional[str] = key
    while k is not None:
        parent, changed, removed = index[k]
        at = (" " + changed).find(changed_tag)
        if at >= 0:
            start = at + len(changed_tag) - 1  # index in ``changed`` just past the '='
            end = changed.find(" ", start)
            value = changed[start:] if end < 0 else changed[start:end]
            return int(value) if table == "CONSTS" else value
        if removed and (" " + removed + " ").find(removed_tag) >= 0:
            raise KeyError(name)
        k = parent
    raise KeyError(name)


def layout_set(arch: str, key: str) -> Dict[str, str]:
    """name -> type spec for one (deduplicated) layout set. Do not mutate."""
    return _resolve(arch, "LAYOUTS", key)


def const_set(arch: str, key: str) -> Dict[str, int]:
    """macro name -> value for one (deduplicated) constant set. Do not mutate."""
    return _resolve(arch, "CONSTS", key)


def layout_data(arch: str, release: str) -> Tuple[Tuple[StructRow, ...], Dict[str, str], Dict[str, int]]:
    """Raw committed core tables of one release: (struct rows, layout set, constants)."""
    keys = keys_for(arch, release)
    if keys is None:
        raise KeyError("no tables for release %r on %s" % (release, arch))
    return struct_rows(arch), layout_set(arch, keys[0]), const_set(arch, keys[1])


def family_layout_data(arch: str, family: str, release: str
                       ) -> Tuple[Tuple[StructRow, ...], Dict[str, str], Dict[str, int]]:
    """Raw committed tables of one family and release: (struct rows, layout set, constants)."""
    keys = family_keys(arch, family, release)
    if keys is None:
        raise KeyError("no %s tables for release %r on %s" % (family, release, arch))
    tid = table_id(arch, family)
    return struct_rows(tid), layout_set(tid, keys[0]), const_set(tid, keys[1])


# --------------------------------------------------------------------------
# ctypes class construction

_SCALARS: Dict[str, Any] = {
    "u8": ctypes.c_uint8, "u16": ctypes.c_uint16, "u32": ctypes.c_uint32, "u64": ctypes.c_uint64,
    "i8": ctypes.c_int8, "i16": ctypes.c_int16, "i32": ctypes.c_int32, "i64": ctypes.c_int64,
    "c": ctypes.c_char, "f32": ctypes.c_float, "f64": ctypes.c_double,
}
_PTR_SIZE: Dict[str, int] = {"x86_64": 8, "aarch64": 8, "x86_32": 4, "arm32": 4}

_class_cache: Dict[Tuple[str, int], Type[Any]] = {}
_lean_cache: Dict[Tuple[str, int], Type[Any]] = {}
_type_cache: Dict[Tuple[str, str], Any] = {}


def _scalar(tid: str, base: str) -> Any:
    arch = tid.partition("/")[0]
    if base in ("h", "p"):
        # guest handles and raw pointers: an integer of the target's width
        # (XEN_GUEST_HANDLE_64 is always 8 bytes; on 64-bit targets so is
        # XEN_GUEST_HANDLE)
        return ctypes.c_uint64 if _PTR_SIZE.get(arch, 8) == 8 or base == "h" else ctypes.c_uint32
    try:
        return _SCALARS[base]
    except KeyError:
        raise ValueError("unknown type spec %r" % base) from None


def parse_spec(spec: str) -> Tuple[str, List[int]]:
    """``'#12[4][2]'`` -> (``'#12'``, [4, 2]); ValueError for anything else."""
    base, sep, rest = spec.partition("[")
    dims: List[int] = []
    if sep:
        if not rest.endswith("]"):
            raise ValueError("bad type spec %r" % spec)
        for d in rest[:-1].split("]["):
            if not d.isdigit() or not d.isascii():
                raise ValueError("bad type spec %r" % spec)
            dims.append(int(d))
    ok = (base in _SCALARS or base in ("h", "p")
          or (base[:1] == "#" and base[1:].isdigit() and base[1:].isascii()))
    if not ok:
        raise ValueError("bad type spec %r" % spec)
    return base, dims


def ctype_for(arch: str, spec: str) -> Any:
    """The ctypes type for a generated type spec (cached)."""
    ck = (arch, spec)
    t = _type_cache.get(ck)
    if t is not None:
        return t
    base, dims = parse_spec(spec)
    if base.startswith("#"):
        t = struct_class(arch, int(base[1:]))
    else:
        t = _scalar(arch, base)
    for d in reversed(dims):
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
    cls = _class_cache.get(ck)
    if cls is not None:
        return cls
    with _lock:
        cls = _class_cache.get(ck)
        if cls is None:
            cls = _class_cache[ck] = _build(arch, sid, lambda spec: ctype_for(arch, spec))
        return cls


def lean_class(arch: str, sid: int) -> Type[Any]:
    """Like :func:`struct_class`, but every union field is a :class:`LazyUnion`.

    Meant for the domctl/sysctl wrappers, whose ``u`` unions hold every
    sub-op's structure: ``req.u.getdomaininfolist`` builds that one member's
    class on first use instead of all of them up front.  Sizes and offsets
    are the same as :func:`struct_class`'s (the tests compare the two).
    """
    ck = (arch, sid)
    cls = _lean_cache.get(ck)
    if cls is not None:
        return cls

    def field_type(spec: str) -> Any:
        base, dims = parse_spec(spec)
        if base[:1] == "#" and not dims and struct_row(arch, int(base[1:]))[1] == "u":
            return _lazy_union(arch, int(base[1:]))
        return ctype_for(arch, spec)

    with _lock:
        cls = _lean_cache.get(ck)
        if cls is None:
            cls = _lean_cache[ck] = _build(arch, sid, field_type)
        return cls


def _build(arch: str, sid: int, field_type: Any) -> Type[Any]:
    cname, kind, size, align, fields = struct_row(arch, sid)
    flist: List[Tuple[str, Any]] = []
    anonymous: List[str] = []
    names = {f[0] for f in fields}
    pos = 0
    for i, (fname, off, spec) in enumerate(fields):
        ft = field_type(spec)
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
            "union" if kind == "u" else "struct", cname, arch.partition("/")[0], size, align),
        "_pack_": 1,
        "_layout_": "ms",  # explicit: all padding is spelled out (Python >= 3.14)
        "_xen_name_": cname,
        "_xen_arch_": arch.partition("/")[0],
        "_xen_table_": arch,
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
    return cls


class LazyUnion(ctypes.Union):
    """Base of the lazy unions of :func:`lean_class`: raw bytes, members on demand.

    ``u.member`` is a view of the member's full ctypes class over the union's
    memory (built on first use, then cached per class); assigning a member
    copies its bytes in.  ``_xen_members_`` maps member name -> type spec.
    """

    _fields_ = []  # type: ignore[misc]  # the subclasses' raw bytes
    _xen_arch_ = ""
    _xen_table_ = ""
    _xen_name_ = ""
    _xen_size_ = 0
    _xen_members_: Dict[str, str] = {}
    _xen_types_: Dict[str, Any] = {}

    @classmethod
    def member_type(cls, name: str) -> Any:
        t = cls._xen_types_.get(name)
        if t is None:
            spec = cls._xen_members_.get(name)
            if spec is None:
                raise AttributeError("%s has no member %r" % (cls.__name__, name))
            t = ctype_for(cls._xen_table_, spec)
            if ctypes.sizeof(t) > cls._xen_size_:  # checked here, not for every member up front
                raise ValueError("%s: member %s does not fit the union" % (cls._xen_name_, name))
            t = cls._xen_types_.setdefault(name, t)
        return t

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return self.member_type(name).from_buffer(self)

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in type(self)._xen_members_:
            raise AttributeError("%s has no member %r" % (type(self).__name__, name))
        t = self.member_type(name)
        if isinstance(value, int) and not isinstance(value, bool):
            value = t(value)
        if not isinstance(value, t):
            raise TypeError("%s.%s takes a %s, not %s" % (type(self).__name__, name, t.__name__,
                                                          type(value).__name__))
        ctypes.memmove(ctypes.addressof(self), ctypes.addressof(value), ctypes.sizeof(t))


def _lazy_union(arch: str, sid: int) -> Any:
    ck = (arch, -1 - sid)
    cls = _lean_cache.get(ck)
    if cls is not None:
        return cls
    cname, kind, size, align, fields = struct_row(arch, sid)
    members = {}
    for i, (fname, off, spec) in enumerate(fields):
        if off != 0:
            raise ValueError("%s: member %s does not start the union" % (cname, fname))
        members[fname or "_anon%d" % i] = spec
    ns: Dict[str, Any] = {
        "__module__": __name__,
        "__doc__": "Xen union %s (%s): %d bytes, align %d; members built on first use." % (
            cname, arch.partition("/")[0], size, align),
        "_pack_": 1,
        "_layout_": "ms",
        "_xen_name_": cname,
        "_xen_arch_": arch.partition("/")[0],
        "_xen_table_": arch,
        "_xen_size_": size,
        "_xen_align_": align,
        "_xen_fields_": fields,
        "_xen_members_": members,
        "_xen_types_": {},
        "_fields_": [("_xen_raw_", ctypes.c_uint8 * size)],
    }
    cls = type(cname, (LazyUnion,), ns)
    return _lean_cache.setdefault(ck, cls)


def _padname(off: int, names: Any) -> str:
    n = "_pad_%d" % off
    while n in names:
        n = "_" + n
    return n


class StructMap(_MapBase):
    """Read-only, lazy mapping: Xen C type name -> ctypes type.

    ``StructMap(arch, key, release)`` holds the core layout set ``key`` of
    ``arch`` and, for a name the core set lacks, the layout sets of
    ``release`` in the families :func:`route` names (each family's module is
    loaded on first need).  Without ``release``, only the table ``arch``
    (an arch or a table id) is read.
    """

    __slots__ = ("_arch", "_key", "_specs", "_one", "_release", "_fams")

    def __init__(self, arch: str, key: str, release: Optional[str] = None) -> None:
        self._arch = arch
        self._key = key
        self._specs: Optional[Dict[str, str]] = None
        self._one: Dict[str, Optional[str]] = {}  # names looked up one by one (``_specs`` not built)
        self._release = release
        self._fams: Dict[str, Dict[str, str]] = {}

    def _core(self, name: str) -> Optional[str]:
        """``name``'s spec in the core set, without resolving the whole set until something needs it."""
        specs = self._specs
        if specs is not None:
            return specs.get(name)
        one = self._one
        if name in one:
            return one[name]
        try:
            v: Optional[str] = set_value(self._arch, "LAYOUTS", self._key, name)
        except KeyError:
            v = None
        one[name] = v
        return v

    def _s(self) -> Dict[str, str]:
        if self._specs is None:
            self._specs = layout_set(self._arch, self._key)
        return self._specs

    def _family(self, family: str) -> Dict[str, str]:
        got = self._fams.get(family)
        if got is None:
            keys = None if self._release is None else family_keys(self._arch, family, self._release)
            got = {} if keys is None else layout_set(table_id(self._arch, family), keys[0])
            self._fams[family] = got
        return got

    def where(self, name: str) -> Tuple[str, str]:
        """(table id, type spec) of ``name``: a ``#N`` spec indexes that table's rows
        (:func:`struct_row`).  KeyError when neither the core set nor a family has it."""
        spec = self._core(name)
        if spec is not None:
            return self._arch, spec
        if self._release is not None:
            for fam in route(name):
                spec = self._family(fam).get(name)
                if spec is not None:
                    return table_id(self._arch, fam), spec
        raise KeyError(name)

    def __getitem__(self, name: str) -> Any:
        tid, spec = self.where(name)
        return ctype_for(tid, spec)

    def _names(self) -> Any:
        if self._release is None:
            return self._s()
        names = set(self._s())
        for fam in families():
            names.update(self._family(fam))
        return names

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._names()))

    def __len__(self) -> int:
        return len(self._names())

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        try:
            self.where(name)
        except KeyError:
            return False
        return True

    def spec(self, name: str) -> str:
        """The raw type spec of ``name`` (e.g. ``'#12'``, ``'c[16]'``) in the table :meth:`where` names."""
        return self.where(name)[1]

    def lean(self, name: str) -> Any:
        """``name``'s class with lazy unions (:func:`lean_class`); for the domctl/sysctl wrappers."""
        tid, spec = self.where(name)
        base, dims = parse_spec(spec)
        if base[:1] != "#" or dims:
            return ctype_for(tid, spec)
        return lean_class(tid, int(base[1:]))

    def __repr__(self) -> str:
        return "<StructMap %s/%s: %d types>" % (self._arch, self._key, len(self))
