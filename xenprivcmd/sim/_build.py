"""The simulator's domain-builder hypercalls: ``XEN_DOMCTL_setvcpucontext``,
``XEN_DOMCTL_set_address_size``, ``XEN_DOMCTL_hypercall_init``,
``XEN_DOMCTL_set_paging_mempool_size``, ``XEN_DOMCTL_cacheflush`` and ``mmuext_op``'s
``MMUEXT_PIN_L*_TABLE`` (see :mod:`xenprivcmd.ops.builder`).

Each keeps what it was told in the domain's ``boot`` record and fails as Xen does
(``xen/common/domctl.c``, ``xen/arch/x86/domctl.c``, ``xen/arch/x86/mm.c``): a vcpu
the domain lacks or a null context is EINVAL, an x86 PV context whose cr3 is no frame
of the domain EINVAL; an address size on an x86 HVM domain EOPNOTSUPP, 32 bits once the
domain has memory EACCES (on Arm any size once it has memory: EBUSY), any size but 32
and 64 EINVAL; a paging pool that is no whole number of pages EINVAL, beyond the free
memory ENOMEM; a cache flush off Arm ENOSYS, of more than 2**18 frames EINVAL (the
flushed ranges are kept in ``boot["flushed"]``, the pool's size in
``boot["paging_mempool"]``); a
hypercall page at a frame the domain lacks EINVAL, at a pinned page table EPERM; a pin
of a frame the domain lacks, of an HVM domain's or of one already pinned EINVAL.  A
context with ``VGCF_online`` brings its vcpu up; vcpu 0's makes the domain built.
The hypercall page gets one stub per hypercall (32 bytes each: ``mov $nr, %eax;
syscall`` between the pushes and pops of %rcx and %r11, then ``ret``), as a 64-bit
PV guest's.
"""

from __future__ import annotations

import ctypes
import errno as E
import struct
from typing import Any, Dict, Optional

from ..abi.hypercalls import HYPERCALLS
from ._base import HypercallFailed, SimBase
from ._host import Domain

__all__ = ["BuildOpsMixin", "MMUEXT_OP", "hypercall_stub"]

MMUEXT_OP = HYPERCALLS["mmuext_op"]
_PAGE = 4096


def hypercall_stub(nr: int) -> bytes:
    """The 32 bytes of hypercall ``nr``'s stub in a 64-bit PV guest's hypercall page."""
    code = b"\x51\x41\x53\xb8" + struct.pack("<I", nr) + b"\x0f\x05\x41\x5b\x59\xc3"
    return code + b"\xcc" * (32 - len(code))


class BuildOpsMixin(SimBase):
    """The domain-builder hypercalls (see the module doc)."""

    def _boot_struct(self, name: str) -> Any:
        return self.host.variant.structs[name]

    # -- domctls ------------------------------------------------------------------------
    def _setvcpucontext(self, op: bytearray, d: Optional[Domain]) -> bool:
        assert d is not None
        lay = self.domctl
        vcpu, handle = lay.get(op, "u.vcpucontext.vcpu"), lay.get(op, "u.vcpucontext.ctxt")
        if d.is_dom0 or vcpu >= d.max_vcpus or vcpu >= len(d.vcpus) or not handle:
            raise HypercallFailed(E.EINVAL)
        cls = self._boot_struct("vcpu_guest_context")
        raw = self.read(handle, ctypes.sizeof(cls))
        ctx = cls.from_buffer_copy(raw)
        k = self.host.variant.constants
        if self.host.arch == "x86_64" and not d.hvm:
            cr3 = int(ctx.ctrlreg[3]) >> 12
            if not self.host.memory.guest(d).owns(cr3):
                raise HypercallFailed(E.EINVAL)
        d.boot.setdefault("contexts", {})[vcpu] = bytes(raw)
        v = d.vcpus[vcpu]
        now = self.host.now()
        d.fold(now)
        v.online = bool(int(ctx.flags) & int(k["VGCF_online"]))
        v.blocked = False
        if vcpu == 0:
            d.built = True
        d.changed()
        return False

    def _set_address_size(self, op: bytearray, d: Optional[Domain]) -> bool:
        assert d is not None
        if self.host.is_arm:
            # arm64's switch_mode: 32 or 64 bits while the domain has no memory (EBUSY after)
            size = self.domctl.get(op, "u.address_size.size")
            if size not in (32, 64):
                raise HypercallFailed(E.EINVAL)
            if d.tot_pages:
                raise HypercallFailed(E.EBUSY)
            d.boot["address_size"] = size
            return False
        if d.hvm:
            raise HypercallFailed(E.EOPNOTSUPP)
        size = self.domctl.get(op, "u.address_size.size")
        if size not in (32, 64):
            raise HypercallFailed(E.EINVAL)
        if size != d.boot.get("address_size", 64) and d.tot_pages:
            raise HypercallFailed(E.EACCES)  # switch_compat/switch_native: only while the domain has no memory
        d.boot["address_size"] = size
        return False

    def _hypercall_init(self, op: bytearray, d: Optional[Domain]) -> bool:
        assert d is not None
        if self.host.is_arm:
            raise HypercallFailed(E.ENOSYS)
        frame = self.domctl.get(op, "u.hypercall_init.gmfn")
        g = self.host.memory.guest(d)
        mfn = g.frame(frame)
        if mfn is None:
            raise HypercallFailed(E.EINVAL)
        if mfn in d.boot.get("pinned", {}):
            raise HypercallFailed(E.EPERM)  # not a writable page
        page = b"".join(hypercall_stub(i) for i in range(_PAGE // 32))
        self.host.memory.ram.write(("mfn", mfn), 0, page)
        d.boot["hypercall_page"] = mfn
        return False

    def _set_paging_mempool_size(self, op: bytearray, d: Optional[Domain]) -> bool:
        assert d is not None
        size = self.domctl.get(op, "u.paging_mempool.size")
        if size & (_PAGE - 1) or size >> 12 > self.host.free_pages:
            raise HypercallFailed(E.EINVAL if size & (_PAGE - 1) else E.ENOMEM)
        d.boot["paging_mempool"] = size
        return False

    def _get_paging_mempool_size(self, op: bytearray, d: Optional[Domain]) -> bool:
        assert d is not None
        self.domctl.put(op, "u.paging_mempool.size", d.boot.get("paging_mempool", 0))
        return True

    def _cacheflush(self, op: bytearray, d: Optional[Domain]) -> bool:
        assert d is not None
        if not self.host.is_arm:
            raise HypercallFailed(E.ENOSYS)
        first, count = self.domctl.get(op, "u.cacheflush.start_pfn"), self.domctl.get(op, "u.cacheflush.nr_pfns")
        if count > 1 << 18 or first + count >= 1 << 64:
            raise HypercallFailed(E.EINVAL)
        d.boot.setdefault("flushed", []).append((first, count))
        return False

    # -- mmuext_op --------------------------------------------------------------------------
    def mmuext_subop(self, address: int) -> Optional[str]:
        """The name of the first command at ``address`` (the log's and the faults')."""
        if not address:
            return None
        cmd = struct.unpack("<I", self.read(address, 4))[0]
        return self._mmuext_names().get(cmd)

    def _mmuext_names(self) -> Dict[int, str]:
        k = self.host.variant.constants
        return {int(k[f"MMUEXT_PIN_L{n}_TABLE"]): f"pin_l{n}_table" for n in range(1, 5)
                if f"MMUEXT_PIN_L{n}_TABLE" in k}

    def _do_mmuext_op(self, address: int, count: int, done: int, foreigndom: int) -> int:
        if self.host.is_arm:
            raise self._fail(E.ENOSYS, "no mmuext_op on Arm")
        if not self.privileged:
            raise self._fail(E.EPERM, "not a privileged domain")
        d = self.host.domain(foreigndom)
        if d is None or d.dying:
            raise self._fail(E.ESRCH, f"mmuext_op: no domain {foreigndom}")
        cls = self._boot_struct("mmuext_op")
        size = ctypes.sizeof(cls)
        names = self._mmuext_names()
        for i in range(count & 0xFFFFFFFF):
            if not address:
                raise self._fail(E.EFAULT)
            o = cls.from_buffer_copy(self.read(address + i * size, size))
            name = names.get(int(o.cmd))
            if name is None:
                raise self._fail(E.ENOSYS, f"mmuext_op {int(o.cmd)} not simulated")
            mfn = int(o.arg1.mfn)
            pinned = d.boot.setdefault("pinned", {})
            if d.hvm or not self.host.memory.guest(d).owns(mfn) or mfn in pinned:
                raise self._fail(E.EINVAL, f"mmuext_op {name}: frame {mfn:#x}")
            pinned[mfn] = int(name[5])
        if done:
            self.write(done, struct.pack("<I", count))
        return 0
