"""Garbled replies: the fault layer's second half (see :mod:`._faults` and ``GARBLES``).

:meth:`~xenprivcmd.sim.SimTransport.handle` matches the fault plan once per
hypercall; an errno fault fails it before any handler runs, a garble kind is
applied here, to the reply the handler wrote as Xen would: before the copy back
of a domctl / sysctl / dom0_op request (:meth:`GarbleLayer._garble_reply`), or
to xen_version's strings and return value (:meth:`GarbleLayer._garble_xen_version`).
"""

from __future__ import annotations

from typing import Optional

from ._base import SimBase, _u32
from ._layout import Layout
from ._xenver import FIXED_SIZES, VARBUF_SUBS


class GarbleLayer(SimBase):
    """Each garble kind, applied after the handler ran (``self._garble``: the kind)."""

    def _garble_request(self, lay: Layout, name: str, op: bytearray) -> Optional[bytes]:
        """Before the handler: for record_size, the bytes its records will cover (the
        short records leave their tail as it was)."""
        if self._garble != "record_size" or name != "getdomaininfolist":
            return None
        p = "u.getdomaininfolist."
        buf = lay.get(op, p + "buffer")
        n = self.host.records(lay.get(op, p + "first_domain"), lay.get(op, p + "max_domains"))[0]
        return self.read(buf, n * self.info_size) if buf and n else None

    def _garble_reply(self, lay: Layout, name: str, req: bytes, op: bytearray, before: Optional[bytes]) -> None:
        """After the handler, before the copy back: garble ``op`` (the reply; ``req``: the request)."""
        kind = self._garble
        if kind == "count":
            self._garble_count(lay, name, req, op)
        elif kind == "record_size" and before is not None:
            p = "u.getdomaininfolist."
            buf, size = lay.get(op, p + "buffer"), self.info_size
            data = self.read(buf, len(before))
            self.write(buf, b"".join(data[i:i + size - 8] for i in range(0, len(data), size)) + before[-8 * (len(before) // size):])
        elif name == "getdomaininfo" and kind in ("domid", "zeros"):
            at = lay.offset("u.getdomaininfo.domain")
            if kind == "zeros":
                op[at:at + self.info_size] = bytes(self.info_size)
                return
            host = self.host
            d = host.domains.get(lay.get(op, "u.getdomaininfo.domain"))
            if d is None:
                return
            other = host.next_domain(d.domid + 1) or host.domains[0]
            if other is not d:
                op[at:at + self.info_size] = other.record(host.packer, host.now())
                if "domain" in lay:  # domctl: the domid the reply is for
                    lay.put(op, "domain", other.domid)

    def _garble_count(self, lay: Layout, name: str, req: bytes, op: bytearray) -> None:
        """count: one more than was asked (an index: one past the last asked for)."""
        def asked(field: str) -> int:
            return int(lay.get(bytearray(req), f"u.{name}.{field}"))

        last_cpu = self.host.pcpus - 1
        if name == "getdomaininfolist":
            lay.put(op, "u.getdomaininfolist.num_domains", asked("max_domains") + 1)
        elif name == "readconsole":
            lay.put(op, "u.readconsole.count", asked("count") + 1)
        elif name == "cputopoinfo":
            lay.put(op, "u.cputopoinfo.num_cpus", asked("num_cpus") + 1)
        elif name == "topologyinfo":
            lay.put(op, "u.topologyinfo.max_cpu_index", min(asked("max_cpu_index"), last_cpu) + 1)
        elif name == "numainfo":
            if "u.numainfo.meminfo" in lay:
                lay.put(op, "u.numainfo.num_nodes", asked("num_nodes") + 1)
            else:
                lay.put(op, "u.numainfo.max_node_index", min(asked("max_node_index"), self.host.nodes - 1) + 1)
        elif name == "getcpuinfo":
            lay.put(op, "u.getcpuinfo.nr_cpus", asked("max_cpus") + 1)

    def _garble_xen_version(self, sub: int, arg: int, rc: int) -> int:
        """xen_version's reply garbled: its fixed-size strings, or a xen_varbuf's size."""
        kind = self._garble
        if sub in FIXED_SIZES and kind in ("unterminated", "zeros"):
            sizes = FIXED_SIZES[sub]
            if kind == "zeros":
                self.write(arg, bytes(sum(sizes)))
                return rc
            out, at = bytearray(), arg
            for size in sizes:
                raw = self.read(at, size).split(b"\0", 1)[0]
                out += (raw + b"X" * size)[:size]
                at += size
            self.write(arg, bytes(out))
        elif sub in VARBUF_SUBS and kind == "varbuf":
            return (1 << 24) if not arg else int(_u32.unpack(self.read(arg, 4))[0]) + 16
        return rc

