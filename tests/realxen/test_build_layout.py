"""xenprivcmd.build's kernel plans and boot layouts against the suite's own toolstack (issue 25).

``xl -vvv create -p`` builds a paused guest from the kernel and initrd the suite's xl guests
boot and logs what libxenguest read and where it put each thing (the ELF notes, every
segment's address and pfn, the page tables counted, cr3).  ``pvdump`` (built per suite from
tests/realxen/c/pvdump.c against its libxenctrl) then reads the guest as it was left: vcpu
0's context; on x86_64 start_info (its page, byte for byte), the p2m list and every
page-table page; on arm64 the magic pages' HVM params.  On arm64, libxl also writes the
device tree it made to ``LIBXL_DEBUG_DUMP_DTB``.  xenprivcmd's plan for the same kernel,
memory and initrd must match all of it: page-table entries, start_info's bytes, the boot
vcpu's registers and device tree nodes included.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
from typing import Dict, List, Tuple

import pytest

import xenprivcmd
from xenprivcmd.build import arm, fdt
from xenprivcmd.build.arm import arm64_layout
from xenprivcmd.build.boot import arm64_vcpu_context, grant_seed, pv_start_info, pv_vcpu_context
from xenprivcmd.build.constants import elfnote_types
from xenprivcmd.build.image import arm64_image, placed_ramdisk, pv_image
from xenprivcmd.build.kernel import arm64_kernel, pv_kernel, read_image
from xenprivcmd.build.x86pv import PAGE_SIZE, page_tables, pv_layout

GUEST_KERNEL = "/opt/xenvm/guest/vmlinuz"
GUEST_RAMDISK = "/opt/xenvm/guest/initrd.gz"
NAME = "xpsh-layout"
MEMORY_MIB = 128
#: libxenguest before commit 4c3a618 (Xen 4.17.5, 4.18.3, 4.19.0) ended a segment at its last page's end
ROUNDED_VEND = ("bullseye",)


def _bin(name: str) -> str:
    d = os.environ.get("XENPRIVCMD_BIN") or os.path.dirname(os.environ.get("XENPRIVCMD_DOMINFO", ""))
    path = os.path.join(d, name)
    assert os.access(path, os.X_OK), f"{path!r} is no program: tools/run-tests builds tests/realxen/c/{name}.c"
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory, suite):  # type: ignore[no-untyped-def]
    """(xl's log, domid, the DTB libxl dumped on Arm) of a paused guest `xl -vvv create -p` made;
    destroyed after the module."""
    cfg = tmp_path_factory.mktemp("layout") / "layout.cfg"
    cfg.write_text(f'name = "{NAME}"\nkernel = "{GUEST_KERNEL}"\nramdisk = "{GUEST_RAMDISK}"\n'
                   f'extra = "console=hvc0 quiet"\nmemory = {MEMORY_MIB}\nvcpus = 2\n')
    dtb = cfg.parent / "libxl.dtb"
    # libxl writes the device tree it made for an Arm guest to this file (libxl_arm.c debug_dump_fdt)
    env = dict(os.environ, LIBXL_DEBUG_DUMP_DTB=str(dtb))
    out = subprocess.run(["xl", "-vvv", "create", "-p", str(cfg)], capture_output=True, text=True, timeout=600, env=env)
    try:
        assert out.returncode == 0, "\n".join(x for x in out.stderr.splitlines()
                                              if re.search("error|panic|fail", x, re.I))
        domid = int(subprocess.run(["xl", "domid", NAME], capture_output=True, text=True, check=True).stdout)
        yield out.stderr, domid, dtb
    finally:
        subprocess.run(["xl", "destroy", NAME], capture_output=True, timeout=120)


def _hex(s: str) -> int:
    return int(s, 16)


def _logged_segments(log: str) -> List[Tuple[str, int, int, int, int]]:
    segs = []
    for m in re.finditer(r"xc_dom_alloc_segment:\s+(\S.*?)\s+: 0x([0-9a-f]+) -> 0x([0-9a-f]+)\s+"
                         r"\(pfn 0x([0-9a-f]+) \+ 0x([0-9a-f]+) pages\)", log):
        segs.append((m.group(1), _hex(m.group(2)), _hex(m.group(3)), _hex(m.group(4)), _hex(m.group(5))))
    for m in re.finditer(r"xc_dom_alloc_page\s+:\s+(\S.*?)\s+: 0x([0-9a-f]+) \(pfn 0x([0-9a-f]+)\)", log):
        segs.append((m.group(1), _hex(m.group(2)), _hex(m.group(2)) + PAGE_SIZE, _hex(m.group(3)), 1))
    return sorted(segs, key=lambda s: s[3])


def _logged_notes(log: str) -> Dict[str, object]:
    notes: Dict[str, object] = {}
    for m in re.finditer(r"ELF: note: ([A-Z0-9_]+) = (\"(.*)\"|0x([0-9a-f]+)|0)$", log, re.M):
        notes[m.group(1)] = m.group(3) if m.group(3) is not None else (_hex(m.group(4)) if m.group(4) else 0)
    return notes


def _kernel():  # type: ignore[no-untyped-def]
    with open(GUEST_KERNEL, "rb") as f:
        return read_image(f.read(), GUEST_KERNEL)


def _ramdisk_size(log: str) -> int:
    """The ramdisk's size as libxenguest placed it: unpacked (to its gzip size field + 16, before
    Xen 4.20: "xc_dom_do_gunzip: unzip ok, 0xA -> 0xB"), else the file as it is."""
    m = re.search(r"xc_dom_do_gunzip: unzip ok, 0x[0-9a-f]+ -> 0x([0-9a-f]+)", log)
    return _hex(m.group(1)) if m else os.path.getsize(GUEST_RAMDISK)


# -- the tests: each checks the suite's kind of guest -----------------------------------------------

def test_kernel_plan_as_libxenguest_reads_it(xen, built):
    (_arm_kernel_plan if xen.arch == "aarch64" else _pv_kernel_plan)(xen, built[0])


def test_layout_as_libxenguest_lays_it_out(xen, suite, built):
    (_arm_layout if xen.arch == "aarch64" else _pv_layout)(xen, suite, built[0])


def test_boot_state_as_the_toolstack_left_it(xen, suite, built):
    if xen.arch == "aarch64":
        _arm_device_tree(xen, built[0], built[2])
    else:
        _pv_boot_state(xen, suite, built[0], built[1])


def test_boot_vcpu_and_start_info_as_libxenguest_wrote_them(xen, suite, built):
    """x86_64: start_info's page byte for byte and vcpu 0's context; arm64: vcpu 0's context
    and the magic pages' HVM params."""
    if xen.arch == "aarch64":
        _arm_boot_vcpu(xen, built[0], built[1])
    else:
        _pv_boot_vcpu(xen, suite, built[0], built[1])


def test_grant_table_seeded_as_libxenguest_seeded_it(xen, built):
    """Entries 0 and 1 of the guest's grant table (read through XENMEM_acquire_resource), and
    the frames libxenguest logged for them, are grant_seed's."""
    log, domid = built[0], built[1]
    logged = {int(i): (int(d), _hex(f)) for i, d, f in
              re.findall(r"xc_dom_set_gnttab_entry: d\d+ gnt\[(\d+)\] -> d(\d+) 0x([0-9a-f]+)", log)}
    if xen.arch == "aarch64":
        lay = _arm_lay(xen, log)
        console, store = lay.console_pfn, lay.xenstore_pfn
    else:
        p2m = _dump(domid)[2]
        lay = pv_layout(pv_kernel(_kernel(), xen.abi), _total_pages(log), _ramdisk_size(log))
        console, store = p2m[lay.console_pfn], p2m[lay.xenstore_pfn]
    assert logged == {0: (0, console), 1: (0, store)}
    ours = grant_seed(xen.abi, domid, console_frame=console, xenstore_frame=store)
    with xen.map_resource(domid, "grant_table", id=0, frame=0, count=1) as m:
        theirs = bytearray(m.view[:len(ours)])
    # Xen sets GTF_reading/GTF_writing in an entry's flags while its grantee has the page
    # mapped (public/grant_table.h): xenconsoled maps the console ring by its grant
    in_use = xen.abi.constants["GTF_reading"] | xen.abi.constants["GTF_writing"]
    for at in range(0, len(theirs), 8):
        theirs[at] &= ~in_use & 0xFF
    assert ours == bytes(theirs)


def test_guest_memory_as_libxenguest_wrote_it(xen, suite, built):
    """Every page of the image (xenprivcmd.build.image) read back from the guest libxl built:
    x86_64 but start_info and the page tables (compared above: Xen adds bits to the tables)
    and the hypercall page (Xen's); arm64 all of it, the device tree as libxl dumped it."""
    log, domid = built[0], built[1]
    with open(GUEST_RAMDISK, "rb") as f:
        ramdisk = placed_ramdisk(xen.abi, f.read())
    skip = set()
    if xen.arch == "aarch64":
        lay = _arm_lay(xen, log)
        pieces = arm64_image(arm64_kernel(_kernel(), xen.abi), lay, ramdisk=ramdisk, dtb=built[2].read_bytes())
        frame = lambda pfn: pfn  # noqa: E731 - guest frames
    else:
        assert len(ramdisk) == _ramdisk_size(log)
        _, si, p2m, _ = _dump(domid)
        kernel = pv_kernel(_kernel(), xen.abi)
        lay = pv_layout(kernel, si["nr_pages"], len(ramdisk))
        pieces = tuple(p for p in pv_image(xen.abi, kernel, lay, p2m, ramdisk=ramdisk, shared_info_mfn=0,
                                           store_evtchn=si["store_evtchn"], console_evtchn=si["console_evtchn"],
                                           cmdline="console=hvc0 quiet")
                       if p.name not in ("page tables", "start info"))
        if kernel.virt_hypercall is not None:
            skip.add((kernel.virt_hypercall - kernel.virt_base) // PAGE_SIZE)
        frame = p2m.__getitem__
    differ, compared = [], 0
    for piece in pieces:
        for first in range(0, piece.pages, 512):
            pfns = range(piece.pfn + first, piece.pfn + min(piece.pages, first + 512))
            with xen.map_foreign(domid, [frame(pfn) for pfn in pfns]) as m:
                view = m.view
                for i, pfn in enumerate(pfns):
                    if pfn in skip:
                        continue
                    at = (pfn - piece.pfn) * PAGE_SIZE
                    compared += 1
                    if bytes(view[i * PAGE_SIZE:(i + 1) * PAGE_SIZE]) != piece.data[at:at + PAGE_SIZE]:
                        differ.append((piece.name, hex(pfn)))
    assert differ == [] and compared > 1000, (len(differ), differ[:20])


# -- x86_64 PV ---------------------------------------------------------------------------------------

def _pv_kernel_plan(xen: xenprivcmd.Handle, log: str) -> None:
    image = _kernel()
    pv = pv_kernel(image, xen.abi)
    assert pv.notes.values == _logged_notes(log)
    # notes the builder has no use for: libelf logs them as unknown, or (4.18+: L1_MFN_VALID,
    # 4.20+: PHYS32_RELOC) by their name alone
    unknown = {_hex(t) for t in re.findall(r"ELF: note: unknown \(0x([0-9a-f]+)\)", log)}
    named = set(re.findall(r"ELF: note: ([A-Z][A-Z0-9_]*)(?: [a-z]+: 0x[0-9a-f]+)*$", log, re.M))
    types = elfnote_types(xen.abi)
    assert unknown <= set(pv.notes.unknown)
    assert {types.get(t) for t in set(pv.notes.unknown) - unknown} == named
    m = re.search(r"decompress OK, 0x([0-9a-f]+) -> 0x([0-9a-f]+)", log)
    if m:  # the bzImage's payload and what it unpacked to
        assert (image.bzimage.payload_length, len(image.data)) == (_hex(m.group(1)), _hex(m.group(2)))
    addr = {k: _hex(v) for k, v in re.findall(r"^xc: detail:\s+(virt_\w+|elf_paddr_offset|p2m_base)\s+= 0x([0-9a-f]+)",
                                               log, re.M)}
    assert addr == {"virt_base": pv.virt_base, "elf_paddr_offset": pv.elf_paddr_offset,
                    "virt_offset": pv.virt_offset, "virt_kstart": pv.virt_kstart, "virt_kend": pv.virt_kend,
                    "virt_entry": pv.virt_entry, "p2m_base": pv.p2m_base if pv.p2m_base is not None else 2**64 - 1}


def _total_pages(log: str) -> int:
    total = _hex(re.search(r"xc_dom_mem_init: mem \d+ MB, pages 0x([0-9a-f]+) pages", log).group(1))  # type: ignore
    assert total == MEMORY_MIB * 256
    return total


def _ours(segments, suite: str) -> List[Tuple[str, int, int, int, int]]:  # type: ignore[no-untyped-def]
    ours = [(s.name, s.vstart, s.vend, s.pfn, s.pages) for s in segments]
    if suite in ROUNDED_VEND:
        ours = [(n, v, v + p * PAGE_SIZE, pfn, p) for n, v, _, pfn, p in ours]
    return sorted(ours, key=lambda s: s[3])


def _pv_layout(xen: xenprivcmd.Handle, suite: str, log: str) -> None:
    lay = pv_layout(pv_kernel(_kernel(), xen.abi), _total_pages(log), _ramdisk_size(log))
    assert _ours(lay.segments, suite) == _logged_segments(log)
    ends = dict(re.findall(r"xc_dom_build_image\s+: (virt_alloc_end|virt_pgtab_end) : 0x([0-9a-f]+)", log))
    assert (_hex(ends["virt_alloc_end"]), _hex(ends["virt_pgtab_end"])) == (lay.virt_alloc_end, lay.virt_pgtab_end)
    counted = [(_hex(f), _hex(t), int(n)) for f, t, n in
               re.findall(r"count_pgtables: 0x[0-9a-f]+/\d+: 0x([0-9a-f]+) -> 0x([0-9a-f]+), (\d+) table", log)]
    ours_counted = [(lv.vfrom, lv.vto, lv.tables) for m in lay.mappings for lv in reversed(m.levels[:3])]
    assert ours_counted == counted[-len(ours_counted):]
    cr3 = re.search(r"vcpu_x86_64: cr3: pfn 0x([0-9a-f]+) mfn 0x([0-9a-f]+)", log)
    assert cr3 and _hex(cr3.group(1)) == lay.boot_registers()["cr3_pfn"]


@functools.cache
def _pvdump(domid: int) -> Dict[str, object]:
    """pvdump's objects by key (page-table pages under ``"tables"``: mfn -> (level, entries))."""
    out = subprocess.run([_bin("pvdump"), str(domid)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    objs: Dict[str, object] = {}
    tables: Dict[int, Tuple[int, List[int]]] = {}
    for line in out.stdout.splitlines():
        obj = json.loads(line)
        if "table" in obj:
            tables[obj["mfn"]] = (obj["table"], obj["entries"])
        else:
            objs.update(obj)
    objs["tables"] = tables
    return objs


def _dump(domid: int) -> Tuple[dict, dict, List[int], Dict[int, Tuple[int, List[int]]]]:
    d = _pvdump(domid)
    return d["regs"], d["start_info"], d["p2m"], d["tables"]  # type: ignore[return-value]


#: Xen's adjust_guest_l1e (xen/arch/x86/pv/mm.h): validating a 64-bit PV guest's L1 entry that
#: lacks _PAGE_USER, Xen adds _PAGE_USER and _PAGE_GUEST_KERNEL (PTE bit 52).
PTE_USER, PTE_GUEST_KERNEL = 0x4, 1 << 52
#: The L4 slots Xen fills with its own mappings (0xffff800000000000 - 0xffff87ffffffffff)
XEN_L4_SLOTS = range(256, 272)


def _as_placed(lay, suite: str):  # type: ignore[no-untyped-def]
    """``lay`` with a mapped ramdisk ending where libxenguest ended it (see ROUNDED_VEND)."""
    if suite not in ROUNDED_VEND or lay.ramdisk is None or lay.ramdisk_unmapped:
        return lay
    return lay._replace(segments=tuple(s._replace(vend=s.vstart + s.pages * PAGE_SIZE) if s.name == "module0"
                                       else s for s in lay.segments))


def _pv_boot_vcpu(xen: xenprivcmd.Handle, suite: str, log: str, domid: int) -> None:
    regs, si, p2m, _ = _dump(domid)
    lay = _as_placed(pv_layout(pv_kernel(_kernel(), xen.abi), si["nr_pages"], _ramdisk_size(log)), suite)
    # the inputs libxl chose: the event channels; the shared info frame is the domain's
    shinfo = xen.domain_info(domid).shared_info_frame
    ours = pv_start_info(xen.abi, lay, p2m, shared_info_mfn=shinfo, store_evtchn=si["store_evtchn"],
                         console_evtchn=si["console_evtchn"], cmdline="console=hvc0 quiet")
    theirs = bytes.fromhex(_pvdump(domid)["start_info_page"])  # type: ignore[arg-type]
    if ours != theirs:
        diff = [i for i in range(len(ours)) if ours[i] != theirs[i]]
        raise AssertionError(f"start_info differs at bytes {diff[:16]}: ours {ours[:1168].hex()}, "
                             f"libxenguest's {theirs[:1168].hex()}")
    ctx = xen.abi.structs["vcpu_guest_context"].from_buffer_copy(pv_vcpu_context(xen.abi, lay, p2m))
    ur = ctx.user_regs
    mine = {"rip": ur.rip, "rsp": ur.rsp, "rsi": ur.rsi, "rflags": ur.rflags, "cs": ur.cs, "ss": ur.ss,
            "ds": ur.ds, "es": ur.es, "fs": ur.fs, "gs": ur.gs, "kernel_ss": ctx.kernel_ss,
            "kernel_sp": ctx.kernel_sp, "cr3": ctx.ctrlreg[3], "dr6": ctx.debugreg[6], "dr7": ctx.debugreg[7],
            "flags": ctx.flags}
    assert {k: regs[k] for k in mine} == mine


def _pv_boot_state(xen: xenprivcmd.Handle, suite: str, log: str, domid: int) -> None:
    pv = pv_kernel(_kernel(), xen.abi)
    regs, si, p2m, tables = _dump(domid)
    lay = pv_layout(pv, si["nr_pages"], _ramdisk_size(log))
    assert len(p2m) == lay.p2m_size
    ours_regs = lay.boot_registers()
    assert (regs["rip"], regs["rsp"], regs["rsi"]) == (ours_regs["rip"], ours_regs["rsp"], ours_regs["rsi"])
    assert regs["cr3"] >> 12 == p2m[ours_regs["cr3_pfn"]]
    fields = lay.start_info_fields()
    sif_mod_start_pfn = 1 << 3  # public/xen.h
    assert bool(si["flags"] & sif_mod_start_pfn) == bool(fields.pop("mod_start_pfn"))
    if suite in ROUNDED_VEND and not lay.ramdisk_unmapped:
        fields["mod_len"] = lay.ramdisk.pages * PAGE_SIZE
    assert {k: si[k] for k in fields} == fields
    assert si["magic"] == pv.guest_type and si["cmd_line"] == "console=hvc0 quiet"
    assert si["store_mfn"] == p2m[lay.xenstore_pfn] and si["console_mfn"] == p2m[lay.console_pfn]
    # every page-table page, every entry
    ours = {p2m[pfn]: page for pfn, page in page_tables(lay, p2m).items()}
    assert set(ours) == set(tables), "the page-table pages differ"
    for mfn, (level, entries) in tables.items():
        mine = [int.from_bytes(ours[mfn][i * 8:i * 8 + 8], "little") for i in range(512)]
        for i, (got, want) in enumerate(zip(entries, mine)):
            if level == 4 and i in XEN_L4_SLOTS:
                continue
            if level == 1 and want & 1 and not want & PTE_USER:
                want |= PTE_USER | PTE_GUEST_KERNEL
            assert got == want, f"L{level} table at mfn {mfn:#x}, entry {i}: {got:#x} != {want:#x}"


# -- arm64 --------------------------------------------------------------------------------------------

def _arm_kernel_plan(xen: xenprivcmd.Handle, log: str) -> None:
    plan = arm64_kernel(_kernel(), xen.abi)
    m = re.search(r"xc_dom_parse_zimage64_kernel: xen-3.0-aarch64: 0x([0-9a-f]+) -> 0x([0-9a-f]+)", log)
    assert m, log[-3000:]
    assert (plan.load_addr, plan.kernel_end) == (_hex(m.group(1)), _hex(m.group(2)))
    assert plan.guest_type == "xen-3.0-aarch64"


def _arm_lay(xen: xenprivcmd.Handle, log: str):  # type: ignore[no-untyped-def]
    return arm64_layout(arm64_kernel(_kernel(), xen.abi), _total_pages(log) * PAGE_SIZE,
                        os.path.getsize(GUEST_RAMDISK), _logged_dtb_size(log), xen.abi)


def _arm_layout(xen: xenprivcmd.Handle, suite: str, log: str) -> None:
    lay = _arm_lay(xen, log)
    m = re.search(r"meminit: placing boot modules at 0x([0-9a-f]+)", log)
    assert m and _hex(m.group(1)) == lay.modbase
    segs = [s for s in (lay.kernel, lay.ramdisk, lay.dtb) if s is not None]
    assert _ours(segs, suite) == _logged_segments(log)


def _logged_dtb_size(log: str) -> int:
    m = re.search(r"fdt total size (\d+)", log)
    assert m, "libxl logged no device tree size"
    return int(m.group(1))


def _arm_device_tree(xen: xenprivcmd.Handle, log: str, dumped) -> None:  # type: ignore[no-untyped-def]
    theirs, reserve = fdt.parse_dtb(dumped.read_bytes())
    assert reserve == []
    lay = _arm_lay(xen, log)
    gic = re.search(r" - vGIC version: (\S+)", log)
    assert gic, log[-2000:]
    regions = [(_hex(a), _hex(b)) for a, b in re.findall(r"Extended region \d+: 0x([0-9a-f]+)->0x([0-9a-f]+)", log)]
    # the guest's physical address width bounds the last region (40 bits and more end with RAM1)
    top = regions[-1][1] if regions else 1 << 40
    bits = max(40, top.bit_length() - 1) if top == 1 << 40 else top.bit_length() - 1
    v = xen.version()
    timer = theirs.find("/timer")
    clock = int.from_bytes(timer.prop("clock-frequency") or b"", "big") if timer is not None else 0
    ours = arm.guest_device_tree(xen.abi, xen_version=(v.major, v.minor), vcpus=2, banks=lay.banks,
                                 gic_version=int(gic.group(1).lower().lstrip("v")), cmdline="console=hvc0 quiet",
                                 initrd=lay.initrd, gpaddr_bits=bits, clock_frequency=clock,
                                 rng_seed=theirs.find("/chosen").prop("rng-seed"))
    assert ours == theirs, (fdt.dtb(ours).hex(), dumped.read_bytes().hex())
    assert [(a, a + s) for a, s in arm.extended_regions(xen.abi, lay.banks, bits)] == regions


def _arm_boot_vcpu(xen: xenprivcmd.Handle, log: str, domid: int) -> None:
    lay = _arm_lay(xen, log)
    d = _pvdump(domid)
    regs, params = d["regs"], d["params"]
    m = re.search(r"detail: DTB ([0-9a-f]+)$", log, re.M)  # libxenguest logs x0 (vcpu_arm64)
    assert m and _hex(m.group(1)) == lay.dtb.vstart
    ctx = xen.abi.structs["vcpu_guest_context"].from_buffer_copy(
        arm64_vcpu_context(xen.abi, entry=lay.entry, dtb=lay.dtb.vstart))
    ur = ctx.user_regs
    mine = {"pc64": ur.pc64, "x0": ur.x0, "x1": ur.x1, "x2": ur.x2, "x3": ur.x3, "cpsr": ur.cpsr,
            "sctlr": ctx.sctlr, "ttbr0": ctx.ttbr0, "ttbr1": ctx.ttbr1, "ttbcr": ctx.ttbcr, "flags": ctx.flags}
    # libxenguest before Xen commit ad8663a75a left debug exceptions unmasked (bookworm's
    # 4.17); the builder masks them, as Linux's boot protocol asks (trixie's 4.20 does too)
    theirs = dict(regs, cpsr=regs["cpsr"] | xen.abi.constants["PSR_DBG_MASK"])  # type: ignore[call-overload]
    assert {k: theirs[k] for k in mine} == mine
    assert (params["console_pfn"], params["store_pfn"]) == (lay.console_pfn, lay.xenstore_pfn)  # type: ignore[index]
