"""Host operations (sysctl): physinfo, scheduler, topology, NUMA, pcpus, console.

Topology, NUMA and pcpu records take the slow path (:mod:`._slow`,
``construct`` built from the generated layouts, imported on first use); on
the privcmd device itself pcpu_info's plan reads them with one
``struct.iter_unpack`` (:mod:`._fast`).
"""

from __future__ import annotations

import ctypes
import errno as _errno
import struct

from ..abi.layout import fields, record_reader
from ..errors import DecodeError, NotSupported
from ..types import CpuTopology, NumaNode, PcpuInfo, PhysInfo
from .wire import PAYLOAD_OFFSET

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, FrozenSet, List, Optional, Tuple, TypeVar

    from ..transport.privcmd import Transport
    from .wire import Wire

    _F = TypeVar("_F", bound=Callable[..., Any])


def _cache(func: _F) -> _F:
    """``functools.cache`` for one-argument functions, without importing functools."""
    memo: Dict[Any, Any] = {}

    def cached(arg: Any) -> Any:
        try:
            return memo[arg]
        except KeyError:
            return memo.setdefault(arg, func(arg))

    cached.__doc__ = func.__doc__
    return cached  # type: ignore[return-value]

#: XEN_SCHEDULER_* ids (the same in every release that has them; 0 is SCHED_BVT of the dom0_op era).
SCHEDULER_NAMES = {0: "bvt", 4: "sedf", 5: "credit", 6: "credit2", 7: "arinc653", 8: "rtds", 9: "null"}

#: XEN_SYSCTL_PHYSCAP_* bit -> virsh/xl word.
PHYSCAP_NAMES = ((0, "hvm"), (1, "pv"), (2, "directio"), (3, "hap"), (4, "shadow"), (5, "iommu_hap_pt_share"),
                 (6, "vmtrace"), (7, "vpmu"), (8, "gnttab-v1"), (9, "gnttab-v2"))

INVALID_TOPOLOGY_ID = 0xFFFFFFFF  # XEN_INVALID_{CORE,SOCKET,NODE}_ID (~0U)
INVALID_MEM_SZ = 0xFFFFFFFFFFFFFFFF


def _kib(nbytes: int) -> Optional[int]:
    """A node's memory in KiB; None for XEN_INVALID_MEM_SZ (a node without memory info)."""
    return None if nbytes == INVALID_MEM_SZ else int(nbytes) // 1024

#: Upper bounds used to size buffers from what physinfo says.
MAX_CPUS = 16384
MAX_NODES = 1024

#: Console ring bytes fetched per readconsole call.
CONSOLE_CHUNK = 16384
#: Most console bytes one read_console() accepts (far beyond any Xen console ring).
MAX_CONSOLE_BYTES = 64 << 20


@_cache
def _names(cls: type) -> FrozenSet[str]:
    return frozenset(f[0] for f in getattr(cls, "_fields_", ()))


def _get(obj: Any, name: str, default: Any = None) -> Any:
    return getattr(obj, name) if name in _names(type(obj)) else default  # type: ignore[arg-type]


_PHYSINFO_FIELDS = (
    "threads_per_core", "cores_per_socket", "nr_cpus", "max_cpu_id", "nr_nodes", "max_node_id", "cpu_khz",
    "capabilities", "total_pages", "free_pages", "scrub_pages", "outstanding_pages", "max_mfn", "sockets_per_node",
)


@_cache
def _physinfo_reader(cls: type) -> Tuple[struct.Struct, Dict[str, Optional[int]], int, int]:
    """One unpack for physinfo's scalars (those this release has), and where hw_cap is."""
    st, index = record_reader(cls, _PHYSINFO_FIELDS)
    hw_off, hw_type = fields(cls)["hw_cap"]
    return st, dict(zip(_PHYSINFO_FIELDS, index)), hw_off, ctypes.sizeof(hw_type) // 4  # uint32_t hw_cap[N]


def physinfo(w: Wire, t: Transport) -> PhysInfo:
    buf, req = w.sysctl(t, "physinfo")
    w.issue_sysctl(t, buf, "physinfo")
    p = req.u.physinfo
    st, index, hw_off, hw_n = _physinfo_reader(type(p))  # type: ignore[arg-type]
    at = ctypes.addressof(p) - buf.address
    vals = st.unpack_from(buf.view, at)

    def get(name: str, default: Optional[int] = None) -> Optional[int]:
        i = index[name]
        return default if i is None else int(vals[i])

    caps = get("capabilities", 0) or 0
    threads = get("threads_per_core", 0) or 0
    cores = get("cores_per_socket", 0) or 0
    nr_cpus = get("nr_cpus", 0) or 0
    if nr_cpus == 0:  # Xen 3.0.x: derived from the topology counts
        nr_cpus = threads * cores * (get("sockets_per_node", 1) or 1) * (get("nr_nodes", 1) or 1)
    max_cpu_id = get("max_cpu_id", nr_cpus - 1)
    nr_nodes = get("nr_nodes", 1) or 1
    info = PhysInfo(
        threads_per_core=threads,
        cores_per_socket=cores,
        nr_cpus=nr_cpus,
        max_cpu_id=nr_cpus - 1 if max_cpu_id is None else max_cpu_id,
        nr_nodes=nr_nodes,
        max_node_id=get("max_node_id", nr_nodes - 1) or 0,
        cpu_khz=get("cpu_khz", 0) or 0,
        capabilities=caps,
        total_pages=get("total_pages", 0) or 0,
        free_pages=get("free_pages", 0) or 0,
        scrub_pages=get("scrub_pages", 0) or 0,  # not in the dom0_op era's physinfo
        outstanding_pages=get("outstanding_pages"),
        max_mfn=get("max_mfn"),
        hw_cap=struct.unpack_from(f"<{hw_n}I", buf.view, at + hw_off),
        virt_caps=tuple(name for bit, name in PHYSCAP_NAMES if caps >> bit & 1),
    )
    if not 0 <= info.max_cpu_id < MAX_CPUS or info.nr_cpus > info.max_cpu_id + 1:
        raise DecodeError(f"physinfo: nr_cpus {info.nr_cpus} / max_cpu_id {info.max_cpu_id} make no sense")
    return info


def _struct(w: Wire, name: str, what: str) -> Any:
    cls = w.variant.structs.get(name)
    if cls is None:
        raise NotSupported(_errno.ENOSYS, f"{what}: Xen {w.variant.release} has no {name}")
    return cls


def _opt_int(v: Any) -> Optional[int]:
    return None if v is None else int(v)


def sched_id(w: Wire, t: Transport) -> Tuple[int, str]:
    """(XEN_SCHEDULER_* id, name) of the scheduler of cpupool 0."""
    buf, req = w.sysctl(t, "sched_id")
    w.issue_sysctl(t, buf, "sched_id")
    sid = int(req.u.sched_id.sched_id)
    return sid, SCHEDULER_NAMES.get(sid, f"sched-{sid}")


def cpu_topology(w: Wire, t: Transport, max_cpu_id: int) -> List[CpuTopology]:
    """core/socket/node of every pcpu (cputopoinfo; topologyinfo before 4.6)."""
    n = max_cpu_id + 1
    if w.has("xen_sysctl_cputopoinfo"):
        rec_cls = _struct(w, "xen_sysctl_cputopo", "cpu topology")
        size = ctypes.sizeof(rec_cls)
        buf, req = w.sysctl(t, "cputopoinfo", n * size)
        req.u.cputopoinfo.num_cpus = n
        req.u.cputopoinfo.cputopo = buf.address + PAYLOAD_OFFSET
        w.issue_sysctl(t, buf, "cputopoinfo")
        got = int(req.u.cputopoinfo.num_cpus)
        if got > n:
            raise DecodeError(f"cputopoinfo: {got} cpus returned for {n} asked")
        from . import records as _slow

        rows = _slow.records(rec_cls, ("core", "socket", "node"), buf.view, PAYLOAD_OFFSET, got)
        return [CpuTopology(i, *(None if v == INVALID_TOPOLOGY_ID else v for v in row)) for i, row in enumerate(rows)]
    if w.has("xen_sysctl_topologyinfo"):
        size = 4 * n
        buf, req = w.sysctl(t, "topologyinfo", 3 * size)
        ti = req.u.topologyinfo
        ti.max_cpu_index = n - 1
        base = buf.address + PAYLOAD_OFFSET
        ti.cpu_to_core, ti.cpu_to_socket, ti.cpu_to_node = base, base + size, base + 2 * size
        w.issue_sysctl(t, buf, "topologyinfo")
        got = int(ti.max_cpu_index) + 1
        if got > n:
            raise DecodeError(f"topologyinfo: {got} cpus returned for {n} asked")
        arr = struct.unpack_from(f"<{3 * n}I", buf.view, PAYLOAD_OFFSET)
        return [
            CpuTopology(i, *(None if v == INVALID_TOPOLOGY_ID else v for v in (arr[i], arr[n + i], arr[2 * n + i])))
            for i in range(got)
        ]
    raise NotSupported(_errno.ENOSYS, f"cpu topology: Xen {w.variant.release} has no topology sysctl")


def numa_info(w: Wire, t: Transport, max_node_id: int) -> List[NumaNode]:
    """Memory and distances of every NUMA node (numainfo; old layout before 4.6)."""
    n = max_node_id + 1
    if not 0 < n <= MAX_NODES:
        raise DecodeError(f"numa_info: {n} nodes is not plausible")
    if w.has("xen_sysctl_numainfo", "meminfo"):
        mem_cls = _struct(w, "xen_sysctl_meminfo", "numa info")
        mem_size = ctypes.sizeof(mem_cls)
        dist_at = PAYLOAD_OFFSET + n * mem_size
        buf, req = w.sysctl(t, "numainfo", n * mem_size + 4 * n * n)
        ni = req.u.numainfo
        ni.num_nodes = n
        ni.meminfo = buf.address + PAYLOAD_OFFSET
        ni.distance = buf.address + dist_at
        w.issue_sysctl(t, buf, "numainfo")
        got = int(ni.num_nodes)
        if got > n:
            raise DecodeError(f"numainfo: {got} nodes returned for {n} asked")
        from . import records as _slow

        mems = _slow.records(mem_cls, ("memsize", "memfree"), buf.view, PAYLOAD_OFFSET, got)
        # Xen lays the distance matrix out with rows as long as the nodes it answered.
        dist = struct.unpack_from(f"<{got * got}I", buf.view, dist_at)
        return [NumaNode(i, _kib(mems[i][0]), _kib(mems[i][1]), tuple(dist[i * got : (i + 1) * got])) for i in range(got)]
    if w.has("xen_sysctl_numainfo", "node_to_memsize"):
        buf, req = w.sysctl(t, "numainfo", 16 * n + 4 * n * n)
        ni = req.u.numainfo
        ni.max_node_index = n - 1
        base = buf.address + PAYLOAD_OFFSET
        ni.node_to_memsize, ni.node_to_memfree, ni.node_to_node_distance = base, base + 8 * n, base + 16 * n
        w.issue_sysctl(t, buf, "numainfo")
        got = int(ni.max_node_index) + 1
        if got > n:
            raise DecodeError(f"numainfo: {got} nodes returned for {n} asked")
        sizes = struct.unpack_from(f"<{n}Q", buf.view, PAYLOAD_OFFSET)
        frees = struct.unpack_from(f"<{n}Q", buf.view, PAYLOAD_OFFSET + 8 * n)
        # Rows as long as the nodes answered (Xen < 4.6 returns the last online node's index).
        dist = struct.unpack_from(f"<{got * got}I", buf.view, PAYLOAD_OFFSET + 16 * n)
        return [NumaNode(i, _kib(sizes[i]), _kib(frees[i]), tuple(dist[i * got : (i + 1) * got])) for i in range(got)]
    raise NotSupported(_errno.ENOSYS, f"numa info: Xen {w.variant.release} has no numainfo sysctl")


def pcpu_info(w: Wire, t: Transport, max_cpu_id: int) -> List[PcpuInfo]:
    """Idle time (ns) of every pcpu (``XEN_SYSCTL_getcpuinfo``)."""
    n = max_cpu_id + 1
    rec_cls = _struct(w, "xen_sysctl_cpuinfo", "pcpu info")
    buf, req = w.sysctl(t, "getcpuinfo", ctypes.sizeof(rec_cls) * n)
    gi = req.u.getcpuinfo
    gi.max_cpus = n
    gi.info = buf.address + PAYLOAD_OFFSET
    w.issue_sysctl(t, buf, "getcpuinfo")
    got = int(gi.nr_cpus)
    if got > n:
        raise DecodeError(f"getcpuinfo: {got} cpus returned for {n} asked")
    from . import records as _slow

    rows = _slow.records(rec_cls, ("idletime",), buf.view, PAYLOAD_OFFSET, got)
    return [PcpuInfo(i, row[0]) for i, row in enumerate(rows)]


def read_console(w: Wire, t: Transport, clear: bool = False, index: Optional[int] = None) -> Tuple[bytes, Optional[int]]:
    """The console ring.  With ``index`` (from the previous call) only what is
    new since then comes back (Xen's incremental mode).  Returns (bytes, next index).

    ``clear`` empties the ring after reading.
    """
    out = bytearray()
    incremental = index is not None
    idx = index or 0
    rc_has_index = w.has("xen_sysctl_readconsole", "incremental")
    while True:
        buf, req = w.sysctl(t, "readconsole", CONSOLE_CHUNK)
        rc = req.u.readconsole
        rc.clear = 1 if clear else 0
        if rc_has_index:
            rc.incremental = 1 if (incremental or out) else 0
            rc.index = idx
        rc.buffer = buf.address + PAYLOAD_OFFSET
        rc.count = CONSOLE_CHUNK
        w.issue_sysctl(t, buf, "readconsole")
        count = int(rc.count)
        if count > CONSOLE_CHUNK:
            raise DecodeError(f"readconsole: {count} bytes returned for a {CONSOLE_CHUNK}-byte buffer")
        out += buf.view[PAYLOAD_OFFSET : PAYLOAD_OFFSET + count]
        if len(out) > MAX_CONSOLE_BYTES:
            raise DecodeError(f"readconsole: more than {MAX_CONSOLE_BYTES} bytes, beyond any console ring")
        if not rc_has_index:
            return bytes(out), None
        new_idx = int(rc.index)
        if count < CONSOLE_CHUNK or new_idx == idx:
            return bytes(out), new_idx
        idx = new_idx
        clear = False

