"""The simulator's own reading of the generated layout rows.

The library decodes replies with ctypes classes built from the generated
tables; the simulator must not echo those, so it reads the *raw rows*
(:func:`xenprivcmd.structs.layout_data`) itself and turns every structure it
needs into flat ``struct`` formats: a dotted path (``"u.getdomaininfo.tot_pages"``)
-> (offset, :class:`struct.Struct`).  Requests are read from, and replies
written into, a ``bytearray`` copy of the caller's structure with those.
"""

from __future__ import annotations

import re
import struct
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ..structs import family_layout_data, layout_data

_SPEC = re.compile(r"^([a-z]\d*|c|h|p|#\d+)((?:\[\d+\])*)$")
_DIM = re.compile(r"\[(\d+)\]")

# spec code -> (struct code, size); guest handles are 8 bytes on every 64-bit target
_CODES: Dict[str, Tuple[str, int]] = {
    "u8": ("B", 1), "u16": ("H", 2), "u32": ("I", 4), "u64": ("Q", 8),
    "i8": ("b", 1), "i16": ("h", 2), "i32": ("i", 4), "i64": ("q", 8),
    "c": ("c", 1), "h": ("Q", 8), "p": ("Q", 8), "f32": ("f", 4), "f64": ("d", 8),
}

Row = Tuple[str, str, int, int, Tuple[Tuple[str, int, str], ...]]


class Field:
    """One leaf: a scalar, a scalar array or a byte string at ``offset``."""

    __slots__ = ("offset", "st", "count", "is_bytes")

    def __init__(self, offset: int, code: str, count: int, is_bytes: bool) -> None:
        self.offset = offset
        self.count = count
        self.is_bytes = is_bytes
        fmt = f"<{count}s" if is_bytes else (f"<{count}{code}" if count > 1 else f"<{code}")
        self.st = struct.Struct(fmt)

    @property
    def size(self) -> int:
        return self.st.size


class Layout:
    """Flattened view of one C structure: path -> :class:`Field`."""

    __slots__ = ("name", "size", "fields")

    def __init__(self, name: str, size: int, fields: Dict[str, Field]) -> None:
        self.name = name
        self.size = size
        self.fields = fields

    def __contains__(self, path: object) -> bool:
        return path in self.fields

    def has_prefix(self, prefix: str) -> bool:
        p = prefix + "."
        return any(k.startswith(p) for k in self.fields)

    def get(self, buf: Any, path: str, base: int = 0) -> Any:
        f = self.fields[path]
        v = f.st.unpack_from(buf, base + f.offset)
        return v[0] if len(v) == 1 else v

    def put(self, buf: Any, path: str, value: Any, base: int = 0) -> None:
        f = self.fields[path]
        if f.is_bytes or f.count == 1:
            f.st.pack_into(buf, base + f.offset, value)
        else:
            f.st.pack_into(buf, base + f.offset, *value)

    def offset(self, path: str) -> int:
        return self.fields[path].offset

    def sub(self, prefix: str) -> "Layout":
        """The member structure at ``prefix`` (offsets relative to it)."""
        p = prefix + "."
        items = {k[len(p):]: v for k, v in self.fields.items() if k.startswith(p)}
        if not items:
            raise KeyError(f"{self.name} has no member {prefix!r}")
        base = min(f.offset for f in items.values())
        out = {k: Field(f.offset - base, f.st.format[-1], f.count, f.is_bytes) for k, f in items.items()}
        end = max(f.offset + f.size for f in out.values())
        return Layout(f"{self.name}.{prefix}", end, out)

    def packer(self, size: Optional[int] = None) -> "RecordPacker":
        return RecordPacker(self, self.size if size is None else size)


class RecordPacker:
    """Packs a whole record (every leaf, gaps zeroed) with one ``struct`` call.

    ``pack(values)`` takes a mapping path -> value; missing leaves are 0 (or
    empty bytes).  ``order`` lists the paths in packing order.
    """

    __slots__ = ("st", "order", "defaults", "size")

    def __init__(self, layout: Layout, size: int) -> None:
        leaves = sorted(layout.fields.items(), key=lambda kv: kv[1].offset)
        fmt: List[str] = ["<"]
        pos = 0
        self.order: List[str] = []
        defaults: List[Any] = []
        for path, f in leaves:
            if f.offset < pos:
                continue  # union overlay: the first member wins
            if f.offset > pos:
                fmt.append(f"{f.offset - pos}x")
            code = f.st.format.lstrip("<")
            if f.is_bytes or f.count == 1:
                fmt.append(code)
                self.order.append(path)
                defaults.append(b"" if f.is_bytes else (b"\0" if code == "c" else 0))
            else:
                # scalar arrays: expand into count leaves path[i]
                base_code = code[-1]
                for i in range(f.count):
                    fmt.append(base_code)
                    self.order.append(f"{path}[{i}]")
                    defaults.append(0)
            pos = f.offset + f.size
        if size > pos:
            fmt.append(f"{size - pos}x")
        self.st = struct.Struct("".join(fmt))
        self.size = size
        if self.st.size != size:
            raise ValueError(f"{layout.name}: packed size {self.st.size} != {size}")
        self.defaults = tuple(defaults)

    def pack(self, values: Mapping[str, Any]) -> bytes:
        vals = [values.get(p, d) for p, d in zip(self.order, self.defaults)]
        return self.st.pack(*vals)


class Tables:
    """The layouts and constants of one release, read from the raw rows (of the core tables,
    or of one table ``family``: ``"gnttab"``, ``"rings"``...)."""

    def __init__(self, arch: str, release: str, family: Optional[str] = None) -> None:
        rows, specs, consts = (layout_data(arch, release) if family is None
                               else family_layout_data(arch, family, release))
        self.arch = arch
        self.release = release
        self._rows: Sequence[Row] = rows
        self._specs: Mapping[str, str] = specs
        self.consts: Mapping[str, int] = consts
        self._cache: Dict[str, Layout] = {}

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def layout(self, name: str) -> Layout:
        got = self._cache.get(name)
        if got is None:
            spec = self._specs[name]
            fields: Dict[str, Field] = {}
            size = self._flatten(spec, 0, "", fields)
            got = self._cache[name] = Layout(name, size, fields)
        return got

    def member(self, name: str, path: str) -> Layout:
        """The layout of member ``path`` (dotted) of structure ``name``, with its true size."""
        key = f"{name}:{path}"
        got = self._cache.get(key)
        if got is not None:
            return got
        spec = self._specs[name]
        for part in path.split("."):
            mo = _SPEC.match(spec)
            if not mo or not mo.group(1).startswith("#"):
                raise KeyError(f"{name}.{path}: {part!r} is not inside a structure")
            row = self._rows[int(mo.group(1)[1:])]
            for fname, _off, fspec in row[4]:
                if fname == part:
                    spec = fspec
                    break
            else:
                raise KeyError(f"{name} has no member {path!r}")
        fields: Dict[str, Field] = {}
        size = self._flatten(spec, 0, "", fields)
        got = self._cache[key] = Layout(f"{name}.{path}", size, fields)
        return got

    def _flatten(self, spec: str, base: int, prefix: str, out: Dict[str, Field]) -> int:
        """Add the leaves of ``spec`` at ``base`` under ``prefix``; return its size."""
        mo = _SPEC.match(spec)
        if not mo:
            raise ValueError(f"bad type spec {spec!r}")
        kind, dims = mo.group(1), [int(d) for d in _DIM.findall(mo.group(2))]
        n = 1
        for d in dims:
            n *= d
        if kind.startswith("#"):
            row = self._rows[int(kind[1:])]
            size = row[2]
            for i in range(n):
                at = base + i * size
                p = prefix if not dims else f"{prefix}[{i}]"
                for fname, off, fspec in row[4]:
                    child = p if not fname else (f"{p}.{fname}" if p else fname)
                    self._flatten(fspec, at + off, child, out)
            return size * n
        code, size = _CODES[kind]
        if dims:
            out[prefix] = Field(base, code, n, is_bytes=size == 1 and kind in ("u8", "c", "i8"))
        else:
            out[prefix] = Field(base, code, 1, is_bytes=False)
        return size * n

    def const(self, name: str, default: Optional[int] = None) -> Optional[int]:
        v = self.consts.get(name)
        return default if v is None else int(v)
