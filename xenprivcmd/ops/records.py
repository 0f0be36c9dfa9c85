"""The slow path: rarely used replies decoded with ``construct``.

Topology, NUMA and per-pcpu records are read a few times in a process's life,
so they are parsed with ``construct`` Structs built from the same generated
layouts as the hot path (field names and offsets of the running release),
instead of hand-kept formats.  ``construct`` is imported the first time one of
these is used, never by ``import xenprivcmd`` or by the hot paths.
"""

from __future__ import annotations

import ctypes
from _thread import allocate_lock

from ..abi.layout import fields
from ..errors import DecodeError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Tuple

_lock = allocate_lock()
_cache: Dict[Tuple[type, Tuple[str, ...]], Any] = {}


def _field(c: Any, ctype: type) -> Any:
    size = ctypes.sizeof(ctype)
    length = getattr(ctype, "_length_", None)
    if length is not None:
        return c.Bytes(size)
    signed = issubclass(ctype, (ctypes.c_int8, ctypes.c_int16, ctypes.c_int32, ctypes.c_int64))
    table = {1: c.Int8sl if signed else c.Int8ul, 2: c.Int16sl if signed else c.Int16ul,
             4: c.Int32sl if signed else c.Int32ul, 8: c.Int64sl if signed else c.Int64ul}
    return table[size]


def record(cls: type, names: Tuple[str, ...]) -> Any:
    """A construct Struct reading ``names`` of one ``cls`` record (sizeof(cls) bytes)."""
    key = (cls, names)
    got = _cache.get(key)
    if got is not None:
        return got
    import construct as c

    have = fields(cls)
    missing = [n for n in names if n not in have]
    if missing:
        raise KeyError(f"{cls.__name__} has no field {', '.join(missing)}")
    parts = []
    pos = 0
    for offset, name in sorted((have[n][0], n) for n in names):
        if offset > pos:
            parts.append(c.Padding(offset - pos))
        ctype = have[name][1]
        parts.append(name / _field(c, ctype))
        pos = offset + ctypes.sizeof(ctype)
    if ctypes.sizeof(cls) > pos:
        parts.append(c.Padding(ctypes.sizeof(cls) - pos))
    st = c.Struct(*parts)
    with _lock:
        _cache[key] = st
    return st


def records(cls: type, names: Tuple[str, ...], view: memoryview, offset: int, count: int) -> List[Tuple[int, ...]]:
    """``count`` records of ``cls`` at ``offset`` of ``view``, each as a tuple of ``names``."""
    size = ctypes.sizeof(cls)
    end = offset + count * size
    if count < 0 or end > len(view):
        raise DecodeError(f"{count} {cls.__name__} records do not fit in the {len(view)}-byte buffer")
    import construct as c

    arr = c.Array(count, record(cls, names))
    parsed = arr.parse(bytes(view[offset:end]))
    return [tuple(int(item[n]) for n in names) for item in parsed]
