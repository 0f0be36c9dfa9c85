"""The simulator's xen_version hypercall (see :class:`~xenprivcmd.sim.SimTransport`)."""

from __future__ import annotations

import errno as E
from typing import Dict, Tuple

from ..abi import hypercalls as hc
from ._base import XEN_HYPERVISOR_VIRT_START, SimBase, _u32, _u64

#: The fixed-size string sub-ops: the sizes of their strings, in order.
FIXED_SIZES: Dict[int, Tuple[int, ...]] = {
    hc.XENVER_extraversion: (16,), hc.XENVER_compile_info: (64, 16, 32, 32), hc.XENVER_capabilities: (1024,),
    hc.XENVER_changeset: (64,), hc.XENVER_commandline: (1024,),
}
#: The xen_varbuf sub-ops (4.20+, build_id from 4.10).
VARBUF_SUBS = frozenset((hc.XENVER_build_id, hc.XENVER_extraversion2, hc.XENVER_capabilities2,
                         hc.XENVER_changeset2, hc.XENVER_commandline2))


class XenVersionMixin(SimBase):
    """xen_version: the version, the fixed-size strings and the xen_varbuf sub-ops."""

    def _xen_version(self, sub: int, arg: int) -> int:
        host = self.host
        c = self.tables.consts
        if sub == hc.XENVER_version:
            return (host.xen[0] << 16) | host.xen[1]
        if sub == hc.XENVER_pagesize:
            return 4096
        fixed: Dict[int, Tuple[str, ...]] = {
            hc.XENVER_extraversion: (host.extraversion,),
            hc.XENVER_compile_info: ("gcc (Debian 12.2.0-14) 12.2.0", "builder", "sim.xenprivcmd",
                                     "Thu Jan  1 00:00:00 UTC 2026"),
            hc.XENVER_capabilities: (self._caps(),),
            hc.XENVER_changeset: (host.changeset,),
            hc.XENVER_commandline: (host.commandline,),
        }
        if sub == hc.XENVER_commandline and "XENVER_commandline" not in c:
            raise self._fail(E.ENOSYS)
        if sub in fixed:
            if not arg:
                raise self._fail(E.EFAULT)
            out = bytearray()
            for text, size in zip(fixed[sub], FIXED_SIZES[sub]):
                out += text.encode()[: size - 1].ljust(size, b"\0")
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
            return size
        room = int(_u32.unpack(self.read(arg, 4))[0])
        if room == 0:
            raise self._fail(E.EINVAL)
        if size > room:
            raise self._fail(E.ENOBUFS)
        self.write(arg + 4, data)
        return size
