"""dom0_op plumbing for Xen 3.0.0-3.0.2 (hypercall 7, ``struct dom0_op``).

Before Xen 3.0.3 there was no domctl/sysctl: the toolstack used one hypercall,
``__HYPERVISOR_dom0_op`` (7), with ``struct dom0_op { uint32_t cmd; uint32_t
interface_version; union {...} u; }`` (``public/dom0_ops.h``).  Every command
that acts on a domain carries the domid *inside its union member*
(``u.pausedomain.domain``), not in the wrapper.

:class:`Dom0OpWire` presents the vocabulary the ops layer speaks (a
``domctl``/``sysctl`` sub-op name, ``XEN_DOMCTL_*`` constants, the members the
ops fill) on top of ``dom0_op``, so :mod:`~xenprivcmd.ops.domains` and
:mod:`~xenprivcmd.ops.host` run unchanged:

* sub-op -> member -> ``DOM0_<MEMBER>`` (``max_mem`` -> ``setdomainmaxmem``,
  ``setvcpuaffinity`` -> ``setvcpuaffinity``, or ``pincpudomain`` in 3.0.0/3.0.1,
  ``getvcpuaffinity`` -> ``getvcpuinfo``'s ``cpumap``);
* the domid goes into the member's ``domain`` field; ``req.domain`` reads it back
  (createdomain's new domid);
* a cpumap is a 64-bit ``cpumap_t`` in the request itself: the ops' cpumap
  (``bitmap`` handle + ``nr_cpus``, as in domctl) is copied in before and out
  after the hypercall; cpus past 63 raise :class:`NotSupported` before it;
* ``getdomaininfo`` records have ``DOMFLAGS_*`` (the scheduled cpu in bits
  8..15, no hvm bit): translated to the ``XEN_DOMINF_*`` bits DomainInfo uses;
* a sub-op the era lacks (``get_domain_state``, ``getcpuinfo``, topology,
  NUMA, ``scheduler_op``) raises :class:`NotSupported` before any hypercall.
"""

from __future__ import annotations

import errno as _errno
import struct
import threading
from typing import Any, Dict, Iterator, Mapping, Optional, Tuple

from .._layout import has_field, record_reader
from .._privcmd import Buffer, Transport
from ..errors import NotSupported
from ._wire import DOMAININFO_FIELDS, PAYLOAD_OFFSET, FlagMap, HYPERVISOR_dom0_op, Wire, issue

__all__ = ["Dom0OpWire", "SUBOPS"]

#: domctl/sysctl sub-op -> the dom0_op union members that do it (the first the release has).
SUBOPS: Dict[str, Tuple[str, ...]] = {
    "getdomaininfo": ("getdomaininfo",),
    "getdomaininfolist": ("getdomaininfolist",),
    "pausedomain": ("pausedomain",),
    "unpausedomain": ("unpausedomain",),
    "destroydomain": ("destroydomain",),
    "createdomain": ("createdomain",),
    "max_vcpus": ("max_vcpus",),
    "max_mem": ("setdomainmaxmem",),
    "getvcpuinfo": ("getvcpuinfo",),
    "setvcpuaffinity": ("setvcpuaffinity", "pincpudomain"),
    "getvcpuaffinity": ("getvcpuinfo",),  # no getter: getvcpuinfo reports the cpumap
    "physinfo": ("physinfo",),
    "sched_id": ("sched_id",),
    "readconsole": ("readconsole",),
}

#: Member names the ops use (domctl's) -> the dom0_op member.
_MEMBER_ALIASES = {"max_mem": "setdomainmaxmem"}

_AFFINITY = ("setvcpuaffinity", "getvcpuaffinity")

# DOMFLAGS_* name -> XEN_DOMINF_* bit (types.DomainInfo).

_header = struct.Struct("<II").pack_into
_M64 = (1 << 64) - 1


class _Cpumap:
    """Stands for a ``xenctl_cpumap`` (what ops/domains.py fills): a handle and a size."""

    _fields_ = (("bitmap",), ("nr_cpus",))

    def __init__(self) -> None:
        self.bitmap = 0
        self.nr_cpus = 0


class _Affinity:
    """``req.u.vcpuaffinity`` for dom0_op: ``vcpu`` lands in the member, ``cpumap`` is staged."""

    def __init__(self, member: Any) -> None:
        self._member = member
        self.cpumap = _Cpumap()

    @property
    def vcpu(self) -> int:
        return int(self._member.vcpu)

    @vcpu.setter
    def vcpu(self, value: int) -> None:
        self._member.vcpu = value


class _Union:
    """``req.u``: the dom0_op union, reached by the member names of domctl/sysctl."""

    __slots__ = ("_req",)

    def __init__(self, req: "_Request") -> None:
        self._req = req

    def __getattr__(self, name: str) -> Any:
        req = self._req
        if name == "vcpuaffinity" and req.affinity is not None:
            return req.affinity
        return getattr(req.op.u, _MEMBER_ALIASES.get(name, name))


class _Request:
    """What :meth:`Dom0OpWire.domctl`/``sysctl`` return as the request: the
    ``dom0_op`` view, with ``u`` translated and ``domain`` read from the member."""

    __slots__ = ("op", "member", "affinity", "buf")

    def __init__(self, op: Any, member: str, affinity: Optional[_Affinity], buf: Buffer) -> None:
        self.op = op
        self.member = member
        self.affinity = affinity
        self.buf = buf

    @property
    def u(self) -> _Union:
        return _Union(self)

    @property
    def domain(self) -> int:
        return int(getattr(self.op.u, self.member).domain)

    @property
    def cmd(self) -> int:
        return int(self.op.cmd)

    @property
    def interface_version(self) -> int:
        return int(self.op.interface_version)


class _Constants(Mapping[str, int]):
    """The release's constants, plus ``XEN_DOMCTL_<op>``/``XEN_SYSCTL_<op>`` for
    every sub-op dom0_op can do (-> its ``DOM0_*`` command)."""

    def __init__(self, wire: "Dom0OpWire") -> None:
        self._w = wire

    def _lookup(self, name: str) -> Optional[int]:
        real = self._w.variant.real.constants
        if name in real:
            return int(real[name])
        for prefix in ("XEN_DOMCTL_", "XEN_SYSCTL_"):
            if name.startswith(prefix):
                got = self._w.resolve(name[len(prefix):])
                return None if got is None else got[1]
        return None

    def __getitem__(self, name: str) -> int:
        v = self._lookup(name)
        if v is None:
            raise KeyError(name)
        return v

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._lookup(name) is not None

    def __iter__(self) -> Iterator[str]:
        yield from self._w.variant.real.constants
        for subop in SUBOPS:
            if self._w.resolve(subop) is not None:
                yield "XEN_DOMCTL_" + subop

    def __len__(self) -> int:
        return sum(1 for _ in self)


class _Structs(Mapping[str, Any]):
    """The release's structures, plus ``xen_domctl_<op>`` -> the dom0_op member doing it."""

    def __init__(self, wire: "Dom0OpWire") -> None:
        self._w = wire

    def __getitem__(self, name: str) -> Any:
        cls = self._w.struct_for(name)
        if cls is None:
            raise KeyError(name)
        return cls

    def __iter__(self) -> Iterator[str]:
        return iter(self._w.variant.real.structs)

    def __len__(self) -> int:
        return len(self._w.variant.real.structs)


class _VariantView:
    """``wire.variant``: the detected :class:`~xenprivcmd.abi.Variant` (``real``), with
    ``structs`` and ``constants`` seen through the wire's domctl vocabulary."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.wire: Optional["Dom0OpWire"] = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    @property
    def structs(self) -> Mapping[str, Any]:
        assert self.wire is not None
        return _Structs(self.wire)

    @property
    def constants(self) -> Mapping[str, int]:
        assert self.wire is not None
        return self.wire.constants  # type: ignore[no-any-return]

    def __eq__(self, other: object) -> bool:
        return bool(self.real == getattr(other, "real", other))

    def __hash__(self) -> int:
        return hash(self.real)

    def __repr__(self) -> str:
        return repr(self.real)


class Dom0OpWire(Wire):
    """:class:`~xenprivcmd.ops._wire.Wire` for the dom0_op era (see the module doc)."""

    def __init__(self, variant: Any) -> None:  # noqa: D107 - Wire.__init__ is not called on purpose
        if not variant.is_dom0_op:
            raise ValueError(f"Xen {variant.release} has domctl/sysctl, not dom0_op")
        view = _VariantView(variant)
        self.variant = view
        self.dom0_op = True
        structs = variant.structs
        cls = structs["dom0_op"]
        self.op_cls = cls
        self.op_size = _sizeof(cls)
        if [cls.cmd.offset, cls.interface_version.offset] != [0, 4]:
            raise ValueError(f"unexpected dom0_op header layout in {variant.release}")
        self.op_iv = int(variant.dom0_op_interface_version)
        self.constants = _Constants(self)
        view.wire = self
        # The Wire attributes other code reads, pointing at the one wrapper.
        self.domctl_cls = self.sysctl_cls = cls
        self.domctl_size = self.sysctl_size = self.op_size
        self.domctl_iv = self.sysctl_iv = self.op_iv
        self.domctl_u = self.sysctl_u = cls.u.offset
        self._zeros = bytes(self.op_size)
        self._union_members = frozenset(f[0] for f in structs["dom0_op__u"]._fields_)
        self._resolved: Dict[str, Optional[Tuple[str, int]]] = {}
        info = structs["dom0_getdomaininfo"]
        self.info_size = _sizeof(info)
        self.info_reader, self.info_index = record_reader(info, DOMAININFO_FIELDS)
        self.info_fast = False
        if self.info_index[DOMAININFO_FIELDS.index("flags")] is None:
            raise ValueError(f"dom0_getdomaininfo of {variant.release} has no flags")
        self.info_next_domain = True  # getdomaininfo answers with the next domain at or after the id
        self.flags = FlagMap(variant.constants)  # DOMFLAGS_* -> XEN_DOMINF_* (the cpu in bits 8..15 dropped)
        self._tls = threading.local()

    # -- vocabulary -------------------------------------------------------------------
    def resolve(self, subop: str) -> Optional[Tuple[str, int]]:
        """(union member, DOM0_* command) doing ``subop`` in this release, or None."""
        if subop in self._resolved:
            return self._resolved[subop]
        got: Optional[Tuple[str, int]] = None
        consts = self.variant.real.constants
        for member in SUBOPS.get(subop, ()):
            name = "DOM0_" + member.upper()
            if member in self._union_members and name in consts:
                got = (member, int(consts[name]))
                break
        self._resolved[subop] = got
        return got

    def const(self, name: str, what: str) -> int:
        try:
            return int(self.constants[name])
        except KeyError:
            raise NotSupported(
                _errno.ENOSYS, f"{what}: Xen {self.variant.release} (dom0_op interface) has no {name}"
            ) from None

    def _member(self, subop: str, kind: str) -> Tuple[str, int]:
        got = self.resolve(subop)
        if got is None:
            raise NotSupported(
                _errno.ENOSYS, f"{kind} {subop}: Xen {self.variant.release} (dom0_op interface) has no such operation"
            )
        return got

    def struct_for(self, name: str) -> Any:
        """The ctypes class of ``name``; ``xen_domctl_<op>``/``xen_sysctl_<op>`` name the
        dom0_op member doing that sub-op (None when the release has neither)."""
        structs = self.variant.real.structs
        cls = structs.get(name)
        if cls is None and name.startswith(("xen_domctl_", "xen_sysctl_")):
            got = self.resolve(name.split("_", 2)[2])
            if got is not None:
                cls = structs.get("dom0_" + got[0])
        return cls

    def has(self, struct_name: str, field: Optional[str] = None) -> bool:
        cls = self.struct_for(struct_name)
        return cls is not None and (field is None or has_field(cls, field))

    # -- requests ---------------------------------------------------------------------
    def _request(self, t: Transport, subop: str, kind: str, domid: Optional[int], payload: int) -> Tuple[Buffer, Any]:
        member, cmd = self._member(subop, kind)
        buf = t.scratch(PAYLOAD_OFFSET + payload if payload else self.op_size)
        buf.view[: self.op_size] = self._zeros
        _header(buf.view, 0, cmd, self.op_iv)
        op = buf.at(self.op_cls)
        m = getattr(op.u, member)
        if domid is not None and has_field(type(m), "domain"):
            m.domain = domid
        req = _Request(op, member, _Affinity(m) if subop in _AFFINITY else None, buf)
        self._tls.pending = req
        return buf, req

    def domctl(self, t: Transport, subop: str, domid: int, payload: int = 0, stable: bool = False) -> Tuple[Buffer, Any]:
        """A zeroed ``dom0_op`` for the command doing domctl ``subop``, domid in its member."""
        if stable:
            raise NotSupported(_errno.ENOSYS, f"domctl {subop}: Xen {self.variant.release} has no stable domctls")
        return self._request(t, subop, "domctl", domid, payload)

    def sysctl(self, t: Transport, subop: str, payload: int = 0) -> Tuple[Buffer, Any]:
        """A zeroed ``dom0_op`` for the command doing sysctl ``subop``."""
        return self._request(t, subop, "sysctl", None, payload)

    def _pending(self, buf: Buffer) -> Optional[_Request]:
        req: Optional[_Request] = getattr(self._tls, "pending", None)
        return req if req is not None and req.buf is buf else None

    def _issue(self, t: Transport, buf: Buffer, subop: str, domid: Optional[int]) -> int:
        req = self._pending(buf)
        aff = req.affinity if req is not None else None
        if req is not None and aff is not None and subop == "setvcpuaffinity":
            getattr(req.op.u, req.member).cpumap = self._map_in(buf, aff.cpumap)
        rc = issue(t, HYPERVISOR_dom0_op, buf.address, hypercall="dom0_op", subop=subop, domid=domid)
        if req is not None and aff is not None and subop == "getvcpuaffinity":
            self._map_out(buf, aff.cpumap, int(getattr(req.op.u, req.member).cpumap))
        return rc

    def issue_domctl(self, t: Transport, buf: Buffer, subop: str, domid: Optional[int]) -> int:
        return self._issue(t, buf, subop, domid)

    def issue_sysctl(self, t: Transport, buf: Buffer, subop: str) -> int:
        return self._issue(t, buf, subop, None)

    # -- cpumaps: the ops' bitmap in the scratch buffer <-> the 64-bit cpumap_t -------------
    @staticmethod
    def _span(buf: Buffer, cpumap: _Cpumap) -> Tuple[int, int]:
        nbytes = (int(cpumap.nr_cpus) + 7) // 8
        at = int(cpumap.bitmap) - buf.address
        if nbytes and not 0 <= at <= len(buf.view) - nbytes:
            raise ValueError("cpumap bitmap outside the request buffer")
        return at, nbytes

    def _map_in(self, buf: Buffer, cpumap: _Cpumap) -> int:
        at, nbytes = self._span(buf, cpumap)
        bits = int.from_bytes(bytes(buf.view[at : at + nbytes]), "little")
        if bits >> 64:
            raise NotSupported(
                _errno.EOPNOTSUPP,
                f"vcpu affinity: Xen {self.variant.release}'s cpumap_t has 64 bits; cpu {bits.bit_length() - 1} "
                "cannot be named",
            )
        return bits

    @staticmethod
    def _map_out(buf: Buffer, cpumap: _Cpumap, bits: int) -> None:
        at, nbytes = Dom0OpWire._span(buf, cpumap)
        buf.view[at : at + nbytes] = (bits & _M64).to_bytes(8, "little")[:nbytes].ljust(nbytes, b"\0")


def _sizeof(cls: Any) -> int:
    import ctypes

    return ctypes.sizeof(cls)
