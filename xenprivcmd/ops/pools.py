"""cpupools (``XEN_SYSCTL_cpupool_op``) and the memory-sharing counters ``xl info`` shows.

``XEN_SYSCTL_CPUPOOL_OP_INFO`` answers the first pool whose id is >= the one
asked (``ENOENT`` past the last), so the pools are listed by asking again
from the id after each answer; ``XEN_SYSCTL_CPUPOOL_OP_FREEINFO`` gives the
cpus in no pool.  A pool's name is the toolstack's, in xenstore
(``/local/pool/<id>/name``); pool 0 is ``Pool-0`` when none is written.

``XENMEM_get_sharing_freed_pages`` / ``XENMEM_get_sharing_shared_pages``
(memory_op 18 and 19, no argument) return page counts; a hypervisor without
memory sharing answers an error, counted as 0 as ``xl info`` shows it.
"""

from __future__ import annotations

import errno as _errno

from ..abi.hypercalls import HYPERVISOR_memory_op, XENMEM_get_sharing_freed_pages, XENMEM_get_sharing_shared_pages
from ..errors import HypercallError, NotSupported
from ..transport.privcmd import Transport
from ..types import CpuPool
from .domains import _cpumap_bytes, _cpus_from, _set_nr
from .host import SCHEDULER_NAMES
from .wire import PAYLOAD_OFFSET, Wire

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, FrozenSet, List, Optional

__all__ = ["cpupools", "free_cpus", "sharing_pages", "HYPERVISOR_memory_op", "XENMEM_get_sharing_freed_pages",
           "XENMEM_get_sharing_shared_pages"]

#: Most pools listed (Xen has no fixed limit; far beyond any real host).
MAX_POOLS = 4096


def _pool_op(w: Wire, t: Transport, op_name: str, pool_id: int, nr_cpus: int) -> Any:
    """One cpupool_op with its cpumap in the payload area; returns (reply, cpus)."""
    nbytes = _cpumap_bytes(nr_cpus)
    buf, req = w.sysctl(t, "cpupool_op", payload=nbytes + 8)
    buf.clear(nbytes + 8, PAYLOAD_OFFSET)
    c = req.u.cpupool_op
    c.op = w.const("XEN_SYSCTL_CPUPOOL_OP_" + op_name, "cpupools")
    c.cpupool_id = pool_id
    c.cpumap.bitmap = buf.address + PAYLOAD_OFFSET
    _set_nr(c.cpumap, nr_cpus)
    w.issue_sysctl(t, buf, "cpupool_op")
    cpus = _cpus_from(bytes(buf.view[PAYLOAD_OFFSET : PAYLOAD_OFFSET + nbytes]), nr_cpus)
    return c, cpus


def cpupools(w: Wire, t: Transport, nr_cpus: int, names: Optional[Dict[int, str]] = None) -> List[CpuPool]:
    """Every cpupool, by id (``xl cpupool-list``); ``names`` from xenstore where known."""
    if not w.has("xen_sysctl_cpupool_op"):
        raise NotSupported(_errno.ENOSYS, f"cpupools: Xen {w.variant.release} has no cpupool_op sysctl")
    out: List[CpuPool] = []
    pool_id = 0
    while len(out) < MAX_POOLS:
        try:
            c, cpus = _pool_op(w, t, "INFO", pool_id, nr_cpus)
        except HypercallError as exc:
            if exc.errno == _errno.ENOENT:
                break
            raise
        got = int(c.cpupool_id)
        sched_id = int(c.sched_id)
        name = (names or {}).get(got) or ("Pool-0" if got == 0 else None)
        out.append(CpuPool(got, name, sched_id, SCHEDULER_NAMES.get(sched_id, f"id {sched_id}"), cpus, int(c.n_dom)))
        pool_id = got + 1
    return out


def free_cpus(w: Wire, t: Transport, nr_cpus: int) -> FrozenSet[int]:
    """The cpus in no cpupool."""
    return frozenset(_pool_op(w, t, "FREEINFO", 0, nr_cpus)[1])


def sharing_pages(t: Transport) -> Dict[str, int]:
    """``{"freed": pages, "shared": pages}`` of memory sharing (0 where the hypervisor has none)."""
    out: Dict[str, int] = {}
    for key, cmd in (("freed", XENMEM_get_sharing_freed_pages), ("shared", XENMEM_get_sharing_shared_pages)):
        try:
            out[key] = int(t.hypercall(HYPERVISOR_memory_op, cmd, 0))
        except OSError:
            out[key] = 0
    return out
