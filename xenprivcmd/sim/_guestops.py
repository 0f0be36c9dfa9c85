"""The simulator's memory_op, hvm_op and event_channel_op on other domains.

``XENMEM_populate_physmap`` gives a domain fresh machine frames (an x86 PV
domain's are written back over the list; a translated domain's list stays as it
was), counted in its tot_pages and stopped, as Xen stops, at the domain's
max_pages or the host's free memory; ``decrease_reservation`` takes frames
back, stopping at the first the domain lacks; ``claim_pages`` reserves free
pages (physinfo's outstanding_pages); ``maximum_gpfn`` answers the physmap's
top.  ``HVMOP_get_param``/``set_param`` keep each translated domain's
parameters (an Arm guest's rings and ports as xl leaves them); an x86 PV
domain has none (EINVAL).  ``EVTCHNOP_alloc_unbound``/``status`` act on
the host's event-channel table (:mod:`._evtchn`).
"""

from __future__ import annotations

import errno as E
from typing import Dict, Optional, Tuple

from ..abi.hypercalls import HYPERVISOR_event_channel_op as EVENT_CHANNEL_OP
from ..abi.hypercalls import HYPERVISOR_hvm_op as HVM_OP
from ..abi.hypercalls import HYPERVISOR_memory_op as MEMORY_OP
from ._base import DOMID_SELF, SimBase, _u64
from ._evtchn import CONSOLE_PORT, STORE_PORT
from ._host import Domain
from ._memory import CONSOLE_MAGIC_GFN, STORE_MAGIC_GFN

__all__ = ["GuestOpsMixin", "CTLDOM_MAX_ORDER", "MEMORY_OP", "HVM_OP", "EVENT_CHANNEL_OP"]

#: The largest extent order Xen lets a control domain populate for another (EPERM beyond)
CTLDOM_MAX_ORDER = 12
_MEMOP_CMD_MASK = (1 << 6) - 1

#: the table family of each argument struct
_FAMILY = {"xen_memory_reservation": "memory", "xen_hvm_param": "hvm", "evtchn_alloc_unbound": "evtchn",
           "evtchn_status": "evtchn"}
#: hypercall -> (constants' prefix, the sub-ops simulated)
_SUBOPS = {MEMORY_OP: ("XENMEM_", ("populate_physmap", "decrease_reservation", "claim_pages", "maximum_gpfn")),
           HVM_OP: ("HVMOP_", ("get_param", "set_param")),
           EVENT_CHANNEL_OP: ("EVTCHNOP_", ("alloc_unbound", "status"))}


class GuestOpsMixin(SimBase):
    """memory_op, hvm_op and event_channel_op (see the module doc)."""

    def guest_subop(self, op: int, cmd: int) -> Optional[str]:
        """The name of sub-op ``cmd`` of hypercall ``op`` among those simulated (the log's and
        the faults'); None for another."""
        prefix, names = _SUBOPS.get(op, ("", ()))
        if op == MEMORY_OP:
            cmd &= _MEMOP_CMD_MASK
        k = self.host.variant.constants
        for n in names:
            if k.get(prefix + n) == cmd:
                return n
        return None

    def _guest(self, domid: int) -> Domain:
        if domid == DOMID_SELF:
            domid = 0
        d = self.host.domain(domid)
        if d is None or d.dying:
            raise self._fail(E.ESRCH, f"no domain {domid}")
        if not self.privileged and domid != 0:
            raise self._fail(E.EPERM, "not a privileged domain")
        return d

    def _struct(self, name: str, addr: int) -> Tuple[object, bytearray]:
        if not addr:
            raise self._fail(E.EFAULT)
        lay = self.host.family(_FAMILY[name]).layout(name)
        return lay, bytearray(self.read(addr, lay.size))

    # -- memory_op -------------------------------------------------------------------------
    def _do_memory_op(self, cmd: int, addr: int) -> int:
        name = self.guest_subop(MEMORY_OP, cmd)
        if name in ("populate_physmap", "decrease_reservation", "claim_pages"):
            lay, r = self._struct("xen_memory_reservation", addr)
            get = lay.get  # type: ignore[attr-defined]
            d = self._guest(get(r, "domid"))
            n, order, start = get(r, "nr_extents"), get(r, "extent_order"), get(r, "extent_start")
            if name == "claim_pages":
                return self._claim(d, n, order)
            if order > CTLDOM_MAX_ORDER:
                return 0
            if n and not start:
                raise self._fail(E.EFAULT)
            return self._populate(d, n, order, start) if name == "populate_physmap" else \
                self._decrease(d, n, order, start)
        if name == "maximum_gpfn":
            if not addr:
                raise self._fail(E.EFAULT)
            d = self._guest(int.from_bytes(self.read(addr, 2), "little"))
            return int(self.host.memory.guest(d).max_gpfn())
        raise self._fail(E.ENOSYS, f"memory_op {cmd} not simulated")

    def _populate(self, d: Domain, n: int, order: int, start: int) -> int:
        host, mem = self.host, self.host.memory
        g = mem.guest(d)
        pages = 1 << order
        with mem.lock:
            for i in range(n):
                if d.tot_pages + pages > d.max_pages or pages > host.free_pages:
                    return i
                at = start + 8 * i
                gfn = _u64.unpack(self.read(at, 8))[0]
                first = mem.fresh_mfn()
                for _ in range(pages - 1):
                    mem.fresh_mfn()  # an extent is contiguous
                for j in range(pages):
                    g.p2m[gfn + j] = first + j
                    g.removed.pop(gfn + j, None)
                d.tot_pages += pages
                host.used_pages += pages
                claims = host.claims
                if claims.get(d.domid):
                    claims[d.domid] = max(0, claims[d.domid] - pages)
                if not g.translated:
                    self.write(at, _u64.pack(first))
        d.changed()
        return n

    def _decrease(self, d: Domain, n: int, order: int, start: int) -> int:
        host, mem = self.host, self.host.memory
        g = mem.guest(d)
        pages = 1 << order
        with mem.lock:
            for i in range(n):
                frame = _u64.unpack(self.read(start + 8 * i, 8))[0]
                gfns = []
                for j in range(pages):
                    gfn = frame + j if g.translated else self._gfn_of(g, frame + j)
                    if gfn is None or g.mfn(gfn) is None:
                        return i
                    gfns.append(gfn)
                for gfn in gfns:
                    mfn = g.p2m.pop(gfn, None)
                    if mfn is None:
                        g.removed[gfn] = None
                        mfn = g.base + gfn
                    mem.ram.release(("mfn", mfn))
                d.tot_pages -= pages
                host.used_pages -= pages
        d.changed()
        return n

    @staticmethod
    def _gfn_of(g: object, mfn: int) -> Optional[int]:
        """The gfn holding machine frame ``mfn`` of a PV domain (None: not the domain's)."""
        for gfn, m in g.p2m.items():  # type: ignore[attr-defined]
            if m == mfn:
                return int(gfn)
        gfn = mfn - g.base  # type: ignore[attr-defined]
        if 0 <= gfn < g.implicit and gfn not in g.removed and gfn not in g.p2m:  # type: ignore[attr-defined]
            return int(gfn)
        return None

    def _claim(self, d: Domain, pages: int, order: int) -> int:
        """Xen's domain_set_outstanding_pages: 0 unsets; one claim a domain; a claim is of the
        pages above what the domain has, up to its max_pages, within free memory."""
        if order:
            raise self._fail(E.EINVAL, "claim_pages: order must be 0")
        claims = self.host.claims
        if pages == 0:
            claims.pop(d.domid, None)
            return 0
        if claims.get(d.domid):
            raise self._fail(E.EINVAL, "claim_pages: the domain has a claim already")
        if pages <= d.tot_pages or pages > d.max_pages:
            raise self._fail(E.EINVAL, "claim_pages: not above tot_pages, or above max_pages")
        claim = pages - d.tot_pages
        if claim > self.host.free_pages - sum(claims.values()):
            raise self._fail(E.ENOMEM, "claim_pages: not that much free memory")
        claims[d.domid] = claim
        return 0

    # -- hvm_op ------------------------------------------------------------------------------
    def _do_hvm_op(self, cmd: int, addr: int) -> int:
        name = self.guest_subop(HVM_OP, cmd)
        if name not in ("get_param", "set_param"):
            raise self._fail(E.ENOSYS, f"hvm_op {cmd} not simulated")
        lay, p = self._struct("xen_hvm_param", addr)
        get = lay.get  # type: ignore[attr-defined]
        d = self._guest(get(p, "domid"))
        index = get(p, "index")
        k = self.host.variant.constants
        if index >= int(k.get("HVM_NR_PARAMS", 0)):
            raise self._fail(E.EINVAL, f"hvm_op: no parameter {index}")
        if not d.hvm:
            raise self._fail(E.EINVAL, f"hvm_op: domain {d.domid} is no HVM domain")
        params = self._params(d)
        if name == "set_param":
            params[index] = get(p, "value")
            return 0
        lay.put(p, "value", params.get(index, 0))  # type: ignore[attr-defined]
        self.write(addr, bytes(p))
        return 0

    def _params(self, d: Domain) -> Dict[int, int]:
        got = self.host.hvm_params.get(d.domid)
        if got is None:
            got = self.host.hvm_params[d.domid] = {}
            k = self.host.variant.constants
            if self.host.is_arm and d.built and d.pv and not d.is_dom0:  # what xl leaves an Arm guest
                self.host.memory.magic(d)
                for key, value in (("STORE_PFN", STORE_MAGIC_GFN), ("CONSOLE_PFN", CONSOLE_MAGIC_GFN),
                                   ("STORE_EVTCHN", STORE_PORT), ("CONSOLE_EVTCHN", CONSOLE_PORT)):
                    if "HVM_PARAM_" + key in k:
                        got[int(k["HVM_PARAM_" + key])] = value
        return got

    # -- event_channel_op ----------------------------------------------------------------------
    def _do_event_channel_op(self, cmd: int, addr: int) -> int:
        name = self.guest_subop(EVENT_CHANNEL_OP, cmd)
        table = self.host.evtchn
        if name == "alloc_unbound":
            lay, a = self._struct("evtchn_alloc_unbound", addr)
            get = lay.get  # type: ignore[attr-defined]
            d = self._guest(get(a, "dom"))
            remote = get(a, "remote_dom")
            remote = 0 if remote == DOMID_SELF else remote
            try:
                port = table.alloc_unbound(d.domid, remote)
            except OSError as exc:
                raise self._fail(exc.errno or E.EINVAL, str(exc)) from None
            lay.put(a, "port", port)  # type: ignore[attr-defined]
            self.write(addr, bytes(a))
            return 0
        if name == "status":
            lay, s = self._struct("evtchn_status", addr)
            get, put = lay.get, lay.put  # type: ignore[attr-defined]
            d = self._guest(get(s, "dom"))
            try:
                state, vcpu, first, second = table.status(d.domid, get(s, "port"))
            except OSError as exc:
                raise self._fail(exc.errno or E.EINVAL, str(exc)) from None
            k = self.host.variant.constants
            put(s, "status", int(k["EVTCHNSTAT_" + state]))
            put(s, "vcpu", vcpu)
            if state in ("unbound", "interdomain"):
                put(s, "u.interdomain.dom", first)
                if state == "interdomain":
                    put(s, "u.interdomain.port", second)
            elif state == "virq":
                put(s, "u.virq", first)
            self.write(addr, bytes(s))
            return 0
        raise self._fail(E.ENOSYS, f"event_channel_op {cmd} not simulated")
