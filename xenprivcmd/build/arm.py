"""An arm64 guest at boot: its memory layout and the device tree it is given.

Xen's Arm guests are built as libxl and libxenguest build them:

- RAM fills the banks of Arm's guest memory map (``GUEST_RAM0`` at 1 GiB, up to 3 GiB, then
  ``GUEST_RAM1``); the kernel Image goes at the start of RAM + its ``text_offset``; the
  ramdisk and then the device tree go at 128 MiB into RAM, or as high in the first bank
  as they fit, or else just below the kernel (``xg_dom_arm.c`` ``meminit``);
  :func:`arm64_layout`;
- four "magic" pages at ``GUEST_MAGIC_BASE`` hold the console ring, the xenstore ring, the
  memory-access ring and the vuart, in that order (xg_dom_arm.c's choice); their pfns go
  to the guest in HVM params;
- the device tree (``libxl_arm.c`` ``libxl__prepare_dtb`` and its finalisation) describes
  the machine: root, ``/chosen`` (bootargs, the initrd, a seed for the kernel's RNG),
  ``/cpus`` with PSCI enable-method, ``/psci``, ``/memory@...`` per bank, the GIC (v2 or
  v3, as the domain was created), ``/timer`` with its PPIs, ``/hypervisor`` ("xen,xen":
  the grant table region and the "extended regions" a guest may map foreign pages into,
  and the event-channel PPI): :func:`guest_device_tree`.

Addresses, sizes and interrupt numbers come from the variant (:mod:`.constants`).
"""

from __future__ import annotations

import os

from ..errors import ImageError
from . import constants, fdt
from .memory import PAGE_SHIFT, PAGE_SIZE, Segment, pages_for

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import List, NamedTuple, Optional, Sequence, Tuple

    from ..abi import Variant
    from .kernel import Arm64Kernel
else:  # the same classes, without importing typing (see _ntuple)
    from .._ntuple import NamedTuple

__all__ = ["Arm64Layout", "arm64_layout", "guest_device_tree", "extended_regions", "mpidr", "MAGIC_PAGES"]

#: The magic pages, in order from GUEST_MAGIC_BASE (libxenguest's xg_dom_arm.c).
MAGIC_PAGES = ("console", "xenstore", "memaccess", "vuart")
#: Extended regions smaller than this are not offered (libxl_arm.c EXT_REGION_MIN_SIZE).
EXT_REGION_MIN_SIZE = 64 << 20
MiB = 1 << 20


class Arm64Layout(NamedTuple):
    """Where an arm64 guest's pieces go (guest-physical addresses; pfns are guest frames).

    ``banks``: (base, bytes) of each RAM bank used; ``kernel``, ``ramdisk`` (``None``
    without one) and ``dtb`` the segments; ``modbase`` where the modules start;
    ``magic``: the pfn of each of :data:`MAGIC_PAGES`; ``entry`` the kernel's entry point
    (booting.rst: x0 holds the device tree's address, ``dtb.vstart``).
    """

    banks: Tuple[Tuple[int, int], ...]
    kernel: Segment
    ramdisk: Optional[Segment]
    dtb: Segment
    modbase: int
    magic: Tuple[Tuple[str, int], ...]
    entry: int

    @property
    def initrd(self) -> Optional[Tuple[int, int]]:
        """The initrd's (start, end) for ``/chosen``: libxl writes them from the placement,
        whose end is the ramdisk's last page's end (zeros after the file's bytes)."""
        if self.ramdisk is None:
            return None
        return self.ramdisk.vstart, self.ramdisk.vstart + self.ramdisk.pages * PAGE_SIZE

    @property
    def console_pfn(self) -> int:
        return dict(self.magic)["console"]

    @property
    def xenstore_pfn(self) -> int:
        return dict(self.magic)["xenstore"]


def _round_up(value: int, align: int) -> int:
    return (value + align - 1) // align * align


def arm64_layout(kernel: Arm64Kernel, memory_bytes: int, ramdisk_size: int, dtb_size: int,
                 variant: Variant) -> Arm64Layout:
    """The layout of an arm64 guest with ``memory_bytes`` of RAM, the Image ``kernel``, a
    ramdisk of ``ramdisk_size`` bytes (0: none) and a device tree of ``dtb_size`` bytes.

    Raises :class:`ImageError` when the memory cannot hold it: no RAM, more than Arm's
    guest memory map has, the kernel (its bytes or its ``image_size``) and modules beyond
    the first bank, no room for the modules.  Unlike libxenguest, the kernel's extent is its ``image_size`` (bss
    included) when that is larger than the file, so modules never land in its bss.
    """
    def c(name: str) -> int:
        return constants.const(variant, name)

    nbanks = c("GUEST_RAM_BANKS")
    bases = [c(f"GUEST_RAM{i}_BASE") for i in range(nbanks)]
    sizes = [c(f"GUEST_RAM{i}_SIZE") for i in range(nbanks)]
    if memory_bytes <= 0:
        raise ImageError("a guest needs memory")
    if memory_bytes > sum(sizes):
        raise ImageError(f"{memory_bytes >> 20} MiB is more than Arm's guest memory map holds ({sum(sizes) >> 20} MiB)")
    if memory_bytes % PAGE_SIZE:
        raise ValueError("memory_bytes must be a multiple of 4 KiB")
    kernbase = kernel.load_addr
    kernend = _round_up(max(kernel.kernel_end, kernel.image_end), 2 * MiB)
    dtb_pages = _round_up(dtb_size, PAGE_SIZE)
    rd_pages = _round_up(ramdisk_size, PAGE_SIZE) if ramdisk_size else 0
    modsize = dtb_pages + rd_pages
    if modsize + (kernend - kernbase) > sizes[0]:
        raise ImageError("not enough memory for the kernel, device tree and initrd in the first RAM bank")
    banks: List[Tuple[int, int]] = []
    left = memory_bytes
    for base, size in zip(bases, sizes):
        if not left:
            break
        take = min(left, size)
        banks.append((base, take))
        left -= take
    bank0end = banks[0][0] + banks[0][1]
    ram128mb = bases[0] + 128 * MiB
    if kernel.load_addr + (kernel.kernel_end - kernel.load_addr) > bank0end:
        raise ImageError(f"the kernel ends past the guest's memory ({memory_bytes >> 20} MiB)")
    if kernel.image_end > bank0end:
        raise ImageError(f"the kernel's image_size ends past the guest's memory ({memory_bytes >> 20} MiB): "
                         "it needs more")
    if bank0end >= ram128mb + modsize and kernend < ram128mb:
        modbase = ram128mb
    elif bank0end - modsize > kernend:
        modbase = bank0end - modsize
    elif kernbase - bases[0] > modsize:
        modbase = kernbase - modsize
    else:
        raise ImageError(f"no room for the device tree and initrd beside the kernel in {memory_bytes >> 20} MiB")
    k = Segment("kernel", kernel.load_addr, kernel.kernel_end, kernel.load_addr >> PAGE_SHIFT,
                pages_for(kernel.kernel_end - kernel.load_addr))
    rd = None
    at = modbase
    if ramdisk_size:
        rd = Segment("module0", at, at + ramdisk_size, at >> PAGE_SHIFT, pages_for(ramdisk_size))
        at += rd_pages
    dt = Segment("devicetree", at, at + dtb_size, at >> PAGE_SHIFT, pages_for(dtb_size))
    magic_base = c("GUEST_MAGIC_BASE") >> PAGE_SHIFT
    magic = tuple((name, magic_base + i) for i, name in enumerate(MAGIC_PAGES))
    return Arm64Layout(tuple(banks), k, rd, dt, modbase, magic, kernel.entry)


# -- the device tree ----------------------------------------------------------------------------

def mpidr(vcpu: int) -> int:
    """The MPIDR affinity a vcpu's ``reg`` carries (libxl: Aff0 = vcpu % 16, Aff1 = vcpu / 16)."""
    return (vcpu & 0x0F) | (((vcpu >> 4) & 0xFF) << 8)


def _interrupt(variant: Variant, irq: int) -> bytes:
    """One GIC interrupt specifier (3 cells) for ``irq`` (a PPI below 32), every cpu,
    active-low level (Linux's arm,gic binding)."""
    ppi = irq < 32
    return fdt.u32(1 if ppi else 0, irq - (16 if ppi else 32),
                   (0xF << 8) | constants.const(variant, "DT_IRQ_TYPE_LEVEL_LOW"))


def _reg(variant: Variant, *ranges: Tuple[int, int]) -> bytes:
    ac = constants.const(variant, "GUEST_ROOT_ADDRESS_CELLS")
    sc = constants.const(variant, "GUEST_ROOT_SIZE_CELLS")
    return b"".join(fdt.cells(ac, a) + fdt.cells(sc, s) for a, s in ranges)


def extended_regions(variant: Variant, banks: Sequence[Tuple[int, int]], gpaddr_bits: int) -> List[Tuple[int, int]]:
    """The unused guest-physical ranges (2 MiB aligned, 64 MiB at least) after the RAM of
    each bank, within ``gpaddr_bits`` of address, that ``/hypervisor`` offers the guest
    for foreign mappings (libxl's finalize_hypervisor_node)."""
    nbanks = constants.const(variant, "GUEST_RAM_BANKS")
    used = dict(banks)
    top = (1 << gpaddr_bits) - 1
    out = []
    for i in range(nbanks):
        base = constants.const(variant, f"GUEST_RAM{i}_BASE")
        size = constants.const(variant, f"GUEST_RAM{i}_SIZE")
        start = base + _round_up(used.get(base, 0), 2 * MiB)
        end = min(top, base + size - 1)
        if end > start and end - start + 1 >= EXT_REGION_MIN_SIZE:
            out.append((start, end - start + 1))
    return out


def guest_device_tree(variant: Variant, *, xen_version: Tuple[int, int], vcpus: int,
                      banks: Sequence[Tuple[int, int]], gic_version: int, cmdline: Optional[str] = None,
                      initrd: Optional[Tuple[int, int]] = None, gpaddr_bits: int = 40,
                      clock_frequency: int = 0, rng_seed: Optional[bytes] = None) -> fdt.Node:
    """The device tree of an arm64 guest, node for node as libxl makes it.

    ``xen_version`` (major, minor) names the machine (``XENVM-4.17``, ``xen,xen-4.17``);
    ``vcpus`` the most the guest may have (a ``/cpus/cpu@N`` each); ``banks`` the RAM as
    (base, bytes) (a ``/memory@base`` each); ``gic_version`` 2 or 3 (the domain's vGIC);
    ``cmdline`` the kernel's (``/chosen/bootargs``, left out when empty); ``initrd`` its
    (start, end) addresses; ``gpaddr_bits`` the guest's physical address width (Xen's
    getdomaininfo says it), bounding the extended regions; ``clock_frequency`` the timer's
    when Xen gives one (0: left out); ``rng_seed`` 128 bytes for ``/chosen/rng-seed``
    (default: fresh random bytes).  Use :func:`~xenprivcmd.build.fdt.dtb` for the blob.

    Raises ``ValueError`` for a GIC version other than 2 or 3, no vcpu, no bank.
    """
    def c(name: str) -> int:
        return constants.const(variant, name)

    gic = fdt.u32(c("GUEST_PHANDLE_GIC"))
    major, minor = xen_version
    if gic_version not in (2, 3):
        raise ValueError(f"GIC version {gic_version}: Xen's guests have a GICv2 or a GICv3")
    if vcpus < 1 or vcpus > c("GUEST_MAX_VCPUS"):
        raise ValueError(f"{vcpus} vcpus: an Arm guest has 1..{c('GUEST_MAX_VCPUS')}")
    if not banks:
        raise ValueError("a guest needs a RAM bank")
    seed = os.urandom(128) if rng_seed is None else bytes(rng_seed)
    chosen = []
    if cmdline:
        chosen.append(("bootargs", fdt.string(cmdline)))
    if initrd is not None:
        chosen += [("linux,initrd-start", fdt.u64(initrd[0])), ("linux,initrd-end", fdt.u64(initrd[1]))]
    chosen.append(("rng-seed", seed))
    cpus = [fdt.Node(f"cpu@{mpidr(i):x}", [("device_type", fdt.string("cpu")), ("compatible", fdt.string("arm,armv8")),
                                          ("enable-method", fdt.string("psci")), ("reg", fdt.u32(mpidr(i)))])
            for i in range(vcpus)]
    nodes = [
        fdt.Node("chosen", chosen),
        fdt.Node("cpus", [("#address-cells", fdt.u32(1)), ("#size-cells", fdt.u32(0))], cpus),
        fdt.Node("psci", [("compatible", fdt.strings("arm,psci-1.0", "arm,psci-0.2", "arm,psci")),
                          ("method", fdt.string("hvc")), ("cpu_off", fdt.u32(c("PSCI_cpu_off"))),
                          ("cpu_on", fdt.u32(c("PSCI_cpu_on")))]),
    ]
    for base, size in banks:
        nodes.append(fdt.Node(f"memory@{base:x}", [("device_type", fdt.string("memory")), ("reg", _reg(variant, (base, size)))]))
    if gic_version == 2:
        gicd = c("GUEST_GICD_BASE")
        compat = fdt.strings("arm,cortex-a15-gic", "arm,cortex-a9-gic")
        regs = _reg(variant, (gicd, c("GUEST_GICD_SIZE")), (c("GUEST_GICC_BASE"), c("GUEST_GICC_SIZE")))
    else:
        gicd = c("GUEST_GICV3_GICD_BASE")
        compat = fdt.string("arm,gic-v3")
        regs = _reg(variant, (gicd, c("GUEST_GICV3_GICD_SIZE")), (c("GUEST_GICV3_GICR0_BASE"), c("GUEST_GICV3_GICR0_SIZE")))
    nodes.append(fdt.Node(f"interrupt-controller@{gicd:x}", [
        ("compatible", compat), ("#interrupt-cells", fdt.u32(3)), ("#address-cells", fdt.u32(0)),
        ("interrupt-controller", b""), ("reg", regs), ("linux,phandle", gic),
        ("phandle", gic)]))
    timer = [("compatible", fdt.string("arm,armv8-timer")),
             ("interrupts", _interrupt(variant, c("GUEST_TIMER_PHYS_S_PPI")) + _interrupt(variant, c("GUEST_TIMER_PHYS_NS_PPI"))
              + _interrupt(variant, c("GUEST_TIMER_VIRT_PPI"))),
             ("interrupt-parent", gic)]
    if clock_frequency:
        timer.append(("clock-frequency", fdt.u32(clock_frequency)))
    nodes.append(fdt.Node("timer", timer))
    regions = [(c("GUEST_GNTTAB_BASE"), c("GUEST_GNTTAB_SIZE"))] + extended_regions(variant, banks, gpaddr_bits)
    nodes.append(fdt.Node("hypervisor", [
        ("compatible", fdt.strings(f"xen,xen-{major}.{minor}", "xen,xen")), ("reg", _reg(variant, *regions)),
        ("interrupts", _interrupt(variant, c("GUEST_EVTCHN_PPI"))), ("interrupt-parent", gic)]))
    return fdt.Node("", [
        ("model", fdt.string(f"XENVM-{major}.{minor}")),
        ("compatible", fdt.strings(f"xen,xenvm-{major}.{minor}", "xen,xenvm")),
        ("interrupt-parent", gic),
        ("#address-cells", fdt.u32(c("GUEST_ROOT_ADDRESS_CELLS"))),
        ("#size-cells", fdt.u32(c("GUEST_ROOT_SIZE_CELLS"))),
    ], nodes)
