"""Many independent requests in few traps, through Xen's multicall.

``__HYPERVISOR_multicall`` (13) takes an array of ``multicall_entry``
(``{u64 op; s64 result; u64 args[6]}``, 64 bytes on x86_64 and arm64) and
runs the entries in order; each entry's ``result`` gets its own return value
(a negative errno on failure) and a failing entry does not stop the others.
A multicall is **not atomic**: entries before a failure stay applied, and
other callers' hypercalls may run between two entries.

The requests are the engine's (:mod:`.engine`), laid out by the same
:class:`~.engine.Layout` as a single call.  One trap's buffer::

    [0, 64*n)           the n entries, args[0] -> that entry's slot
    [64*n, ...)         one slot per entry, 8-byte aligned: its request, then its
                        payload (cpumaps): the pointers of the request point there

Entries are written with one ``pack_into`` each; every ``result`` starts as
:data:`NOT_RUN`, a value no request returns, so an entry the hypervisor did
not run is seen as such.  Such entries, and every entry of a multicall the
hypervisor refuses as a whole, are issued again one by one (nothing that
ran is ever issued twice).  A hypervisor found to refuse requests inside a
multicall is remembered per handle; its batches then go one call each.
"""

from __future__ import annotations

import errno as _errno
import struct

from ..abi.hypercalls import HYPERVISOR_multicall, check_domid
from ..errors import DecodeError, XenError, from_errno
from ..types import DomainInfo, VcpuAffinity, VcpuInfo, VcpuListEntry
from . import domains as _dom
from .engine import PAYLOAD_OFFSET

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time (cold start)
    from typing import Any, Callable, Dict, FrozenSet, Iterable, List, Optional, Sequence, Tuple

    from .engine import Engine, Layout, Request

    Then = Callable[[Tuple[Any, ...], memoryview, int], Any]

__all__ = ["Batch", "Call", "MULTICALL_ENTRY_SIZE", "NOT_RUN", "TRAP_MAX_BYTES", "TRAP_MAX_ENTRIES",
           "infos_shaped", "vcpus_shaped", "slot"]

MULTICALL_ENTRY_SIZE = 64
_ENTRY = struct.Struct("<QqQQQQQQ")
_RESULT = struct.Struct("<q")
#: The ``result`` an entry holds until the hypervisor has run it.
NOT_RUN = 0x7E57_0000_C0DE_0001
#: One trap's buffer (entries and slots) stays within this many bytes ...
TRAP_MAX_BYTES = 256 * 1024
#: ... and this many entries.
TRAP_MAX_ENTRIES = 1024
#: Largest errno a result can carry (Linux's MAX_ERRNO).
_MAX_ERRNO = 4095


def _align8(n: int) -> int:
    return (n + 7) & ~7


class Call:
    """One operation of a :class:`Batch`: its result once the batch has run."""

    __slots__ = ("what", "_value", "_error", "_done")

    def __init__(self, what: str) -> None:
        self.what = what
        self._value: Any = None
        self._error: Optional[BaseException] = None
        self._done = False

    @property
    def done(self) -> bool:
        return self._done

    @property
    def error(self) -> Optional[BaseException]:
        """The typed exception this operation ended with, or ``None``."""
        return self._error

    def result(self) -> Any:
        """The operation's value; raises its own error if it failed."""
        if not self._done:
            raise RuntimeError(f"{self.what}: the batch has not run yet")
        if self._error is not None:
            raise self._error
        return self._value

    def _set(self, value: Any) -> None:
        self._value, self._done = value, True

    def _fail(self, error: BaseException) -> None:
        self._error, self._done = error, True


    def __repr__(self) -> str:
        state = "pending" if not self._done else f"error {self._error!r}" if self._error else repr(self._value)
        return f"<Call {self.what}: {state}>"


class _Entry:
    """One queued request: its layout, checked arguments, payload size and decoder."""

    __slots__ = ("layout", "args", "payload", "then", "call", "slot")

    def __init__(self, layout: Layout, args: Tuple[Any, ...], payload: int, then: Then, call: Call) -> None:
        self.layout = layout
        self.args = args
        self.payload = payload
        self.then = then
        self.call = call
        #: bytes of its slot: the request (8-byte aligned), then the payload
        self.slot = _align8(layout.size) + _align8(payload)

    @property
    def domid(self) -> Optional[int]:
        return self.args[0] if self.layout.request.domain else None


def _fields(fields: Tuple[Any, ...], view: memoryview, payload_at: int) -> Tuple[Any, ...]:
    return fields


class Batch:
    """Independent operations issued together (see the module doc).

    Use it as a context manager (the operations run when the block ends
    without an exception) or call :meth:`run`.  Each method checks its
    arguments at once (``ValueError``/``TypeError``, nothing issued) and
    returns a :class:`Call`; after the run, ``call.result()`` gives the value
    or raises that operation's own typed error.  Not thread-safe: one batch
    belongs to one thread.  :meth:`add` queues any request of the engine.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._entries: List[_Entry] = []
        self.traps = 0

    # -- queueing ---------------------------------------------------------------
    def add(self, request: Request, *args: Any, payload: int = 0, then: Optional[Then] = None,
            what: Optional[str] = None) -> Call:
        """Queue ``request`` with ``args`` (checked now, as a runner checks them);
        ``payload``: bytes its pointers point into; ``then(fields, view, payload_at)``
        turns what came back into the call's value (default: the fields read)."""
        e = self._engine
        if e.read_only and not request.reads:
            from ..errors import ReadOnlyError

            raise ReadOnlyError(_errno.EPERM, f"{request.name}: refused, the handle is read-only")
        lay = e.layout(request)
        args = e.check(request, args)
        call = Call(what or f"{request.subop}{args!r}")
        self._entries.append(_Entry(lay, args, payload, then or _fields, call))
        return call

    def domain_info(self, domid: int) -> Call:
        """getdomaininfo; the call raises :class:`NoSuchDomain` for a missing domain."""
        check_domid(domid)
        one = _dom.info_reader(self._engine).one

        def then(fields: Tuple[Any, ...], view: memoryview, at: int) -> DomainInfo:
            if fields[0] != domid:
                raise _dom.no_domain("getdomaininfo", domid)
            return one(fields)

        return self.add(_dom.GETDOMAININFO, domid, then=then, what=f"domain_info({domid})")

    def vcpu_info(self, domid: int, vcpu: int) -> Call:
        """getvcpuinfo of one vcpu: a :class:`VcpuInfo`."""
        check_domid(domid)
        _dom.VCPU(vcpu)

        def then(fields: Tuple[Any, ...], view: memoryview, at: int) -> VcpuInfo:
            return _dom.vcpu_from(fields)

        return self.add(_dom.GETVCPUINFO, domid, vcpu, then=then, what=f"vcpu_info({domid}, {vcpu})")

    def vcpu_affinity(self, domid: int, vcpu: int) -> Call:
        """getvcpuaffinity: a :class:`VcpuAffinity` (soft ``None`` before Xen 4.5)."""
        check_domid(domid)
        _dom.VCPU(vcpu)
        e = self._engine
        nr_cpus = e.handle.nr_cpus()
        req, shape = _dom.affinity_requests(e, True)
        what = f"vcpu_affinity({domid}, {vcpu})"
        if req is None:
            from ..errors import NotSupported

            raise NotSupported(_errno.ENOSYS, f"vcpu affinity: Xen {e.variant.release} has no getvcpuaffinity")
        if shape == "inline":
            def inline(fields: Tuple[Any, ...], view: memoryview, at: int) -> VcpuAffinity:
                bits = fields[0]
                return VcpuAffinity(vcpu, frozenset(c for c in range(min(nr_cpus, 64)) if bits >> c & 1), None)

            return self.add(req, domid, vcpu, then=inline, what=what)
        args, size, hard_at, soft_at = _dom.affinity_args(shape, e, vcpu, nr_cpus, False, True, True)
        nbytes = (nr_cpus + 7) // 8
        two = shape == "two"

        def maps(fields: Tuple[Any, ...], view: memoryview, at: int) -> VcpuAffinity:
            hard = _dom.cpus_from(bytes(view[at + hard_at:at + hard_at + nbytes]), nr_cpus)
            soft = _dom.cpus_from(bytes(view[at + soft_at:at + soft_at + nbytes]), nr_cpus) if two else None
            return VcpuAffinity(vcpu, hard, soft)

        return self.add(req, domid, *args, payload=size, then=maps, what=what)

    def pause(self, domid: int) -> Call:
        return self.add(_dom.PAUSEDOMAIN, check_domid(domid), what=f"pausedomain({domid})", then=_none)

    def unpause(self, domid: int) -> Call:
        return self.add(_dom.UNPAUSEDOMAIN, check_domid(domid), what=f"unpausedomain({domid})", then=_none)

    def set_max_mem(self, domid: int, kib: int) -> Call:
        """max_mem (KiB), as :meth:`Handle.set_max_mem` with ``force=True``."""
        return self.add(_dom.MAX_MEM, check_domid(domid), kib, what=f"max_mem({domid})", then=_none)

    # -- running ------------------------------------------------------------------
    def __enter__(self) -> "Batch":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.run()

    def __len__(self) -> int:
        return len(self._entries)

    def run(self) -> None:
        """Issue every queued operation; each :class:`Call` then holds its outcome.

        Only errors of the operations themselves are kept in their calls; an
        error that is no hypercall's (a closed handle, KeyboardInterrupt)
        propagates, and the operations it kept from running are left not done.
        """
        entries, self._entries = self._entries, []
        if not entries:
            return
        e = self._engine
        if not e.multicall:
            for entry in entries:
                _single(e, entry)
            return
        for chunk in _chunks(entries):
            self._trap(chunk)

    def _trap(self, chunk: Sequence[_Entry]) -> None:
        e = self._engine
        n = len(chunk)
        view, base, at = _lay_out(e, chunk)
        self.traps += 1
        refused = False
        try:
            e.transport.hypercall(HYPERVISOR_multicall, base, n)
        except XenError as exc:
            if exc.errno == _errno.EBADF:
                raise
            refused = True
        except OSError:
            refused = True
        if e.transport.closed:
            raise XenError(_errno.EBADF, "the handle was closed during a batch")
        leftover: List[_Entry] = []
        for i, entry in enumerate(chunk):
            rc = _RESULT.unpack_from(view, i * MULTICALL_ENTRY_SIZE + 8)[0]
            lay = entry.layout
            req = lay.request
            if rc == NOT_RUN or rc == -_errno.ENOSYS:
                # not run, or a multicall table without this hypercall: one call tells
                leftover.append(entry)
            elif -_MAX_ERRNO <= rc < 0:
                entry.call._fail(from_errno(-rc, hypercall=req.family, subop=req.subop, domid=entry.domid))
            elif rc != 0 and not req.returns:
                entry.call._fail(DecodeError(f"{req.name}(domid={entry.domid}): result {rc} inside a multicall"))
            else:
                try:
                    fields = lay.result(lay.unpack(view, at[i] + lay.read_at))
                    if req.returns:
                        fields = (rc,) + fields
                    entry.call._set(entry.then(fields, view, at[i] + _align8(lay.size)))
                except (XenError, DecodeError, ValueError) as exc:
                    entry.call._fail(exc)
        if refused or leftover:
            if len(leftover) == n or refused:
                e.state.multicall = False
            for entry in leftover:
                _single(e, entry)
        elif e.state.multicall is None:
            e.state.multicall = True


def _lay_out(e: Engine, chunk: Sequence[_Entry]) -> Tuple[memoryview, int, List[int]]:
    """The chunk's entries and slots in this thread's buffer: (view, its address, each slot's offset)."""
    n = len(chunk)
    first = _align8(n * MULTICALL_ENTRY_SIZE)
    at: List[int] = []
    pos = first
    for entry in chunk:
        at.append(pos)
        pos += entry.slot
    view, base = e.buffer(pos)
    view[first:pos] = bytes(pos - first)
    for i, entry in enumerate(chunk):
        lay = entry.layout
        where = base + at[i]
        lay.pack(view, at[i], *lay.values(entry.args, where + _align8(lay.size)))
        a = [where if x is None else x for x in lay.args]
        _ENTRY.pack_into(view, i * MULTICALL_ENTRY_SIZE, lay.hypercall, NOT_RUN, *a, 0)
    return view, base, at


def _single(e: Engine, entry: _Entry) -> None:
    """One entry as a single call (its payload at PAYLOAD_OFFSET, zeroed as a trap's slot)."""
    try:
        view, at = e.payload(entry.payload)
        view[PAYLOAD_OFFSET:PAYLOAD_OFFSET + entry.payload] = bytes(entry.payload)
        lay = entry.layout
        args = tuple(a + at if i in lay.pointer_at else a for i, a in enumerate(entry.args))
        fields = e.runner(lay.request)(*args)
        entry.call._set(entry.then(fields, view, PAYLOAD_OFFSET))
    except (XenError, DecodeError) as exc:
        entry.call._fail(exc)


def _chunks(entries: Sequence[_Entry]) -> Iterable[Sequence[_Entry]]:
    start = 0
    size = 0
    for i, entry in enumerate(entries):
        need = MULTICALL_ENTRY_SIZE + entry.slot
        if i > start and (i - start >= TRAP_MAX_ENTRIES or size + need > TRAP_MAX_BYTES):
            yield entries[start:i]
            start, size = i, 0
        size += need
    if start < len(entries):
        yield entries[start:]


def _none(fields: Tuple[Any, ...], view: memoryview, at: int) -> None:
    return None


# -- shaped batches: the hot read-only batches as one laid-out image ----------------------------
#
# vcpu_list and domain_infos ask the same questions scrape after scrape.  For
# one shape (which domains, how many vcpus, the buffer's address) the whole
# trap -- entries and requests -- is the same bytes every time: it is laid
# out once (by _lay_out, the batch's own layout) and kept by the engine; a
# call copies it into the buffer in one slice assignment, issues the trap,
# checks every entry's result in one pass, and reads the replies with
# ``iter_unpack`` over the slots.  Anything unusual (an entry that failed or
# did not run, a domain that is not the one asked for) sends the whole call to
# the general batch, which is safe because these batches only read.

#: Shapes kept per engine (a scrape, an xl-style listing, ...).
SHAPES_KEPT = 8
_new = tuple.__new__


class _Shape:
    __slots__ = ("base", "image", "n", "slots_at", "results")

    def __init__(self, base: int, image: bytes, n: int, slots_at: int) -> None:
        self.base = base
        self.image = image
        self.n = n
        self.slots_at = slots_at
        # every entry's result, read in one pass (the int64 at offset 8 of each 64-byte entry):
        # all 0 when every request ran and succeeded (NOT_RUN, laid in the image, is not 0)
        self.results = struct.Struct("<" + "8xq48x" * n)


def _shape(e: Engine, key: Tuple[Any, ...], n: int, slot: int, make: Callable[[], Sequence[_Entry]]
           ) -> Optional[_Shape]:
    """The trap image for ``key`` (``n`` entries of ``slot`` bytes) over this thread's buffer:
    kept, or laid out now (``make`` queues its entries); None when they are not as said."""
    shapes = e.shapes
    size = _align8(n * MULTICALL_ENTRY_SIZE) + n * slot
    _view, base = e.buffer(size)
    full = key + (base,)
    got = shapes.get(full)
    if got is not None:
        return got  # type: ignore[no-any-return]
    entries = make()
    if len(entries) != n or any(x.slot != slot for x in entries):
        return None
    view, base, at = _lay_out(e, entries)
    got = _Shape(base, bytes(view[:size]), n, at[0])
    if len(shapes) >= SHAPES_KEPT:
        shapes.clear()
    shapes[full] = got
    return got


def _run_shape(e: Engine, shape: _Shape) -> Optional[memoryview]:
    """Issue the image; the buffer's view when every entry returned 0, else None."""
    view, base = e.buffer(len(shape.image))
    if base != shape.base:
        return None
    view[:len(shape.image)] = shape.image
    try:
        e.transport.hypercall(HYPERVISOR_multicall, shape.base, shape.n)
    except XenError as exc:
        if exc.errno == _errno.EBADF:
            raise
        return None
    except OSError:
        return None
    if any(shape.results.unpack_from(view, 0)):
        return None
    e.state.multicall = True
    return view


def _entries(e: Engine, queue: Callable[[Batch], None]) -> Callable[[], Sequence[_Entry]]:
    def make() -> Sequence[_Entry]:
        b = Batch(e)
        queue(b)
        return b._entries

    return make


def _slot_reader(prefix: int, fmt: str, slot: int) -> struct.Struct:
    """A Struct stepping over slots of ``slot`` bytes, reading ``fmt`` at ``prefix`` in each."""
    inner = struct.calcsize("<" + fmt)
    return struct.Struct(f"<{prefix}x{fmt}{slot - prefix - inner}x")


def _per_trap(slot: int, kinds: int = 1) -> int:
    return min(TRAP_MAX_ENTRIES, TRAP_MAX_BYTES // (MULTICALL_ENTRY_SIZE + slot)) // kinds


def infos_shaped(e: Engine, ids: Sequence[int]) -> Optional[List[DomainInfo]]:
    """getdomaininfo of ``ids`` (already checked) in shaped traps; None: take the general batch."""
    if not e.multicall:
        return None
    lay = e.layout(_dom.GETDOMAININFO)
    rd = _dom.info_reader(e)
    if lay.pick is not None or not rd.fast:
        return None  # the fields not in DomainInfo's order: the general batch
    slot = _align8(lay.size)
    reader = _slot_reader(lay.read_at, lay.read_format.lstrip("<"), slot)  # type: ignore[attr-defined]
    out: List[DomainInfo] = []
    per = _per_trap(slot)
    for start in range(0, len(ids), per):
        chunk = tuple(ids[start:start + per])

        def queue(b: Batch, c: Sequence[int] = chunk) -> None:
            for d in c:
                b.domain_info(d)

        shape = _shape(e, ("infos", len(chunk), chunk), len(chunk), slot, _entries(e, queue))
        view = None if shape is None else _run_shape(e, shape)
        if shape is None or view is None:
            return None
        recs = reader.iter_unpack(view[shape.slots_at:shape.slots_at + len(chunk) * slot])
        got = [_new(DomainInfo, r + (None,)) for r in recs]
        for g, d in zip(got, chunk):
            if g.domid != d:
                return None  # a missing domain (Xen < 4.18 answers with the next one): the general path says which
        out += got
    return out


def vcpus_shaped(e: Engine, infos: Sequence[DomainInfo], affinity: bool = True) -> Optional[List[Any]]:
    """Every vcpu of ``infos`` in shaped traps: VcpuListEntry rows with the
    affinities, or (``affinity=False``) VcpuInfo rows of getvcpuinfo alone.
    None: take the general batch."""
    if not e.multicall:
        return None
    vlay = e.layout(_dom.GETVCPUINFO)
    if vlay.pick is not None:
        return None
    req, shape_kind = _dom.affinity_requests(e, True)
    if affinity and shape_kind not in ("two", "one"):
        return None
    nr_cpus = e.handle.nr_cpus()
    key = ("vcpu_list", affinity, nr_cpus, tuple((i.domid, i.max_vcpu_id, i.name) for i in infos))
    lay = e.shapes.get(key)
    if lay is None:
        if len(e.shapes) >= SHAPES_KEPT:
            e.shapes.clear()
        lay = e.shapes[key] = _VcpuLayout(e, nr_cpus, infos, affinity, shape_kind)
    cache = lay.maps_cache
    out: List[Any] = []
    for chunk_key, make, heads in lay.chunks:
        shape = _shape(e, chunk_key, chunk_key[1], lay.slot, make)
        view = None if shape is None else _run_shape(e, shape)
        if shape is None or view is None:
            return None
        n = len(heads)
        at = shape.slots_at
        states = lay.vcpu_reader.iter_unpack(view[at:at + n * lay.slot])
        if not affinity:
            out += [_new(VcpuInfo, st) for st in states]
            continue
        affs = lay.map_reader.iter_unpack(view[at + n * lay.slot:at + 2 * n * lay.slot])
        if len(cache) > 4096:
            cache.clear()
        get, miss = cache.get, lay.decode_maps
        out += [_new(VcpuListEntry, head[:2] + st + (get(aff) or miss(aff))) for head, st, aff in zip(heads, states, affs)]
    return out


class _VcpuLayout:
    """What a vcpu_list of one set of domains looks like in traps (see vcpus_shaped)."""

    def __init__(self, e: Engine, nr_cpus: int, infos: Sequence[DomainInfo], affinity: bool, shape: str) -> None:
        nbytes = (nr_cpus + 7) // 8
        vlay = e.layout(_dom.GETVCPUINFO)
        # every slot of the trap has one size (an affinity's: request + its maps); a getvcpuinfo
        # entry alone has room to spare, which _shape lets through only when the sizes agree
        probe = Batch(e)
        probe.vcpu_info(infos[0].domid if infos else 0, 0)
        if affinity:
            probe.vcpu_affinity(infos[0].domid if infos else 0, 0)
        slot = max(x.slot for x in probe._entries)
        self.slot = slot
        kinds = 2 if affinity else 1
        per = _per_trap(slot, kinds)
        self.vcpu_reader = _slot_reader(vlay.read_at, vlay.read_format.lstrip("<"), slot)  # type: ignore[attr-defined]
        alay = probe._entries[-1].layout if affinity else vlay
        maps_at = _align8(alay.size)
        soft_at = nbytes + 8
        nmaps = 2 if shape == "two" else 1
        fmt = f"{nbytes}s" + (f"{soft_at - nbytes}x{nbytes}s" if nmaps > 1 else "")
        #: the maps (unused, and reading nothing, without the affinities)
        self.map_reader = _slot_reader(maps_at, fmt, slot) if affinity else struct.Struct(f"<{slot}x")
        self.maps_cache: Dict[Tuple[bytes, ...], Tuple[FrozenSet[int], Optional[FrozenSet[int]]]] = {}

        def decode_maps(raw: Tuple[bytes, ...]) -> Tuple[FrozenSet[int], Optional[FrozenSet[int]]]:
            hard = _dom.cpus_from(raw[0], nr_cpus)
            maps = self.maps_cache[raw] = (hard, _dom.cpus_from(raw[1], nr_cpus) if nmaps > 1 else None)
            return maps

        self.decode_maps = decode_maps
        pairs = [(i.domid, i.name, v) for i in infos for v in range(i.vcpus)]
        self.chunks = []
        for start in range(0, len(pairs), per):
            heads = pairs[start:start + per]

            def queue(b: Batch, c: Sequence[Tuple[int, Optional[str], int]] = heads) -> None:
                for d, _name, v in c:
                    b.vcpu_info(d, v)
                    # pad the getvcpuinfo entry to the common slot size
                    b._entries[-1].slot = slot
                for d, _name, v in c if affinity else ():
                    b.vcpu_affinity(d, v)

            chunk_key = ("vcpus", kinds * len(heads), tuple((d, v) for d, _n, v in heads), nr_cpus)
            self.chunks.append((chunk_key, _entries(e, queue), heads))


def slot(e: Engine, request: Request) -> int:
    """The bytes of ``request``'s slot in a trap, before its payload."""
    return _align8(e.layout(request).size)
