"""The domain actions domctl / sysctl and dom0_op share (see :class:`~xenprivcmd.sim.SimTransport`).

One method per action; the family handlers (:mod:`._domctl`, :mod:`._sysctl`,
:mod:`._dom0op`) find the domain, then call it with where the request keeps
its fields (the layout, the request bytes, the union member's prefix) and the
release's rules (a pause count or a flag, EAGAIN on destroy, the vcpu limit).
"""

from __future__ import annotations

import errno as E
from typing import Dict, Optional

from ._base import M64, HypercallFailed, SimBase, _hw_cap
from ._host import DOMID_FIRST_RESERVED, Domain
from ._layout import Layout


class DomainActions(SimBase):
    """The actions, each raising :class:`~._base.HypercallFailed` as Xen fails them."""

    def _act_pause(self, d: Domain, counted: bool) -> bool:
        """pausedomain: a count (4.5+, EOVERFLOW at 255) or a flag; never the caller itself."""
        if d.is_dom0:
            raise HypercallFailed(E.EINVAL)  # d == current->domain
        if counted:
            if d.pause_count >= 255:
                raise HypercallFailed(E.EOVERFLOW)
            d.fold(self.host.now())
            d.pause_count += 1
        elif d.pause_count == 0:
            d.fold(self.host.now())
            d.pause_count = 1
        return False

    def _act_unpause(self, d: Domain, counted: bool, built_only: bool = False) -> bool:
        """unpausedomain: one count down (EINVAL at 0) or the flag cleared; ``built_only``
        (3.0): the caller itself or a domain whose vcpu 0 has no context is EINVAL."""
        if built_only and (d.is_dom0 or not d.built):
            raise HypercallFailed(E.EINVAL)  # current->domain, or vcpu 0 not _VCPUF_initialised
        if counted:
            if d.pause_count == 0:
                raise HypercallFailed(E.EINVAL)
            d.fold(self.host.now())
            d.pause_count -= 1
        elif d.pause_count:
            d.fold(self.host.now())
            d.pause_count = 0
        return False

    def _act_destroy(self, d: Domain, eagain: bool) -> bool:
        """destroydomain; ``eagain`` (Xen <= 4.5): relinquishing resources is preemptible,
        the toolstack retries EAGAIN (once or twice here)."""
        if d.is_dom0:
            raise HypercallFailed(E.EINVAL)  # domain_kill(current->domain)
        if eagain and d.destroy_tries < 1 + (d.domid % 2):
            d.fold(self.host.now())
            d.dying = True
            d.destroy_tries += 1
            raise HypercallFailed(E.EAGAIN)
        d.fold(self.host.now())
        self.host.remove(d)
        return False

    def _act_max_mem(self, d: Domain, kib: int, limit: int) -> bool:
        """max_mem / setdomainmaxmem: the page limit, at most ``limit`` pages."""
        d.max_pages = min(kib >> 2, limit)
        d.changed()
        return False

    def _act_max_vcpus(self, d: Domain, n: int, limit: int, fixed: bool, unbuilt_only: bool = False) -> bool:
        """max_vcpus: ``fixed`` (4.12+) only confirms createdomain's count; else it may
        grow to ``limit``, never shrink; ``unbuilt_only`` (3.0): only before the domain is built."""
        if d.is_dom0 or (unbuilt_only and d.built):
            raise HypercallFailed(E.EINVAL)
        if fixed:
            if n != d.max_vcpus:
                raise HypercallFailed(E.EINVAL)
        else:
            if n > limit or n < len(d.vcpus):  # cannot reduce
                raise HypercallFailed(E.EINVAL)
            d.max_vcpus = max(n, d.max_vcpus)
        self.host.alloc_vcpus(d, n)
        return False

    def _act_vcpu(self, d: Domain, vcpu: int, limit: int, missing: int = E.ESRCH) -> int:
        """A vcpu index: EINVAL at or past ``limit``, ``missing`` past the allocated ones."""
        if vcpu >= limit:
            raise HypercallFailed(E.EINVAL)
        if vcpu >= len(d.vcpus):
            raise HypercallFailed(missing)
        return vcpu

    def _act_getvcpuinfo(self, lay: Layout, op: bytearray, p: str, d: Domain, limit: int) -> bool:
        """getvcpuinfo into the member at ``p`` (with its cpumap where it has one: 3.0)."""
        v = d.vcpus[self._act_vcpu(d, lay.get(op, p + "vcpu"), limit)]
        lay.put(op, p + "online", int(v.online))
        lay.put(op, p + "blocked", int(v.blocked))
        lay.put(op, p + "running", int(d.vcpu_running(v)))
        lay.put(op, p + "cpu_time", d.vcpu_time(v, self.host.now()))
        lay.put(op, p + "cpu", v.cpu)
        if p + "cpumap" in lay:
            if "pincpudomain" in self._dom0_names.values():
                cpumap = v.cpumap_raw  # 3.0.0: the map as last given
            else:
                cpumap = sum(1 << c for c in v.hard if c < 64)
            lay.put(op, p + "cpumap", cpumap & M64)
        return True

    def _act_createdomain(self, lay: Layout, op: bytearray, domid_path: str, max_vcpus: int, hvm: bool = False,
                          vcpu0: bool = False) -> bool:
        """createdomain: the domid asked for (EINVAL if taken) or the next free one, written back."""
        host = self.host
        want = lay.get(op, domid_path)
        domid: Optional[int] = None
        if 0 < want < DOMID_FIRST_RESERVED:
            if want in host.domains:
                raise HypercallFailed(E.EINVAL)
            domid = want
        handle = bytes(lay.get(op, "u.createdomain.handle"))
        try:
            new = host.create(domid, handle, max_vcpus, hvm=hvm, vcpu0=vcpu0)
        except OSError as exc:
            raise HypercallFailed(exc.errno or E.ENOMEM) from None
        lay.put(op, domid_path, new.domid)
        return True

    def _act_getdomaininfo(self, lay: Layout, op: bytearray, d: Domain) -> Domain:
        """getdomaininfo: ``d``'s record into ``u.getdomaininfo``."""
        rec = d.record(self.host.packer, self.host.now())
        at = lay.offset("u.getdomaininfo.domain")
        op[at:at + len(rec)] = rec
        return d

    def _act_getdomaininfolist(self, lay: Layout, op: bytearray, p: str) -> bool:
        """getdomaininfolist: the records from ``first_domain`` on."""
        max_domains = lay.get(op, p + "max_domains")
        buf = lay.get(op, p + "buffer")
        n, data = self.host.records(lay.get(op, p + "first_domain"), max_domains)
        if n and not buf:
            raise HypercallFailed(E.EFAULT)
        if data:
            self.write(buf, data)
        lay.put(op, p + "num_domains", n)
        return True

    def _act_physinfo(self, lay: Layout, op: bytearray, p: str, values: Dict[str, int]) -> bool:
        """physinfo: ``values`` into the fields the release has, and the x86 CPUID words."""
        for k, v in values.items():
            if p + k in lay:
                lay.put(op, p + k, v)
        if p + "hw_cap" in lay and not self.host.is_arm:  # x86 CPUID words; zero on Arm
            lay.put(op, p + "hw_cap", _hw_cap(lay.fields[p + "hw_cap"].count))
        return True

    def _act_sched_id(self, lay: Layout, op: bytearray) -> bool:
        lay.put(op, "u.sched_id.sched_id", self.host.sched_id)
        return True

    def _act_readconsole(self, lay: Layout, op: bytearray) -> bool:
        """readconsole: the console ring into ``buffer`` (with an index where the release has one)."""
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
        lay.put(op, p + "count", len(data))
        if has_index:
            lay.put(op, p + "index", index)
        return True
