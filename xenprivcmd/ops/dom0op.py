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
  (``bitmap`` handle + ``nr_cpus``, as in domctl) is staged in the buffer right
  after the ``dom0_op``, and its bits copied in before and out after the
  hypercall; cpus past 63 raise :class:`NotSupported` before it;
* ``getdomaininfo`` records have ``DOMFLAGS_*`` (the scheduled cpu in bits
  8..15, no hvm bit): translated to the ``XEN_DOMINF_*`` bits DomainInfo uses;
* a sub-op the era lacks (``get_domain_state``, ``getcpuinfo``, topology,
  NUMA, ``scheduler_op``) raises :class:`NotSupported` before any hypercall.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import struct
from _collections_abc import Mapping as _MappingBase

from ..abi.hypercalls import HYPERVISOR_dom0_op, command_names, issue
from ..abi.layout import has_field
from ..errors import NotSupported
from .wire import DOMAININFO_FIELDS, PAYLOAD_OFFSET, Wire

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time (cold start, issue 15): the handle imports this module
    from typing import Any, Dict, Iterator, Mapping, Optional, Tuple

    from ..transport.privcmd import Buffer, Transport

    _ConstsBase = Mapping[str, int]
    _StructsBase = Mapping[str, Any]
else:
    _ConstsBase = _StructsBase = _MappingBase

__all__ = ["Dom0OpWire", "SUBOPS", "make_wire"]

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

_header = struct.Struct("<II").pack_into
_M64 = (1 << 64) - 1


def make_wire(variant: Any) -> Wire:
    """The plumbing for ``variant``: :class:`~xenprivcmd.ops.wire.Wire` (domctl/sysctl),
    or :class:`Dom0OpWire` for the dom0_op era (3.0.0-3.0.2)."""
    return Dom0OpWire(variant) if variant.is_dom0_op else Wire(variant)


class _Cpumap(ctypes.Structure):
    """Stands for a ``xenctl_cpumap`` (what ops/domains.py fills: a handle and a size),
    staged in the request's buffer right after the ``dom0_op``."""

    _fields_ = [("bitmap", ctypes.c_uint64), ("nr_cpus", ctypes.c_uint32)]


class _Affinity:
    """``req.u.vcpuaffinity`` for dom0_op: ``vcpu`` lands in the member, ``cpumap`` is staged."""

    def __init__(self, member: Any, cpumap: _Cpumap) -> None:
        self._member = member
        self.cpumap = cpumap

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

    __slots__ = ("op", "member", "affinity")

    def __init__(self, op: Any, member: str, affinity: Optional[_Affinity]) -> None:
        self.op = op
        self.member = member
        self.affinity = affinity

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


class _Constants(_ConstsBase):
    """The release's constants, plus ``XEN_DOMCTL_<op>``/``XEN_SYSCTL_<op>`` for
    every sub-op dom0_op can do (-> its ``DOM0_*`` command)."""

    def __init__(self, wire: "Dom0OpWire") -> None:
        self._w = wire

    def _lookup(self, name: str) -> Optional[int]:
        real = self._w.real.constants
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
        yield from self._w.real.constants
        for subop in SUBOPS:
            if self._w.resolve(subop) is not None:
                yield "XEN_DOMCTL_" + subop

    def __len__(self) -> int:
        return sum(1 for _ in self)


class _Structs(_StructsBase):
    """The release's structures, plus ``xen_domctl_<op>`` -> the dom0_op member doing it."""

    def __init__(self, wire: "Dom0OpWire") -> None:
        self._w = wire

    def __getitem__(self, name: str) -> Any:
        cls = self._w.struct_for(name)
        if cls is None:
            raise KeyError(name)
        return cls

    def __iter__(self) -> Iterator[str]:
        return iter(self._w.real.structs)

    def __len__(self) -> int:
        return len(self._w.real.structs)


class _VariantView:
    """``wire.variant``: the detected :class:`~xenprivcmd.abi.Variant` (``real``), with
    ``structs`` and ``constants`` seen through the wire's domctl vocabulary."""

    def __init__(self, real: Any, wire: "Dom0OpWire") -> None:
        self.real = real
        self.structs = _Structs(wire)
        self.constants = _Constants(wire)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def __eq__(self, other: object) -> bool:
        return bool(self.real == getattr(other, "real", other))

    def __hash__(self) -> int:
        return hash(self.real)

    def __repr__(self) -> str:
        return repr(self.real)


class Dom0OpWire(Wire):
    """:class:`~xenprivcmd.ops.wire.Wire` for the dom0_op era (see the module doc).

    Its ``variant`` is the release seen through the domctl vocabulary (``variant.real``
    is the release itself); ``struct dom0_op`` is both the domctl and the sysctl wrapper.
    A request lives in its buffer only: the ops' cpumap of an affinity request is staged
    right after the ``dom0_op`` and read back from there when it is issued.
    """

    dom0_op = True

    def __init__(self, variant: Any) -> None:
        if not variant.is_dom0_op:
            raise ValueError(f"Xen {variant.release} has domctl/sysctl, not dom0_op")
        #: The release itself (``self.variant`` sees it through the domctl vocabulary).
        self.real = variant
        #: The release's DOM0_* commands, by name (the union member's).
        self._commands = {name: cmd for cmd, name in command_names(variant, "dom0_op").items()}
        self._resolved: Dict[str, Optional[Tuple[str, int]]] = {}
        super().__init__(_VariantView(variant, self))
        if self.info_index[DOMAININFO_FIELDS.index("flags")] is None:
            raise ValueError(f"dom0_getdomaininfo of {variant.release} has no flags")
        # DOMFLAGS_* -> XEN_DOMINF_* (the cpu in bits 8..15 dropped) by self.flags; getdomaininfo
        # answers with the next domain at or after the id (self.info_next_domain).
        self._stage_at = (self.domctl_size + 7) & ~7
        self._stage_end = self._stage_at + ctypes.sizeof(_Cpumap)
        if self._stage_end > PAYLOAD_OFFSET:
            raise ValueError(f"dom0_op of {variant.release} leaves no room before the payload")
        self._zeros = bytes(self._stage_end)

    def _wrappers(self, variant: Any) -> Tuple[Tuple[Any, int], Tuple[Any, int]]:
        cls = self.real.structs["dom0_op"]
        if [cls.cmd.offset, cls.interface_version.offset] != [0, 4]:
            raise ValueError(f"unexpected dom0_op header layout in {variant.release}")
        iv = int(variant.dom0_op_interface_version)
        return (cls, iv), (cls, iv)

    # -- vocabulary -------------------------------------------------------------------
    def resolve(self, subop: str) -> Optional[Tuple[str, int]]:
        """(union member, DOM0_* command) doing ``subop`` in this release, or None."""
        if subop in self._resolved:
            return self._resolved[subop]
        got: Optional[Tuple[str, int]] = None
        for member in SUBOPS.get(subop, ()):
            if member in self._commands:
                got = (member, self._commands[member])
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
        structs = self.real.structs
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
        affinity = subop in _AFFINITY
        size = PAYLOAD_OFFSET + payload if payload else self.domctl_size
        buf = t.scratch(max(size, self._stage_end) if affinity else size)
        zeros = self._zeros if affinity else self._domctl_zeros
        buf.view[: len(zeros)] = zeros
        _header(buf.view, 0, cmd, self.domctl_iv)
        op = buf.at(self.domctl_cls)
        m = getattr(op.u, member)
        if domid is not None and has_field(type(m), "domain"):
            m.domain = domid
        return buf, _Request(op, member, _Affinity(m, buf.at(_Cpumap, self._stage_at)) if affinity else None)

    def domctl(self, t: Transport, subop: str, domid: int, payload: int = 0, stable: bool = False) -> Tuple[Buffer, Any]:
        """A zeroed ``dom0_op`` for the command doing domctl ``subop``, domid in its member."""
        if stable:
            raise NotSupported(_errno.ENOSYS, f"domctl {subop}: Xen {self.variant.release} has no stable domctls")
        return self._request(t, subop, "domctl", domid, payload)

    def sysctl(self, t: Transport, subop: str, payload: int = 0) -> Tuple[Buffer, Any]:
        """A zeroed ``dom0_op`` for the command doing sysctl ``subop``."""
        return self._request(t, subop, "sysctl", None, payload)

    def _issue(self, t: Transport, buf: Buffer, subop: str, domid: Optional[int]) -> int:
        if subop not in _AFFINITY:
            return issue(t, HYPERVISOR_dom0_op, buf.address, subop=subop, domid=domid)
        # The staged cpumap: read, then cleared (Xen reads the dom0_op only).
        staged = buf.at(_Cpumap, self._stage_at)
        bitmap, nr_cpus = int(staged.bitmap), int(staged.nr_cpus)
        buf.view[self._stage_at : self._stage_end] = self._zeros[self._stage_at :]
        member = getattr(buf.at(self.domctl_cls).u, self._member(subop, "domctl")[0])
        if subop == "setvcpuaffinity":
            member.cpumap = self._map_in(buf, bitmap, nr_cpus)
        rc = issue(t, HYPERVISOR_dom0_op, buf.address, subop=subop, domid=domid)
        if subop == "getvcpuaffinity":
            self._map_out(buf, bitmap, nr_cpus, int(member.cpumap))
        return rc

    def issue_domctl(self, t: Transport, buf: Buffer, subop: str, domid: Optional[int]) -> int:
        return self._issue(t, buf, subop, domid)

    def issue_sysctl(self, t: Transport, buf: Buffer, subop: str) -> int:
        return self._issue(t, buf, subop, None)

    # -- cpumaps: the ops' bitmap in the scratch buffer <-> the 64-bit cpumap_t -------------
    @staticmethod
    def _span(buf: Buffer, bitmap: int, nr_cpus: int) -> Tuple[int, int]:
        nbytes = (nr_cpus + 7) // 8
        at = bitmap - buf.address
        if nbytes and not 0 <= at <= len(buf.view) - nbytes:
            raise ValueError("cpumap bitmap outside the request buffer")
        return at, nbytes

    def _map_in(self, buf: Buffer, bitmap: int, nr_cpus: int) -> int:
        at, nbytes = self._span(buf, bitmap, nr_cpus)
        bits = int.from_bytes(bytes(buf.view[at : at + nbytes]), "little")
        if bits >> 64:
            raise NotSupported(
                _errno.EOPNOTSUPP,
                f"vcpu affinity: Xen {self.variant.release}'s cpumap_t has 64 bits; cpu {bits.bit_length() - 1} "
                "cannot be named",
            )
        return bits

    @staticmethod
    def _map_out(buf: Buffer, bitmap: int, nr_cpus: int, bits: int) -> None:
        at, nbytes = Dom0OpWire._span(buf, bitmap, nr_cpus)
        buf.view[at : at + nbytes] = (bits & _M64).to_bytes(8, "little")[:nbytes].ljust(nbytes, b"\0")
