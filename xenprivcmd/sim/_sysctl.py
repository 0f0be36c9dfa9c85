"""The simulator's sysctl hypercall (see :class:`~xenprivcmd.sim.SimTransport`)."""

from __future__ import annotations

import errno as E

from ._actions import DomainActions
from ._base import MAX_NUMNODES, HypercallFailed, _cputopo, _meminfo, _u32, _u64


class SysctlMixin(DomainActions):
    """sysctl: one handler per XEN_SYSCTL_ command."""

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
        return self._apply(addr, self.sysctl, entry[0], op, lambda: entry[1](op))

    def _getdomaininfolist(self, op: bytearray) -> bool:
        return self._act_getdomaininfolist(self.sysctl, op, "u.getdomaininfolist.")

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
            "outstanding_pages": sum(host.claims.values()), "max_mfn": host.total_pages + 0x100000 - 1,
        }
        self._act_physinfo(lay, op, p, values)
        if p + "cpu_to_node" in lay and lay.get(op, p + "cpu_to_node"):
            handle = lay.get(op, p + "cpu_to_node")
            n = min(lay.get(op, p + "max_cpu_id"), host.pcpus - 1) + 1
            self.write(handle, b"".join(_u32.pack(host.cpu_node(i)) for i in range(n)))
        return True

    def _sched_id(self, op: bytearray) -> bool:
        return self._act_sched_id(self.sysctl, op)

    def _readconsole(self, op: bytearray) -> bool:
        return self._act_readconsole(self.sysctl, op)

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
        if asked != num:
            lay.put(op, p + "num_cpus", num)
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
        lay.put(op, p + "max_cpu_index", last)
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
            if asked != num:
                lay.put(op, p + "num_nodes", num)
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
        lay.put(op, p + "max_node_index", last)
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
        lay.put(op, p + "nr_cpus", n)
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
