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

from ..abi.hypercalls import XENMEM_get_sharing_freed_pages, XENMEM_get_sharing_shared_pages, scheduler_name
from ..errors import HypercallError, NotSupported
from ..types import CpuPool
from .domains import cpus_from
from .engine import PAYLOAD_OFFSET, Request, op

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, FrozenSet, List, Optional, Tuple

    from .engine import Engine

__all__ = ["MAX_POOLS", "CPUPOOL_OP", "SHARING"]

#: Most pools listed (Xen has no fixed limit; far beyond any real host).
MAX_POOLS = 4096

_POOL_READ = ("cpupool_id", "sched_id", "n_dom")
#: INFO and FREEINFO: the op, the pool asked, the cpumap (a guest handle into the payload)
CPUPOOL_OP = {nr: Request("sysctl", "cpupool_op", struct="xen_sysctl_cpupool_op",
                          send=("op", "cpupool_id", "cpumap.bitmap", f"cpumap.{nr}"), pointers=("cpumap.bitmap",),
                          read=_POOL_READ, reads=True)
              for nr in ("nr_bits", "nr_cpus")}
#: The memory-sharing page counts: memory_op with no argument, the count returned.
SHARING = {key: Request("memory_op", name, arg=number, reads=True, returns=True)
           for key, name, number in (("freed", "get_sharing_freed_pages", XENMEM_get_sharing_freed_pages),
                                     ("shared", "get_sharing_shared_pages", XENMEM_get_sharing_shared_pages))}


def _pool_op(e: Engine, op_name: str, pool_id: int, nr_cpus: int) -> Tuple[Tuple[Any, ...], FrozenSet[int]]:
    """One cpupool_op with its cpumap in the payload area: (cpupool_id, sched_id, n_dom), cpus."""
    req = next((r for r in CPUPOOL_OP.values() if e.has(r)), None)
    if req is None:
        raise NotSupported(_errno.ENOSYS, f"cpupools: Xen {e.variant.release} has no cpupool_op sysctl")
    nbytes = (nr_cpus + 7) // 8
    view, at = e.payload(nbytes + 8)
    P = PAYLOAD_OFFSET
    view[P:P + nbytes + 8] = bytes(nbytes + 8)
    got = e(req, e.families.const("XEN_SYSCTL_CPUPOOL_OP_" + op_name, "cpupools"), pool_id, at, nr_cpus)
    return got, cpus_from(bytes(view[P:P + nbytes]), nr_cpus)


@op("cpupools", reads=True)
def _cpupools(e: Engine) -> Callable[..., List[CpuPool]]:
    """Every cpupool, by id (``xl cpupool-list``); ``names`` from xenstore where known."""
    def cpupools(names: Optional[Dict[int, str]] = None) -> List[CpuPool]:
        if not any(e.has(r) for r in CPUPOOL_OP.values()):
            raise NotSupported(_errno.ENOSYS, f"cpupools: Xen {e.variant.release} has no cpupool_op sysctl")
        nr_cpus = e.handle.nr_cpus()
        out: List[CpuPool] = []
        pool_id = 0
        while len(out) < MAX_POOLS:
            try:
                (got, sched_id, n_dom), cpus = _pool_op(e, "INFO", pool_id, nr_cpus)
            except HypercallError as exc:
                if exc.errno == _errno.ENOENT:
                    break
                raise
            name = (names or {}).get(got) or ("Pool-0" if got == 0 else None)
            out.append(CpuPool(got, name, sched_id, scheduler_name(sched_id), cpus, n_dom))
            pool_id = got + 1
        return out

    return cpupools


@op("free_cpus", reads=True)
def _free_cpus(e: Engine) -> Callable[[], FrozenSet[int]]:
    """The pcpus in no cpupool (``xl info``'s free_cpus counts them)."""
    def free_cpus() -> FrozenSet[int]:
        return frozenset(_pool_op(e, "FREEINFO", 0, e.handle.nr_cpus())[1])

    return free_cpus


@op("sharing_pages", reads=True)
def _sharing_pages(e: Engine) -> Callable[[], Dict[str, int]]:
    """Memory-sharing page counts ``{"freed": n, "shared": n}`` (0 without memory sharing)."""
    def sharing_pages() -> Dict[str, int]:
        out: Dict[str, int] = {}
        for key, req in SHARING.items():
            try:
                out[key] = int(e(req)[0])
            except OSError:
                out[key] = 0
        return out

    return sharing_pages
