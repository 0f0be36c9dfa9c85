"""Domain operations (domctl, and sysctl getdomaininfolist for listing).

Every function validates its arguments before anything is issued: a value
that is invalid on its face raises ``ValueError``/``TypeError`` and no
hypercall leaves the process.
"""

from __future__ import annotations

import errno as _errno
import time
from operator import lt as _lt

from ..errors import DecodeError, NoSuchDomain, NotSupported, TryAgain
from ..types import DomainState, SchedParams, VcpuAffinity, VcpuInfo
from .wire import DOMID_FIRST_RESERVED, PAYLOAD_OFFSET, check_domid

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, FrozenSet, Iterable, List, Optional, Sequence, Tuple, TypeVar
    from uuid import UUID

    from ..transport.privcmd import Transport
    from ..types import DomainInfo
    from .wire import Wire

    _T = TypeVar("_T")

#: Records asked for per getdomaininfolist call (paginated by first_domain).
LIST_CHUNK = 1024

#: destroydomain: how long EAGAIN ("still tearing down") is retried.
DESTROY_RETRY_SECONDS = 30.0

#: Bounds of scheduler parameters (credit / credit2).
WEIGHT_MIN, WEIGHT_MAX = 1, 65535
CAP_MIN, CAP_MAX = 0, 65534

#: Largest memory limit accepted, in KiB (16 TiB: beyond any host Xen runs on).
MAX_MEM_KIB = 16 << 30

MAX_VCPUS = 8192


def _check_int(value: Any, what: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if not lo <= value <= hi:
        raise ValueError(f"{what} {value} is out of range {lo}..{hi}")
    return value


# -- listing --------------------------------------------------------------------

def check_listing(batch: Sequence[Any], first: int) -> None:
    """Xen lists domains in domid order: the records of one getdomaininfolist must carry
    strictly ascending domids from ``first`` on, below DOMID_FIRST_RESERVED.  Anything
    else is a reply laid out differently from what was read (a wrong record size or
    layout): :class:`DecodeError`, never garbage returned as domains."""
    if not batch:
        return
    ids = [r[0] for r in batch]  # DomainInfo's first field is the domid
    if ids[0] < first or ids[-1] >= DOMID_FIRST_RESERVED or not all(map(_lt, ids, ids[1:])):
        shown = ", ".join(map(str, ids[:8])) + (", ..." if len(ids) > 8 else "")
        raise DecodeError(f"getdomaininfolist: {len(ids)} records from domain {first} do not carry "
                          f"ascending domids ({shown}): not the layout they were read with")


def domains(w: Wire, t: Transport, chunk: int = LIST_CHUNK) -> List[DomainInfo]:
    """Every domain, in domid order, through ``XEN_SYSCTL_getdomaininfolist``.

    One reused buffer; the records are read straight out of it.  Paginated
    by ``first_domain`` so any number of domains (Xen allows 32k) is listed.
    """
    if chunk <= 0:
        raise ValueError("chunk must be positive")
    out: List[DomainInfo] = []
    first = 0
    size = w.info_size
    payload = chunk * size
    while first < DOMID_FIRST_RESERVED:
        buf, req = w.sysctl(t, "getdomaininfolist", payload)
        args = req.u.getdomaininfolist
        args.first_domain = first
        args.max_domains = chunk
        args.buffer = buf.address + PAYLOAD_OFFSET
        w.issue_sysctl(t, buf, "getdomaininfolist")
        n = args.num_domains
        if n > chunk:
            raise DecodeError(f"getdomaininfolist: {n} domains returned for {chunk} asked")
        batch = w.infos_from(buf.view, PAYLOAD_OFFSET, n)
        check_listing(batch, first)
        out += batch
        if n < chunk:
            break
        first = batch[-1].domid + 1
    return out


def domain_info(w: Wire, t: Transport, domid: int) -> DomainInfo:
    """One domain by id (``XEN_DOMCTL_getdomaininfo``).

    Before Xen 4.18 the hypercall answers with the next existing domain when
    ``domid`` does not exist; that is turned into :class:`NoSuchDomain` here,
    as 4.18+ does itself.
    """
    check_domid(domid)
    buf, req = w.domctl(t, "getdomaininfo", domid)
    w.issue_domctl(t, buf, "getdomaininfo", domid)
    info = w.info_from(buf.view, w.domctl_u)
    if info.domid != domid:
        raise NoSuchDomain(
            _errno.ESRCH, f"domctl getdomaininfo(domid={domid}): no such domain (ESRCH)",
            hypercall="domctl", subop="getdomaininfo", domid=domid,
        )
    return info


def domain_state(w: Wire, t: Transport, domid: int) -> DomainState:
    """``XEN_DOMCTL_get_domain_state`` (Xen 4.21+): the stable, versionless domctl."""
    check_domid(domid)
    w.const("XEN_DOMCTL_get_domain_state", "domain_state")
    buf, req = w.domctl(t, "get_domain_state", domid, stable=True)
    w.issue_domctl(t, buf, "get_domain_state", domid)
    s = req.u.get_domain_state
    state, caps = int(s.state), int(s.caps)
    return DomainState(
        domid=int(req.domain),
        exists=bool(state & 1), shutdown=bool(state & 2), dying=bool(state & 4), dead=bool(state & 8),
        control=bool(caps & 1), hardware=bool(caps & 2), xenstore=bool(caps & 4),
        unique_id=int(s.unique_id),
    )


# -- life cycle -----------------------------------------------------------------

def pause(w: Wire, t: Transport, domid: int) -> None:
    w.simple_domctl(t, "pausedomain", check_domid(domid))


def unpause(w: Wire, t: Transport, domid: int) -> None:
    w.simple_domctl(t, "unpausedomain", check_domid(domid))


def destroy(w: Wire, t: Transport, domid: int, timeout: float = DESTROY_RETRY_SECONDS) -> None:
    """Destroy a domain; EAGAIN (Xen <= 4.5 returns it while tearing down) is retried."""
    check_domid(domid)
    retry_while_busy(lambda: w.simple_domctl(t, "destroydomain", domid), timeout)


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


def set_max_mem(w: Wire, t: Transport, domid: int, kib: int,
                used: Optional[Callable[[int], int]] = None) -> None:
    """The hard memory limit.  With ``used`` (domid -> KiB in use now, asked once the
    arguments are good) a limit below that use is refused (:func:`refuse_below_use`)."""
    check_domid(domid)
    _check_int(kib, "memory (KiB)", 0, MAX_MEM_KIB)
    if used is not None:
        refuse_below_use(domid, kib, used(domid))

    def fill(u: Any) -> None:
        u.max_mem.max_memkb = kib

    w.simple_domctl(t, "max_mem", domid, fill)


def refuse_below_use(domid: int, kib: int, used_kib: int) -> None:
    """``ValueError`` for a memory limit below what the domain uses now."""
    if kib < used_kib:
        raise ValueError(f"a limit of {kib} KiB is below the {used_kib} KiB domain {domid} uses now"
                         " (force=True to set it anyway)")


def set_max_vcpus(w: Wire, t: Transport, domid: int, n: int) -> None:
    check_domid(domid)
    _check_int(n, "vcpu count", 1, MAX_VCPUS)
    w.const("XEN_DOMCTL_max_vcpus", "set_max_vcpus")  # fail before issuing if a release lacks it

    def fill(u: Any) -> None:
        u.max_vcpus.max = n

    w.simple_domctl(t, "max_vcpus", domid, fill)


# -- vcpus ----------------------------------------------------------------------

def vcpu_info(w: Wire, t: Transport, domid: int) -> List[VcpuInfo]:
    """Every vcpu of a domain (``XEN_DOMCTL_getvcpuinfo`` for 0..max_vcpu_id)."""
    info = domain_info(w, t, domid)
    if info.vcpus > MAX_VCPUS:
        raise DecodeError(f"getdomaininfo: max_vcpu_id {info.max_vcpu_id} of domain {domid} is beyond any Xen")
    return [one_vcpu(w, t, domid, vcpu) for vcpu in range(info.vcpus)]


def one_vcpu(w: Wire, t: Transport, domid: int, vcpu: int) -> VcpuInfo:
    def fill(u: Any) -> None:
        u.getvcpuinfo.vcpu = vcpu

    req = w.simple_domctl(t, "getvcpuinfo", domid, fill)
    r = req.u.getvcpuinfo
    return VcpuInfo(vcpu, bool(r.online), bool(r.blocked), bool(r.running), int(r.cpu_time), int(r.cpu))


def _cpumap_bytes(nr_cpus: int) -> int:
    return (nr_cpus + 7) // 8


def cpumap_bytes(cpus: Optional[Iterable[int]], nbytes: int) -> bytes:
    """A little-endian cpumap of ``nbytes`` with the bits of ``cpus`` (all zeros for None)."""
    return (0 if cpus is None else sum(1 << c for c in cpus)).to_bytes(nbytes, "little")


def _cpus_from(raw: bytes, nr_cpus: int) -> FrozenSet[int]:
    bits = int.from_bytes(raw, "little")
    return frozenset(c for c in range(nr_cpus) if bits >> c & 1)


def _check_vcpu(info: DomainInfo, vcpu: int) -> int:
    if info.vcpus == 0:
        raise ValueError(f"domain {info.domid} has no vcpus")
    return _check_int(vcpu, "vcpu", 0, info.vcpus - 1)


def _check_cpus(cpus: Iterable[int], nr_cpus: int) -> FrozenSet[int]:
    out = set()
    for c in cpus:
        out.add(_check_int(c, "cpu", 0, nr_cpus - 1))
    if not out:
        raise ValueError("a cpu map must name at least one cpu")
    return frozenset(out)


def get_vcpu_affinity(w: Wire, t: Transport, domid: int, vcpu: int, nr_cpus: Callable[[], int]) -> VcpuAffinity:
    """One vcpu's affinity; ``nr_cpus`` is asked (a hypercall, or the handle's cache) only
    once the arguments are known to be good."""
    check_domid(domid)
    _check_int(vcpu, "vcpu", 0, MAX_VCPUS - 1)
    n = nr_cpus()  # before getdomaininfo, as recordings of real dom0s have it
    _check_vcpu(domain_info(w, t, domid), vcpu)
    return _affinity(w, t, domid, vcpu, n, None, None)


def set_vcpu_affinity(
    w: Wire, t: Transport, domid: int, vcpu: int, nr_cpus_of: Callable[[], int],
    hard: Optional[Iterable[int]] = None, soft: Optional[Iterable[int]] = None,
) -> VcpuAffinity:
    """Set hard and/or soft affinity; returns what Xen then reports.  ``nr_cpus_of`` is
    asked only once the domain, the vcpu and that a map is given are known to be good."""
    check_domid(domid)
    check_affinity_request(vcpu, hard, soft)
    nr_cpus = nr_cpus_of()
    hard_set, soft_set = affinity_maps(w, nr_cpus, hard, soft)
    info = domain_info(w, t, domid)
    _check_vcpu(info, vcpu)
    return _affinity(w, t, domid, vcpu, nr_cpus, hard_set, soft_set)


def check_affinity_request(vcpu: int, hard: Optional[Iterable[int]], soft: Optional[Iterable[int]]) -> None:
    """set_vcpu_affinity's checks before anything is asked of Xen (the domid aside)."""
    _check_int(vcpu, "vcpu", 0, MAX_VCPUS - 1)
    if hard is None and soft is None:
        raise ValueError("give a hard or a soft cpu map (or both)")


def affinity_maps(
    w: Wire, nr_cpus: int, hard: Optional[Iterable[int]], soft: Optional[Iterable[int]],
) -> Tuple[Optional[FrozenSet[int]], Optional[FrozenSet[int]]]:
    """The cpu maps to set, checked against ``nr_cpus``; NotSupported for a soft map before 4.5."""
    hard_set = None if hard is None else _check_cpus(hard, nr_cpus)
    soft_set = None if soft is None else _check_cpus(soft, nr_cpus)
    if soft_set is not None and not w.has("xen_domctl_vcpuaffinity", "cpumap_soft"):
        raise NotSupported(_errno.EOPNOTSUPP, f"soft affinity: Xen {w.variant.release} has hard affinity only (before 4.5)")
    return hard_set, soft_set


def _affinity(
    w: Wire, t: Transport, domid: int, vcpu: int, nr_cpus: int,
    hard: Optional[FrozenSet[int]], soft: Optional[FrozenSet[int]],
) -> VcpuAffinity:
    setting = hard is not None or soft is not None
    subop = "setvcpuaffinity" if setting else "getvcpuaffinity"
    nbytes = _cpumap_bytes(nr_cpus)
    buf, req = w.domctl(t, subop, domid, payload=2 * nbytes + 16)
    hard_at, soft_at = PAYLOAD_OFFSET, PAYLOAD_OFFSET + nbytes + 8
    buf.clear(2 * nbytes + 16, PAYLOAD_OFFSET)
    a = req.u.vcpuaffinity
    a.vcpu = vcpu
    modern = w.has("xen_domctl_vcpuaffinity", "cpumap_soft")
    if modern:
        flags = 0
        if not setting or hard is not None:
            flags |= w.const("XEN_VCPUAFFINITY_HARD", "affinity")
        if not setting or soft is not None:
            flags |= w.const("XEN_VCPUAFFINITY_SOFT", "affinity")
        a.flags = flags
        maps: Tuple[Tuple[Any, int, Optional[FrozenSet[int]]], ...] = (
            (a.cpumap_hard, hard_at, hard), (a.cpumap_soft, soft_at, soft))
    else:
        maps = ((a.cpumap, hard_at, hard),)
    for cpumap, at, cpus in maps:
        cpumap.bitmap = buf.address + at
        _set_nr(cpumap, nr_cpus)
        if cpus is not None:
            buf.view[at : at + nbytes] = cpumap_bytes(cpus, nbytes)
    w.issue_domctl(t, buf, subop, domid)
    if setting:
        # setvcpuaffinity writes back the effective maps; read them fresh.
        return _affinity(w, t, domid, vcpu, nr_cpus, None, None)
    hard_out = _cpus_from(bytes(buf.view[hard_at : hard_at + nbytes]), nr_cpus)
    soft_out = _cpus_from(bytes(buf.view[soft_at : soft_at + nbytes]), nr_cpus) if modern else None
    return VcpuAffinity(vcpu, hard_out, soft_out)


def _set_nr(cpumap: Any, nr_cpus: int) -> None:
    names = [f[0] for f in cpumap._fields_]
    setattr(cpumap, "nr_bits" if "nr_bits" in names else "nr_cpus", nr_cpus)


# -- scheduler ------------------------------------------------------------------

SCHEDULERS = {"credit": "XEN_SCHEDULER_CREDIT", "credit2": "XEN_SCHEDULER_CREDIT2"}


def sched_params(w: Wire, t: Transport, domid: int, sched: Callable[[], Tuple[int, str]]) -> SchedParams:
    """Weight and cap under the host's scheduler; ``sched`` gives (id, name), asked once
    the domid is known to be good."""
    check_domid(domid)
    sched_id, sched_name = sched()
    return _sched_params(w, t, domid, sched_id, sched_name)


def _sched_params(w: Wire, t: Transport, domid: int, sched_id: int, sched_name: str) -> SchedParams:
    member = _sched_member(w, sched_name)

    def fill(u: Any) -> None:
        u.scheduler_op.sched_id = sched_id
        u.scheduler_op.cmd = w.const("XEN_DOMCTL_SCHEDOP_getinfo", "schedinfo")

    req = w.simple_domctl(t, "scheduler_op", domid, fill)
    p = getattr(req.u.scheduler_op.u, member)
    cap = p.cap if has_cap(p) else None
    return SchedParams(sched_name, int(p.weight), None if cap is None else int(cap))


def has_cap(p: Any) -> bool:
    return any(f[0] == "cap" for f in p._fields_)


def set_sched_params(
    w: Wire, t: Transport, domid: int, sched: Callable[[], Tuple[int, str]],
    weight: Optional[int] = None, cap: Optional[int] = None,
) -> SchedParams:
    """Set weight and/or cap; the other keeps its value.  Returns the new parameters."""
    check_sched_args(domid, weight, cap)
    sched_id, sched_name = sched()
    member = _sched_member(w, sched_name)
    current = _sched_params(w, t, domid, sched_id, sched_name)
    new_weight, new_cap = put_values(w, current, weight, cap)

    def fill(u: Any) -> None:
        op = u.scheduler_op
        op.sched_id = sched_id
        op.cmd = w.const("XEN_DOMCTL_SCHEDOP_putinfo", "schedinfo")
        p = getattr(op.u, member)
        p.weight = new_weight
        if new_cap is not None:
            p.cap = new_cap

    w.simple_domctl(t, "scheduler_op", domid, fill)
    return _sched_params(w, t, domid, sched_id, sched_name)


def put_values(w: Wire, current: SchedParams, weight: Optional[int], cap: Optional[int]) -> Tuple[int, Optional[int]]:
    """(weight, cap) to put: the other keeps its value; cap None where the scheduler has none
    (NotSupported if one was asked for)."""
    if cap is not None and current.cap is None:
        raise NotSupported(_errno.EOPNOTSUPP, f"{current.scheduler} on Xen {w.variant.release} has no cap")
    return (current.weight if weight is None else weight,
            None if current.cap is None else current.cap if cap is None else cap)


def check_sched_args(domid: int, weight: Optional[int], cap: Optional[int]) -> None:
    check_domid(domid)
    if weight is None and cap is None:
        raise ValueError("give a weight or a cap")
    if weight is not None:
        _check_int(weight, "weight", WEIGHT_MIN, WEIGHT_MAX)
    if cap is not None:
        _check_int(cap, "cap", CAP_MIN, CAP_MAX)


def _sched_member(w: Wire, sched_name: str) -> str:
    if sched_name not in SCHEDULERS:
        raise NotSupported(
            _errno.EOPNOTSUPP, f"scheduler parameters: {sched_name!r} is not supported (credit, credit2 are)"
        )
    return sched_name


# -- creation -------------------------------------------------------------------

def create_domain(
    w: Wire, t: Transport, *, max_vcpus: int = 1, handle: Optional[UUID] = None,
    max_evtchn_port: int = 1023, max_grant_frames: int = 32, max_maptrack_frames: int = 1024,
) -> int:
    """Create an empty, paused domain (no kernel is loaded).  Returns its domid.

    On x86 a PV domain.  On Arm, where every guest is an HVM guest with HAP
    (Xen refuses any other createdomain flags with EINVAL), one with those
    flags and the arch config left to Xen: the host's own GIC version
    (``XEN_DOMCTL_CONFIG_GIC_NATIVE``), no SPIs, no TEE.

    The creation parameters are laid out as the running release expects; the
    max_vcpus domctl follows (it allocates the vcpus on every release).
    """
    _check_int(max_vcpus, "max_vcpus", 1, MAX_VCPUS)
    _check_int(max_evtchn_port, "max_evtchn_port", 0, (1 << 31) - 1)
    _check_int(max_grant_frames, "max_grant_frames", 1, 1 << 20)
    _check_int(max_maptrack_frames, "max_maptrack_frames", 0, 1 << 20)
    from uuid import UUID

    if handle is not None and not isinstance(handle, UUID):
        raise TypeError("handle must be a uuid.UUID")
    cls = w.variant.structs["xen_domctl_createdomain"]
    names = {f[0] for f in cls._fields_}

    def fill(u: Any) -> None:
        c = u.createdomain
        if handle is not None:
            c.handle[:] = handle.bytes
        values = {
            "max_vcpus": max_vcpus,
            "max_evtchn_port": max_evtchn_port,
            "max_grant_frames": max_grant_frames,
            "max_maptrack_frames": max_maptrack_frames,
        }
        for name, value in values.items():
            if name in names:
                setattr(c, name, value)
        if "grant_opts" in names:
            # XEN_DOMCTL_GRANT_version(1): grant table v1 (4.17+).
            c.grant_opts = 1
        if w.variant.arch == "aarch64":
            k = w.constants
            c.flags = k.get("XEN_DOMCTL_CDF_hvm", k.get("XEN_DOMCTL_CDF_hvm_guest", 1)) | k.get(
                "XEN_DOMCTL_CDF_hap", 2
            )
            arch_name = "arch" if "arch" in names else "config" if "config" in names else None
            if arch_name is not None:
                arch = getattr(c, arch_name)
                # Explicit although zero is what they are: Xen fills in the GIC it has.
                arch.gic_version = k.get("XEN_DOMCTL_CONFIG_GIC_NATIVE", 0)
                arch.nr_spis = 0

    buf, req = w.domctl(t, "createdomain", 0)
    fill(req.u)
    try:
        w.issue_domctl(t, buf, "createdomain", 0)
        domid = int(req.domain)
        if not 0 < domid < DOMID_FIRST_RESERVED:
            raise DecodeError(f"createdomain returned domid {domid}")
        # Every release allocates the vcpus with XEN_DOMCTL_max_vcpus; from 4.12
        # it must repeat createdomain's max_vcpus.
        if "XEN_DOMCTL_max_vcpus" in w.constants:
            set_max_vcpus(w, t, domid, max_vcpus)
    except BaseException:
        # Nothing half-done, whatever interrupted us (an error, KeyboardInterrupt
        # right after the hypercall returned): the reply's domid is still in the buffer.
        created = int(req.domain) if buf.alive else 0
        if 0 < created < DOMID_FIRST_RESERVED:
            destroy(w, t, created)
        raise
    return domid


def find(infos: Sequence[DomainInfo], domid: int) -> Optional[DomainInfo]:
    for i in infos:
        if i.domid == domid:
            return i
    return None
