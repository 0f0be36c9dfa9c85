"""Transport wrappers that watch hypercalls: timing, dry run, read-only guard.

They sit between a :class:`~xenprivcmd.handle.Handle` and the transport it
was opened with, so everything above them (ABI detection, the ops layer) runs
unchanged::

    xen = xenprivcmd.open()
    timing = TimingTransport(xen.transport)
    xen.transport = timing
    xen.domains()
    for rec in timing.take():
        print(rec.describe(), rec.seconds)

* :class:`TimingTransport` issues every hypercall and records what it was
  (op, sub-op name, domain), how long it took and how it ended.
* :class:`DryRunTransport` lets read-only hypercalls through (``xen_version``,
  and the domctl/sysctl sub-ops of :func:`~.decode.is_read_only`) and
  *records instead of issuing* everything else: ``pausedomain``,
  ``unpausedomain``, ``destroydomain``, ``max_mem``, ``max_vcpus``,
  ``setvcpuaffinity``, ``scheduler_op`` ``putinfo``, ``createdomain``, and any
  sub-op it does not know to be read-only.  An intercepted hypercall
  "succeeds" (returns 0) without reaching the hypervisor; ``createdomain``
  reports :data:`DRY_RUN_DOMID`.  A ``readconsole`` that would clear the ring
  is issued with ``clear`` = 0 and recorded as the clearing call it would have
  been.
* :class:`ReadOnlyTransport` refuses every hypercall not known to only read.

Requests are decoded by :class:`~.decode.Decoder`.  Wrappers stack:
``DryRunTransport(TimingTransport(t))`` times only what is really issued.
:func:`innermost` finds the transport that talks to the hypervisor (its
``calls`` counts what was really issued).
"""

from __future__ import annotations

import errno as _errno
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

from .. import abi as _abi
from ..abi.hypercalls import HYPERCALL_NAMES, HYPERVISOR_multicall, HYPERVISOR_sysctl
from ..errors import ReadOnlyError
from .decode import MC_MAX, CallRecord, Decoded, Decoder, is_read_only, multicall_entries
from .privcmd import PAGE_SIZE, Buffer, Transport

__all__ = ["TransportWrapper", "TimingTransport", "DryRunTransport", "ReadOnlyTransport", "innermost",
           "DRY_RUN_DOMID"]

#: The domid a dry-run ``createdomain`` reports (DOMID_FIRST_RESERVED - 1).
DRY_RUN_DOMID = 0x7FEF




def innermost(t: Transport) -> Transport:
    """The transport under every wrapper (the one that talks to the hypervisor)."""
    while isinstance(t, TransportWrapper):
        t = t.inner
    return t


class TransportWrapper(Transport):
    """A transport that forwards to ``inner`` (buffers, extras such as a
    simulator's ``domain_names``); subclasses override :meth:`hypercall`.
    ``calls`` counts the hypercalls asked of this wrapper.
    """

    def __init__(self, inner: Transport, variant: Optional["_abi.Variant"] = None) -> None:
        super().__init__()
        self.inner = inner
        self.kind = inner.kind
        self.buffer_kind = inner.buffer_kind
        self.decoder = Decoder(variant)
        self._rec_lock = threading.Lock()

    @property
    def multicall(self) -> bool:  # type: ignore[override]
        return bool(getattr(self.inner, "multicall", False))

    @property
    def variant(self) -> Optional["_abi.Variant"]:
        return self.decoder.variant

    @variant.setter
    def variant(self, v: Optional["_abi.Variant"]) -> None:
        self.decoder.variant = v

    def hypercall(self, op: int, a0: int = 0, a1: int = 0, a2: int = 0, a3: int = 0, a4: int = 0) -> int:
        self.calls += 1
        return self.inner.hypercall(op, a0, a1, a2, a3, a4)

    def scratch(self, size: int = PAGE_SIZE) -> Buffer:
        return self.inner.scratch(size)

    def _map(self, size: int) -> Buffer:
        return self.inner._map(size)

    def stats(self) -> Dict[str, int]:
        return self.inner.stats()

    def close(self) -> None:
        self.inner.close()
        super().close()

    def describe(self) -> str:
        return self.inner.describe()

    def xenstore(self) -> Any:
        return self.inner.xenstore()

    def __getattr__(self, name: str) -> Any:
        # Only reached for attributes the wrapper does not have itself
        # (e.g. a simulator's domain_names()).
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)


class TimingTransport(TransportWrapper):
    """Issues every hypercall and records it with its latency (see module doc)."""

    def __init__(self, inner: Transport, variant: Optional["_abi.Variant"] = None) -> None:
        super().__init__(inner, variant)
        self.records: List[CallRecord] = []

    def hypercall(self, op: int, a0: int = 0, a1: int = 0, a2: int = 0, a3: int = 0, a4: int = 0) -> int:
        self.calls += 1
        args = (a0, a1, a2, a3, a4)
        try:
            decoded = self.decoder.decode(op, args, payload=False)
        except Exception:  # never let bookkeeping break a call
            decoded = Decoded(HYPERCALL_NAMES.get(op, f"hypercall{op}"), None, None, {})
        entries = None
        if op == HYPERVISOR_multicall:
            decoded = decoded._replace(subop=f"({a1} entries)", fields={})
            # read before the call: a debug Xen scribbles over entries but their results
            entries = multicall_entries(a0, a1) if a0 and 0 < a1 <= MC_MAX else None
        start = time.perf_counter()
        try:
            result = self.inner.hypercall(op, a0, a1, a2, a3, a4)
        except OSError as exc:
            elapsed = time.perf_counter() - start
            name = _errno.errorcode.get(exc.errno or 0, str(exc.errno))
            self._add(CallRecord(op, decoded, elapsed, None, name, True))
            raise
        self._add(CallRecord(op, decoded, time.perf_counter() - start, result, None, True))
        if entries is not None:
            self._entries(entries, multicall_entries(a0, a1))
        return result

    def _entries(self, before: List[Tuple[int, Tuple[int, ...], int]],
                 after: List[Tuple[int, Tuple[int, ...], int]]) -> None:
        """One record per entry of a multicall that ran (its own result or errno)."""
        for i, ((e_op, e_args, _r), (_o, _a, rc)) in enumerate(zip(before, after)):
            try:
                dec = self.decoder.decode(e_op, e_args, payload=False)
            except Exception:
                dec = Decoded(HYPERCALL_NAMES.get(e_op, f"hypercall{e_op}"), None, None, {})
            dec = dec._replace(hypercall=f"multicall[{i}] {dec.hypercall}")
            if rc < 0:
                name = _errno.errorcode.get(-rc, str(-rc))
                self._add(CallRecord(e_op, dec, 0.0, None, name, True))
            else:
                self._add(CallRecord(e_op, dec, 0.0, rc, None, True))

    def _add(self, rec: CallRecord) -> None:
        with self._rec_lock:
            self.records.append(rec)

    def take(self) -> List[CallRecord]:
        """The records so far, and forget them."""
        with self._rec_lock:
            out, self.records = self.records, []
        return out


class ReadOnlyTransport(TransportWrapper):
    """Refuses every hypercall that is not known to only read: it raises
    :class:`~xenprivcmd.errors.ReadOnlyError` and nothing reaches the
    hypervisor.  A multicall passes only when every entry would.  Under a
    handle opened with ``read_only=True``."""

    def hypercall(self, op: int, a0: int = 0, a1: int = 0, a2: int = 0, a3: int = 0, a4: int = 0) -> int:
        calls: List[Tuple[int, Tuple[int, ...]]] = [(op, (a0, a1, a2, a3, a4))]
        if op == HYPERVISOR_multicall:
            if not 0 < a1 <= MC_MAX or not a0:
                calls = [(op, (0,))]
            else:
                calls = [(e_op, e_args) for e_op, e_args, _r in multicall_entries(a0, a1)]
        for c_op, c_args in calls:
            ok, decoded, _req = is_read_only(self.decoder, c_op, c_args) if c_op != HYPERVISOR_multicall else (
                False, Decoded("multicall", None, None, {}), None)
            if not ok:
                raise ReadOnlyError(_errno.EPERM, f"{decoded.describe()}: refused, the handle is read-only")
        self.calls += 1
        return self.inner.hypercall(op, a0, a1, a2, a3, a4)


class DryRunTransport(TransportWrapper):
    """Lets read-only hypercalls through and records the rest (see module doc).

    Batches go one call at a time under it (``multicall`` is False), so each
    operation is let through or held back on its own."""

    multicall = False

    def __init__(self, inner: Transport, variant: Optional["_abi.Variant"] = None) -> None:
        super().__init__(inner, variant)
        self.intercepted: List[CallRecord] = []

    def hypercall(self, op: int, a0: int = 0, a1: int = 0, a2: int = 0, a3: int = 0, a4: int = 0) -> int:
        self.calls += 1
        ok, decoded, req = is_read_only(self.decoder, op, (a0, a1, a2, a3, a4))
        if ok:
            return self.inner.hypercall(op, a0, a1, a2, a3, a4)
        if req is not None and decoded.subop == "readconsole" and op == HYPERVISOR_sysctl:
            self._record(op, decoded, req)
            req.u.readconsole.clear = 0
            return self.inner.hypercall(op, a0, a1, a2, a3, a4)
        self._record(op, decoded, req)
        if req is not None and decoded.subop == "createdomain":
            req.domain = DRY_RUN_DOMID
        return 0

    def _record(self, op: int, decoded: Decoded, req: Any) -> None:
        if req is not None and decoded.subop is not None:
            try:
                decoded = decoded._replace(fields=self.decoder.payload(req, decoded.subop))
            except Exception:
                pass
        with self._rec_lock:
            self.intercepted.append(CallRecord(op, decoded, 0.0, None, None, False))

    def take(self) -> List[CallRecord]:
        """The held-back hypercalls so far, and forget them."""
        with self._rec_lock:
            out, self.intercepted = self.intercepted, []
        return out
