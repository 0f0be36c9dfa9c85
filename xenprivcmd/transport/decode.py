"""Hypercall requests read back by Xen's names: what the wrappers, the shell's
``-t``/``-N`` and record/replay show, and which requests only read.

:class:`Decoder` reads a request in the caller's buffer with the ctypes classes
of the ABI variant (set ``variant`` once it is known; until then the variant is
inferred from the request's ``interface_version``), so payload fields carry
Xen's names (``max_memkb``, ``cpumap_hard``, ...).  :func:`is_read_only` says
whether a hypercall only reads (the read-only guard and the dry run of
:mod:`.wrappers` ask it); :class:`CallRecord` is one hypercall a wrapper saw.
"""

from __future__ import annotations

import ctypes
import struct
import threading
from typing import Any, Dict, Iterable, List, NamedTuple, Optional, Tuple

from .. import abi as _abi
from ..abi.hypercalls import (
    COMMAND_FAMILIES,
    HYPERCALL_NAMES,
    SCHEDULER_NAMES,
    XENVER_NAMES,
    HYPERVISOR_dom0_op,
    HYPERVISOR_domctl,
    HYPERVISOR_memory_op,
    HYPERVISOR_sysctl,
    HYPERVISOR_xen_version,
    XENMEM_get_sharing_freed_pages,
    XENMEM_get_sharing_shared_pages,
    command_name,
)
from .privcmd import peek, struct_at

__all__ = [
    "CallRecord",
    "Decoded",
    "Decoder",
    "is_read_only",
    "multicall_entries",
    "format_cpulist",
    "READONLY_DOMCTL",
    "READONLY_SYSCTL",
    "MC_MAX",
]

#: multicall_entry {u64 op; s64 result; u64 args[6]} (x86_64 and arm64).
_MC_ENTRY = struct.Struct("<Qq6Q")
#: The domctl/sysctl header every request starts with: {uint32_t cmd; uint32_t interface_version}.
_HEAD = struct.Struct("<II")
#: Entries a wrapper reads of one multicall (more is refused as malformed).
MC_MAX = 1 << 16

#: domctl sub-ops that only read (the dry-run lets them through).
READONLY_DOMCTL = frozenset({
    "getdomaininfo", "getvcpuinfo", "getvcpuaffinity", "getnodeaffinity", "getvcpucontext",
    "get_address_size", "gettscinfo", "getvcpuextstate", "get_ext_vcpucontext", "get_device_group",
    "gethvmcontext", "gethvmcontext_partial", "get_cpu_policy", "get_vcpu_msrs", "getpageframeinfo3",
    "get_paging_mempool_size",
})
#: sysctl sub-ops that only read (``readconsole`` is let through with ``clear`` forced to 0).
READONLY_SYSCTL = frozenset({
    "getdomaininfolist", "physinfo", "sched_id", "cputopoinfo", "topologyinfo", "numainfo",
    "getcpuinfo", "readconsole", "get_cpu_policy", "get_cpu_featureset", "get_cpu_levelling_caps",
    "pcitopoinfo",
})

#: XEN_SCHEDULER_* id -> member of ``xen_domctl_scheduler_op.u``.
#: (XEN_SCHEDULER_* id -> member: the scheduler's name, abi.hypercalls.SCHEDULER_NAMES)
#: domctl sub-op -> member of ``xen_domctl.u`` when the names differ.
_DOMCTL_MEMBERS = {"setvcpuaffinity": "vcpuaffinity", "getvcpuaffinity": "vcpuaffinity",
                   "setnodeaffinity": "nodeaffinity", "getnodeaffinity": "nodeaffinity"}


class Decoded(NamedTuple):
    """What a hypercall request says, by Xen's names."""

    hypercall: str
    subop: Optional[str]
    domid: Optional[int]
    fields: Dict[str, Any]

    def describe(self, addresses: bool = True) -> str:
        """``domctl max_mem(domid=3) max_memkb=1048576``-style one-liner; ``addresses=False``
        leaves out guest handles (buffer addresses, meaningless to a reader of a dry run)."""
        what = self.hypercall if self.subop is None else f"{self.hypercall} {self.subop}"
        if self.domid is not None:
            what += f"(domid={self.domid})"
        flat = _flatten(self.fields)
        if not addresses:
            flat = [(k, v) for k, v in flat if k.rsplit(".", 1)[-1] not in _HANDLE_FIELDS]
        if flat:
            what += " " + " ".join(f"{k}={_show(v)}" for k, v in flat)
        return what


class CallRecord(NamedTuple):
    """One hypercall seen by a wrapper."""

    op: int
    decoded: Decoded
    #: Wall time spent in the hypercall (0.0 when not issued).
    seconds: float
    #: The return value; ``None`` when it failed or was not issued.
    result: Optional[int]
    #: errno name when it failed (``"ESRCH"``), else ``None``.
    error: Optional[str]
    #: False when a dry-run wrapper held it back.
    issued: bool

    def describe(self) -> str:
        return self.decoded.describe()

    def as_dict(self) -> Dict[str, Any]:
        d = self.decoded
        return {
            "op": self.op, "hypercall": d.hypercall, "subop": d.subop, "domid": d.domid,
            "fields": _jsonable(d.fields), "seconds": self.seconds, "result": self.result,
            "error": self.error, "issued": self.issued,
        }


def _flatten(fields: Dict[str, Any], prefix: str = "") -> List[Tuple[str, Any]]:
    out: List[Tuple[str, Any]] = []
    for k, v in fields.items():
        if isinstance(v, dict):
            out += _flatten(v, f"{prefix}{k}.")
        else:
            out.append((prefix + k, v))
    return out


def _show(v: Any) -> str:
    if isinstance(v, list):
        return "[" + ",".join(str(x) for x in v) + "]"
    return str(v)


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (int, float, str, bool)) or v is None:
        return v
    return str(v)


def format_cpulist(cpus: Iterable[int]) -> str:
    """``{0, 1, 2, 5}`` -> ``"0-2,5"`` (``""`` for none)."""
    c = sorted(set(cpus))
    out: List[str] = []
    i = 0
    while i < len(c):
        j = i
        while j + 1 < len(c) and c[j + 1] == c[j] + 1:
            j += 1
        out.append(str(c[i]) if i == j else f"{c[i]}-{c[j]}")
        i = j + 1
    return ",".join(out)


# -- decoding -------------------------------------------------------------------------------

_iv_cache: Dict[Tuple[str, int, str], Optional["_abi.Variant"]] = {}
_iv_lock = threading.Lock()


def _variant_for_iv(which: str, iv: int, arch: str) -> Optional["_abi.Variant"]:
    """The newest known release whose domctl (or sysctl) interface version is ``iv``."""
    key = (which, iv, arch)
    with _iv_lock:
        if key in _iv_cache:
            return _iv_cache[key]
        found: Optional[_abi.Variant] = None
        idx = 0 if which == "domctl" else 1
        for release, pair in reversed(list(_abi.interface_versions().items())):
            if pair[idx] == iv:
                try:
                    found = _abi.variant(release, arch=arch)
                except _abi.UnknownABIError:
                    continue
                break
        _iv_cache[key] = found
        return found


class Decoder:
    """Decodes hypercall requests in the caller's memory by the ABI's ctypes classes."""

    def __init__(self, variant: Optional["_abi.Variant"] = None, arch: str = _abi.DEFAULT_ARCH) -> None:
        self.variant = variant
        self.arch = variant.arch if variant is not None else arch

    def _variant(self, which: str, iv: int) -> Optional["_abi.Variant"]:
        v = self.variant
        if v is not None:
            mine = v.domctl_interface_version if which == "domctl" else v.sysctl_interface_version
            if mine == iv:
                return v
        found = _variant_for_iv(which, iv, self.arch)
        if found is None:
            # An interface version no table has (a probe of a development
            # build): command numbers never change, so name it by the head's.
            try:
                found = _abi.variant(_abi.head_release(), arch=self.arch)
            except _abi.UnknownABIError:
                return None
        return found

    def request(self, op: int, args: Tuple[int, ...]) -> Tuple[Decoded, Optional[Any], Optional["_abi.Variant"]]:
        """(decoded, the ctypes request object in place or None, variant used)."""
        name = HYPERCALL_NAMES.get(op, f"hypercall{op}")
        if op == HYPERVISOR_xen_version:
            return Decoded(name, XENVER_NAMES.get(args[0], str(args[0])), None, {}), None, None
        if op not in COMMAND_FAMILIES or not args[0]:
            return Decoded(name, None, None, {"args": [hex(a) for a in args]}), None, None
        addr = args[0]
        cmd, iv = _HEAD.unpack(peek(addr, _HEAD.size))
        subop = command_name(op, cmd, iv) or f"cmd{cmd}"
        if op == HYPERVISOR_dom0_op:  # named only: the payload is not decoded
            return Decoded(name, subop, None, {}), None, None
        variant = self._variant(name, iv)
        if variant is None:
            return Decoded(name, subop, None, {"interface_version": hex(iv)}), None, None
        wrapper = variant.structs["xen_domctl" if op == HYPERVISOR_domctl else "xen_sysctl"]
        req = struct_at(wrapper, addr)
        domid = int(req.domain) if op == HYPERVISOR_domctl else None
        return Decoded(name, subop, domid, {}), req, variant

    def decode(self, op: int, args: Tuple[int, ...], payload: bool = True) -> Decoded:
        """Decode a request; ``payload`` adds the sub-op's fields."""
        dec, req, variant = self.request(op, args)
        if not payload or req is None or variant is None or dec.subop is None:
            return dec
        return dec._replace(fields=self.payload(req, dec.subop))

    def payload(self, req: Any, subop: str) -> Dict[str, Any]:
        member = _DOMCTL_MEMBERS.get(subop, subop)
        u = req.u
        if not any(f[0] == member for f in type(u)._fields_):
            return {}
        value = getattr(u, member)
        if subop == "scheduler_op":
            return _sched_fields(value)
        out = _fields(value)
        if member == "vcpuaffinity" and isinstance(out.get("flags"), int):
            flags = out["flags"]
            # Only the maps the flags name are read by Xen.
            if not flags & 1:
                out.pop("cpumap_hard", None)
            if not flags & 2:
                out.pop("cpumap_soft", None)
            out["flags"] = _flag_names(flags)
        return out


def _fields(obj: Any) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    names = [f[0] for f in obj._fields_]
    bitmap_nr = next((n for n in ("nr_bits", "nr_cpus") if n in names), None)
    for name, *_ in obj._fields_:
        if name.startswith("_pad") or name.startswith("pad"):
            continue
        value = getattr(obj, name)
        if name == "bitmap" and bitmap_nr is not None:
            out[name] = _read_bitmap(int(value), int(getattr(obj, bitmap_nr)))
        elif name in _HANDLE_FIELDS and isinstance(value, int):
            out[name] = hex(value)
        elif isinstance(value, ctypes.Union):
            out[name] = "<union>"
        elif isinstance(value, ctypes.Structure):
            out[name] = _fields(value)
        elif isinstance(value, ctypes.Array):
            items = list(value)
            if name == "handle" and len(items) == 16:
                import uuid

                out[name] = str(uuid.UUID(bytes=bytes(items)))
            else:
                out[name] = [int(x) if isinstance(x, int) else x for x in items]
        else:
            out[name] = value
    return out


#: Guest handles (addresses in the caller's memory), shown in hex.
_HANDLE_FIELDS = frozenset({"buffer", "cputopo", "meminfo", "distance", "info"})

#: Largest cpumap read out of a caller's buffer (bits).
_MAX_BITMAP_BITS = 1 << 16


def _read_bitmap(address: int, nr_bits: int) -> str:
    if not address or not 0 < nr_bits <= _MAX_BITMAP_BITS:
        return "none" if not address else f"<{nr_bits} bits>"
    n = (nr_bits + 7) // 8
    bits = int.from_bytes(peek(address, n), "little")
    return format_cpulist(c for c in range(nr_bits) if bits >> c & 1) or "none"


def _flag_names(flags: int) -> str:
    """XEN_VCPUAFFINITY_* bits by name (``HARD|SOFT``)."""
    names = [n for bit, n in ((1, "HARD"), (2, "SOFT"), (4, "FORCE")) if flags & bit]
    rest = flags & ~7
    if rest:
        names.append(hex(rest))
    return "|".join(names) or "0"


def _sched_reads(variant: Optional["_abi.Variant"], cmd: int) -> bool:
    """Whether a scheduler_op cmd is XEN_DOMCTL_SCHEDOP_getinfo / getvcpuinfo."""
    consts = variant.constants if variant is not None else {}
    reads = {consts.get("XEN_DOMCTL_SCHEDOP_getinfo", 1), consts.get("XEN_DOMCTL_SCHEDOP_getvcpuinfo", 3)}
    return cmd in reads


def _sched_fields(op: Any) -> Dict[str, Any]:
    out: Dict[str, Any] = {"sched_id": int(op.sched_id)}
    cmd = int(op.cmd)
    out["cmd"] = {0: "putinfo", 1: "getinfo", 2: "putvcpuinfo", 3: "getvcpuinfo"}.get(cmd, cmd)
    member = SCHEDULER_NAMES.get(int(op.sched_id))
    if member is not None and any(f[0] == member for f in type(op.u)._fields_):
        out[member] = _fields(getattr(op.u, member))
    return out


def is_read_only(decoder: Decoder, op: int, args: Tuple[int, ...]) -> Tuple[bool, Decoded, Optional[Any]]:
    """Whether a hypercall only reads (``xen_version``, :data:`READONLY_DOMCTL`,
    :data:`READONLY_SYSCTL`, a scheduler_op getinfo, a readconsole that does
    not clear, a cpupool_op INFO / FREEINFO, the memory-sharing page counts),
    with its decoding and the request in place (or None)."""
    if op == HYPERVISOR_xen_version:
        return True, Decoded("xen_version", XENVER_NAMES.get(args[0], str(args[0])), None, {}), None
    if op == HYPERVISOR_memory_op and args[0] in (XENMEM_get_sharing_freed_pages, XENMEM_get_sharing_shared_pages):
        return True, Decoded("memory_op", str(args[0]), None, {}), None  # page counts, no argument
    try:
        decoded, req, variant = decoder.request(op, args)
    except Exception:
        return False, Decoded(HYPERCALL_NAMES.get(op, f"hypercall{op}"), None, None, {}), None
    subop = decoded.subop
    if req is None or subop is None:
        return False, decoded, req
    if op == HYPERVISOR_domctl:
        if subop in READONLY_DOMCTL:
            return True, decoded, req
        return subop == "scheduler_op" and _sched_reads(variant, int(req.u.scheduler_op.cmd)), decoded, req
    if op == HYPERVISOR_sysctl and subop in READONLY_SYSCTL:
        return subop != "readconsole" or not int(req.u.readconsole.clear), decoded, req
    if op == HYPERVISOR_sysctl and subop == "cpupool_op" and variant is not None:
        # INFO and FREEINFO read; the others change pools
        reads = {variant.constants.get("XEN_SYSCTL_CPUPOOL_OP_" + n) for n in ("INFO", "FREEINFO")} - {None}
        return int(req.u.cpupool_op.op) in reads, decoded, req
    return False, decoded, req


def multicall_entries(address: int, count: int) -> List[Tuple[int, Tuple[int, ...], int]]:
    """(op, args[0..4], result) of each entry of a multicall list in memory."""
    raw = peek(address, count * _MC_ENTRY.size)
    return [(e[0], e[2:7], e[1]) for e in _MC_ENTRY.iter_unpack(raw)]
