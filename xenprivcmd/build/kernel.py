"""Guest kernels: what a file is, how to unpack it, and where it goes in the guest.

Three kinds of image are known, each as Xen's own domain builder (libxenguest) takes it:

- an **ELF** kernel (``vmlinux``) for an x86_64 PV guest, placed by its Xen ELF notes
  (``public/elfnote.h``): :func:`pv_kernel` reads the notes as libelf does
  (``xen/common/libelf/libelf-dominfo.c``) and gives the :class:`PvKernel` plan;
- an x86 **bzImage** (``vmlinuz``), Linux boot protocol 2.08 or later
  (Documentation/arch/x86/boot.rst): its payload, compressed with gzip, xz, bzip2 or lzma
  (the standard library's decompressors; zstd, lz4 and lzo are refused by name), is the
  ELF kernel above;
- an **arm64 Image** (Documentation/arch/arm64/booting.rst): :func:`arm64_kernel` reads its
  header and gives the :class:`Arm64Kernel` plan.

A whole file compressed with gzip (or the others) is unpacked first, as libxenguest does.
Nothing here touches a hypervisor; numbers come from the :class:`~xenprivcmd.abi.Variant`
given (:mod:`.constants`).
"""

from __future__ import annotations

import struct

from ..errors import ImageError
from . import constants
from .elf import EM_X86_64, Elf

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, FrozenSet, List, NamedTuple, Optional, Tuple, Union

    from ..abi import Variant
else:  # the same classes, without importing typing (see _ntuple)
    from .._ntuple import NamedTuple

__all__ = ["read_image", "KernelImage", "BzImageHeader", "Arm64ImageHeader", "XenNotes", "PvKernel",
           "LoadSegment", "Arm64Kernel", "pv_kernel", "arm64_kernel", "decompress", "compression_of",
           "DECOMPRESS_MAX", "PAGE_SIZE"]

PAGE_SIZE = 4096
#: The most bytes a kernel or ramdisk may unpack to (libxenguest's XC_DOM_DECOMPRESS_MAX, 1 GiB).
DECOMPRESS_MAX = 1 << 30

# -- compression ---------------------------------------------------------------------------

#: (magic, name, supported) in libxenguest's order of probing (xg_dom_bzimageloader.c).
_MAGICS = (
    (b"\x1f\x8b", "gzip", True),
    (b"BZh", "bzip2", True),
    (b"\xfd7zXZ\x00", "xz", True),
    (b"\x28\xb5\x2f\xfd", "zstd", False),
    (b"\x5d\x00", "lzma", True),
    (b"\x89LZO", "lzo", False),
    (b"\x02\x21", "lz4", False),
    (b"\x04\x22\x4d\x18", "lz4", False),
)


def compression_of(data: bytes) -> Optional[str]:
    """The compression ``data`` starts with (``"gzip"``, ``"xz"``, ``"bzip2"``, ``"lzma"``,
    ``"zstd"``, ``"lzo"``, ``"lz4"``), or ``None``."""
    for magic, name, _ in _MAGICS:
        if data[: len(magic)] == magic:
            return name
    return None


def decompress(data: bytes, what: str = "image", path: Optional[str] = None, limit: int = DECOMPRESS_MAX) -> bytes:
    """``data`` unpacked (gzip, xz, bzip2 or lzma, by its magic).  Trailing bytes after the
    stream are ignored (a bzImage payload ends with its length).  Raises
    :class:`ImageError` for a compression the standard library cannot undo (zstd, lz4,
    lzo: named), a corrupt stream, or more than ``limit`` bytes of output."""
    kind = compression_of(data)
    if kind is None:
        raise ImageError(f"{what}: not compressed with a known method", path)
    if kind in ("zstd", "lz4", "lzo"):
        raise ImageError(f"{what} is compressed with {kind}, which xenprivcmd cannot unpack (the standard "
                         "library has gzip, xz, bzip2 and lzma): unpack it first or build the kernel with one "
                         "of those", path)
    try:
        if kind == "gzip":
            import zlib

            z = zlib.decompressobj(16 + zlib.MAX_WBITS)
            out = z.decompress(data, limit + 1)
            if not z.eof and len(out) <= limit:
                raise ImageError(f"{what}: the gzip stream is truncated", path)
        elif kind == "bzip2":
            import bz2

            b = bz2.BZ2Decompressor()
            out = b.decompress(data, limit + 1)
            if not b.eof and len(out) <= limit:
                raise ImageError(f"{what}: the bzip2 stream is truncated", path)
        else:
            import lzma

            fmt = lzma.FORMAT_XZ if kind == "xz" else lzma.FORMAT_ALONE
            x = lzma.LZMADecompressor(format=fmt)
            out = x.decompress(data, limit + 1)
            if not x.eof and len(out) <= limit:
                raise ImageError(f"{what}: the {kind} stream is truncated", path)
    except ImageError:
        raise
    except Exception as e:  # zlib.error, OSError (bz2), lzma.LZMAError, EOFError
        raise ImageError(f"{what}: corrupt {kind} data ({e})", path) from None
    if len(out) > limit:
        raise ImageError(f"{what} unpacks to more than {limit >> 20} MiB", path)
    return out


# -- the x86 bzImage header --------------------------------------------------------------------

class BzImageHeader(NamedTuple):
    """The setup header of an x86 bzImage (boot.rst's names; offsets from the file's start)."""

    setup_sects: int          # 0x1f1 (0 means 4)
    version: int              # 0x206, e.g. 0x020f for 2.15
    kernel_version: str       # the string 0x20e points to (+0x200)
    loadflags: int            # 0x211
    code32_start: int         # 0x214
    initrd_addr_max: int      # 0x22c
    kernel_alignment: int     # 0x230
    relocatable_kernel: int   # 0x234
    xloadflags: int           # 0x236
    cmdline_size: int         # 0x238
    payload_offset: int       # 0x248, from the protected-mode code's start
    payload_length: int       # 0x24c
    pref_address: int         # 0x258
    init_size: int            # 0x260

    @property
    def payload_start(self) -> int:
        """File offset of the compressed payload: ``(setup_sects + 1) * 512 + payload_offset``."""
        return ((self.setup_sects or 4) + 1) * 512 + self.payload_offset


def bzimage_header(data: bytes, path: Optional[str] = None) -> Optional[BzImageHeader]:
    """The setup header when ``data`` is a bzImage (``HdrS`` at 0x202), else ``None``.
    Raises :class:`ImageError` for a boot protocol older than 2.08 (no payload fields)
    or a payload outside the file."""
    if len(data) < 0x268 or data[0x202:0x206] != b"HdrS":
        return None
    u8 = data.__getitem__

    def u16(o: int) -> int:
        return int(struct.unpack_from("<H", data, o)[0])

    def u32(o: int) -> int:
        return int(struct.unpack_from("<I", data, o)[0])

    version = u16(0x206)
    if version < 0x0208:
        raise ImageError(f"bzImage boot protocol {version >> 8}.{version & 0xff:02d} is too old (2.08 or later "
                         "gives the payload's place)", path)
    kv = u16(0x20E)
    kstr = ""
    if kv:
        at = 0x200 + kv
        end = data.find(b"\0", at, at + 256)
        kstr = bytes(data[at:end if end >= 0 else at]).decode("latin-1")
    h = BzImageHeader(u8(0x1F1), version, kstr, u8(0x211), u32(0x214), u32(0x22C), u32(0x230), u8(0x234),
                      u16(0x236), u32(0x238), u32(0x248), u32(0x24C), int(struct.unpack_from("<Q", data, 0x258)[0]),
                      u32(0x260))
    if h.payload_start >= len(data) or h.payload_start + h.payload_length > len(data):
        raise ImageError(f"bzImage payload ({h.payload_start:#x} + {h.payload_length:#x}) lies outside the file "
                         f"({len(data):#x} bytes)", path)
    return h


# -- the arm64 Image header ------------------------------------------------------------------

ARM64_MAGIC = 0x644D5241  # "ARM\x64" at 0x38


class Arm64ImageHeader(NamedTuple):
    """The 64-byte header of an arm64 Image (booting.rst's names)."""

    text_offset: int      # load offset from a 2 MiB aligned base
    image_size: int       # bytes from the load address the kernel needs (0: an old kernel)
    flags: int

    @property
    def big_endian(self) -> bool:
        """flags bit 0."""
        return bool(self.flags & 1)

    @property
    def page_size(self) -> Optional[int]:
        """flags bits 1-2: the kernel's page size (4096, 16384, 65536), ``None`` unspecified."""
        return {1: 4096, 2: 16384, 3: 65536}.get(self.flags >> 1 & 3)

    @property
    def placement_anywhere(self) -> bool:
        """flags bit 3: the 2 MiB aligned base may be anywhere in memory (else as close
        as possible to the start of RAM)."""
        return bool(self.flags & 8)


def arm64_header(data: bytes) -> Optional[Arm64ImageHeader]:
    """The header when ``data`` is an arm64 Image (the magic at 0x38), else ``None``."""
    if len(data) < 64 or struct.unpack_from("<I", data, 0x38)[0] != ARM64_MAGIC:
        return None
    text_offset, image_size, flags = struct.unpack_from("<QQQ", data, 8)
    return Arm64ImageHeader(text_offset, image_size, flags)


# -- what a file is ------------------------------------------------------------------------------

class KernelImage(NamedTuple):
    """A kernel file read and unpacked: ``kind`` ``"elf"`` or ``"arm64-image"``; ``data``
    the ELF file or the Image; ``container`` how the file held it (``"plain"``,
    ``"bzimage"``); ``compression`` what was undone (``None``, ``"gzip"``, ...);
    ``bzimage`` the setup header when it came from a bzImage."""

    kind: str
    data: bytes
    container: str
    compression: Optional[str]
    bzimage: Optional[BzImageHeader]
    path: Optional[str]

    def __repr__(self) -> str:
        return (f"KernelImage(kind={self.kind!r}, data=<{len(self.data)} bytes>, container={self.container!r}, "
                f"compression={self.compression!r}, path={self.path!r})")


def read_image(data: bytes, path: Optional[str] = None) -> KernelImage:
    """What a kernel file holds, unpacked as libxenguest unpacks it: a compressed file is
    decompressed first; a bzImage gives its payload (decompressed: an ELF kernel).

    Raises :class:`ImageError`: an empty file, a file that is none of an ELF kernel, a
    bzImage or an arm64 Image (compressed or not), a compression that cannot be undone,
    a bzImage whose payload is not ELF.
    """
    if not data:
        raise ImageError("empty file: not a kernel", path)
    compression = None
    if compression_of(data) is not None:
        compression = compression_of(data)
        data = decompress(data, "kernel", path)
    if data[:4] == b"\x7fELF":
        return KernelImage("elf", data, "plain", compression, None, path)
    if arm64_header(data) is not None:
        return KernelImage("arm64-image", data, "plain", compression, None, path)
    hdr = bzimage_header(data, path)
    if hdr is not None:
        payload = data[hdr.payload_start:hdr.payload_start + hdr.payload_length]
        kind = compression_of(payload)
        if kind is None:
            raise ImageError("bzImage payload has an unknown compression", path)
        inner = decompress(payload, "bzImage payload", path)
        if inner[:4] != b"\x7fELF":
            raise ImageError("bzImage payload is not an ELF kernel", path)
        return KernelImage("elf", inner, "bzimage", kind, hdr, path)
    raise ImageError("not a kernel: neither ELF, a bzImage nor an arm64 Image", path)


# -- Xen's ELF notes -------------------------------------------------------------------------

#: Notes libelf reads as strings (the rest are numbers).
_STRING_NOTES = frozenset({"XEN_VERSION", "GUEST_OS", "GUEST_VERSION", "LOADER", "PAE_MODE", "FEATURES",
                           "BSD_SYMTAB"})
#: Notes libelf knows (others it logs as "unknown").
_KNOWN_NOTES = frozenset({"ENTRY", "HYPERCALL_PAGE", "VIRT_BASE", "INIT_P2M", "PADDR_OFFSET", "HV_START_LOW",
                          "XEN_VERSION", "GUEST_OS", "GUEST_VERSION", "LOADER", "PAE_MODE", "FEATURES",
                          "SUPPORTED_FEATURES", "BSD_SYMTAB", "SUSPEND_CANCEL", "MOD_START_PFN", "PHYS32_ENTRY"})


class XenNotes(NamedTuple):
    """A kernel's Xen ELF notes as libelf reads them.

    ``values``: note name (``"ENTRY"``, ``"GUEST_OS"``, ...) -> its value (an int, or a
    str for the string notes), in file order, for the notes libelf knows; ``unknown``: the
    types of the others; ``required``/``supported``: feature names (``XENFEAT_*`` without
    the prefix) from FEATURES (``!`` marks required) and SUPPORTED_FEATURES.
    """

    values: Dict[str, Union[int, str]]
    unknown: Tuple[int, ...]
    required: FrozenSet[str]
    supported: FrozenSet[str]

    def get(self, name: str) -> Union[int, str, None]:
        """A note's value, ``None`` when the kernel has no such note."""
        return self.values.get(name)

    def number(self, name: str) -> Optional[int]:
        """A numeric note's value, ``None`` when absent."""
        v = self.values.get(name)
        return v if isinstance(v, int) else None

    def text(self, name: str) -> str:
        """A string note's value, ``""`` when absent."""
        v = self.values.get(name)
        return v if isinstance(v, str) else ""


def _feature_names(variant: Variant) -> Dict[int, str]:
    return {v: k[len("XENFEAT_"):] for k, v in variant.constants.items()
            if k.startswith("XENFEAT_") and k != "XENFEAT_NR_SUBMAPS"}


def xen_notes(elf: Elf, variant: Variant) -> XenNotes:
    """The notes owned by ``"Xen"`` in ``elf``.  Raises :class:`ImageError` for a string
    note without its terminating NUL, or a required feature (``!name`` in FEATURES) that
    this release does not know (libelf refuses those)."""
    types = constants.elfnote_types(variant)
    by_bit = _feature_names(variant)
    by_name = {n: b for b, n in by_bit.items()}
    values: Dict[str, Union[int, str]] = {}
    unknown: List[int] = []
    required: set[str] = set()
    supported: set[str] = set()
    for note in elf.notes():
        if note.owner != "Xen":
            continue
        name = types.get(note.type)
        if name is None or name not in _KNOWN_NOTES:
            unknown.append(note.type)
            continue
        if name in _STRING_NOTES:
            # libelf reads the string up to its NUL, which may lie in the note's padding
            # (Linux's FEATURES note has no NUL of its own)
            end = elf.data.find(b"\0", note.offset)
            if end < 0:
                raise ImageError(f"Xen ELF note {name} is not a NUL-terminated string", elf.path)
            s = bytes(elf.data[note.offset:end]).decode("latin-1")
            values[name] = s
            if name == "FEATURES":
                for feat in s.split("|"):
                    if not feat:
                        continue
                    must = feat.startswith("!")
                    fname = feat[1:] if must else feat
                    if fname in by_name:
                        supported.add(fname)
                        if must:
                            required.add(fname)
                    elif must:
                        raise ImageError(f"the kernel requires Xen feature {fname!r}, unknown to Xen "
                                         f"{variant.release}", elf.path)
        else:
            if name == "SUPPORTED_FEATURES":
                if len(note.desc) % 4 == 0:
                    for i in range(len(note.desc) // 4):
                        word = struct.unpack_from("<I", note.desc, 4 * i)[0]
                        for bit in range(32):
                            if word >> bit & 1:
                                supported.add(by_bit.get(32 * i + bit, f"feature {32 * i + bit}"))
            n = len(note.desc)
            values[name] = int.from_bytes(note.desc, "little") if n in (1, 2, 4, 8) else 0
    return XenNotes(values, tuple(unknown), frozenset(required), frozenset(supported))


# -- the x86_64 PV plan ------------------------------------------------------------------------

class LoadSegment(NamedTuple):
    """One loadable ELF segment: copy ``filesz`` bytes from ``offset`` in the ELF file to
    guest-virtual ``vaddr``, then zeros up to ``memsz``."""

    vaddr: int
    offset: int
    filesz: int
    memsz: int


class PvKernel(NamedTuple):
    """Where an x86_64 PV kernel goes (libelf's ``elf_dom_parms``, names as it logs them).

    ``virt_kstart``..``virt_kend`` is the kernel segment (guest-virtual), ``virt_entry``
    the entry point, ``virt_hypercall`` the hypercall page (``None``: the kernel has none),
    ``p2m_base`` where the kernel wants the p2m list mapped (``None``: after the kernel, as
    usual), ``unmapped_initrd`` (MOD_START_PFN) that the initrd may be left unmapped and
    passed by pfn, ``hv_start_low`` the lowest address Xen may use.
    """

    image: KernelImage
    elf: Elf
    notes: XenNotes
    virt_base: int
    elf_paddr_offset: int
    virt_offset: int
    virt_kstart: int
    virt_kend: int
    virt_entry: int
    virt_hypercall: Optional[int]
    p2m_base: Optional[int]
    unmapped_initrd: bool
    hv_start_low: Optional[int]
    segments: Tuple[LoadSegment, ...]

    @property
    def guest_type(self) -> str:
        """libxenguest's name for the guest: ``"xen-3.0-x86_64"``."""
        return "xen-3.0-x86_64"

    def __repr__(self) -> str:
        return (f"<PvKernel {self.virt_kstart:#x}-{self.virt_kend:#x} entry={self.virt_entry:#x} "
                f"{self.image.path or ''}>")

    def load_into(self, dest: Union[bytearray, memoryview], dest_vaddr: Optional[int] = None) -> None:
        """Write the kernel's segments into ``dest``, a buffer that is guest-virtual memory
        from ``dest_vaddr`` (default ``virt_kstart``) on (zeros where ``memsz`` passes
        ``filesz``).  Raises ``ValueError`` when a segment falls outside ``dest``."""
        base = self.virt_kstart if dest_vaddr is None else dest_vaddr
        data = self.elf.data
        for s in self.segments:
            at = s.vaddr - base
            if at < 0 or at + s.memsz > len(dest):
                raise ValueError(f"segment {s.vaddr:#x}+{s.memsz:#x} is outside the buffer "
                                 f"({base:#x}+{len(dest):#x})")
            dest[at:at + s.filesz] = data[s.offset:s.offset + s.filesz]
            dest[at + s.filesz:at + s.memsz] = bytes(s.memsz - s.filesz)


def pv_kernel(image: Union[KernelImage, bytes], variant: Variant, path: Optional[str] = None) -> PvKernel:
    """The x86_64 PV plan of a kernel (an ELF kernel, or a bzImage holding one), checked
    as libxenguest checks it: Xen notes present, ``LOADER`` ``generic`` or ``GUEST_OS``
    ``linux``, ``XEN_VERSION`` ``xen-3.0``, a 64-bit x86 kernel that does not require dom0,
    entry and p2m inside the bounds libelf enforces.

    Raises :class:`ImageError` naming what is wrong.
    """
    if not isinstance(image, KernelImage):
        image = read_image(image, path)
    path = image.path
    if image.kind != "elf":
        raise ImageError(f"an x86_64 PV guest needs an ELF kernel or a bzImage, not an {image.kind}", path)
    elf = Elf(image.data, path)
    if elf.machine != EM_X86_64:
        raise ImageError(f"an {elf.machine_name} ELF kernel: an x86_64 PV guest needs an x86_64 one", path)
    notes = xen_notes(elf, variant)
    if not notes.values:
        raise ImageError("not a Xen-ELF image: no Xen ELF notes", path)
    if not notes.text("LOADER").startswith("generic") and not notes.text("GUEST_OS").startswith("linux"):
        raise ImageError(f"will only load kernels built for the generic loader or Linux (LOADER "
                         f"{notes.text('LOADER')!r}, GUEST_OS {notes.text('GUEST_OS')!r})", path)
    if not notes.text("XEN_VERSION").startswith("xen-3.0"):
        raise ImageError(f"built for XEN_VERSION {notes.text('XEN_VERSION')!r}, not xen-3.0", path)
    if "dom0" in notes.required:
        raise ImageError("the kernel requires to run as dom0 (not an unprivileged guest)", path)
    pstart, pend = elf.load_range()
    virt_base = notes.number("VIRT_BASE")
    paddr_offset = notes.number("PADDR_OFFSET")
    if paddr_offset is not None and virt_base is None:
        raise ImageError("ELF note PADDR_OFFSET set, VIRT_BASE unset", path)
    if virt_base is None:
        virt_base = 0
    if paddr_offset is None:
        paddr_offset = 0
    virt_offset = (virt_base - paddr_offset) & (2**64 - 1)
    kstart = (pstart + virt_offset) & (2**64 - 1)
    kend = (pend + virt_offset) & (2**64 - 1)
    entry = notes.number("ENTRY")
    if entry is None:
        entry = elf.entry
    if kstart > kend or entry < kstart or entry > kend or virt_base > kstart:
        raise ImageError(f"ELF start or entries are out of bounds (kernel {kstart:#x}..{kend:#x}, entry "
                         f"{entry:#x}, VIRT_BASE {virt_base:#x})", path)
    p2m = notes.number("INIT_P2M")
    if p2m is not None and kstart <= p2m < kend:
        raise ImageError(f"INIT_P2M {p2m:#x} lies inside the kernel ({kstart:#x}..{kend:#x})", path)
    hyper = notes.number("HYPERCALL_PAGE")
    if hyper is not None and not kstart <= hyper < kend:
        raise ImageError(f"HYPERCALL_PAGE {hyper:#x} lies outside the kernel ({kstart:#x}..{kend:#x})", path)
    segs = tuple(LoadSegment((ph.paddr + virt_offset) & (2**64 - 1), ph.offset, ph.filesz, ph.memsz)
                 for ph in elf.phdrs if ph.loadable)
    for ph in elf.phdrs:
        if ph.loadable and ph.filesz > ph.memsz:
            raise ImageError(f"a segment has filesz {ph.filesz:#x} > memsz {ph.memsz:#x}", path)
        if ph.loadable:
            elf.segment(ph)  # inside the file
    return PvKernel(image, elf, notes, virt_base, paddr_offset, virt_offset, kstart, kend, entry, hyper, p2m,
                    bool(notes.number("MOD_START_PFN")), notes.number("HV_START_LOW"), segs)


# -- the arm64 plan -------------------------------------------------------------------------------

class Arm64Kernel(NamedTuple):
    """Where an arm64 Image goes: at ``load_addr`` = the start of guest RAM +
    ``text_offset``, entered there (``entry``); ``kernel_end`` the end of its bytes as
    libxenguest's segment has it; ``image_end`` the end of the memory the kernel itself
    needs (``image_size``; its bss), never less than ``kernel_end``."""

    image: KernelImage
    header: Arm64ImageHeader
    ram_base: int
    load_addr: int
    entry: int
    kernel_end: int
    image_end: int

    @property
    def guest_type(self) -> str:
        """libxenguest's name for the guest: ``"xen-3.0-aarch64"``."""
        return "xen-3.0-aarch64"


def arm64_kernel(image: Union[KernelImage, bytes], variant: Variant, path: Optional[str] = None) -> Arm64Kernel:
    """The arm64 plan of a kernel (an Image, possibly compressed as a whole).

    Raises :class:`ImageError`: not an arm64 Image (an ELF or x86 kernel named as such), a
    big-endian Image, a page size other than 4 KiB.
    """
    if not isinstance(image, KernelImage):
        image = read_image(image, path)
    path = image.path
    hdr = arm64_header(image.data) if image.kind == "arm64-image" else None
    if hdr is None:
        if image.kind == "elf":
            try:
                what = Elf(image.data).machine_name
            except ImageError:
                what = "ELF"
            if image.container == "bzimage":
                what = "x86 bzImage"
            raise ImageError(f"an arm64 guest needs an arm64 Image, not an {what} kernel", path)
        raise ImageError("not an arm64 Image", path)
    if hdr.big_endian:
        raise ImageError("a big-endian arm64 Image: Xen's Arm guests here are little-endian", path)
    if hdr.page_size not in (None, 4096):
        raise ImageError(f"an arm64 Image built for {hdr.page_size} byte pages: Xen's guests use 4 KiB", path)
    ram = constants.const(variant, "GUEST_RAM0_BASE")
    load = ram + hdr.text_offset
    end = load + len(image.data)
    return Arm64Kernel(image, hdr, ram, load, load, end, max(end, load + hdr.image_size))
