"""Recording: :class:`RecordingTransport` writes every hypercall of another transport to a file."""

from __future__ import annotations

import datetime
import errno as _errno
import os
import threading
from typing import IO, Optional, Tuple

from ..abi.hypercalls import HYPERVISOR_xen_version, XENVER_extraversion, XENVER_extraversion2, XENVER_version
from ..errors import XenError
from ..transport.privcmd import PAGE_SIZE, Buffer, Transport
from ._format import _MAGIC, ROW, Record, format_record


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
    from .. import __version__

    return __version__
