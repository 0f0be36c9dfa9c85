"""Building an arm64 guest: what :func:`xenprivcmd.build.create.create` does on Arm, in
libxl's and libxenguest's order (``libxl_create.c``/``libxl_arm.c``/``libxl_dom.c``,
``xg_dom_arm.c``, ``xg_dom_core.c``, ``xg_dom_boot.c``; the same in Xen 4.17 to 4.21).

Before any hypercall, :func:`arm64_plan` reads the Image (placed per its header,
:func:`~xenprivcmd.build.kernel.arm64_kernel`) and the ramdisk (placed as it is: on Arm
libxenguest never unpacks it), and lays the guest out with a device tree of the size it
will have (:func:`~xenprivcmd.build.arm.arm64_layout`).  Then, after the common start
(``createdomain`` with the Arm arch config, whose GIC version and timer frequency Xen
writes back):

1. the P2M pool: ``XEN_DOMCTL_set_paging_mempool_size`` with libxl's default for a HAP
   guest, 4 KiB x (256 per vcpu + 1 per MiB of maximum memory + 128 for the extended
   regions) (:func:`paging_pool_bytes`);
2. (common) the memory limit, the xenstore and console event channels;
3. the guest's address size (64 bits), its RAM bank by bank in the largest extents that
   fit (1 GiB, 2 MiB, 4 KiB: :func:`ram_extents`), then the four magic pages at
   ``GUEST_MAGIC_BASE`` (console, xenstore, memory-access ring, vuart), zeroed, and their
   HVM params with the event channels;
4. the device tree of the domain as it was created (its GIC, the timer's frequency, the
   guest-physical address width for the extended regions), the Image, the ramdisk and
   the tree written through foreign mappings, each written range's cache flushed
   (``XEN_DOMCTL_cacheflush``: the guest starts with its caches off);
5. the boot vcpu: at the Image's entry, x0 the tree's address
   (:func:`~xenprivcmd.build.boot.arm64_vcpu_context`).

Then, as for every guest, grant entries 0 and 1, the xenstore skeleton (ring frames are
guest frames on Arm), introduce and unpause.  An Arm guest's memory is all given at
boot (no populate-on-demand), so ``maxmem`` above ``memory`` is refused by
:meth:`~xenprivcmd.build.config.DomainConfig.from_xl` already.
"""

from __future__ import annotations

import errno as _errno
import uuid as _uuid

from ..errors import ConfigError, ImageError, NotSupported
from . import arm, constants, fdt
from .boot import arm64_vcpu_context
from .image import Piece, arm64_image
from .kernel import arm64_kernel, read_image
from .load import MAP_CHUNK
from .load import read_file as _read
from .load import write_pieces as _write
from .memory import PAGE_SHIFT, PAGE_SIZE

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Dict, List, Sequence, Tuple

    from ..abi import Variant
    from ..handle import Handle
    from .arm import Arm64Layout
    from .config import DomainConfig
    from .kernel import Arm64Kernel

__all__ = ["Arm64Plan", "arm64_plan", "ram_extents", "paging_pool_bytes", "build_arm64", "EXTRA_PAGING_MIB",
           "GIC_VERSIONS", "NEEDS", "describe"]

#: The P2M pages libxl adds for an Arm guest's extended regions (EXTRA_DEFAULT_PAGING_MEM_MB)
EXTRA_PAGING_MIB = 128
#: XEN_DOMCTL_CONFIG_GIC_* name -> the GIC version of the device tree
GIC_VERSIONS = {"XEN_DOMCTL_CONFIG_GIC_V2": 2, "XEN_DOMCTL_CONFIG_GIC_V3": 3}
#: What a release must have for the arm64 builder (the pool's domctl came with Xen 4.17)
NEEDS = ("XEN_DOMCTL_setvcpucontext", "XEN_DOMCTL_set_address_size", "XEN_DOMCTL_set_paging_mempool_size",
         "XEN_DOMCTL_cacheflush", "HVM_PARAM_CONSOLE_PFN", "HVM_PARAM_STORE_PFN", "HVM_PARAM_MONITOR_RING_PFN",
         "HVM_PARAM_CONSOLE_EVTCHN", "HVM_PARAM_STORE_EVTCHN")
#: The extent orders libxenguest tries, largest first (1 GiB, 2 MiB, 4 KiB; no 512 GiB ones)
_ORDERS = (18, 9, 0)
_LPAE_SHIFT = 9
#: Guest frames are their own numbers on Arm: the "p2m" the x86 writer indexes
_IDENTITY = range(1 << 52)


class Arm64Plan:
    """What is known of an arm64 guest before any hypercall (as
    :class:`~xenprivcmd.build.create.Plan` for x86): the config, the Image as placed
    (:class:`~xenprivcmd.build.kernel.Arm64Kernel`), the ramdisk's bytes, the layout
    (:class:`~xenprivcmd.build.arm.Arm64Layout`) for a device tree of the size planned (the
    tree itself is made once the domain exists), the command line, the uuid and the P2M
    pool's size in bytes."""

    __slots__ = ("config", "kernel", "ramdisk", "layout", "cmdline", "uuid", "paging_bytes")

    def __init__(self, config: DomainConfig, kernel: Arm64Kernel, ramdisk: bytes, layout: Arm64Layout, cmdline: str,
                 uuid: _uuid.UUID, paging_bytes: int) -> None:
        self.config, self.kernel, self.ramdisk, self.layout = config, kernel, ramdisk, layout
        self.cmdline, self.uuid, self.paging_bytes = cmdline, uuid, paging_bytes


def paging_pool_bytes(max_vcpus: int, maxmem_kib: int) -> int:
    """libxl's default P2M pool of a HAP guest on Arm, in bytes: 4 KiB for every 256 per
    vcpu, every MiB of maximum memory and :data:`EXTRA_PAGING_MIB`."""
    return 4 * (256 * max_vcpus + maxmem_kib // 1024 + EXTRA_PAGING_MIB) << 10


def ram_extents(base_pfn: int, pages: int) -> List[Tuple[int, List[int]]]:
    """The ``populate_physmap`` calls that give ``pages`` frames from ``base_pfn``, as
    libxenguest makes them: (extent order, first frame of each extent), the largest
    extents the alignment allows, stopping short of the next larger boundary so that the
    next call can use larger ones.  ``ValueError`` for a negative count or frame."""
    if pages < 0 or base_pfn < 0:
        raise ValueError("frames and counts are >= 0")
    out: List[Tuple[int, List[int]]] = []
    pfn, end = base_pfn, base_pfn + pages
    while pfn < end:
        for order in _ORDERS:
            if pfn & ((1 << order) - 1):
                continue
            stop = end
            up = order + _LPAE_SHIFT
            boundary = (pfn + (1 << up)) & ~((1 << up) - 1)
            if pfn & ((1 << up) - 1) and stop > boundary:
                stop = boundary
            count = (stop - pfn) >> order
            if count:
                out.append((order, [pfn + (i << order) for i in range(count)]))
                pfn += count << order
                break
    return out


def _tree(variant: Variant, config: DomainConfig, cmdline: str, layout: Arm64Layout, gic_version: int,
          clock_frequency: int, gpaddr_bits: int) -> fdt.Node:
    major, minor = (int(x) for x in variant.release.split("-")[0].split(".")[:2])
    return arm.guest_device_tree(variant, xen_version=(major, minor), vcpus=config.maxvcpus, banks=layout.banks,
                                 gic_version=gic_version, cmdline=cmdline, initrd=layout.initrd,
                                 gpaddr_bits=gpaddr_bits, clock_frequency=clock_frequency)


def _laid_out(config: DomainConfig, kernel: Arm64Kernel, ramdisk: bytes, variant: Variant,
              dtb_size: int) -> Arm64Layout:
    return arm.arm64_layout(kernel, config.memory_kib << 10, len(ramdisk), dtb_size, variant)


def arm64_plan(xen: Handle, config: DomainConfig, uid: _uuid.UUID) -> Arm64Plan:
    """The arm64 part of :func:`~xenprivcmd.build.create.plan`: the release has what the
    builder needs, the command line fits, the Image and ramdisk are read and laid out.

    Raises :class:`NotSupported` for a release without the hypercalls (before Xen 4.17),
    :class:`ConfigError` for a command line Xen cannot pass, more vcpus than an Arm
    guest may have or ``maxmem`` above ``memory``, :class:`ImageError` for files that cannot be read or used or memory
    that cannot hold them.
    """
    variant = xen.abi
    for name in NEEDS:
        if name not in variant.constants or variant.domctl_interface_version is None:
            raise NotSupported(_errno.ENOSYS, f"create: Xen {variant.release} lacks {name} (arm64 guests are built "
                               "on Xen 4.17 and later)")
    cmdline = config.kernel_cmdline
    if "\0" in cmdline:  # it goes into /chosen/bootargs, a NUL-terminated string
        raise ConfigError("the kernel command line holds a NUL byte", key="cmdline")
    if config.maxmem != config.memory:
        # xl reads such a config (`xl create -n` takes it); an Arm guest gets all its memory at
        # boot, with no populate-on-demand to start it below maxmem
        raise ConfigError(f"maxmem: maxmem ({config.maxmem} MiB) must equal memory ({config.memory} MiB) on Arm "
                          "(no populate-on-demand: an Arm guest gets all its memory at boot)", key="maxmem")
    most = constants.const(variant, "GUEST_MAX_VCPUS")
    if config.maxvcpus > most:
        raise ConfigError(f"maxvcpus: an Arm guest has at most {most} vcpus, not {config.maxvcpus}", key="maxvcpus")
    kernel = arm64_kernel(read_image(_read(config.kernel, "kernel"), config.kernel), variant, config.kernel)
    ramdisk = _read(config.ramdisk, "ramdisk") if config.ramdisk else b""
    # the tree's size as it will be (a GICv2's node is the larger; 48 address bits the most regions)
    draft = _laid_out(config, kernel, ramdisk, variant, PAGE_SIZE)
    size = len(fdt.dtb(_tree(variant, config, cmdline, draft, 2, 1, 48)))
    return Arm64Plan(config, kernel, ramdisk, _laid_out(config, kernel, ramdisk, variant, size), cmdline, uid,
                     paging_bytes=paging_pool_bytes(config.maxvcpus, config.maxmem_kib))


def _gic(variant: Variant, value: int) -> int:
    for name, version in GIC_VERSIONS.items():
        if constants.const(variant, name) == value:
            return version
    raise ImageError(f"Xen gave the domain GIC version {value}, which no guest device tree describes")


def create_arm64_domain(xen: Handle, p: Arm64Plan) -> Tuple[int, Dict[str, int]]:
    """``createdomain`` of an Arm guest: (its domid, what Xen wrote back of the arch config:
    ``gic_version``, ``clock_frequency``)."""
    out: Dict[str, int] = {}
    domid = xen._ops.create_domain(p.config.maxvcpus, p.uuid, arch_out=out)
    return int(domid), out


def _magic(layout: Arm64Layout) -> Dict[str, int]:
    return dict(layout.magic)


def _flush(xen: Handle, domid: int, pieces: Sequence[Piece]) -> None:
    for piece in pieces:
        for first in range(0, piece.pages, MAP_CHUNK):
            xen.cache_flush(domid, piece.pfn + first, min(MAP_CHUNK, piece.pages - first))


def build_arm64(xen: Handle, p: Arm64Plan, domid: int, arch: Dict[str, int], *, store_port: int, console_port: int,
                say: Callable[[str], None]) -> Tuple[int, int]:
    """Steps 3 to 5 of the module doc on domain ``domid`` (created, its pool sized, its
    memory limit set); returns the (xenstore, console) rings' guest frames.  Raises the
    failing call's error (the caller undoes)."""
    variant = xen.abi
    layout = p.layout
    say("memory")
    xen.set_address_size(domid, 64)
    for base, size in layout.banks:
        for order, frames in ram_extents(base >> PAGE_SHIFT, size >> PAGE_SHIFT):
            xen.populate_physmap(domid, frames, order=order)
    magic = _magic(layout)
    xen.populate_physmap(domid, [magic[name] for name in arm.MAGIC_PAGES])
    for param, value in (("HVM_PARAM_CONSOLE_PFN", magic["console"]), ("HVM_PARAM_STORE_PFN", magic["xenstore"]),
                         ("HVM_PARAM_MONITOR_RING_PFN", magic["memaccess"]), ("HVM_PARAM_CONSOLE_EVTCHN", console_port),
                         ("HVM_PARAM_STORE_EVTCHN", store_port)):
        xen.set_hvm_param(domid, param, value)
    say("image")
    tree = _tree(variant, p.config, p.cmdline, layout, _gic(variant, arch.get("gic_version", 0)), arch.get("clock_frequency", 0),
                 xen.gpaddr_bits(domid))
    blob = fdt.dtb(tree)
    if len(blob) != layout.dtb.vend - layout.dtb.vstart:
        layout = _laid_out(p.config, p.kernel, p.ramdisk, variant, len(blob))
    pieces = list(arm64_image(p.kernel, layout, ramdisk=p.ramdisk, dtb=blob))
    pieces += [Piece(name, magic[name], bytes(PAGE_SIZE)) for name in ("memaccess", "vuart")]
    _write(xen, domid, _IDENTITY, pieces)
    _flush(xen, domid, pieces)
    xen.set_vcpu_context(domid, 0, arm64_vcpu_context(variant, entry=layout.entry, dtb=layout.dtb.vstart))
    return magic["xenstore"], magic["console"]


def describe(p: Arm64Plan, *, paused: bool = False) -> List[str]:
    """What :func:`~xenprivcmd.build.create.create` would do for ``p``, a line a step
    (``xpsh -N create``)."""
    cfg, lay = p.config, p.layout
    magic = _magic(lay)
    out = [f"  createdomain max_vcpus={cfg.maxvcpus} (Arm: the host's GIC, no SPIs, no TEE); paging mempool "
           f"{p.paging_bytes >> 10} KiB; max_mem {cfg.memory_kib + 1024} KiB; two event channels (xenstore, console)",
           "  set_address_size 64; populate_physmap "
           + ", ".join(f"{size >> 20} MiB at {base:#x}" for base, size in lay.banks)
           + f"; magic pages at pfn {magic['console']:#x} (console, xenstore, memaccess, vuart) and their HVM params"]
    for seg in (lay.kernel, lay.ramdisk, lay.dtb):
        if seg is not None:
            out.append(f"  {seg.name}: pfn {seg.pfn:#x}, {seg.pages} pages at {seg.vstart:#x}")
    out.append(f"  cacheflush; setvcpucontext (pc {lay.entry:#x}, x0 {lay.dtb.vstart:#x}); grant entries 0 and 1")
    out.append("  xenstore: /local/domain/<domid> and /vm/" + str(p.uuid) + "; introduce"
               + ("" if paused else "; unpausedomain"))
    return out
