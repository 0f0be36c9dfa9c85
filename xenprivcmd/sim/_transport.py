"""SimTransport: the simulated hypervisor behind the privcmd boundary."""

from __future__ import annotations

import collections
import errno as E
import struct
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple, Union

from .. import _hypercalls as hc
from .._privcmd import MemoryTransport
from ._faults import Fault, Faults
from ._host import CPUMAP_RUNANYWHERE, DOM0_OP_MAX_VIRT_CPUS, DOMID_FIRST_RESERVED, MAX_VIRT_CPUS, Domain, Host
from ._layout import Layout

DOMID_SELF = 0x7FF0
M64 = (1 << 64) - 1
XEN_HYPERVISOR_VIRT_START = 0xFFFF800000000000
M32 = 0xFFFFFFFF

_u32 = struct.Struct("<I")
_u64 = struct.Struct("<Q")
_s64 = struct.Struct("<q")
#: multicall_entry {u64 op; s64 result; u64 args[6]}
_mc_entry = struct.Struct("<Qq6Q")
_cputopo = struct.Struct("<III")
_meminfo = struct.Struct("<QQ")

Handler = Callable[[bytearray, Optional[Domain]], bool]


#: Xen reports MAX_NUMNODES - 1 as physinfo's max_node_id (not the last online node).
MAX_NUMNODES = 64


#: The x86 CPUID words physinfo reports as hw_cap (a plausible x86_64 host).
_X86_HW_CAP = (0x178BFBFF, 0x7FFAF3BF, 0x2FD3FBFF, 0x00000121)


def _hw_cap(n: int) -> Tuple[int, ...]:
    """physinfo's ``hw_cap[n]``: the CPUID words, zero-padded."""
    return (_X86_HW_CAP + (0,) * n)[:n]

class HypercallFailed(Exception):
    """Internal: a handler's error, with whether the op struct is copied back first."""

    def __init__(self, err: int, copyback: bool = False) -> None:
        super().__init__(err)
        self.err = err
        self.copyback = copyback


class SimTransport(MemoryTransport):
    """A simulated Xen (see :mod:`xenprivcmd.sim`).

    ``host`` is the :class:`~xenprivcmd.sim.Host`; ``faults`` the fault
    plan; ``log`` the last hypercalls as (op name, sub-op, result or -errno).
    """

    kind = "sim"
    multicall = True

    def __init__(self, host: Host, privileged: bool = True) -> None:
        super().__init__()
        self.host = host
        self.privileged = privileged
        self.faults = Faults()
        self.log: Deque[Tuple[str, Union[int, str, None], int]] = collections.deque(maxlen=1000)
        self.buffer_kind = "sim"
        self._garble: Optional[str] = None
        self._in_multicall = False
        #: Scribble 0xAA over each multicall entry but its result after it ran, as a debug Xen does.
        self.debug_multicall = False
        t = host.tables
        self.tables = t
        self.dom0_op_era = host.variant.domctl_interface_version is None
        # number -> name of every command of the release (the log's and the faults' sub-op names)
        self._domctl_names = hc.command_names(host.variant, "domctl")
        self._sysctl_names = hc.command_names(host.variant, "sysctl")
        if not self.dom0_op_era:
            self.domctl = t.layout("xen_domctl")
            self.sysctl = t.layout("xen_sysctl")
            self.info_size = host.packer.size
        self._domctl: Dict[int, Tuple[str, Handler]] = {}
        self._sysctl: Dict[int, Tuple[str, Callable[[bytearray], bool]]] = {}
        for name, h in (("getdomaininfo", self._getdomaininfo), ("pausedomain", self._pause),
                        ("unpausedomain", self._unpause), ("destroydomain", self._destroy),
                        ("max_mem", self._max_mem), ("max_vcpus", self._max_vcpus),
                        ("getvcpuinfo", self._getvcpuinfo), ("getvcpuaffinity", self._vcpuaffinity),
                        ("setvcpuaffinity", self._vcpuaffinity), ("scheduler_op", self._scheduler_op),
                        ("createdomain", self._createdomain), ("get_domain_state", self._get_domain_state)):
            cmd = t.const("XEN_DOMCTL_" + name)
            if cmd is not None and not self.dom0_op_era:
                self._domctl[cmd] = (name, h)
        for name, s in (("getdomaininfolist", self._getdomaininfolist), ("physinfo", self._physinfo),
                        ("sched_id", self._sched_id), ("readconsole", self._readconsole),
                        ("cputopoinfo", self._cputopoinfo), ("topologyinfo", self._topologyinfo),
                        ("numainfo", self._numainfo), ("getcpuinfo", self._getcpuinfo),
                        ("cpupool_op", self._cpupool_op)):
            cmd = t.const("XEN_SYSCTL_" + name)
            if cmd is not None and not self.dom0_op_era:
                self._sysctl[cmd] = (name, s)
        self._modern_affinity = not self.dom0_op_era and "u.vcpuaffinity.cpumap_hard.bitmap" in self.domctl
        self._pause_count = host.xen >= (4, 5)
        self._destroy_eagain = host.xen < (4, 6)
        self._next_domain = host.xen < (4, 18)
        self._create_max_vcpus = not self.dom0_op_era and "u.createdomain.max_vcpus" in self.domctl
        # The dom0_op era (3.0.0-3.0.2): hypercall 7, struct dom0_op, DOM0_<MEMBER> commands.
        self._dom0: Dict[int, Tuple[str, Callable[[bytearray], bool]]] = {}
        self._dom0_names = hc.command_names(host.variant, "dom0_op")  # named as the union's members
        if self.dom0_op_era:
            self.dom0op = lay = t.layout("dom0_op")
            self.info_size = host.packer.size
            for name, h0 in (("getdomaininfo", self._d0_getdomaininfo), ("getdomaininfolist", self._d0_getdomaininfolist),
                             ("pausedomain", self._d0_pause), ("unpausedomain", self._d0_unpause),
                             ("destroydomain", self._d0_destroy), ("createdomain", self._d0_createdomain),
                             ("max_vcpus", self._d0_max_vcpus), ("setdomainmaxmem", self._d0_max_mem),
                             ("getvcpuinfo", self._d0_getvcpuinfo), ("setvcpuaffinity", self._d0_setvcpuaffinity),
                             ("pincpudomain", self._d0_pincpudomain), ("physinfo", self._d0_physinfo),
                             ("sched_id", self._d0_sched_id), ("readconsole", self._d0_readconsole)):
                cmd = t.const("DOM0_" + name.upper())
                if cmd is not None and lay.has_prefix("u." + name):
                    self._dom0[cmd] = (name, h0)

    # -- the simulated xenstore -----------------------------------------------------
    def domain_names(self) -> Dict[int, str]:
        """domid -> name, as the toolstack wrote them to xenstore."""
        return dict(self.host.names)

    def uname(self) -> Tuple[str, str, str, str]:
        """The simulated dom0's (nodename, release, version, machine)."""
        return ("sim-dom0", "6.1.0-sim-amd64" if self.host.arch == "x86_64" else "6.1.0-sim-arm64",
                "#1 SMP PREEMPT_DYNAMIC Debian 6.1.0 (2026-01-01)", self.host.arch)

    def xenstore(self) -> Any:
        """The simulated xenstore (the toolstack's nodes, and guests that answer them)."""
        return self.host.store

    def describe(self) -> str:
        h = self.host
        return (f"sim Xen {h.xen[0]}.{h.xen[1]}{h.extraversion} ({h.release}, {len(h.domains)} domains, "
                f"{h.pcpus} pcpus, {h.sched})")

    # -- dispatch ----------------------------------------------------------------------
    def handle(self, op: int, args: Tuple[int, int, int, int, int]) -> int:
        if op == hc.HYPERVISOR_multicall:
            return self._multicall(args[0], args[1])
        host = self.host
        host.clock.tick()
        subop, subop_num = self._subop_of(op, args)
        fault: Optional[Fault] = None
        if self.faults.rules:
            fault = self.faults.match(self.calls, op, subop, subop_num)
        opname = hc.HYPERCALL_NAMES.get(op, str(op))
        if fault is not None and fault.errno is not None:
            self.log.append((opname, subop, -fault.errno))
            raise OSError(fault.errno, f"sim: injected {E.errorcode.get(fault.errno, fault.errno)}")
        self._garble = fault.garble if fault is not None else None
        try:
            if op == hc.HYPERVISOR_xen_version:
                rc = self._xen_version(args[0], args[1])
            elif op == hc.HYPERVISOR_dom0_op and self.dom0_op_era:
                rc = self._do_dom0_op(args[0])
            elif op == hc.HYPERVISOR_domctl and not self.dom0_op_era:
                rc = self._do_domctl(args[0])
            elif op == hc.HYPERVISOR_sysctl and not self.dom0_op_era:
                rc = self._do_sysctl(args[0])
            else:
                raise OSError(E.ENOSYS, f"sim: hypercall {op} not implemented")
        except OSError as exc:
            self.log.append((opname, subop, -(exc.errno or E.EIO)))
            raise
        finally:
            self._garble = None
        self.log.append((opname, subop, rc))
        return rc

    # -- multicall -------------------------------------------------------------------
    def _multicall(self, address: int, count: int) -> int:
        """Xen's do_multicall: each entry runs in order and gets its own result
        (a negative errno on failure, the others go on); a multicall inside a
        multicall is refused with EINVAL, as is one while one runs."""
        self.host.clock.tick()
        if self._in_multicall:
            self.log.append(("multicall", None, -E.EINVAL))
            raise self._fail(E.EINVAL, "multicall reentry")
        count &= 0xFFFFFFFF
        if count and not address:
            self.log.append(("multicall", None, -E.EFAULT))
            raise self._fail(E.EFAULT)
        self._in_multicall = True
        try:
            for i in range(count):
                at = address + i * _mc_entry.size
                entry = _mc_entry.unpack(self.read(at, _mc_entry.size))
                op, args = entry[0], entry[2:7]
                try:
                    rc = -E.EINVAL if op == hc.HYPERVISOR_multicall else self.handle(op, args)  # type: ignore[arg-type]
                except OSError as exc:
                    rc = -(exc.errno or E.EIO)
                if self.debug_multicall:
                    self.write(at, b"\xaa" * _mc_entry.size)
                self.write(at + 8, _s64.pack(rc))
        finally:
            self._in_multicall = False
        self.log.append(("multicall", None, 0))
        return 0

    def _subop_of(self, op: int, args: Tuple[int, ...]) -> Tuple[Union[int, str, None], Optional[int]]:
        if op == hc.HYPERVISOR_xen_version:
            return hc.XENVER_NAMES.get(args[0], args[0]), args[0]
        if op == hc.HYPERVISOR_dom0_op and self.dom0_op_era and args[0]:
            cmd = _u32.unpack(self.read(args[0], 4))[0]
            return self._dom0_names.get(cmd, cmd), cmd
        if op in (hc.HYPERVISOR_domctl, hc.HYPERVISOR_sysctl) and args[0]:
            cmd = _u32.unpack(self.read(args[0], 4))[0]
            names = self._domctl_names if op == hc.HYPERVISOR_domctl else self._sysctl_names
            return names.get(cmd, cmd), cmd
        return None, None

    @staticmethod
    def _fail(err: int, msg: str = "") -> OSError:
        return OSError(err, f"sim: {msg or E.errorcode.get(err, str(err))}")

    # -- xen_version ---------------------------------------------------------------------
    def _xen_version(self, sub: int, arg: int) -> int:
        host = self.host
        c = self.tables.consts
        if sub == hc.XENVER_version:
            return (host.xen[0] << 16) | host.xen[1]
        if sub == hc.XENVER_pagesize:
            return 4096
        fixed: Dict[int, Tuple[List[Tuple[str, int]]]] = {
            hc.XENVER_extraversion: ([(host.extraversion, 16)],),
            hc.XENVER_compile_info: ([("gcc (Debian 12.2.0-14) 12.2.0", 64), ("builder", 16), ("sim.xenprivcmd", 32),
                                      ("Thu Jan  1 00:00:00 UTC 2026", 32)],),
            hc.XENVER_capabilities: ([(self._caps(), 1024)],),
            hc.XENVER_changeset: ([(host.changeset, 64)],),
            hc.XENVER_commandline: ([(host.commandline, 1024)],),
        }
        if sub == hc.XENVER_commandline and "XENVER_commandline" not in c:
            raise self._fail(E.ENOSYS)
        if sub in fixed:
            if not arg:
                raise self._fail(E.EFAULT)
            out = bytearray()
            for text, size in fixed[sub][0]:
                raw = text.encode()[: size - 1]
                if self._garble == "unterminated":
                    out += (raw + b"X" * size)[:size]
                else:
                    out += raw.ljust(size, b"\0")
            if self._garble == "zeros":
                out = bytearray(len(out))
            self.write(arg, bytes(out))
            return 0
        if sub == hc.XENVER_platform_parameters:
            if not arg:
                raise self._fail(E.EFAULT)
            self.write(arg, _u64.pack(XEN_HYPERVISOR_VIRT_START))
            return 0
        if sub == hc.XENVER_get_features:
            if not arg:
                raise self._fail(E.EFAULT)
            idx = _u32.unpack(self.read(arg, 4))[0]
            if idx != 0:
                raise self._fail(E.EINVAL)
            # writable_page_tables | writable_descriptor_tables | auto_translated_physmap? no: PV dom0 bits
            self.write(arg + 4, _u32.pack(0x2F))
            return 0
        if sub == hc.XENVER_guest_handle:
            if not arg:
                raise self._fail(E.EFAULT)
            self.write(arg, host.domains[0].handle if 0 in host.domains else bytes(16))
            return 0
        if sub == hc.XENVER_build_id:
            if "XENVER_build_id" not in c:
                raise self._fail(E.ENOSYS)
            return self._varbuf(arg, host.build_id, build_id=True)
        varbufs = {hc.XENVER_extraversion2: host.extraversion, hc.XENVER_capabilities2: self._caps(),
                   hc.XENVER_changeset2: host.changeset, hc.XENVER_commandline2: host.commandline}
        if sub in varbufs and ("XENVER_" + hc.XENVER_NAMES[sub]) in c:
            return self._varbuf(arg, varbufs[sub].encode(), build_id=False)
        raise self._fail(E.ENOSYS, f"XENVER sub-op {sub} not in Xen {host.release}")

    def _caps(self) -> str:
        if self.host.is_arm:
            return "xen-3.0-aarch64 xen-3.0-armv7l"
        caps = "xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64"
        return caps if self.host.xen >= (3, 1) else "xen-3.0-x86_64"

    def _varbuf(self, arg: int, data: bytes, build_id: bool) -> int:
        size = len(data)
        if not arg:
            if self._garble == "varbuf":
                return 1 << 24
            return size
        room = int(_u32.unpack(self.read(arg, 4))[0])
        if room == 0:
            raise self._fail(E.EINVAL)
        if size > room:
            raise self._fail(E.ENOBUFS)
        self.write(arg + 4, data)
        if self._garble == "varbuf":
            return room + 16
        return size

    def _apply(self, addr: int, op: bytearray, act: Callable[[], bool]) -> int:
        """Run one command's handler on the request ``op``; copy the reply back
        to the caller where it says so (on failure too, where Xen does)."""
        try:
            copyback = act()
        except HypercallFailed as exc:
            if exc.copyback:
                self.write(addr, bytes(op))
            raise self._fail(exc.err) from None
        if copyback:
            self.write(addr, bytes(op))
        return 0

    # -- domctl --------------------------------------------------------------------------
    def _do_domctl(self, addr: int) -> int:
        if not addr:
            raise self._fail(E.EFAULT)
        lay = self.domctl
        op = bytearray(self.read(addr, lay.size))
        cmd = lay.get(op, "cmd")
        entry = self._domctl.get(cmd)
        # Stable ops (4.21+: get_domain_state) take interface version 0.
        want = 0 if entry and entry[0] == "get_domain_state" else self.host.variant.domctl_interface_version
        if lay.get(op, "interface_version") != want:
            raise self._fail(E.EACCES, "domctl interface version mismatch")
        d: Optional[Domain] = None
        name = entry[0] if entry else ""
        if name != "createdomain":
            d = self.host.domain(lay.get(op, "domain"))
            if d is None and (name != "getdomaininfo" or not self._next_domain):
                raise self._fail(E.ESRCH, f"domctl {name or cmd}: no domain {lay.get(op, 'domain')}")
        if not self.privileged:
            raise self._fail(E.EPERM, "domctl: not a privileged domain")
        if entry is None:
            raise self._fail(E.ENOSYS, f"domctl {cmd} not simulated")
        return self._apply(addr, op, lambda: entry[1](op, d))

    def _getdomaininfo(self, op: bytearray, d: Optional[Domain]) -> bool:
        lay = self.domctl
        host = self.host
        if d is None:  # before 4.18: the next domain at or after the one asked for
            d = host.next_domain(lay.get(op, "domain"))
            if d is None:
                raise HypercallFailed(E.ESRCH)
        if self._garble == "domid":
            other = host.next_domain(d.domid + 1) or host.domains[0]
            d = other if other is not d else d
        rec = d.record(host.packer, host.now())
        at = lay.offset("u.getdomaininfo.domain")
        op[at:at + len(rec)] = rec
        lay.put(op, "domain", d.domid)
        if self._garble == "zeros":
            op[at:at + len(rec)] = bytes(len(rec))
        return True

    def _get_domain_state(self, op: bytearray, d: Optional[Domain]) -> bool:
        assert d is not None
        lay = self.domctl
        state = 1 | (4 if d.dying else 0)  # EXIST, DYING
        caps = 3 if d.is_dom0 else 0  # CONTROL | HARDWARE
        lay.put(op, "u.get_domain_state.state", state)
        lay.put(op, "u.get_domain_state.caps", caps)
        lay.put(op, "u.get_domain_state.unique_id", d.unique_id)
        return True

    def _pause(self, op: bytearray, d: Optional[Domain]) -> bool:
        assert d is not None
        if d.is_dom0:
            raise HypercallFailed(E.EINVAL)
        now = self.host.now()
        if self._pause_count:
            if d.pause_count >= 255:
                raise HypercallFailed(E.EOVERFLOW)
            d.fold(now)
            d.pause_count += 1
        elif d.pause_count == 0:
            d.fold(now)
            d.pause_count = 1
        return False

    def _unpause(self, op: bytearray, d: Optional[Domain]) -> bool:
        assert d is not None
        now = self.host.now()
        if self._pause_count:
            if d.pause_count == 0:
                raise HypercallFailed(E.EINVAL)
            d.fold(now)
            d.pause_count -= 1
        elif d.pause_count:
            d.fold(now)
            d.pause_count = 0
        return False

    def _destroy(self, op: bytearray, d: Optional[Domain]) -> bool:
        assert d is not None
        if d.is_dom0:
            raise HypercallFailed(E.EINVAL)  # domain_kill(current->domain)
        if self._destroy_eagain and d.destroy_tries < 1 + (d.domid % 2):
            # Xen <= 4.5: relinquishing resources is preemptible; the toolstack retries EAGAIN
            d.fold(self.host.now())
            d.dying = True
            d.destroy_tries += 1
            raise HypercallFailed(E.EAGAIN)
        d.fold(self.host.now())
        self.host.remove(d)
        return False

    def _max_mem(self, op: bytearray, d: Optional[Domain]) -> bool:
        assert d is not None
        kib = self.domctl.get(op, "u.max_mem.max_memkb")
        d.max_pages = min(kib >> 2, M32)
        d.changed()
        return False

    def _max_vcpus(self, op: bytearray, d: Optional[Domain]) -> bool:
        assert d is not None
        n = self.domctl.get(op, "u.max_vcpus.max")
        if d.is_dom0:
            raise HypercallFailed(E.EINVAL)
        if self._create_max_vcpus:
            if n != d.max_vcpus:  # 4.12+: max_vcpus is set up by createdomain
                raise HypercallFailed(E.EINVAL)
        else:
            if n > MAX_VIRT_CPUS or n < len(d.vcpus):  # cannot reduce
                raise HypercallFailed(E.EINVAL)
            d.max_vcpus = max(n, d.max_vcpus)
        self.host.alloc_vcpus(d, n)
        return False

    def _vcpu(self, d: Domain, vcpu: int) -> int:
        if vcpu >= d.max_vcpus:
            raise HypercallFailed(E.EINVAL)
        if vcpu >= len(d.vcpus):
            raise HypercallFailed(E.ESRCH)
        return vcpu

    def _getvcpuinfo(self, op: bytearray, d: Optional[Domain]) -> bool:
        assert d is not None
        lay = self.domctl
        v = d.vcpus[self._vcpu(d, lay.get(op, "u.getvcpuinfo.vcpu"))]
        lay.put(op, "u.getvcpuinfo.online", int(v.online))
        lay.put(op, "u.getvcpuinfo.blocked", int(v.blocked))
        lay.put(op, "u.getvcpuinfo.running", int(d.vcpu_running(v)))
        lay.put(op, "u.getvcpuinfo.cpu_time", d.vcpu_time(v, self.host.now()))
        lay.put(op, "u.getvcpuinfo.cpu", v.cpu)
        return True

    # cpumaps: xenctl_bitmap / xenctl_cpumap in the caller's memory
    def _map_in(self, lay: Layout, op: bytearray, path: str) -> frozenset[int]:
        handle = lay.get(op, path + ".bitmap")
        nbits = lay.get(op, path + (".nr_bits" if path + ".nr_bits" in lay else ".nr_cpus"))
        nr = self.host.pcpus
        guest_bytes = (nbits + 7) // 8
        copy = min(guest_bytes, (nr + 7) // 8)
        if copy and not handle:
            raise HypercallFailed(E.EFAULT)
        raw = bytearray(self.read(handle, copy)) if copy else bytearray()
        if (nbits & 7) and guest_bytes == copy:
            raw[-1] &= ~(0xFF << (nbits & 7)) & 0xFF
        bits = int.from_bytes(bytes(raw), "little")
        return frozenset(c for c in range(nr) if bits >> c & 1)

    def _map_out(self, lay: Layout, op: bytearray, path: str, cpus: frozenset[int]) -> None:
        handle = lay.get(op, path + ".bitmap")
        nbits = lay.get(op, path + (".nr_bits" if path + ".nr_bits" in lay else ".nr_cpus"))
        nr = self.host.pcpus
        guest_bytes = (nbits + 7) // 8
        copy = min(guest_bytes, (nr + 7) // 8)
        if guest_bytes and not handle:
            raise HypercallFailed(E.EFAULT)
        bits = sum(1 << c for c in cpus if c < nr)
        data = bits.to_bytes((nr + 7) // 8, "little")[:copy] + bytes(guest_bytes - copy)
        if data:
            self.write(handle, data)

    def _vcpuaffinity(self, op: bytearray, d: Optional[Domain]) -> bool:
        assert d is not None
        lay = self.domctl
        setting = lay.get(op, "cmd") == self.tables.const("XEN_DOMCTL_setvcpuaffinity")
        v = d.vcpus[self._vcpu(d, lay.get(op, "u.vcpuaffinity.vcpu"))]
        online = self.host.all_cpus
        if not self._modern_affinity:
            if setting:
                new = self._map_in(lay, op, "u.vcpuaffinity.cpumap")
                if not new & online:
                    raise HypercallFailed(E.EINVAL)
                v.hard = new
                if v.cpu not in new:
                    v.cpu = min(new & online)
            else:
                self._map_out(lay, op, "u.vcpuaffinity.cpumap", v.hard)
            return False
        hard_f = self.tables.const("XEN_VCPUAFFINITY_HARD", 1) or 1
        soft_f = self.tables.const("XEN_VCPUAFFINITY_SOFT", 2) or 2
        flags = lay.get(op, "u.vcpuaffinity.flags")
        hard_h = lay.get(op, "u.vcpuaffinity.cpumap_hard.bitmap")
        soft_h = lay.get(op, "u.vcpuaffinity.cpumap_soft.bitmap")
        if flags == 0 or (flags & hard_f and not hard_h) or (flags & soft_f and not soft_h):
            raise HypercallFailed(E.EINVAL)
        if setting:
            if flags & hard_f:
                new = self._map_in(lay, op, "u.vcpuaffinity.cpumap_hard")
                if not new & online:
                    raise HypercallFailed(E.EINVAL)
                v.hard = new
                if v.cpu not in new:
                    v.cpu = min(new & online)
                self._map_out(lay, op, "u.vcpuaffinity.cpumap_hard", online & v.hard)
            if flags & soft_f:
                new = self._map_in(lay, op, "u.vcpuaffinity.cpumap_soft")
                v.soft = new
                self._map_out(lay, op, "u.vcpuaffinity.cpumap_soft", new & online & v.hard)
        else:
            if flags & hard_f:
                self._map_out(lay, op, "u.vcpuaffinity.cpumap_hard", v.hard)
            if flags & soft_f:
                self._map_out(lay, op, "u.vcpuaffinity.cpumap_soft", v.soft)
        return False

    def _scheduler_op(self, op: bytearray, d: Optional[Domain]) -> bool:
        assert d is not None
        lay = self.domctl
        host = self.host
        if lay.get(op, "u.scheduler_op.sched_id") != host.sched_id:
            raise HypercallFailed(E.EINVAL)
        cmd = lay.get(op, "u.scheduler_op.cmd")
        base = f"u.scheduler_op.u.{host.sched}."
        has_cap = base + "cap" in lay
        if cmd == self.tables.const("XEN_DOMCTL_SCHEDOP_getinfo", 1):
            lay.put(op, base + "weight", d.weight)
            if has_cap:
                lay.put(op, base + "cap", d.cap)
            return True
        if cmd == self.tables.const("XEN_DOMCTL_SCHEDOP_putinfo", 0):
            weight = lay.get(op, base + "weight")
            cap = lay.get(op, base + "cap") if has_cap else None
            if host.sched == "credit2" and cap is not None and cap > 100 * max(1, len(d.vcpus)):
                raise HypercallFailed(E.EINVAL)
            if weight:
                d.weight = weight
            if cap is not None and (host.sched == "credit2" or cap != 0xFFFF):
                d.cap = cap
            return True
        raise HypercallFailed(E.EINVAL)

    def _createdomain(self, op: bytearray, d: Optional[Domain]) -> bool:
        lay = self.domctl
        host = self.host
        want = lay.get(op, "domain")
        max_vcpus = 0
        if self._create_max_vcpus:
            max_vcpus = lay.get(op, "u.createdomain.max_vcpus")
            if not 1 <= max_vcpus <= MAX_VIRT_CPUS:
                raise HypercallFailed(E.EINVAL)
        domid: Optional[int] = None
        if 0 < want < DOMID_FIRST_RESERVED:
            if want in host.domains:
                raise HypercallFailed(E.EINVAL)
            domid = want
        hvm_flag = self.tables.const("XEN_DOMCTL_CDF_hvm", self.tables.const("XEN_DOMCTL_CDF_hvm_guest", 1)) or 1
        flags = lay.get(op, "u.createdomain.flags") if "u.createdomain.flags" in lay else 0
        handle = lay.get(op, "u.createdomain.handle")
        if host.is_arm and host.xen >= (4, 12):
            # arch_sanitise_domain_config: HVM and HAP required, IOMMU and vPMU optional
            c = self.tables.const
            hap = c("XEN_DOMCTL_CDF_hap", 2) or 2
            optional = (c("XEN_DOMCTL_CDF_iommu", 0) or 0) | (c("XEN_DOMCTL_CDF_vpmu", 0) or 0)
            if flags & ~optional != hvm_flag | hap:
                raise HypercallFailed(E.EINVAL)
        try:
            new = host.create(domid, bytes(handle), max_vcpus, hvm=bool(flags & hvm_flag))
        except OSError as exc:
            raise HypercallFailed(exc.errno or E.ENOMEM) from None
        lay.put(op, "domain", new.domid)
        return True

    # -- sysctl ----------------------------------------------------------------------------
    def _do_sysctl(self, addr: int) -> int:
        if not addr:
            raise self._fail(E.EFAULT)
        lay = self.sysctl
        op = bytearray(self.read(addr, lay.size))
        if lay.get(op, "interface_version") != self.host.variant.sysctl_interface_version:
            raise self._fail(E.EACCES, "sysctl interface version mismatch")
        if not self.privileged:
            raise self._fail(E.EPERM, "sysctl: not a privileged domain")
        entry = self._sysctl.get(lay.get(op, "cmd"))
        if entry is None:
            raise self._fail(E.ENOSYS, f"sysctl {lay.get(op, 'cmd')} not simulated")
        return self._apply(addr, op, lambda: entry[1](op))

    def _getdomaininfolist(self, op: bytearray) -> bool:
        lay = self.sysctl
        first = lay.get(op, "u.getdomaininfolist.first_domain")
        max_domains = lay.get(op, "u.getdomaininfolist.max_domains")
        buf = lay.get(op, "u.getdomaininfolist.buffer")
        n, data = self.host.records(first, max_domains)
        if n and not buf:
            raise HypercallFailed(E.EFAULT)
        if self._garble == "record_size" and n:
            size = self.info_size
            data = b"".join(data[i:i + size - 8] for i in range(0, len(data), size))
        if data:
            self.write(buf, data)
        if self._garble == "count":
            n = max_domains + 1
        lay.put(op, "u.getdomaininfolist.num_domains", n)
        return True

    def _physinfo(self, op: bytearray) -> bool:
        lay = self.sysctl
        host = self.host
        threads, cores, sockets = host.topology()
        p = "u.physinfo."
        caps = 0
        # Arm: HVM with HAP only (no PV, no shadow paging); Xen reports its vPMU and
        # grant table v1 there too (as seen on real arm64 Xen 4.17/4.20)
        names = ("hvm", "hap", "vpmu", "gnttab_v1") if host.is_arm else ("hvm", "pv", "shadow", "hap")
        for name in names:
            bit = self.tables.const("XEN_SYSCTL_PHYSCAP_" + name)
            if bit is not None:
                caps |= bit
        values = {
            "threads_per_core": threads, "cores_per_socket": cores, "sockets_per_node": sockets,
            "nr_cpus": host.pcpus, "max_cpu_id": host.pcpus - 1, "nr_nodes": host.nodes,
            # Arm: MAX_NUMNODES is 1; cpu_khz is the generic timer's frequency
            "max_node_id": 0 if host.is_arm else MAX_NUMNODES - 1,
            "cpu_khz": 62_500 if host.is_arm else 2_400_000, "capabilities": caps,
            "total_pages": host.total_pages, "free_pages": host.free_pages, "scrub_pages": 0,
            "outstanding_pages": 0, "max_mfn": host.total_pages + 0x100000 - 1,
        }
        for k, v in values.items():
            if p + k in lay:
                lay.put(op, p + k, v)
        if p + "hw_cap" in lay and not host.is_arm:  # x86 CPUID words; zero on Arm
            lay.put(op, p + "hw_cap", _hw_cap(lay.fields[p + "hw_cap"].count))
        if p + "cpu_to_node" in lay and lay.get(op, p + "cpu_to_node"):
            handle = lay.get(op, p + "cpu_to_node")
            n = min(lay.get(op, p + "max_cpu_id"), host.pcpus - 1) + 1
            self.write(handle, b"".join(_u32.pack(host.cpu_node(i)) for i in range(n)))
        return True

    def _sched_id(self, op: bytearray) -> bool:
        self.sysctl.put(op, "u.sched_id.sched_id", self.host.sched_id)
        return True

    def _readconsole(self, op: bytearray) -> bool:
        lay = self.sysctl
        p = "u.readconsole."
        has_index = p + "index" in lay
        count = lay.get(op, p + "count")
        buf = lay.get(op, p + "buffer")
        data, index = self.host.console.read(
            count, bool(lay.get(op, p + "clear")),
            bool(lay.get(op, p + "incremental")) if has_index else False,
            lay.get(op, p + "index") if has_index else 0, has_index)
        if data:
            if not buf:
                raise HypercallFailed(E.EFAULT)
            self.write(buf, data)
        n = len(data)
        if self._garble == "count":
            n = count + 1
        lay.put(op, p + "count", n)
        if has_index:
            lay.put(op, p + "index", index)
        return True

    def _count(self, asked: int, got: int) -> int:
        return asked + 1 if self._garble == "count" else got

    def _cputopoinfo(self, op: bytearray) -> bool:
        lay = self.sysctl
        host = self.host
        p = "u.cputopoinfo."
        num = host.pcpus
        asked = lay.get(op, p + "num_cpus")
        handle = lay.get(op, p + "cputopo")
        err = 0
        if handle:
            if asked < num:
                err = E.ENOBUFS
            else:
                self.write(handle, b"".join(_cputopo.pack(*host.cpu_topo(i)) for i in range(num)))
        if asked != num or self._garble:
            lay.put(op, p + "num_cpus", self._count(asked, num))
        if err:
            raise HypercallFailed(err, copyback=True)
        return True

    def _topologyinfo(self, op: bytearray) -> bool:
        lay = self.sysctl
        host = self.host
        p = "u.topologyinfo."
        last = host.pcpus - 1
        upto = min(lay.get(op, p + "max_cpu_index"), last)
        for k, field in enumerate(("cpu_to_core", "cpu_to_socket", "cpu_to_node")):
            h = lay.get(op, p + field)
            if h:
                self.write(h, b"".join(_u32.pack(host.cpu_topo(i)[k]) for i in range(upto + 1)))
        lay.put(op, p + "max_cpu_index", self._count(upto + 1, last + 1) - 1 if self._garble else last)
        return True

    def _numainfo(self, op: bytearray) -> bool:
        lay = self.sysctl
        host = self.host
        p = "u.numainfo."
        if p + "meminfo" in lay:
            asked = lay.get(op, p + "num_nodes")
            mem_h, dist_h = lay.get(op, p + "meminfo"), lay.get(op, p + "distance")
            num = host.nodes
            if mem_h or dist_h:
                num = min(num, asked)
                for i in range(num):
                    if mem_h:
                        size, free = host.node_pages(i)
                        self.write(mem_h + 16 * i, _meminfo.pack(size << 12, free << 12))
                    if dist_h:
                        row = b"".join(_u32.pack(host.distance(i, j)) for j in range(num))
                        self.write(dist_h + 4 * i * num, row)
            if asked != num or self._garble:
                lay.put(op, p + "num_nodes", self._count(asked, num))
            return True
        last = host.nodes - 1
        upto = min(lay.get(op, p + "max_node_index"), last)
        size_h, free_h, dist_h = (lay.get(op, p + f) for f in ("node_to_memsize", "node_to_memfree",
                                                                "node_to_node_distance"))
        for i in range(upto + 1):
            size, free = host.node_pages(i)
            if size_h:
                self.write(size_h + 8 * i, _u64.pack(size << 12))
            if free_h:
                self.write(free_h + 8 * i, _u64.pack(free << 12))
            if dist_h:
                row = b"".join(_u32.pack(host.distance(i, j)) for j in range(upto + 1))
                self.write(dist_h + 4 * i * (upto + 1), row)
        lay.put(op, p + "max_node_index", self._count(upto + 1, last + 1) - 1 if self._garble else last)
        return True

    def _getcpuinfo(self, op: bytearray) -> bool:
        lay = self.sysctl
        host = self.host
        p = "u.getcpuinfo."
        n = min(lay.get(op, p + "max_cpus"), host.pcpus)
        h = lay.get(op, p + "info")
        if n and not h:
            raise HypercallFailed(E.EFAULT)
        if n:
            self.write(h, b"".join(_u64.pack(host.idletime(i)) for i in range(n)))
        lay.put(op, p + "nr_cpus", self._count(lay.get(op, p + "max_cpus"), n))
        return True

    def _cpupool_op(self, op: bytearray) -> bool:
        """One pool, 0, holding every pcpu and every domain (what a host without
        cpupool-create has); INFO past it is ENOENT; FREEINFO an empty map."""
        lay = self.sysctl
        host = self.host
        p = "u.cpupool_op."
        which = lay.get(op, p + "op")
        if which == self.tables.const("XEN_SYSCTL_CPUPOOL_OP_INFO"):
            if lay.get(op, p + "cpupool_id") > 0:
                raise HypercallFailed(E.ENOENT)
            lay.put(op, p + "cpupool_id", 0)
            lay.put(op, p + "sched_id", host.sched_id)
            lay.put(op, p + "n_dom", len(host.domains))
            self._map_out(lay, op, p + "cpumap", host.all_cpus)
            return True
        if which == self.tables.const("XEN_SYSCTL_CPUPOOL_OP_FREEINFO"):
            self._map_out(lay, op, p + "cpumap", frozenset())
            return True
        raise HypercallFailed(E.EPERM)  # creating, destroying, moving: not simulated

    # -- dom0_op (Xen 3.0.0-3.0.2) ---------------------------------------------------------
    # xen/common/dom0_ops.c do_dom0_op(): EPERM for an unprivileged caller, EFAULT, then EACCES
    # for a wrong DOM0_INTERFACE_VERSION, then the command (each finds its domain itself, from
    # the domid in its union member).
    def _do_dom0_op(self, addr: int) -> int:
        if not self.privileged:
            raise self._fail(E.EPERM, "dom0_op: not a privileged domain")
        if not addr:
            raise self._fail(E.EFAULT)
        lay = self.dom0op
        op = bytearray(self.read(addr, lay.size))
        cmd = lay.get(op, "cmd")
        if lay.get(op, "interface_version") != self.host.variant.dom0_op_interface_version:
            raise self._fail(E.EACCES, "dom0_op interface version mismatch")
        if cmd not in self._dom0_names:
            raise self._fail(E.ENOSYS, f"dom0_op: {cmd} is no command of Xen {self.host.release}")
        entry = self._dom0.get(cmd)
        if entry is None:
            raise self._fail(E.ENOSYS, f"dom0_op {self._dom0_names[cmd]} not simulated")
        return self._apply(addr, op, lambda: entry[1](op))

    def _d0_domain(self, op: bytearray, member: str) -> Domain:
        d = self.host.domain(self.dom0op.get(op, f"u.{member}.domain"))
        if d is None:
            raise HypercallFailed(E.ESRCH)
        return d

    def _d0_getdomaininfo(self, op: bytearray) -> bool:
        lay = self.dom0op
        host = self.host
        dom = lay.get(op, "u.getdomaininfo.domain")
        if dom == DOMID_SELF:
            dom = 0
        d = host.next_domain(dom)  # the first domain at or after the one asked for
        if d is None:
            raise HypercallFailed(E.ESRCH)
        if self._garble == "domid":
            other = host.next_domain(d.domid + 1) or host.domains[0]
            d = other if other is not d else d
        rec = d.record(host.packer, host.now())
        at = lay.offset("u.getdomaininfo.domain")
        op[at:at + len(rec)] = bytes(len(rec)) if self._garble == "zeros" else rec
        return True

    def _d0_getdomaininfolist(self, op: bytearray) -> bool:
        lay = self.dom0op
        p = "u.getdomaininfolist."
        max_domains = lay.get(op, p + "max_domains")
        buf = lay.get(op, p + "buffer")
        n, data = self.host.records(lay.get(op, p + "first_domain"), max_domains)
        if n and not buf:
            raise HypercallFailed(E.EFAULT)
        if self._garble == "record_size" and n:
            size = self.info_size
            data = b"".join(data[i:i + size - 8] for i in range(0, len(data), size))
        if data:
            self.write(buf, data)
        lay.put(op, p + "num_domains", max_domains + 1 if self._garble == "count" else n)
        return True

    def _d0_pause(self, op: bytearray) -> bool:
        d = self._d0_domain(op, "pausedomain")
        if d.is_dom0:
            raise HypercallFailed(E.EINVAL)  # d == current->domain
        if d.pause_count == 0:  # DOMF_ctrl_pause: a flag
            d.fold(self.host.now())
            d.pause_count = 1
        return False

    def _d0_unpause(self, op: bytearray) -> bool:
        d = self._d0_domain(op, "unpausedomain")
        if d.is_dom0 or not d.built:
            raise HypercallFailed(E.EINVAL)  # current->domain, or vcpu 0 not _VCPUF_initialised
        if d.pause_count:
            d.fold(self.host.now())
            d.pause_count = 0
        return False

    def _d0_destroy(self, op: bytearray) -> bool:
        d = self._d0_domain(op, "destroydomain")
        if d.is_dom0:
            raise HypercallFailed(E.EINVAL)
        d.fold(self.host.now())  # domain_kill(): no EAGAIN in this era
        self.host.remove(d)
        return False

    def _d0_createdomain(self, op: bytearray) -> bool:
        lay = self.dom0op
        host = self.host
        want = lay.get(op, "u.createdomain.domain")
        domid: Optional[int] = None
        if 0 < want < DOMID_FIRST_RESERVED:
            if want in host.domains:
                raise HypercallFailed(E.EINVAL)
            domid = want
        try:
            new = host.create(domid, bytes(lay.get(op, "u.createdomain.handle")), 1, vcpu0=True)
        except OSError as exc:
            raise HypercallFailed(exc.errno or E.ENOMEM) from None
        lay.put(op, "u.createdomain.domain", new.domid)
        return True

    def _d0_max_vcpus(self, op: bytearray) -> bool:
        n = self.dom0op.get(op, "u.max_vcpus.max")
        if n > DOM0_OP_MAX_VIRT_CPUS:
            raise HypercallFailed(E.EINVAL)
        d = self._d0_domain(op, "max_vcpus")
        if d.built:
            raise HypercallFailed(E.EINVAL)  # only before the domain is constructed
        if n != DOM0_OP_MAX_VIRT_CPUS and len(d.vcpus) > n:
            raise HypercallFailed(E.EINVAL)  # cannot reduce
        d.max_vcpus = max(d.max_vcpus, n)
        self.host.alloc_vcpus(d, n)
        return False

    def _d0_max_mem(self, op: bytearray) -> bool:
        d = self._d0_domain(op, "setdomainmaxmem")
        d.max_pages = self.dom0op.get(op, "u.setdomainmaxmem.max_memkb") >> 2
        d.changed()
        return False

    def _d0_vcpu(self, d: Domain, vcpu: int, missing: int) -> int:
        if vcpu >= DOM0_OP_MAX_VIRT_CPUS:
            raise HypercallFailed(E.EINVAL)
        if vcpu >= len(d.vcpus):
            raise HypercallFailed(missing)
        return vcpu

    def _d0_getvcpuinfo(self, op: bytearray) -> bool:
        lay = self.dom0op
        p = "u.getvcpuinfo."
        d = self._d0_domain(op, "getvcpuinfo")
        v = d.vcpus[self._d0_vcpu(d, lay.get(op, p + "vcpu"), E.ESRCH)]
        lay.put(op, p + "online", int(v.online))
        lay.put(op, p + "blocked", int(v.blocked))
        lay.put(op, p + "running", int(d.vcpu_running(v)))
        lay.put(op, p + "cpu_time", d.vcpu_time(v, self.host.now()))
        lay.put(op, p + "cpu", v.cpu)
        if "pincpudomain" in self._dom0_names.values():
            cpumap = v.cpumap_raw  # 3.0.0: the map as last given
        else:
            cpumap = sum(1 << c for c in v.hard if c < 64)
        lay.put(op, p + "cpumap", cpumap & M64)
        return True

    def _d0_setvcpuaffinity(self, op: bytearray) -> bool:
        lay = self.dom0op
        p = "u.setvcpuaffinity."
        d = self._d0_domain(op, "setvcpuaffinity")
        v = d.vcpus[self._d0_vcpu(d, lay.get(op, p + "vcpu"), E.EINVAL)]
        bits = lay.get(op, p + "cpumap")
        new = frozenset(c for c in range(min(self.host.pcpus, 64)) if bits >> c & 1)
        if not new & self.host.all_cpus:
            raise HypercallFailed(E.EINVAL)  # vcpu_set_affinity(): no online cpu in the map
        v.hard = new
        if v.cpu not in new:
            v.cpu = min(new)
        d.changed()
        return False

    def _d0_pincpudomain(self, op: bytearray) -> bool:
        # Xen 3.0.0: the map is stored as given; RUNANYWHERE unpins, anything else pins the vcpu
        # to its first cpu (modulo the online cpus).  An empty map (find_first_set_bit(0) is
        # undefined in Xen) answers EINVAL here.
        lay = self.dom0op
        p = "u.pincpudomain."
        d = self._d0_domain(op, "pincpudomain")
        v = d.vcpus[self._d0_vcpu(d, lay.get(op, p + "vcpu"), E.EINVAL)]
        bits = lay.get(op, p + "cpumap")
        if not bits:
            raise HypercallFailed(E.EINVAL)
        v.cpumap_raw = bits
        if bits == CPUMAP_RUNANYWHERE:
            v.hard = self.host.all_cpus
        else:
            v.cpu = ((bits & -bits).bit_length() - 1) % self.host.pcpus
            v.hard = frozenset([v.cpu])
        d.changed()
        return False

    def _d0_physinfo(self, op: bytearray) -> bool:
        # xen/arch/x86/dom0_ops.c: one node; sockets_per_node covers every online cpu.
        lay = self.dom0op
        host = self.host
        threads, cores, _sockets = host.topology()
        p = "u.physinfo."
        values = {"threads_per_core": threads, "cores_per_socket": cores,
                  "sockets_per_node": host.pcpus // (threads * cores), "nr_nodes": 1, "cpu_khz": 2_400_000,
                  "total_pages": host.total_pages, "free_pages": host.free_pages}
        for k, val in values.items():
            lay.put(op, p + k, val)
        lay.put(op, p + "hw_cap", _hw_cap(lay.fields[p + "hw_cap"].count))
        return True

    def _d0_sched_id(self, op: bytearray) -> bool:
        self.dom0op.put(op, "u.sched_id.sched_id", self.host.sched_id)
        return True

    def _d0_readconsole(self, op: bytearray) -> bool:
        lay = self.dom0op
        p = "u.readconsole."
        count = lay.get(op, p + "count")
        buf = lay.get(op, p + "buffer")
        data, _index = self.host.console.read(count, bool(lay.get(op, p + "clear")), False, 0, False)
        if data:
            if not buf:
                raise HypercallFailed(E.EFAULT)
            self.write(buf, data)
        lay.put(op, p + "count", count + 1 if self._garble == "count" else len(data))
        return True
