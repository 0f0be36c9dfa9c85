"""domctl / sysctl plumbing for one ABI variant.

A :class:`Wire` is built once per handle from the detected variant: it knows
the wrapper structures (``xen_domctl``, ``xen_sysctl``), the offset of their
``u`` union, the op numbers and interface versions, and a precomputed reader
for ``getdomaininfo`` records.  Every request is laid into the calling
thread's scratch buffer (zeroed first), issued, and its reply read in place.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import struct
from _operator import itemgetter

from .._layout import has_field, record_reader
from ..errors import DecodeError, NotSupported, ReadOnlyError, from_errno
from ..types import DOMINF_BITS, DomainInfo

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Optional, Tuple

    from .._privcmd import Buffer, Transport

HYPERVISOR_dom0_op = 7
HYPERVISOR_multicall = 13
HYPERVISOR_sysctl = 35
HYPERVISOR_domctl = 36

#: Largest domid a caller may name (DOMID_FIRST_RESERVED - 1).
DOMID_MAX = 0x7FEF
DOMID_FIRST_RESERVED = 0x7FF0

# DomainInfo's Xen fields, in DomainInfo's order (its last field, name, is ours).
DOMAININFO_FIELDS = (
    "domain", "flags", "tot_pages", "max_pages", "outstanding_pages", "shr_pages", "paged_pages",
    "shared_info_frame", "cpu_time", "nr_online_vcpus", "max_vcpu_id", "ssidref", "handle", "cpupool",
)
_NO_NAME = (None,)
_new_info = tuple.__new__

# DomainInfo.flags uses the XEN_DOMINF_* bits of Xen 4.9+ (types.DOMINF_BITS);
# each release's own constants say where every flag is: name -> canonical bit.
CANONICAL_FLAGS = DOMINF_BITS
_DOMFLAGS_NAMES = {"hvm_guest": "DOMFLAGS_HVM"}
SHUTDOWN_SHIFT, SHUTDOWN_MASK = 16, 0xFF


class FlagMap:
    """Translates a release's getdomaininfo flags into DomainInfo's bits."""

    def __init__(self, constants: Any) -> None:
        pairs = []
        for name, bit in CANONICAL_FLAGS:
            for cname in ("XEN_DOMINF_" + name, _DOMFLAGS_NAMES.get(name, "DOMFLAGS_" + name.upper())):
                if cname in constants:
                    pairs.append((int(constants[cname]), 1 << bit))
                    break
        self.pairs = pairs
        self.shift = int(constants.get("XEN_DOMINF_shutdownshift", constants.get("DOMFLAGS_SHUTDOWNSHIFT", 16)))
        self.mask = int(constants.get("XEN_DOMINF_shutdownmask", constants.get("DOMFLAGS_SHUTDOWNMASK", 0xFF)))
        has_cpu_field = "XEN_DOMINF_cpumask" in constants or "DOMFLAGS_CPUMASK" in constants
        #: Nothing to translate: the release's bits are DomainInfo's.
        self.identity = (
            all(have == bit for have, bit in pairs) and not has_cpu_field
            and (self.shift, self.mask) == (SHUTDOWN_SHIFT, SHUTDOWN_MASK)
        )

    def __call__(self, flags: int) -> int:
        out = 0
        for have, bit in self.pairs:
            if flags & have:
                out |= bit
        return out | ((flags >> self.shift) & self.mask) << SHUTDOWN_SHIFT


# Offset of a domctl's payload area: the records/cpumaps of a request go at
# this offset in the scratch buffer, clear of the wrapper structure.
PAYLOAD_OFFSET = 4096


def check_domid(domid: Any) -> int:
    """A domid named by a caller: an int in 0..0x7FEF (no reserved ids)."""
    if isinstance(domid, bool) or not isinstance(domid, int):
        raise TypeError(f"domid must be an int, not {type(domid).__name__}")
    if not 0 <= domid <= DOMID_MAX:
        raise ValueError(f"domid {domid} is out of range 0..{DOMID_MAX:#x}")
    return domid


def issue(t: Transport, op: int, a0: int, a1: int = 0, *, hypercall: str, subop: Optional[str] = None,
          domid: Optional[int] = None) -> int:
    """Issue one hypercall; an OSError becomes the typed error naming what failed
    (a read-only handle's refusal passes through as it is)."""
    try:
        return t.hypercall(op, a0, a1)
    except ReadOnlyError:
        raise
    except OSError as exc:
        raise from_errno(exc.errno or _errno.EIO, hypercall=hypercall, subop=subop, domid=domid) from None


class Wire:
    """Request/reply plumbing for one variant (see module doc)."""

    def __init__(self, variant: Any) -> None:
        self.variant = variant
        self.constants = variant.constants
        structs = variant.structs
        self.dom0_op = variant.domctl_interface_version is None
        if self.dom0_op:
            raise NotSupported(
                _errno.ENOSYS,
                f"Xen {variant.release} uses the dom0_op interface: use make_wire() (Dom0OpWire)",
            )
        self.domctl_cls = structs.lean("xen_domctl")  # sub-op members built on first use
        self.sysctl_cls = structs.lean("xen_sysctl")
        self.domctl_size = ctypes.sizeof(self.domctl_cls)
        self.sysctl_size = ctypes.sizeof(self.sysctl_cls)
        self.domctl_iv = variant.domctl_interface_version
        self.sysctl_iv = variant.sysctl_interface_version
        self.domctl_u = self.domctl_cls.u.offset
        self.sysctl_u = self.sysctl_cls.u.offset
        # The request headers are written with one pack_into; their layout
        # (cmd, interface_version[, domain]) is the same in every release.
        where = [(getattr(self.domctl_cls, f).offset) for f in ("cmd", "interface_version", "domain")]
        where += [(getattr(self.sysctl_cls, f).offset) for f in ("cmd", "interface_version")]
        if where != [0, 4, 8, 0, 4]:
            raise ValueError(f"unexpected domctl/sysctl header layout {where} in {variant.release}")
        self._domctl_zeros = bytes(self.domctl_size)
        self._sysctl_zeros = bytes(self.sysctl_size)
        self._domctl_cmds: Dict[str, int] = {}
        self._sysctl_cmds: Dict[str, int] = {}
        info = structs["xen_domctl_getdomaininfo"]
        self.info_size = ctypes.sizeof(info)
        self.info_reader, index = record_reader(info, DOMAININFO_FIELDS)
        # Fast path: every field present, in DomainInfo's order -> a record
        # tuple is a DomainInfo but for the name.
        self.flags = FlagMap(variant.constants)
        self.info_fast = index == list(range(len(DOMAININFO_FIELDS))) and self.flags.identity
        self.info_index = index
        self.info_next_domain = variant.xen < (4, 18)

    # -- constants ---------------------------------------------------------------
    def const(self, name: str, what: str) -> int:
        try:
            return int(self.constants[name])
        except KeyError:
            raise NotSupported(
                _errno.ENOSYS, f"{what}: Xen {self.variant.release} has no {name}"
            ) from None

    def has(self, struct_name: str, field: Optional[str] = None) -> bool:
        cls = self.variant.structs.get(struct_name)
        return cls is not None and (field is None or has_field(cls, field))

    # -- domctl ------------------------------------------------------------------
    def domctl(self, t: Transport, subop: str, domid: int, payload: int = 0, stable: bool = False) -> Tuple[Buffer, Any]:
        """A zeroed ``xen_domctl`` for ``XEN_DOMCTL_<subop>`` in the scratch buffer.

        ``stable`` ops (4.21+: get_domain_state) take interface version 0.
        """
        cmd = self._domctl_cmds.get(subop)
        if cmd is None:
            cmd = self._domctl_cmds[subop] = self.const("XEN_DOMCTL_" + subop, f"domctl {subop}")
        buf = t.scratch(PAYLOAD_OFFSET + payload if payload else self.domctl_size)
        view = buf.view
        view[: self.domctl_size] = self._domctl_zeros
        _domctl_header(view, 0, cmd, 0 if stable else self.domctl_iv, domid)
        return buf, buf.at(self.domctl_cls)

    def issue_domctl(self, t: Transport, buf: Buffer, subop: str, domid: Optional[int]) -> int:
        return issue(t, HYPERVISOR_domctl, buf.address, hypercall="domctl", subop=subop, domid=domid)

    def simple_domctl(self, t: Transport, subop: str, domid: int, fill: Optional[Callable[[Any], None]] = None) -> Any:
        buf, req = self.domctl(t, subop, domid)
        if fill is not None:
            fill(req.u)
        self.issue_domctl(t, buf, subop, domid)
        return req

    # -- sysctl ------------------------------------------------------------------
    def sysctl(self, t: Transport, subop: str, payload: int = 0) -> Tuple[Buffer, Any]:
        cmd = self._sysctl_cmds.get(subop)
        if cmd is None:
            cmd = self._sysctl_cmds[subop] = self.const("XEN_SYSCTL_" + subop, f"sysctl {subop}")
        buf = t.scratch(PAYLOAD_OFFSET + payload if payload else self.sysctl_size)
        view = buf.view
        view[: self.sysctl_size] = self._sysctl_zeros
        _sysctl_header(view, 0, cmd, self.sysctl_iv)
        return buf, buf.at(self.sysctl_cls)

    def issue_sysctl(self, t: Transport, buf: Buffer, subop: str) -> int:
        return issue(t, HYPERVISOR_sysctl, buf.address, hypercall="sysctl", subop=subop)

    # -- getdomaininfo records -------------------------------------------------------
    def info_from(self, view: memoryview, offset: int) -> DomainInfo:
        rec = self.info_reader.unpack_from(view, offset)
        if self.info_fast:
            return _new_info(DomainInfo, rec + _NO_NAME)  # type: ignore[no-any-return]
        return self._info_slow(rec)

    def _info_slow(self, rec: Tuple[Any, ...]) -> DomainInfo:
        vals = [None if i is None else rec[i] for i in self.info_index]
        vals[1] = self.flags(int(vals[1] or 0))
        return DomainInfo._make(vals + [None])

    def infos_from(self, view: memoryview, offset: int, count: int) -> "list[DomainInfo]":
        """``count`` records read in place from ``view`` at ``offset``."""
        end = offset + count * self.info_size
        if count < 0 or end > len(view):
            raise DecodeError(f"{count} domain records do not fit in the {len(view)}-byte buffer")
        records = self.info_reader.iter_unpack(view[offset:end])
        if self.info_fast:
            return [_new_info(DomainInfo, rec + _NO_NAME) for rec in records]
        return [self._info_slow(rec) for rec in records]


def make_wire(variant: Any) -> Wire:
    """The plumbing for ``variant``: :class:`Wire` (domctl/sysctl), or
    :class:`~xenprivcmd.ops._dom0op.Dom0OpWire` for the dom0_op era (3.0.0-3.0.2)."""
    if variant.domctl_interface_version is None:
        from ._dom0op import Dom0OpWire

        return Dom0OpWire(variant)
    return Wire(variant)


get_domid = itemgetter(0)
_domctl_header = struct.Struct("<IIH").pack_into
_sysctl_header = struct.Struct("<II").pack_into
