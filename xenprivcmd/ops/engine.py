"""The op engine: every hypercall request declared once, run three ways.

A :class:`Request` says, by Xen's names, what one hypercall sends and what it
reads back: its family (``domctl``, ``sysctl``, ``memory_op``, ...), its
sub-op, the payload struct, the fields set from the caller's arguments (in
order), fields with fixed values, the fields read back, its argument checks,
whether it only reads.  Nothing in it is a number of a release: for the
hypervisor at hand (one :class:`~xenprivcmd.abi.Variant`) the engine resolves
the declaration into a :class:`Layout` (the hypercall and its arguments, one
``struct.Struct`` writing the whole request with every byte between the
fields zeroed, one reading the reply), and the layout is what runs:

* **single**, on any transport (the simulator, replay, tracing and dry-run
  wrappers, a read-only guard): the request is packed into the calling
  thread's scratch buffer and issued with ``transport.hypercall``;
* **fast**, on the privcmd device itself: the same pack into the thread's
  :class:`~xenprivcmd.transport.privcmd.Lane`, whose prebuilt
  ``privcmd_hypercall`` already points at the buffer, and one ``ioctl``; a
  runner is prepared once per handle and request with everything bound, so
  nothing is looked up per call but the thread's lane;
* **batched**, as an entry of a multicall trap (:mod:`.batch`): the same pack
  into the entry's slot.

A runner (:meth:`Engine.runner`) takes the request's arguments (the domid
first for a request on a domain) and returns the tuple of the fields read
back.  The operations of :mod:`.domains`, :mod:`.host`, :mod:`.version` and
:mod:`.pools` are built on runners (:class:`Op`: one builder per operation,
run once per handle) and turn those tuples into typed results.  Two requests
where the answer of the first sizes or selects the next are one runner too
(:meth:`Engine.sized`: getdomaininfo's max_vcpu_id, then getvcpuinfo per vcpu;
:meth:`Engine.selected`: sched_id, then that scheduler's scheduler_op): one
frame issues both on the device.  Arguments are
checked before anything is issued; an ``OSError`` of the hypercall becomes the
typed error naming the hypercall, the sub-op and the domid
(:func:`xenprivcmd.abi.hypercalls.error`).  On a read-only handle a request
that does not only read is refused before anything is issued.

Payloads.  A request whose fields hold guest handles (cpumaps, record arrays)
names them in ``pointers``.  Its payload lives after the request: at
:data:`PAYLOAD_OFFSET` of the thread's buffer for a single call, after the
request in its slot of a multicall.  A caller of a runner sizes the buffer
first (:meth:`Engine.payload` gives the view to fill and read back, and the
payload's address for the pointer arguments), or asks for a runner that does
it (``runner(..., payload=size)``: pointer arguments are then offsets into the
payload); a batch's entries always give offsets (:meth:`.batch.Batch.add`).

What a handle learns while it runs (whether domctls work inside a multicall,
the size of cpumaps, ...) is kept in its :class:`HandleState`, which outlives
the engine of one transport (the shell's ``-t`` wraps the transport for a
while, and the handle gets a new engine for it).
"""

from __future__ import annotations

import ctypes
import errno as _errno
import struct
from _operator import itemgetter as _itemgetter
from _operator import lt as _lt
from _thread import _local as _thread_local

from ..abi import hypercalls as _hc
from ..abi.hypercalls import DOMID_MAX, error
from ..abi.layout import _code, fields
from ..errors import NoSuchDomain, NotSupported, ReadOnlyError, RestrictedError, XenError
from . import runners as _runners

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time (cold start)
    from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

    from ..transport.privcmd import Transport

    Fixed = Union[int, str, Callable[[Any], int]]
    Runner = Callable[..., Any]

_new = tuple.__new__
_NONE = (None,)
#: equal to no answer
_NOTHING = object()

__all__ = ["Request", "Check", "Layout", "Families", "Engine", "HandleState", "Op", "OPS", "op", "PAYLOAD_OFFSET",
           "declared_requests", "all_ops", "halves",
           "HEADER_DOMAIN", "HYPERCALL_OF"]

#: Where a request's payload starts in the thread's buffer (a single call).
PAYLOAD_OFFSET = 4096

#: The hypercall of each family; the plain families (not domctl/sysctl) take
#: ``(sub-op, address of the struct)``.
HYPERCALL_OF = {
    "domctl": _hc.HYPERVISOR_domctl, "sysctl": _hc.HYPERVISOR_sysctl, "memory_op": _hc.HYPERVISOR_memory_op,
    "xen_version": _hc.HYPERVISOR_xen_version, "event_channel_op": _hc.HYPERCALLS["event_channel_op"],
    "hvm_op": _hc.HYPERCALLS["hvm_op"], "grant_table_op": _hc.HYPERCALLS["grant_table_op"],
    "vcpu_op": _hc.HYPERCALLS["vcpu_op"],
}
#: The prefix of each plain family's sub-op constants.
SUBOP_PREFIX = {"memory_op": "XENMEM_", "xen_version": "XENVER_", "event_channel_op": "EVTCHNOP_",
                "hvm_op": "HVMOP_", "grant_table_op": "GNTTABOP_", "vcpu_op": "VCPUOP_"}
#: A ``read`` path: the domid in a domctl's header (createdomain's answer).
HEADER_DOMAIN = "$domain"


def halves(rc: int) -> Tuple[int, int]:
    """A return value's high and low 16 bits (``XENVER_version``'s major and minor): as a
    runner's ``convert``, the device's runner splits it in its own frame."""
    return rc >> 16, rc & 0xFFFF


class _DomidArg(ctypes.Structure):
    """A bare ``domid_t`` (``uint16_t`` in every release): the argument of the memory_ops
    that only name a domain (``XENMEM_maximum_gpfn``, ``XENMEM_current_reservation``)."""

    _fields_ = [("domid", ctypes.c_uint16)]


#: Argument types that are no struct of the tables, by the name a request gives as its ``struct``.
ARGUMENT_TYPES: Dict[str, type] = {"domid_t": _DomidArg}


class Check:
    """A range check of the int argument at ``index`` (``what`` names it in the error)."""

    __slots__ = ("index", "what", "lo", "hi")

    def __init__(self, index: int, what: str, lo: int, hi: int) -> None:
        self.index, self.what, self.lo, self.hi = index, what, lo, hi

    def __call__(self, value: Any) -> Any:
        if value.__class__ is not int and (isinstance(value, bool) or not isinstance(value, int)):
            raise TypeError(f"{self.what} must be an int, not {type(value).__name__}")
        if not self.lo <= value <= self.hi:
            raise ValueError(f"{self.what} {value} is out of range {self.lo}..{self.hi}")
        return value


class Request:
    """One hypercall request, declared once (see the module doc).

    * ``family``: ``"domctl"``, ``"sysctl"`` or a plain family of :data:`HYPERCALL_OF`;
      ``subop``: Xen's name of the sub-op (``XEN_DOMCTL_<subop>``, ``XENMEM_<subop>``, ...);
    * ``struct``: C name of the payload struct (a domctl/sysctl union member's type, or
      what a plain family's second argument points at; None: the request has none);
      ``member``: the union member (default: ``subop``);
    * ``send``: field paths (``a.b``) set from the arguments, in order (after the domid
      of a domctl); ``fixed``: (path, value) with a value that is an int, a constant's
      name or a function of the release's constants; ``pointers``: the ``send`` paths
      given as offsets into the payload area (see the module doc); ``optional``: ``send`` and
      ``fixed`` paths a release may lack (its argument, or value, is then left out);
    * ``read``: field paths read back (:data:`HEADER_DOMAIN`: a domctl's header domid);
      a field the release lacks reads as ``None``; ``bools``: those of them read as
      ``bool`` (a byte, true when not 0);
    * ``checks``: range checks of int arguments (indexes count the domid);
    * ``domain``: the first argument is a domid (a domctl's header field, or
      ``domid_field`` of the struct of a plain family); ``reads``: it only reads (a
      read-only handle may issue it); ``stable``: a stable domctl (interface version
      0, Xen 4.21+); ``arg``: a plain family's first argument when it is not the
      number of the sub-op's constant; ``returns``: the hypercall's return value is the
      first item of what a runner returns (a size, a count, a version).

    A struct may be a fixed-size type with no fields (``xen_extraversion_t``): the
    request then writes that many zero bytes and the caller reads what came back.
    """

    __slots__ = ("name", "family", "subop", "struct", "member", "send", "fixed", "read", "bools", "pointers",
                 "optional", "checks", "domain", "domid_field", "reads", "stable", "arg", "returns")

    def __init__(self, family: str, subop: str, *, struct: Optional[str] = None, member: Optional[str] = None,
                 send: Sequence[str] = (), fixed: Sequence[Tuple[str, Fixed]] = (), read: Sequence[str] = (),
                 bools: Sequence[str] = (), pointers: Sequence[str] = (), optional: Sequence[str] = (), checks: Sequence[Check] = (), domain: Optional[bool] = None,
                 domid_field: Optional[str] = None, reads: bool, stable: bool = False,
                 arg: Optional[int] = None, returns: bool = False) -> None:
        if family not in HYPERCALL_OF:
            raise ValueError(f"unknown hypercall family {family!r}")
        self.family = family
        self.subop = subop
        self.name = f"{family} {subop}"
        self.struct = struct
        self.member = member or subop
        self.send = tuple(send)
        self.fixed = tuple(fixed)
        self.read = tuple(read)
        self.bools = frozenset(bools)
        if not self.bools <= set(self.read):
            raise ValueError(f"{self.name}: bools must be read fields")
        self.optional = frozenset(optional)
        self.pointers = frozenset(pointers)
        if not self.pointers <= set(self.send):
            raise ValueError(f"{self.name}: pointers must be sent fields")
        self.checks = tuple(checks)
        self.domain = family == "domctl" if domain is None else domain
        if self.domain and family != "domctl" and not (domid_field and self.send[:1] == (domid_field,)):
            raise ValueError(f"{self.name}: the domid of a {family} request is its first sent field")
        self.domid_field = domid_field
        self.reads = reads
        self.stable = stable
        self.arg = arg
        self.returns = returns

    @property
    def nargs(self) -> int:
        """How many arguments a runner takes."""
        return len(self.send) + (1 if self.family == "domctl" and self.domain else 0)

    def __repr__(self) -> str:
        return f"<Request {self.name}>"


class Layout:
    """A :class:`Request` resolved for one release (see the module doc).

    ``hypercall`` and ``args`` (``None`` stands for the request's address) are
    what is issued; ``pack(view, at, *values)`` writes ``size`` bytes at ``at``:
    the header, the values, zeros between; :meth:`values` orders a runner's
    arguments for it.  ``unpack(view, at + read_at)`` reads the ``read`` fields
    (:meth:`result` puts them in their declared order, ``None`` for those the
    release lacks).
    """

    __slots__ = ("request", "hypercall", "args", "key", "size", "pack", "head", "direct", "order", "pointer_at",
                 "pointer_fields", "unpack", "read_format", "read_at", "pick", "picker")

    def __init__(self, request: Request, hypercall: int, args: Tuple[Optional[int], ...], size: int,
                 head: Sequence[Tuple[int, str, Optional[int]]], sent: Sequence[Optional[Tuple[int, str]]],
                 fixed: Sequence[Tuple[int, str, int]], reads: Sequence[Optional[Tuple[int, str]]]) -> None:
        self.request = request
        self.hypercall = hypercall
        self.args = args
        #: (hypercall, a0..a4): the lane's prebuilt request for it
        self.key: Tuple[Optional[int], ...] = (hypercall,) + args
        self.size = size
        # one Struct over [0, size): every item at its offset, in offset order
        items: List[Tuple[int, str, Tuple[str, Any]]] = [(at, code, ("head", v)) for at, code, v in head]
        items += [(f[0], f[1], ("arg", i)) for i, f in enumerate(sent) if f is not None]
        items += [(at, code, ("fixed", v)) for at, code, v in fixed]
        items.sort(key=lambda x: x[0])
        fmt, pos = ["<"], 0
        for at, code, _src in items:
            if at < pos:
                raise ValueError(f"{request.name}: overlapping fields at offset {at}")
            if at > pos:
                fmt.append(f"{at - pos}x")
            fmt.append(code)
            pos = at + struct.calcsize("<" + code)
        if size < pos:
            raise ValueError(f"{request.name}: fields end at {pos}, beyond the request's {size} bytes")
        if size > pos:
            fmt.append(f"{size - pos}x")
        self.pack = struct.Struct("".join(fmt)).pack_into
        self.order = tuple(src for _at, _code, src in items)
        #: the header values that precede the runner's arguments (a domctl's domid is its first)
        self.head = tuple(v for kind, v in self.order if kind == "head" and v is not None)
        skip = 1 if request.family == "domctl" and request.domain else 0
        #: ``pack(view, at, *head, *args)`` lays the request out (no reordering, no fixed value)
        expect = [("head", v) for v in self.head] + ([("head", None)] if skip else []) + \
                 [("arg", i) for i in range(len(sent))]
        self.direct = list(self.order) == expect
        self.pointer_at = tuple(i + skip for i, p in enumerate(request.send) if p in request.pointers)
        #: (offset, struct code) of each pointer field in the request
        self.pointer_fields = tuple(f for i, (p, f) in enumerate(zip(request.send, sent))
                                    if p in request.pointers and f is not None)
        present = [(at, code, i) for i, r in enumerate(reads) if r is not None for at, code in [r]]
        if present:
            present.sort()
            lo = present[0][0]
            rfmt, rpos = ["<"], lo
            index: Dict[int, int] = {}
            for n, (at, code, i) in enumerate(present):
                if at < rpos:
                    raise ValueError(f"{request.name}: overlapping read fields at offset {at}")
                if at > rpos:
                    rfmt.append(f"{at - rpos}x")
                rfmt.append(code)
                rpos = at + struct.calcsize("<" + code)
                index[i] = n
            #: the struct format of what is read, from ``read_at`` on
            self.read_format = "".join(rfmt)
            self.unpack: Callable[..., Tuple[Any, ...]] = struct.Struct(self.read_format).unpack_from
            self.read_at = lo
            order = [index.get(i) for i in range(len(reads))]
            self.pick: Optional[Tuple[Optional[int], ...]] = None if order == list(range(len(reads))) else tuple(order)
            #: ``picker(unpacked + (None,))``: the fields in their declared order, in C (a field the
            #: release lacks is the None appended)
            self.picker: Optional[Callable[[Tuple[Any, ...]], Tuple[Any, ...]]] = None
            if self.pick is not None:
                where = [len(present) if i is None else i for i in order]
                if len(where) > 1:
                    self.picker = _itemgetter(*where)
                else:
                    self.picker = _itemgetter(slice(where[0], where[0] + 1))
        else:
            self.read_format = "<"
            self.unpack = struct.Struct("<").unpack_from  # nothing read back: () (in C, no frame)
            self.read_at = 0
            self.pick = None
            self.picker = None

    def values(self, args: Sequence[Any], payload: int) -> List[Any]:
        """What ``pack`` takes for a runner's ``args``: pointers made addresses
        (``payload`` is the payload area's), fixed values placed, in offset order."""
        a = list(args)
        for i in self.pointer_at:
            a[i] += payload
        skip = 1 if self.request.family == "domctl" and self.request.domain else 0
        out = []
        for kind, v in self.order:
            if kind == "head":
                out.append(a[0] if v is None else v)
            elif kind == "arg":
                out.append(a[v + skip])
            else:
                out.append(v)
        return out

    def result(self, raw: Tuple[Any, ...]) -> Tuple[Any, ...]:
        """The ``read`` fields in their declared order from an unpacked reply."""
        picker = self.picker
        return raw if picker is None else picker(raw + _NONE)


def code_of(ctype: type) -> str:
    """The struct code of a field: a scalar's, ``Ns`` for a char array or any other array
    (read as its raw bytes)."""
    try:
        return _code(ctype)
    except TypeError:
        if getattr(ctype, "_length_", None) is None:
            raise
        return f"{ctypes.sizeof(ctype)}s"


def field_path(cls: type, path: str) -> Tuple[int, type]:
    """(offset, ctypes type) of a field path ``a.b.c`` in ``cls``; KeyError if absent."""
    at = 0
    for part in path.split("."):
        f = fields(cls)
        if part not in f:
            raise KeyError(part)
        off, cls = f[part]
        at += off
    return at, cls


# -- resolving requests for a release ------------------------------------------------------------

class Families:
    """Resolves requests for one release with domctl/sysctl (Xen 3.0.3 on); Xen
    3.0.0-3.0.2's dom0_op has :class:`~xenprivcmd.ops.dom0op.Dom0OpFamilies`.
    ``memo`` keeps what operations derive from the release (readers, flag maps)."""

    #: True for the dom0_op era.
    dom0_op = False

    def __init__(self, variant: Any) -> None:
        self.variant = variant
        self.constants = variant.constants
        self.structs = variant.structs
        self._wrappers: Dict[str, Tuple[int, int, int]] = {}
        self._memo: Dict[Any, Any] = {}

    def memo(self, key: Any, make: Callable[[], Any]) -> Any:
        """``make()`` once per release (kept with the families)."""
        try:
            return self._memo[key]
        except KeyError:
            got = self._memo[key] = make()
            return got

    def wrapper(self, family: str) -> Tuple[int, int, int]:
        """(size, offset of ``u``, interface version) of the domctl or sysctl wrapper."""
        got = self._wrappers.get(family)
        if got is None:
            v = self.variant
            iv = v.domctl_interface_version if family == "domctl" else v.sysctl_interface_version
            if iv is None:
                raise NotSupported(_errno.ENOSYS, f"Xen {v.release} has no {family} hypercall")
            cls = self.structs.lean("xen_" + family)
            names = ("cmd", "interface_version", "domain") if family == "domctl" else ("cmd", "interface_version")
            where = [getattr(cls, f).offset for f in names]
            if where != [0, 4, 8][:len(where)]:
                raise ValueError(f"unexpected {family} header layout {where} in {v.release}")
            got = self._wrappers[family] = (ctypes.sizeof(cls), cls.u.offset, int(iv))
        return got

    def const(self, name: str, what: str) -> int:
        """A constant of the release; :class:`NotSupported` naming ``what`` when it lacks it."""
        try:
            return int(self.constants[name])
        except KeyError:
            raise NotSupported(_errno.ENOSYS, f"{what}: Xen {self.variant.release} has no {name}") from None

    def struct(self, name: str, what: str) -> type:
        """A struct of the release; :class:`NotSupported` naming ``what`` when it lacks it."""
        cls = self.structs.get(name) or ARGUMENT_TYPES.get(name)
        if cls is None:
            raise NotSupported(_errno.ENOSYS, f"{what}: Xen {self.variant.release} has no {name}")
        return cls  # type: ignore[no-any-return]

    def has(self, name: str, field: Optional[str] = None) -> bool:
        """Whether the release has struct ``name`` (and its field path ``field``)."""
        try:
            cls = self.struct(name, name)
        except NotSupported:
            return False
        if field is None:
            return True
        try:
            field_path(cls, field)
        except KeyError:
            return False
        return True

    def _xen_version_struct(self, request: Request) -> type:
        """xen_version's payloads are a stable ABI (public/version.h, unchanged since Xen 3.0;
        new sub-ops add types): laid out by the newest release's tables on every release, so
        a release whose tables lack a type (xen_feature_info before 3.0.2) still has it."""
        name = request.struct or ""
        cls = self.structs.get(name)
        if cls is None:
            from .. import abi

            head = abi.variant(abi.head_release(), arch=self.variant.arch)
            cls = head.structs.get(name)
        if cls is None:
            raise NotSupported(_errno.ENOSYS, f"{request.name}: no release has {request.struct}")
        return cls  # type: ignore[no-any-return]

    def fixed_value(self, value: Fixed, what: str) -> int:
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            return self.const(value, what)
        return int(value(self.constants))

    def layout(self, request: Request) -> Layout:
        """The request laid out for this release; :class:`NotSupported` when it lacks it."""
        fam = request.family
        if fam == "xen_version":
            cls = None if request.struct is None else self._xen_version_struct(request)
        else:
            cls = None if request.struct is None else self.struct(request.struct, request.name)
        head: List[Tuple[int, str, Optional[int]]] = []
        if fam in ("domctl", "sysctl"):
            cmd = self.const(("XEN_DOMCTL_" if fam == "domctl" else "XEN_SYSCTL_") + request.subop, request.name)
            size, base, iv = self.wrapper(fam)
            head = [(0, "I", cmd), (4, "I", 0 if request.stable else iv)]
            if fam == "domctl":
                head.append((8, "H", None if request.domain else 0))  # the domid: the runner's first argument
            args: Tuple[Optional[int], ...] = (None, 0, 0, 0, 0)
        else:
            size = 0 if cls is None else ctypes.sizeof(cls)
            base = 0
            first = request.arg if request.arg is not None else \
                self.const(SUBOP_PREFIX[fam] + request.subop, request.name)
            args = (first, 0 if cls is None else None, 0, 0, 0)
        return self._finish(request, cls, HYPERCALL_OF[fam], args, size, base, head)

    def _finish(self, request: Request, cls: Optional[type], hypercall: int, args: Tuple[Optional[int], ...],
                size: int, base: int, head: List[Tuple[int, str, Optional[int]]],
                header_domain: Optional[int] = 8) -> Layout:
        """The fields of ``cls`` at ``base`` of the request (names: the request's);
        ``header_domain``: where :data:`HEADER_DOMAIN` reads."""
        def where(path: str) -> Tuple[int, str]:
            if cls is None:
                raise NotSupported(_errno.ENOSYS, f"{request.name}: no struct to hold {path}")
            try:
                at, ctype = field_path(cls, path)
            except KeyError:
                raise NotSupported(_errno.ENOSYS, f"{request.name}: Xen {self.variant.release}'s {request.struct} "
                                   f"has no {path}") from None
            try:
                return base + at, code_of(ctype)
            except TypeError:  # a struct where the request wants a value (another era's layout)
                raise NotSupported(_errno.ENOSYS, f"{request.name}: Xen {self.variant.release}'s {path} "
                                   "is no scalar field") from None

        sent: List[Optional[Tuple[int, str]]] = []
        for p in request.send:
            try:
                sent.append(where(p))
            except NotSupported:
                if p not in request.optional:
                    raise
                sent.append(None)  # a field this release lacks: its argument is left out
        fixed = []
        for p, v in request.fixed:
            try:
                fixed.append(where(p) + (self.fixed_value(v, request.name),))
            except NotSupported:
                if p not in request.optional:
                    raise
        reads: List[Optional[Tuple[int, str]]] = []
        for p in request.read:
            if p == HEADER_DOMAIN:
                reads.append(None if header_domain is None else (header_domain, "H"))
                continue
            try:
                at, code = where(p)
            except NotSupported:
                reads.append(None)
                continue
            reads.append((at, "?" if p in request.bools and code in ("B", "b") else code))
        return Layout(request, hypercall, args, size, head, sent, fixed, reads)


# -- what a handle learns ----------------------------------------------------------------------

class HandleState:
    """What a handle learns while it runs, kept across its engines (transports).

    ``multicall``: whether domctls work inside a multicall (None until a batch
    tells); ``varbuf_ops``: whether xen_version has the ``*2`` sub-ops;
    ``nr_cpus``: the size of cpumaps; ``console_index``: where the last
    incremental console read ended.  ``shapes``: the laid-out images of the hot
    read-only batches (:mod:`.batch`), per engine.
    """

    __slots__ = ("multicall", "varbuf_ops", "nr_cpus", "console_index")

    def __init__(self) -> None:
        self.multicall: Optional[bool] = None
        self.varbuf_ops: Optional[bool] = None
        self.nr_cpus: Optional[int] = None
        self.console_index: Optional[int] = None


# -- operations ---------------------------------------------------------------------------------

class Op:
    """One operation of the handle: its name, whether it only reads, and its builder
    (``build(engine) -> callable``, run once per engine)."""

    __slots__ = ("name", "reads", "build", "doc")

    def __init__(self, name: str, reads: bool, build: Callable[[Engine], Callable[..., Any]]) -> None:
        self.name = name
        self.reads = reads
        self.build = build
        self.doc = build.__doc__


#: Every operation, by name (filled by the modules that declare them: :func:`op`).
OPS: Dict[str, Op] = {}


def op(name: str, *, reads: bool) -> Callable[[Callable[[Engine], Callable[..., Any]]], Callable[[Engine], Any]]:
    """Register ``build`` as operation ``name`` (a decorator)."""
    def register(build: Callable[[Engine], Callable[..., Any]]) -> Callable[[Engine], Any]:
        if name in OPS:
            raise ValueError(f"operation {name} declared twice")
        OPS[name] = Op(name, reads, build)
        return build

    return register


class _Ops:
    """An engine's operations as attributes, each built on first use."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        decl = OPS.get(name)
        if decl is None:
            for m in OP_MODULES:  # in order, until the one that declares it (a listing loads one)
                __import__(f"{__package__}.{m}")
                decl = OPS.get(name)
                if decl is not None:
                    break
            else:
                raise AttributeError(f"no operation {name!r}")
        e = self._engine
        fn = _refused_op(name) if e.read_only and not decl.reads else decl.build(e)
        setattr(self, name, fn)
        return fn


#: The modules that declare operations (imported when an operation is first asked for).
OP_MODULES = ("domains", "host", "version", "pools", "memory", "channels", "builder")


def _load_ops() -> None:
    for m in OP_MODULES:
        __import__(f"{__package__}.{m}")


def declared_requests() -> List[Request]:
    """Every request the operation modules declare (at module level, or in a dict or tuple
    there), each once, in declaration order: what the tests run single, fast and batched."""
    import sys

    _load_ops()
    out: List[Request] = []
    seen = set()
    for m in OP_MODULES:
        for value in vars(sys.modules[f"{__package__}.{m}"]).values():
            items = value.values() if isinstance(value, dict) else value if isinstance(value, tuple) else (value,)
            for r in items:
                if isinstance(r, Request) and id(r) not in seen:
                    seen.add(id(r))
                    out.append(r)
    return out


def all_ops() -> Dict[str, Op]:
    """Every operation (their modules imported)."""
    _load_ops()
    return dict(OPS)


def _refused_op(name: str) -> Callable[..., Any]:
    def refused(*_args: Any, **_kw: Any) -> Any:
        raise ReadOnlyError(_errno.EPERM, f"{name}: refused, the handle is read-only")

    refused.__name__ = refused.__qualname__ = name
    return refused


# -- the engine --------------------------------------------------------------------------------

class Engine:
    """Runs requests and builds operations for one handle on one transport.

    ``families`` resolves requests for the release (:class:`Families`);
    ``resolve`` turns anything but an int domid in range into one (the handle's
    lookup by name, UUID or DomainInfo; range errors for ints); ``state`` is the
    handle's :class:`HandleState`; ``read_only`` refuses what does not only
    read.  ``ops`` holds the operations (built on first use); ``handle`` is what
    operations may ask of the handle (names, nr_cpus, the scheduler).
    """

    def __init__(self, families: Any, transport: Transport, *, resolve: Callable[[Any], int],
                 state: HandleState, handle: Any, read_only: bool = False) -> None:
        from ..transport.privcmd import PrivcmdTransport

        self.families = families
        self.transport = transport
        self.resolve = resolve
        self.state = state
        self.handle = handle
        self.read_only = read_only
        #: The privcmd device itself: runners take the fast path.
        self.device = isinstance(transport, PrivcmdTransport)
        self.ops = _Ops(self)
        self._layouts: Dict[Request, Layout] = {}
        self._runners: Dict[Any, Runner] = {}
        self._lanes = _thread_local()  # the fast path's lane of each thread
        #: The hot batches' laid-out traps (:mod:`.batch`), by shape.
        self.shapes: Dict[Any, Any] = {}

    @property
    def variant(self) -> Any:
        return self.families.variant

    @property
    def multicall(self) -> bool:
        """Whether batches may go as multicall traps here (the transport can, the
        release is no dom0_op one, and the hypervisor has not refused them)."""
        return (not self.families.dom0_op and self.state.multicall is not False
                and bool(getattr(self.transport, "multicall", False)))

    def layout(self, request: Request) -> Layout:
        """``request`` laid out for this release (:class:`NotSupported` if it lacks it)."""
        got = self._layouts.get(request)
        if got is None:
            got = self._layouts[request] = self.families.layout(request)
        return got

    def has(self, request: Request) -> bool:
        """Whether this release has ``request`` (its constant, struct and fields)."""
        try:
            self.layout(request)
        except NotSupported:
            return False
        return True

    def runner(self, request: Request, result: Any = None, tail: Tuple[Any, ...] = (),
               echo: Optional[int] = None, payload: Optional[int] = None, lead: Tuple[Any, ...] = (),
               convert: Optional[Callable[[Any], Any]] = None,
               named: Optional[Tuple[Callable[[Any], Any], Callable[[Any], Any]]] = None) -> Runner:
        """``run(*args)``: ``request`` on this handle's transport (:class:`NotSupported` now
        when the release lacks it), returning the fields read back in their declared
        order (after the hypercall's return value for a request that ``returns``), or
        ``result(*fields, *tail)`` when a result type (a tuple subclass) is given.
        ``echo``: the index of a field read back that must be the domid asked for
        (:class:`~xenprivcmd.errors.NoSuchDomain` otherwise).  A pointer argument is an
        address (see :meth:`payload`); with ``payload`` (bytes), the runner makes room for
        that much payload itself, takes its pointer arguments as offsets into it, and
        returns ``(view, *fields)``: the view holds the payload at :data:`PAYLOAD_OFFSET`.
        ``lead``: values put before the fields of a result (``result(*lead, *fields, *tail)``);
        ``convert``: what the runner returns is ``convert(fields)`` (no ``result``), or for a
        request with no struct read for its return value alone ``convert(value)`` (a C callable
        keeps it one frame; a Python one is one frame, where a wrapper around the runner is two).
        ``named = (other, then)``, for a request of the domid alone with a result and its echo
        (no ``lead``, no return value), on the privcmd device only: the runner is
        ``run(dom, name=True)``; a ``dom`` that is no domid in range goes to ``other(dom)``,
        which gives the domid or the answer itself (a domain looked up by name), and with
        ``name`` the result goes through ``then`` (the domain's name added)."""
        k = (request, result, tail, echo, payload, lead, convert, named)
        got = self._runners.get(k)
        if got is None:
            if self.read_only and not request.reads:
                got = _refuse(request)
            elif named is not None:
                lay = self.layout(request)
                if not (self.device and request.domain and request.nargs == 1 and result is not None
                        and echo is not None and not lead and not request.returns):
                    raise ValueError(f"{request.name}: a named runner is one of the domid alone on the device,"
                                     " with a result and the domid's echo")
                got = self._fast(lay, result, tail, echo, payload, lead, convert, named)
            else:
                lay = self.layout(request)
                build = self._fast if self.device else self._single
                got = build(lay, result, tail, echo, payload, lead, convert)
            self._runners[k] = got
        return got

    def listing(self, request: Request, chunk: int, size: int, records: Optional[Callable[[Any], Any]],
                many: Callable[[Any, int, int], List[Any]], result: Any, tail: Tuple[Any, ...], limit: int,
                too_many: Callable[[int], BaseException],
                out_of_order: Callable[[List[int], int], BaseException],
                then: Callable[[List[Any]], List[Any]]) -> Callable[..., List[Any]]:
        """``run(names=True)``: every record of a listing paginated by its records' first
        field.  ``request`` takes ``(first, chunk, payload pointer)`` and reads back one field,
        how many records (``size`` bytes each) it wrote at the payload; ``records`` reads such
        bytes in C into tuples (then ``result(*record, *tail)`` each), else ``many(view,
        offset, count)`` gives the list.  The first fields must ascend from ``first`` on,
        below ``limit`` (else ``out_of_order(fields, first)`` is raised; a count above
        ``chunk``, ``too_many(count)``); with ``names`` the list goes through ``then``.  On
        the privcmd device, while the request has that shape, the listing issues the
        hypercall in its own frame (getdomaininfolist)."""
        values = dict(chunk=chunk, records=records, many=many, P=PAYLOAD_OFFSET, size=size, LIMIT=limit,
                      mk=result, tail=tail, new=_new, lt=_lt, too_many=too_many, listing_error=out_of_order,
                      then=then)
        lay = self.layout(request)
        req = lay.request
        if self.device and not (self.read_only and not req.reads) and req.nargs == 3 and not req.domain \
                and not req.checks and not req.returns and lay.direct and lay.pick is None \
                and tuple(lay.pointer_at) == (2,) and len(lay.head) == 2 and len(req.read) == 1:
            t: Any = self.transport
            acquire = self._acquirer(lay, max(lay.size, PAYLOAD_OFFSET + chunk * size))
            h0, h1 = lay.head
            rl = acquire.local  # type: ignore[attr-defined]
            return _runners.bind("listing_device", f"{req.subop}_listing", **values, rl=rl, acquire=acquire,
                                 pack=lay.pack, h0=h0, h1=h1, t=t, ioctl=t.ioctl, fd=t.fd, number=t.request,
                                 failed=self._failure(lay), unpack=lay.unpack, read_at=lay.read_at)
        return _runners.bind("listing", f"{req.subop}_listing", **values,
                             run=self.runner(request, payload=chunk * size))

    def sized(self, first: Request, request: Request, count: Callable[[Tuple[Any, ...]], int],
              result: Any = None, echo: Optional[int] = None) -> Callable[[Any], List[Any]]:
        """``run(domid)``: a request whose answer sizes a series of the next.  ``first`` (a
        domain request of the domid alone) answers its fields in their declared order
        (``echo`` as :meth:`runner`'s: the index of the field that must be the domid);
        ``count(fields)`` says how many items follow (it raises for an answer it refuses);
        then ``request`` (a domain request of one more argument) runs for the domid and each
        of ``range(count)``, in order: the list of what each answered (as :meth:`runner`,
        ``result`` the type of each).  ``vcpu_info``: getdomaininfo's max_vcpu_id, then
        getvcpuinfo per vcpu.  On the privcmd device one frame issues them all on the
        thread's lane, everything bound once; elsewhere the two runners in turn."""
        lay1, lay = self.layout(first), self.layout(request)
        req1, req = lay1.request, lay.request
        if not self.device or self.read_only and not (req1.reads and req.reads) or not (
                req1.domain and req1.nargs == 1 and lay1.direct and not req1.returns and len(lay1.head) == 2
                and not req1.checks and _series_shape(lay)):
            one, each = self.runner(first, echo=echo), self.runner(request, result)
            checked = self.check

            def sized(domid: Any) -> List[Any]:
                domid = checked(first, (domid,))[0]
                return [each(domid, a) for a in range(count(one(domid)))]

            return sized
        t: Any = self.transport
        size = max(lay1.size, lay.size, 1)
        pack1, unpack1, read1, picker1 = lay1.pack, lay1.unpack, lay1.read_at, lay1.picker
        f0, f1 = lay1.head
        pack, unpack, read_at = lay.pack, lay.unpack, lay.read_at
        h0, h1 = lay.head
        ioctl, fd, number = t.ioctl, t.fd, t.request
        failed1, failed = self._failure(lay1), self._failure(lay)
        acquire = self._acquirer(lay1, size, lay.key)
        rl = acquire.local  # type: ignore[attr-defined]
        resolve, mk = self.resolve, result
        check = req.checks[0] if req.checks else Check(1, "argument", -(1 << 64), 1 << 64)
        lo, hi = check.lo, check.hi
        where = -1 if echo is None else echo
        subop1 = req1.subop

        return _runners.bind("sized", f"{req1.subop}_{req.subop}", rl=rl, acquire=acquire,
                             resolve=resolve, DOMID_MAX=DOMID_MAX, pack1=pack1, f0=f0, f1=f1, unpack1=unpack1,
                             read1=read1, picker=picker1, failed1=failed1, where=where, NoSuchDomain=NoSuchDomain,
                             ESRCH=_errno.ESRCH, subop1=subop1, count=count, lo=lo, hi=hi, check=check, pack=pack,
                             h0=h0, h1=h1, unpack=unpack, read_at=read_at, failed=failed, mk=mk, new=_new, t=t,
                             ioctl=ioctl, fd=fd, number=number, NONE=_NONE)

    def selected(self, first: Request, choose: Callable[[Tuple[Any, ...]], Tuple[Request, Tuple[Any, ...], Any,
                                                                                  Tuple[Any, ...]]],
                 ) -> Callable[[Any], Any]:
        """``run(domid)``: a request whose answer selects the next.  ``first`` (a request of
        no argument: the host's scheduler) answers its fields; ``choose(fields)`` gives
        ``(request, args, result, lead)``: the domain request to issue for the domid and
        ``args`` after it, answered as :meth:`runner`'s with that ``result`` and ``lead``
        (``choose`` raises for an answer it cannot serve).  Each answer is chosen for once
        (what ``choose`` gave is kept by the fields' values) but ``first`` is issued on
        every call: what it answers may change.  On the privcmd device, for a ``first`` that
        reads one field, one frame issues both on the thread's lane; elsewhere the runners
        in turn."""
        lay1 = self.layout(first)
        req1 = lay1.request
        chosen: Dict[Tuple[Any, ...], Tuple[Any, ...]] = {}
        resolve = self.resolve
        if not self.device or self.read_only and not req1.reads or not (
                not req1.domain and req1.nargs == 0 and lay1.direct and not req1.returns and len(lay1.head) == 2
                and lay1.picker is None and len(req1.read) == 1):
            ask = self.runner(first)

            def prepared(vals: Tuple[Any, ...]) -> Tuple[Any, ...]:
                request, args, result, lead = choose(vals)
                got = chosen[vals] = (self.runner(request, result, lead=lead), args)
                return got

            def selected(domid: Any) -> Any:
                if domid.__class__ is not int or not 0 <= domid <= DOMID_MAX:
                    domid = resolve(domid)
                vals = ask()
                run, args = chosen.get(vals) or prepared(vals)
                return run(domid, *args)

            return selected
        t: Any = self.transport
        pack1, unpack1, read1 = lay1.pack, lay1.unpack, lay1.read_at
        f0, f1 = lay1.head
        ioctl, fd, number = t.ioctl, t.fd, t.request
        failed1 = self._failure(lay1)
        lane_of, key1 = t.lane, lay1.key
        rl = _thread_local()
        #: the hypercall key of the chosen request that runs in this frame, and the lane size
        #: both requests fit in
        second: List[Any] = [None, max(lay1.size, 1)]
        #: the runner's globals (below): ``answer`` (the first request's one field) and what
        #: runs in the frame after it, the first chosen request of a domain and two more arguments
        mine: Dict[str, Any]  # set below, once the runner is made

        def acquire() -> Tuple[Any, Any, Any, Any]:
            """(buffer, view, the first request's prebuilt request, the chosen one's or None) of
            this thread's lane."""
            key2, need = second
            lane = lane_of(need)
            rl.pair = got = (lane.buf, lane.view, lane.request(key1), None if key2 is None else lane.request(key2))
            return got

        def aside(domid: int, vals: Tuple[Any, ...]) -> Any:
            """After an answer that does not run in the frame (not yet chosen for, not yet on this
            thread's lane, or another answer than the one the frame runs): the chosen request by
            its own runner (the same hypercall).  The first chosen request of the frame's shape
            runs in the frame from the next call on."""
            got = chosen.get(vals)
            if got is None:
                request, args, result, lead = choose(vals)
                lay = self.layout(request)
                req = lay.request
                got = chosen[vals] = (self.runner(request, result, lead=lead), tuple(args))
                if second[0] is None and len(args) == 2 and result is not None and req.domain \
                        and req.nargs == 3 and lay.direct and lay.pick is None and not req.returns \
                        and len(lay.head) == 2 and not (self.read_only and not req.reads):
                    self.check(request, (0,) + tuple(args))
                    second[0], second[1] = lay.key, max(second[1], lay.size)
                    (h0, h1), (a0, a1) = lay.head, args
                    mine.update(pack=lay.pack, h0=h0, h1=h1, a0=a0, a1=a1, unpack=lay.unpack, read_at=lay.read_at,
                                mk=result, lead=tuple(lead), failed=self._failure(lay), answer=vals[0])
            if vals[0] == mine["answer"]:
                del rl.pair  # set: the runner that called aside ran on it; acquired again, with the chosen's request
            run, args = got
            return run(domid, *args)

        fn = _runners.bind("selected", f"{req1.subop}_selected", rl=rl,
                           acquire=acquire, resolve=resolve, DOMID_MAX=DOMID_MAX, pack1=pack1, f0=f0, f1=f1,
                           unpack1=unpack1, read1=read1, failed1=failed1, aside=aside, new=_new, t=t, ioctl=ioctl,
                           fd=fd, number=number, answer=_NOTHING)
        mine = fn.__globals__  # what aside() sets, the runner reads
        return fn

    def __call__(self, request: Request, *args: Any) -> Tuple[Any, ...]:
        """Issue ``request`` once: the fields read back (see :meth:`runner`)."""
        got: Tuple[Any, ...] = self.runner(request)(*args)
        return got

    def check(self, request: Request, args: Tuple[Any, ...]) -> Tuple[Any, ...]:
        """``args`` checked as a runner checks them (the domid resolved)."""
        if len(args) != request.nargs:
            raise TypeError(f"{request.name} takes {request.nargs} arguments, not {len(args)}")
        if request.domain:
            d = args[0]
            if d.__class__ is not int or not 0 <= d <= DOMID_MAX:
                args = (self.resolve(d),) + args[1:]
        for c in request.checks:
            c(args[c.index])
        return args

    # -- the thread's buffer -----------------------------------------------------------------
    def payload(self, size: int) -> Tuple[memoryview, int]:
        """This thread's buffer with room for a payload of ``size`` bytes at
        :data:`PAYLOAD_OFFSET`: (its view, the payload's address).  The payload is
        ``view[PAYLOAD_OFFSET:]``, where the thread's next requests find it (until one
        needs a larger buffer); the pointer arguments of a runner are addresses in it."""
        view, base = self.buffer(PAYLOAD_OFFSET + size)
        return view, base + PAYLOAD_OFFSET

    def buffer(self, size: int) -> Tuple[memoryview, int]:
        """(view, address) of this thread's buffer, at least ``size`` bytes."""
        t: Any = self.transport
        if self.device:
            lane = t.lane(size)
            self._lanes.lane = lane
            return lane.view, lane.base
        buf = t.scratch(size)
        return buf.view, buf.address

    def hypercall(self, hypercall: int, a0: int = 0, a1: int = 0, *, subop: Optional[str] = None,
                  domid: Optional[int] = None) -> int:
        """One raw hypercall on the transport (no request struct), the typed error on failure."""
        return _hc.issue(self.transport, hypercall, a0, a1, subop=subop, domid=domid)

    # -- runners -------------------------------------------------------------------------------
    def _result(self, lay: Layout, result: Any, tail: Tuple[Any, ...], echo: Optional[int],
                lead: Tuple[Any, ...] = ()) -> Callable[[Tuple[Any, ...], Tuple[Any, ...]], Any]:
        """What a general runner returns from the fields read (``vals``) and its arguments."""
        picker, req = lay.picker, lay.request
        subop = req.subop

        def finish(vals: Tuple[Any, ...], args: Tuple[Any, ...]) -> Any:
            if picker is not None:
                vals = picker(vals + _NONE)
            if echo is not None and vals[echo] != args[0]:
                raise NoSuchDomain(_errno.ESRCH, f"{req.family} {subop}(domid={args[0]}): no such domain (ESRCH)",
                                   hypercall=req.family, subop=subop, domid=args[0])
            return vals if result is None else _new(result, lead + vals + tail)

        return finish

    def _single(self, lay: Layout, result: Any, tail: Tuple[Any, ...], echo: Optional[int],
                payload: Optional[int], lead: Tuple[Any, ...] = (),
                convert: Optional[Callable[[Any], Any]] = None) -> Runner:
        """The request on any transport: packed into the thread's scratch buffer,
        issued with ``transport.hypercall``."""
        t = self.transport
        req = lay.request
        check = self.check
        size = max(lay.size, 1) if payload is None else max(lay.size, PAYLOAD_OFFSET + payload)
        pack, unpack, read_at = lay.pack, lay.unpack, lay.read_at
        hypercall, template, head, direct, order = lay.hypercall, lay.args, lay.head, lay.direct, lay.order
        hname = _hc.HYPERCALL_NAMES.get(hypercall, f"hypercall{hypercall}")
        subop, domain, returns = req.subop, req.domain, req.returns
        finish = self._result(lay, result, tail, echo, lead)
        skip = 1 if req.family == "domctl" and domain else 0
        pointers = lay.pointer_at if payload is not None else ()
        bare = convert is not None and returns and lay.size == 0 and not lay.read_format[1:]

        def run(*args: Any) -> Any:
            args = check(req, args)
            buf = t.scratch(size)
            view, base = buf.view, buf.address
            if pointers:
                at = base + PAYLOAD_OFFSET
                args = tuple(a + at if i in pointers else a for i, a in enumerate(args))
            if direct:
                pack(view, 0, *head, *args)
            else:
                pack(view, 0, *_ordered(order, args, skip))
            try:
                rc = t.hypercall(hypercall, *[base if a is None else a for a in template])  # type: ignore[arg-type]
            except (ReadOnlyError, RestrictedError):
                raise
            except OSError as exc:
                raise error(exc, hypercall=hname, subop=subop, domid=args[0] if domain else None) from None
            if bare:
                return convert(rc)  # type: ignore[misc]
            vals = unpack(view, read_at)
            out = finish((rc,) + vals if returns else vals, args)
            if convert is not None:
                return convert(out)
            return out if payload is None else (view,) + out

        run.__name__ = run.__qualname__ = f"{req.family}_{req.subop}"
        return run

    def _failure(self, lay: Layout) -> Callable[[BaseException, Any, Optional[int]], int]:
        """What a fast runner does when its ioctl raised: EINTR issued again, a closed handle
        said, a refusal before the hypercall passed through, any other error typed."""
        t: Any = self.transport
        reissue = t.reissue
        req = lay.request
        hname = _hc.HYPERCALL_NAMES.get(lay.hypercall, f"hypercall{lay.hypercall}")

        def failed(exc: BaseException, preq: Any, domid: Optional[int]) -> int:
            if isinstance(exc, ValueError):
                if t.closed:
                    raise XenError(_errno.EBADF, "the handle is closed") from None
                raise exc
            if isinstance(exc, (ReadOnlyError, RestrictedError)):
                raise exc  # refused before the hypercall (a restricted device's ioctl)
            try:
                return reissue(exc, preq)  # type: ignore[no-any-return]
            except OSError as final:
                raise error(final, hypercall=hname, subop=req.subop, domid=domid) from None

        return failed

    def _acquirer(self, lay: Layout, size: int, *more: Tuple[Optional[int], ...]) -> Callable[[], Tuple[Any, ...]]:
        """``acquire() -> (buffer, view, prebuilt request[, one per key of more])`` of this
        thread's lane, kept in ``acquire.local.pair`` (a runner's own, so a call finds them in
        one lookup; the runner acquires the lane again when the buffer died, see :mod:`.runners`)."""
        lane_of, key = self.transport.lane, lay.key  # type: ignore[attr-defined]
        local = _thread_local()

        def acquire() -> Tuple[Any, ...]:
            lane = lane_of(size)
            pair = local.pair = (lane.buf, lane.view, lane.request(key)) + tuple(lane.request(k) for k in more)
            return pair

        acquire.local = local  # type: ignore[attr-defined]
        return acquire

    def _fast(self, lay: Layout, result: Any, tail: Tuple[Any, ...], echo: Optional[int],
              payload: Optional[int], lead: Tuple[Any, ...] = (),
              convert: Optional[Callable[[Any], Any]] = None,
              named: Optional[Tuple[Callable[[Any], Any], Callable[[Any], Any]]] = None) -> Runner:
        """The request on the privcmd device: the thread's lane, one ioctl.

        The common shapes (a domain request with its domid and at most one more argument
        under at most one range check, a request of arguments without checks, no payload)
        run in one frame with every value bound: the runner's own thread-local keeps the
        lane and its prebuilt ``privcmd_hypercall`` together.  The others share the general
        shape."""
        t: Any = self.transport
        req = lay.request
        size = max(lay.size, 1) if payload is None else max(lay.size, PAYLOAD_OFFSET + payload)
        pack, unpack, read_at = lay.pack, lay.unpack, lay.read_at
        head, direct, order = lay.head, lay.direct, lay.order
        domain, returns = req.domain, req.returns
        ioctl, fd, number = t.ioctl, t.fd, t.request
        failed, acquire = self._failure(lay), self._acquirer(lay, size)
        rl = acquire.local  # type: ignore[attr-defined]
        checks = req.checks
        nargs = req.nargs
        resolve = self.resolve
        skip = 1 if req.family == "domctl" and domain else 0
        mk = result
        subop = req.subop

        def gone(domid: int) -> NoSuchDomain:
            return NoSuchDomain(_errno.ESRCH, f"{req.family} {subop}(domid={domid}): no such domain (ESRCH)",
                                hypercall=req.family, subop=subop, domid=domid)

        plain = direct and lay.pick is None and payload is None and (convert is None or not domain)
        where = -1 if echo is None else echo
        name = f"{req.family}_{req.subop}"
        if plain and domain and nargs <= 2 and len(head) == 2 and all(c.index == 1 for c in checks) \
                and len(checks) <= nargs - 1:
            h0, h1 = head
            common = dict(rl=rl, acquire=acquire, pack=pack, h0=h0, h1=h1, t=t, ioctl=ioctl, fd=fd,
                          number=number, failed=failed, unpack=unpack, read_at=read_at, where=where, gone=gone,
                          mk=mk, tail=tail, DOMID_MAX=DOMID_MAX, new=_new)
            if nargs == 1 and named is not None:
                other, then = named

                return _runners.bind("domid_named", name, **common, other=other, then=then)
            if nargs == 1:
                return _runners.bind("domid", name, **common, resolve=resolve, returns=returns, lead=lead)
            check = checks[0] if checks else Check(1, "argument", -(1 << 64), 1 << 64)
            lo, hi = check.lo, check.hi

            return _runners.bind("domid_arg", name, **common, resolve=resolve, returns=returns, lead=lead,
                                 lo=lo, hi=hi, check=check)
        if plain and domain and not checks and len(head) == 2:
            h0, h1 = head

            return _runners.bind("domid_more", name, rl=rl, acquire=acquire, pack=pack, h0=h0, h1=h1,
                                 t=t, ioctl=ioctl, fd=fd, number=number, failed=failed, unpack=unpack,
                                 read_at=read_at, where=where, gone=gone, mk=mk, lead=lead, tail=tail,
                                 DOMID_MAX=DOMID_MAX, new=_new, resolve=resolve, returns=returns, nargs=nargs,
                                 request_name=req.name)
        if plain and not domain and nargs == 0 and lay.size == 0 and not lay.read_format[1:] and mk is None:
            done: Callable[[int], Any] = convert or ((lambda rc: (rc,)) if returns else (lambda _rc: ()))

            return _runners.bind("bare_halves" if convert is halves else "bare", name, rl=rl,
                                 acquire=acquire, t=t, ioctl=ioctl, fd=fd, number=number, failed=failed,
                                 done=done)
        if direct and lay.pick is None and payload is not None and not domain and not checks and echo is None \
                and mk is None and not returns and convert is None:
            pointers_only = lay.pointer_at
            return _runners.bind("payload_any", name, rl=rl, acquire=acquire, pack=pack, head=head, t=t,
                                 ioctl=ioctl, fd=fd, number=number, failed=failed, unpack=unpack, read_at=read_at,
                                 PAYLOAD_OFFSET=PAYLOAD_OFFSET, pointers=tuple(pointers_only), nargs=nargs,
                                 request_name=req.name)
        picker = lay.picker
        if direct and payload is None and not domain and nargs == 0 and len(head) == 2 and not returns and mk is None \
                and convert is not None:
            h0, h1 = head

            return _runners.bind("converted", name, rl=rl, acquire=acquire, pack=pack, h0=h0,
                                 h1=h1, t=t, ioctl=ioctl, fd=fd, number=number, failed=failed, unpack=unpack,
                                 read_at=read_at, picker=picker, convert=convert, NONE=_NONE)
        if direct and payload is None and not domain and not checks and echo is None:
            return _runners.bind("args_any", name, rl=rl, acquire=acquire, pack=pack, head=head, t=t,
                                 ioctl=ioctl, fd=fd, number=number, failed=failed, unpack=unpack, read_at=read_at,
                                 picker=picker, NONE=_NONE, returns=returns, convert=convert, mk=mk, lead=lead,
                                 tail=tail, new=_new, nargs=nargs, request_name=req.name)
        finish = self._result(lay, result, tail, echo, lead)
        pointers = lay.pointer_at if payload is not None else ()

        return _runners.bind("general", name, rl=rl, acquire=acquire, pack=pack, head=head, t=t,
                             ioctl=ioctl, fd=fd, number=number, failed=failed, unpack=unpack, read_at=read_at,
                             PAYLOAD_OFFSET=PAYLOAD_OFFSET, pointers=tuple(pointers), nargs=nargs,
                             request_name=req.name, domain=domain, resolve=resolve, DOMID_MAX=DOMID_MAX,
                             checks=checks, direct=direct, ordered=_ordered, order=order, skip=skip,
                             returns=returns, finish=finish, convert=convert, payload=payload)


def _series_shape(lay: Layout) -> bool:
    """Whether a domain request of one more argument runs in a series frame: its domid and
    the argument packed as they come, under at most one range check, no payload, read as laid."""
    req = lay.request
    return (req.domain and req.nargs == 2 and lay.direct and lay.pick is None and not req.returns
            and all(c.index == 1 for c in req.checks) and len(req.checks) <= 1 and len(lay.head) == 2)


def _ordered(order: Tuple[Tuple[str, Any], ...], args: Tuple[Any, ...], skip: int) -> List[Any]:
    """``pack``'s values in offset order: the header's, the arguments', the fixed ones
    (a header ``None`` is the domid, the first argument)."""
    out = []
    for kind, v in order:
        if kind == "head":
            out.append(args[0] if v is None else v)
        elif kind == "arg":
            out.append(args[v + skip])
        else:
            out.append(v)
    return out


def _refuse(request: Request) -> Runner:
    def refused(*_args: Any) -> Tuple[Any, ...]:
        raise ReadOnlyError(_errno.EPERM, f"{request.name}: refused, the handle is read-only")

    return refused
