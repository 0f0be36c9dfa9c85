"""Flattened device trees (DTB): build one from a tree of nodes, and read one back.

The format is the Devicetree Specification's (v0.4, chapter 5), version 17: a 40-byte
header, the memory reservation map, the structure block (``FDT_BEGIN_NODE``, ``FDT_PROP``,
``FDT_END_NODE``, ``FDT_NOP``, ``FDT_END`` tokens, big-endian, 4-byte aligned) and the
strings block of property names.

>>> root = Node("", [("#address-cells", u32(2)), ("model", string("demo"))],
...             [Node("chosen", [("bootargs", string("console=hvc0"))])])
>>> blob = dtb(root)
>>> blob[:4].hex(), len(blob)
('d00dfeed', 182)
>>> parse_dtb(blob)[0] == root
True
"""

from __future__ import annotations

import struct

from ..errors import DecodeError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

__all__ = ["Node", "dtb", "parse_dtb", "u32", "u64", "cells", "string", "strings", "FDT_MAGIC"]

FDT_MAGIC = 0xD00DFEED
FDT_BEGIN_NODE, FDT_END_NODE, FDT_PROP, FDT_NOP, FDT_END = 1, 2, 3, 4, 9
VERSION, LAST_COMP_VERSION = 17, 16
HEADER = struct.Struct(">10I")

_NODE_CHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ,._+-")
_PROP_CHARS = _NODE_CHARS | frozenset("?#")


def _check_node_name(name: str) -> None:
    base, _, unit = name.partition("@")
    if not base or len(base) > 31 or not set(base) <= _NODE_CHARS or not set(unit) <= _NODE_CHARS:
        raise ValueError(f"{name!r} is not a device tree node name (1-31 of [A-Za-z0-9,._+-], then @unit-address)")


class Node:
    """A device tree node: ``name`` (``""`` for the root, ``"cpu@0"`` ...), ``props`` in
    order as (name, value bytes) pairs, ``children`` in order.  Immutable; equal when
    name, properties and children are.  Raises ``ValueError`` for a name the
    specification does not allow, or a property or child name given twice.
    """

    __slots__ = ("name", "props", "children")

    name: str
    props: Tuple[Tuple[str, bytes], ...]
    children: Tuple[Node, ...]

    def __init__(self, name: str, props: Iterable[Tuple[str, bytes]] = (), children: Iterable[Node] = ()) -> None:
        props_t = tuple((str(k), bytes(v)) for k, v in props)
        children_t = tuple(children)
        if name:
            _check_node_name(name)
        seen = set()
        for k, _ in props_t:
            if not k or len(k) > 31 or not set(k) <= _PROP_CHARS:
                raise ValueError(f"{k!r} is not a property name (1-31 of [A-Za-z0-9,._+?#-])")
            if k in seen:
                raise ValueError(f"node {name or '/'!r}: property {k!r} given twice")
            seen.add(k)
        names = [c.name for c in children_t]
        if len(set(names)) != len(names):
            raise ValueError(f"node {name or '/'!r}: two children have the same name")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "props", props_t)
        object.__setattr__(self, "children", children_t)

    def __setattr__(self, key: str, value: object) -> None:
        raise AttributeError("Node is immutable")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Node):
            return NotImplemented
        return (self.name, self.props, self.children) == (other.name, other.props, other.children)

    def __hash__(self) -> int:
        return hash((self.name, self.props, self.children))

    def __repr__(self) -> str:
        return f"Node({self.name!r}, {len(self.props)} properties, {len(self.children)} children)"

    def prop(self, name: str) -> Optional[bytes]:
        """A property's value, ``None`` when absent."""
        for k, v in self.props:
            if k == name:
                return v
        return None

    def child(self, name: str) -> Optional[Node]:
        """The child called ``name`` (``"cpus"``, ``"memory@40000000"``), ``None`` when absent."""
        for c in self.children:
            if c.name == name:
                return c
        return None

    def find(self, path: str) -> Optional[Node]:
        """The node at ``path`` (``"/cpus/cpu@0"``) below this one, ``None`` when absent."""
        node: Optional[Node] = self
        for part in path.strip("/").split("/"):
            if part and node is not None:
                node = node.child(part)
        return node


# -- property values ---------------------------------------------------------------------------

def u32(*values: int) -> bytes:
    """Big-endian 32-bit cells."""
    return struct.pack(f">{len(values)}I", *values)


def u64(*values: int) -> bytes:
    """Big-endian 64-bit values (two cells each)."""
    return struct.pack(f">{len(values)}Q", *values)


def cells(n: int, value: int) -> bytes:
    """``value`` in ``n`` big-endian cells (``#address-cells``/``#size-cells`` wide).
    Raises ``ValueError`` when it does not fit."""
    if value < 0 or value >> (32 * n):
        raise ValueError(f"{value:#x} does not fit in {n} cell(s)")
    return value.to_bytes(4 * n, "big")


def string(s: str) -> bytes:
    """A NUL-terminated string."""
    if "\0" in s:
        raise ValueError("a device tree string cannot hold NUL")
    return s.encode() + b"\0"


def strings(*ss: str) -> bytes:
    """A string list (``compatible = "a", "b"``)."""
    return b"".join(string(s) for s in ss)


# -- writing -----------------------------------------------------------------------------------

def _pad4(b: bytearray) -> None:
    b += bytes(-len(b) % 4)


def dtb(root: Node, reserve: Sequence[Tuple[int, int]] = (), boot_cpuid_phys: int = 0) -> bytes:
    """The DTB of the tree under ``root`` (whose name must be ``""``), with the memory
    reservations ``reserve`` as (address, size) pairs.  Property names are stored once
    each in the strings block, in order of first use."""
    if root.name:
        raise ValueError(f"the root node has no name, not {root.name!r}")
    struct_block = bytearray()
    names: Dict[str, int] = {}
    strings_block = bytearray()

    def walk(node: Node) -> None:
        struct_block.extend(u32(FDT_BEGIN_NODE))
        struct_block.extend(node.name.encode() + b"\0")
        _pad4(struct_block)
        for k, v in node.props:
            off = names.get(k)
            if off is None:
                off = names[k] = len(strings_block)
                strings_block.extend(k.encode() + b"\0")
            struct_block.extend(u32(FDT_PROP, len(v), off))
            struct_block.extend(v)
            _pad4(struct_block)
        for c in node.children:
            walk(c)
        struct_block.extend(u32(FDT_END_NODE))

    walk(root)
    struct_block.extend(u32(FDT_END))
    rsv = b"".join(u64(a, s) for a, s in reserve) + u64(0, 0)
    off_rsv = HEADER.size                      # 40: 8-byte aligned, as the map wants
    off_struct = off_rsv + len(rsv)
    off_strings = off_struct + len(struct_block)
    total = off_strings + len(strings_block)
    header = HEADER.pack(FDT_MAGIC, total, off_struct, off_strings, off_rsv, VERSION, LAST_COMP_VERSION,
                         boot_cpuid_phys, len(strings_block), len(struct_block))
    return header + rsv + bytes(struct_block) + bytes(strings_block)


# -- reading -----------------------------------------------------------------------------------

def parse_dtb(blob: Union[bytes, bytearray, memoryview]) -> Tuple[Node, List[Tuple[int, int]]]:
    """(root node, memory reservations) of a DTB (version 16 or later; ``FDT_NOP`` tokens,
    such as those libfdt leaves for a deleted node, are skipped).  Raises
    :class:`~xenprivcmd.errors.DecodeError` for anything malformed."""
    data = bytes(blob)
    if len(data) < HEADER.size:
        raise DecodeError("device tree blob shorter than its header")
    (magic, total, off_struct, off_strings, off_rsv, version, last_comp, _cpu, size_strings,
     size_struct) = HEADER.unpack_from(data, 0)
    if magic != FDT_MAGIC:
        raise DecodeError(f"not a device tree blob (magic {magic:#x})")
    if total > len(data) or version < 16 or last_comp > VERSION:
        raise DecodeError(f"device tree blob: total size {total}, version {version}/{last_comp} ({len(data)} bytes)")
    if off_struct + size_struct > total or off_strings + size_strings > total or off_rsv + 16 > total:
        raise DecodeError("device tree blob: a block lies past its end")
    reserve: List[Tuple[int, int]] = []
    pos = off_rsv
    while True:
        if pos + 16 > total:
            raise DecodeError("device tree blob: unterminated memory reservation map")
        addr, size = struct.unpack_from(">QQ", data, pos)
        pos += 16
        if addr == 0 and size == 0:
            break
        reserve.append((addr, size))
    strs = data[off_strings:off_strings + size_strings]
    end = off_struct + size_struct

    def name_at(off: int) -> str:
        stop = strs.find(b"\0", off)
        if off >= len(strs) or stop < 0:
            raise DecodeError(f"device tree blob: property name offset {off} outside the strings block")
        return strs[off:stop].decode("latin-1")

    def token(p: int) -> Tuple[int, int]:
        while True:
            if p + 4 > end:
                raise DecodeError("device tree blob: structure block ends early")
            t = struct.unpack_from(">I", data, p)[0]
            if t != FDT_NOP:
                return t, p + 4
            p += 4

    def node(p: int) -> Tuple[Node, int]:
        stop = data.find(b"\0", p, end)
        if stop < 0:
            raise DecodeError("device tree blob: unterminated node name")
        nm = data[p:stop].decode("latin-1")
        p = (stop + 4) & ~3
        props: List[Tuple[str, bytes]] = []
        children: List[Node] = []
        while True:
            t, p = token(p)
            if t == FDT_PROP:
                if p + 8 > end:
                    raise DecodeError("device tree blob: truncated property")
                ln, off = struct.unpack_from(">II", data, p)
                p += 8
                if p + ln > end:
                    raise DecodeError("device tree blob: property value past the structure block")
                props.append((name_at(off), data[p:p + ln]))
                p = (p + ln + 3) & ~3
            elif t == FDT_BEGIN_NODE:
                c, p = node(p)
                children.append(c)
            elif t == FDT_END_NODE:
                try:
                    return Node(nm, props, children), p
                except ValueError as e:
                    raise DecodeError(f"device tree blob: {e}") from None
            else:
                raise DecodeError(f"device tree blob: unexpected token {t:#x} at {p - 4:#x}")

    t, p = token(off_struct)
    if t != FDT_BEGIN_NODE:
        raise DecodeError("device tree blob: the structure block does not start with a node")
    root, p = node(p)
    t, p = token(p)
    if t != FDT_END:
        raise DecodeError(f"device tree blob: token {t:#x} after the root node, not FDT_END")
    return root, reserve
