"""Record real hypercall traffic to a readable text file, and replay it.

:class:`RecordingTransport` wraps another transport (the privcmd device of a
dom0, the simulator, any :class:`~xenprivcmd._privcmd.Transport`) and writes
every hypercall to a text file.  :class:`ReplayTransport` serves such a file
back: each hypercall must match the next record exactly (op, arguments and
request bytes), else :class:`ReplayMismatch` is raised; the recorded reply
bytes are then written into the caller's buffer and the recorded result (or
errno) returned.  So a recording made once inside a real dom0 lets the whole
encode -> hypercall -> decode path run in CI against that hypervisor's bytes.

URIs (see :func:`xenprivcmd.open`):

* ``record:PATH`` / ``record:///PATH?inner=URI&comment=TEXT``: record the
  traffic of ``inner`` (default: the local privcmd device) into ``PATH``;
* ``replay:PATH`` / ``replay:///PATH?strict=0``: serve ``PATH`` back.

File format (version 1), one record per hypercall::

    # xenprivcmd hypercall recording, format 1
    # library: xenprivcmd 0.2.0
    # xen: 4.17.7
    # ...
    call 7: domctl(36) getdomaininfo(5)
    args: buf+0x0 0x0 0x0 0x0 0x0
    buffer: 0x7f5c2a9e0000 0x1000
    request: 0x90 bytes
      0000  05 00 00 00 15 00 00 00  00 00 00 00 00 00 00 00  |................|
      *
    reply:
      0010  00 00 00 00 00 00 00 00  03 00 00 00 ...  |................|
    result: 0

    # end: 57 records

``args`` are the five hypercall arguments; one pointing into the caller's
hypercall buffer is written ``buf+OFFSET`` (addresses differ between runs).
``buffer`` is where that buffer was when recorded (address, size).  The
request is the buffer from offset 0 to its last non-zero byte before or after
the call, rounded up to 16 bytes (so guest-handle payloads at offset 4096 are
in); rows are ``OFFSET  16 hex bytes  |ASCII|``.  Rows not shown are zero in
a request and equal to the request in a reply; ``*`` marks skipped rows.
8-byte words that point into the buffer (guest handles) are compared and
restored relative to the buffer (``pointers:`` lists them, for the reader).
The result is ``result: N`` or ``error: ENAME (N)``.  The ``# end:`` trailer
is written on close: a file without it is truncated and refused.

Run ``python -m xenprivcmd.record make OUTFILE [--inner URI]`` inside a dom0
to record the fixed read-only scenario (:func:`run_scenario`) with a JSON
sidecar of its decoded results; ``check RECFILE`` replays one against it.
"""

from __future__ import annotations

import argparse
import datetime
import errno as _errno
import json
import os
import re
import struct
import sys
import threading
import uuid
from typing import IO, Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union
from urllib.parse import parse_qsl, quote

from ._hypercalls import (
    COMMAND_FAMILIES,
    HYPERCALL_NAMES,
    XENVER_NAMES,
    HYPERVISOR_domctl,
    HYPERVISOR_multicall,
    HYPERVISOR_sysctl,
    HYPERVISOR_xen_version,
    XENVER_extraversion,
    XENVER_extraversion2,
    XENVER_version,
    command_name,
)
from ._privcmd import PAGE_SIZE, Buffer, MemoryTransport, Transport
from .errors import XenError, XenprivcmdError

__all__ = [
    "FORMAT",
    "ReplayMismatch",
    "RecordingFormatError",
    "Record",
    "Recording",
    "RecordingTransport",
    "ReplayTransport",
    "load",
    "parse",
    "open_record",
    "open_replay",
    "run_scenario",
    "make",
    "check",
    "sidecar_path",
    "main",
]

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


# -- recording --------------------------------------------------------------------------

def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


class RecordingTransport(Transport):
    """Wraps ``inner`` and writes every hypercall to ``path`` (see the module doc).

    Buffers are the inner transport's (``scratch()`` is delegated, so
    ``buffer_kind`` is the inner one's: real hypervisor-safe memory).  Each
    record is written and flushed as soon as its call returns; :meth:`close`
    writes the trailer (a file without it is refused as truncated).
    Hypercalls are serialized while recording so the file's order is the
    order they were issued in.
    """

    kind = "record"

    @property
    def multicall(self) -> bool:  # type: ignore[override]
        return bool(getattr(self.inner, "multicall", False))

    def __init__(self, inner: Transport, path: str, *, comment: str = "", inner_uri: str = "",
                 arch: str = "", abi: Optional[str] = None) -> None:
        super().__init__()
        self.inner = inner
        self.path = path
        self.buffer_kind = inner.buffer_kind
        self.records = 0
        self._io = threading.Lock()
        self._xen_mm: Optional[Tuple[int, int]] = None
        self._xen_extra: Optional[str] = None
        self._meta = {
            "library": "xenprivcmd " + _library_version(),
            "xen": "unknown",
            "date": _now(),
            "inner": f"{inner_uri or inner.kind} [{inner.describe()}]",
            "arch": arch,
            "abi": abi or "detected",
            "comment": " ".join(comment.split()),
        }
        self._file: Optional[IO[str]] = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._file.write(self._header())
        self._file.flush()

    def _header(self) -> str:
        lines = [_MAGIC] + [f"# {k}: {v}" for k, v in self._meta.items()]
        lines += [
            "#",
            "# One record per hypercall.  args: the five arguments; one pointing into the",
            "# caller's hypercall buffer is written buf+OFFSET.  buffer: where that buffer",
            "# was (address, size).  request/reply: the buffer from offset 0 to its last",
            "# non-zero byte before or after the call, rounded up to 16; rows are OFFSET,",
            "# 16 bytes in hex, ASCII.  Rows not shown are zero in a request and equal to",
            "# the request in a reply; '*' marks skipped rows.  pointers: 8-byte words",
            "# pointing into the buffer (compared and restored relative to it).",
            "",
            "",
        ]
        return "\n".join(lines)

    # -- buffers: the inner transport's ---------------------------------------------
    def scratch(self, size: int = PAGE_SIZE) -> Buffer:
        if self.closed:
            raise XenError(_errno.EBADF, "the handle is closed")
        buf = self.inner.scratch(size)
        self._local.buf = buf
        return buf

    def _map(self, size: int) -> Buffer:
        return self.inner._map(size)

    def describe(self) -> str:
        return f"recording to {self.path}: {self.inner.describe()}"

    # -- the hypercall --------------------------------------------------------------
    def hypercall(self, op: int, a0: int = 0, a1: int = 0, a2: int = 0, a3: int = 0, a4: int = 0) -> int:
        if self.closed:
            raise XenError(_errno.EBADF, "the handle is closed")
        raw = (a0, a1, a2, a3, a4)
        buf: Optional[Buffer] = getattr(self._local, "buf", None)
        if buf is not None and not (buf.alive and any(buf.address <= a < buf.address + buf.size for a in raw)):
            buf = None
        with self._io:
            before = bytes(buf.view) if buf is not None else b""
            self.calls += 1
            result: Optional[int] = None
            err: Optional[int] = None
            exc: Optional[OSError] = None
            try:
                result = self.inner.hypercall(op, a0, a1, a2, a3, a4)
            except OSError as e:
                exc = e
                err = e.errno or _errno.EIO
            if buf is not None:
                after = bytes(buf.view)
                n = max(len(before.rstrip(b"\0")), len(after.rstrip(b"\0")))
                n = min(buf.size, (n + ROW - 1) // ROW * ROW)
                base: Optional[int] = buf.address
                size: Optional[int] = buf.size
                args = tuple(("buf", a - buf.address) if buf.address <= a < buf.address + buf.size else ("int", a)
                             for a in raw)
                request, reply = before[:n], after[:n]
            else:
                base = size = None
                args = tuple(("int", a) for a in raw)
                request = reply = b""
            self.records += 1
            rec = Record(self.records, op, args, base, size, request, reply, result, err)
            self._learn(rec)
            if self._file is not None:
                self._file.write(format_record(rec))
                self._file.flush()
        if exc is not None:
            raise exc
        assert result is not None
        return result

    def _learn(self, r: Record) -> None:
        """The Xen version, from the traffic itself (for the header)."""
        if r.op != HYPERVISOR_xen_version or r.errno is not None or r.result is None:
            return
        sub = r.args[0][1]
        if sub == XENVER_version:
            self._xen_mm = (r.result >> 16, r.result & 0xFFFF)
        elif sub == XENVER_extraversion and len(r.reply) > 0 and r.args[1] == ("buf", 0):
            self._xen_extra = r.reply[:16].split(b"\0", 1)[0].decode("utf-8", "replace")
        elif sub == XENVER_extraversion2 and r.args[1] == ("buf", 0) and len(r.reply) >= 4 + r.result:
            self._xen_extra = r.reply[4 : 4 + r.result].rstrip(b"\0").decode("utf-8", "replace")
        if self._xen_mm is not None:
            self._meta["xen"] = f"{self._xen_mm[0]}.{self._xen_mm[1]}{self._xen_extra or ''}"

    def close(self) -> None:
        if self.closed:
            return
        try:
            with self._io:
                f, self._file = self._file, None
                if f is not None:
                    f.write(f"# end: {self.records} records\n")
                    f.close()
                    self._rewrite_header()
        finally:
            super().close()
            self.inner.close()

    def _rewrite_header(self) -> None:
        with open(self.path, encoding="utf-8") as f:
            text = f.read()
        body = text.split("\n\n", 1)[1] if "\n\n" in text else ""
        tmp = self.path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(self._header() + body)
        os.replace(tmp, self.path)


def _library_version() -> str:
    from . import __version__

    return __version__


# -- replay ------------------------------------------------------------------------------

def _hexdiff(op: int, what: str, offset: int, recorded: bytes, live: bytes) -> str:
    row = offset - offset % ROW
    a = recorded[row : row + ROW].ljust(ROW, b"\0")
    b = live[row : row + ROW].ljust(ROW, b"\0")

    def cols(data: bytes) -> str:
        h = data.hex(" ")
        return h[:23] + "  " + h[24:]

    marks = cols(bytes(0xFF if x != y else 0 for x, y in zip(a, b))).replace("ff", "^^").replace("00", "  ")
    return (f"{what} byte {offset:#x}{_field_hint(op, offset)} differs:\n"
            f"  recorded  {row:04x}  {cols(a)}\n"
            f"  replayed  {row:04x}  {cols(b)}\n"
            f"                  {marks.rstrip()}")


class ReplayTransport(MemoryTransport):
    """Serves a :class:`Recording` back (see the module doc).

    Every difference from the recording raises :class:`ReplayMismatch` and
    the replay stays failed (every later hypercall raises the first
    mismatch again, so no ``except`` of the library can hide it).  With
    ``strict`` (the default), :meth:`close` raises when records were left
    unused.
    """

    kind = "replay"
    multicall = True

    def __init__(self, recording: Recording, strict: bool = True) -> None:
        super().__init__()
        self.recording = recording
        self.records = recording.records
        self.strict = strict
        self.position = 0
        self.failure: Optional[ReplayMismatch] = None
        self._replay_lock = threading.Lock()

    def describe(self) -> str:
        return f"replay of {self.recording.path} ({self.position}/{len(self.records)} records)"

    def _fail(self, message: str, record: Optional[int], field: str) -> ReplayMismatch:
        where = f"record {record}" if record is not None else "replay"
        self.failure = ReplayMismatch(f"{self.recording.path}: {where}: {message}", record=record, field=field)
        return self.failure

    def handle(self, op: int, args: Tuple[int, int, int, int, int]) -> int:
        with self._replay_lock:
            if self.failure is not None:
                raise ReplayMismatch(f"replay already failed: {self.failure}", self.failure.record, self.failure.field)
            return self._handle(op, args)

    def _live_buffer(self, args: Sequence[int]) -> Optional[Buffer]:
        cands: List[Buffer] = []
        cur: Optional[Buffer] = getattr(self._local, "buf", None)
        if cur is not None:
            cands.append(cur)
        cands += [b for b in list(self._buffers) if b is not cur]
        for b in cands:
            if b.alive and any(b.address <= a < b.address + b.size for a in args):
                return b
        return None

    def _handle(self, op: int, args: Tuple[int, int, int, int, int]) -> int:
        buf = self._live_buffer(args)
        live_req = bytes(buf.view) if buf is not None else None
        live_label = describe(op, args, live_req, buf.address if buf is not None else None)
        if self.position >= len(self.records):
            raise self._fail(f"the recording has {len(self.records)} records; call {self.position + 1} "
                             f"({live_label}) is beyond its end", None, "end of recording")
        r = self.records[self.position]
        idx = r.number
        if op != r.op or (r.base is not None and live_req is not None and live_req[:4] != r.request[:4]
                          and op in (HYPERVISOR_domctl, HYPERVISOR_sysctl)):
            raise self._fail(f"op: recorded {r.label}, replayed {live_label}", idx, "op")
        norm = tuple(("buf", a - buf.address) if buf is not None and buf.address <= a < buf.address + buf.size
                     else ("int", a) for a in args)
        for i, (want, got) in enumerate(zip(r.args, norm)):
            if want != got:
                raise self._fail(f"{r.label}: args[{i}]: recorded {_arg_text(want)}, replayed {_arg_text(got)}",
                                 idx, f"args[{i}]")
        if r.base is not None and r.size is not None:
            assert buf is not None and live_req is not None  # args matched: a buf+ argument exists
            want_b, want_p = _normalize(r.request, r.base, r.size)
            got_b, got_p = _normalize(live_req, buf.address, buf.size)
            if want_b != got_b:
                n = max(len(want_b), len(got_b))
                a_, b_ = want_b.ljust(n, b"\0"), got_b.ljust(n, b"\0")
                off = next(i for i in range(n) if a_[i] != b_[i])
                raise self._fail(f"{r.label}: " + _hexdiff(op, "request", off, a_, b_), idx, f"request @{off:#x}")
            if want_p != got_p:
                at = min(k for k in set(want_p) | set(got_p) if want_p.get(k) != got_p.get(k))
                w = f"buf+{want_p[at]:#x}" if at in want_p else "no pointer"
                g = f"buf+{got_p[at]:#x}" if at in got_p else "no pointer"
                raise self._fail(f"{r.label}: request word {at:#x}: recorded {w}, replayed {g}", idx, f"request @{at:#x}")
            if len(r.reply) > buf.size:
                raise self._fail(f"{r.label}: the {len(r.reply):#x}-byte reply does not fit the {buf.size:#x}-byte buffer",
                                 idx, "buffer")
            self.write(buf.address, _relocate(r.reply, r.base, r.size, buf.address))
        self.position += 1
        if r.errno is not None:
            raise OSError(r.errno, os.strerror(r.errno))
        assert r.result is not None
        return r.result

    @property
    def remaining(self) -> int:
        return len(self.records) - self.position

    def close(self, strict: Optional[bool] = None) -> None:
        if self.closed:
            return
        super().close()
        strict = self.strict if strict is None else strict
        if strict and self.failure is None and self.position < len(self.records):
            r = self.records[self.position]
            raise self._fail(f"{self.remaining} of {len(self.records)} records unused, the first {r.label}",
                             r.number, "unused records")


# -- URIs ------------------------------------------------------------------------------------

def _split_uri(uri: str, scheme: str) -> Tuple[str, Dict[str, str]]:
    if not uri.startswith(scheme + ":"):
        raise ValueError(f"not a {scheme}: URI: {uri!r}")
    rest = uri[len(scheme) + 1 :]
    query = ""
    if "?" in rest:
        rest, query = rest.split("?", 1)
    if rest.startswith("//"):
        rest = rest[2:]
        host, slash, path = rest.partition("/")
        if host not in ("", "localhost"):
            raise ValueError(f"{scheme}: URIs name a local file, not host {host!r}: {uri!r}")
        rest = slash + path
    if not rest:
        raise ValueError(f"{scheme}: URI without a file: {uri!r}")
    return rest, dict(parse_qsl(query, keep_blank_values=True))


def open_record(uri: str, abi: Optional[str] = None) -> Any:
    """``record:PATH`` / ``record:///PATH?inner=URI&comment=TEXT`` -> a recording Handle."""
    from . import _machine_arch
    from . import open as xopen
    from ._privcmd import open_privcmd
    from .handle import Handle

    path, params = _split_uri(uri, "record")
    unknown = set(params) - {"inner", "comment"}
    if unknown:
        raise ValueError(f"record: URI: unknown parameter(s) {', '.join(sorted(unknown))} (known: inner, comment)")
    inner_uri = params.get("inner")
    inner: Transport
    if inner_uri:
        if inner_uri.startswith("record:"):
            raise ValueError("record: cannot wrap another record: URI")
        inner_handle = xopen(inner_uri)
        inner, arch = inner_handle.transport, inner_handle.arch
    else:
        inner, arch, inner_uri = open_privcmd(), _machine_arch(), "xen:///"
    try:
        t = RecordingTransport(inner, path, comment=params.get("comment", ""), inner_uri=inner_uri, arch=arch, abi=abi)
    except BaseException:
        inner.close()
        raise
    return Handle(t, uri, abi=abi, arch=arch)


def open_replay(uri: str, abi: Optional[str] = None) -> Any:
    """``replay:PATH`` / ``replay:///PATH?strict=0`` -> a Handle serving the recording."""
    from .handle import Handle

    path, params = _split_uri(uri, "replay")
    unknown = set(params) - {"strict"}
    if unknown:
        raise ValueError(f"replay: URI: unknown parameter(s) {', '.join(sorted(unknown))} (known: strict)")
    strict = params.get("strict", "1").lower() not in ("0", "no", "false", "off")
    rec = load(path)
    if abi is None and rec.header.get("abi", "detected") != "detected":
        abi = rec.header["abi"]
    arch = rec.header.get("arch") or "x86_64"
    return Handle(ReplayTransport(rec, strict=strict), uri, abi=abi, arch=arch)


# -- the fixed scenario ---------------------------------------------------------------------------

MISSING_DOMID = 0x7FE0


def jsonable(value: Any) -> Any:
    """A JSON-ready form of a result (namedtuples as dicts, sets sorted, bytes as hex)."""
    if isinstance(value, tuple) and hasattr(value, "_asdict"):
        return {k: jsonable(v) for k, v in value._asdict().items()}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(jsonable(v) for v in value)
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    if isinstance(value, uuid.UUID):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def _error(exc: BaseException) -> Dict[str, Any]:
    return {"type": type(exc).__name__, "errno": getattr(exc, "errno", None), "message": str(exc)}


def scenario_steps(h: Any) -> List[Tuple[str, Callable[[], Any]]]:
    """The fixed, deterministic, read-only scenario: (name, call) pairs."""

    def abi_step() -> Dict[str, Any]:
        v = h.abi
        return {"release": v.release, "arch": v.arch, "domctl_interface_version": v.domctl_interface_version,
                "sysctl_interface_version": v.sysctl_interface_version, "detection": jsonable(h.detection)}

    return [
        ("version", h.version),
        ("abi", abi_step),
        ("domains", h.domains),
        ("domain_info(0)", lambda: h.domain_info(0)),
        (f"domain_info({MISSING_DOMID:#x})", lambda: h.domain_info(MISSING_DOMID)),
        ("physinfo", h.physinfo),
        ("sched_id", h.sched_id),
        ("vcpu_info(0)", lambda: h.vcpu_info(0)),
        ("vcpu_affinity(0, 0)", lambda: h.vcpu_affinity(0, 0)),
        ("sched_params(0)", lambda: h.sched_params(0)),
        ("cpu_topology", h.cpu_topology),
        ("numa_info", h.numa_info),
        ("pcpu_info", h.pcpu_info),
        ("read_console", h.read_console),
    ]


def run_scenario(h: Any) -> List[Dict[str, Any]]:
    """Run the scenario on handle ``h``; one ``{"step", "result"|"error"}`` dict per step.

    An error a step raises is part of the outcome (``type``, ``errno``,
    ``message``), except :class:`ReplayMismatch`, which propagates.
    """
    out: List[Dict[str, Any]] = []
    for name, call in scenario_steps(h):
        try:
            value = call()
        except ReplayMismatch:
            raise
        except Exception as exc:  # every error is part of the recording
            out.append({"step": name, "error": _error(exc)})
        else:
            out.append({"step": name, "result": jsonable(value)})
    # Through JSON and back: the form a sidecar is compared in.
    return json.loads(json.dumps(out))  # type: ignore[no-any-return]


def sidecar_path(recfile: str) -> str:
    """``x.rec`` -> ``x.json``; the JSON sidecar of a recording."""
    root, ext = os.path.splitext(recfile)
    return (root if ext and ext != ".json" else recfile) + ".json"


def make(outfile: str, inner: Union[None, str, Transport] = None, comment: str = "",
         abi: Optional[str] = None) -> Dict[str, Any]:
    """Record the scenario into ``outfile`` and write its JSON sidecar; returns the sidecar.

    ``inner`` is what is recorded: a URI (default: the local privcmd device)
    or a :class:`Transport` (an in-process hypervisor; closed afterwards).
    """
    from . import open as xopen
    from .handle import Handle

    if isinstance(inner, Transport):
        t = RecordingTransport(inner, outfile, comment=comment, inner_uri=inner.kind, arch="x86_64", abi=abi)
        h = Handle(t, "record:" + outfile, abi=abi)
    else:
        query = []
        if inner:
            query.append("inner=" + quote(inner, safe=":/"))
        if comment:
            query.append("comment=" + quote(comment, safe=""))
        uri = "record://" + os.path.abspath(outfile) + ("?" + "&".join(query) if query else "")
        h = xopen(uri, abi=abi)
    try:
        steps = run_scenario(h)
    finally:
        h.close()
    rec = load(outfile)
    side = {
        "format": FORMAT,
        "recording": os.path.basename(outfile),
        "library": rec.header.get("library"),
        "xen": rec.header.get("xen"),
        "date": rec.header.get("date"),
        "inner": rec.header.get("inner"),
        "abi": rec.header.get("abi"),
        "comment": rec.header.get("comment"),
        "records": len(rec.records),
        "steps": steps,
    }
    with open(sidecar_path(outfile), "w", encoding="utf-8") as f:
        json.dump(side, f, indent=1, sort_keys=False)
        f.write("\n")
    return side


def check(recfile: str, abi: Optional[str] = None) -> List[str]:
    """Replay ``recfile`` through the scenario and compare with its sidecar; the differences (empty: identical)."""
    from . import open as xopen

    with open(sidecar_path(recfile), encoding="utf-8") as f:
        side = json.load(f)
    h = xopen("replay:" + os.path.abspath(recfile), abi=abi)
    t = h.transport
    assert isinstance(t, ReplayTransport)
    try:
        steps = run_scenario(h)
    finally:
        unused = t.remaining
        t.close(strict=False)
    diffs = []
    want: List[Dict[str, Any]] = side["steps"]
    if [s["step"] for s in want] != [s["step"] for s in steps]:
        diffs.append(f"steps: recorded {[s['step'] for s in want]}, replayed {[s['step'] for s in steps]}")
    for a, b in zip(want, steps):
        if a != b:
            diffs.append(f"{a['step']}: live {json.dumps(a, sort_keys=True)}\n  replayed {json.dumps(b, sort_keys=True)}")
    if unused:
        diffs.append(f"{unused} of {len(t.records)} records unused (the library issued fewer hypercalls than recorded)")
    return diffs


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m xenprivcmd.record",
                                description="Record hypercall traffic of a fixed read-only scenario; check a recording.")
    sub = p.add_subparsers(dest="cmd", required=True)
    mk = sub.add_parser("make", help="record the fixed scenario into OUTFILE (and OUTFILE's .json sidecar)")
    mk.add_argument("outfile")
    mk.add_argument("--inner", default=None, help="what to record (default: the local privcmd device), e.g. sim:///default")
    mk.add_argument("--comment", default="", help="free text for the header")
    mk.add_argument("--abi", default=None, help="override ABI detection (a release such as 4.17.0)")
    ck = sub.add_parser("check", help="replay RECFILE through the scenario and compare with its sidecar")
    ck.add_argument("recfile")
    ns = p.parse_args(argv)
    if ns.cmd == "make":
        side = make(ns.outfile, inner=ns.inner, comment=ns.comment, abi=ns.abi)
        for s in side["steps"]:
            state = "ok" if "result" in s else f"{s['error']['type']}: {s['error']['message']}"
            print(f"{s['step']:24} {state}")
        print(f"{side['records']} hypercalls recorded to {ns.outfile} (Xen {side['xen']}); sidecar {sidecar_path(ns.outfile)}")
        return 0
    try:
        diffs = check(ns.recfile)
    except (ReplayMismatch, RecordingFormatError) as exc:
        print(f"FAIL: {exc}", file=sys.stderr)
        return 1
    for d in diffs:
        print(d, file=sys.stderr)
    print(("FAIL: " if diffs else "ok: ") + f"{ns.recfile}: {len(diffs)} step(s) differ from the sidecar")
    return 1 if diffs else 0


if __name__ == "__main__":
    # Through the package module, so its exception classes are the ones the
    # library raises (not copies defined in __main__).
    from xenprivcmd.record import main as _main

    sys.exit(_main())
