"""The simulated host: pcpus, NUMA nodes, memory, scheduler, console ring,
domains with vcpus, and the xenstore names the toolstack would have written.

Everything is deterministic given the seed and the clock: with the default
simulated clock, time advances by ``tick_ns`` per hypercall, so the same
sequence of calls sees the same values.  ``clock="real"`` uses
``time.monotonic_ns()`` instead.

Each domain keeps its packed ``getdomaininfo`` record (bytes, in the
release's layout) cached; every state change invalidates it, and only
domains with a running vcpu (at most one per pcpu) are repacked as time
passes, so listing 32k domains is a join and one memmove per page.
"""

from __future__ import annotations

import bisect
import random
import time
import uuid
from typing import Any, Dict, FrozenSet, Iterable, List, Optional, Tuple

from .. import abi
from ..abi.hypercalls import SCHEDULER_NAMES
from ._layout import RecordPacker, Tables

#: domids 0..0x7FEF are domains; 0x7FF0 and up are reserved (DOMID_FIRST_RESERVED).
DOMID_FIRST_RESERVED = 0x7FF0
MAX_DOMAINS = DOMID_FIRST_RESERVED
XEN_INVALID_MAX_VCPU_ID = 0xFFFFFFFF
MAX_VIRT_CPUS = 8192
PAGE_SHIFT = 12

#: p2m_ipa_bits Xen on Arm reports as every domain's gpaddr_bits (40-bit PA cores)
ARM_IPA_BITS = 40

# XEN_DOMINF_* (the same bits since 3.0.3)
DOMINF_DYING, DOMINF_HVM, DOMINF_SHUTDOWN, DOMINF_PAUSED, DOMINF_BLOCKED, DOMINF_RUNNING = (1 << i for i in range(6))

#: The schedulers the simulator runs, by name -> XEN_SCHEDULER_* id (abi.hypercalls' one table).
SCHEDULERS = {name: sid for sid, name in SCHEDULER_NAMES.items() if name in ("credit", "credit2")}
SCHED_CONST = {name: "XEN_SCHEDULER_" + name.upper() for name in SCHEDULERS}
SCHED_BANNER = {"credit": "SMP Credit Scheduler (credit)", "credit2": "SMP Credit Scheduler rev2 (credit2)",
                "sedf": "Simple EDF Scheduler (sedf)", "bvt": "Borrowed Virtual Time (bvt)"}
#: The dom0_op era (3.0.0-3.0.2) had bvt and sedf (SCHED_BVT 0, SCHED_SEDF 4; sedf the default);
#: credit arrived with 3.0.3.
DOM0_OP_SCHEDULERS = {"sedf": ("SCHED_SEDF", 4), "bvt": ("SCHED_BVT", 0)}
#: MAX_VIRT_CPUS of the dom0_op era (public/arch-x86_64.h).
DOM0_OP_MAX_VIRT_CPUS = 32
#: CPUMAP_RUNANYWHERE of Xen 3.0.0 (pincpudomain): a vcpu's cpumap until it is pinned.
CPUMAP_RUNANYWHERE = 0xFFFFFFFF

DEFAULT_WEIGHT = 256
CONRING_SIZE = 1 << 14


class Clock:
    """Nanoseconds since boot: simulated (advanced per hypercall) or real."""

    __slots__ = ("real", "tick_ns", "_sim", "_t0")

    def __init__(self, real: bool = False, tick_ns: int = 1_000_000, boot_ns: int = 3_600_000_000_000) -> None:
        self.real = real
        self.tick_ns = tick_ns
        self._sim = boot_ns
        self._t0 = time.monotonic_ns() - boot_ns

    def now(self) -> int:
        if self.real:
            return time.monotonic_ns() - self._t0
        return self._sim

    def tick(self) -> None:
        self._sim += self.tick_ns

    def advance(self, ns: int) -> None:
        """Move simulated time forward (with a real clock: no effect)."""
        if ns < 0:
            raise ValueError("time only moves forward")
        self._sim += ns


class Vcpu:
    __slots__ = ("vid", "online", "blocked", "cpu", "base", "since", "hard", "soft", "cpumap_raw")

    def __init__(self, vid: int, cpu: int, online: bool, blocked: bool, all_cpus: FrozenSet[int], now: int,
                 base: int = 0) -> None:
        self.vid = vid
        self.online = online
        self.blocked = blocked
        self.cpu = cpu
        self.base = base
        self.since = now
        self.hard = all_cpus
        self.soft = all_cpus
        #: Xen 3.0.0's pincpudomain keeps the cpumap as given (reported back by getvcpuinfo).
        self.cpumap_raw = CPUMAP_RUNANYWHERE


class Domain:
    """One domain, as the hypervisor sees it."""

    __slots__ = ("domid", "handle", "tot_pages", "max_pages", "max_vcpus", "vcpus", "pause_count", "dying",
                 "weight", "cap", "shared_info_frame", "hvm", "destroy_tries", "is_dom0",
                 "unique_id", "built", "domflags", "hap_flag", "gpaddr_bits", "pv", "shutdown_code", "_rec", "_rec_at",
                 "_running", "vifs", "disks", "boot")

    def __init__(self, domid: int, handle: bytes, tot_pages: int, max_pages: int, unique_id: int = 0) -> None:
        #: Xen 4.21+ gives every domain created since boot a unique id (get_domain_state).
        self.unique_id = unique_id
        self.domid = domid
        self.handle = handle
        self.tot_pages = tot_pages
        self.max_pages = max_pages
        self.max_vcpus = 0
        self.vcpus: List[Vcpu] = []
        self.pause_count = 0
        self.dying = False
        self.weight = DEFAULT_WEIGHT
        self.cap = 0
        self.shared_info_frame = 0x100000 + domid * 0x10
        self.hvm = False
        #: XEN_DOMINF_hap when the domain uses HAP and the release reports it (every Arm domain)
        self.hap_flag = 0
        #: getdomaininfo's gpaddr_bits; None: 48 for HVM, 0 for PV (x86)
        self.gpaddr_bits: Optional[int] = None
        self.destroy_tries = 0
        self.is_dom0 = domid == 0
        #: vcpu 0 has a context (the domain was built); createdomain's domains have none.
        self.built = True
        #: The dom0_op era: (DOMFLAGS_DYING, _SHUTDOWN, _PAUSED, _BLOCKED, _RUNNING) to report
        #: instead of XEN_DOMINF_*; None from 3.0.3.
        self.domflags: Optional[Tuple[int, int, int, int, int]] = None
        #: The guest has PV drivers: it answers control/shutdown and memory/target (sim/_store.py).
        self.pv = True
        #: SHUTDOWN_* code once the guest has shut down (XEN_DOMINF_shutdown), else None.
        self.shutdown_code: Optional[int] = None
        #: Its network interfaces (devids) and disks (names), served by dom0's netback and
        #: blkback: the toolstack's xenstore nodes and dom0's sysfs counters (sim/_backends.py).
        self.vifs: Tuple[int, ...] = ()
        self.disks: Tuple[str, ...] = ()
        self._rec: Optional[bytes] = None
        self._rec_at = -1
        self._running = False
        #: What a domain builder told Xen (sim/_build.py): "address_size", "hypercall_page",
        #: "pinned" (mfn -> level), "contexts" (vcpu -> vcpu_guest_context bytes)
        self.boot: Dict[str, Any] = {}

    # -- time -----------------------------------------------------------------
    def vcpu_running(self, v: Vcpu) -> bool:
        return v.online and not v.blocked and self.pause_count == 0 and not self.dying and self.shutdown_code is None

    def vcpu_time(self, v: Vcpu, now: int) -> int:
        return v.base + (now - v.since) if self.vcpu_running(v) else v.base

    def fold(self, now: int) -> None:
        """Account elapsed running time before a state change."""
        for v in self.vcpus:
            if self.vcpu_running(v):
                v.base += now - v.since
            v.since = now
        self._rec = None

    def changed(self) -> None:
        self._rec = None

    def flags(self) -> Tuple[int, int, int]:
        """(XEN_DOMINF flags, nr_online_vcpus, max_vcpu_id) as getdomaininfo computes them."""
        flags = DOMINF_BLOCKED
        online = 0
        max_id = XEN_INVALID_MAX_VCPU_ID
        for v in self.vcpus:
            max_id = v.vid
            if v.online:
                if not v.blocked:
                    flags &= ~DOMINF_BLOCKED
                if self.vcpu_running(v):
                    flags |= DOMINF_RUNNING
                online += 1
        flags = flags if online else 0
        if self.dying:
            flags |= DOMINF_DYING
        if self.pause_count > 0:
            flags |= DOMINF_PAUSED
        if self.hvm:
            flags |= DOMINF_HVM
        if self.shutdown_code is not None:
            flags = (flags & ~(DOMINF_RUNNING | DOMINF_BLOCKED)) | DOMINF_SHUTDOWN | self.shutdown_code << 16
        flags |= self.hap_flag
        return flags, online, max_id

    def dom0_op_flags(self) -> Tuple[int, int, int]:
        """(DOMFLAGS, nr_online_vcpus, max_vcpu_id) as the dom0_op era's getdomaininfo computes them:
        blocked unless an online vcpu is not (so also with none online), no hvm bit, no cpu bits."""
        assert self.domflags is not None
        dying, _shutdown, paused, blocked, running = self.domflags
        flags = blocked
        online = 0
        max_id = 0
        for v in self.vcpus:
            max_id = v.vid
            if v.online:
                if not v.blocked:
                    flags &= ~blocked
                if self.vcpu_running(v):
                    flags |= running
                online += 1
        if self.dying:
            flags |= dying
        if self.pause_count > 0:
            flags |= paused
        return flags, online, max_id

    def record(self, packer: RecordPacker, now: int) -> bytes:
        rec = self._rec
        if rec is not None and (not self._running or self._rec_at == now):
            return rec
        flags, online, max_id = self.flags() if self.domflags is None else self.dom0_op_flags()
        cpu_time = 0
        running = False
        for v in self.vcpus:
            cpu_time += self.vcpu_time(v, now)
            running = running or self.vcpu_running(v)
        rec = packer.pack({
            "domain": self.domid, "flags": flags, "tot_pages": self.tot_pages, "max_pages": self.max_pages,
            "shared_info_frame": self.shared_info_frame, "cpu_time": cpu_time, "nr_online_vcpus": online,
            "max_vcpu_id": max_id, "handle": self.handle, "cpupool": 0,
            "gpaddr_bits": self.gpaddr_bits if self.gpaddr_bits is not None else (48 if self.hvm else 0),
        })
        self._rec, self._rec_at, self._running = rec, now, running
        return rec


class Console:
    """Xen's console ring (``conring``): producer/consumer u32 indices."""

    __slots__ = ("size", "ring", "p", "c")

    def __init__(self, size: int = CONRING_SIZE) -> None:
        if size & (size - 1):
            raise ValueError("console ring size must be a power of two")
        self.size = size
        self.ring = bytearray(size)
        self.p = 0
        self.c = 0

    def puts(self, text: str) -> None:
        data = text.encode()
        if len(data) > self.size:  # only the tail fits; the producer still counts every byte
            self.p = (self.p + len(data) - self.size) & 0xFFFFFFFF
            data = data[-self.size:]
        idx = self.p & (self.size - 1)
        first = min(len(data), self.size - idx)
        self.ring[idx:idx + first] = data[:first]
        self.ring[0:len(data) - first] = data[first:]
        self.p = (self.p + len(data)) & 0xFFFFFFFF
        if ((self.p - self.c) & 0xFFFFFFFF) > self.size:
            self.c = (self.p - self.size) & 0xFFFFFFFF

    def line(self, text: str) -> None:
        self.puts(f"(XEN) {text}\n")

    def read(self, max_bytes: int, clear: bool, incremental: bool, index: int, has_index: bool) -> Tuple[bytes, int]:
        """``read_console_ring``: (bytes, index after what was read)."""
        c, p = self.c, self.p
        if has_index and incremental:
            inside = (c < index <= p) if c <= p else (c < index or index <= p)
            if inside:
                c = index
        out = bytearray()
        mask = self.size - 1
        while c != p and len(out) < max_bytes:
            idx = c & mask
            n = (p - c) & 0xFFFFFFFF
            n = min(n, self.size - idx, max_bytes - len(out))
            out += self.ring[idx:idx + n]
            c = (c + n) & 0xFFFFFFFF
        if clear:
            if has_index:
                self.c = ((p - self.size) & 0xFFFFFFFF) if ((p - c) & 0xFFFFFFFF) > self.size else c
            else:
                self.c = p
        return bytes(out), c

    def text(self) -> str:
        """Everything in the ring now (for tests)."""
        data, _ = self.read(self.size, False, False, 0, True)
        return data.decode("utf-8", "replace")


class DomainSpec:
    """What a host description says about one domain."""

    __slots__ = ("domid", "name", "uuid", "memory_kib", "max_memory_kib", "vcpus", "state", "pv", "vifs", "disks")

    def __init__(self, domid: Optional[int], name: Optional[str], uuid_: Optional[uuid.UUID], memory_kib: int,
                 max_memory_kib: Optional[int], vcpus: int, state: str, pv: bool = True,
                 vifs: Optional[int] = None, disks: Optional[Tuple[str, ...]] = None) -> None:
        self.pv = pv
        #: network interfaces and disk names; None: a guest with PV drivers has one vif and xvda
        self.vifs = vifs
        self.disks = disks
        self.domid = domid
        self.name = name
        self.uuid = uuid_
        self.memory_kib = memory_kib
        self.max_memory_kib = max_memory_kib
        self.vcpus = vcpus
        self.state = state


STATES = ("running", "blocked", "idle", "paused")


class Host:
    """A simulated Xen host (see the module doc)."""

    def _unique_id(self) -> int:
        self._created += 1
        return self._created

    def __init__(
        self,
        release: str,
        *,
        arch: str = "x86_64",
        pcpus: int = 4,
        nodes: int = 1,
        sched: str = "credit",
        memory_mib: Optional[int] = None,
        seed: int = 0,
        extraversion: Optional[str] = None,
        clock: str = "sim",
        domains: Iterable[DomainSpec] = (),
        console_size: int = CONRING_SIZE,
        commandline: Optional[str] = None,
    ) -> None:
        self.variant = abi.variant(release, arch=arch)
        self.release = self.variant.release
        self.xen = self.variant.xen
        self.arch = arch
        #: Xen on Arm: every domain (dom0 included) is HVM with HAP; no NUMA (one node)
        self.is_arm = arch == "aarch64"
        if commandline is None:
            commandline = ("console=dtuart dtuart=serial0 loglvl=all guest_loglvl=all dom0_mem=2048M"
                           if self.is_arm else
                           "console=com1,vga loglvl=all guest_loglvl=all dom0_mem=2048M,max:2048M")
        self.tables = Tables(arch, self.release)
        if self.is_arm and nodes != 1:
            raise ValueError(f"nodes must be 1 on aarch64 (Xen on Arm reports one node), not {nodes}")
        if not 1 <= pcpus <= 4096:
            raise ValueError(f"pcpus must be 1..4096, not {pcpus}")
        if not 1 <= nodes <= 64 or pcpus % nodes:
            raise ValueError(f"nodes must be 1..64 and divide pcpus ({pcpus}), not {nodes}")
        dom0_op = self.variant.is_dom0_op
        if dom0_op and sched == "credit":
            sched = "sedf"  # the sim's default scheduler did not exist yet: the era's default
        if dom0_op and sched in DOM0_OP_SCHEDULERS:
            pass
        elif sched not in SCHEDULERS:
            known = ", ".join(DOM0_OP_SCHEDULERS if dom0_op else SCHEDULERS)
            raise ValueError(f"sched must be one of {known}, not {sched!r}")
        if sched == "credit2" and self.tables.const(SCHED_CONST[sched]) is None:
            raise ValueError(f"Xen {self.release} has no credit2 scheduler (4.1 and later have)")
        if clock not in ("sim", "real"):
            raise ValueError(f"clock must be 'sim' or 'real', not {clock!r}")
        self.pcpus = pcpus
        self.nodes = nodes
        self.sched = sched
        if sched in DOM0_OP_SCHEDULERS:
            const, default = DOM0_OP_SCHEDULERS[sched]
            self.sched_id = int(self.tables.const(const, default) or 0)
        else:
            self.sched_id = int(self.tables.const(SCHED_CONST[sched], SCHEDULERS[sched]) or SCHEDULERS[sched])
        self._domflags: Optional[Tuple[int, int, int, int, int]] = None
        if dom0_op:
            c = self.tables.const
            self._domflags = (c("DOMFLAGS_DYING", 1) or 0, c("DOMFLAGS_SHUTDOWN", 4) or 0, c("DOMFLAGS_PAUSED", 8) or 0,
                              c("DOMFLAGS_BLOCKED", 16) or 0, c("DOMFLAGS_RUNNING", 32) or 0)
        self.seed = seed
        self.rng = random.Random(seed)
        self.clock = Clock(real=clock == "real")
        self.all_cpus: FrozenSet[int] = frozenset(range(pcpus))
        self.extraversion = extraversion if extraversion is not None else _default_extra(self.variant.xen, self.release)
        self.commandline = commandline
        self.changeset = "%012x, 2026-01-%02d 12:00:00 +0000" % (self.rng.getrandbits(48), 1 + seed % 28)
        self.build_id = self.rng.getrandbits(160).to_bytes(20, "little")
        self.console = Console(console_size)
        self.domains: Dict[int, Domain] = {}
        self._created = 0  # domains created since this host's boot: their unique ids
        self.domids: List[int] = []
        self.names: Dict[int, str] = {}
        self._store: Any = None
        self._memory: Any = None
        self._families: Dict[str, Tables] = {}
        self._consoles: Any = None
        self._evtchn: Any = None
        #: XENMEM_claim_pages: domid -> pages claimed and not yet populated
        self.claims: Dict[int, int] = {}
        #: HVMOP_set_param: domid -> {index: value}
        self.hvm_params: Dict[int, Dict[int, int]] = {}
        self.rover = 0
        self.used_pages = 0
        self._idle_rate = [4 + self.rng.randrange(5) for _ in range(pcpus)]
        self.xen_pages = 8192 + 256 * pcpus  # what Xen itself keeps
        if "xen_domctl" in self.tables:
            self.packer = self.tables.member("xen_domctl", "u.getdomaininfo").packer()
        else:  # the dom0_op era (3.0.0-3.0.2)
            self.packer = self.tables.layout("dom0_getdomaininfo").packer()
        specs = list(domains)
        if not specs or specs[0].domid not in (0, None) or (specs[0].domid is None and specs[0].name not in (None, "Domain-0")):
            specs.insert(0, DomainSpec(0, "Domain-0", None, 2 << 20, None, min(pcpus, 4), "running"))
        need_kib = sum(s.memory_kib for s in specs)
        if memory_mib is None:
            memory_mib = max(16384, (need_kib // 1024) * 5 // 4 + 4096)
        self.total_pages = memory_mib << (20 - PAGE_SHIFT)
        if need_kib // 4 + self.xen_pages > self.total_pages:
            raise ValueError(f"the domains need {need_kib // 1024} MiB, the host has {memory_mib} MiB")
        self._boot_log()
        self._running_slots = pcpus
        for spec in specs:
            self._add(spec)

    # -- construction ---------------------------------------------------------------
    def _boot_log(self) -> None:
        con = self.console
        v = f"{self.xen[0]}.{self.xen[1]}{self.extraversion}"
        con.line(f"Xen version {v} (builder@sim.xenprivcmd) (gcc (Debian 12.2.0-14) 12.2.0) debug=n "
                 f"Thu Jan  1 00:00:00 UTC 2026")
        con.line(f"Latest ChangeSet: {self.changeset}")
        con.line("Bootloader: GRUB 2.06-13")
        con.line(f"Command line: {self.commandline}")
        con.line("Xen image load base address: 0")
        con.line(f"System RAM: {self.total_pages >> (20 - PAGE_SHIFT)}MB ({self.total_pages << 2}kB)")
        for n in range(self.nodes):
            con.line(f"NUMA: Node {n} PXM {n} cpus {n * self.pcpus // self.nodes}-{(n + 1) * self.pcpus // self.nodes - 1}")
        con.line(f"Using scheduler: {SCHED_BANNER[self.sched]}")
        con.line(f"Brought up {self.pcpus} CPUs")
        con.line("*** LOADING DOMAIN 0 ***")
        con.line(f"Dom0 has maximum {min(self.pcpus, 4)} VCPUs")
        con.line("Scrubbing Free RAM in background")
        con.line("Freed 2048kB init memory")

    def _add(self, spec: DomainSpec) -> Domain:
        if spec.state not in STATES:
            raise ValueError(f"domain state must be one of {', '.join(STATES)}, not {spec.state!r}")
        domid = spec.domid if spec.domid is not None else self._free_domid()
        if domid is None:
            raise ValueError(f"more than {MAX_DOMAINS} domains")
        if not 0 <= domid < DOMID_FIRST_RESERVED:
            raise ValueError(f"domid {domid} is out of range 0..{DOMID_FIRST_RESERVED - 1:#x}")
        if domid in self.domains:
            raise ValueError(f"domid {domid} used twice")
        if not 1 <= spec.vcpus <= MAX_VIRT_CPUS:
            raise ValueError(f"vcpus must be 1..{MAX_VIRT_CPUS}, not {spec.vcpus}")
        handle = (spec.uuid.bytes if spec.uuid is not None
                  else (bytes(16) if domid == 0 else _uuid4(self.rng).bytes))
        pages = spec.memory_kib // 4
        max_kib = spec.max_memory_kib if spec.max_memory_kib is not None else spec.memory_kib
        d = Domain(domid, handle, pages, max_kib // 4, self._unique_id())
        d.domflags = self._domflags
        self._arm_domain(d)
        now = self.clock.now()
        d.max_vcpus = spec.vcpus
        for i in range(spec.vcpus):
            running = spec.state == "running" and self._running_slots > 0 and (i == 0 or self.rng.random() < 0.5)
            if running:
                self._running_slots -= 1
            cpu = (domid + i) % self.pcpus
            d.vcpus.append(Vcpu(i, cpu, True, not running and spec.state != "paused", self.all_cpus, now,
                                base=self.rng.randrange(1, 10**12) if domid else 10**12 + i))
        if spec.state == "paused":
            d.pause_count = 1
        d.pv = spec.pv
        guest = domid != 0 and spec.pv
        d.vifs = tuple(range(spec.vifs if spec.vifs is not None else int(guest)))
        d.disks = spec.disks if spec.disks is not None else (("xvda",) if guest else ())
        self.used_pages += pages
        self.domains[domid] = d
        bisect.insort(self.domids, domid)
        self.rover = max(self.rover, domid)
        if spec.name:
            self.names[domid] = spec.name
        return d

    # -- queries ----------------------------------------------------------------------
    def now(self) -> int:
        return self.clock.now()

    @property
    def free_pages(self) -> int:
        return max(0, self.total_pages - self.xen_pages - self.used_pages)

    def domain(self, domid: int) -> Optional[Domain]:
        return self.domains.get(domid)

    def next_domain(self, domid: int) -> Optional[Domain]:
        i = bisect.bisect_left(self.domids, domid)
        return self.domains[self.domids[i]] if i < len(self.domids) else None

    def records(self, first: int, count: int) -> Tuple[int, bytes]:
        """Up to ``count`` packed records of the domains >= ``first``."""
        i = bisect.bisect_left(self.domids, first)
        ids = self.domids[i:i + count]
        now = self.clock.now()
        packer = self.packer
        doms = self.domains
        return len(ids), b"".join([doms[d].record(packer, now) for d in ids])

    def _arm_domain(self, d: Domain) -> None:
        """On Arm every domain is HVM with HAP (arch_get_domain_info sets
        XEN_DOMINF_hap for all) and its gpaddr_bits is the P2M's IPA size."""
        if self.is_arm:
            d.hvm = True
            d.hap_flag = int(self.tables.const("XEN_DOMINF_hap", 0) or 0)
            d.gpaddr_bits = ARM_IPA_BITS

    def cpu_node(self, cpu: int) -> int:
        return cpu // (self.pcpus // self.nodes)

    def topology(self) -> Tuple[int, int, int]:
        """(threads_per_core, cores_per_socket, sockets_per_node); sockets == nodes.
        Xen on Arm knows no cores or sockets: 1, 1 (and core 0, socket 0 for every cpu)."""
        if self.is_arm:
            return 1, 1, 1
        per_node = self.pcpus // self.nodes
        threads = 2 if per_node % 2 == 0 else 1
        return threads, per_node // threads, 1

    def cpu_topo(self, cpu: int) -> Tuple[int, int, int]:
        if self.is_arm:
            return 0, 0, 0
        threads, _cores, _ = self.topology()
        per_node = self.pcpus // self.nodes
        return (cpu % per_node) // threads, self.cpu_node(cpu), self.cpu_node(cpu)

    def node_pages(self, node: int) -> Tuple[int, int]:
        """(size, free) of a NUMA node, in pages."""
        n = self.nodes
        size = self.total_pages // n + (self.total_pages % n if node == n - 1 else 0)
        free = self.free_pages // n + (self.free_pages % n if node == n - 1 else 0)
        return size, free

    def idletime(self, cpu: int) -> int:
        return self.clock.now() * self._idle_rate[cpu] // 8

    def distance(self, a: int, b: int) -> int:
        if self.is_arm:
            return 20  # Arm's asm/numa.h without NUMA: __node_distance(a, b) is 20
        return 10 if a == b else 20

    # -- changes (the domctl handlers call these) ---------------------------------------
    def _free_domid(self) -> Optional[int]:
        """Xen's rover: the next free domid after the last one handed out."""
        if len(self.domains) >= MAX_DOMAINS:
            return None
        dom = self.rover + 1
        for _ in range(DOMID_FIRST_RESERVED):
            if dom >= DOMID_FIRST_RESERVED:
                dom = 1
            if dom not in self.domains:
                return dom
            dom += 1
        return None

    def create(self, domid: Optional[int], handle: bytes, max_vcpus: int, hvm: bool = False,
               vcpu0: bool = False) -> Domain:
        """A new, paused domain with no memory and no vcpus online.

        ``vcpu0``: the dom0_op era's domain_create() allocates vcpu 0, online
        (only later vcpus start down), with no context yet.
        """
        if domid is None:
            domid = self._free_domid()
            if domid is None:
                raise OSError(12, "no free domid")  # ENOMEM
            self.rover = domid
        d = Domain(domid, handle, 0, 0, self._unique_id())
        d.max_vcpus = max_vcpus
        d.pause_count = 1
        d.hvm = hvm
        self._arm_domain(d)
        d.built = False
        d.pv = False  # no kernel, no PV drivers
        d.domflags = self._domflags
        if vcpu0:
            d.vcpus.append(Vcpu(0, domid % self.pcpus, True, False, self.all_cpus, self.clock.now()))
        self.domains[domid] = d
        bisect.insort(self.domids, domid)
        self.console.line(f"d{domid}: created (max_vcpus={max_vcpus})")
        return d

    def alloc_vcpus(self, d: Domain, n: int) -> None:
        now = self.clock.now()
        d.fold(now)
        for i in range(len(d.vcpus), n):
            cpu = (d.domid + i) % self.pcpus
            d.vcpus.append(Vcpu(i, cpu, False, True, self.all_cpus, now))
        d.changed()

    def remove(self, d: Domain) -> None:
        del self.domains[d.domid]
        i = bisect.bisect_left(self.domids, d.domid)
        del self.domids[i]
        self.used_pages -= d.tot_pages
        self.names.pop(d.domid, None)
        self.claims.pop(d.domid, None)
        self.hvm_params.pop(d.domid, None)
        if self._store is not None:
            self._store.forget(d.domid)
        if self._consoles is not None:
            self._consoles.forget(d.domid)
        if self._evtchn is not None:
            self._evtchn.domain_gone(d.domid)
        if self._memory is not None:
            self._memory.forget(d.domid)
        self.console.line(f"d{d.domid}: destroyed ({d.tot_pages} pages freed)")
        self.domain_exception()

    def domain_exception(self) -> None:
        """A domain shut down or died: VIRQ_DOM_EXC fires, and xenstored's @releaseDomain watches."""
        if self._evtchn is not None:
            self._evtchn.fire_virq(self.variant.constants["VIRQ_DOM_EXC"])
        if self._store is not None:
            self._store.fire("@releaseDomain")

    def close(self) -> None:
        """Release what the host holds of the OS: the guests' console ptys, the RAM memfd."""
        if self._consoles is not None:
            self._consoles.close()
        if self._memory is not None:
            self._memory.ram.close()
            self._memory = None

    def family(self, name: str) -> Tables:
        """The raw rows of one table family of this release (``"gnttab"``, ``"rings"``, ...), as
        the simulator reads them; KeyError when the release has none."""
        got = self._families.get(name)
        if got is None:
            got = self._families[name] = Tables(self.arch, self.release, family=name)
        return got

    @property
    def memory(self) -> Any:
        """The host's frames as real bytes and every domain's physmap (:mod:`._memory`), made on first use."""
        if self._memory is None:
            from ._memory import Memory

            self._memory = Memory(self)
        return self._memory

    @property
    def consoles(self) -> Any:
        """The guests' consoles (:mod:`._console`), made on first use."""
        if self._consoles is None:
            from ._console import GuestConsoles

            self._consoles = GuestConsoles(self)
        return self._consoles

    @property
    def evtchn(self) -> Any:
        """Every domain's event channels (:mod:`._evtchn`), made on first use."""
        if self._evtchn is None:
            from ._evtchn import EventChannelTable

            self._evtchn = EventChannelTable(self)
        return self._evtchn

    def sysfs(self) -> Any:
        """dom0's sysfs as netback and blkback fill it for the guests' devices
        (:class:`~xenprivcmd.sim._backends.SimSysfs`)."""
        from ._backends import SimSysfs

        return SimSysfs(self)

    @property
    def store(self) -> Any:
        """The simulated xenstore (:class:`~xenprivcmd.sim._store.SimStore`), made on first use."""
        if self._store is None:
            from ._store import SimStore

            self._store = SimStore(self)
        return self._store

    def shutdown(self, d: Domain, code: int) -> None:
        """The guest shut itself down (SCHEDOP_shutdown) with SHUTDOWN_* ``code``."""
        d.fold(self.clock.now())
        d.shutdown_code = code
        d.changed()
        self.console.line(f"d{d.domid}: shutdown, reason {code}")
        self.domain_exception()

    def balloon(self, d: Domain, target_kib: int) -> None:
        """The guest's balloon driver reaches ``target_kib`` (never above max_mem, nor beyond free memory)."""
        want = min(max(0, target_kib) // 4, d.max_pages)
        grow = want - d.tot_pages
        if grow > self.free_pages:
            want = d.tot_pages + self.free_pages
        self.used_pages += want - d.tot_pages
        d.tot_pages = want
        d.changed()

    def set_vcpu_online(self, d: Domain, vcpu: int, online: bool) -> None:
        """The guest's cpu hotplug driver brings a vcpu up or down (not vcpu 0 down, nor a
        vcpu the domain does not have)."""
        if vcpu >= len(d.vcpus) or (vcpu == 0 and not online):
            return
        d.fold(self.clock.now())
        d.vcpus[vcpu].online = online
        d.changed()

    def set_name(self, domid: int, name: Optional[str]) -> None:
        if name is None:
            self.names.pop(domid, None)
        else:
            self.names[domid] = name


def _default_extra(xen: Tuple[int, ...], release: str) -> str:
    if "-" in release:  # development head: "4.23-dev"
        return "-unstable"
    return "." + ".".join(str(x) for x in xen[2:]) if len(xen) > 2 else ".0"


def _uuid4(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def parse_state(value: Any) -> str:
    s = str(value).lower()
    if s == "idle":
        return "blocked"
    if s not in STATES:
        raise ValueError(f"domain state must be one of {', '.join(STATES)}, not {value!r}")
    return s
