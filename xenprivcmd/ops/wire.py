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

from ..abi.hypercalls import HYPERVISOR_domctl, HYPERVISOR_sysctl, issue
from ..abi.layout import has_field, record_reader
from ..errors import DecodeError, NotSupported
from ..types import DOMINF_BITS, DomainInfo

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Optional, Tuple

    from ..transport.privcmd import Buffer, Transport

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


class Wire:
    """Request/reply plumbing for one variant (see module doc)."""

    #: True for :class:`~xenprivcmd.ops.dom0op.Dom0OpWire`: every request goes through dom0_op.
    dom0_op = False

    def __init__(self, variant: Any) -> None:
        self.variant = variant
        self.constants = variant.constants
        # sub-op members of the wrappers are built on first use (lean classes)
        (self.domctl_cls, self.domctl_iv), (self.sysctl_cls, self.sysctl_iv) = self._wrappers(variant)
        self.domctl_size = ctypes.sizeof(self.domctl_cls)
        self.sysctl_size = ctypes.sizeof(self.sysctl_cls)
        self.domctl_u = self.domctl_cls.u.offset
        self.sysctl_u = self.sysctl_cls.u.offset
        self._domctl_zeros = bytes(self.domctl_size)
        self._sysctl_zeros = bytes(self.sysctl_size)
        self._domctl_cmds: Dict[str, int] = {}
        self._sysctl_cmds: Dict[str, int] = {}
        info = variant.structs["xen_domctl_getdomaininfo"]
        self.info_size = ctypes.sizeof(info)
        self.info_reader, index = record_reader(info, DOMAININFO_FIELDS)
        # Fast path: every field present, in DomainInfo's order -> a record
        # tuple is a DomainInfo but for the name.
        self.flags = FlagMap(variant.constants)
        self.info_fast = index == list(range(len(DOMAININFO_FIELDS))) and self.flags.identity
        self.info_index = index
        self.info_next_domain = variant.xen < (4, 18)

    def _wrappers(self, variant: Any) -> Tuple[Tuple[Any, int], Tuple[Any, int]]:
        """((domctl wrapper class, interface version), (the same for sysctl))."""
        if variant.domctl_interface_version is None:
            raise NotSupported(
                _errno.ENOSYS,
                f"Xen {variant.release} uses the dom0_op interface: use make_wire() (Dom0OpWire)",
            )
        domctl, sysctl = variant.structs.lean("xen_domctl"), variant.structs.lean("xen_sysctl")
        # The request headers are written with one pack_into; their layout
        # (cmd, interface_version[, domain]) is the same in every release.
        where = [(getattr(domctl, f).offset) for f in ("cmd", "interface_version", "domain")]
        where += [(getattr(sysctl, f).offset) for f in ("cmd", "interface_version")]
        if where != [0, 4, 8, 0, 4]:
            raise ValueError(f"unexpected domctl/sysctl header layout {where} in {variant.release}")
        return (domctl, variant.domctl_interface_version), (sysctl, variant.sysctl_interface_version)

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
        return issue(t, HYPERVISOR_domctl, buf.address, subop=subop, domid=domid)

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
        return issue(t, HYPERVISOR_sysctl, buf.address, subop=subop)

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


get_domid = itemgetter(0)
_domctl_header = struct.Struct("<IIH").pack_into
_sysctl_header = struct.Struct("<II").pack_into
