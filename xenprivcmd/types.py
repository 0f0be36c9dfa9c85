"""Typed, immutable results, declared in one place."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import FrozenSet, NamedTuple, Optional, Tuple
    from uuid import UUID
else:  # the same classes, without importing typing (see _ntuple)
    from ._ntuple import NamedTuple

__all__ = ["VersionInfo", "DomainInfo", "DomainState", "VcpuInfo", "VcpuAffinity", "VcpuListEntry", "SchedParams",
           "PhysInfo", "CpuTopology", "NumaNode", "PcpuInfo", "CpuPool", "WatchEvent", "XenstorePermission",
           "DomainEvent", "EvtchnStatus", "InterfaceStats", "BlockStats",
           "SHUTDOWN_REASONS", "SECTOR_BYTES"]


class VersionInfo(NamedTuple):
    """What ``XENVER_*`` says about the hypervisor.

    Fields the hypervisor does not report (an old release without the
    sub-op, a build without a build id) are ``None``.

    :major: the major version (``XENVER_version``'s high 16 bits)
    :minor: the minor version (its low 16 bits)
    :extraversion: the rest of the release, e.g. ``".7"`` or ``"-rc"`` (``XENVER_extraversion``)
    :compiler: the compiler that built the hypervisor (``XENVER_compile_info``)
    :compile_by: who built it
    :compile_domain: the builder's domain name
    :compile_date: when it was built (the build's own text)
    :capabilities: the guest types it runs, e.g. ``("xen-3.0-x86_64", "hvm-3.0-x86_64")``
    :changeset: the source revision it was built from (``XENVER_changeset``)
    :virt_start: where the hypervisor's part of a PV guest's address space starts (bytes, an address)
    :features: the ``XENFEAT_*`` bits of feature submap 0 (``XENVER_get_features``)
    :pagesize: the hypervisor's page size, in bytes
    :commandline: the hypervisor's boot command line (``None`` before Xen 3.2, or where XSM hides it)
    :build_id: the build id as hex digits (``None`` before Xen 4.7 or when built without one)
    :varbuf_ops: True when the non-truncating ``XENVER_*2`` sub-ops answered (Xen 4.20+)
    """

    major: int
    minor: int
    extraversion: str
    compiler: str
    compile_by: str
    compile_domain: str
    compile_date: str
    capabilities: Tuple[str, ...]
    changeset: str
    virt_start: int
    features: int
    pagesize: int
    commandline: Optional[str]
    build_id: Optional[str]
    #: True when the non-truncating ``XENVER_*2`` sub-ops answered.
    varbuf_ops: bool

    @property
    def release(self) -> str:
        """``"4.17.7"``-style: major.minor and the extraversion."""
        return f"{self.major}.{self.minor}{self.extraversion}"


#: DomainInfo.flags: the XEN_DOMINF_* bits of Xen 4.9 and later (domctl.h), flag name -> bit.
#: Other releases put some elsewhere (4.7/4.8: xs_domain at bit 8, hap at bit 9; the
#: dom0_op era's DOMFLAGS_*, with the pcpu in bits 8..15): ops/domains.FlagMap translates
#: each release's own bits into these.
DOMINF_BITS = (
    ("dying", 0), ("hvm_guest", 1), ("shutdown", 2), ("paused", 3), ("blocked", 4), ("running", 5),
    ("debugged", 6), ("xs_domain", 7), ("hap", 8),
)
_DYING, _HVM, _SHUTDOWN, _PAUSED, _BLOCKED, _RUNNING, _DEBUGGED, _XS_DOMAIN, _HAP = (1 << b for _n, b in DOMINF_BITS)
_SHUTDOWN_SHIFT, _SHUTDOWN_MASK = 16, 0xFF

#: XEN_INVALID_MAX_VCPU_ID: getdomaininfo's max_vcpu_id of a domain without vcpus.
INVALID_MAX_VCPU_ID = 0xFFFFFFFF

#: SHUTDOWN_* reasons (sched.h).
SHUTDOWN_REASONS = {0: "poweroff", 1: "reboot", 2: "suspend", 3: "crash", 4: "watchdog", 5: "soft_reset"}


class DomainInfo(NamedTuple):
    """One domain, as ``getdomaininfo`` reports it.

    Fields are Xen's (``tot_pages``, ``cpu_time`` in ns, ...); a field the
    running release does not have is ``None``.  Decoded views (``state``,
    ``paused``, ``memory_kib``, ``uuid``, ...) are properties computed on
    access, so listing stays cheap.

    :domid: the domain's id (0 is dom0)
    :flags: ``XEN_DOMINF_*`` bits (:data:`DOMINF_BITS`; the shutdown reason in bits 16..23)
    :tot_pages: memory the domain has now, in pages of 4 KiB (:attr:`memory_kib` in KiB)
    :max_pages: the domain's memory limit, in pages of 4 KiB (:attr:`max_memory_kib` in KiB)
    :outstanding_pages: memory claimed but not yet allocated, in pages of 4 KiB (``None`` before Xen 4.3)
    :shr_pages: memory shared with other domains (memory sharing), in pages of 4 KiB (``None`` before Xen 4.0)
    :paged_pages: memory paged out, in pages of 4 KiB (``None`` before Xen 4.2)
    :shared_info_frame: the frame number (GFN) of the domain's shared-info page
    :cpu_time: CPU time all its vcpus have used, in nanoseconds
    :nr_online_vcpus: vcpus online now
    :max_vcpu_id: the highest vcpu id (``0xFFFFFFFF`` while it has none: :attr:`vcpus` counts them)
    :ssidref: its XSM/FLASK security id
    :handle_bytes: the toolstack's 16-byte handle (:attr:`uuid` as a UUID)
    :cpupool: the id of the cpupool it runs in (``None`` before Xen 4.1)
    :name: its name from xenstore (the hypervisor knows no names): ``domains()``,
        ``domain_info()`` and ``lookup()`` read it, ``None`` where xenstore has none or is out of
        reach, and where the caller asked for no name (``domains(names=False)``,
        ``domain_info(d, name=False)``: one hypercall each)
    """

    domid: int
    flags: int
    tot_pages: int
    max_pages: int
    outstanding_pages: Optional[int]
    shr_pages: Optional[int]
    paged_pages: Optional[int]
    shared_info_frame: int
    cpu_time: int
    nr_online_vcpus: int
    max_vcpu_id: int
    ssidref: int
    handle_bytes: bytes
    cpupool: Optional[int]
    name: Optional[str] = None

    def __repr__(self) -> str:
        return (f"DomainInfo(domid={self.domid}, name={self.name!r}, state={self.state!r}, "
                f"memory_kib={self.memory_kib}, vcpus={self.vcpus}, uuid='{self.uuid}')")

    @property
    def handle(self) -> UUID:
        """The domain handle (the toolstack's UUID for it)."""
        from uuid import UUID

        return UUID(bytes=self.handle_bytes)

    @property
    def uuid_str(self) -> str:
        """``str(self.uuid)`` without loading :mod:`uuid` (which loads ``platform``
        and ``re``): one-shot listings print it for every domain."""
        h = self.handle_bytes.hex()
        if len(h) != 32:
            return str(self.uuid)  # the same ValueError as UUID(bytes=...)
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    @property
    def uuid(self) -> UUID:
        """The same as :attr:`handle`."""
        from uuid import UUID

        return UUID(bytes=self.handle_bytes)

    @property
    def dying(self) -> bool:
        return bool(self.flags & _DYING)

    @property
    def hvm(self) -> bool:
        return bool(self.flags & _HVM)

    @property
    def hap(self) -> bool:
        return bool(self.flags & _HAP)

    @property
    def shutdown(self) -> bool:
        return bool(self.flags & _SHUTDOWN)

    @property
    def paused(self) -> bool:
        return bool(self.flags & _PAUSED)

    @property
    def blocked(self) -> bool:
        return bool(self.flags & _BLOCKED)

    @property
    def running(self) -> bool:
        return bool(self.flags & _RUNNING)

    @property
    def debugged(self) -> bool:
        return bool(self.flags & _DEBUGGED)

    @property
    def shutdown_code(self) -> Optional[int]:
        return (self.flags >> _SHUTDOWN_SHIFT) & _SHUTDOWN_MASK if self.shutdown else None

    @property
    def shutdown_reason(self) -> Optional[str]:
        code = self.shutdown_code
        return None if code is None else SHUTDOWN_REASONS.get(code, f"code {code}")

    @property
    def state_letters(self) -> str:
        """``xl list``'s six state columns, e.g. ``"r-----"``."""
        f = self.flags
        crashed = self.shutdown_code == 3
        return "".join(
            (
                "r" if f & _RUNNING else "-",
                "b" if f & _BLOCKED else "-",
                "p" if f & _PAUSED else "-",
                "s" if f & _SHUTDOWN and not crashed else "-",
                "c" if crashed else "-",
                "d" if f & _DYING else "-",
            )
        )

    @property
    def state(self) -> str:
        """virsh's word for the state: running, idle, paused, in shutdown, shut off, crashed, dying."""
        f = self.flags
        if f & _DYING:
            return "dying"
        if f & _SHUTDOWN:
            return "crashed" if self.shutdown_code == 3 else "shut off"
        if f & _PAUSED:
            return "paused"
        if f & _RUNNING:
            return "running"
        if f & _BLOCKED:
            return "idle"
        return "no state"

    @property
    def memory_kib(self) -> int:
        return self.tot_pages * 4

    @property
    def max_memory_kib(self) -> int:
        return self.max_pages * 4

    @property
    def vcpus(self) -> int:
        """Number of vcpus (0 while a new domain has none: max_vcpu_id is ~0 then)."""
        return 0 if self.max_vcpu_id == INVALID_MAX_VCPU_ID else self.max_vcpu_id + 1


class DomainState(NamedTuple):
    """``XEN_DOMCTL_get_domain_state`` (Xen 4.21+, the stable domctl).

    :domid: the domain's id
    :exists: the domain exists (``STATE_EXIST``)
    :shutdown: its shutdown has finished (``STATE_SHUTDOWN``)
    :dying: it is dying (``STATE_DYING``)
    :dead: it is dead (``STATE_DEAD``)
    :control: it is a control domain (``CAP_CONTROL``)
    :hardware: it is the hardware domain (``CAP_HARDWARE``)
    :xenstore: it is the xenstore domain (``CAP_XENSTORE``)
    :unique_id: the hypervisor's unique identifier of the domain (``unique_id``)
    """

    domid: int
    exists: bool
    shutdown: bool
    dying: bool
    dead: bool
    control: bool
    hardware: bool
    xenstore: bool
    unique_id: int


class VcpuInfo(NamedTuple):
    """One vcpu (``getvcpuinfo``).

    :vcpu: the vcpu's number in its domain
    :online: it is up
    :blocked: it waits for an event
    :running: it runs on a pcpu now
    :cpu_time: CPU time it has used, in nanoseconds
    :cpu: the pcpu it runs or last ran on
    """

    vcpu: int
    online: bool
    blocked: bool
    running: bool
    cpu_time: int
    cpu: int


class VcpuListEntry(NamedTuple):
    """One row of ``xl vcpu-list``: a vcpu of a domain, with its affinities.

    ``cpu_time`` in ns; ``cpu`` the pcpu it last ran on (meaningless when
    offline); ``soft`` is ``None`` before Xen 4.5 (hard affinity only).

    :domid: the domain's id
    :name: the domain's name (``None`` where none was read)
    :vcpu: the vcpu's number in its domain
    :online: it is up
    :blocked: it waits for an event
    :running: it runs on a pcpu now
    :cpu_time: CPU time it has used, in nanoseconds
    :cpu: the pcpu it runs or last ran on (meaningless when offline)
    :hard: the pcpus it may run on (hard affinity), pcpu numbers
    :soft: the pcpus it prefers (soft affinity), ``None`` before Xen 4.5
    """

    domid: int
    name: Optional[str]
    vcpu: int
    online: bool
    blocked: bool
    running: bool
    cpu_time: int
    cpu: int
    hard: FrozenSet[int]
    soft: Optional[FrozenSet[int]]


class VcpuAffinity(NamedTuple):
    """Hard and soft affinity of one vcpu as sets of pcpu numbers (soft is None before Xen 4.5).

    :vcpu: the vcpu's number in its domain
    :hard: the pcpus it may run on
    :soft: the pcpus it prefers (``None`` before Xen 4.5)
    """

    vcpu: int
    hard: FrozenSet[int]
    soft: Optional[FrozenSet[int]]


class SchedParams(NamedTuple):
    """Credit / credit2 parameters of a domain.

    :scheduler: the scheduler's name (``credit``, ``credit2``)
    :weight: the domain's share against others' (relative, 1..65535; 256 by default)
    :cap: the most CPU it may use, in percent of one pcpu (0: no cap; ``None`` where the scheduler has none)
    """

    scheduler: str
    weight: int
    cap: Optional[int]


class PhysInfo(NamedTuple):
    """``XEN_SYSCTL_physinfo``; pages are 4 KiB.

    :threads_per_core: hardware threads per core
    :cores_per_socket: cores per socket
    :nr_cpus: physical cpus online
    :max_cpu_id: the highest physical cpu number
    :nr_nodes: NUMA nodes online
    :max_node_id: the highest NUMA node number
    :cpu_khz: the cpus' clock, in kHz
    :capabilities: ``XEN_SYSCTL_PHYSCAP_*`` bits (:attr:`virt_caps` names them)
    :total_pages: memory Xen manages, in pages of 4 KiB (:attr:`total_memory_kib` in KiB)
    :free_pages: memory free, in pages of 4 KiB (:attr:`free_memory_kib` in KiB)
    :scrub_pages: free memory not yet scrubbed, in pages of 4 KiB
    :outstanding_pages: memory claimed by domains but not yet allocated, in pages of 4 KiB (``None`` before Xen 4.3)
    :max_mfn: the highest machine frame number (``None`` before Xen 4.10)
    :hw_cap: the cpus' feature words (``uint32_t hw_cap[]``, CPUID leaves on x86)
    :virt_caps: the names of the capabilities bits: ``hvm``, ``pv``, ``hap``, ...
    """

    threads_per_core: int
    cores_per_socket: int
    nr_cpus: int
    max_cpu_id: int
    nr_nodes: int
    max_node_id: int
    cpu_khz: int
    capabilities: int
    total_pages: int
    free_pages: int
    scrub_pages: int
    outstanding_pages: Optional[int]
    max_mfn: Optional[int]
    hw_cap: Tuple[int, ...]
    virt_caps: Tuple[str, ...]

    @property
    def total_memory_kib(self) -> int:
        return self.total_pages * 4

    @property
    def free_memory_kib(self) -> int:
        return self.free_pages * 4

    @property
    def nr_sockets(self) -> int:
        per = self.threads_per_core * self.cores_per_socket
        return max(1, self.nr_cpus // per) if per else 0


class CpuTopology(NamedTuple):
    """Where one pcpu sits; None for an offline/invalid cpu.

    :cpu: the physical cpu's number
    :core: its core number
    :socket: its socket number
    :node: its NUMA node
    """

    cpu: int
    core: Optional[int]
    socket: Optional[int]
    node: Optional[int]


class NumaNode(NamedTuple):
    """One NUMA node: memory in KiB (None when Xen has no figure for it), distances to every node.

    :node: the node's number
    :memsize_kib: its memory, in KiB
    :memfree_kib: its free memory, in KiB
    :distances: its distance to each node, in node order (ACPI SLIT units: 10 is local)
    """

    node: int
    memsize_kib: Optional[int]
    memfree_kib: Optional[int]
    distances: Tuple[int, ...]


class PcpuInfo(NamedTuple):
    """One physical cpu's idle time (``XEN_SYSCTL_getcpuinfo``).

    :cpu: the physical cpu's number
    :idletime: time it has been idle since boot, in nanoseconds
    """

    cpu: int
    idletime: int


class CpuPool(NamedTuple):
    """One cpupool (``XEN_SYSCTL_CPUPOOL_OP_INFO``); ``name`` from xenstore (None when unknown).

    :pool_id: the pool's id (0 is the pool Xen boots with)
    :name: its name from xenstore (``None`` when unknown)
    :sched_id: its scheduler's ``XEN_SCHEDULER_*`` id
    :scheduler: its scheduler's name
    :cpus: the physical cpus in it
    :n_dom: domains in it
    """

    pool_id: int
    name: Optional[str]
    sched_id: int
    scheduler: str
    cpus: FrozenSet[int]
    n_dom: int


class WatchEvent(NamedTuple):
    """A xenstore watch firing (``XS_WATCH_EVENT``).

    :path: the node that changed: the watched path or a node below it (or the special path
        ``@introduceDomain`` / ``@releaseDomain`` itself)
    :token: the token the watch was registered with
    """

    path: str
    token: str


class XenstorePermission(NamedTuple):
    """One entry of a xenstore node's permissions (``XS_GET_PERMS``).  The first entry of a
    node's list names its owner, and its access is what every domain not listed gets; each
    further entry gives one domain its access.

    :domid: the domain
    :access: ``"none"``, ``"read"``, ``"write"`` or ``"both"`` (xenstore's ``n``, ``r``, ``w``, ``b``)
    """

    domid: int
    access: str

    def __str__(self) -> str:
        """The wire form, e.g. ``b0``."""
        return {"none": "n", "read": "r", "write": "w", "both": "b"}[self.access] + str(self.domid)


class DomainEvent(NamedTuple):
    """A change of a domain's life (:meth:`~xenprivcmd.Handle.events`).

    :event: ``started``, ``paused``, ``unpaused``, ``shutdown``, ``dying`` or ``destroyed``
    :domid: the domain's id
    :name: its name from xenstore (``None`` when it has none, or none was known before it went)
    :detail: for ``shutdown``, the reason: ``poweroff``, ``reboot``, ``suspend``, ``crash``,
        ``watchdog`` or ``soft_reset``; ``None`` for the other events
    :time: when the change was seen, in seconds since the epoch
    """

    event: str
    domid: int
    name: Optional[str]
    detail: Optional[str]
    time: float


class EvtchnStatus(NamedTuple):
    """The state of one event-channel port of a domain (``EVTCHNOP_status``).  The fields
    another status has no use for are ``None``.

    :domid: the domain whose port this is
    :port: the port asked about
    :status: ``closed``, ``unbound`` (waiting for ``remote_domid`` to bind it),
        ``interdomain`` (bound to ``remote_port`` of ``remote_domid``), ``pirq``, ``virq`` or ``ipi``
    :vcpu: the vcpu the port notifies
    :remote_domid: the other end's domain (unbound: the one allowed to bind it; interdomain)
    :remote_port: the other end's port (interdomain)
    :pirq: the physical IRQ (pirq)
    :virq: the virtual IRQ (virq)
    """

    domid: int
    port: int
    status: str
    vcpu: int
    remote_domid: Optional[int]
    remote_port: Optional[int]
    pirq: Optional[int]
    virq: Optional[int]


#: blkback counts sectors of 512 bytes, whatever the disk's own sector size.
SECTOR_BYTES = 512


class InterfaceStats(NamedTuple):
    """One network interface of a guest (a netback vif), counted from the guest's side.

    netback counts from dom0's side of the link; here the counters are turned
    round to the guest's view, as ``virsh domifstat`` shows them: ``rx_*`` is
    what the guest received (the vif's transmit counters), ``tx_*`` what it
    sent.  (xentop does not turn them round: its NETTX is ``rx_bytes`` here.)
    Counters run from the vif's creation and wrap only at 2**64.

    :domid: the guest's id
    :devid: the vif's device number in the guest (xenstore ``device/vif/<devid>``)
    :name: the backend interface in dom0, e.g. ``vif1.0``
    :mac: the guest's MAC address (xenstore), ``None`` where unknown
    :rx_bytes: bytes the guest received (the vif's ``tx_bytes``)
    :rx_packets: packets the guest received (the vif's ``tx_packets``)
    :rx_errs: packets to the guest that failed (the vif's ``tx_errors``)
    :rx_drop: packets to the guest dropped, e.g. its ring was full (the vif's ``tx_dropped``)
    :tx_bytes: bytes the guest sent (the vif's ``rx_bytes``)
    :tx_packets: packets the guest sent (the vif's ``rx_packets``)
    :tx_errs: packets from the guest that failed (the vif's ``rx_errors``)
    :tx_drop: packets from the guest dropped in dom0 (the vif's ``rx_dropped``)
    """

    domid: int
    devid: int
    name: str
    mac: Optional[str]
    rx_bytes: int
    rx_packets: int
    rx_errs: int
    rx_drop: int
    tx_bytes: int
    tx_packets: int
    tx_errs: int
    tx_drop: int


class BlockStats(NamedTuple):
    """One virtual disk of a guest (a blkback vbd): the requests blkback served.

    Sectors are 512 bytes whatever the disk's own sector size
    (:attr:`rd_bytes`, :attr:`wr_bytes` in bytes).  A disk served by QEMU
    (qdisk) has no such counters and is not listed.

    :domid: the guest's id
    :devid: the disk's device number (xenstore ``device/vbd/<devid>``; 51712 is ``xvda``)
    :name: the disk's name in the guest (xenstore's ``dev``, e.g. ``xvda``)
    :rd_req: read requests
    :rd_sect: sectors read, 512 bytes each (xentop's VBD_RSECT)
    :wr_req: write requests
    :wr_sect: sectors written, 512 bytes each (xentop's VBD_WSECT)
    :oo_req: times a request had to wait: blkback was out of request slots (xentop's VBD_OO)
    :f_req: flush (and barrier) requests
    :ds_req: discard requests
    """

    domid: int
    devid: int
    name: str
    rd_req: int
    rd_sect: int
    wr_req: int
    wr_sect: int
    oo_req: int
    f_req: int
    ds_req: int

    @property
    def rd_bytes(self) -> int:
        """Bytes read (``rd_sect`` x 512)."""
        return self.rd_sect * SECTOR_BYTES

    @property
    def wr_bytes(self) -> int:
        """Bytes written (``wr_sect`` x 512)."""
        return self.wr_sect * SECTOR_BYTES
