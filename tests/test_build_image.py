"""A guest's memory image at boot (issue 25).

- the ramdisk as libxenguest placed it: Xen 4.17 logged "xc_dom_do_gunzip: unzip ok,
  0xfaf94 -> 0x1e45e0" for the suite's initrd (and placed 0x1e45e0 bytes); 4.20 places
  the file as it is; Arm never unpacks;
- the kernel's piece against readelf's program headers (each PT_LOAD's file bytes at its
  address, zeros after); the pieces tile the layout's segments without overlap;
- ``tests/realxen/test_build_layout.py`` reads a guest libxl built, page by page, and
  compares it with the image for the same kernel, memory and ramdisk.
"""

from __future__ import annotations

import gzip
import struct

import pytest

from xenprivcmd.abi import variant
from xenprivcmd.build.arm import arm64_layout
from xenprivcmd.build.boot import pv_start_info
from xenprivcmd.build.image import arm64_image, placed_ramdisk, pv_image
from xenprivcmd.build.kernel import arm64_kernel, pv_kernel, read_image
from xenprivcmd.build.x86pv import PAGE_SIZE, page_tables, pv_layout
from xenprivcmd.errors import ImageError

from .build_helpers import read, readelf_phdrs, suite_files

X86, X86_420 = variant("4.17.0"), variant("4.20.0")
ARM = variant("4.17.0", arch="aarch64")
MiB = 1 << 20


def test_placed_ramdisk_per_release():
    data = read(suite_files("bookworm")["initrd"])  # its size follows tools/xenvm's guest (--devices' init)
    raw = gzip.decompress(data)
    assert data[:2] == b"\x1f\x8b" and len(raw) > len(data) > 0x80000
    placed = placed_ramdisk(X86, data)
    assert len(placed) == len(raw) + 16 and placed[:-16] == raw and placed[-16:] == bytes(16)
    assert placed_ramdisk(X86_420, data) == data and placed_ramdisk(ARM, data) == data
    assert placed_ramdisk(X86, b"plain cpio") == b"plain cpio"
    bad = data[:100] + bytes(50) + data[-4:]
    with pytest.raises(ImageError, match="does not unpack"):
        placed_ramdisk(X86, bad)
    insane = data[:-4] + struct.pack("<I", (1 << 30) + 1)  # libxenguest: "looks insane, skip gunzip"
    assert placed_ramdisk(X86, insane) == insane


def test_pv_image_pieces():
    files = suite_files("bookworm")
    kernel = pv_kernel(read_image(read(files["vmlinux"])), X86)
    ramdisk = placed_ramdisk(X86, read(files["initrd"]))
    lay = pv_layout(kernel, 128 * MiB // PAGE_SIZE, len(ramdisk))
    mfns = [0x80000 + pfn * 3 for pfn in range(lay.total_pages)]
    pieces = pv_image(X86, kernel, lay, mfns, ramdisk=ramdisk, shared_info_mfn=9, store_evtchn=1, console_evtchn=2,
                      cmdline="quiet")
    covered = []
    for p in pieces:
        assert len(p.data) % PAGE_SIZE == 0 and p.pages >= 1
        covered.extend(range(p.pfn, p.pfn + p.pages))
    assert len(covered) == len(set(covered)) and max(covered) < lay.total_pages  # no overlap, inside memory
    by = {p.name: p for p in pieces if p.name != "page tables"}
    # the kernel: readelf's PT_LOAD segments, each at its physical address + libelf's
    # virt_offset (VIRT_BASE - PADDR_OFFSET: the percpu segment's vaddr is 0)
    k = by["kernel"]
    elf = read(files["vmlinux"])
    loads = [ph for ph in readelf_phdrs(files["vmlinux"]) if ph[0] == "LOAD"]
    assert loads
    for _, offset, _vaddr, paddr, filesz, memsz, _flags, _align in loads:
        at = ((paddr + kernel.virt_offset) & (2**64 - 1)) - lay.kernel.vstart
        assert k.data[at:at + filesz] == elf[offset:offset + filesz]
        assert not any(k.data[at + filesz:at + memsz])
    assert by["module0"].data[:len(ramdisk)] == ramdisk and by["module0"].pfn == lay.ramdisk.pfn  # type: ignore[union-attr]
    assert struct.unpack_from("<3Q", by["phys2mach"].data) == tuple(mfns[:3])
    assert by["start info"].data == pv_start_info(X86, lay, mfns, shared_info_mfn=9, store_evtchn=1,
                                                  console_evtchn=2, cmdline="quiet")
    assert {p.pfn: p.data for p in pieces if p.name == "page tables"} == {
        pfn: bytes(t) for pfn, t in page_tables(lay, mfns).items()}
    assert not any(by["xenstore"].data + by["console"].data + by["boot stack"].data)
    with pytest.raises(ValueError, match="ramdisk is 5 bytes"):
        pv_image(X86, kernel, lay, mfns, ramdisk=b"12345", shared_info_mfn=9, store_evtchn=1, console_evtchn=2)


def test_arm64_image_pieces():
    files = suite_files("bookworm-arm64")
    kernel = arm64_kernel(read_image(read(files["vmlinuz"])), ARM)
    ramdisk = read(files["initrd"])
    dtb = b"\xd0\x0d\xfe\xed" + bytes(1000)
    lay = arm64_layout(kernel, 128 * MiB, len(ramdisk), len(dtb), ARM)
    pieces = {p.name: p for p in arm64_image(kernel, lay, ramdisk=ramdisk, dtb=dtb)}
    assert pieces["kernel"].pfn << 12 == kernel.load_addr
    assert pieces["kernel"].data[:len(kernel.image.data)] == kernel.image.data
    assert pieces["module0"].pfn << 12 == lay.modbase and pieces["module0"].data[:len(ramdisk)] == ramdisk
    assert pieces["devicetree"].pfn << 12 == lay.dtb.vstart and pieces["devicetree"].data[:len(dtb)] == dtb
    with pytest.raises(ValueError, match="device tree is 3 bytes"):
        arm64_image(kernel, lay, ramdisk=ramdisk, dtb=b"abc")
