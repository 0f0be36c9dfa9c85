"""The handle returned by :func:`xenprivcmd.open`: a facade over the op engine.

A :class:`Handle` resolves the domain a caller names (id, name, UUID or
DomainInfo), refuses what a read-only handle may not do, and calls the
operation of :mod:`xenprivcmd.ops` (each built once per handle and transport
by the engine, :mod:`xenprivcmd.ops.engine`).  It keeps what it learns
(:class:`~xenprivcmd.ops.engine.HandleState`) across transports.  The hot reading
operations (``xen_version``, ``domain_info``, ``domains``, ``physinfo``, ``vcpu_info``,
``sched_params``) are the engine's operations themselves (:class:`_Operation`: looked up
in C on every access, no frame of the handle's before the runner).
"""

from __future__ import annotations

import _thread
import errno

from . import abi as _abi
from .abi.hypercalls import check_domid
from .errors import AmbiguousDomain, DecodeError, NoSuchDomain, ReadOnlyError, XenError
from .ops.engine import Engine, HandleState
from .types import DomainInfo, VcpuListEntry

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import TracebackType
    from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Type, TypeVar, Union
    from uuid import UUID

    from .build.config import DomainConfig
    from .events import DomainEvents
    from .evtchn import EventChannels
    from .ops import batch as _batch
    from .transport.mapping import Mapping
    from .transport.privcmd import Transport
    from .types import (
        BlockStats,
        CpuPool,
        CpuTopology,
        DomainState,
        EvtchnStatus,
        InterfaceStats,
        NumaNode,
        PcpuInfo,
        PhysInfo,
        SchedParams,
        VcpuAffinity,
        VcpuInfo,
        VersionInfo,
    )

    #: How every domain operation names a domain: int domid, name, UUID (str or UUID) or DomainInfo.
    DomainRef = Union[int, str, UUID, DomainInfo]
    _F = TypeVar("_F", bound=Callable[..., Any])

__all__ = ["Handle", "read_only_methods"]

#: Handle methods that only read and are no operation of the engine (lookups, names, the
#: batched listings built on reading operations, the uptimes read from xenstore).
READING_METHODS = frozenset({
    "with_names", "domain_names", "domain_name", "lookup", "nr_cpus", "domain_infos", "vcpu_list", "uptime", "uptimes",
    "interface_stats", "block_stats", "info_or_domid", "with_name",
})


def read_only_methods() -> "frozenset[str]":
    """The Handle methods a read-only handle (and a read-only remote session) may call:
    those whose operation is declared to only read (:mod:`xenprivcmd.ops.engine`), and
    :data:`READING_METHODS`."""
    from .ops.engine import all_ops

    return READING_METHODS | {name for name, o in all_ops().items() if o.reads}

_errno_EPERM = errno.EPERM


class _Operation:
    """A reading operation of the handle that *is* its engine's runner: ``h.op`` is the
    operation of the handle's current transport and release, kept in the handle's own
    dict once its engine is built, so a call runs no frame of the handle's before the
    runner and the lookup is an instance attribute's (under emulation, a Python frame or a
    descriptor call is a measurable part of a one- or two-hypercall operation).  What the
    handle's method would check, the runner checks (a domain named otherwise than by a
    domid in range goes to the handle's lookup); ``Handle.op(h, *args)`` calls it as a
    method.  A change of the handle's transport or engine forgets what was kept; a
    reference kept across it keeps the old transport's operation: ask the handle again.
    Naming it (``h.physinfo``) builds the engine, detecting the ABI if need be, as calling
    it would.  Assigning the attribute on a handle (a test's stand-in) shadows the
    operation until the transport changes; deleting it asks the engine again."""

    def __init__(self, method: Callable[..., Any]) -> None:
        self.name = self.__name__ = method.__name__
        self.__doc__ = method.__doc__
        self.__wrapped__ = method  # inspect.signature, the remote client

    def __get__(self, handle: Optional["Handle"], owner: Any = None) -> Any:
        if handle is None:
            return self
        ops = handle._ops
        fn = getattr(ops, self.name)
        kept = handle.__dict__
        kept[self.name] = fn
        if handle._ops is not ops:  # built or replaced meanwhile: not kept
            kept.pop(self.name, None)
        return fn

    def __call__(self, handle: "Handle", *args: Any, **kwargs: Any) -> Any:
        return getattr(handle._ops, self.name)(*args, **kwargs)


#: The names of the handle's operations kept in its dict (:class:`_Operation`).
_OPERATIONS: List[str] = []


def _operation(method: "_F") -> "_F":
    """``method`` (its name, signature and doc) as an :class:`_Operation`: the engine's
    operation of that name (the method's body spells out the same call)."""
    _OPERATIONS.append(method.__name__)
    return _Operation(method)  # type: ignore[return-value]


class _Unbuilt:
    """The handle's operations before its engine exists: the first one asked builds it
    (ABI detection for most), then the handle uses the engine's directly.  ``xen_version``
    and ``version`` need no detection: asked first, they are the version engine's, kept
    here (a new transport gets a new :class:`_Unbuilt`)."""

    __slots__ = ("_handle", "xen_version", "version")

    def __init__(self, handle: "Handle") -> None:
        self._handle = handle

    def __getattr__(self, name: str) -> Any:
        h = self._handle
        if name in ("xen_version", "version") and h._abi is None:
            fn = getattr(h._xenver(), name)  # before detection: no need to detect for these
            setattr(self, name, fn)
            return fn
        return getattr(h._build(name), name)


class Handle:
    """A connection to one hypervisor.

    Everything goes through ``self.transport`` (the real privcmd device, the
    simulator, or a replay).  Close it with :meth:`close` or use it as a
    context manager.  A handle may be shared by threads.

    >>> xen = xenprivcmd.open("sim:///default")
    >>> [(d.domid, d.name, d.state) for d in xen.domains()]
    [(0, 'Domain-0', 'running'), (1, 'web1', 'running'), (2, 'db1', 'idle'), (3, 'build1', 'paused')]
    >>> xen.close()
    >>> xen.closed
    True
    """

    def __init__(self, transport: Transport, uri: str, abi: Union[None, str, "_abi.Variant"] = None,
                 arch: Optional[str] = None, detect: str = "auto") -> None:
        if arch is None:
            # The local privcmd device speaks this machine's layouts (aarch64 on an
            # arm64 dom0); other transports say theirs, else x86_64.
            from . import _machine_arch

            arch = _machine_arch() if transport.kind == "privcmd" else "x86_64"
        self.arch = arch
        self.uri = uri
        self._lock = _thread.allocate_lock()
        #: How the ABI is detected (:func:`xenprivcmd.open`'s ``detect``).
        self.detect_mode = detect
        self._abi: Optional[_abi.Variant] = None
        self._abi_override = abi
        self._families: Any = None
        #: What detection read and probed (for ``xpsh capabilities``).
        self.detection: Dict[str, Any] = {}
        #: What the handle learned (multicall, nr_cpus, ...), kept across transports.
        self.state = HandleState()
        #: True once :meth:`make_read_only` ran: state-changing ops raise ReadOnlyError.
        self.read_only = False
        #: A xenstore to use instead of the transport's (a dry run's, which holds writes back).
        self.store_override: Any = None
        self._engine: Optional[Engine] = None
        self._ops: Any = _Unbuilt(self)
        self._guard: Any = None  # the ReadOnlyTransport of a read-only handle
        self._boot: Optional[Engine] = None  # xen_version before the ABI is known
        self._transport = transport

    # -- lifetime ---------------------------------------------------------------
    def close(self) -> None:
        """Release the device and every hypercall buffer.  Idempotent."""
        self.transport.close()

    @property
    def closed(self) -> bool:
        return self.transport.closed

    def __enter__(self) -> "Handle":
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else self.transport.describe()
        return f"<xenprivcmd.Handle {self.uri} {state}>"

    # -- the transport and the engine -------------------------------------------------
    @property
    def transport(self) -> Transport:
        """What the handle issues hypercalls through; assigning another one (a tracing
        wrapper, say) gives the handle a new engine for it (the fast path only runs on
        the privcmd device itself)."""
        return self._transport

    @transport.setter
    def transport(self, t: Transport) -> None:
        self._transport = t
        self._engine = None
        self._ops = _Unbuilt(self)
        self._forget_operations()

    def _forget_operations(self) -> None:
        """Drop the operations kept in the handle's dict (:class:`_Operation`): the next
        lookup asks the current engine."""
        kept = self.__dict__
        for name in _OPERATIONS:
            kept.pop(name, None)

    @property
    def engine(self) -> Engine:
        """The engine of this handle's transport and release (built on first use)."""
        e = self._engine
        if e is None:
            e = self._build()
        return e

    def _build(self, op: Optional[str] = None) -> Any:
        """The engine (detecting the ABI first); ``op``: its operations, for :class:`_Unbuilt`."""
        e = self._engine
        if e is None:
            families = self._families
            if families is None:
                variant = self.abi
                with self._lock:
                    families = self._families
                    if families is None:
                        if variant.is_dom0_op:  # Xen 3.0.0-3.0.2: loaded only for them
                            from .ops.dom0op import Dom0OpFamilies

                            families = Dom0OpFamilies(variant)
                        else:
                            from .ops.engine import Families

                            families = Families(variant)
                        self._families = families
            e = Engine(families, self._transport, resolve=self._domid, state=self.state, handle=self,
                       read_only=self.read_only)
            self._engine = e
            self._ops = e.ops
            self._forget_operations()  # xen_version's of the boot engine, say
        return e.ops if op is not None else e

    # -- read-only handles ------------------------------------------------------------
    def make_read_only(self) -> None:
        """From now on refuse every state-changing operation, before any hypercall.

        The operations that do not only read raise
        :class:`~xenprivcmd.errors.ReadOnlyError`, and the transport is wrapped in
        :class:`~xenprivcmd.transport.wrappers.ReadOnlyTransport`, which refuses any
        hypercall not known to only read.  Cannot be undone.
        """
        if self.read_only:
            return
        from .transport.wrappers import ReadOnlyTransport

        guard = ReadOnlyTransport(self.transport, self._abi)
        guard.decoder.arch = self.arch  # read requests with this machine's layouts until the ABI is known
        self._guard = guard
        self.read_only = True
        self.transport = guard

    def _check_writable(self, what: str) -> None:
        if self.read_only:
            raise ReadOnlyError(_errno_EPERM, f"{what}: refused, the handle is read-only")

    # -- xen_version ------------------------------------------------------------
    def version(self) -> VersionInfo:
        """The hypervisor's version, build and capabilities.

        Raises :class:`~xenprivcmd.errors.HypercallError` subclasses when the
        hypervisor refuses, :class:`~xenprivcmd.errors.DecodeError` on a
        malformed reply.
        """
        return self._ops.version()  # type: ignore[no-any-return]

    @_operation
    def xen_version(self) -> "tuple[int, int]":
        """(major, minor) in one hypercall."""
        return self._ops.xen_version()  # type: ignore[no-any-return]

    def _xenver(self) -> Any:
        """The operations that need no ABI (xen_version's sub-ops are the same in every release):
        the handle's own once it has them, else those of an engine laid out by the newest tables,
        so that asking the version does not detect the ABI."""
        if self._engine is not None or self._abi is not None:
            return self._ops
        boot = self._boot
        if boot is None or boot.transport is not self._transport:
            from .ops.engine import Families

            head = _abi.variant(_abi.head_release(), arch=self.arch if self.arch in _abi.arches() else "x86_64")
            boot = self._boot = Engine(Families(head), self._transport, resolve=self._domid, state=self.state,
                                       handle=self, read_only=self.read_only)
        return boot.ops

    @property
    def buffer_kind(self) -> str:
        """Where hypercall buffers come from (``/dev/xen/hypercall``,
        ``anonymous-locked``, or a simulator's memory)."""
        return self.transport.buffer_kind

    # -- ABI ----------------------------------------------------------------------
    @property
    def abi(self) -> "_abi.Variant":
        """The ABI variant of the running hypervisor (detected once, then cached)."""
        if self._abi is None:
            with self._lock:
                if self._abi is None:
                    variant = self._detect()
                    if self._guard is not None:
                        self._guard.variant = variant
                    self._abi = variant
        return self._abi

    def _detect(self) -> "_abi.Variant":
        from .abi import detect as _detect

        override = self._abi_override
        if override is not None:
            variant = override if isinstance(override, _abi.Variant) else _abi.variant(override, arch=self.arch)
            _detect.check_override(self.transport, variant)
            self.detection = {"method": "override", "release": variant.release}
            return variant
        variant, report = _detect.detect(self.transport, arch=self.arch, mode=self.detect_mode)
        self.detection = report
        return variant

    # -- xenstore ---------------------------------------------------------------------
    def xenstore(self) -> Any:
        """A connection to this hypervisor's xenstore: ``store_override`` when set (a dry
        run's), else the transport's (the local daemon or xenbus device, the simulator's).
        Close it when done (closing an override or the simulator's store only drops
        what it would open again).  Raises :class:`~xenprivcmd.errors.XenstoreUnavailable`
        when there is none."""
        override = self.store_override
        if override is not None:
            return override
        return self.transport.xenstore()

    def domain_names(self) -> Dict[int, str]:
        """domid -> name from xenstore; ``{}`` when there is no xenstore (never an error)."""
        try:
            store = self.xenstore()
        except (OSError, DecodeError):
            return {}
        try:
            return dict(store.domain_names())
        except (OSError, DecodeError):
            return {}
        finally:
            store.close()

    def domain_name(self, domid: int) -> Optional[str]:
        """The name xenstore has for ``domid`` (one read of ``/local/domain/N/name``); ``None``
        when it has none or there is no xenstore (never an error)."""
        try:
            store = self.xenstore()
        except (OSError, DecodeError):
            return None
        try:
            raw = store.read(f"/local/domain/{domid}/name")
        except (OSError, DecodeError):
            return None
        finally:
            store.close()
        from .store.ops import _text

        return _text(raw)

    def with_names(self, infos: List[DomainInfo]) -> List[DomainInfo]:
        """``infos`` with their ``name`` filled in from xenstore where known."""
        table = self.domain_names()
        if not table:
            return infos
        return [i._replace(name=table.get(i.domid)) for i in infos]

    # -- domains --------------------------------------------------------------------
    @_operation
    def domains(self, names: bool = True) -> List[DomainInfo]:
        """Every domain, in domid order (``XEN_SYSCTL_getdomaininfolist``).

        Each result carries its name from xenstore when one is reachable (else
        the names stay ``None``; never an error).  ``names=False`` skips
        xenstore: one hypercall, every ``name`` ``None`` (for callers that
        poll and know the domids).
        """
        return self._ops.domains(names)  # type: ignore[no-any-return]

    @_operation
    def domain_info(self, dom: DomainRef, name: bool = True) -> DomainInfo:
        """One domain; :class:`~xenprivcmd.errors.NoSuchDomain` if it does not exist (every release).

        Its ``name`` comes from xenstore, however the domain was named (``None``
        where xenstore has none or is out of reach; never an error).
        ``name=False`` skips xenstore for a domid: one hypercall.

        >>> xen = xenprivcmd.open("sim:///default")
        >>> d = xen.domain_info(1)
        >>> d.name, d.memory_kib, d.max_memory_kib, d.vcpus, d.state_letters
        ('web1', 1048576, 2097152, 2, 'r-----')
        >>> xen.domain_info(42)
        Traceback (most recent call last):
        ...
        xenprivcmd.errors.NoSuchDomain: domctl getdomaininfo(domid=42): no such domain (ESRCH)
        >>> xen.domain_info(-1)          # invalid on its face: no hypercall
        Traceback (most recent call last):
        ...
        ValueError: domid -1 is out of range 0..0x7fef
        """
        if dom.__class__ is not int:
            if isinstance(dom, bool) or not isinstance(dom, int):
                return self.lookup(dom)
        return self._ops.domain_info(dom, name)  # type: ignore[no-any-return]

    def info_or_domid(self, dom: Any) -> Any:
        """What :meth:`domain_info` does with a domain not named by a domid in range: the
        domain looked up (a name, UUID or DomainInfo: :meth:`lookup`), else the domid checked
        (``ValueError`` out of range)."""
        if isinstance(dom, bool) or not isinstance(dom, int):
            return self.lookup(dom)
        return check_domid(dom)

    def with_name(self, info: DomainInfo) -> DomainInfo:
        """``info`` with the name xenstore has for its domain (:meth:`domain_name`)."""
        return info._replace(name=self.domain_name(info.domid))

    def lookup(self, ident: "DomainRef") -> DomainInfo:
        """A domain (with its name) by int domid, name, UUID (string or :class:`~uuid.UUID`) or
        :class:`DomainInfo`.

        Digits name a domid first and, when no domain has that id, a domain
        of that name (as virsh does).  Raises
        :class:`~xenprivcmd.errors.NoSuchDomain` for an unknown domain,
        :class:`~xenprivcmd.errors.AmbiguousDomain` for a name several
        domains share, ``TypeError`` for anything else.

        >>> xen = xenprivcmd.open("sim:///default")
        >>> xen.lookup("db1").domid, xen.lookup("2").name, xen.lookup(xen.lookup(2).uuid).domid
        (2, 'db1', 2)
        """
        from uuid import UUID

        if isinstance(ident, DomainInfo):
            ident = ident.domid
        if isinstance(ident, int) and not isinstance(ident, bool):
            return self.domain_info(ident, name=True)
        if isinstance(ident, UUID):
            key: Union[UUID, str] = ident
        elif isinstance(ident, str):
            text = ident.strip()
            if not text:
                raise ValueError("empty domain name")
            if text.isascii() and text.isdigit():
                try:
                    return self.domain_info(check_domid(int(text)), name=True)
                except (NoSuchDomain, ValueError):
                    pass  # no such domid: maybe a domain of that name
            try:
                key = UUID(text)
            except ValueError:
                key = text
        else:
            raise TypeError(f"a domain is an int domid, a name, a UUID or a DomainInfo, not {type(ident).__name__}")
        found = [i for i in self.domains(names=True)
                 if (isinstance(key, UUID) and i.handle == key) or i.name == key]
        if len(found) > 1 and isinstance(key, str):
            ids = tuple(i.domid for i in found)
            raise AmbiguousDomain(f"{len(found)} domains are named {ident!r} (ids {', '.join(map(str, ids))}):"
                                  " name one by id", ids)
        if not found:
            what = "with id or name" if isinstance(key, str) and key.isdigit() else \
                ("with UUID" if isinstance(key, UUID) else "named")
            raise NoSuchDomain(errno.ESRCH, f"no domain {what} {str(ident).strip()!r}", domid=None)
        return found[0]

    def _domid(self, dom: "DomainRef") -> int:
        """The domid of ``dom`` (an int is only range-checked: no hypercall)."""
        if isinstance(dom, int) and not isinstance(dom, bool):
            return check_domid(dom)
        if isinstance(dom, DomainInfo):
            return dom.domid
        return self.lookup(dom).domid

    def _writable_domid(self, what: str, dom: "DomainRef") -> int:
        """A state-changing op's domain: refused first on a read-only handle (no lookup).
        (The ops call it only for a read-only handle or a domain not named by an int: an
        int is range-checked by the op itself.)"""
        if self.read_only:
            raise ReadOnlyError(_errno_EPERM, f"{what}: refused, the handle is read-only")
        return self._domid(dom)

    def domain_state(self, dom: DomainRef) -> DomainState:
        """The stable ``get_domain_state`` domctl (Xen 4.21+; NotSupported before)."""
        if dom.__class__ is not int:
            dom = self._domid(dom)
        return self._ops.domain_state(dom)  # type: ignore[no-any-return]

    def pause(self, dom: DomainRef) -> None:
        """Pause a domain (``XEN_DOMCTL_pausedomain``).

        >>> xen = xenprivcmd.open("sim:///default")
        >>> xen.pause(1)
        >>> xen.domain_info(1).state
        'paused'
        >>> xen.unpause(1)
        >>> xen.domain_info(1).paused
        False
        """
        if self.read_only or dom.__class__ is not int:
            dom = self._writable_domid("pause", dom)
        self._ops.pause(dom)

    def unpause(self, dom: DomainRef) -> None:
        """Unpause a domain (``XEN_DOMCTL_unpausedomain``)."""
        if self.read_only or dom.__class__ is not int:
            dom = self._writable_domid("unpause", dom)
        self._ops.unpause(dom)

    def destroy(self, dom: DomainRef) -> None:
        """Destroy a domain (``XEN_DOMCTL_destroydomain``, EAGAIN retried)."""
        domid = self._writable_domid("destroy", dom)
        self._ops.destroy(domid)

    def set_max_mem(self, dom: DomainRef, kib: int, force: bool = False) -> None:
        """Set a domain's memory limit in KiB (``XEN_DOMCTL_max_mem``): the hard limit,
        not the balloon target (:meth:`set_memory_target`).

        A limit below what the domain uses now raises ``ValueError`` (one
        getdomaininfo, no change) unless ``force``.

        >>> xen = xenprivcmd.open("sim:///default")
        >>> xen.set_max_mem(1, 3 * 1024 * 1024)
        >>> xen.domain_info(1).max_memory_kib
        3145728
        """
        domid = self._writable_domid("set_max_mem", dom)
        self._ops.set_max_mem(domid, kib, force)

    def set_max_vcpus(self, dom: DomainRef, n: int) -> None:
        """``XEN_DOMCTL_max_vcpus``: allocate the domain's vcpus (from Xen 4.12
        ``n`` must equal the ``max_vcpus`` given at creation; Xen says EINVAL otherwise)."""
        domid = self._writable_domid("set_max_vcpus", dom)
        self._ops.set_max_vcpus(domid, n)

    @_operation
    def vcpu_info(self, dom: DomainRef) -> List[VcpuInfo]:
        """Every vcpu of a domain."""
        if dom.__class__ is not int:
            dom = self._domid(dom)
        return self._ops.vcpu_info(dom)  # type: ignore[no-any-return]

    # -- batches ----------------------------------------------------------------------
    def batch(self) -> "_batch.Batch":
        """Many independent domctls in as few multicall traps as the buffer allows::

            with xen.batch() as b:
                calls = [b.pause(d) for d in (3, 4, 5)]
            for c in calls:
                c.result()          # None, or raises that pause's own error

        Methods: ``domain_info``, ``vcpu_info``, ``vcpu_affinity``, ``pause``,
        ``unpause``, ``set_max_mem``, and ``add`` for any request of the engine.
        Not atomic: each operation succeeds or fails on its own, in order (see
        :mod:`xenprivcmd.ops.batch`).  Where the hypervisor refuses domctls in a
        multicall, the operations go one call each (remembered for this handle).
        """
        from .ops import batch as _batch

        return _batch.Batch(self.engine)

    def domain_infos(self, domids: Iterable[int], names: bool = True) -> List[Union[DomainInfo, XenError]]:
        """getdomaininfo for many domains in few traps: per id (in order) its
        DomainInfo (named from xenstore as :meth:`domains` names them; not with
        ``names=False``), or the error it ended with (e.g. a
        :class:`~xenprivcmd.errors.NoSuchDomain` instance), returned, not raised."""
        ids = [check_domid(d) for d in domids]
        from .ops import batch as _batch

        if ids:
            shaped = _batch.infos_shaped(self.engine, ids)
            if shaped is not None:
                return self.with_names(shaped) if names else shaped  # type: ignore[return-value]
        b = self.batch()
        calls = [b.domain_info(d) for d in ids]
        b.run()
        out: List[Union[DomainInfo, XenError]] = []
        for c in calls:
            err = c.error
            out.append(err if isinstance(err, XenError) else c.result())
        if names and any(isinstance(i, DomainInfo) for i in out):
            table = self.domain_names()
            out = [i._replace(name=table.get(i.domid)) if isinstance(i, DomainInfo) else i for i in out]
        return out

    def vcpu_list(self, domids: Optional[Iterable[DomainRef]] = None) -> List[VcpuListEntry]:
        """Every vcpu of the given domains (default: all), with hard and soft
        affinity: what ``xl vcpu-list`` shows, sorted by domid and vcpu.

        Issues one listing (or one batched getdomaininfo), one physinfo per
        handle, and the getvcpuinfo + getvcpuaffinity pairs in multicall traps.
        A domain named in ``domids`` that does not exist raises
        :class:`~xenprivcmd.errors.NoSuchDomain`; with the default, a domain
        that goes away meanwhile is left out.
        """
        from .ops import batch as _batch
        from .ops.domains import MAX_VCPUS

        explicit = domids is not None
        if domids is None:
            infos = self.domains(names=True)
        else:
            infos = []
            for got in self.domain_infos([self._domid(d) for d in domids], names=True):
                if isinstance(got, XenError):
                    raise got
                infos.append(got)
        infos.sort(key=_domid_of)
        for info in infos:
            if info.vcpus > MAX_VCPUS:
                raise DecodeError(f"getdomaininfo: max_vcpu_id {info.max_vcpu_id} of domain {info.domid} "
                                  "is beyond any Xen")
        if infos:
            shaped = _batch.vcpus_shaped(self.engine, infos)
            if shaped is not None:
                return shaped
        b = self.batch()
        rows = [(info, b.vcpu_info(info.domid, v), b.vcpu_affinity(info.domid, v))
                for info in infos for v in range(info.vcpus)]
        b.run()
        out: List[VcpuListEntry] = []
        gone = set()
        for info, vi, va in rows:
            err = vi.error or va.error
            if err is not None:
                if not explicit and isinstance(err, NoSuchDomain):
                    gone.add(info.domid)
                    continue
                raise err
            v: VcpuInfo = vi.result()
            a: VcpuAffinity = va.result()
            out.append(VcpuListEntry(info.domid, info.name, v.vcpu, v.online, v.blocked, v.running, v.cpu_time,
                                     v.cpu, a.hard, a.soft))
        return [e for e in out if e.domid not in gone] if gone else out

    def nr_cpus(self) -> int:
        """Size of cpumaps: physinfo's max_cpu_id + 1 (cached)."""
        n = self.state.nr_cpus
        if n is None:
            n = self.state.nr_cpus = self.physinfo().max_cpu_id + 1
        return n

    def vcpu_affinity(self, dom: DomainRef, vcpu: int) -> VcpuAffinity:
        """Hard (and soft, Xen >= 4.5) affinity of one vcpu."""
        if dom.__class__ is not int:
            dom = self._domid(dom)
        return self._ops.vcpu_affinity(dom, vcpu)  # type: ignore[no-any-return]

    def set_vcpu_affinity(self, dom: DomainRef, vcpu: int, hard: Optional[Iterable[int]] = None,
                          soft: Optional[Iterable[int]] = None) -> VcpuAffinity:
        """Pin a vcpu; returns the affinity Xen then reports.

        >>> xen = xenprivcmd.open("sim:///default")
        >>> xen.set_vcpu_affinity(1, 0, hard={0, 1})
        VcpuAffinity(vcpu=0, hard=frozenset({0, 1}), soft=frozenset({0, 1, 2, 3}))
        """
        domid = self._writable_domid("set_vcpu_affinity", dom)
        return self._ops.set_vcpu_affinity(domid, vcpu, hard, soft)  # type: ignore[no-any-return]

    @_operation
    def sched_params(self, dom: DomainRef) -> SchedParams:
        """Weight and cap of a domain under the host's scheduler (credit, credit2)."""
        if dom.__class__ is not int:
            dom = self._domid(dom)
        return self._ops.sched_params(dom)  # type: ignore[no-any-return]

    def set_sched_params(self, dom: DomainRef, weight: Optional[int] = None, cap: Optional[int] = None) -> SchedParams:
        """Set weight (1..65535) and/or cap (0..65534, 0 = none); returns the new values.

        >>> xen = xenprivcmd.open("sim:///default")
        >>> xen.set_sched_params(1, weight=512)
        SchedParams(scheduler='credit', weight=512, cap=0)
        >>> xen.set_sched_params(1, weight=0)
        Traceback (most recent call last):
        ...
        ValueError: weight 0 is out of range 1..65535
        """
        domid = self._writable_domid("set_sched_params", dom)
        return self._ops.set_sched_params(domid, weight, cap)  # type: ignore[no-any-return]

    def create_domain(self, max_vcpus: int = 1, handle: Optional[UUID] = None) -> int:
        """Create an empty, paused PV domain (no kernel); returns its domid."""
        self._check_writable("create_domain")
        return self._ops.create_domain(max_vcpus, handle)  # type: ignore[no-any-return]

    # -- a guest's memory and HVM parameters (ops/memory.py) ---------------------------------
    def populate_physmap(self, domid: DomainRef, gfns: Iterable[int], *, order: int = 0) -> List[int]:
        """``XENMEM_populate_physmap``: give a domain an extent of ``2**order`` pages at each
        guest frame of ``gfns``; returns the frames to map and to release (an x86 PV guest's
        machine frames, a translated guest's gfns as given).  Nothing half-done: if Xen
        populates fewer extents than asked, those it did are released again and
        :class:`~xenprivcmd.errors.HypercallError` says how many.  ``TypeError``/``ValueError``
        for frames, orders or domids invalid on their face (no hypercall).

        >>> xen = xenprivcmd.open("sim:///default")
        >>> new = xen.create_domain()
        >>> xen.set_max_mem(new, 1024)
        >>> xen.populate_physmap(new, [0x100, 0x101])[:1] != []
        True
        >>> xen.domain_info(new).tot_pages
        2
        """
        domid = self._writable_domid("populate_physmap", domid)
        return self._ops.populate_physmap(domid, gfns, order)  # type: ignore[no-any-return]

    def decrease_reservation(self, domid: DomainRef, frames: Iterable[int], *, order: int = 0) -> int:
        """``XENMEM_decrease_reservation``: take back a domain's extents at ``frames`` (what
        :meth:`populate_physmap` returned); returns how many.  Xen stops at the first frame
        the domain lacks: :class:`~xenprivcmd.errors.HypercallError` then says how many went."""
        domid = self._writable_domid("decrease_reservation", domid)
        return self._ops.decrease_reservation(domid, frames, order)  # type: ignore[no-any-return]

    def claim_pages(self, domid: DomainRef, pages: int) -> None:
        """``XENMEM_claim_pages``: reserve ``pages`` free pages for a domain being built
        (``xl info``'s outstanding_claims); 0 cancels its claim.  Xen refuses a claim beyond
        free memory (ENOMEM)."""
        domid = self._writable_domid("claim_pages", domid)
        self._ops.claim_pages(domid, pages)

    def maximum_gpfn(self, domid: DomainRef) -> int:
        """``XENMEM_maximum_gpfn``: a domain's highest guest frame number."""
        return self._ops.maximum_gpfn(self._domid(domid))  # type: ignore[no-any-return]

    def hvm_param(self, domid: DomainRef, name: Union[int, str]) -> int:
        """``HVMOP_get_param``: one of a domain's HVM parameters, by index or name
        (``"store_pfn"``, ``"HVM_PARAM_STORE_EVTCHN"``).  An x86 PV guest has none (Xen:
        EINVAL, :class:`~xenprivcmd.errors.HypercallError`); every Arm guest has them."""
        return self._ops.hvm_param(self._domid(domid), name)  # type: ignore[no-any-return]

    def set_hvm_param(self, domid: DomainRef, name: Union[int, str], value: int) -> None:
        """``HVMOP_set_param``: set one of a domain's HVM parameters (see :meth:`hvm_param`)."""
        domid = self._writable_domid("set_hvm_param", domid)
        self._ops.set_hvm_param(domid, name, value)

    # -- event channels of other domains (ops/channels.py) --------------------------------
    def evtchn_alloc_unbound(self, domid: DomainRef, remote_domid: int = 0) -> int:
        """``EVTCHNOP_alloc_unbound``: a new port of a domain that ``remote_domid`` (dom0 by
        default) may bind (:meth:`xenprivcmd.EventChannels.bind_interdomain`); returns it.

        >>> xen = xenprivcmd.open("sim:///default")
        >>> port = xen.evtchn_alloc_unbound("web1")
        >>> xen.evtchn_status("web1", port).status
        'unbound'
        """
        domid = self._writable_domid("evtchn_alloc_unbound", domid)
        return self._ops.evtchn_alloc_unbound(domid, remote_domid)  # type: ignore[no-any-return]

    def evtchn_status(self, domid: DomainRef, port: int) -> "EvtchnStatus":
        """``EVTCHNOP_status``: the state of a domain's port (:class:`~xenprivcmd.types.EvtchnStatus`)."""
        return self._ops.evtchn_status(self._domid(domid), port)  # type: ignore[no-any-return]

    # -- building a domain (ops/builder.py, build/create.py) -----------------------------
    def create(self, config: "DomainConfig", *, paused: bool = False, monitor: bool = False) -> DomainInfo:
        """Build and start the guest ``config`` describes (an x86_64 PV guest, or on Arm an
        arm64 guest: its kernel and ramdisk loaded -- on Arm with the device tree libxl would
        make --, its xenstore entries written as libxl writes them, introduced to
        xenstored and so to xenconsoled), paused if ``paused``; returns its
        :class:`~xenprivcmd.types.DomainInfo` (see :mod:`xenprivcmd.build.create` and
        :mod:`xenprivcmd.build.arm64`).

        ``monitor``: also leave its on-shutdown monitor (``on_poweroff`` / ``on_reboot`` /
        ``on_crash`` acted on, :mod:`xenprivcmd.build.monitor`): a detached process on a dom0,
        a daemon thread of this process on the simulator.  If it cannot be started the
        domain is destroyed and :class:`~xenprivcmd.errors.MonitorError` raised.

        Raises before any hypercall: :class:`~xenprivcmd.errors.ConfigError` (a name in use,
        more memory than the host has free, a type or command line the builder cannot
        give), :class:`~xenprivcmd.errors.ImageError` (a kernel or ramdisk that cannot be
        read or used), :class:`~xenprivcmd.errors.NotSupported` (a release without the
        builder's hypercalls: arm64 guests need Xen 4.17 or later).  Afterwards the failing call's
        :class:`~xenprivcmd.errors.XenError`, with everything done undone: no domain, no
        xenstore nodes left.
        """
        self._check_writable("create")
        from .build.create import create

        info = create(self, config, paused=paused)
        if monitor:
            from .build.monitor import start

            start(self, config, info.domid)
        return info

    def set_vcpu_context(self, domid: DomainRef, vcpu: int, context: bytes) -> None:
        """``XEN_DOMCTL_setvcpucontext``: give a vcpu of a domain being built its first
        context, the bytes of the release's ``vcpu_guest_context``
        (:func:`xenprivcmd.build.boot.pv_vcpu_context`).  ``ValueError`` for bytes of another
        size or a vcpu out of range (no hypercall); Xen says EINVAL for a vcpu the domain lacks
        or a context it refuses (:class:`~xenprivcmd.errors.HypercallError`)."""
        domid = self._writable_domid("set_vcpu_context", domid)
        self._ops.set_vcpu_context(domid, vcpu, context)

    def set_address_size(self, domid: DomainRef, bits: int) -> None:
        """``XEN_DOMCTL_set_address_size``: an x86 PV domain's guest is 64-bit (or 32-bit);
        said before it has memory.  ``ValueError`` for another size (no hypercall)."""
        domid = self._writable_domid("set_address_size", domid)
        self._ops.set_address_size(domid, bits)

    def hypercall_init(self, domid: DomainRef, frame: int) -> None:
        """``XEN_DOMCTL_hypercall_init``: Xen writes its hypercall stubs into a domain's
        frame (an x86 PV guest's machine frame: the page its kernel's ``HYPERCALL_PAGE`` note
        names)."""
        domid = self._writable_domid("hypercall_init", domid)
        self._ops.hypercall_init(domid, frame)

    def pin_table(self, domid: DomainRef, frame: int, level: int = 4) -> None:
        """``mmuext_op`` ``MMUEXT_PIN_L<level>_TABLE``: Xen validates and pins the page table
        at an x86 PV domain's machine frame (level 4: a 64-bit guest's top table).
        :class:`~xenprivcmd.errors.NotSupported` off x86; Xen says EINVAL for a frame that is
        not the domain's or holds no valid table."""
        domid = self._writable_domid("pin_table", domid)
        self._ops.pin_table(domid, frame, level)

    def set_paging_mempool_size(self, domid: DomainRef, size: int) -> None:
        """``XEN_DOMCTL_set_paging_mempool_size``: the pool an Arm (or x86 HVM) domain's P2M
        pages come from is ``size`` bytes (Xen 4.17+; libxl sizes an Arm guest's before its
        memory).  Xen says EINVAL for a size that is no whole number of pages, ENOMEM when
        the host lacks the memory; :class:`~xenprivcmd.errors.NotSupported` before 4.17."""
        domid = self._writable_domid("set_paging_mempool_size", domid)
        self._ops.set_paging_mempool_size(domid, size)

    def paging_mempool_size(self, domid: DomainRef) -> int:
        """``XEN_DOMCTL_get_paging_mempool_size``: the bytes of a domain's P2M pool (Xen
        4.17+; :class:`~xenprivcmd.errors.NotSupported` before)."""
        return self._ops.paging_mempool_size(self._domid(domid))  # type: ignore[no-any-return]

    def cache_flush(self, domid: DomainRef, first: int, count: int) -> None:
        """``XEN_DOMCTL_cacheflush``: clean and invalidate the data cache for ``count``
        frames of an Arm domain from gfn ``first``, after writing them through foreign
        mappings (a guest that starts with its caches off then reads what was written).
        ``ValueError`` for a count outside 1..2**18 (no hypercall);
        :class:`~xenprivcmd.errors.NotSupported` off Arm."""
        domid = self._writable_domid("cache_flush", domid)
        self._ops.cache_flush(domid, first, count)

    def gpaddr_bits(self, domid: DomainRef) -> int:
        """The width of a domain's guest-physical addresses (getdomaininfo's
        ``gpaddr_bits``; Xen 4.16+, :class:`~xenprivcmd.errors.NotSupported` before)."""
        return self._ops.gpaddr_bits(self._domid(domid))  # type: ignore[no-any-return]

    # -- host -----------------------------------------------------------------------
    @_operation
    def physinfo(self) -> PhysInfo:
        """``XEN_SYSCTL_physinfo``.

        >>> p = xenprivcmd.open("sim:///default").physinfo()
        >>> p.nr_cpus, p.cores_per_socket, p.threads_per_core, p.nr_nodes, p.virt_caps
        (4, 2, 2, 1, ('hvm', 'pv', 'hap', 'shadow'))
        """
        return self._ops.physinfo()  # type: ignore[no-any-return]

    def sched_id(self) -> Tuple[int, str]:
        """(id, name) of the host's scheduler."""
        return self._ops.sched_id()  # type: ignore[no-any-return]

    def cpu_topology(self) -> List[CpuTopology]:
        return self._ops.cpu_topology()  # type: ignore[no-any-return]

    def numa_info(self) -> List[NumaNode]:
        return self._ops.numa_info()  # type: ignore[no-any-return]

    def pcpu_info(self) -> List[PcpuInfo]:
        return self._ops.pcpu_info()  # type: ignore[no-any-return]

    def read_console(self, clear: bool = False, incremental: bool = False) -> str:
        """The hypervisor's console ring (``xl dmesg``).

        ``incremental=True`` returns only what is new since the previous
        incremental read on this handle (the first one returns everything).
        """
        if clear:
            self._check_writable("read_console(clear=True)")
        data, index = self._ops.read_console(clear, self.state.console_index if incremental else None)
        if incremental:
            self.state.console_index = index
        return data.decode("utf-8", "replace")  # type: ignore[no-any-return]

    # -- toolstack control through xenstore (control.py) ----------------------------
    def shutdown(self, dom: DomainRef, wait: bool = False, timeout: float = 60.0,
                 ack_timeout: float = 10.0) -> Optional[DomainInfo]:
        """Ask the guest to power off through ``control/shutdown`` (as ``xl shutdown``); with
        ``wait``, until it has.  Returns the domain afterwards (None once gone).

        Raises ``ValueError`` (dom0, already shut down, paused),
        :class:`~xenprivcmd.errors.GuestTimeout` (no PV driver acknowledged within
        ``ack_timeout`` seconds, or not down within ``timeout`` seconds).
        """
        self._check_writable("shutdown")
        from . import control

        return control.shutdown(self, dom, "poweroff", wait=wait, timeout=timeout, ack_timeout=ack_timeout)

    def reboot(self, dom: DomainRef, wait: bool = False, timeout: float = 60.0,
               ack_timeout: float = 10.0) -> Optional[DomainInfo]:
        """Ask the guest to reboot (``control/shutdown`` = ``reboot``); as :meth:`shutdown`.
        The domain shuts down with reason ``reboot``; its toolstack (xl) builds it again."""
        self._check_writable("reboot")
        from . import control

        return control.shutdown(self, dom, "reboot", wait=wait, timeout=timeout, ack_timeout=ack_timeout)

    def set_memory_target(self, dom: DomainRef, kib: int, force: bool = False) -> Tuple[int, int]:
        """Set the balloon target in KiB (``memory/target``, as ``xl mem-set``); ``max_mem``
        follows it as libxl does.  Returns (target, max_mem) in KiB.  A target of 0 or above
        ``memory/static-max`` raises ``ValueError`` unless ``force``."""
        self._check_writable("set_memory_target")
        from . import control

        return control.set_memory_target(self, dom, kib, force=force)

    def set_online_vcpus(self, dom: DomainRef, count: int) -> int:
        """Ask the guest to run ``count`` of its vcpus (``cpu/<n>/availability``, as ``xl vcpu-set``);
        its PV drivers bring them up and down.  ``ValueError`` for a count outside 1..its vcpus."""
        self._check_writable("set_online_vcpus")
        from . import control

        return control.set_online_vcpus(self, dom, count)

    def uptime(self, dom: DomainRef) -> Optional[float]:
        """Seconds the domain has been up (from the toolstack's ``start_time``), None if unknown."""
        from . import control

        return control.uptime(self, dom)

    def uptimes(self, doms: Optional[List[DomainRef]] = None) -> List[Tuple[DomainInfo, Optional[float]]]:
        """(domain, seconds up or None) for ``doms`` or every domain (``xl uptime``)."""
        from . import control

        return control.uptimes(self, doms)

    # -- guest memory, grants, event channels (guestmem.py, transport/mapping.py, evtchn.py) -------
    def _device(self, name: str, what: str) -> Any:
        """The transport's ``name`` method (forwarded through wrappers), or NotSupported."""
        if self.closed:
            raise XenError(errno.EBADF, f"{what}: the handle is closed")
        fn = getattr(self.transport, name, None)
        if fn is None:
            from .errors import NotSupported

            raise NotSupported(errno.EOPNOTSUPP, f"{what}: not available through {self.uri}"
                               f" ({self.transport.kind}: only a dom0's devices and the simulator map memory)")
        return fn

    def _restricted(self) -> Optional[int]:
        """The domain the device is restricted to (seen through any wrapper), None when it is not."""
        from .transport.wrappers import innermost

        return innermost(self.transport).restricted

    def _device_domid(self, dom: "DomainRef", what: str) -> int:
        domid = self._domid(dom)
        restricted = self._restricted()
        if restricted is not None and domid != restricted:
            from .errors import RestrictedError

            raise RestrictedError(errno.EPERM, f"{what}(domid={domid}): the handle is restricted to domain"
                                  f" {restricted}", domid=domid)
        return domid

    def map_foreign(self, domid: "DomainRef", frames: Iterable[int], *, writable: bool = False) -> "Mapping":
        """Map a guest's frames into this process: a :class:`~xenprivcmd.transport.mapping.Mapping`
        whose ``view`` is ``len(frames) * 4096`` bytes of the guest's memory itself
        (``IOCTL_PRIVCMD_MMAPBATCH_V2``).

        Frames are gfns of a guest Xen translates (Arm, x86 HVM/PVH) and mfns of an x86 PV
        guest (:mod:`xenprivcmd.guestmem`).  Frames the hypervisor reports paged out are
        retried (libxenforeignmemory's way, for at most
        :data:`~xenprivcmd.transport.mapping.PAGED_RETRY_SECONDS`).  Raises
        :class:`~xenprivcmd.errors.MappingError` naming every frame that failed (nothing stays
        mapped), ``TypeError``/``ValueError`` for frames invalid on their face (no ioctl),
        :class:`~xenprivcmd.errors.ReadOnlyError` for a writable mapping through a read-only
        handle, :class:`~xenprivcmd.errors.RestrictedError` for another domain than the one a
        restricted handle may act on, :class:`~xenprivcmd.errors.NotSupported` where the
        transport maps nothing (replays, remote handles).  Closing the handle closes the
        mapping (see :mod:`xenprivcmd.transport.mapping`).
        """
        from .guestmem import check_frames

        if writable:
            self._check_writable("map_foreign(writable=True)")
        checked = check_frames(frames)
        domid = self._device_domid(domid, "map_foreign")
        return self._device("map_foreign", "map_foreign")(domid, checked, bool(writable))  # type: ignore[no-any-return]

    def map_resource(self, domid: "DomainRef", kind: str, *, id: int = 0, frame: int = 0, count: int = 1,  # noqa: A002
                     writable: bool = False) -> "Mapping":
        """Map ``count`` frames from ``frame`` of a domain's resource (``IOCTL_PRIVCMD_MMAP_RESOURCE``,
        Xen's ``XENMEM_acquire_resource``): ``kind`` ``"grant_table"`` (``id`` 0: the shared
        frames, 1: the status frames), ``"ioreq_server"`` (``id``: the server) or
        ``"vmtrace_buf"`` (``id``: the vcpu).

        Raises ``TypeError``/``ValueError`` for arguments invalid on their face,
        :class:`~xenprivcmd.errors.NotSupported` when the release has no such resource
        (before 4.11; vmtrace buffers before 4.15) or the kernel no such ioctl, the typed
        :mod:`~xenprivcmd.errors` of the hypervisor's refusal, and as :meth:`map_foreign`.
        """
        from .guestmem import check_count, check_u32, resource_type

        if writable:
            self._check_writable("map_resource(writable=True)")
        check_u32(id, "id", "map_resource")
        check_u32(frame, "frame", "map_resource")
        check_count(count, "map_resource")
        if frame + count - 1 > 0xFFFFFFFF:
            raise ValueError(f"map_resource: frames {frame}..{frame + count - 1} go past 0xffffffff")
        if not isinstance(kind, str):
            raise TypeError(f"map_resource: kind must be a str, not {type(kind).__name__}")
        domid = self._device_domid(domid, "map_resource")
        type_ = resource_type(self.abi, kind, id)
        fn = self._device("map_resource", "map_resource")
        return fn(domid, type_, id, frame, count, bool(writable))  # type: ignore[no-any-return]

    def restrict(self, domid: "DomainRef") -> "Handle":
        """Restrict this handle to one domain (``IOCTL_PRIVCMD_RESTRICT``, as a device model
        does before it drops privileges): from then on it maps that domain's memory and
        resources only, and every hypercall is refused (before any ioctl:
        :class:`~xenprivcmd.errors.RestrictedError`; the driver would refuse them too).
        Cannot be undone; restricting again to another domain raises ``ValueError``.
        Returns the handle.  The ABI is detected first (detection needs hypercalls).
        """
        domid = self._domid(domid)
        current = self._restricted()
        if current is not None:
            if current != domid:
                raise ValueError(f"restrict: the handle is already restricted to domain {current}")
            return self
        fn = self._device("restrict", "restrict")
        self.abi  # noqa: B018 - detected while hypercalls still work
        fn(domid)
        self.transport = self.transport  # a new engine: its runners bind the device's refusal
        return self

    def map_grants(self, domid: "DomainRef", refs: Iterable[int], *, writable: bool = False) -> "Mapping":
        """Map grant references ``refs`` that ``domid`` granted to this domain (``/dev/xen/gntdev``):
        the same :class:`~xenprivcmd.transport.mapping.Mapping` type as :meth:`map_foreign`, whose
        ``frames`` are the refs.

        Raises :class:`~xenprivcmd.errors.MappingError` naming the refs that are not granted
        to this domain (or not writable, for a writable mapping), and as :meth:`map_foreign`.
        """
        from .guestmem import check_refs

        if writable:
            self._check_writable("map_grants(writable=True)")
        checked = check_refs(refs)
        domid = self._domid(domid)
        return self._device("map_grants", "map_grants")(domid, checked, bool(writable))  # type: ignore[no-any-return]

    def event_channels(self) -> "EventChannels":
        """This domain's event channels on the handle's hypervisor: ``/dev/xen/evtchn`` on a dom0,
        the simulator's own for ``sim://`` (see :class:`xenprivcmd.EventChannels`)."""
        from .evtchn import EventChannels

        return EventChannels(device=self._device("open_evtchn", "event_channels")(), variant=self.abi)

    # -- domain events (events.py) -------------------------------------------------------------------
    def events(self, *, domains: Optional[Iterable["DomainRef"]] = None,
               timeout: Optional[float] = None) -> "DomainEvents":
        """A stream of :class:`~xenprivcmd.types.DomainEvent` (started, paused, unpaused, shutdown
        with its reason, dying, destroyed), each within :data:`~xenprivcmd.events.POLL_SECONDS`
        of the change, for ``domains`` (default: all; a name follows its domain through
        reboots) until ``timeout`` seconds have passed (``None``: no end).  From xenstore's
        ``@releaseDomain``/``@introduceDomain`` watches and ``getdomaininfolist`` (pause and
        unpause touch no xenstore node: the poll sees them); see :mod:`xenprivcmd.events`.

        >>> xen = xenprivcmd.open("sim:///default")
        >>> with xen.events(domains=["web1"], timeout=5) as stream:
        ...     xen.pause("web1")
        ...     e = stream.next()
        >>> e.event, e.domid, e.name
        ('paused', 1, 'web1')
        """
        from .events import DomainEvents

        return DomainEvents(self, domains, timeout)

    # -- guests' network and disk I/O: dom0's backend counters (iostats.py) -------------------
    def interface_stats(self, dom: Optional[DomainRef] = None) -> List["InterfaceStats"]:
        """The network interfaces (netback vifs) of a domain, or of every domain when ``dom``
        is None, with their counters from the guest's side as ``virsh domifstat`` shows them
        (``rx_bytes``: what the guest received).  Read from dom0's sysfs (over
        ``xen+ssh://``: the remote dom0's); names and MACs from xenstore.

        Raises :class:`~xenprivcmd.errors.NoSuchDomain` for an unknown domain,
        :class:`~xenprivcmd.errors.NotSupported` where there is no dom0 sysfs (a replay).

        >>> xen = xenprivcmd.open("sim:///default")
        >>> [(i.name, i.mac) for i in xen.interface_stats("web1")]
        [('vif1.0', '00:16:3e:00:01:00')]
        """
        from . import iostats

        return iostats.of_handle(self, "vif", dom)

    def block_stats(self, dom: Optional[DomainRef] = None) -> List["BlockStats"]:
        """The virtual disks (blkback vbds) of a domain, or of every domain when ``dom`` is
        None: requests and 512-byte sectors read and written, flushes, discards.  Read
        from dom0's sysfs; names (``xvda``) from xenstore.  Raises as :meth:`interface_stats`.

        >>> xen = xenprivcmd.open("sim:///default")
        >>> [(b.name, b.devid) for b in xen.block_stats("db1")]
        [('xvda', 51712), ('xvdb', 51728)]
        """
        from . import iostats

        return iostats.of_handle(self, "vbd", dom)

    # -- cpupools and memory sharing (ops/pools.py) ----------------------------------------
    def cpupools(self) -> List["CpuPool"]:
        """Every cpupool (``xl cpupool-list``), named from xenstore where the toolstack wrote it."""
        names: Dict[int, str] = {}
        try:
            store = self.xenstore()
            try:
                for pid in store.directory("/local/pool"):
                    if pid.isdigit():
                        names[int(pid)] = bytes(store.read(f"/local/pool/{pid}/name")).decode("utf-8", "replace")
            finally:
                store.close()
        except OSError:
            pass  # no xenstore, or no pool nodes: Pool-0 by default
        return self._ops.cpupools(names)  # type: ignore[no-any-return]

    def free_cpus(self) -> "frozenset[int]":
        """The pcpus in no cpupool (``xl info``'s free_cpus counts them)."""
        return self._ops.free_cpus()  # type: ignore[no-any-return]

    def sharing_pages(self) -> Dict[str, int]:
        """Memory-sharing page counts ``{"freed": n, "shared": n}`` (0 without memory sharing)."""
        return self._ops.sharing_pages()  # type: ignore[no-any-return]


def _domid_of(info: DomainInfo) -> int:
    return info.domid
