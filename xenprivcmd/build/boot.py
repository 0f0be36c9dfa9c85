"""What the domain builder hands the guest at boot, as bytes in a release's own layout:
an x86_64 PV guest's start_info page, the boot vcpu's first context (x86_64 PV and
arm64) for ``XEN_DOMCTL_setvcpucontext``, and the grant table's first entries, which let
the console and xenstore daemons map the guest's rings.

Each function fills the structure the variant's generated tables declare (``start_info``,
``vcpu_guest_context``: public/xen.h, public/arch-x86/xen-x86_64.h, public/arch-arm.h) with
what libxenguest puts there (``tools/libs/guest/xg_dom_x86.c`` ``start_info_x86_64`` and
``vcpu_x86_64``, ``xg_dom_arm.c`` ``vcpu_arm64``, ``xg_dom_boot.c`` ``xc_dom_gnttab_seed``;
the same from Xen 4.14 to 4.21), and leaves every other byte zero, as libxenguest does.  Pure functions over a layout and
integers; nothing here touches a hypervisor.

>>> from xenprivcmd.abi import variant
>>> len(arm64_vcpu_context(variant("4.17.0", arch="aarch64"), entry=0x40200000, dtb=0x48000000))
352
"""

from __future__ import annotations

import ctypes

from ..errors import ConfigError
from . import constants
from .memory import PAGE_SHIFT, PAGE_SIZE

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..abi import Variant
    from .x86pv import PfnMap, PvLayout

__all__ = ["pv_start_info", "pv_vcpu_context", "arm64_vcpu_context", "grant_seed", "X86_DR6_DEFAULT",
           "X86_DR7_DEFAULT", "X86_EFLAGS_IF", "NO_DTB"]

#: The architectural reset values of %dr6 and %dr7 (Intel SDM vol. 3, 18.2.3/18.2.4), which
#: libxenguest gives a PV guest's boot vcpu
X86_DR6_DEFAULT, X86_DR7_DEFAULT = 0xFFFF0FF0, 0x00000400
#: rflags' interrupt enable flag (Intel SDM vol. 1, 3.4.3): a PV kernel starts with it set
X86_EFLAGS_IF = 1 << 9
#: x0 for an arm64 guest booted without a device tree (libxenguest's value)
NO_DTB = 0xFFFFFFFF


def _cmdline(variant: Variant, cmdline: str) -> bytes:
    """The command line as start_info holds it.  Raises :class:`ConfigError` when it does
    not fit (libxenguest cuts it short without a word; we refuse)."""
    raw = cmdline.encode()
    limit = constants.const(variant, "MAX_GUEST_CMDLINE")
    if len(raw) >= limit or b"\0" in raw:
        why = "holds a NUL byte" if b"\0" in raw else f"is {len(raw)} bytes; Xen's limit is {limit - 1}"
        raise ConfigError(f"the kernel command line {why}", key="cmdline")
    return raw


def pv_start_info(variant: Variant, layout: PvLayout, p2m: PfnMap, *, shared_info_mfn: int, store_evtchn: int,
                  console_evtchn: int, cmdline: str = "", flags: int = 0) -> bytes:
    """The start_info page (4096 bytes) of an x86_64 PV guest laid out as ``layout``, whose
    pfn ``n`` is machine frame ``p2m[n]``: ``magic`` the guest type, the layout's share
    (:meth:`~xenprivcmd.build.x86pv.PvLayout.start_info_fields`), the shared info page's
    machine address, the xenstore and console pages' mfns and event channels, ``flags``
    (``SIF_*``; libxl gives a guest 0; ``SIF_MOD_START_PFN`` is added when the ramdisk is
    passed by pfn) and the command line.

    Raises :class:`ConfigError` for a command line Xen cannot pass (``MAX_GUEST_CMDLINE``
    bytes or more, or a NUL in it), ``ValueError`` for a negative number or one too large
    for its field, ``IndexError``/``KeyError`` from ``p2m`` for a pfn it lacks.
    """
    raw = _cmdline(variant, cmdline)
    fields = layout.start_info_fields()
    if fields.pop("mod_start_pfn"):
        flags |= constants.const(variant, "SIF_MOD_START_PFN")
    mfn = p2m if callable(p2m) else p2m.__getitem__
    si = variant.structs["start_info"]()
    si.magic = b"xen-3.0-x86_64"
    values = dict(fields, shared_info=shared_info_mfn << PAGE_SHIFT, flags=flags,
                  store_mfn=mfn(layout.xenstore_pfn), store_evtchn=store_evtchn)
    for name, value in values.items():
        _put(si, name, value)
    _put(si.console.domU, "mfn", mfn(layout.console_pfn))
    _put(si.console.domU, "evtchn", console_evtchn)
    page = bytearray(PAGE_SIZE)
    page[:ctypes.sizeof(si)] = bytes(si)
    at = type(si).cmd_line.offset
    page[at:at + len(raw)] = raw
    return bytes(page)


def _put(obj: object, name: str, value: int) -> None:
    """``obj.name = value``, refusing what ctypes would cut short without a word."""
    before = value
    setattr(obj, name, value)
    if value < 0 or getattr(obj, name) != before:
        raise ValueError(f"{name}: {value:#x} does not fit its field")


def pv_vcpu_context(variant: Variant, layout: PvLayout, p2m: PfnMap) -> bytes:
    """The boot vcpu's ``vcpu_guest_context`` for an x86_64 PV guest laid out as ``layout``
    (pfn ``n`` is machine frame ``p2m[n]``): online, in kernel mode, at the kernel's entry
    with the boot stack's top in rsp and start_info's address in rsi, interrupts enabled,
    Xen's flat kernel segments, cr3 the L4's machine frame, %dr6/%dr7 at their reset values.

    Raises ``IndexError``/``KeyError`` from ``p2m`` for a pfn it lacks.
    """
    c = variant.constants
    regs = layout.boot_registers()
    mfn = p2m if callable(p2m) else p2m.__getitem__
    ctx = variant.structs["vcpu_guest_context"]()
    ur = ctx.user_regs
    ur.rip, ur.rsp, ur.rsi, ur.rflags = regs["rip"], regs["rsp"], regs["rsi"], X86_EFLAGS_IF
    ur.ds = ur.es = ur.fs = ur.gs = c["FLAT_KERNEL_DS"]
    ur.ss = c["FLAT_KERNEL_SS"]
    ur.cs = c["FLAT_KERNEL_CS"]
    ctx.kernel_ss, ctx.kernel_sp = ur.ss, ur.rsp
    ctx.debugreg[6], ctx.debugreg[7] = X86_DR6_DEFAULT, X86_DR7_DEFAULT
    ctx.flags = c["VGCF_in_kernel"] | c["VGCF_online"]
    ctx.ctrlreg[3] = mfn(regs["cr3_pfn"]) << PAGE_SHIFT  # xen_pfn_to_cr3 on x86_64
    return bytes(ctx)


def arm64_vcpu_context(variant: Variant, *, entry: int, dtb: int = NO_DTB) -> bytes:
    """The boot vcpu's ``vcpu_guest_context`` for an arm64 guest: online, at ``entry`` in
    EL1h with every exception masked (PSTATE.DAIF: ``PSR_GUEST64_INIT | PSR_DBG_MASK``, as
    Linux's boot protocol requires; Xen's header adds the debug mask itself after 4.22,
    commit ad8663a75a, and Debian's 4.20 has it), the MMU off (``SCTLR_GUEST_INIT``),
    and, per Linux's arm64 boot protocol, the device tree's guest-physical address in x0
    (``dtb``; :data:`NO_DTB` without one) and x1..x3 zero.

    Raises ``ValueError`` for an address that is negative or wider than 64 bits.
    """
    for name, value in (("entry", entry), ("dtb", dtb)):
        if not 0 <= value < 1 << 64:
            raise ValueError(f"{name}: {value:#x} is no 64-bit address")
    ctx = variant.structs["vcpu_guest_context"]()
    ctx.user_regs.pc64 = entry
    ctx.user_regs.x0 = dtb
    ctx.user_regs.cpsr = constants.const(variant, "PSR_GUEST64_INIT") | constants.const(variant, "PSR_DBG_MASK")
    ctx.sctlr = constants.const(variant, "SCTLR_GUEST_INIT")
    ctx.flags = constants.const(variant, "VGCF_online")
    return bytes(ctx)


def grant_seed(variant: Variant, domid: int, *, console_frame: int, xenstore_frame: int, console_domid: int = 0,
               xenstore_domid: int = 0) -> bytes:
    """The first two entries (v1) of guest ``domid``'s grant table, as libxenguest seeds
    them before the guest runs: ``GNTTAB_RESERVED_CONSOLE`` grants ``console_domid`` (the
    console daemon's domain) access to the console ring at ``console_frame``, and
    ``GNTTAB_RESERVED_XENSTORE`` grants ``xenstore_domid`` the xenstore ring at
    ``xenstore_frame`` (frames as the guest's grants name them: machine frames for an
    x86 PV guest, guest frames on Arm).  An entry for a daemon in the guest itself stays
    zero, as libxenguest leaves it.  The bytes go at the start of the table's frame 0.

    Raises ``ValueError`` for a frame that does not fit an entry's 32 bits, or a domid
    outside 0..0x7fef.
    """
    for what, value in (("domid", domid), ("console_domid", console_domid), ("xenstore_domid", xenstore_domid)):
        if not 0 <= value < 0x7FF0:
            raise ValueError(f"{what}: {value} is no domain id")
    for what, value in (("console_frame", console_frame), ("xenstore_frame", xenstore_frame)):
        if not 0 <= value <= 0xFFFFFFFF:
            raise ValueError(f"{what}: {value:#x} does not fit a v1 grant entry's 32-bit frame")
    entry = variant.structs["grant_entry_v1"]
    size = ctypes.sizeof(entry)
    out = bytearray(size * 2)
    for index, backend, frame in ((constants.const(variant, "GNTTAB_RESERVED_CONSOLE"), console_domid, console_frame),
                                  (constants.const(variant, "GNTTAB_RESERVED_XENSTORE"), xenstore_domid,
                                   xenstore_frame)):
        if backend == domid:
            continue
        e = entry()
        e.flags, e.domid, e.frame = constants.const(variant, "GTF_permit_access"), backend, frame
        out[index * size:(index + 1) * size] = bytes(e)
    return bytes(out)
