"""The simulator's domctl hypercall (see :class:`~xenprivcmd.sim.SimTransport`)."""

from __future__ import annotations

import errno as E
from typing import Optional

from ._actions import DomainActions
from ._base import M32, HypercallFailed
from ._host import MAX_VIRT_CPUS, Domain


class DomctlMixin(DomainActions):
    """domctl: one handler per XEN_DOMCTL_ command, on the domain the request names."""

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
        return self._apply(addr, self.domctl, entry[0], op, lambda: entry[1](op, d))

    def _getdomaininfo(self, op: bytearray, d: Optional[Domain]) -> bool:
        lay = self.domctl
        if d is None:  # before 4.18: the next domain at or after the one asked for
            d = self.host.next_domain(lay.get(op, "domain"))
            if d is None:
                raise HypercallFailed(E.ESRCH)
        d = self._act_getdomaininfo(lay, op, d)
        lay.put(op, "domain", d.domid)
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
        return self._act_pause(d, counted=self._pause_count)

    def _unpause(self, op: bytearray, d: Optional[Domain]) -> bool:
        assert d is not None
        return self._act_unpause(d, counted=self._pause_count)

    def _destroy(self, op: bytearray, d: Optional[Domain]) -> bool:
        assert d is not None
        return self._act_destroy(d, eagain=self._destroy_eagain)

    def _max_mem(self, op: bytearray, d: Optional[Domain]) -> bool:
        assert d is not None
        return self._act_max_mem(d, self.domctl.get(op, "u.max_mem.max_memkb"), M32)

    def _max_vcpus(self, op: bytearray, d: Optional[Domain]) -> bool:
        assert d is not None
        n = self.domctl.get(op, "u.max_vcpus.max")
        return self._act_max_vcpus(d, n, MAX_VIRT_CPUS, fixed=self._create_max_vcpus)

    def _vcpu(self, d: Domain, vcpu: int) -> int:
        return self._act_vcpu(d, vcpu, d.max_vcpus)

    def _getvcpuinfo(self, op: bytearray, d: Optional[Domain]) -> bool:
        assert d is not None
        return self._act_getvcpuinfo(self.domctl, op, "u.getvcpuinfo.", d, d.max_vcpus)

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
        max_vcpus = 0
        if self._create_max_vcpus:
            max_vcpus = lay.get(op, "u.createdomain.max_vcpus")
            if not 1 <= max_vcpus <= MAX_VIRT_CPUS:
                raise HypercallFailed(E.EINVAL)
        hvm_flag = self.tables.const("XEN_DOMCTL_CDF_hvm", self.tables.const("XEN_DOMCTL_CDF_hvm_guest", 1)) or 1
        flags = lay.get(op, "u.createdomain.flags") if "u.createdomain.flags" in lay else 0
        if host.is_arm and host.xen >= (4, 12):
            # arch_sanitise_domain_config: HVM and HAP required, IOMMU and vPMU optional
            c = self.tables.const
            hap = c("XEN_DOMCTL_CDF_hap", 2) or 2
            optional = (c("XEN_DOMCTL_CDF_iommu", 0) or 0) | (c("XEN_DOMCTL_CDF_vpmu", 0) or 0)
            if flags & ~optional != hvm_flag | hap:
                raise HypercallFailed(E.EINVAL)
        done = self._act_createdomain(lay, op, "domain", max_vcpus, hvm=bool(flags & hvm_flag))
        if host.is_arm:
            # arch_domain_create writes back what it chose: GIC_NATIVE becomes the host's
            # vGIC (a GICv3 here, as QEMU's virt machine of the real-Xen suites), and the
            # timer's clock-frequency stays 0 (the host's device tree gives none)
            for p in ("u.createdomain.arch.gic_version", "u.createdomain.config.gic_version"):
                if p in lay and lay.get(op, p) == (self.tables.const("XEN_DOMCTL_CONFIG_GIC_NATIVE", 0) or 0):
                    lay.put(op, p, self.tables.const("XEN_DOMCTL_CONFIG_GIC_V3", 2) or 2)
        return done
