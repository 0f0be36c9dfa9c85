"""The simulator's dom0_op hypercall, Xen 3.0.0-3.0.2 (see :class:`~xenprivcmd.sim.SimTransport`)."""

from __future__ import annotations

import errno as E
from typing import Tuple

from ._actions import DomainActions
from ._base import DOMID_SELF, M64, HypercallFailed
from ._host import CPUMAP_RUNANYWHERE, DOM0_OP_MAX_VIRT_CPUS, Domain, Vcpu


class Dom0OpMixin(DomainActions):
    """dom0_op: one handler per DOM0_ command, each finding its domain in its union member."""

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
        return self._apply(addr, self.dom0op, entry[0], op, lambda: entry[1](op))

    def _d0_domain(self, op: bytearray, member: str) -> Domain:
        d = self.host.domain(self.dom0op.get(op, f"u.{member}.domain"))
        if d is None:
            raise HypercallFailed(E.ESRCH)
        return d

    def _d0_getdomaininfo(self, op: bytearray) -> bool:
        dom = self.dom0op.get(op, "u.getdomaininfo.domain")
        d = self.host.next_domain(0 if dom == DOMID_SELF else dom)  # the first domain at or after it
        if d is None:
            raise HypercallFailed(E.ESRCH)
        self._act_getdomaininfo(self.dom0op, op, d)
        return True

    def _d0_getdomaininfolist(self, op: bytearray) -> bool:
        return self._act_getdomaininfolist(self.dom0op, op, "u.getdomaininfolist.")

    def _d0_pause(self, op: bytearray) -> bool:
        return self._act_pause(self._d0_domain(op, "pausedomain"), counted=False)  # DOMF_ctrl_pause: a flag

    def _d0_unpause(self, op: bytearray) -> bool:
        return self._act_unpause(self._d0_domain(op, "unpausedomain"), counted=False, built_only=True)

    def _d0_destroy(self, op: bytearray) -> bool:
        return self._act_destroy(self._d0_domain(op, "destroydomain"), eagain=False)  # domain_kill(): no EAGAIN

    def _d0_createdomain(self, op: bytearray) -> bool:
        return self._act_createdomain(self.dom0op, op, "u.createdomain.domain", 1, vcpu0=True)

    def _d0_max_vcpus(self, op: bytearray) -> bool:
        n = self.dom0op.get(op, "u.max_vcpus.max")
        if n > DOM0_OP_MAX_VIRT_CPUS:
            raise HypercallFailed(E.EINVAL)  # before the domain is looked up
        d = self._d0_domain(op, "max_vcpus")
        return self._act_max_vcpus(d, n, DOM0_OP_MAX_VIRT_CPUS, fixed=False, unbuilt_only=True)

    def _d0_max_mem(self, op: bytearray) -> bool:
        d = self._d0_domain(op, "setdomainmaxmem")
        return self._act_max_mem(d, self.dom0op.get(op, "u.setdomainmaxmem.max_memkb"), M64)

    def _d0_vcpu(self, d: Domain, vcpu: int, missing: int) -> int:
        return self._act_vcpu(d, vcpu, DOM0_OP_MAX_VIRT_CPUS, missing)

    def _d0_vcpu_map(self, op: bytearray, member: str) -> Tuple[Domain, Vcpu, int]:
        """The domain, the vcpu (EINVAL past the allocated ones) and the cpumap of a pinning command."""
        lay = self.dom0op
        d = self._d0_domain(op, member)
        v = d.vcpus[self._d0_vcpu(d, lay.get(op, f"u.{member}.vcpu"), E.EINVAL)]
        return d, v, lay.get(op, f"u.{member}.cpumap")

    def _d0_getvcpuinfo(self, op: bytearray) -> bool:
        d = self._d0_domain(op, "getvcpuinfo")
        return self._act_getvcpuinfo(self.dom0op, op, "u.getvcpuinfo.", d, DOM0_OP_MAX_VIRT_CPUS)

    def _d0_setvcpuaffinity(self, op: bytearray) -> bool:
        d, v, bits = self._d0_vcpu_map(op, "setvcpuaffinity")
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
        d, v, bits = self._d0_vcpu_map(op, "pincpudomain")
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
        host = self.host
        threads, cores, _sockets = host.topology()
        return self._act_physinfo(self.dom0op, op, "u.physinfo.", {
            "threads_per_core": threads, "cores_per_socket": cores,
            "sockets_per_node": host.pcpus // (threads * cores), "nr_nodes": 1, "cpu_khz": 2_400_000,
            "total_pages": host.total_pages, "free_pages": host.free_pages})

    def _d0_sched_id(self, op: bytearray) -> bool:
        return self._act_sched_id(self.dom0op, op)

    def _d0_readconsole(self, op: bytearray) -> bool:
        return self._act_readconsole(self.dom0op, op)
