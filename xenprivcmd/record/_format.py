"""The recording format: records, their text form, parse/load, and hypercall names.

See :mod:`xenprivcmd.record` for the file format.  ``describe`` and the
``_``-helpers here give the ``call N:`` labels and the field hints of a
replay mismatch; :func:`format_record` writes one record, :func:`parse`
reads a whole recording back.
"""

from __future__ import annotations

import errno as _errno
import re
import struct
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

from ..abi.hypercalls import (
    COMMAND_FAMILIES,
    HYPERCALL_NAMES,
    XENVER_NAMES,
    HYPERVISOR_domctl,
    HYPERVISOR_multicall,
    HYPERVISOR_sysctl,
    HYPERVISOR_xen_version,
    command_name,
)
from ..errors import XenprivcmdError

FORMAT = 1
_MAGIC = "# xenprivcmd hypercall recording, format %d" % FORMAT

ROW = 16


class ReplayMismatch(XenprivcmdError):
    """The library issued something other than what the recording holds.

    ``record`` is the 1-based record number (the ``call N`` of the file),
    ``field`` what differed (``"op"``, ``"args[1]"``, ``"request @0x8"``,
    ``"end of recording"``, ``"unused records"``).
    """

    def __init__(self, message: str, record: Optional[int] = None, field: Optional[str] = None) -> None:
        super().__init__(message)
        self.record = record
        self.field = field


class RecordingFormatError(XenprivcmdError, ValueError):
    """A recording file is malformed or truncated."""


# -- names ------------------------------------------------------------------------

_mc_head = struct.Struct("<QqQ")
_cmd_head = struct.Struct("<II")


def _command(op: int, request: bytes, at: int) -> str:
    """`` getdomaininfo(5)``: the command of the domctl/sysctl/dom0_op request at ``at``."""
    cmd, iv = _cmd_head.unpack(request[at : at + 8].ljust(8, b"\0"))
    return f" {command_name(op, cmd, iv) or 'cmd'}({cmd})"


def describe(op: int, args: Sequence[int], request: Optional[bytes], base: Optional[int] = None) -> str:
    """``domctl(36) getdomaininfo(5)``: the op and, where known, the sub-op."""
    text = f"{HYPERCALL_NAMES.get(op, 'hypercall')}({op})"
    if op in COMMAND_FAMILIES and request is not None and len(request) >= 4:
        text += _command(op, request, 0)
    elif op == HYPERVISOR_multicall and request is not None and base is not None and len(args) > 1:
        text += f" {args[1]} entries:" + ",".join(_entry_labels(args[1], request, base))
    elif op == HYPERVISOR_xen_version:
        name = XENVER_NAMES.get(args[0])
        text += f" {'XENVER_' + name if name else 'sub'}({args[0]})"
    return text


def _entry_labels(count: int, request: bytes, base: int) -> List[str]:
    """`` domctl getvcpuinfo(3)`` per entry of a multicall whose list starts the
    buffer (``base``: the buffer's address when the request was made)."""
    out = []
    for i in range(min(count, len(request) // 64)):
        e_op, _result, e_arg = _mc_head.unpack_from(request, i * 64)
        label = f" {HYPERCALL_NAMES.get(e_op, 'hypercall')}"
        at = e_arg - base
        if e_op in COMMAND_FAMILIES and 0 <= at <= len(request) - 4:
            label += _command(e_op, request, at)
        out.append(label)
    return out


def _field_hint(op: int, offset: int) -> str:
    if op in (HYPERVISOR_domctl, HYPERVISOR_sysctl):
        if offset < 4:
            return " (cmd)"
        if offset < 8:
            return " (interface_version)"
        if op == HYPERVISOR_domctl and offset < 10:
            return " (domain)"
    return ""


def _errno_text(err: int) -> str:
    return f"{_errno.errorcode.get(err, 'E?')} ({err})"


# -- records ------------------------------------------------------------------------

class Record(NamedTuple):
    """One recorded hypercall.

    ``args`` are normalized: ``("buf", offset)`` for an argument that pointed
    into the caller's buffer, ``("int", value)`` otherwise.  ``base`` and
    ``size`` say where that buffer was when recorded (``None`` when no
    argument pointed into one); ``request``/``reply`` are its first
    ``len(request)`` bytes before/after the call, raw.
    """

    number: int
    op: int
    args: Tuple[Tuple[str, int], ...]
    base: Optional[int]
    size: Optional[int]
    request: bytes
    reply: bytes
    result: Optional[int]
    errno: Optional[int]

    @property
    def label(self) -> str:
        return describe(self.op, [v for _, v in self.args], self.request if self.base is not None else None,
                        self.base)


def _arg_text(arg: Tuple[str, int]) -> str:
    kind, value = arg
    return f"buf+{value:#x}" if kind == "buf" else f"{value:#x}"


def _pointers(data: bytes, base: int, size: int) -> Dict[int, int]:
    """{offset in data: offset in the buffer} of the 8-byte words pointing into it."""
    end = base + size
    out = {}
    n = len(data) - len(data) % 8
    for i, (word,) in enumerate(struct.iter_unpack("<Q", data[:n])):
        if base <= word < end:
            out[8 * i] = word - base
    return out


def _normalize(data: bytes, base: int, size: int) -> Tuple[bytes, Dict[int, int]]:
    """``data`` with its pointer words zeroed and trailing zeros dropped, and the pointers."""
    ptrs = _pointers(data, base, size)
    if ptrs:
        b = bytearray(data)
        for at in ptrs:
            b[at : at + 8] = bytes(8)
        data = bytes(b)
    return data.rstrip(b"\0"), ptrs


def _relocate(data: bytes, old_base: int, old_size: int, new_base: int) -> bytes:
    """``data`` with its words pointing into the old buffer moved to the new one."""
    ptrs = _pointers(data, old_base, old_size)
    if not ptrs:
        return data
    b = bytearray(data)
    for at, off in ptrs.items():
        struct.pack_into("<Q", b, at, new_base + off)
    return bytes(b)


def _row_text(offset: int, row: bytes) -> str:
    h = row.hex(" ")
    asc = "".join(chr(c) if 0x20 <= c < 0x7F else "." for c in row)
    return f"  {offset:04x}  {h[:23]}  {h[24:]}  |{asc}|"


def _rows(data: bytes, base: Optional[bytes]) -> List[str]:
    """Hex rows of ``data``: those differing from ``base`` (zero when None), ``*`` for skipped runs."""
    lines: List[str] = []
    skipped = False
    for off in range(0, len(data), ROW):
        row = data[off : off + ROW]
        ref = base[off : off + ROW] if base is not None else bytes(len(row))
        if row == ref:
            skipped = True
            continue
        if skipped:
            lines.append("  *")
        skipped = False
        lines.append(_row_text(off, row))
    if skipped:
        lines.append("  *")
    return lines


def format_record(r: Record) -> str:
    lines = [f"call {r.number}: {r.label}", "args: " + " ".join(_arg_text(a) for a in r.args)]
    if r.base is not None and r.size is not None:
        lines.append(f"buffer: {r.base:#x} {r.size:#x}")
        lines.append(f"request: {len(r.request):#x} bytes")
        lines += _rows(r.request, None)
        if r.reply == r.request:
            lines.append("reply: unchanged")
        else:
            lines.append("reply:")
            lines += _rows(r.reply, r.request)
        preq = _pointers(r.request, r.base, r.size)
        prep = _pointers(r.reply, r.base, r.size)
        if preq or prep:
            parts = []
            for what, ptrs in (("request", preq), ("reply", prep)):
                if ptrs:
                    parts.append(what + " " + " ".join(f"{at:#x}->buf+{off:#x}" for at, off in sorted(ptrs.items())))
            lines.append("pointers: " + "; ".join(parts))
    if r.errno is not None:
        lines.append(f"error: {_errno_text(r.errno)}")
    else:
        lines.append(f"result: {r.result} ({(r.result or 0) & 0xFFFFFFFFFFFFFFFF:#x})")
    return "\n".join(lines) + "\n\n"


class Recording(NamedTuple):
    """A parsed recording: header fields (``library``, ``xen``, ``date``,
    ``inner``, ``arch``, ``abi``, ``comment``, ...) and the records."""

    header: Dict[str, str]
    records: List[Record]
    path: str


_CALL = re.compile(r"^call (\d+): (\S+)\((\d+)\)(?: .+)?$")
_HEXROW = re.compile(r"^  ([0-9a-f]{4,})  ((?:[0-9a-f]{2} ){7}[0-9a-f]{2})  ((?:[0-9a-f]{2} ){7}[0-9a-f]{2})  \|.{16}\|$")
_ARG = re.compile(r"^(buf\+)?0x([0-9a-f]+)$")


def parse(text: str, path: str = "<recording>") -> Recording:
    """Parse a recording; :class:`RecordingFormatError` (naming the line) when it is malformed or truncated."""
    lines = text.split("\n")
    pos = 0

    def fail(msg: str, at: Optional[int] = None) -> RecordingFormatError:
        n = (pos if at is None else at) + 1
        return RecordingFormatError(f"{path}:{n}: {msg}")

    if not lines or lines[0].strip() != _MAGIC:
        if lines and lines[0].startswith("# xenprivcmd hypercall recording"):
            raise fail(f"unsupported recording format (this library reads format {FORMAT})", 0)
        raise fail("not a xenprivcmd recording (no header line)", 0)
    header: Dict[str, str] = {}
    records: List[Record] = []
    end_count: Optional[int] = None

    def next_line() -> str:
        nonlocal pos
        pos += 1
        if pos >= len(lines):
            raise fail("file ends inside a record (truncated)")
        return lines[pos]

    def hexblock(n: int, base: Optional[bytes]) -> bytes:
        """Rows until a line that is neither a row nor ``*``; leaves ``pos`` on the last row."""
        nonlocal pos
        data = bytearray(base if base is not None else bytes(n))
        while pos + 1 < len(lines):
            line = lines[pos + 1]
            if line == "  *":
                pos += 1
                continue
            if not line.startswith("  "):
                break
            pos += 1
            m = _HEXROW.match(line)
            if not m:
                raise fail(f"malformed hex row {line!r}")
            off = int(m.group(1), 16)
            if off % ROW or off + ROW > n:
                raise fail(f"hex row at {off:#x} outside the {n:#x}-byte region")
            data[off : off + ROW] = bytes.fromhex(m.group(2) + " " + m.group(3))
        return bytes(data)

    while True:
        pos += 1
        if pos >= len(lines):
            break
        line = lines[pos]
        if not line.strip():
            continue
        if line.startswith("#"):
            body = line[1:].strip()
            if end_count is not None:
                continue
            m_end = re.match(r"^end: (\d+) records?$", body)
            if m_end:
                end_count = int(m_end.group(1))
                continue
            if not records and ":" in body:
                key, _, value = body.partition(":")
                if re.match(r"^[a-z][a-z0-9_-]*$", key):
                    header[key] = value.strip()
            continue
        if end_count is not None:
            raise fail("text after the end trailer")
        m = _CALL.match(line)
        if not m:
            raise fail(f"expected 'call N: ...', not {line!r}")
        index, op = int(m.group(1)), int(m.group(3))
        if index != len(records) + 1:
            raise fail(f"record {index} where {len(records) + 1} was expected")
        line = next_line()
        if not line.startswith("args: "):
            raise fail("expected 'args:'")
        args: List[Tuple[str, int]] = []
        for word in line[6:].split():
            ma = _ARG.match(word)
            if not ma:
                raise fail(f"bad argument {word!r}")
            args.append(("buf" if ma.group(1) else "int", int(ma.group(2), 16)))
        if len(args) != 5:
            raise fail(f"{len(args)} arguments, not 5")
        base = size = None
        request = reply = b""
        line = next_line()
        if line.startswith("buffer: "):
            try:
                base, size = (int(x, 16) for x in line[8:].split())
            except ValueError:
                raise fail("bad 'buffer:' line") from None
            line = next_line()
            mr = re.match(r"^request: 0x([0-9a-f]+) bytes$", line)
            if not mr:
                raise fail("expected 'request: N bytes'")
            n = int(mr.group(1), 16)
            if n % ROW or n > size:
                raise fail(f"request region {n:#x} is not a multiple of {ROW} within the buffer")
            request = hexblock(n, None)
            line = next_line()
            if line == "reply: unchanged":
                reply = request
            elif line == "reply:":
                reply = hexblock(n, request)
            else:
                raise fail("expected 'reply:'")
            line = next_line()
            if line.startswith("pointers: "):
                line = next_line()
        result = err = None
        me = re.match(r"^error: \S+ \((\d+)\)$", line)
        mres = re.match(r"^result: (-?\d+)(?: \(0x[0-9a-f]+\))?$", line)
        if me:
            err = int(me.group(1))
        elif mres:
            result = int(mres.group(1))
        else:
            raise fail("expected 'result:' or 'error:'")
        records.append(Record(index, op, tuple(args), base, size, request, reply, result, err))
    if end_count is None:
        raise RecordingFormatError(f"{path}: no '# end:' trailer: the recording is truncated (or was never closed)")
    if end_count != len(records):
        raise RecordingFormatError(f"{path}: the trailer says {end_count} records, the file holds {len(records)}")
    return Recording(header, records, path)


def load(path: str) -> Recording:
    with open(path, encoding="utf-8") as f:
        return parse(f.read(), path)
