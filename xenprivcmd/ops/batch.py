"""Many independent domctls in few traps, through Xen's multicall.

``__HYPERVISOR_multicall`` (13) takes an array of ``multicall_entry``
(``{u64 op; s64 result; u64 args[6]}``, 64 bytes on x86_64 and arm64) and
runs the entries in order; each entry's ``result`` gets its own return value
(a negative errno on failure) and a failing entry does not stop the others.
A multicall is **not atomic**: entries before a failure stay applied, and
other callers' hypercalls may run between two entries.

One trap's scratch buffer::

    [0, 64*n)           the n entries, args[0] -> that entry's slot
    [64*n, ...)         one slot per entry: its xen_domctl, then its payload
                        (cpumaps), 8-byte aligned

Entries are written with one ``pack_into`` each; every ``result`` starts as
:data:`NOT_RUN`, a value no domctl returns, so an entry the hypervisor did
not run is seen as such.  Such entries, and every entry of a multicall the
hypervisor refuses as a whole, are issued again one by one (nothing that
ran is ever issued twice).  A hypervisor found to refuse domctls inside a
multicall is remembered per handle; its batches then go one call each.
"""

from __future__ import annotations

import errno as _errno
import struct

from ..abi.hypercalls import HYPERVISOR_domctl, HYPERVISOR_multicall
from ..abi.layout import fields, record_reader
from ..errors import DecodeError, NoSuchDomain, XenError, from_errno
from ..types import DomainInfo, VcpuAffinity, VcpuInfo, VcpuListEntry
from . import domains as _dom
from .wire import Wire, check_domid

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time (cold start, issue 15)
    from typing import Any, Callable, Dict, FrozenSet, Iterable, List, Optional, Sequence, Tuple

    from ..transport.privcmd import Transport

__all__ = ["Batch", "Call", "MULTICALL_ENTRY_SIZE", "NOT_RUN", "TRAP_MAX_BYTES", "TRAP_MAX_ENTRIES"]

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
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_HEADER = struct.Struct("<IIH")


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


class _Op:
    """One queued domctl: how to lay it out, read it back, or issue it alone."""

    __slots__ = ("subop", "domid", "extra", "fill", "decode", "single", "call")

    def __init__(self, subop: str, domid: int, extra: int, fill: Callable[[memoryview, int, int], None],
                 decode: Callable[[memoryview, int], Any], single: Callable[[], Any], call: Call) -> None:
        self.subop = subop
        self.domid = domid
        self.extra = extra
        self.fill = fill
        self.decode = decode
        self.single = single
        self.call = call


class _Plans:
    """Everything about the batched domctls that is fixed for one variant."""

    def __init__(self, w: Wire) -> None:
        self.wire = w
        self.slot = _align8(w.domctl_size)
        self.u = w.domctl_u
        self.iv = w.domctl_iv
        self.cmds = {}
        for subop in ("getdomaininfo", "getvcpuinfo", "getvcpuaffinity", "pausedomain", "unpausedomain", "max_mem"):
            if "XEN_DOMCTL_" + subop in w.constants:
                self.cmds[subop] = int(w.constants["XEN_DOMCTL_" + subop])
        self.zeros = bytes(self.slot)
        structs = w.variant.structs
        vi = structs["xen_domctl_getvcpuinfo"]
        self.vcpu_reader, self.vcpu_index = record_reader(
            vi, ("vcpu", "online", "blocked", "running", "cpu_time", "cpu"))
        self.vcpu_at = fields(vi)["vcpu"][0]
        # getvcpuinfo as every release has it: vcpu, online, blocked, running, pad, cpu_time, cpu
        self.vcpu_standard = [fields(vi)[f][0] for f in ("vcpu", "online", "blocked", "running", "cpu_time", "cpu")] \
            == [0, 4, 5, 6, 8, 16]
        self.max_mem_at = fields(structs["xen_domctl_max_mem"])["max_memkb"][0]
        aff = fields(structs["xen_domctl_vcpuaffinity"])
        self.modern_affinity = "cpumap_soft" in aff
        maps = ("cpumap_hard", "cpumap_soft") if self.modern_affinity else ("cpumap",)
        self.aff_maps: List[Tuple[int, int]] = []
        for m in maps:
            at, cls = aff[m]
            inner = fields(cls)
            nr = "nr_bits" if "nr_bits" in inner else "nr_cpus"
            self.aff_maps.append((at + inner["bitmap"][0], at + inner[nr][0]))
        self.aff_vcpu_at = aff["vcpu"][0]
        self.aff_flags_at = aff["flags"][0] if "flags" in aff else None
        self.aff_flags = 0
        if self.modern_affinity:
            self.aff_flags = int(w.constants["XEN_VCPUAFFINITY_HARD"]) | int(w.constants["XEN_VCPUAFFINITY_SOFT"])

    def cmd(self, subop: str) -> int:
        cmd = self.cmds.get(subop)
        if cmd is None:
            self.wire.const("XEN_DOMCTL_" + subop, f"domctl {subop}")  # raises NotSupported
            raise AssertionError(subop)  # pragma: no cover
        return cmd


def plans(w: Wire) -> _Plans:
    p: Optional[_Plans] = getattr(w, "_batch_plans", None)
    if p is None:
        p = _Plans(w)
        w._batch_plans = p  # type: ignore[attr-defined]
    return p


class Batch:
    """Independent domain operations issued together (see the module doc).

    Use it as a context manager (the operations run when the block ends
    without an exception) or call :meth:`run`.  Each method checks its
    arguments at once (``ValueError``/``TypeError``, nothing issued) and
    returns a :class:`Call`; after the run, ``call.result()`` gives the value
    or raises that operation's own typed error.  Not thread-safe: one batch
    belongs to one thread.
    """

    def __init__(self, handle: Any) -> None:
        self._handle = handle
        self._ops: List[_Op] = []
        self.traps = 0

    # -- queueing ---------------------------------------------------------------
    def _queue(self, op: _Op) -> Call:
        self._ops.append(op)
        return op.call

    def _header(self, p: _Plans, subop: str, domid: int) -> Callable[[memoryview, int, int], None]:
        cmd, iv = p.cmd(subop), p.iv

        def fill(view: memoryview, at: int, addr: int) -> None:
            _HEADER.pack_into(view, at, cmd, iv, domid)

        return fill

    def domain_info(self, domid: int) -> Call:
        """getdomaininfo; the call raises :class:`NoSuchDomain` for a missing domain."""
        check_domid(domid)
        w, t = self._wt()
        p = plans(w) if not w.dom0_op else None
        call = Call(f"domain_info({domid})")
        if p is None:
            return self._queue(_Op("getdomaininfo", domid, 0, _never, _never, lambda: _dom.domain_info(w, t, domid), call))
        u = p.u

        def decode(view: memoryview, at: int) -> DomainInfo:
            info = w.info_from(view, at + u)
            if info.domid != domid:
                raise _no_domain("getdomaininfo", domid)
            return info

        return self._queue(_Op("getdomaininfo", domid, 0, self._header(p, "getdomaininfo", domid), decode,
                               lambda: _dom.domain_info(w, t, domid), call))

    def vcpu_info(self, domid: int, vcpu: int) -> Call:
        """getvcpuinfo of one vcpu: a :class:`VcpuInfo`."""
        check_domid(domid)
        _dom._check_int(vcpu, "vcpu", 0, _dom.MAX_VCPUS - 1)
        w, t = self._wt()
        call = Call(f"vcpu_info({domid}, {vcpu})")
        single = lambda: _dom.one_vcpu(w, t, domid, vcpu)  # noqa: E731
        if w.dom0_op:
            return self._queue(_Op("getvcpuinfo", domid, 0, _never, _never, single, call))
        p = plans(w)
        head = self._header(p, "getvcpuinfo", domid)
        at_vcpu = p.u + p.vcpu_at
        at_rec = p.u
        reader, index = p.vcpu_reader, p.vcpu_index

        def fill(view: memoryview, at: int, addr: int) -> None:
            head(view, at, addr)
            _U32.pack_into(view, at + at_vcpu, vcpu)

        def decode(view: memoryview, at: int) -> VcpuInfo:
            r = reader.unpack_from(view, at + at_rec)
            return VcpuInfo(vcpu, bool(r[index[1]]), bool(r[index[2]]), bool(r[index[3]]),  # type: ignore[index]
                            int(r[index[4]]), int(r[index[5]]))  # type: ignore[index]

        return self._queue(_Op("getvcpuinfo", domid, 0, fill, decode, single, call))

    def vcpu_affinity(self, domid: int, vcpu: int) -> Call:
        """getvcpuaffinity: a :class:`VcpuAffinity` (soft ``None`` before Xen 4.5)."""
        check_domid(domid)
        _dom._check_int(vcpu, "vcpu", 0, _dom.MAX_VCPUS - 1)
        w, t = self._wt()
        nr_cpus = self._handle.nr_cpus()
        call = Call(f"vcpu_affinity({domid}, {vcpu})")
        single = lambda: _dom._affinity(w, t, domid, vcpu, nr_cpus, None, None)  # noqa: E731
        if w.dom0_op:
            return self._queue(_Op("getvcpuaffinity", domid, 0, _never, _never, single, call))
        p = plans(w)
        head = self._header(p, "getvcpuaffinity", domid)
        nbytes = (nr_cpus + 7) // 8
        room = _align8(nbytes)
        u, slot = p.u, p.slot
        maps = p.aff_maps
        flags_at = p.aff_flags_at
        flags = p.aff_flags

        def fill(view: memoryview, at: int, addr: int) -> None:
            head(view, at, addr)
            _U32.pack_into(view, at + u + p.aff_vcpu_at, vcpu)
            if flags and flags_at is not None:
                _U32.pack_into(view, at + u + flags_at, flags)
            for i, (bitmap_at, nr_at) in enumerate(maps):
                _U64.pack_into(view, at + u + bitmap_at, addr + slot + i * room)
                _U32.pack_into(view, at + u + nr_at, nr_cpus)

        def decode(view: memoryview, at: int) -> VcpuAffinity:
            out = []
            for i in range(len(maps)):
                start = at + slot + i * room
                out.append(_dom._cpus_from(bytes(view[start:start + nbytes]), nr_cpus))
            return VcpuAffinity(vcpu, out[0], out[1] if len(out) > 1 else None)

        return self._queue(_Op("getvcpuaffinity", domid, len(maps) * room, fill, decode, single, call))

    def pause(self, domid: int) -> Call:
        return self._simple("pausedomain", domid, lambda w, t: _dom.pause(w, t, domid))

    def unpause(self, domid: int) -> Call:
        return self._simple("unpausedomain", domid, lambda w, t: _dom.unpause(w, t, domid))

    def set_max_mem(self, domid: int, kib: int) -> Call:
        """max_mem (KiB), as :meth:`Handle.set_max_mem`."""
        check_domid(domid)
        _dom._check_int(kib, "memory (KiB)", 0, _dom.MAX_MEM_KIB)
        return self._simple("max_mem", domid, lambda w, t: _dom.set_max_mem(w, t, domid, kib), kib)

    def _simple(self, subop: str, domid: int, single: Callable[[Wire, "Transport"], None],
                kib: Optional[int] = None) -> Call:
        check_domid(domid)
        self._handle._check_writable(subop)
        w, t = self._wt()
        call = Call(f"{subop}({domid})")
        if w.dom0_op:
            return self._queue(_Op(subop, domid, 0, _never, _never, lambda: single(w, t), call))
        p = plans(w)
        head = self._header(p, subop, domid)
        fill = head
        if kib is not None:
            at_kib = p.u + p.max_mem_at

            def fill(view: memoryview, at: int, addr: int) -> None:
                head(view, at, addr)
                _U64.pack_into(view, at + at_kib, kib)

        return self._queue(_Op(subop, domid, 0, fill, _none, lambda: single(w, t), call))

    def _wt(self) -> Tuple[Wire, "Transport"]:
        h = self._handle
        return h.wire, h.transport

    # -- running ------------------------------------------------------------------
    def __enter__(self) -> "Batch":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.run()

    def __len__(self) -> int:
        return len(self._ops)

    def run(self) -> None:
        """Issue every queued operation; each :class:`Call` then holds its outcome.

        Only errors of the operations themselves are kept in their calls; an
        error that is no hypercall's (a closed handle, KeyboardInterrupt)
        propagates, and the operations it kept from running are left not done.
        """
        ops, self._ops = self._ops, []
        if not ops:
            return
        h = self._handle
        w, t = self._wt()
        if w.dom0_op or h._multicall is False or not getattr(t, "multicall", False):
            for op in ops:
                _single(op)
            return
        p = plans(w)
        for chunk in _chunks(ops, p.slot):
            self._trap(p, t, chunk)

    def _trap(self, p: _Plans, t: "Transport", chunk: Sequence[_Op]) -> None:
        h = self._handle
        n = len(chunk)
        first = _align8(n * MULTICALL_ENTRY_SIZE)
        at: List[int] = []
        pos = first
        for op in chunk:
            at.append(pos)
            pos += p.slot + op.extra
        buf = t.scratch(pos)
        view = buf.view
        base = buf.address
        view[first:pos] = bytes(pos - first)
        for i, op in enumerate(chunk):
            op.fill(view, at[i], base + at[i])
            _ENTRY.pack_into(view, i * MULTICALL_ENTRY_SIZE, HYPERVISOR_domctl, NOT_RUN, base + at[i], 0, 0, 0, 0, 0)
        self.traps += 1
        refused = False
        try:
            t.hypercall(HYPERVISOR_multicall, base, n)
        except XenError as exc:
            if exc.errno == _errno.EBADF:
                raise
            refused = True
        except OSError:
            refused = True
        if not buf.alive:
            raise XenError(_errno.EBADF, "the handle was closed during a batch")
        leftover: List[_Op] = []
        for i, op in enumerate(chunk):
            rc = _RESULT.unpack_from(view, i * MULTICALL_ENTRY_SIZE + 8)[0]
            if rc == NOT_RUN:
                leftover.append(op)
            elif rc == -_errno.ENOSYS and op.subop in p.cmds:
                # The multicall table may lack domctl: one call tells.
                leftover.append(op)
            elif -_MAX_ERRNO <= rc < 0:
                op.call._fail(from_errno(-rc, hypercall="domctl", subop=op.subop, domid=op.domid))
            elif rc != 0:
                op.call._fail(DecodeError(f"domctl {op.subop}(domid={op.domid}): result {rc} inside a multicall"))
            else:
                try:
                    op.call._set(op.decode(view, at[i]))
                except (XenError, DecodeError, ValueError) as exc:
                    op.call._fail(exc)
        if refused or leftover:
            ran = n - len(leftover)
            if ran == 0 or refused:
                h._multicall = False
            for op in leftover:
                _single(op)
        elif h._multicall is None:
            h._multicall = True


def _single(op: _Op) -> None:
    try:
        op.call._set(op.single())
    except (XenError, DecodeError) as exc:
        op.call._fail(exc)


def _chunks(ops: Sequence[_Op], slot: int) -> Iterable[Sequence[_Op]]:
    start = 0
    size = 0
    for i, op in enumerate(ops):
        need = MULTICALL_ENTRY_SIZE + slot + op.extra
        if i > start and (i - start >= TRAP_MAX_ENTRIES or size + need > TRAP_MAX_BYTES):
            yield ops[start:i]
            start, size = i, 0
        size += need
    if start < len(ops):
        yield ops[start:]


def _never(*_args: Any) -> Any:  # pragma: no cover - dom0_op ops never go into a multicall
    raise AssertionError("not batched")


def _none(view: memoryview, at: int) -> None:
    return None


def _no_domain(subop: str, domid: int) -> NoSuchDomain:
    return NoSuchDomain(_errno.ESRCH, f"domctl {subop}(domid={domid}): no such domain (ESRCH)",
                        hypercall="domctl", subop=subop, domid=domid)


# -- shaped batches: the hot read-only batches as one precomputed image -----------------------
#
# vcpu_list and domain_infos ask the same questions scrape after scrape.  For
# one shape (which domains, how many vcpus, the buffer's address) the whole
# trap -- entries and requests -- is the same bytes every time: it is laid
# out once (by the general layout code above) and kept; a call copies it into
# the buffer in one slice assignment, issues the trap, checks every entry's
# result in one pass, and reads the replies with ``iter_unpack`` over the
# slots.  Anything unusual (an entry that failed or did not run, a domain
# that is not the one asked for) sends the whole call to the general batch,
# which is safe because these batches only read.

#: Shapes kept per handle (a scrape, an xl-style listing, ...).
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
        # all 0 when every domctl ran and succeeded (NOT_RUN, laid in the image, is not 0)
        self.results = struct.Struct("<" + "8xq48x" * n)


def _shape(h: Any, key: Tuple[Any, ...], make: Callable[[], Sequence[_Op]], slot: int) -> _Shape:
    """The trap image for ``key`` over this thread's buffer (``make`` lays out its ops, all of one slot size)."""
    t = h.transport
    shapes: Dict[Tuple[Any, ...], _Shape] = h.__dict__.setdefault("_shapes", {})
    n = key[1]
    first = _align8(n * MULTICALL_ENTRY_SIZE)
    size = first + n * slot
    buf = t.scratch(size)
    full = key + (buf.address,)
    got = shapes.get(full)
    if got is not None:
        return got
    ops = make()
    assert len(ops) == n
    view = buf.view
    view[:size] = bytes(size)
    for i, op in enumerate(ops):
        at = first + i * slot
        op.fill(view, at, buf.address + at)
        _ENTRY.pack_into(view, i * MULTICALL_ENTRY_SIZE, HYPERVISOR_domctl, NOT_RUN, buf.address + at,
                         0, 0, 0, 0, 0)
    got = _Shape(buf.address, bytes(view[:size]), n, first)
    if len(shapes) >= SHAPES_KEPT:
        shapes.clear()
    shapes[full] = got
    return got


def _run_shape(h: Any, shape: _Shape) -> Optional[memoryview]:
    """Issue the image; the buffer's view when every entry returned 0, else None."""
    t = h.transport
    buf = t.scratch(len(shape.image))
    if buf.address != shape.base:
        return None
    view: memoryview = buf.view
    view[:len(shape.image)] = shape.image
    try:
        t.hypercall(HYPERVISOR_multicall, shape.base, shape.n)
    except XenError as exc:
        if exc.errno == _errno.EBADF:
            raise
        return None
    except OSError:
        return None
    if any(shape.results.unpack_from(view, 0)):
        return None
    h._multicall = True
    return view


def shaped_ok(h: Any) -> bool:
    """Whether this handle's batches may take the shaped path."""
    return not h.wire.dom0_op and h._multicall is not False and bool(getattr(h.transport, "multicall", False))


def _ops_of(h: Any, queue: Callable[[Batch], None]) -> Callable[[], Sequence[_Op]]:
    def make() -> Sequence[_Op]:
        b = Batch(h)
        queue(b)
        return b._ops

    return make


def _slot_reader(prefix: int, fmt: str, slot: int) -> struct.Struct:
    """A Struct stepping over slots of ``slot`` bytes, reading ``fmt`` at ``prefix`` in each."""
    inner = struct.calcsize("<" + fmt)
    return struct.Struct(f"<{prefix}x{fmt}{slot - prefix - inner}x")


def infos_shaped(h: Any, ids: Sequence[int]) -> Optional[List[DomainInfo]]:
    """getdomaininfo of ``ids`` (already checked) in shaped traps; None: take the general batch."""
    w = h.wire
    p = plans(w)
    slot = p.slot
    per = min(TRAP_MAX_ENTRIES, TRAP_MAX_BYTES // (MULTICALL_ENTRY_SIZE + slot))
    reader = _slot_reader(p.u, w.info_reader.format.lstrip("<"), slot)
    out: List[DomainInfo] = []
    for start in range(0, len(ids), per):
        chunk = tuple(ids[start:start + per])

        def queue(b: Batch, c: Sequence[int] = chunk) -> None:
            for d in c:
                b.domain_info(d)

        shape = _shape(h, ("infos", len(chunk), chunk), _ops_of(h, queue), slot)
        view = _run_shape(h, shape)
        if view is None:
            return None
        recs = reader.iter_unpack(view[shape.slots_at:shape.slots_at + len(chunk) * slot])
        got = [_new(DomainInfo, r + (None,)) for r in recs] if w.info_fast else [w._info_slow(r) for r in recs]
        for g, d in zip(got, chunk):
            if g.domid != d:
                return None  # a missing domain (Xen < 4.18 answers with the next one): the general path says which
        out += got
    return out


def vcpus_shaped(h: Any, infos: Sequence[DomainInfo], affinity: bool = True) -> Optional[List[Any]]:
    """Every vcpu of ``infos`` in shaped traps: VcpuListEntry rows with the
    affinities, or (``affinity=False``) VcpuInfo rows of getvcpuinfo alone.
    None: take the general batch."""
    w = h.wire
    p = plans(w)
    if not p.vcpu_standard:
        return None
    nr_cpus = h.nr_cpus()
    key = ("vcpu_list", affinity, nr_cpus, tuple((i.domid, i.max_vcpu_id, i.name) for i in infos))
    layouts: Dict[Any, Any] = h.__dict__.setdefault("_vcpu_layouts", {})
    lay = layouts.get(key)
    if lay is None:
        if len(layouts) >= SHAPES_KEPT:
            layouts.clear()
        lay = layouts[key] = _VcpuLayout(h, p, nr_cpus, infos, affinity)
    cache = lay.maps_cache
    out: List[Any] = []
    for chunk_key, make, heads in lay.chunks:
        shape = _shape(h, chunk_key, make, lay.slot)
        view = _run_shape(h, shape)
        if view is None:
            return None
        n = len(heads)
        at = shape.slots_at
        states = lay.vcpu_reader.iter_unpack(view[at:at + n * lay.slot])
        if not affinity:
            out += [_new(VcpuInfo, (head[2],) + st) for head, st in zip(heads, states)]
            continue
        affs = lay.map_reader.iter_unpack(view[at + n * lay.slot:at + 2 * n * lay.slot])
        if len(cache) > 4096:
            cache.clear()
        get, miss = cache.get, lay.decode_maps
        out += [_new(VcpuListEntry, head + st + (get(aff) or miss(aff))) for head, st, aff in zip(heads, states, affs)]
    return out


class _VcpuLayout:
    """What a vcpu_list of one set of domains looks like in traps (see vcpus_shaped)."""

    def __init__(self, h: Any, p: _Plans, nr_cpus: int, infos: Sequence[DomainInfo], affinity: bool) -> None:
        nbytes = (nr_cpus + 7) // 8
        room = _align8(nbytes)
        nmaps = len(p.aff_maps)
        # one slot size for both kinds: a getvcpuinfo slot has room to spare
        self.slot = slot = p.slot + nmaps * room
        kinds = 2 if affinity else 1
        per = min(TRAP_MAX_ENTRIES, TRAP_MAX_BYTES // (MULTICALL_ENTRY_SIZE + slot)) // kinds
        # online, blocked, running, cpu_time, cpu: after the vcpu number, as "???xQI"
        self.vcpu_reader = _slot_reader(p.u + 4, "???xQI", slot)
        self.map_reader = _slot_reader(p.slot, f"{room}s" * nmaps, slot)
        self.maps_cache: Dict[Tuple[bytes, ...], Tuple[FrozenSet[int], Optional[FrozenSet[int]]]] = {}

        def decode_maps(raw: Tuple[bytes, ...]) -> Tuple[FrozenSet[int], Optional[FrozenSet[int]]]:
            hard = _dom._cpus_from(raw[0][:nbytes], nr_cpus)
            maps = self.maps_cache[raw] = (hard, _dom._cpus_from(raw[1][:nbytes], nr_cpus) if nmaps > 1 else None)
            return maps

        self.decode_maps = decode_maps
        pairs = [(i.domid, i.name, v) for i in infos for v in range(i.vcpus)]
        self.chunks = []
        for start in range(0, len(pairs), per):
            heads = pairs[start:start + per]

            def queue(b: Batch, c: Sequence[Tuple[int, Optional[str], int]] = heads) -> None:
                for d, _name, v in c:
                    b.vcpu_info(d, v)
                for d, _name, v in c if affinity else ():
                    b.vcpu_affinity(d, v)

            chunk_key = ("vcpus", kinds * len(heads), tuple((d, v) for d, _n, v in heads), nr_cpus)
            self.chunks.append((chunk_key, _ops_of(h, queue), heads))
