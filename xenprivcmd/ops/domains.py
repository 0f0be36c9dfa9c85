"""Domain operations: the domctl requests (and the listing sysctl) and what is built on them.

Each request is declared once (:class:`~.engine.Request`); each operation is a
builder (:func:`~.engine.op`) that the engine runs once per handle, binding the
request runners it uses.  Arguments are checked before anything is issued: a
value invalid on its face raises ``ValueError``/``TypeError`` and no hypercall
leaves the process.
"""

from __future__ import annotations

import errno as _errno
import time
from _operator import add as _add
from itertools import repeat as _repeat

from ..abi.hypercalls import DOMID_FIRST_RESERVED, DOMID_MAX, SCHEDULER_NAMES, check_domid
from ..abi.layout import record_reader
from ..errors import DecodeError, NoSuchDomain, NotSupported, TryAgain
from ..types import DOMINF_BITS, INVALID_MAX_VCPU_ID, DomainInfo, DomainState, SchedParams, VcpuAffinity, VcpuInfo
from .engine import HEADER_DOMAIN, PAYLOAD_OFFSET, Check, Request, op

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, FrozenSet, Iterable, List, Optional, Sequence, Tuple, TypeVar
    from uuid import UUID

    from .engine import Engine, Families

    _T = TypeVar("_T")

#: Records asked for per getdomaininfolist call (paginated by first_domain).
LIST_CHUNK = 1024
#: destroydomain: how long EAGAIN ("still tearing down") is retried.
DESTROY_RETRY_SECONDS = 30.0
#: How long a failed create retries destroying the domain it made (an empty domain goes at once;
#: a hypervisor that keeps answering EAGAIN gets the destroy's TryAgain, chained to the failure)
UNDO_DESTROY_SECONDS = 5.0
#: Bounds of scheduler parameters (credit / credit2).
WEIGHT_MIN, WEIGHT_MAX = 1, 65535
CAP_MIN, CAP_MAX = 0, 65534
#: Largest memory limit accepted, in KiB (16 TiB: beyond any host Xen runs on).
MAX_MEM_KIB = 16 << 30
MAX_VCPUS = 8192

VCPU = Check(1, "vcpu", 0, MAX_VCPUS - 1)

# DomainInfo's Xen fields, in DomainInfo's order (its last field, name, is ours).
DOMAININFO_FIELDS = (
    "domain", "flags", "tot_pages", "max_pages", "outstanding_pages", "shr_pages", "paged_pages",
    "shared_info_frame", "cpu_time", "nr_online_vcpus", "max_vcpu_id", "ssidref", "handle", "cpupool",
)
VCPUINFO_FIELDS = ("online", "blocked", "running", "cpu_time", "cpu")

# -- the requests ---------------------------------------------------------------------------------

GETDOMAININFO = Request("domctl", "getdomaininfo", struct="xen_domctl_getdomaininfo", read=DOMAININFO_FIELDS,
                        reads=True)
GETDOMAININFOLIST = Request("sysctl", "getdomaininfolist", struct="xen_sysctl_getdomaininfolist",
                            send=("first_domain", "max_domains", "buffer"), pointers=("buffer",),
                            read=("num_domains",), reads=True)
GET_DOMAIN_STATE = Request("domctl", "get_domain_state", struct="xen_domctl_get_domain_state",
                           read=(HEADER_DOMAIN, "state", "caps", "unique_id"), reads=True, stable=True)
PAUSEDOMAIN = Request("domctl", "pausedomain", reads=False)
UNPAUSEDOMAIN = Request("domctl", "unpausedomain", reads=False)
DESTROYDOMAIN = Request("domctl", "destroydomain", reads=False)
MAX_MEM = Request("domctl", "max_mem", struct="xen_domctl_max_mem", send=("max_memkb",),
                  checks=(Check(1, "memory (KiB)", 0, MAX_MEM_KIB),), reads=False)
MAX_VCPUS_REQ = Request("domctl", "max_vcpus", struct="xen_domctl_max_vcpus", send=("max",),
                        checks=(Check(1, "vcpu count", 1, MAX_VCPUS),), reads=False)
#: read: the vcpu (echoed), then VcpuInfo's fields: one reply makes a VcpuInfo as it is
GETVCPUINFO = Request("domctl", "getvcpuinfo", struct="xen_domctl_getvcpuinfo", send=("vcpu",),
                      read=("vcpu",) + VCPUINFO_FIELDS, bools=("online", "blocked", "running"), checks=(VCPU,),
                      reads=True)

# vcpu affinity: three shapes of xen_domctl_vcpuaffinity (the maps are guest handles into the payload)
#: 4.5+: flags, a hard and a soft map (xenctl_bitmap)
_MAPS2 = ("vcpu", "flags", "cpumap_hard.bitmap", "cpumap_hard.nr_bits", "cpumap_soft.bitmap", "cpumap_soft.nr_bits")
#: 4.3-4.4: one map (xenctl_bitmap)
_MAP_BITS = ("vcpu", "cpumap.bitmap", "cpumap.nr_bits")
#: 3.0.3-4.2: one map (xenctl_cpumap)
_MAP_CPUS = ("vcpu", "cpumap.bitmap", "cpumap.nr_cpus")
_AFFINITY = {
    (get, send): Request("domctl", ("getvcpuaffinity" if get else "setvcpuaffinity"), struct="xen_domctl_vcpuaffinity",
                         member="vcpuaffinity", send=send, pointers=tuple(p for p in send if p.endswith("bitmap")),
                         checks=(VCPU,), reads=get)
    for get in (True, False) for send in (_MAPS2, _MAP_BITS, _MAP_CPUS)
}
#: The dom0_op era (3.0.0-3.0.2): the map is a 64-bit field in the request itself.
GETVCPUINFO_CPUMAP = Request("domctl", "getvcpuinfo", struct="xen_domctl_getvcpuinfo", send=("vcpu",),
                             read=("cpumap",), checks=(VCPU,), reads=True)
SETVCPUAFFINITY_CPUMAP = Request("domctl", "setvcpuaffinity", struct="xen_domctl_vcpuaffinity", member="vcpuaffinity",
                                 send=("vcpu", "cpumap"), checks=(VCPU,), reads=False)

# the scheduler's parameters: its member of xen_domctl_scheduler_op.u
_SCHED_GET = {name: Request("domctl", "scheduler_op", struct="xen_domctl_scheduler_op",
                            send=("sched_id", "cmd"), read=(f"u.{name}.weight", f"u.{name}.cap"), reads=True)
              for name in ("credit", "credit2")}
_SCHED_PUT = {(name, cap): Request("domctl", "scheduler_op", struct="xen_domctl_scheduler_op",
                                   send=("sched_id", "cmd", f"u.{name}.weight") + ((f"u.{name}.cap",) if cap else ()),
                                   reads=False)
              for name in ("credit", "credit2") for cap in (True, False)}


# -- getdomaininfo records ----------------------------------------------------------------------

_NO_NAME = (None,)
_new = tuple.__new__
SHUTDOWN_SHIFT, SHUTDOWN_MASK = 16, 0xFF
_DOMFLAGS_NAMES = {"hvm_guest": "DOMFLAGS_HVM"}


class FlagMap:
    """Translates a release's getdomaininfo flags into DomainInfo's bits (``XEN_DOMINF_*``
    of Xen 4.9+, :data:`~xenprivcmd.types.DOMINF_BITS`; each release's constants say where
    every flag is)."""

    def __init__(self, constants: Any) -> None:
        pairs = []
        for name, bit in DOMINF_BITS:
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


class InfoReader:
    """getdomaininfo records of one release -> DomainInfo: one record (fields in
    :data:`DOMAININFO_FIELDS`' order, ``None`` for those the release lacks) or arrays of them."""

    def __init__(self, fam: Families) -> None:
        cls = fam.struct(GETDOMAININFO.struct, "getdomaininfo")  # type: ignore[arg-type]
        import ctypes

        self.size = ctypes.sizeof(cls)
        self.records, index = record_reader(cls, DOMAININFO_FIELDS)
        self.flags = FlagMap(fam.constants)
        #: every field there, in DomainInfo's order, no flag to translate: a record + (None,) is a DomainInfo
        self.fast = index == list(range(len(DOMAININFO_FIELDS))) and self.flags.identity
        self.index = index
        #: before Xen 4.18 getdomaininfo answers with the next domain when the one asked is gone
        self.next_domain = fam.variant.xen < (4, 18)

    def one(self, vals: Tuple[Any, ...]) -> DomainInfo:
        """A DomainInfo from the fields in DOMAININFO_FIELDS' order (None where absent)."""
        if self.fast:
            return _new(DomainInfo, vals + _NO_NAME)  # type: ignore[no-any-return]
        v = list(vals)
        v[1] = self.flags(int(v[1] or 0))
        return DomainInfo._make(v + [None])

    def record(self, rec: Tuple[Any, ...]) -> DomainInfo:
        """A DomainInfo from one record read with ``records`` (its own field order)."""
        if self.fast:
            return _new(DomainInfo, rec + _NO_NAME)  # type: ignore[no-any-return]
        return self.one(tuple(None if i is None else rec[i] for i in self.index))

    def many(self, view: memoryview, offset: int, count: int) -> List[DomainInfo]:
        """``count`` records read in place from ``view`` at ``offset``."""
        end = offset + count * self.size
        if count < 0 or end > len(view):
            raise DecodeError(f"{count} domain records do not fit in the {len(view)}-byte buffer")
        recs = self.records.iter_unpack(view[offset:end])
        if self.fast:  # in C: no frame per record
            return list(map(_new, _repeat(DomainInfo), map(_add, recs, _repeat(_NO_NAME))))
        return [self.record(r) for r in recs]


def info_reader(e: Engine) -> InfoReader:
    """The release's :class:`InfoReader` (one per release)."""
    fam = e.families
    return fam.memo(InfoReader, lambda: InfoReader(fam))  # type: ignore[no-any-return]


def no_domain(subop: str, domid: int) -> NoSuchDomain:
    return NoSuchDomain(_errno.ESRCH, f"domctl {subop}(domid={domid}): no such domain (ESRCH)",
                        hypercall="domctl", subop=subop, domid=domid)


def listing_error(ids: Sequence[int], first: int) -> DecodeError:
    """Xen lists domains in domid order: the records of one getdomaininfolist must carry
    strictly ascending domids from ``first`` on, below DOMID_FIRST_RESERVED (the listing
    checks it in its own frame).  Anything else is a reply laid out differently from what
    was read (a wrong record size or layout): this error, never garbage returned as
    domains."""
    shown = ", ".join(map(str, ids[:8])) + (", ..." if len(ids) > 8 else "")
    return DecodeError(f"getdomaininfolist: {len(ids)} records from domain {first} do not carry "
                       f"ascending domids ({shown}): not the layout they were read with")


# -- listing and one domain ----------------------------------------------------------------------

@op("domain_info", reads=True)
def _domain_info(e: Engine) -> Callable[..., DomainInfo]:
    """One domain (``XEN_DOMCTL_getdomaininfo``); NoSuchDomain if it does not exist (before
    Xen 4.18 the hypercall answers with the next domain: turned into NoSuchDomain).
    ``domain_info(dom, name=True)``: a domain named otherwise than by a domid is the handle's
    lookup (named); ``name`` adds the name xenstore has (the handle's ``domain_name``)."""
    rd = info_reader(e)
    h = e.handle
    other, named = h.info_or_domid, h.with_name
    if rd.fast and e.device:  # the fields in DomainInfo's order: a DomainInfo as read, in the runner's frame
        return e.runner(GETDOMAININFO, result=DomainInfo, tail=_NO_NAME, echo=0, named=(other, named))
    run = e.runner(GETDOMAININFO, echo=0)
    one = rd.one

    def domain_info(dom: Any, name: bool = True) -> DomainInfo:
        if dom.__class__ is not int or not 0 <= dom <= DOMID_MAX:
            dom = other(dom)
            if dom.__class__ is not int:
                return dom  # type: ignore[no-any-return]  # looked up by name
        info = one(run(dom))
        return named(info) if name else info  # type: ignore[no-any-return]

    return domain_info


@op("domains", reads=True)
def _domains(e: Engine) -> Callable[..., List[DomainInfo]]:
    """Every domain, in domid order, through ``XEN_SYSCTL_getdomaininfolist``: one reused
    buffer, the records read straight out of it, paginated by ``first_domain`` so any
    number of domains (Xen allows 32k) is listed; ``domains(names=True)``: named from
    xenstore (the handle's ``with_names``)."""
    rd = info_reader(e)
    chunk = LIST_CHUNK

    def too_many(n: int) -> DecodeError:
        return DecodeError(f"getdomaininfolist: {n} domains returned for {chunk} asked")

    #: the records as DomainInfos in C, in the listing's frame (``records``; else ``rd.many``)
    return e.listing(GETDOMAININFOLIST, chunk, rd.size, rd.records.iter_unpack if rd.fast else None, rd.many,
                     DomainInfo, _NO_NAME, DOMID_FIRST_RESERVED, too_many, listing_error, e.handle.with_names)


@op("domain_state", reads=True)
def _domain_state(e: Engine) -> Callable[[int], DomainState]:
    """``XEN_DOMCTL_get_domain_state`` (Xen 4.21+): the stable, versionless domctl."""
    def domain_state(domid: int) -> DomainState:
        check_domid(domid)
        domain, state, caps, unique_id = e(GET_DOMAIN_STATE, domid)
        return DomainState(
            domid=int(domain),
            exists=bool(state & 1), shutdown=bool(state & 2), dying=bool(state & 4), dead=bool(state & 8),
            control=bool(caps & 1), hardware=bool(caps & 2), xenstore=bool(caps & 4),
            unique_id=int(unique_id),
        )

    return domain_state


# -- control -----------------------------------------------------------------------------------

@op("pause", reads=False)
def _pause(e: Engine) -> Callable[..., Any]:
    """``XEN_DOMCTL_pausedomain`` (the runner itself: it answers an empty tuple)."""
    return e.runner(PAUSEDOMAIN)


@op("unpause", reads=False)
def _unpause(e: Engine) -> Callable[..., Any]:
    """``XEN_DOMCTL_unpausedomain`` (the runner itself: it answers an empty tuple)."""
    return e.runner(UNPAUSEDOMAIN)


@op("destroy", reads=False)
def _destroy(e: Engine) -> Callable[..., None]:
    """``XEN_DOMCTL_destroydomain``; EAGAIN (Xen <= 4.5 returns it while tearing down) retried."""
    run = e.runner(DESTROYDOMAIN)

    def destroy(domid: int, timeout: float = DESTROY_RETRY_SECONDS) -> None:
        domid = e.check(DESTROYDOMAIN, (domid,))[0]
        retry_while_busy(lambda: run(domid), timeout)

    return destroy


def retry_while_busy(attempt: Callable[[], _T], timeout: float = DESTROY_RETRY_SECONDS) -> _T:
    """``attempt()`` until it does not raise :class:`TryAgain` (EAGAIN/EBUSY), backing off
    from 1 ms to 100 ms, and what it returned; after ``timeout`` seconds the last TryAgain
    is raised."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        try:
            return attempt()
        except TryAgain:
            if time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.1)


@op("set_max_mem", reads=False)
def _set_max_mem(e: Engine) -> Callable[..., None]:
    """The hard memory limit (``XEN_DOMCTL_max_mem``).  Unless ``force``, a limit below what
    the domain uses now is refused (one getdomaininfo once the arguments are good)."""
    run = e.runner(MAX_MEM)

    def set_max_mem(domid: int, kib: int, force: bool = False) -> None:
        domid, kib = e.check(MAX_MEM, (domid, kib))
        if not force:
            refuse_below_use(domid, kib, e.ops.domain_info(domid, False).memory_kib)
        run(domid, kib)

    return set_max_mem


def refuse_below_use(domid: int, kib: int, used_kib: int) -> None:
    """``ValueError`` for a memory limit below what the domain uses now."""
    if kib < used_kib:
        raise ValueError(f"a limit of {kib} KiB is below the {used_kib} KiB domain {domid} uses now"
                         " (force=True to set it anyway)")


@op("set_max_vcpus", reads=False)
def _set_max_vcpus(e: Engine) -> Callable[[int, int], None]:
    """``XEN_DOMCTL_max_vcpus``: allocate the domain's vcpus."""
    def set_max_vcpus(domid: int, n: int) -> None:
        e(MAX_VCPUS_REQ, domid, n)

    return set_max_vcpus


# -- vcpus -------------------------------------------------------------------------------------

def vcpu_count(info: DomainInfo) -> int:
    """max_vcpu_id + 1 of a domain, checked against any Xen's limit."""
    n = info.vcpus
    if n > MAX_VCPUS:
        raise DecodeError(f"getdomaininfo: max_vcpu_id {info.max_vcpu_id} of domain {info.domid} is beyond any Xen")
    return n


def vcpu_from(vals: Tuple[Any, ...]) -> VcpuInfo:
    """A VcpuInfo from GETVCPUINFO's fields (the vcpu first)."""
    return _new(VcpuInfo, vals)  # type: ignore[no-any-return]


@op("vcpu_info", reads=True)
def _vcpu_info(e: Engine) -> Callable[[int], List[Any]]:
    """Every vcpu of a domain: getdomaininfo (NoSuchDomain for a domain that is not there),
    then ``XEN_DOMCTL_getvcpuinfo`` for 0..max_vcpu_id (one engine frame on the device)."""
    invalid = INVALID_MAX_VCPU_ID
    at = DOMAININFO_FIELDS.index("max_vcpu_id")

    def vcpus(vals: Tuple[Any, ...]) -> int:
        mv = vals[at]
        n = 0 if mv == invalid or mv is None else mv + 1
        if n > MAX_VCPUS:
            raise DecodeError(f"getdomaininfo: max_vcpu_id {mv} of domain {vals[0]} is beyond any Xen")
        return n  # type: ignore[no-any-return]

    return e.sized(GETDOMAININFO, GETVCPUINFO, vcpus, result=VcpuInfo, echo=0)


def cpumap_bytes(cpus: Optional[Iterable[int]], nbytes: int) -> bytes:
    """A little-endian cpumap of ``nbytes`` with the bits of ``cpus`` (all zeros for None)."""
    return (0 if cpus is None else sum(1 << c for c in cpus)).to_bytes(nbytes, "little")


def cpus_from(raw: bytes, nr_cpus: int) -> FrozenSet[int]:
    """The cpus of a little-endian cpumap, below ``nr_cpus``."""
    bits = int.from_bytes(raw, "little")
    return frozenset(c for c in range(nr_cpus) if bits >> c & 1)


def check_vcpu(info: DomainInfo, vcpu: int) -> int:
    if info.vcpus == 0:
        raise ValueError(f"domain {info.domid} has no vcpus")
    return VCPU.__class__(1, "vcpu", 0, info.vcpus - 1)(vcpu)  # type: ignore[no-any-return]


def check_cpus(cpus: Iterable[int], nr_cpus: int) -> FrozenSet[int]:
    check = Check(0, "cpu", 0, nr_cpus - 1)
    out = frozenset(check(c) for c in cpus)
    if not out:
        raise ValueError("a cpu map must name at least one cpu")
    return out


def affinity_requests(e: Engine, get: bool) -> Tuple[Optional[Request], str]:
    """(the affinity request of this release, its shape: ``"two"`` maps, ``"one"`` map, or
    ``"inline"``: the dom0_op era's 64-bit map); (None, "") when the release has none."""
    if e.families.dom0_op:
        req = GETVCPUINFO_CPUMAP if get else SETVCPUAFFINITY_CPUMAP
        return (req, "inline") if e.has(req) else (None, "")
    for send, shape in ((_MAPS2, "two"), (_MAP_BITS, "one"), (_MAP_CPUS, "one")):
        req = _AFFINITY[(get, send)]
        if e.has(req):
            return req, shape
    return None, ""


def affinity_maps(e: Engine, nr_cpus: int, hard: Optional[Iterable[int]], soft: Optional[Iterable[int]],
                  ) -> Tuple[Optional[FrozenSet[int]], Optional[FrozenSet[int]]]:
    """The cpu maps to set, checked against ``nr_cpus``; NotSupported for a soft map before 4.5
    (and for cpus beyond the 64 of the dom0_op era)."""
    hard_set = None if hard is None else check_cpus(hard, nr_cpus)
    soft_set = None if soft is None else check_cpus(soft, nr_cpus)
    shape = affinity_requests(e, False)[1]
    if soft_set is not None and shape != "two":
        raise NotSupported(_errno.EOPNOTSUPP,
                           f"soft affinity: Xen {e.variant.release} has hard affinity only (before 4.5)")
    if shape == "inline" and hard_set and max(hard_set) > 63:
        raise NotSupported(_errno.EOPNOTSUPP, f"cpu {max(hard_set)}: Xen {e.variant.release}'s dom0_op cpumap "
                           "has 64 bits")
    return hard_set, soft_set


def affinity_args(shape: str, e: Engine, vcpu: int, nr_cpus: int, setting: bool, hard: bool, soft: bool,
                  base: int = 0) -> Tuple[Tuple[Any, ...], int, int, int]:
    """A getvcpuaffinity/setvcpuaffinity request's arguments after the domid (the maps at
    ``base`` + 0 and + ``nbytes + 8``: the payload's address, or 0 for a batch's offsets),
    with the payload's size and where in it the maps are."""
    nbytes = (nr_cpus + 7) // 8
    soft_at = nbytes + 8
    if shape == "two":
        fam = e.families
        flags = 0
        if not setting or hard:
            flags |= fam.const("XEN_VCPUAFFINITY_HARD", "affinity")
        if not setting or soft:
            flags |= fam.const("XEN_VCPUAFFINITY_SOFT", "affinity")
        return (vcpu, flags, base, nr_cpus, base + soft_at, nr_cpus), 2 * nbytes + 16, 0, soft_at
    return (vcpu, base, nr_cpus), 2 * nbytes + 16, 0, soft_at


@op("vcpu_affinity", reads=True)
def _vcpu_affinity(e: Engine) -> Callable[[int, int], VcpuAffinity]:
    """Hard (and soft, Xen >= 4.5) affinity of one vcpu.  The cpumap size is the handle's
    nr_cpus (asked before getdomaininfo, as recordings of real dom0s have it)."""
    info = e.ops.domain_info
    nr_cpus = e.handle.nr_cpus

    def vcpu_affinity(domid: int, vcpu: int) -> VcpuAffinity:
        domid = e.check(GETVCPUINFO, (domid, vcpu))[0]
        n = nr_cpus()
        check_vcpu(info(domid, False), vcpu)
        return read_affinity(e, domid, vcpu, n)

    return vcpu_affinity


def read_affinity(e: Engine, domid: int, vcpu: int, nr_cpus: int) -> VcpuAffinity:
    """getvcpuaffinity (or the dom0_op era's getvcpuinfo cpumap) of one vcpu."""
    req, shape = affinity_requests(e, True)
    if req is None:
        raise NotSupported(_errno.ENOSYS, f"vcpu affinity: Xen {e.variant.release} has no getvcpuaffinity")
    if shape == "inline":
        bits = e(req, domid, vcpu)[0]
        return VcpuAffinity(vcpu, frozenset(c for c in range(min(nr_cpus, 64)) if bits >> c & 1), None)
    nbytes = (nr_cpus + 7) // 8
    view, base = e.payload(2 * nbytes + 16)
    args, size, hard_at, soft_at = affinity_args(shape, e, vcpu, nr_cpus, False, True, True, base)
    P = PAYLOAD_OFFSET
    view[P:P + size] = bytes(size)
    e(req, domid, *args)
    hard = cpus_from(bytes(view[P + hard_at:P + hard_at + nbytes]), nr_cpus)
    soft = cpus_from(bytes(view[P + soft_at:P + soft_at + nbytes]), nr_cpus) if shape == "two" else None
    return VcpuAffinity(vcpu, hard, soft)


@op("set_vcpu_affinity", reads=False)
def _set_vcpu_affinity(e: Engine) -> Callable[..., VcpuAffinity]:
    """Set hard and/or soft affinity; returns what Xen then reports.  nr_cpus is asked only
    once the domain, the vcpu and that a map is given are known to be good."""
    info = e.ops.domain_info
    nr_cpus = e.handle.nr_cpus

    def set_vcpu_affinity(domid: int, vcpu: int, hard: Optional[Iterable[int]] = None,
                          soft: Optional[Iterable[int]] = None) -> VcpuAffinity:
        domid = e.check(GETVCPUINFO, (domid, vcpu))[0]
        if hard is None and soft is None:
            raise ValueError("give a hard or a soft cpu map (or both)")
        n = nr_cpus()
        hard_set, soft_set = affinity_maps(e, n, hard, soft)
        check_vcpu(info(domid, False), vcpu)
        req, shape = affinity_requests(e, False)
        if req is None:
            raise NotSupported(_errno.ENOSYS, f"vcpu affinity: Xen {e.variant.release} has no setvcpuaffinity")
        if shape == "inline":
            e(req, domid, vcpu, sum(1 << c for c in hard_set or ()))
        else:
            nbytes = (n + 7) // 8
            view, base = e.payload(2 * nbytes + 16)
            args, size, hard_at, soft_at = affinity_args(shape, e, vcpu, n, True, hard_set is not None,
                                                         soft_set is not None, base)
            P = PAYLOAD_OFFSET
            # the maps Xen reads are written whole (an absent one as zeros)
            view[P:P + size] = cpumap_bytes(hard_set, nbytes) + bytes(8) + cpumap_bytes(soft_set, nbytes) + bytes(8)
            e(req, domid, *args)
        # setvcpuaffinity writes back the effective maps; read them fresh.
        return read_affinity(e, domid, vcpu, n)

    return set_vcpu_affinity


# -- scheduler ---------------------------------------------------------------------------------

def _sched_member(e: Engine, sched_name: str) -> str:
    if sched_name not in _SCHED_GET:
        raise NotSupported(_errno.EOPNOTSUPP,
                           f"scheduler parameters: {sched_name!r} is not supported ({', '.join(_SCHED_GET)} are)")
    return sched_name


def get_sched_params(e: Engine, domid: int, sched_id: int) -> SchedParams:
    """Weight and cap of a domain under scheduler ``sched_id`` (the domid already checked)."""
    name = _sched_member(e, SCHEDULER_NAMES.get(sched_id, f"sched-{sched_id}"))
    weight, cap = e(_SCHED_GET[name], domid, sched_id, e.families.const("XEN_DOMCTL_SCHEDOP_getinfo", "schedinfo"))
    return _new(SchedParams, (name, weight, cap))  # type: ignore[no-any-return]


@op("sched_params", reads=True)
def _sched_params(e: Engine) -> Callable[[int], SchedParams]:
    """Weight and cap under the host's scheduler (credit, credit2): ``XEN_SYSCTL_sched_id``
    (asked on every call, once the domid is known to be good) selects the scheduler's
    getinfo ``XEN_DOMCTL_scheduler_op`` (one engine frame on the device)."""
    from .host import SCHED_ID

    def getinfo(vals: Tuple[Any, ...]) -> Tuple[Request, Tuple[Any, ...], Any, Tuple[Any, ...]]:
        sid = int(vals[0])
        name = _sched_member(e, SCHEDULER_NAMES.get(sid, f"sched-{sid}"))
        return (_SCHED_GET[name], (sid, e.families.const("XEN_DOMCTL_SCHEDOP_getinfo", "schedinfo")),
                SchedParams, (name,))

    return e.selected(SCHED_ID, getinfo)


def resolve_domid(e: Engine, domid: Any) -> int:
    if domid.__class__ is int and 0 <= domid <= DOMID_MAX:
        return domid  # type: ignore[no-any-return]
    return e.resolve(domid)


def check_sched_args(weight: Optional[int], cap: Optional[int]) -> None:
    if weight is None and cap is None:
        raise ValueError("give a weight or a cap")
    if weight is not None:
        Check(0, "weight", WEIGHT_MIN, WEIGHT_MAX)(weight)
    if cap is not None:
        Check(0, "cap", CAP_MIN, CAP_MAX)(cap)


@op("set_sched_params", reads=False)
def _set_sched_params(e: Engine) -> Callable[..., SchedParams]:
    """Set weight and/or cap; the other keeps its value.  Returns the new parameters."""
    def set_sched_params(domid: int, weight: Optional[int] = None, cap: Optional[int] = None) -> SchedParams:
        domid = resolve_domid(e, domid)
        check_sched_args(weight, cap)
        sched_id = e.ops.sched_id()[0]
        current = get_sched_params(e, domid, sched_id)
        if cap is not None and current.cap is None:
            raise NotSupported(_errno.EOPNOTSUPP, f"{current.scheduler} on Xen {e.variant.release} has no cap")
        new_weight = current.weight if weight is None else weight
        new_cap = None if current.cap is None else current.cap if cap is None else cap
        put = e.families.const("XEN_DOMCTL_SCHEDOP_putinfo", "schedinfo")
        if new_cap is None:
            e(_SCHED_PUT[(current.scheduler, False)], domid, sched_id, put, new_weight)
        else:
            e(_SCHED_PUT[(current.scheduler, True)], domid, sched_id, put, new_weight, new_cap)
        return get_sched_params(e, domid, sched_id)

    return set_sched_params


# -- creation ----------------------------------------------------------------------------------

#: createdomain's fields the package sets (those the release has: max_vcpus from 4.12,
#: the grant and event-channel limits from 4.11/4.12, grant_opts from 4.17).
_CREATE_SEND = ("handle", "max_vcpus", "max_evtchn_port", "max_grant_frames", "max_maptrack_frames")
_CREATE_OPTIONAL = ("max_vcpus", "max_evtchn_port", "max_grant_frames", "max_maptrack_frames", "grant_opts")
#: XEN_DOMCTL_GRANT_version(1): grant table v1 (4.17+)
_GRANT_V1 = ("grant_opts", 1)
CREATEDOMAIN = Request("domctl", "createdomain", struct="xen_domctl_createdomain", domain=False, send=_CREATE_SEND,
                       fixed=(_GRANT_V1,), optional=_CREATE_OPTIONAL, read=(HEADER_DOMAIN,), reads=False)


def _arm_flags(k: Any) -> int:
    """Every Arm domain is an HVM guest with HAP (Xen on Arm refuses other flags: EINVAL)."""
    return int(k.get("XEN_DOMCTL_CDF_hvm", k.get("XEN_DOMCTL_CDF_hvm_guest", 1))) | int(k.get("XEN_DOMCTL_CDF_hap", 2))


def _gic_native(k: Any) -> int:
    return int(k.get("XEN_DOMCTL_CONFIG_GIC_NATIVE", 0))


#: On Arm: HVM+HAP, and the arch config (``arch``, ``config`` before 4.12) left to Xen,
#: explicitly: the host's own GIC version, no SPIs.
CREATEDOMAIN_ARM = Request(
    "domctl", "createdomain", struct="xen_domctl_createdomain", domain=False, send=_CREATE_SEND,
    fixed=(_GRANT_V1, ("flags", _arm_flags), ("arch.gic_version", _gic_native), ("arch.nr_spis", 0),
           ("config.gic_version", _gic_native), ("config.nr_spis", 0)),
    optional=_CREATE_OPTIONAL + ("arch.gic_version", "arch.nr_spis", "config.gic_version", "config.nr_spis"),
    read=(HEADER_DOMAIN, "arch.gic_version", "config.gic_version", "arch.clock_frequency", "config.clock_frequency"),
    reads=False)


@op("create_domain", reads=False)
def _create_domain(e: Engine) -> Callable[..., int]:
    """Create an empty, paused domain (no kernel is loaded); returns its domid.

    On x86 a PV domain.  On Arm, where every guest is an HVM guest with HAP (Xen
    refuses any other createdomain flags with EINVAL), one with those flags and the
    arch config left to Xen: the host's own GIC version, no SPIs, no TEE.  The
    max_vcpus domctl follows (it allocates the vcpus on every release; from 4.12 it
    must repeat createdomain's).  Anything failing after createdomain destroys the
    new domain: nothing half-done.  ``arch_out``, a dict, receives on Arm what Xen chose
    and wrote back: ``gic_version`` (``XEN_DOMCTL_CONFIG_GIC_V2``/``_V3``) and
    ``clock_frequency`` (the timer's, 0 when the host's device tree gives none)."""
    def create_domain(max_vcpus: int = 1, handle: Optional[UUID] = None, max_evtchn_port: int = 1023,
                      max_grant_frames: int = 32, max_maptrack_frames: int = 1024,
                      arch_out: Optional[Dict[str, int]] = None) -> int:
        Check(0, "max_vcpus", 1, MAX_VCPUS)(max_vcpus)
        Check(0, "max_evtchn_port", 0, (1 << 31) - 1)(max_evtchn_port)
        Check(0, "max_grant_frames", 1, 1 << 20)(max_grant_frames)
        Check(0, "max_maptrack_frames", 0, 1 << 20)(max_maptrack_frames)
        from uuid import UUID

        if handle is not None and not isinstance(handle, UUID):
            raise TypeError("handle must be a uuid.UUID")
        req = CREATEDOMAIN_ARM if e.variant.arch == "aarch64" else CREATEDOMAIN
        raw = bytes(16) if handle is None else handle.bytes
        lay = e.layout(req)
        view, _ = e.buffer(lay.size)
        view[lay.read_at:lay.read_at + 2] = b"\0\0"  # where the new domid lands: 0 until Xen writes it
        created = 0
        try:
            e(req, raw, max_vcpus, max_evtchn_port, max_grant_frames, max_maptrack_frames)
            got = lay.result(lay.unpack(view, lay.read_at))
            created = int(got[0])
            if arch_out is not None and len(got) == 5:
                gic, freq = got[1] if got[1] is not None else got[2], got[3] if got[3] is not None else got[4]
                arch_out.update(gic_version=int(gic or 0), clock_frequency=int(freq or 0))
            if not 0 < created < DOMID_FIRST_RESERVED:
                bad, created = created, 0
                raise DecodeError(f"createdomain returned domid {bad}")
            if e.has(MAX_VCPUS_REQ):
                e(MAX_VCPUS_REQ, created, max_vcpus)
        except BaseException:
            # Nothing half-done, whatever interrupted us (an error, KeyboardInterrupt right after the
            # hypercall returned): the reply's domid is still where Xen wrote it.
            if created == 0:
                try:
                    created = int(lay.result(lay.unpack(view, lay.read_at))[0])
                except ValueError:  # the buffer is gone (the handle closed)
                    created = 0
            if 0 < created < DOMID_FIRST_RESERVED:
                e.ops.destroy(created, UNDO_DESTROY_SECONDS)
            raise
        return created

    return create_domain


def find(infos: Sequence[DomainInfo], domid: int) -> Optional[DomainInfo]:
    for i in infos:
        if i.domid == domid:
            return i
    return None
