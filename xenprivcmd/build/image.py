"""A guest's memory image at boot: what the domain builder writes into each of its pages
before the first instruction runs.

:func:`arm64_image` is an arm64 guest's: the Image at its load address, the ramdisk as
placed (:func:`placed_ramdisk`), the device tree.  :func:`pv_image` lays out, page by page, what libxenguest writes (``xc_dom_build_image``
and ``xc_dom_boot_image``, Xen 4.14 to 4.21): the kernel's loadable segments (zeros where
a segment's memory passes its file bytes), the ramdisk as placed (:func:`placed_ramdisk`),
the p2m list, start_info, the initial page tables, and the zeroed xenstore, console and
boot-stack pages.  Two pages are left to Xen: the hypercall page (Xen fills it when asked
with ``XEN_DOMCTL_hypercall_init``) and shared info (Xen's own page).  Pure: bytes in,
bytes out; the writer maps the guest's frames and copies.
"""

from __future__ import annotations

import zlib

from ..errors import ImageError
from .boot import pv_start_info
from .kernel import DECOMPRESS_MAX
from .memory import PAGE_SHIFT, PAGE_SIZE
from .x86pv import p2m_list, page_tables

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import List, NamedTuple, Optional, Tuple

    from ..abi import Variant
    from .arm import Arm64Layout
    from .kernel import Arm64Kernel, PvKernel
    from .x86pv import PfnMap, PvLayout
else:  # the same classes, without importing typing (see _ntuple)
    from .._ntuple import NamedTuple

__all__ = ["Piece", "pv_image", "arm64_image", "placed_ramdisk", "GUNZIP_BEFORE"]

#: libxenguest unpacked a gzip ramdisk itself before Xen 4.20 (commit d17b7562d4, "Don't
#: gunzip the guests initrd", leaves that to the guest's kernel)
GUNZIP_BEFORE = (4, 20)


class Piece(NamedTuple):
    """``data`` (whole pages) for the guest's pages from ``pfn`` on; ``name`` the segment."""

    name: str
    pfn: int
    data: bytes

    @property
    def pages(self) -> int:
        return len(self.data) >> PAGE_SHIFT


def _release(variant: Variant) -> Tuple[int, int]:
    major, minor = variant.release.split("-")[0].split(".")[:2]
    return int(major), int(minor)


def placed_ramdisk(variant: Variant, data: bytes, path: Optional[str] = None) -> bytes:
    """A ramdisk's bytes as the domain builder of ``variant``'s release and arch places them:
    for an x86 PV guest before Xen 4.20 a gzip file is unpacked into a segment of its gzip
    size field + 16 bytes (the unpacked bytes, then zeros; libxenguest's
    xc_dom_check_gzip); anything else, everything from 4.20 on, and every arm64 ramdisk
    (placed before it is loaded, which libxenguest never unpacks) as it is.

    Raises :class:`ImageError` for a gzip ramdisk that does not unpack (before 4.20) and
    one larger than 1 GiB.
    """
    if len(data) > DECOMPRESS_MAX:
        raise ImageError(f"the ramdisk is {len(data)} bytes; the limit is {DECOMPRESS_MAX}", path)
    if (variant.arch != "x86_64" or _release(variant) >= GUNZIP_BEFORE or len(data) < 6
            or data[:2] != b"\x1f\x8b"):
        return data
    size = int.from_bytes(data[-4:], "little")
    if size > DECOMPRESS_MAX:  # libxenguest: "looks insane, skip gunzip"
        return data
    room = size + 16
    try:
        d = zlib.decompressobj(wbits=31)
        out = d.decompress(data, room)
    except zlib.error as e:
        raise ImageError(f"the gzip ramdisk does not unpack: {e}", path) from None
    if len(out) > room:  # pragma: no cover - max_length bounds it
        out = out[:room]
    return out + bytes(room - len(out))


def _pad(data: bytes, pages: int) -> bytes:
    return data + bytes(pages * PAGE_SIZE - len(data))


def _check_ramdisk(seg: object, ramdisk: bytes) -> None:
    placed = seg.vend - seg.vstart if seg is not None else 0  # type: ignore[attr-defined]
    if placed != len(ramdisk):
        raise ValueError(f"the ramdisk is {len(ramdisk)} bytes; the layout placed {placed}")


def arm64_image(kernel: Arm64Kernel, layout: Arm64Layout, *, ramdisk: bytes = b"", dtb: bytes) -> Tuple[Piece, ...]:
    """The pages an arm64 guest laid out as ``layout`` starts with (guest frames; pages in no
    piece are zero): the Image ``kernel``'s bytes from its load address, the ``ramdisk`` as
    placed (:func:`placed_ramdisk`) and the device tree ``dtb``.  The magic pages (console,
    xenstore) are zero.

    Raises ``ValueError`` when ``ramdisk`` or ``dtb`` is not as long as the layout placed.
    """
    _check_ramdisk(layout.ramdisk, ramdisk)
    if layout.dtb.vend - layout.dtb.vstart != len(dtb):
        raise ValueError(f"the device tree is {len(dtb)} bytes; the layout placed {layout.dtb.vend - layout.dtb.vstart}")
    k = layout.kernel
    pieces = [Piece("kernel", k.pfn, _pad(kernel.image.data, k.pages))]
    if layout.ramdisk is not None:
        pieces.append(Piece("module0", layout.ramdisk.pfn, _pad(ramdisk, layout.ramdisk.pages)))
    pieces.append(Piece("devicetree", layout.dtb.pfn, _pad(dtb, layout.dtb.pages)))
    for name in ("console", "xenstore"):
        pieces.append(Piece(name, dict(layout.magic)[name], bytes(PAGE_SIZE)))
    return tuple(sorted(pieces, key=lambda p: p.pfn))


def pv_image(variant: Variant, kernel: PvKernel, layout: PvLayout, p2m: PfnMap, *, ramdisk: bytes = b"",
             shared_info_mfn: int, store_evtchn: int, console_evtchn: int, cmdline: str = "",
             flags: int = 0) -> Tuple[Piece, ...]:
    """Every page an x86_64 PV guest laid out as ``layout`` (booting ``kernel``, with the
    ``ramdisk`` bytes as placed: see :func:`placed_ramdisk`) starts with, as pieces of whole
    pages in pfn order; pages in no piece are zero.  ``p2m`` gives each pfn's machine frame;
    the rest is start_info's (see :func:`~xenprivcmd.build.boot.pv_start_info`).

    The hypercall page, inside the kernel's piece, holds the kernel file's bytes: Xen
    overwrites it on ``XEN_DOMCTL_hypercall_init``.

    Raises ``ValueError`` when ``ramdisk``'s length is not the layout's, or the kernel's
    segments fall outside its piece; as :func:`~xenprivcmd.build.boot.pv_start_info`.
    """
    rd = layout.ramdisk
    _check_ramdisk(rd, ramdisk)
    pieces: List[Piece] = []
    k = layout.kernel
    buf = bytearray(k.pages * PAGE_SIZE)
    kernel.load_into(buf, k.vstart)
    pieces.append(Piece("kernel", k.pfn, bytes(buf)))
    if rd is not None:
        pieces.append(Piece("module0", rd.pfn, _pad(ramdisk, rd.pages)))
    p2m_seg = layout.p2m
    tables = page_tables(layout, p2m)
    listing = p2m_list(layout, p2m)
    list_pages = (len(listing) + PAGE_SIZE - 1) >> PAGE_SHIFT
    pieces.append(Piece("phys2mach", p2m_seg.pfn, _pad(listing, list_pages)))
    pieces.append(Piece("start info", layout.start_info_pfn, pv_start_info(
        variant, layout, p2m, shared_info_mfn=shared_info_mfn, store_evtchn=store_evtchn,
        console_evtchn=console_evtchn, cmdline=cmdline, flags=flags)))
    for name in ("xenstore", "console", "boot stack"):
        pieces.append(Piece(name, layout.segment(name).pfn, bytes(PAGE_SIZE)))
    for pfn in sorted(tables):
        pieces.append(Piece("page tables", pfn, bytes(tables[pfn])))
    return tuple(sorted(pieces, key=lambda p: p.pfn))
