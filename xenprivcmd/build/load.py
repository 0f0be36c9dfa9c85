"""What every domain builder does with files and guest pages: a kernel's or ramdisk's
bytes read (refused by name when unreadable, empty or too large), and pieces of a boot
image written into a new guest through foreign mappings, a chunk at a time (shared by
:mod:`xenprivcmd.build.create` and :mod:`xenprivcmd.build.arm64`)."""

from __future__ import annotations

import os

from ..errors import ImageError
from .memory import PAGE_SHIFT

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Sequence

    from ..handle import Handle
    from .image import Piece

__all__ = ["MAP_CHUNK", "FILE_LIMIT", "read_file", "write_pieces"]

#: Frames mapped at once while the image is written
MAP_CHUNK = 2048
#: The most bytes read of a kernel or ramdisk file
FILE_LIMIT = 1 << 30


def read_file(path: str, what: str) -> bytes:
    """A file's bytes; :class:`ImageError` naming it when it cannot be read or is empty."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > FILE_LIMIT:
                raise ImageError(f"the {what} is larger than {FILE_LIMIT} bytes", path)
            data = f.read()
    except OSError as e:
        raise ImageError(f"cannot read the {what}: {e.strerror or e}", path) from None
    if not data:
        raise ImageError(f"the {what} file is empty", path)
    return data


def write_pieces(xen: Handle, domid: int, mfns: Sequence[int], pieces: Sequence[Piece]) -> None:
    """Each piece's bytes into the guest's pages, through foreign mappings of MAP_CHUNK
    frames at most (each closed before the next)."""
    for piece in pieces:
        for first in range(0, piece.pages, MAP_CHUNK):
            n = min(MAP_CHUNK, piece.pages - first)
            frames = mfns[piece.pfn + first:piece.pfn + first + n]
            with xen.map_foreign(domid, frames, writable=True) as m:
                m.view[:] = piece.data[first << PAGE_SHIFT:(first + n) << PAGE_SHIFT]
