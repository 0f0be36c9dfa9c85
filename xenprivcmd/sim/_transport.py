"""SimTransport: the simulated hypervisor behind the privcmd boundary.

The dispatch (fault matching, the log, multicall) is here; each hypercall family's
handlers are a mixin of their own: :mod:`._xenver`, :mod:`._domctl`, :mod:`._sysctl`,
:mod:`._dom0op`, on the shared helpers of :mod:`._base`.
"""

from __future__ import annotations

import collections
import errno as E
import threading
from typing import Any, Deque, Dict, Optional, Tuple, Union

from ..abi import hypercalls as hc
from ._base import DOMID_SELF, M32, M64, HypercallFailed, SimBase, _mc_entry, _s64, _u32
from ._build import MMUEXT_OP, BuildOpsMixin
from ._devices import SimDevices
from ._dom0op import Dom0OpMixin
from ._domctl import DomctlMixin
from ._faults import Fault, Faults
from ._garbling import GarbleLayer
from ._guestops import EVENT_CHANNEL_OP, HVM_OP, MEMORY_OP, GuestOpsMixin
from ._host import Host
from ._sysctl import SysctlMixin
from ._xenver import XenVersionMixin

__all__ = ["SimTransport", "HypercallFailed", "DOMID_SELF", "M32", "M64"]


class SimTransport(GarbleLayer, XenVersionMixin, DomctlMixin, SysctlMixin, Dom0OpMixin, GuestOpsMixin, BuildOpsMixin,
                   SimDevices, SimBase):
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
        self._garble = None
        self._in_multicall = False
        #: Scribble 0xAA over each multicall entry but its result after it ran, as a debug Xen does.
        self.debug_multicall = False
        self._serial = threading.RLock()
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
        self._domctl = {}
        self._sysctl = {}
        for name, h in (("getdomaininfo", self._getdomaininfo), ("pausedomain", self._pause),
                        ("unpausedomain", self._unpause), ("destroydomain", self._destroy),
                        ("max_mem", self._max_mem), ("max_vcpus", self._max_vcpus),
                        ("getvcpuinfo", self._getvcpuinfo), ("getvcpuaffinity", self._vcpuaffinity),
                        ("setvcpuaffinity", self._vcpuaffinity), ("scheduler_op", self._scheduler_op),
                        ("createdomain", self._createdomain), ("get_domain_state", self._get_domain_state),
                        ("setvcpucontext", self._setvcpucontext), ("set_address_size", self._set_address_size),
                        ("hypercall_init", self._hypercall_init),
                        ("set_paging_mempool_size", self._set_paging_mempool_size),
                        ("get_paging_mempool_size", self._get_paging_mempool_size), ("cacheflush", self._cacheflush)):
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
        self._dom0 = {}
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

    def _forget_buffers(self) -> None:
        """After a fork, in the child: the parent's buffers are gone, and so is any thread that
        held the one-hypercall-at-a-time lock at the fork (a new lock, or the child waits forever)."""
        super()._forget_buffers()
        self._serial = threading.RLock()

    def sysfs(self) -> Any:
        """dom0's sysfs as the simulated netback and blkback fill it (guests' I/O counters)."""
        return self.host.sysfs()

    def describe(self) -> str:
        h = self.host
        return (f"sim Xen {h.xen[0]}.{h.xen[1]}{h.extraversion} ({h.release}, {len(h.domains)} domains, "
                f"{h.pcpus} pcpus, {h.sched})")

    # -- dispatch ----------------------------------------------------------------------
    def handle(self, op: int, args: Tuple[int, int, int, int, int]) -> int:
        # one hypercall at a time, as one hypervisor would keep its state consistent: threads
        # sharing a handle (an event stream and the thread acting) see whole changes only
        with self._serial:
            return self._handle(op, args)

    def _handle(self, op: int, args: Tuple[int, int, int, int, int]) -> int:
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
                if self._garble:
                    rc = self._garble_xen_version(args[0], args[1], rc)
            elif op == hc.HYPERVISOR_dom0_op and self.dom0_op_era:
                rc = self._do_dom0_op(args[0])
            elif op == hc.HYPERVISOR_domctl and not self.dom0_op_era:
                rc = self._do_domctl(args[0])
            elif op == hc.HYPERVISOR_sysctl and not self.dom0_op_era:
                rc = self._do_sysctl(args[0])
            elif op == MEMORY_OP:
                rc = self._do_memory_op(args[0], args[1])
            elif op == HVM_OP:
                rc = self._do_hvm_op(args[0], args[1])
            elif op == EVENT_CHANNEL_OP:
                rc = self._do_event_channel_op(args[0], args[1])
            elif op == MMUEXT_OP:
                rc = self._do_mmuext_op(args[0], args[1], args[2], args[3])
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
        if op in (MEMORY_OP, HVM_OP, EVENT_CHANNEL_OP):
            return self.guest_subop(op, args[0]) or args[0], args[0]
        if op == MMUEXT_OP:
            return self.mmuext_subop(args[0]), None
        return None, None
