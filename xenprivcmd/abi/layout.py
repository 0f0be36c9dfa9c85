"""Turn generated ctypes layouts into fast readers.

The generated classes (:mod:`xenprivcmd.structs`) carry the offsets; for the
hot paths we precompute one ``struct.Struct`` per (class, field selection) so a
record is read with a single ``unpack_from`` / ``iter_unpack`` straight out of
the hypercall buffer.
"""

from __future__ import annotations

import ctypes
import struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Sequence, Tuple

__all__ = ["fields", "record_reader", "has_field"]

_SCALARS = {
    ctypes.c_uint8: "B",
    ctypes.c_int8: "b",
    ctypes.c_uint16: "H",
    ctypes.c_int16: "h",
    ctypes.c_uint32: "I",
    ctypes.c_int32: "i",
    ctypes.c_uint64: "Q",
    ctypes.c_int64: "q",
    ctypes.c_char: "c",
}


def fields(cls: type) -> Dict[str, Tuple[int, type]]:
    """Field name -> (offset, ctypes type) of a generated structure."""
    out: Dict[str, Tuple[int, type]] = {}
    for entry in getattr(cls, "_fields_", ()):
        name, ctype = entry[0], entry[1]
        out[name] = (getattr(cls, name).offset, ctype)
    return out


def has_field(cls: type, name: str) -> bool:
    return any(entry[0] == name for entry in getattr(cls, "_fields_", ()))


def _code(ctype: type) -> str:
    code = _SCALARS.get(ctype)  # type: ignore[call-overload,arg-type]
    if code is not None:
        return code
    for base, c in _SCALARS.items():
        if issubclass(ctype, base):
            return c
    length = getattr(ctype, "_length_", None)
    elem = getattr(ctype, "_type_", None)
    if length is not None and elem is not None and ctypes.sizeof(elem) == 1:
        return f"{length}s"
    raise TypeError(f"no struct code for {ctype!r}")


def record_reader(cls: type, names: Sequence[str]) -> Tuple[struct.Struct, List[Optional[int]]]:
    """A ``struct.Struct`` reading ``names`` (those the class has) from one record.

    The Struct's size is ``sizeof(cls)``, so ``iter_unpack`` steps over an
    array of records.  The second value maps each requested name to its index
    in the unpacked tuple, or None where this release lacks the field.
    """
    have = fields(cls)
    chosen = sorted((have[n][0], n) for n in names if n in have)
    fmt = ["<"]
    pos = 0
    index: Dict[str, int] = {}
    for i, (offset, name) in enumerate(chosen):
        if offset < pos:
            raise ValueError(f"{cls.__name__}.{name} overlaps the previous field")
        if offset > pos:
            fmt.append(f"{offset - pos}x")
        ctype = have[name][1]
        fmt.append(_code(ctype))
        pos = offset + ctypes.sizeof(ctype)
        index[name] = i
    size = ctypes.sizeof(cls)
    if size > pos:
        fmt.append(f"{size - pos}x")
    st = struct.Struct("".join(fmt))
    if st.size != size:
        raise ValueError(f"reader for {cls.__name__} is {st.size} bytes, the structure {size}")
    return st, [index.get(n) for n in names]
