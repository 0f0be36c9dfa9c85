"""A small reader of 64-bit little-endian ELF files: the header, program headers, section
headers and notes (what a domain builder needs from a kernel; the System V gABI's layout).

>>> import struct
>>> Elf(b"\\x7fELF\\x01\\x01\\x01" + bytes(57))
Traceback (most recent call last):
...
xenprivcmd.errors.ImageError: a 32-bit ELF file: xenprivcmd builds 64-bit guests only
"""

from __future__ import annotations

import struct

from ..errors import ImageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import List, NamedTuple, Optional, Tuple
else:  # the same classes, without importing typing (see _ntuple)
    from .._ntuple import NamedTuple

__all__ = ["Elf", "ProgramHeader", "SectionHeader", "Note", "PT_LOAD", "PT_NOTE", "SHT_NOTE", "PF_X", "PF_W",
           "PF_R", "EM_X86_64", "EM_AARCH64", "ET_EXEC", "ET_DYN"]

# The gABI's numbers (elf.h)
PT_LOAD, PT_NOTE = 1, 4
SHT_NOTE, SHT_NOBITS = 7, 8
PF_X, PF_W, PF_R = 1, 2, 4
ET_EXEC, ET_DYN = 2, 3
EM_X86_64, EM_AARCH64 = 62, 183
MACHINES = {3: "i386", 40: "arm", EM_X86_64: "x86_64", EM_AARCH64: "aarch64"}

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")   # 64 bytes
_PHDR = struct.Struct("<IIQQQQQQ")           # 56 bytes
_SHDR = struct.Struct("<IIQQQQIIQQ")         # 64 bytes
_NHDR = struct.Struct("<III")


class ProgramHeader(NamedTuple):
    """One ``Elf64_Phdr``."""

    type: int
    flags: int
    offset: int
    vaddr: int
    paddr: int
    filesz: int
    memsz: int
    align: int

    @property
    def loadable(self) -> bool:
        """PT_LOAD with any of R, W, X (libelf's ``elf_phdr_is_loadable``)."""
        return self.type == PT_LOAD and bool(self.flags & (PF_R | PF_W | PF_X))


class SectionHeader(NamedTuple):
    """One ``Elf64_Shdr``, with its name read from the section name table."""

    name: str
    type: int
    flags: int
    addr: int
    offset: int
    size: int
    align: int


class Note(NamedTuple):
    """One note: its owner (``"Xen"``, ``"GNU"``, ...), type, descriptor bytes, and the
    file offset of the descriptor."""

    owner: str
    type: int
    desc: bytes
    offset: int


class Elf:
    """A 64-bit little-endian ELF image held in memory (``data``; not copied).

    Raises :class:`ImageError` (with ``path``) for anything else (not ELF, 32-bit,
    big-endian) and for headers pointing outside the data.
    """

    def __init__(self, data: bytes, path: Optional[str] = None) -> None:
        self.data = data
        self.path = path
        if len(data) < 16 or data[:4] != b"\x7fELF":
            raise ImageError("not an ELF file", path)
        if data[4] == 1:
            raise ImageError("a 32-bit ELF file: xenprivcmd builds 64-bit guests only", path)
        if data[4] != 2:
            raise ImageError(f"ELF class {data[4]} is not ELFCLASS64", path)
        if data[5] != 1:
            raise ImageError("a big-endian ELF file: only little-endian guests are built", path)
        if len(data) < _EHDR.size:
            raise ImageError("ELF header truncated", path)
        (_, self.type, self.machine, _version, self.entry, phoff, shoff, self.flags, _ehsize, phentsize,
         phnum, shentsize, shnum, shstrndx) = _EHDR.unpack_from(data, 0)
        self.phdrs: Tuple[ProgramHeader, ...] = ()
        if phnum:
            if phentsize != _PHDR.size:
                raise ImageError(f"program header size {phentsize}, not {_PHDR.size}", path)
            self._check(phoff, phnum * phentsize, "program headers")
            self.phdrs = tuple(ProgramHeader(*_PHDR.unpack_from(data, phoff + i * phentsize)) for i in range(phnum))
        self._shoff, self._shnum, self._shentsize, self._shstrndx = shoff, shnum, shentsize, shstrndx
        self._shdrs: Optional[Tuple[SectionHeader, ...]] = None

    @property
    def machine_name(self) -> str:
        """``"x86_64"``, ``"aarch64"``, ... or ``"machine N"``."""
        return MACHINES.get(self.machine, f"machine {self.machine}")

    def _check(self, offset: int, size: int, what: str) -> None:
        if offset < 0 or size < 0 or offset + size > len(self.data):
            raise ImageError(f"{what} at {offset:#x} (+{size:#x}) past the end of the file ({len(self.data):#x})",
                             self.path)

    @property
    def sections(self) -> Tuple[SectionHeader, ...]:
        """The section headers (empty when the file has none).  Raises :class:`ImageError`
        when they point outside the file."""
        if self._shdrs is None:
            raw: List[Tuple[int, ...]] = []
            if self._shnum and self._shoff:
                if self._shentsize != _SHDR.size:
                    raise ImageError(f"section header size {self._shentsize}, not {_SHDR.size}", self.path)
                self._check(self._shoff, self._shnum * self._shentsize, "section headers")
                raw = [_SHDR.unpack_from(self.data, self._shoff + i * self._shentsize) for i in range(self._shnum)]
            names = b""
            if raw and self._shstrndx < len(raw):
                st = raw[self._shstrndx]
                self._check(st[4], st[5], "section name table")
                names = bytes(self.data[st[4]:st[4] + st[5]])
            out = []
            for r in raw:
                end = names.find(b"\0", r[0])
                name = names[r[0]:end if end >= 0 else len(names)].decode("latin-1") if r[0] < len(names) else ""
                out.append(SectionHeader(name, r[1], r[2], r[3], r[4], r[5], r[8]))
            self._shdrs = tuple(out)
        return self._shdrs

    def segment(self, ph: ProgramHeader) -> bytes:
        """The file bytes of a program header (``filesz`` of them)."""
        self._check(ph.offset, ph.filesz, "segment")
        return bytes(self.data[ph.offset:ph.offset + ph.filesz])

    def notes(self) -> List[Note]:
        """Every note of the PT_NOTE segments (those at file offset 0 are skipped, as
        libelf does: some binutils leave them so); the SHT_NOTE sections' when there is
        no note segment.  Raises :class:`ImageError` for a note running past its segment."""
        spans = [(ph.offset, ph.filesz, ph.align) for ph in self.phdrs if ph.type == PT_NOTE and ph.offset]
        if not spans:
            spans = [(s.offset, s.size, s.align) for s in self.sections if s.type == SHT_NOTE]
        out: List[Note] = []
        for offset, size, align in spans:
            self._check(offset, size, "note segment")
            out.extend(_parse_notes(self.data, offset, size, 8 if align == 8 else 4, self.path))
        return out

    def load_range(self) -> Tuple[int, int]:
        """(lowest ``paddr``, highest ``paddr + memsz``) of the loadable segments, as
        libelf's ``elf_parse_binary`` computes ``pstart``/``pend``.  Raises
        :class:`ImageError` when there is none."""
        loads = [ph for ph in self.phdrs if ph.loadable]
        if not loads:
            raise ImageError("no loadable segment", self.path)
        return min(ph.paddr for ph in loads), max(ph.paddr + ph.memsz for ph in loads)

    def __repr__(self) -> str:
        return (f"<Elf {self.machine_name} type={self.type} entry={self.entry:#x} "
                f"{len(self.phdrs)} program headers{' ' + self.path if self.path else ''}>")


def _parse_notes(data: bytes, offset: int, size: int, align: int, path: Optional[str]) -> List[Note]:
    out: List[Note] = []
    pos, end = offset, offset + size
    pad = align - 1
    while pos + _NHDR.size <= end:
        namesz, descsz, ntype = _NHDR.unpack_from(data, pos)
        name_at = pos + _NHDR.size
        desc_at = name_at + ((namesz + pad) & ~pad)
        nxt = desc_at + ((descsz + pad) & ~pad)
        if desc_at + descsz > end:
            raise ImageError(f"note at {pos:#x} runs past its segment (ends {end:#x})", path)
        owner = bytes(data[name_at:name_at + namesz]).split(b"\0", 1)[0].decode("latin-1")
        out.append(Note(owner, ntype, bytes(data[desc_at:desc_at + descsz]), desc_at))
        pos = nxt
    return out

