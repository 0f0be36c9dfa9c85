"""Host operations (sysctl): physinfo, scheduler, topology, NUMA, pcpus, console.

Topology and NUMA records take the slow path (:mod:`.records`, ``construct``
built from the generated layouts, imported on first use); pcpu records are
read with one ``struct.iter_unpack``.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import struct

from ..abi.hypercalls import SCHEDULER_NAMES, scheduler_name
from ..abi.layout import record_reader
from ..errors import DecodeError, NotSupported
from ..types import CpuTopology, NumaNode, PcpuInfo, PhysInfo
from .engine import PAYLOAD_OFFSET, Request, op

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Tuple

    from .engine import Engine

__all__ = ["SCHEDULER_NAMES", "PHYSCAP_NAMES", "physinfo_from"]

#: XEN_SYSCTL_PHYSCAP_* bit -> virsh/xl word.
PHYSCAP_NAMES = ((0, "hvm"), (1, "pv"), (2, "directio"), (3, "hap"), (4, "shadow"), (5, "iommu_hap_pt_share"),
                 (6, "vmtrace"), (7, "vpmu"), (8, "gnttab-v1"), (9, "gnttab-v2"))

INVALID_TOPOLOGY_ID = 0xFFFFFFFF  # XEN_INVALID_{CORE,SOCKET,NODE}_ID (~0U)
INVALID_MEM_SZ = 0xFFFFFFFFFFFFFFFF

#: Upper bounds used to size buffers from what physinfo says.
MAX_CPUS = 16384
MAX_NODES = 1024
#: Console ring bytes fetched per readconsole call.
CONSOLE_CHUNK = 16384
#: Most console bytes one read_console() accepts (far beyond any Xen console ring).
MAX_CONSOLE_BYTES = 64 << 20

_PHYSINFO_FIELDS = (
    "threads_per_core", "cores_per_socket", "nr_cpus", "max_cpu_id", "nr_nodes", "max_node_id", "cpu_khz",
    "capabilities", "total_pages", "free_pages", "scrub_pages", "outstanding_pages", "max_mfn", "sockets_per_node",
    "hw_cap",
)

# -- the requests ---------------------------------------------------------------------------------

PHYSINFO = Request("sysctl", "physinfo", struct="xen_sysctl_physinfo", read=_PHYSINFO_FIELDS, reads=True)
SCHED_ID = Request("sysctl", "sched_id", struct="xen_sysctl_sched_id", read=("sched_id",), reads=True)
CPUTOPOINFO = Request("sysctl", "cputopoinfo", struct="xen_sysctl_cputopoinfo", send=("num_cpus", "cputopo"),
                      pointers=("cputopo",), read=("num_cpus",), reads=True)
TOPOLOGYINFO = Request("sysctl", "topologyinfo", struct="xen_sysctl_topologyinfo",
                       send=("max_cpu_index", "cpu_to_core", "cpu_to_socket", "cpu_to_node"),
                       pointers=("cpu_to_core", "cpu_to_socket", "cpu_to_node"), read=("max_cpu_index",), reads=True)
NUMAINFO = Request("sysctl", "numainfo", struct="xen_sysctl_numainfo", send=("num_nodes", "meminfo", "distance"),
                   pointers=("meminfo", "distance"), read=("num_nodes",), reads=True)
#: before Xen 4.6
NUMAINFO_ARRAYS = Request("sysctl", "numainfo", struct="xen_sysctl_numainfo",
                          send=("max_node_index", "node_to_memsize", "node_to_memfree", "node_to_node_distance"),
                          pointers=("node_to_memsize", "node_to_memfree", "node_to_node_distance"),
                          read=("max_node_index",), reads=True)
GETCPUINFO = Request("sysctl", "getcpuinfo", struct="xen_sysctl_getcpuinfo", send=("max_cpus", "info"),
                     pointers=("info",), read=("nr_cpus",), reads=True)
READCONSOLE = Request("sysctl", "readconsole", struct="xen_sysctl_readconsole",
                      send=("clear", "incremental", "index", "buffer", "count"), pointers=("buffer",),
                      read=("count", "index"), reads=True)
#: before Xen 3.2 (no index): one read
READCONSOLE_WHOLE = Request("sysctl", "readconsole", struct="xen_sysctl_readconsole", send=("clear", "buffer", "count"),
                            pointers=("buffer",), read=("count",), reads=True)


# -- physinfo and the scheduler ---------------------------------------------------------------------

def physinfo_from(vals: Tuple[Any, ...]) -> PhysInfo:
    """A PhysInfo from physinfo's fields (in ``_PHYSINFO_FIELDS``' order, None where absent)."""
    (threads, cores, nr_cpus, max_cpu_id, nr_nodes, max_node_id, cpu_khz, caps, total, free, scrub,
     outstanding, max_mfn, sockets_per_node, hw_cap) = vals
    caps = caps or 0
    threads = threads or 0
    cores = cores or 0
    nr_cpus = nr_cpus or 0
    if nr_cpus == 0:  # Xen 3.0.x: derived from the topology counts
        nr_cpus = threads * cores * (sockets_per_node or 1) * (nr_nodes or 1)
    nr_nodes = nr_nodes or 1
    if max_cpu_id is None:
        max_cpu_id = nr_cpus - 1
    if not 0 <= max_cpu_id < MAX_CPUS or nr_cpus > max_cpu_id + 1:
        raise DecodeError(f"physinfo: nr_cpus {nr_cpus} / max_cpu_id {max_cpu_id} make no sense")
    # PhysInfo's fields in its order (tuple.__new__: no keyword parsing on every call)
    return _new(PhysInfo, (  # type: ignore[no-any-return]
        threads, cores, nr_cpus, max_cpu_id, nr_nodes,
        (nr_nodes - 1 if max_node_id is None else max_node_id) or 0,
        cpu_khz or 0, caps, total or 0, free or 0,
        scrub or 0,  # not in the dom0_op era's physinfo
        outstanding, max_mfn, _hw_cap(hw_cap), _virt_caps(caps)))


_new = tuple.__new__
_hw_caps: Dict[Optional[bytes], Tuple[int, ...]] = {None: ()}


def _hw_cap(raw: Optional[bytes]) -> Tuple[int, ...]:
    """physinfo's uint32_t hw_cap[] (the same bytes every call: kept)."""
    if raw is None:
        return ()
    got = _hw_caps.get(raw)
    if got is None:
        got = _hw_caps[raw] = struct.unpack(f"<{len(raw) // 4}I", raw)
    return got


_caps_cache: Dict[int, Tuple[str, ...]] = {}


def _virt_caps(caps: int) -> Tuple[str, ...]:
    got = _caps_cache.get(caps)
    if got is None:
        got = _caps_cache[caps] = tuple(name for bit, name in PHYSCAP_NAMES if caps >> bit & 1)
    return got


@op("physinfo", reads=True)
def _physinfo(e: Engine) -> Callable[[], PhysInfo]:
    """``XEN_SYSCTL_physinfo`` (the runner itself, its fields made a PhysInfo)."""
    pick = e.layout(PHYSINFO).pick
    every = pick is None or all(pick[i] is not None for i in range(11))  # threads_per_core .. scrub_pages
    return e.runner(PHYSINFO, convert=_physinfo_read if every else physinfo_from)  # type: ignore[no-any-return]


def _physinfo_read(vals: Tuple[Any, ...]) -> PhysInfo:
    """:func:`physinfo_from` for a release whose physinfo has every field up to scrub_pages (Xen 3.3
    on): the fields as read, the capabilities decoded once; anything unusual the general way."""
    nr_cpus, max_cpu_id = vals[2], vals[3]
    hw, virt = _hw_caps.get(vals[14]), _caps_cache.get(vals[7])
    if hw is None or virt is None or not nr_cpus or not vals[4] or not 0 <= max_cpu_id < MAX_CPUS \
            or nr_cpus > max_cpu_id + 1:
        return physinfo_from(vals)
    return _new(PhysInfo, vals[:13] + (hw, virt))  # type: ignore[no-any-return]


@op("sched_id", reads=True)
def _sched_id(e: Engine) -> Callable[[], Tuple[int, str]]:
    """(XEN_SCHEDULER_* id, name) of the scheduler of cpupool 0."""
    run = e.runner(SCHED_ID)

    def sched_id() -> Tuple[int, str]:
        sid = int(run()[0])
        return sid, scheduler_name(sid)

    return sched_id


# -- topology, NUMA, pcpus ----------------------------------------------------------------------

def _kib(nbytes: int) -> Optional[int]:
    """A node's memory in KiB; None for XEN_INVALID_MEM_SZ (a node without memory info)."""
    return None if nbytes == INVALID_MEM_SZ else int(nbytes) // 1024


def _topo(v: int) -> Optional[int]:
    return None if v == INVALID_TOPOLOGY_ID else v


@op("cpu_topology", reads=True)
def _cpu_topology(e: Engine) -> Callable[[], List[CpuTopology]]:
    """core/socket/node of every pcpu (cputopoinfo; topologyinfo before 4.6)."""
    fam = e.families

    def cpu_topology() -> List[CpuTopology]:
        n = e.handle.nr_cpus()
        if e.has(CPUTOPOINFO):
            rec_cls = fam.struct("xen_sysctl_cputopo", "cpu topology")
            size = ctypes.sizeof(rec_cls)
            view, at = e.payload(n * size)
            got = int(e(CPUTOPOINFO, n, at)[0])
            if got > n:
                raise DecodeError(f"cputopoinfo: {got} cpus returned for {n} asked")
            from . import records

            rows = records.records(rec_cls, ("core", "socket", "node"), view, PAYLOAD_OFFSET, got)
            return [CpuTopology(i, *(_topo(v) for v in row)) for i, row in enumerate(rows)]
        if e.has(TOPOLOGYINFO):
            size = 4 * n
            view, at = e.payload(3 * size)
            got = int(e(TOPOLOGYINFO, n - 1, at, at + size, at + 2 * size)[0]) + 1
            if got > n:
                raise DecodeError(f"topologyinfo: {got} cpus returned for {n} asked")
            arr = struct.unpack_from(f"<{3 * n}I", view, PAYLOAD_OFFSET)
            return [CpuTopology(i, _topo(arr[i]), _topo(arr[n + i]), _topo(arr[2 * n + i])) for i in range(got)]
        raise NotSupported(_errno.ENOSYS, f"cpu topology: Xen {e.variant.release} has no topology sysctl")

    return cpu_topology


@op("numa_info", reads=True)
def _numa_info(e: Engine) -> Callable[[], List[NumaNode]]:
    """Memory and distances of every NUMA node (numainfo; the old layout before 4.6)."""
    fam = e.families

    def numa_info() -> List[NumaNode]:
        n = e.ops.physinfo().max_node_id + 1
        if not 0 < n <= MAX_NODES:
            raise DecodeError(f"numa_info: {n} nodes is not plausible")
        if e.has(NUMAINFO):
            mem_cls = fam.struct("xen_sysctl_meminfo", "numa info")
            mem_size = ctypes.sizeof(mem_cls)
            dist_at = n * mem_size
            view, at = e.payload(n * mem_size + 4 * n * n)
            got = int(e(NUMAINFO, n, at, at + dist_at)[0])
            if got > n:
                raise DecodeError(f"numainfo: {got} nodes returned for {n} asked")
            from . import records

            mems = records.records(mem_cls, ("memsize", "memfree"), view, PAYLOAD_OFFSET, got)
            # Xen lays the distance matrix out with rows as long as the nodes it answered.
            dist = struct.unpack_from(f"<{got * got}I", view, PAYLOAD_OFFSET + dist_at)
            return [NumaNode(i, _kib(mems[i][0]), _kib(mems[i][1]), tuple(dist[i * got:(i + 1) * got]))
                    for i in range(got)]
        if e.has(NUMAINFO_ARRAYS):
            view, at = e.payload(16 * n + 4 * n * n)
            got = int(e(NUMAINFO_ARRAYS, n - 1, at, at + 8 * n, at + 16 * n)[0]) + 1
            if got > n:
                raise DecodeError(f"numainfo: {got} nodes returned for {n} asked")
            sizes = struct.unpack_from(f"<{n}Q", view, PAYLOAD_OFFSET)
            frees = struct.unpack_from(f"<{n}Q", view, PAYLOAD_OFFSET + 8 * n)
            # Rows as long as the nodes answered (Xen < 4.6 returns the last online node's index).
            dist = struct.unpack_from(f"<{got * got}I", view, PAYLOAD_OFFSET + 16 * n)
            return [NumaNode(i, _kib(sizes[i]), _kib(frees[i]), tuple(dist[i * got:(i + 1) * got]))
                    for i in range(got)]
        raise NotSupported(_errno.ENOSYS, f"numa info: Xen {e.variant.release} has no numainfo sysctl")

    return numa_info


@op("pcpu_info", reads=True)
def _pcpu_info(e: Engine) -> Callable[[], List[PcpuInfo]]:
    """Idle time (ns) of every pcpu (``XEN_SYSCTL_getcpuinfo``; the exporter's every
    scrape): the records read with one ``iter_unpack``."""
    fam = e.families
    new = tuple.__new__

    def pcpu_info() -> List[PcpuInfo]:
        rec_cls = fam.struct("xen_sysctl_cpuinfo", "pcpu info")
        run = e.runner(GETCPUINFO)
        reader, _index = fam.memo("cpuinfo", lambda: record_reader(rec_cls, ("idletime",)))
        size = ctypes.sizeof(rec_cls)
        n = e.handle.nr_cpus()
        view, at = e.payload(n * size)
        got = int(run(n, at)[0])
        if got > n:
            raise DecodeError(f"getcpuinfo: {got} cpus returned for {n} asked")
        P = PAYLOAD_OFFSET
        return [new(PcpuInfo, (i, r[0])) for i, r in enumerate(reader.iter_unpack(view[P:P + got * size]))]

    return pcpu_info


# -- the console ring -----------------------------------------------------------------------------

@op("read_console", reads=True)
def _read_console(e: Engine) -> Callable[..., Tuple[bytes, Optional[int]]]:
    """The console ring in CONSOLE_CHUNK pieces: ``read_console(clear, index)`` -> (bytes,
    next index).  With ``index`` (from the previous call) only what is new since then comes
    back (Xen's incremental mode); ``clear`` empties the ring after reading (refused on a
    read-only handle)."""
    def read_console(clear: bool = False, index: Optional[int] = None) -> Tuple[bytes, Optional[int]]:
        if clear and e.read_only:
            from ..errors import ReadOnlyError

            raise ReadOnlyError(_errno.EPERM, "read_console(clear=True): refused, the handle is read-only")
        with_index = e.has(READCONSOLE)
        out = bytearray()
        incremental = index is not None
        idx = index or 0
        view, at = e.payload(CONSOLE_CHUNK)
        P = PAYLOAD_OFFSET
        while True:
            if with_index:
                count, new_idx = e(READCONSOLE, 1 if clear else 0, 1 if (incremental or out) else 0, idx, at,
                                   CONSOLE_CHUNK)
            else:
                count, new_idx = e(READCONSOLE_WHOLE, 1 if clear else 0, at, CONSOLE_CHUNK)[0], None
            count = int(count)
            if count > CONSOLE_CHUNK:
                raise DecodeError(f"readconsole: {count} bytes returned for a {CONSOLE_CHUNK}-byte buffer")
            out += view[P:P + count]
            if len(out) > MAX_CONSOLE_BYTES:
                raise DecodeError(f"readconsole: more than {MAX_CONSOLE_BYTES} bytes, beyond any console ring")
            if new_idx is None:
                return bytes(out), None
            new_idx = int(new_idx)
            if count < CONSOLE_CHUNK or new_idx == idx:
                return bytes(out), new_idx
            idx = new_idx
            clear = False

    return read_console
