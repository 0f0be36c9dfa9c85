"""Replay: :class:`ReplayTransport` serves a recording back, checking every request."""

from __future__ import annotations

import os
import threading
from typing import List, Optional, Sequence, Tuple

from ..abi.hypercalls import HYPERVISOR_domctl, HYPERVISOR_sysctl
from ..transport.privcmd import Buffer, MemoryTransport
from ._format import ROW, Recording, ReplayMismatch, _arg_text, _field_hint, _normalize, _relocate, describe


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
