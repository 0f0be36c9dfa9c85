"""The guest-virtual layout of an x86_64 PV guest at boot, and its initial page tables.

A PV kernel starts with paging on: the domain builder lays its memory out from the kernel's
``VIRT_BASE`` up -- the kernel, the ramdisk, the p2m list, start_info, the xenstore and
console rings, the page tables that map all of it, the boot stack -- and writes those page
tables.  :func:`pv_layout` computes that layout as libxenguest does
(``tools/libs/guest/xg_dom_core.c`` ``xc_dom_build_image`` and ``xg_dom_x86.c``, the same
from Xen 4.14 to 4.21), for the same inputs, to the page; :func:`page_tables` writes the
page-table pages for a given pfn -> mfn map, :func:`p2m_list` the p2m list.  Pure
arithmetic over integers and bytearrays; nothing here touches a hypervisor.

The rules (x86_64, 4-level paging, 48-bit virtual addresses):

- allocation is linear in pfn and virtual address from ``VIRT_BASE`` (pfn 0): padding up
  to the kernel's start, the kernel, a ramdisk that must be mapped, the p2m list when the
  kernel gives no ``INIT_P2M`` address, then one page each for start_info, xenstore and
  console, then the page tables, then the boot stack;
- the page tables map ``VIRT_BASE`` up to an end rounded up to 4 MiB that leaves at least
  512 KiB and the boot stack free after them (found by iterating, since more memory needs
  more tables); one L4, and the L3, L2 and L1 pages that range needs;
- a ramdisk the kernel takes by pfn (``MOD_START_PFN``) goes after that mapped range,
  unmapped; with ``INIT_P2M`` the p2m list goes last, mapped at that address by page
  tables of its own that follow it (sharing the L4);
- page-table pages are mapped read-only in the L1s; every entry is present, accessed and
  (above L1) dirty and user.
"""

from __future__ import annotations

import struct

from ..errors import ImageError
from .memory import PAGE_SHIFT, PAGE_SIZE, Segment

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

    from .kernel import PvKernel

    PfnMap = Union[Sequence[int], Callable[[int], int]]
else:  # the same classes, without importing typing (see _ntuple)
    from .._ntuple import NamedTuple

__all__ = ["Level", "MappedRange", "PvLayout", "pv_layout", "page_tables", "p2m_list", "PAGE_SIZE",
           "PAGE_PRESENT", "PAGE_RW", "PAGE_USER", "PAGE_ACCESSED", "PAGE_DIRTY", "INVALID_MFN"]

LEVELS = 4
LEVEL_SHIFT = 9            # 512 entries a table
VIRT_BITS = 48
VADDR_MASK = (1 << VIRT_BITS) - 1
#: x86 page-table entry bits (Intel SDM vol. 3, 4-level paging)
PAGE_PRESENT, PAGE_RW, PAGE_USER, PAGE_ACCESSED, PAGE_DIRTY = 0x1, 0x2, 0x4, 0x20, 0x40
#: protections libxenguest gives each level (L1, then L2..L4)
L1_PROT = PAGE_PRESENT | PAGE_RW | PAGE_ACCESSED
UPPER_PROT = PAGE_PRESENT | PAGE_RW | PAGE_ACCESSED | PAGE_DIRTY | PAGE_USER
#: what the p2m list holds for a pfn without memory
INVALID_MFN = (1 << 64) - 1
#: the free space the mapped range must keep after the page tables (Linux needs it)
PGTAB_PADDING = 512 * 1024
#: the mapped range ends on a 4 MiB boundary
PGTAB_ALIGN_BITS = 22
P2M_ENTRY_SIZE = 8


class Level(NamedTuple):
    """The page tables of one level of one mapping: ``tables`` of them from ``pfn`` on,
    covering ``vfrom``..``vto`` (inclusive, 48-bit)."""

    vfrom: int
    vto: int
    pfn: int
    tables: int


class MappedRange(NamedTuple):
    """One virtually contiguous range the initial page tables map: ``vfrom``..``vto``
    (inclusive, 48-bit) to the pfns from ``pfn`` on; ``levels[0]`` are its L1 tables ..
    ``levels[3]`` its L4 (the first mapping only has one); ``tables`` how many."""

    vfrom: int
    vto: int
    pfn: int
    tables: int
    levels: Tuple[Level, Level, Level, Level]


class PvLayout(NamedTuple):
    """Where everything of an x86_64 PV guest goes at boot (pfns count from 0 at ``virt_base``).

    ``segments``: every piece in the order it was allocated, named as libxenguest logs
    them (``kernel``, ``module0``, ``phys2mach``, ``start info``, ``xenstore``,
    ``console``, ``page tables``, ``boot stack``).  ``mappings``: what the page tables map
    (the kernel's range, then the p2m list's when it is mapped at ``INIT_P2M``).
    The rest is what start_info and the boot vcpu get: see :meth:`start_info_fields`.
    """

    total_pages: int
    p2m_size: int
    virt_base: int
    virt_entry: int
    segments: Tuple[Segment, ...]
    mappings: Tuple[MappedRange, ...]
    virt_alloc_end: int
    virt_pgtab_end: int
    p2m_base: Optional[int]
    ramdisk_unmapped: bool

    def segment(self, name: str) -> Segment:
        """The segment called ``name``.  Raises ``KeyError``."""
        for s in self.segments:
            if s.name == name:
                return s
        raise KeyError(name)

    @property
    def kernel(self) -> Segment:
        return self.segment("kernel")

    @property
    def ramdisk(self) -> Optional[Segment]:
        try:
            return self.segment("module0")
        except KeyError:
            return None

    @property
    def p2m(self) -> Segment:
        """The p2m list (with, under ``INIT_P2M``, its page tables after it)."""
        return self.segment("phys2mach")

    @property
    def start_info_pfn(self) -> int:
        return self.segment("start info").pfn

    @property
    def xenstore_pfn(self) -> int:
        return self.segment("xenstore").pfn

    @property
    def console_pfn(self) -> int:
        return self.segment("console").pfn

    @property
    def pgtables(self) -> Segment:
        return self.segment("page tables")

    @property
    def bootstack_pfn(self) -> int:
        return self.segment("boot stack").pfn

    @property
    def mfn_list(self) -> int:
        """start_info's ``mfn_list``: the p2m list's guest-virtual address."""
        return self.p2m_base if self.p2m_base is not None else self.p2m.vstart

    def start_info_fields(self) -> Dict[str, int]:
        """The layout's share of start_info (``start_info_x86_64`` field -> value):
        ``nr_pages``, ``pt_base``, ``nr_pt_frames``, ``mfn_list``, ``first_p2m_pfn``,
        ``nr_p2m_frames`` (0 unless ``INIT_P2M``), ``mod_start`` (a pfn when the ramdisk is
        unmapped, else its address), ``mod_len`` (whole pages when unmapped) and whether
        ``flags`` needs ``SIF_MOD_START_PFN`` (``mod_start_pfn``: 1 or 0)."""
        p2m = self.p2m
        rd = self.ramdisk
        out = {"nr_pages": self.total_pages, "pt_base": self.pgtables.vstart,
               "nr_pt_frames": self.mappings[0].tables, "mfn_list": self.mfn_list,
               "first_p2m_pfn": p2m.pfn if self.p2m_base is not None else 0,
               "nr_p2m_frames": p2m.pages if self.p2m_base is not None else 0,
               "mod_start": 0, "mod_len": 0, "mod_start_pfn": 0}
        if rd is not None:
            if self.ramdisk_unmapped:
                out.update(mod_start=rd.pfn, mod_len=rd.pages * PAGE_SIZE, mod_start_pfn=1)
            else:
                out.update(mod_start=rd.vstart, mod_len=rd.vend - rd.vstart)
        return out

    def boot_registers(self) -> Dict[str, int]:
        """The boot vcpu's registers the layout decides: ``rip`` (the entry), ``rsp`` (the
        top of the boot stack), ``rsi`` (start_info's address) and ``cr3_pfn`` (the L4's
        pfn; cr3 is its mfn)."""
        return {"rip": self.virt_entry, "rsp": self.virt_base + (self.bootstack_pfn + 1) * PAGE_SIZE,
                "rsi": self.virt_base + self.start_info_pfn * PAGE_SIZE, "cr3_pfn": self.pgtables.pfn}


# -- the allocator ---------------------------------------------------------------------------

def _too_big(what: str, pages: int, total: int, used: int) -> ImageError:
    return ImageError(f"not enough memory: {what} needs {pages:#x} pages, {total - used:#x} of {total:#x} are left "
                      f"({total * PAGE_SIZE >> 20} MiB is too little for this kernel and ramdisk)")


class _Alloc:
    def __init__(self, total_pages: int, virt_base: int) -> None:
        self.total = total_pages
        self.pfn_end = 0                # pfn_alloc_end (x86: RAM starts at pfn 0)
        self.virt_end = virt_base       # virt_alloc_end
        self.segments: List[Segment] = []

    def _take(self, name: str, pages: int) -> None:
        if pages > self.total or self.pfn_end > self.total or pages > self.total - self.pfn_end:
            raise _too_big(f"segment {name}", pages, self.total, self.pfn_end)
        self.pfn_end += pages
        self.virt_end += pages * PAGE_SIZE

    def pad(self, boundary: int) -> None:
        if boundary & (PAGE_SIZE - 1):
            raise ImageError(f"segment boundary {boundary:#x} is not page aligned")
        if boundary < self.virt_end:
            raise ImageError(f"segment boundary {boundary:#x} lies below what is allocated ({self.virt_end:#x})")
        self._take("padding", (boundary - self.virt_end) // PAGE_SIZE)

    def segment(self, name: str, size: int, start: int = 0) -> Segment:
        if start:
            self.pad(start)
        pages = (size + PAGE_SIZE - 1) // PAGE_SIZE
        vstart, pfn = self.virt_end, self.pfn_end
        self._take(name, pages)
        seg = Segment(name, vstart, vstart + size, pfn, pages)
        self.segments.append(seg)
        return seg

    def page(self, name: str) -> Segment:
        return self.segment(name, PAGE_SIZE)


class _Level:
    __slots__ = ("vfrom", "vto", "pfn", "count")

    def __init__(self, vfrom: int, vto: int, pfn: int, count: int) -> None:
        self.vfrom, self.vto, self.pfn, self.count = vfrom, vto, pfn, count


def _count_tables(maps: List[MappedRange], vfrom: int, vto: int, pfn: int, pfn_alloc_end: int,
                  p2m_size: int) -> Tuple[int, int, int, List[_Level]]:
    """libxenguest's count_pgtables: the tables a new mapping of ``vfrom``..``vto`` needs
    beyond those of ``maps``, numbered from ``pfn_alloc_end``: (from, to, tables, levels)."""
    pfn_end = pfn + ((vto - vfrom) >> PAGE_SHIFT)
    if pfn_end >= p2m_size:
        raise ImageError(f"not enough memory for the initial mapping (pfn {pfn_end:#x} >= {p2m_size:#x} pages): "
                         "the guest needs more memory")
    for m in maps:
        if vfrom < m.vto and vto > m.vfrom:
            raise ImageError("overlapping initial mappings")
    afrom, ato = vfrom & VADDR_MASK, vto & VADDR_MASK
    tables = 0
    levels: List[_Level] = [_Level(0, 0, 0, 0) for _ in range(LEVELS)]
    for lv in range(LEVELS - 1, -1, -1):
        here = pfn_alloc_end + tables
        if lv == LEVELS - 1:
            if not maps:  # one L4, in the first mapping only
                levels[lv] = _Level(0, VADDR_MASK, here, 1)
                tables += 1
            else:
                levels[lv] = _Level(0, 0, here, 0)
            continue
        bits = PAGE_SHIFT + (lv + 1) * LEVEL_SHIFT
        mask = (1 << bits) - 1
        f, t = afrom & ~mask, ato | mask
        for m in maps:
            c = m.levels[lv]
            if c.vfrom == c.vto:
                continue
            if f >= c.vfrom and t <= c.vto:
                f = t = 0
                break
            if c.vfrom <= f <= c.vto:
                f = c.vto + 1
            if c.vfrom <= t <= c.vto:
                t = c.vfrom - 1
        n = ((t - f) >> bits) + 1 if f < t else 0
        levels[lv] = _Level(f, t, here, n)
        tables += n
    return afrom, ato, tables, levels


def _freeze(afrom: int, ato: int, pfn: int, tables: int, levels: List[_Level]) -> MappedRange:
    lv = tuple(Level(x.vfrom, x.vto, x.pfn, x.count) for x in levels)
    return MappedRange(afrom, ato, pfn, tables, lv)  # type: ignore[arg-type]


def pv_layout(kernel: PvKernel, total_pages: int, ramdisk_size: int = 0) -> PvLayout:
    """The boot layout of an x86_64 PV guest of ``total_pages`` pages of memory (4 KiB)
    booting ``kernel`` with a ramdisk of ``ramdisk_size`` bytes as placed in its memory (0:
    none; libxenguest before 4.20 placed a gzip ramdisk unpacked, at its gzip size field
    + 16 bytes; 4.20 and later place it as it is).

    Raises :class:`ImageError` when the memory is too small for it all (naming what did
    not fit) or ``total_pages`` is not positive.
    """
    if total_pages <= 0:
        raise ImageError(f"a guest needs memory, not {total_pages} pages")
    if ramdisk_size < 0:
        raise ValueError("ramdisk_size must be >= 0")
    p2m_size = total_pages
    a = _Alloc(total_pages, kernel.virt_base)
    a.segment("kernel", kernel.virt_kend - kernel.virt_kstart, kernel.virt_kstart)
    unmapped = bool(ramdisk_size) and kernel.unmapped_initrd
    if ramdisk_size and not unmapped:
        a.segment("module0", ramdisk_size)
    p2m_base = kernel.p2m_base
    if p2m_base is not None and (p2m_base >= kernel.virt_base or p2m_base & (PAGE_SIZE - 1)):
        p2m_base = None  # libxenguest maps the p2m list with the kernel then
    p2m_bytes = (p2m_size * P2M_ENTRY_SIZE + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
    if p2m_base is None:
        a.segment("phys2mach", p2m_bytes)
    a.page("start info")
    a.page("xenstore")
    a.page("console")
    # the page tables of the kernel's mapping: at least 512 KiB and the boot stack must fit
    # between their end and the end of the mapped range, a multiple of 4 MiB
    extra = 1 + PGTAB_PADDING // PAGE_SIZE
    pages = extra
    align = (1 << PGTAB_ALIGN_BITS) - 1
    while True:
        try_end = (a.virt_end + pages * PAGE_SIZE) | align
        afrom, ato, tables, levels = _count_tables([], kernel.virt_base, try_end, 0, a.pfn_end, p2m_size)
        pages = tables + extra
        if a.virt_end + pages * PAGE_SIZE <= try_end + 1:
            break
    first = _freeze(afrom, ato, 0, tables, levels)
    virt_pgtab_end = try_end + 1
    a.segment("page tables", tables * PAGE_SIZE)
    a.page("boot stack")
    virt_alloc_end = a.virt_end
    a.pad(virt_pgtab_end)
    if unmapped:
        a.segment("module0", ramdisk_size)
    maps = [first]
    if p2m_base is not None:
        afrom, ato, tables, levels = _count_tables(maps, p2m_base, p2m_base + p2m_bytes - 1, a.pfn_end, a.pfn_end,
                                                   p2m_size)
        for lv in levels:
            lv.pfn += p2m_bytes >> PAGE_SHIFT
        maps.append(_freeze(afrom, ato, a.pfn_end, tables, levels))
        a.segment("phys2mach", p2m_bytes + tables * PAGE_SIZE)
    return PvLayout(total_pages, p2m_size, kernel.virt_base, kernel.virt_entry, tuple(a.segments), tuple(maps),
                    virt_alloc_end, virt_pgtab_end, p2m_base, unmapped)


# -- the page tables -------------------------------------------------------------------------

def _lookup(p2m: PfnMap) -> Callable[[int], int]:
    if callable(p2m):
        return p2m
    seq = p2m
    return lambda pfn: seq[pfn]


def page_tables(layout: PvLayout, p2m: PfnMap) -> Dict[int, bytearray]:
    """The initial page-table pages of ``layout``: pfn -> its 4096 bytes, for a guest whose
    pfn ``n`` is machine frame ``p2m[n]`` (a sequence, or a function of the pfn).

    Entries point at machine frames (a PV guest's page tables hold mfns); L1 entries of
    page-table pages are read-only, as Xen requires.  Raises ``IndexError``/``KeyError``
    from ``p2m`` for a pfn it lacks.
    """
    mfn = _lookup(p2m)
    maps = layout.mappings
    readonly = [(m.levels[LEVELS - 1].pfn, m.levels[LEVELS - 1].pfn + m.tables) for m in maps]
    pages: Dict[int, bytearray] = {}
    for m in maps:
        for level in m.levels:
            for i in range(level.tables):
                pages[level.pfn + i] = bytearray(PAGE_SIZE)
    entry = struct.Struct("<Q")
    for lv in range(LEVELS - 1, -1, -1):
        shift = PAGE_SHIFT + lv * LEVEL_SHIFT
        for m1 in maps:
            tab = m1.levels[lv]
            vfrom, vto = tab.vfrom, tab.vto
            for m2 in maps:
                if lv > 0:
                    below = m2.levels[lv - 1]
                    if below.tables == 0:
                        continue
                    tfrom, tto, tpfn = below.vfrom, below.vto, below.pfn
                else:
                    tfrom, tto, tpfn = m2.vfrom, m2.vto, m2.pfn
                if tfrom >= vto or tto <= vfrom:
                    continue
                p_s = (max(vfrom, tfrom) - vfrom) >> shift
                p_e = (min(vto, tto) - vfrom) >> shift
                pfn = ((max(vfrom, tfrom) - tfrom) >> shift) + tpfn
                for p in range(p_s, p_e + 1):
                    prot = UPPER_PROT
                    if lv == 0:
                        prot = L1_PROT
                        if any(s <= pfn < e for s, e in readonly):
                            prot &= ~PAGE_RW
                    page = pages.get(tab.pfn + (p >> LEVEL_SHIFT))
                    if page is None:
                        raise AssertionError(f"entry {p} of the L{lv + 1} tables at pfn {tab.pfn:#x} lies past them")
                    entry.pack_into(page, (p & 511) * 8, (mfn(pfn) << PAGE_SHIFT) | prot)
                    pfn += 1
    return pages


def p2m_list(layout: PvLayout, p2m: PfnMap) -> bytes:
    """The guest's p2m list (``mfn_list``): ``p2m_size`` little-endian u64 machine frame
    numbers, pfn order (``INVALID_MFN`` where ``p2m`` gives ``None``)."""
    mfn = _lookup(p2m)
    out = bytearray(layout.p2m_size * P2M_ENTRY_SIZE)
    for pfn in range(layout.p2m_size):
        v = mfn(pfn)
        struct.pack_into("<Q", out, pfn * P2M_ENTRY_SIZE, INVALID_MFN if v is None else v)
    return bytes(out)
