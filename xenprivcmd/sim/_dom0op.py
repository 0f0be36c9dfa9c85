"""The simulator's dom0_op hypercall, Xen 3.0.0-3.0.2 (see :class:`~xenprivcmd.sim.SimTransport`)."""

from __future__ import annotations

import errno as E
from typing import Optional

from ._base import DOMID_SELF, M64, HypercallFailed, SimBase, _hw_cap
from ._host import CPUMAP_RUNANYWHERE, DOM0_OP_MAX_VIRT_CPUS, DOMID_FIRST_RESERVED, Domain


class Dom0OpMixin(SimBase):
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
