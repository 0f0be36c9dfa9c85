"""What a domain builder asks of Xen beyond memory and event channels: the boot vcpu's
context, an x86 PV guest's address size, hypercall page and pinned top-level page table.

* ``XEN_DOMCTL_setvcpucontext`` (``xen_domctl_vcpucontext``: a vcpu and a guest handle to
  the release's ``vcpu_guest_context``) gives a vcpu its first registers; the context is
  the payload, its bytes laid out by :mod:`xenprivcmd.build.boot`;
* ``XEN_DOMCTL_set_address_size`` (``xen_domctl_address_size``) says a PV guest is 64-bit
  (or 32-bit) before its memory is given (libxenguest's ``x86_compat``);
* ``XEN_DOMCTL_hypercall_init`` (``xen_domctl_hypercall_init``: a frame) has Xen write its
  hypercall stubs into the page the kernel's ``HYPERCALL_PAGE`` note names (x86 only; present
  in every release from 3.0.3 to 4.21);
* ``XEN_DOMCTL_set_paging_mempool_size`` (``xen_domctl_paging_mempool``: bytes; ``get_``
  reads it) sizes the
  pool Xen takes an Arm guest's P2M pages from (4.17+; libxl sizes it from the guest's
  vcpus and memory before the memory is given);
* ``XEN_DOMCTL_cacheflush`` (``xen_domctl_cacheflush``: a first gfn and a count) cleans and
  invalidates the data cache for frames written through foreign mappings, so an Arm guest
  that starts with its MMU and caches off reads what was written (libxenguest flushes each
  mapping it unmaps);
* ``getdomaininfo``'s ``gpaddr_bits`` (4.16+): the guest-physical address width of an Arm
  guest, which bounds the regions its device tree offers for foreign mappings;
* ``MMUEXT_PIN_L4_TABLE`` through ``__HYPERVISOR_mmuext_op`` (``mmuext_op``: a command and a
  frame) validates and pins a PV guest's L4 page table (libxenguest's ``pin_table``).  This
  hypercall takes (ops, count, done, foreign domain) rather than the (sub-op, struct) of the
  engine's plain families, so it is laid out from the generated ``mmuext_op`` here and
  issued as one raw hypercall on the thread's buffer (the domain is its fourth argument).

Arguments are checked before anything is issued.
"""

from __future__ import annotations

import ctypes
import errno as _errno

from ..abi import hypercalls as _hc
from ..errors import NotSupported, ReadOnlyError, RestrictedError
from .domains import MAX_VCPUS
from .engine import PAYLOAD_OFFSET, Check, Request, op
from .memory import MAX_FRAME

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Union

    from .engine import Engine

__all__ = ["SETVCPUCONTEXT", "SET_ADDRESS_SIZE", "HYPERCALL_INIT", "SET_PAGING_MEMPOOL_SIZE",
           "GET_PAGING_MEMPOOL_SIZE", "CACHEFLUSH",
           "GPADDR_BITS", "ADDRESS_SIZES", "PIN_LEVELS", "MAX_CACHEFLUSH"]

#: The address sizes a PV guest may have (libxenguest's x86_compat: xen-3.0-x86_32p, x86_64)
ADDRESS_SIZES = (32, 64)
#: Page-table level -> the MMUEXT_PIN_* command that pins a table of it
PIN_LEVELS = {1: "MMUEXT_PIN_L1_TABLE", 2: "MMUEXT_PIN_L2_TABLE", 3: "MMUEXT_PIN_L3_TABLE", 4: "MMUEXT_PIN_L4_TABLE"}

SETVCPUCONTEXT = Request("domctl", "setvcpucontext", struct="xen_domctl_vcpucontext", member="vcpucontext",
                         send=("vcpu", "ctxt"), pointers=("ctxt",), reads=False,
                         checks=(Check(1, "vcpu", 0, MAX_VCPUS - 1),))
SET_ADDRESS_SIZE = Request("domctl", "set_address_size", struct="xen_domctl_address_size", member="address_size",
                           send=("size",), reads=False, checks=(Check(1, "address size", 32, 64),))
HYPERCALL_INIT = Request("domctl", "hypercall_init", struct="xen_domctl_hypercall_init", send=("gmfn",),
                         reads=False, checks=(Check(1, "frame", 0, MAX_FRAME),))

SET_PAGING_MEMPOOL_SIZE = Request("domctl", "set_paging_mempool_size", struct="xen_domctl_paging_mempool",
                                  member="paging_mempool", send=("size",), reads=False,
                                  checks=(Check(1, "paging mempool size", 0, (1 << 64) - 1),))
GET_PAGING_MEMPOOL_SIZE = Request("domctl", "get_paging_mempool_size", struct="xen_domctl_paging_mempool",
                                  member="paging_mempool", read=("size",), reads=True)
CACHEFLUSH = Request("domctl", "cacheflush", struct="xen_domctl_cacheflush", send=("start_pfn", "nr_pfns"),
                     reads=False, checks=(Check(1, "frame", 0, MAX_FRAME),))
GPADDR_BITS = Request("domctl", "getdomaininfo", struct="xen_domctl_getdomaininfo", read=("domain", "gpaddr_bits"),
                      reads=True)
#: The most frames one cacheflush takes (Xen on Arm refuses more than 1 << MAX_ORDER, 2**18 on arm64; the
#: builder flushes at most what it maps at once)
MAX_CACHEFLUSH = 1 << 18


def _bytes(data: Union[bytes, bytearray, memoryview], what: str) -> bytes:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"{what} must be bytes, not {type(data).__name__}")
    return bytes(data)


@op("set_vcpu_context", reads=False)
def _set_vcpu_context(e: Engine) -> Callable[[int, int, bytes], None]:
    """``XEN_DOMCTL_setvcpucontext``: give vcpu ``vcpu`` of domain ``domid`` the context
    ``context``, the bytes of the release's ``vcpu_guest_context`` (as
    :func:`xenprivcmd.build.boot.pv_vcpu_context` makes them).  ``ValueError`` for bytes of
    another size (nothing issued)."""
    def set_vcpu_context(domid: int, vcpu: int, context: bytes) -> None:
        domid = e.check(SETVCPUCONTEXT, (domid, vcpu, 0))[0]
        raw = _bytes(context, "context")
        size = ctypes.sizeof(e.families.struct("vcpu_guest_context", SETVCPUCONTEXT.name))
        if len(raw) != size:
            raise ValueError(f"a vcpu_guest_context of Xen {e.variant.release} is {size} bytes, not {len(raw)}")
        view, at = e.payload(size)
        view[PAYLOAD_OFFSET:PAYLOAD_OFFSET + size] = raw
        e(SETVCPUCONTEXT, domid, vcpu, at)

    return set_vcpu_context


@op("set_address_size", reads=False)
def _set_address_size(e: Engine) -> Callable[[int, int], None]:
    """``XEN_DOMCTL_set_address_size``: make x86 PV domain ``domid`` a guest of ``bits``
    (32 or 64) bit addresses, before it has memory."""
    def set_address_size(domid: int, bits: int) -> None:
        domid = e.check(SET_ADDRESS_SIZE, (domid, bits))[0]
        if bits not in ADDRESS_SIZES:
            raise ValueError(f"address size {bits}: a PV guest's is 32 or 64")
        e(SET_ADDRESS_SIZE, domid, bits)

    return set_address_size


@op("hypercall_init", reads=False)
def _hypercall_init(e: Engine) -> Callable[[int, int], None]:
    """``XEN_DOMCTL_hypercall_init``: Xen writes its hypercall stubs into frame ``frame``
    of domain ``domid`` (an x86 PV guest's machine frame)."""
    def hypercall_init(domid: int, frame: int) -> None:
        e(HYPERCALL_INIT, domid, frame)

    return hypercall_init


@op("pin_table", reads=False)
def _pin_table(e: Engine) -> Callable[..., None]:
    """``MMUEXT_PIN_L<level>_TABLE``: Xen validates the page table at machine frame
    ``frame`` of x86 PV domain ``domid`` and pins it as a table of that level (4: the top
    of a 64-bit guest's).  Raises :class:`~xenprivcmd.errors.HypercallError` (EINVAL) when
    the frame is not the domain's or holds no valid table."""
    hname = _hc.HYPERCALL_NAMES.get(_hc.HYPERCALLS["mmuext_op"], "mmuext_op")

    def pin_table(domid: int, frame: int, level: int = 4) -> None:
        domid = e.check(HYPERCALL_INIT, (domid, frame))[0]  # the same checks: a domid, a frame
        if level.__class__ is not int or level not in PIN_LEVELS:
            raise ValueError(f"page-table level {level!r}: 1..4")
        if e.variant.arch != "x86_64":
            raise NotSupported(_errno.ENOSYS, f"pin_table: x86 PV guests only, not {e.variant.arch}")
        cls = e.families.struct("mmuext_op", "mmuext_op")
        cmd = e.families.const(PIN_LEVELS[level], "mmuext_op")
        arg = cls()
        arg.cmd = cmd
        arg.arg1.mfn = frame
        size = ctypes.sizeof(cls)
        view, base = e.buffer(size)
        view[:size] = bytes(arg)
        subop = PIN_LEVELS[level][len("MMUEXT_"):].lower()
        try:
            e.transport.hypercall(_hc.HYPERCALLS["mmuext_op"], base, 1, 0, domid)
        except (ReadOnlyError, RestrictedError):
            raise
        except OSError as exc:
            raise _hc.error(exc, hypercall=hname, subop=subop, domid=domid) from None

    return pin_table


@op("set_paging_mempool_size", reads=False)
def _set_paging_mempool_size(e: Engine) -> Callable[[int, int], None]:
    """``XEN_DOMCTL_set_paging_mempool_size``: the pool of domain ``domid``'s P2M pages is
    ``size`` bytes (a multiple of 4 KiB; Xen says EINVAL otherwise, ENOMEM when the host
    lacks them).  :class:`~xenprivcmd.errors.NotSupported` before Xen 4.17."""
    def set_paging_mempool_size(domid: int, size: int) -> None:
        domid = e.check(SET_PAGING_MEMPOOL_SIZE, (domid, size))[0]
        e(SET_PAGING_MEMPOOL_SIZE, domid, size)

    return set_paging_mempool_size


@op("paging_mempool_size", reads=True)
def _paging_mempool_size(e: Engine) -> Callable[[int], int]:
    """``XEN_DOMCTL_get_paging_mempool_size``: the bytes of domain ``domid``'s P2M pool
    (:class:`~xenprivcmd.errors.NotSupported` before Xen 4.17)."""
    def paging_mempool_size(domid: int) -> int:
        domid = e.check(GET_PAGING_MEMPOOL_SIZE, (domid,))[0]
        return int(e(GET_PAGING_MEMPOOL_SIZE, domid)[0])

    return paging_mempool_size


@op("cache_flush", reads=False)
def _cache_flush(e: Engine) -> Callable[[int, int, int], None]:
    """``XEN_DOMCTL_cacheflush``: clean and invalidate the data cache of ``count`` frames
    of Arm domain ``domid`` from gfn ``first`` (1..:data:`MAX_CACHEFLUSH` frames:
    ``ValueError`` otherwise, nothing issued).  :class:`~xenprivcmd.errors.NotSupported`
    off Arm (x86 has no such domctl)."""
    def cache_flush(domid: int, first: int, count: int) -> None:
        domid = e.check(CACHEFLUSH, (domid, first, count))[0]
        Check(0, "frame count", 1, MAX_CACHEFLUSH)(count)
        e(CACHEFLUSH, domid, first, count)

    return cache_flush


@op("gpaddr_bits", reads=True)
def _gpaddr_bits(e: Engine) -> Callable[[int], int]:
    """getdomaininfo's ``gpaddr_bits``: the width of domain ``domid``'s guest-physical
    addresses (Xen 4.16+; :class:`~xenprivcmd.errors.NotSupported` before)."""
    def gpaddr_bits(domid: int) -> int:
        domid = e.check(GPADDR_BITS, (domid,))[0]
        got = e.runner(GPADDR_BITS, echo=0)(domid)
        if got[1] is None:
            raise NotSupported(_errno.ENOSYS, f"getdomaininfo of Xen {e.variant.release} has no gpaddr_bits")
        return int(got[1])

    return gpaddr_bits
