"""start_info and the boot vcpu's context as the domain builder writes them (issue 25).

The bytes are read back here at the offsets public/xen.h and public/arch-x86/xen-x86_64.h
give (gcc's offsetof on those headers; the generated tables are checked against the same
facts in tests/test_conformance*), and their values against the layout: the MMU's walk
of the page tables from the context's cr3 reaches the boot stack under rsp, start_info
under rsi and the kernel's entry under rip.  ``tests/realxen/test_build_layout.py``
compares both, byte for byte and field by field, with what libxenguest wrote for a guest
``xl create -p`` made, in every suite.
"""

from __future__ import annotations

import random
import struct

import pytest

from xenprivcmd.abi import variant
from xenprivcmd.build.boot import NO_DTB, arm64_vcpu_context, grant_seed, pv_start_info, pv_vcpu_context
from xenprivcmd.build.kernel import pv_kernel, read_image
from xenprivcmd.build.x86pv import PAGE_SIZE, page_tables, pv_layout
from xenprivcmd.errors import ConfigError

from .build_helpers import make_kernel, read, suite_files
from .test_build_x86pv import _walk

X86 = variant("4.17.0")
ARM = variant("4.17.0", arch="aarch64")
MiB = 1 << 20
VMASK = (1 << 48) - 1

# offsetof facts (x86_64): struct start_info (public/xen.h)
SI = {"magic": 0, "nr_pages": 32, "shared_info": 40, "flags": 48, "store_mfn": 56, "store_evtchn": 64,
      "console_mfn": 72, "console_evtchn": 80, "pt_base": 88, "nr_pt_frames": 96, "mfn_list": 104,
      "mod_start": 112, "mod_len": 120, "cmd_line": 128, "first_p2m_pfn": 1152, "nr_p2m_frames": 1160}
# struct vcpu_guest_context (public/arch-x86/xen-x86_64.h): flags at 512, user_regs at 520
# (rsi 520+104, rip 520+128, cs 520+136, rflags 520+144, rsp 520+152, ss 520+160, es/ds/fs/gs
# 520+168/176/184/192), kernel_ss 4968, kernel_sp 4976, ctrlreg 4984, debugreg 5048
VGC = {"flags": 512, "rsi": 624, "rip": 648, "cs": 656, "rflags": 664, "rsp": 672, "ss": 680, "es": 688,
       "ds": 696, "fs": 704, "gs": 712, "kernel_ss": 4968, "kernel_sp": 4976, "cr3": 4984 + 3 * 8,
       "dr6": 5048 + 6 * 8, "dr7": 5048 + 7 * 8}
# struct vcpu_guest_context (public/arch-arm.h, arm64): flags 0, user_regs 8 (x0 at 8, pc64 at
# 8+248, cpsr at 8+256), sctlr 320, ttbcr 328, ttbr0 336, ttbr1 344; size 352
ARM_VGC = {"flags": 0, "x0": 8, "x1": 16, "x2": 24, "x3": 32, "pc64": 256, "cpsr": 264, "sctlr": 320}


def _u64(buf: bytes, off: int) -> int:
    return int(struct.unpack_from("<Q", buf, off)[0])


def _u32(buf: bytes, off: int) -> int:
    return int(struct.unpack_from("<I", buf, off)[0])


def _u16(buf: bytes, off: int) -> int:
    return int(struct.unpack_from("<H", buf, off)[0])


@pytest.fixture(scope="module")
def debian():  # type: ignore[no-untyped-def]
    return pv_kernel(read_image(read(suite_files("bookworm")["vmlinux"])), X86)


@pytest.fixture(scope="module")
def small(tmp_path_factory):  # type: ignore[no-untyped-def]
    """A kernel that takes its ramdisk mapped (no MOD_START_PFN)."""
    path = make_kernel(tmp_path_factory.mktemp("k"), [(6, "linux"), (5, "xen-3.0"), (3, 0xFFFFFFFF80000000),
                                                       (8, "generic")], text_pages=40)
    return pv_kernel(read(path), X86)


def _mfns(total: int, seed: int) -> list:  # type: ignore[type-arg]
    mfns = list(range(0x200000, 0x200000 + total))
    random.Random(seed).shuffle(mfns)
    return mfns


@pytest.mark.parametrize("which", ["debian", "small"])
def test_start_info_page(which, request):  # type: ignore[no-untyped-def]
    kernel = request.getfixturevalue(which)
    lay = pv_layout(kernel, 128 * MiB // PAGE_SIZE, 3 * MiB + 5)
    mfns = _mfns(lay.total_pages, 3)
    page = pv_start_info(X86, lay, mfns, shared_info_mfn=0x1234, store_evtchn=1, console_evtchn=2,
                         cmdline="console=hvc0 root=/dev/xvda1")
    assert len(page) == PAGE_SIZE
    assert page[:32] == b"xen-3.0-x86_64" + bytes(18)
    rd = lay.ramdisk
    assert rd is not None
    got = {k: (_u32 if k.endswith("evtchn") or k == "flags" else _u64)(page, off) for k, off in SI.items()
           if k not in ("magic", "cmd_line")}
    unmapped = which == "debian"  # Debian's kernel says MOD_START_PFN: its ramdisk goes by pfn
    assert lay.ramdisk_unmapped == unmapped
    assert got == {
        "nr_pages": 128 * 256, "shared_info": 0x1234 << 12, "flags": 8 if unmapped else 0,  # SIF_MOD_START_PFN
        "store_mfn": mfns[lay.xenstore_pfn], "store_evtchn": 1, "console_mfn": mfns[lay.console_pfn],
        "console_evtchn": 2, "pt_base": lay.pgtables.vstart, "nr_pt_frames": lay.pgtables.pages,
        "mfn_list": lay.mfn_list,
        "mod_start": rd.pfn if unmapped else rd.vstart, "mod_len": rd.pages * PAGE_SIZE if unmapped else 3 * MiB + 5,
        "first_p2m_pfn": lay.p2m.pfn if lay.p2m_base is not None else 0,
        "nr_p2m_frames": lay.p2m.pages if lay.p2m_base is not None else 0,
    }
    assert page[128:128 + 30] == b"console=hvc0 root=/dev/xvda1\0\0"
    assert not any(page[1168:])  # nothing past the structure
    assert (lay.p2m_base is not None) == (which == "debian")  # Debian's says INIT_P2M too


def test_start_info_refuses_what_does_not_fit(small):
    lay = pv_layout(small, 32 * MiB // PAGE_SIZE)
    mfns = list(range(lay.total_pages))
    kw = dict(shared_info_mfn=1, store_evtchn=1, console_evtchn=2)
    pv_start_info(X86, lay, mfns, cmdline="x" * 1023, **kw)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="1024 bytes; Xen's limit is 1023") as e:
        pv_start_info(X86, lay, mfns, cmdline="x" * 1024, **kw)  # type: ignore[arg-type]
    assert e.value.key == "cmdline"
    with pytest.raises(ConfigError, match="NUL"):
        pv_start_info(X86, lay, mfns, cmdline="a\0b", **kw)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="store_evtchn"):
        pv_start_info(X86, lay, mfns, shared_info_mfn=1, store_evtchn=1 << 32, console_evtchn=2)
    with pytest.raises(ValueError, match="evtchn"):
        pv_start_info(X86, lay, mfns, shared_info_mfn=1, store_evtchn=1, console_evtchn=-1)
    with pytest.raises(IndexError):
        pv_start_info(X86, lay, mfns[:10], **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("which", ["debian", "small"])
def test_vcpu_context_boots_into_the_layout(which, request):  # type: ignore[no-untyped-def]
    kernel = request.getfixturevalue(which)
    lay = pv_layout(kernel, 96 * MiB // PAGE_SIZE, 2 * MiB)
    mfns = _mfns(lay.total_pages, 5)
    ctx = pv_vcpu_context(X86, lay, mfns)
    assert len(ctx) == 5168  # sizeof(vcpu_guest_context_x86_64_t)
    v = {k: (_u16 if k in ("cs", "ss", "es", "ds", "fs", "gs") else _u64)(ctx, off) for k, off in VGC.items()}
    # Xen's flat selectors for a 64-bit PV kernel (xen-x86_64.h: FLAT_RING3_CS64 0xe033,
    # FLAT_RING3_SS64 0xe02b, FLAT_RING3_DS64 0: the null selector)
    assert (v["cs"], v["ss"], v["kernel_ss"], v["ds"], v["es"], v["fs"], v["gs"]) == (0xE033, 0xE02B, 0xE02B,
                                                                                      0, 0, 0, 0)
    assert v["flags"] == 4 | 32  # VGCF_in_kernel | VGCF_online
    assert v["rflags"] == 0x200 and (v["dr6"], v["dr7"]) == (0xFFFF0FF0, 0x400)
    assert v["rip"] == kernel.virt_entry and v["kernel_sp"] == v["rsp"]
    # the MMU, from cr3: rsp's page is the boot stack, rsi is start_info, rip is in the kernel
    tables = {mfns[pfn]: bytes(p) for pfn, p in page_tables(lay, mfns).items()}
    cr3 = v["cr3"] >> 12
    assert v["cr3"] & 0xFFF == 0 and cr3 in tables
    base = lay.virt_base
    assert _walk(tables, cr3, (v["rsp"] - 8) & VMASK)[0] == mfns[lay.bootstack_pfn]  # type: ignore[index]
    assert v["rsi"] & 0xFFF == 0 and _walk(tables, cr3, v["rsi"] & VMASK)[0] == mfns[lay.start_info_pfn]  # type: ignore[index]
    rip_pfn = (v["rip"] - base) // PAGE_SIZE
    assert lay.kernel.pfn <= rip_pfn < lay.kernel.pfn + lay.kernel.pages
    assert _walk(tables, cr3, v["rip"] & VMASK)[0] == mfns[rip_pfn]  # type: ignore[index]
    # nothing else set
    zeroed = bytearray(ctx)
    for k, off in VGC.items():
        zeroed[off:off + (2 if k in ("cs", "ss", "es", "ds", "fs", "gs") else 8)] = bytes(
            2 if k in ("cs", "ss", "es", "ds", "fs", "gs") else 8)
    assert not any(zeroed)


def test_arm64_vcpu_context():
    ctx = arm64_vcpu_context(ARM, entry=0x40200000, dtb=0x48000000)
    assert len(ctx) == 352
    v = {k: _u64(ctx, off) for k, off in ARM_VGC.items()}
    v["flags"] &= 0xFFFFFFFF
    # PSTATE: D, A, I, F masked (arch-arm.h: PSR_DBG_MASK 0x200, PSR_ABT_MASK 0x100, PSR_IRQ_MASK
    # 0x80, PSR_FIQ_MASK 0x40) in EL1h (PSR_MODE_EL1h 5)
    assert v == {"flags": 1, "x0": 0x48000000, "x1": 0, "x2": 0, "x3": 0, "pc64": 0x40200000,
                 "cpsr": 0x3C5, "sctlr": 0x00C50078}
    zeroed = bytearray(ctx)
    for off in ARM_VGC.values():
        zeroed[off:off + 8] = bytes(8)
    assert not any(zeroed)
    assert _u64(arm64_vcpu_context(ARM, entry=0x40000000), 8) == NO_DTB
    with pytest.raises(ValueError, match="entry"):
        arm64_vcpu_context(ARM, entry=-1)
    with pytest.raises(ValueError, match="dtb"):
        arm64_vcpu_context(ARM, entry=0, dtb=1 << 64)


def test_every_release_from_4_14_has_what_they_need(small):
    """start_info and both contexts are made for every release from 4.14 (Debian bullseye's)
    on: the same x86_64 bytes for all (these structures are stable there); arm64's
    vcpu_guest_context grew in 4.16 (user_regs' spsr_el1), so its bytes differ while the
    values read back by name do not."""
    from xenprivcmd.abi import releases

    lay = pv_layout(small, 32 * MiB // PAGE_SIZE)
    mfns = list(range(lay.total_pages))
    x86, arm = set(), set()
    for release in releases():
        if tuple(int(x) for x in release.split("-")[0].split(".")[:2]) < (4, 14):
            continue
        x86.add(pv_vcpu_context(variant(release), lay, mfns) + pv_start_info(
            variant(release), lay, mfns, shared_info_mfn=1, store_evtchn=1, console_evtchn=2, cmdline="quiet"))
        v = variant(release, arch="aarch64")
        raw = arm64_vcpu_context(v, entry=0x40000000, dtb=0x48000000)
        ctx = v.structs["vcpu_guest_context"].from_buffer_copy(raw)
        # the debug mask in every release (Xen's own header has it after 4.22: commit ad8663a75a)
        assert (ctx.flags, ctx.user_regs.pc64, ctx.user_regs.x0, ctx.user_regs.cpsr, ctx.sctlr) == (
            1, 0x40000000, 0x48000000, 0x3C5, 0x00C50078), release
        arm.add(len(raw))
    assert len(x86) == 1 and arm == {344, 352}


def test_grant_seed():
    # grant_entry_v1 (public/grant_table.h): u16 flags, u16 domid, u32 frame; GTF_permit_access 1;
    # GNTTAB_RESERVED_CONSOLE 0, GNTTAB_RESERVED_XENSTORE 1
    for v in (X86, ARM):
        raw = grant_seed(v, 7, console_frame=0x39000, xenstore_frame=0x39001)
        assert struct.unpack("<HHIHHI", raw) == (1, 0, 0x39000, 1, 0, 0x39001)
    raw = grant_seed(X86, 7, console_frame=0x1234, xenstore_frame=0xFFFFFFFF, xenstore_domid=7, console_domid=3)
    assert struct.unpack("<HHIHHI", raw) == (1, 3, 0x1234, 0, 0, 0)  # the guest's own xenstore: no grant
    with pytest.raises(ValueError, match="xenstore_frame"):
        grant_seed(X86, 7, console_frame=1, xenstore_frame=1 << 32)
    with pytest.raises(ValueError, match="console_domid"):
        grant_seed(X86, 7, console_frame=1, xenstore_frame=1, console_domid=0x7FF0)
