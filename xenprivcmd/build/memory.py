"""What every builder's layout is made of: segments of guest memory."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NamedTuple
else:  # the same classes, without importing typing (see _ntuple)
    from .._ntuple import NamedTuple

__all__ = ["Segment", "PAGE_SHIFT", "PAGE_SIZE", "pages_for"]

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT


def pages_for(size: int) -> int:
    """How many 4 KiB pages hold ``size`` bytes."""
    return (size + PAGE_SIZE - 1) >> PAGE_SHIFT


class Segment(NamedTuple):
    """A piece of the guest's memory: ``vstart``..``vend`` (guest-virtual on x86 PV,
    guest-physical on Arm; ``vend`` is ``vstart`` + the bytes asked for), ``pages`` pages
    from frame ``pfn`` on."""

    name: str
    vstart: int
    vend: int
    pfn: int
    pages: int
