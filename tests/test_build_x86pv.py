"""The x86_64 PV boot layout and its page tables (issue 25).

- the layout of Debian's 6.1 kernel with 128 MiB and the suite's initrd, as libxenguest
  (Xen 4.17) logged it under ``xl -vvv create`` in bookworm's dom0
  (``tests/realxen/test_build_layout.py`` asks libxenguest again in every x86 suite);
- the page tables walked as the x86 MMU walks 4-level tables (Intel SDM vol. 3, 4.5): every
  page of the mapped ranges reaches the machine frame the p2m gives, with the right rights,
  nothing outside them is mapped;
- the rules of the layout checked on random memory and ramdisk sizes, with the tables a
  range needs counted directly (distinct 2 MiB, 1 GiB and 512 GiB regions).
"""

from __future__ import annotations

import random
import struct
from typing import Dict, List, Optional, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xenprivcmd.abi import variant
from xenprivcmd.build.kernel import pv_kernel, read_image
from xenprivcmd.build.x86pv import PAGE_SIZE, p2m_list, page_tables, pv_layout
from xenprivcmd.errors import ImageError

from .build_helpers import make_kernel, read, suite_files

X86 = variant("4.17.0")
MiB = 1 << 20
VMASK = (1 << 48) - 1


@pytest.fixture(scope="module")
def debian():  # type: ignore[no-untyped-def]
    files = suite_files("bookworm")
    return pv_kernel(read_image(read(files["vmlinux"])), X86)


@pytest.fixture(scope="module")
def small(tmp_path_factory):  # type: ignore[no-untyped-def]
    """A kernel without INIT_P2M nor MOD_START_PFN (the p2m list and ramdisk mapped)."""
    path = make_kernel(tmp_path_factory.mktemp("k"), [(6, "linux"), (5, "xen-3.0"), (3, 0xFFFFFFFF80000000),
                                                       (8, "generic")], text_pages=40, bss_pages=300)
    return pv_kernel(read(path), X86)


def _segs(layout) -> List[Tuple[str, int, int, int, int]]:  # type: ignore[no-untyped-def]
    return [(s.name, s.vstart, s.vend, s.pfn, s.pages) for s in layout.segments]


def test_debian_kernel_as_libxenguest_laid_it_out(debian):
    """xl -vvv create (Xen 4.17.7, bookworm): memory = 128, the 1,027,988 byte initrd, which
    libxenguest 4.17 places unpacked: "xc_dom_do_gunzip: unzip ok, 0xfaf94 -> 0x1e45e0"."""
    lay = pv_layout(debian, 128 * MiB // PAGE_SIZE, 0x1E45E0)
    assert _segs(lay) == [
        ("kernel", 0xFFFFFFFF81000000, 0xFFFFFFFF84A00000, 0x1000, 0x3A00),
        ("start info", 0xFFFFFFFF84A00000, 0xFFFFFFFF84A01000, 0x4A00, 1),
        ("xenstore", 0xFFFFFFFF84A01000, 0xFFFFFFFF84A02000, 0x4A01, 1),
        ("console", 0xFFFFFFFF84A02000, 0xFFFFFFFF84A03000, 0x4A02, 1),
        ("page tables", 0xFFFFFFFF84A03000, 0xFFFFFFFF84A2C000, 0x4A03, 0x29),
        ("boot stack", 0xFFFFFFFF84A2C000, 0xFFFFFFFF84A2D000, 0x4A2C, 1),
        ("module0", 0xFFFFFFFF84C00000, 0xFFFFFFFF84DE45E0, 0x4C00, 0x1E5),
        ("phys2mach", 0xFFFFFFFF84DE5000, 0xFFFFFFFF84E28000, 0x4DE5, 0x43),
    ]
    assert (lay.virt_alloc_end, lay.virt_pgtab_end) == (0xFFFFFFFF84A2D000, 0xFFFFFFFF84C00000)
    # count_pgtables: 0x0000ff8000000000 -> 0x0000ffffffffffff 1, 0x0000ffff80000000 -> 0x0000ffffbfffffff 1,
    # 0x0000ffff80000000 -> 0x0000ffff84bfffff 38; then for the p2m list at 0x8000000000: 1, 1, 1
    first, p2m = lay.mappings
    assert [(lv.vfrom, lv.vto, lv.tables) for lv in first.levels[:3]][::-1] == [
        (0xFF8000000000, 0xFFFFFFFFFFFF, 1), (0xFFFF80000000, 0xFFFFBFFFFFFF, 1), (0xFFFF80000000, 0xFFFF84BFFFFF, 38)]
    assert [(lv.vfrom, lv.vto, lv.tables) for lv in p2m.levels[:3]][::-1] == [
        (0x8000000000, 0xFFFFFFFFFF, 1), (0x8000000000, 0x803FFFFFFF, 1), (0x8000000000, 0x80001FFFFF, 1)]
    # vcpu_x86_64: cr3: pfn 0x4a03
    regs = lay.boot_registers()
    assert regs == {"rip": 0xFFFFFFFF830791C0, "rsp": 0xFFFFFFFF84A2D000, "rsi": 0xFFFFFFFF84A00000, "cr3_pfn": 0x4A03}
    si = lay.start_info_fields()
    assert si == {"nr_pages": 0x8000, "pt_base": 0xFFFFFFFF84A03000, "nr_pt_frames": 0x29, "mfn_list": 0x8000000000,
                  "first_p2m_pfn": 0x4DE5, "nr_p2m_frames": 0x43, "mod_start": 0x4C00, "mod_len": 0x1E5000,
                  "mod_start_pfn": 1}


def test_too_little_memory_is_named(debian):
    # libxenguest with the default 32 MiB: "segment kernel too large (0x3a00 > 0x2000 - 0x1000 pages)"
    with pytest.raises(ImageError, match=r"segment kernel needs 0x3a00 pages, 0x1000 of 0x2000 are left \(32 MiB"):
        pv_layout(debian, 32 * MiB // PAGE_SIZE)
    with pytest.raises(ImageError, match="initial mapping"):
        pv_layout(debian, 0x4A80)   # the kernel fits; the range the tables map does not
    with pytest.raises(ImageError, match="needs memory"):
        pv_layout(debian, 0)


def test_a_kernel_without_init_p2m_maps_its_ramdisk_and_p2m_list(small):
    lay = pv_layout(small, 64 * MiB // PAGE_SIZE, 100_000)
    names = [s.name for s in lay.segments]
    assert names == ["kernel", "module0", "phys2mach", "start info", "xenstore", "console", "page tables",
                     "boot stack"]
    k, rd, p2m = lay.kernel, lay.ramdisk, lay.p2m
    assert rd.vstart == k.vstart + k.pages * PAGE_SIZE and rd.vend == rd.vstart + 100_000
    assert p2m.vstart == rd.vstart + rd.pages * PAGE_SIZE and p2m.pages == 64 * MiB // PAGE_SIZE * 8 // PAGE_SIZE
    assert len(lay.mappings) == 1 and lay.p2m_base is None and not lay.ramdisk_unmapped
    si = lay.start_info_fields()
    assert (si["mfn_list"], si["mod_start"], si["mod_len"], si["mod_start_pfn"]) == (p2m.vstart, rd.vstart, 100_000, 0)
    assert (si["first_p2m_pfn"], si["nr_p2m_frames"]) == (0, 0)
    assert lay.virt_pgtab_end > lay.boot_registers()["rsp"]


# -- the MMU's reading of the tables -----------------------------------------------------------------

def _walk(pages_by_mfn: Dict[int, bytes], cr3_mfn: int, va: int) -> Optional[Tuple[int, int, int]]:
    """(mfn, L1 entry flags, AND of the upper entries' flags) of ``va``, None when not present."""
    mfn, upper = cr3_mfn, 0xFFF
    for lv in (3, 2, 1, 0):
        idx = (va >> (12 + 9 * lv)) & 511
        (e,) = struct.unpack_from("<Q", pages_by_mfn[mfn], idx * 8)
        if not e & 1:
            return None
        mfn = (e >> 12) & ((1 << 40) - 1)
        if lv:
            upper &= e & 0xFFF
        else:
            return mfn, e & 0xFFF, upper
    return None


def _check_tables(lay, seed: int) -> None:  # type: ignore[no-untyped-def]
    rnd = random.Random(seed)
    mfns = list(range(0x100000, 0x100000 + lay.total_pages))
    rnd.shuffle(mfns)
    tables = page_tables(lay, mfns)
    by_mfn = {mfns[pfn]: bytes(page) for pfn, page in tables.items()}
    # every page-table page the layout counted, and nothing else
    first = lay.mappings[0]
    expected = set(range(lay.pgtables.pfn, lay.pgtables.pfn + lay.pgtables.pages))
    if len(lay.mappings) > 1:
        m = lay.mappings[1]
        expected |= set(range(lay.p2m.pfn + lay.p2m.pages - m.tables, lay.p2m.pfn + lay.p2m.pages))
    assert set(tables) == expected
    readonly = expected
    cr3 = mfns[lay.boot_registers()["cr3_pfn"]]
    canon = lambda va: va | ~VMASK & ((1 << 64) - 1) if va >> 47 & 1 else va  # noqa: E731
    ranges = [(lay.virt_base, lay.virt_pgtab_end, 0)]
    if lay.p2m_base is not None:
        ranges.append((lay.p2m_base, lay.p2m_base + (lay.p2m.pages - lay.mappings[1].tables) * PAGE_SIZE,
                       lay.p2m.pfn))
    for start, end, pfn0 in ranges:
        for va in range(start, end, PAGE_SIZE):
            pfn = pfn0 + (va - start) // PAGE_SIZE
            got = _walk(by_mfn, cr3, va & VMASK)
            assert got is not None, hex(va)
            mfn, flags, upper = got
            assert mfn == mfns[pfn], (hex(va), pfn)
            assert flags & 0x21 == 0x21 and upper & 0x67 == 0x67  # present, accessed; above: rw, user, dirty
            assert bool(flags & 2) == (pfn not in readonly), hex(va)
        for va in (start - PAGE_SIZE, end):  # just outside: not mapped
            assert _walk(by_mfn, cr3, canon(va) & VMASK) is None, hex(va)
    assert first.tables == lay.pgtables.pages


def test_page_tables_of_the_debian_kernel_as_the_mmu_reads_them(debian):
    _check_tables(pv_layout(debian, 128 * MiB // PAGE_SIZE, 0x1E45E0), 1)


def test_page_tables_of_a_kernel_with_everything_mapped(small):
    _check_tables(pv_layout(small, 96 * MiB // PAGE_SIZE, 3 * MiB), 2)


def test_p2m_list_and_bad_maps(small):
    lay = pv_layout(small, 32 * MiB // PAGE_SIZE)
    raw = p2m_list(lay, lambda pfn: None if pfn == 3 else pfn * 7)
    vals = struct.unpack(f"<{lay.p2m_size}Q", raw)
    assert vals[2] == 14 and vals[3] == (1 << 64) - 1 and len(vals) == 8192
    with pytest.raises(IndexError):
        page_tables(lay, [1, 2, 3])


# -- the rules, on random sizes ----------------------------------------------------------------------

def _tables_for(start: int, end: int) -> int:
    """Page tables to map [start, end) with 4-level paging: one L4, one table per distinct
    512 GiB, 1 GiB and 2 MiB region touched."""
    last = end - 1
    return 1 + sum(((last & VMASK) >> s) - ((start & VMASK) >> s) + 1 for s in (39, 30, 21))


@settings(max_examples=60, deadline=None)
@given(mem_mib=st.integers(96, 4096), data=st.data())
def test_layout_rules_on_random_sizes(debian, mem_mib, data):
    # the kernel's range ends at 76 MiB (pfn 0x4c00): what is left holds a ramdisk and the p2m list
    ramdisk = data.draw(st.one_of(st.just(0), st.integers(1, min(40, mem_mib - 80) * MiB)))
    lay = pv_layout(debian, mem_mib * MiB // PAGE_SIZE, ramdisk)
    # linear allocation from VIRT_BASE: each segment right after the one before, inside the memory
    pfn = None
    for s in lay.segments:
        if s.name != "module0" or not lay.ramdisk_unmapped:
            assert pfn is None or s.pfn == pfn or s.name == "kernel", s
        assert s.vstart == lay.virt_base + s.pfn * PAGE_SIZE
        assert s.pfn + s.pages <= lay.total_pages
        pfn = s.pfn + s.pages
        if s.name == "boot stack":
            pfn = (lay.virt_pgtab_end - lay.virt_base) // PAGE_SIZE
    # the mapped range: from VIRT_BASE to a 4 MiB boundary, at least 512 KiB past the boot stack,
    # and the boundary before would not do; the tables are exactly those it needs
    end = lay.virt_pgtab_end
    assert end % (4 * MiB) == 0 and end - lay.virt_alloc_end >= 512 * 1024
    assert lay.pgtables.pages == _tables_for(lay.virt_base, end)
    smaller = end - 4 * MiB
    if smaller > lay.pgtables.vstart:
        need = lay.pgtables.vstart + (_tables_for(lay.virt_base, smaller) + 1) * PAGE_SIZE + 512 * 1024
        assert need > smaller
    # the p2m list (INIT_P2M): every pfn's entry, its own three tables for up to 2 MiB of list
    p2m_pages = (lay.total_pages * 8 + PAGE_SIZE - 1) // PAGE_SIZE
    assert lay.p2m.pages == p2m_pages + _tables_for(lay.p2m_base, lay.p2m_base + p2m_pages * PAGE_SIZE) - 1
    if ramdisk:
        rd = lay.ramdisk
        assert rd.vstart == lay.virt_pgtab_end and rd.vend - rd.vstart == ramdisk
