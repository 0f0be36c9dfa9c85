"""The simulated host's memory as real bytes: guest frames, grant tables, the guests' rings.

:class:`Ram` is a memfd holding one 4 KiB page per frame in use (allocated on first
touch, so a host of 32k domains costs nothing until a frame is looked at); a foreign
mapping of a frame is an ``mmap`` of its page, so two mappings of one frame, or a
mapping and the simulated guest writing its console, see the same bytes.  Keys are
``("mfn", mfn)`` for guest RAM and ``("gnttab", domid, index)`` for grant-table frames.

:class:`GuestMemory` is one domain's physmap: gfn -> mfn.  A domain of a host
description (``web1``...) has its RAM at gfns ``0 .. tot_pages - 1`` (machine frames
``(domid + 1) << 24`` on), without a table entry each; ``populate_physmap`` adds
entries (fresh mfns from ``0x400000`` on, below every implicit base and above
the shared info frames, 32-bit as a v1 grant entry needs), ``decrease_reservation`` removes them.  An
x86 PV domain is mapped by mfn; a translated one (every Arm domain, x86 HVM) by gfn.

What a simulated PV guest has, as xl leaves it (:meth:`Memory.setup_guest`): a
console ring (``xencons_interface``) and a xenstore ring
(``xenstore_domain_interface``) in two frames (x86 PV: the guest's last two RAM
frames; Arm: ``GUEST_MAGIC_BASE``, gfns 0x39000 and 0x39001), grant entries 0 and 1
granting them to dom0 (``grant_entry_v1`` ``{GTF_permit_access, 0, frame}``), and
its boot messages in the console ring, already read by the simulated xenconsoled.
"""

from __future__ import annotations

import os
import struct
import threading
from typing import TYPE_CHECKING, Any, Callable, Dict, Hashable, List, Optional, Tuple

if TYPE_CHECKING:
    from ._host import Domain, Host

__all__ = ["Ram", "GuestMemory", "Memory", "PAGE", "CONSOLE_MAGIC_GFN", "STORE_MAGIC_GFN", "GNTTAB_FRAMES"]

PAGE = 4096
#: Arm's GUEST_MAGIC_BASE (0x39000000) in frames: the console page, then the xenstore page.
CONSOLE_MAGIC_GFN = 0x39000
STORE_MAGIC_GFN = 0x39001
#: Grant-table frames each simulated domain has (v1: 512 entries a frame).
GNTTAB_FRAMES = 4
#: Where populate_physmap's fresh machine frames start.
FRESH_MFN_BASE = 0x400000  # above the shared info frames (0x100000 + domid * 0x10), below domain 0's implicit base
#: ... and where they end (12M frames: 48 GiB populated over a host's life)
FRESH_MFN_END = 1 << 24
_IMPLICIT_SHIFT = 24

_u16 = struct.Struct("<H")
_u32 = struct.Struct("<I")


class Ram:
    """Frames as pages of a memfd, allocated on first touch (see the module doc)."""

    def __init__(self, initial: Optional[Callable[[Hashable], Optional[bytes]]] = None) -> None:
        try:
            self.fd = os.memfd_create("xenprivcmd-sim-ram", os.MFD_CLOEXEC)
        except (AttributeError, OSError):  # pragma: no cover - kernels before 3.17
            import tempfile

            fd, path = tempfile.mkstemp(prefix="xenprivcmd-sim-ram-")
            os.unlink(path)
            self.fd = fd
        self._slots: Dict[Hashable, int] = {}
        self._free: List[int] = []
        self._pages = 0
        self._initial = initial
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return len(self._slots)

    def has(self, key: Hashable) -> bool:
        return key in self._slots

    def keys(self) -> List[Any]:
        with self._lock:
            return list(self._slots)

    def offset(self, key: Hashable) -> int:
        """The byte offset of ``key``'s page in :attr:`fd` (allocated, and filled, on first use)."""
        with self._lock:
            slot = self._slots.get(key)
            if slot is not None:
                return slot * PAGE
            if self._free:
                slot = self._free.pop()
            else:
                slot = self._pages
                self._pages += 1
                if self._pages * PAGE > os.fstat(self.fd).st_size:
                    os.ftruncate(self.fd, max(64, self._pages * 2) * PAGE)
            self._slots[key] = slot
            data = self._initial(key) if self._initial is not None else None
            if data:
                os.pwrite(self.fd, data[:PAGE], slot * PAGE)
            return slot * PAGE

    def read(self, key: Hashable, at: int, size: int) -> bytes:
        return os.pread(self.fd, size, self.offset(key) + at)

    def write(self, key: Hashable, at: int, data: bytes) -> None:
        if at < 0 or at + len(data) > PAGE:
            raise ValueError(f"{len(data)} bytes at {at} do not fit in a page")
        os.pwrite(self.fd, data, self.offset(key) + at)

    def release(self, key: Hashable) -> None:
        """The frame is freed: its page zeroed and reused later."""
        with self._lock:
            slot = self._slots.pop(key, None)
            if slot is not None:
                os.pwrite(self.fd, bytes(PAGE), slot * PAGE)
                self._free.append(slot)

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass


class GuestMemory:
    """One domain's physmap (see the module doc)."""

    __slots__ = ("domid", "implicit", "removed", "p2m", "translated")

    def __init__(self, domid: int, implicit: int, translated: bool) -> None:
        self.domid = domid
        #: gfns 0 .. implicit - 1 are RAM at mfn base + gfn (unless removed)
        self.implicit = implicit
        self.removed: Dict[int, None] = {}
        self.p2m: Dict[int, int] = {}
        self.translated = translated

    @property
    def base(self) -> int:
        return (self.domid + 1) << _IMPLICIT_SHIFT

    def mfn(self, gfn: int) -> Optional[int]:
        got = self.p2m.get(gfn)
        if got is not None:
            return got
        if 0 <= gfn < self.implicit and gfn not in self.removed:
            return self.base + gfn
        return None

    def owns(self, mfn: int) -> bool:
        """Whether machine frame ``mfn`` is this domain's."""
        gfn = mfn - self.base
        if 0 <= gfn < self.implicit and gfn not in self.removed and gfn not in self.p2m:
            return True
        return mfn in self.p2m.values()

    def frame(self, frame: int) -> Optional[int]:
        """The mfn a foreign mapping of ``frame`` reaches: by gfn when translated, by mfn for PV."""
        if self.translated:
            return self.mfn(frame)
        return frame if self.owns(frame) else None

    def max_gpfn(self) -> int:
        top = self.implicit - 1
        while top >= 0 and top in self.removed:
            top -= 1
        return max([top] + list(self.p2m))


class Memory:
    """The host's frames and every domain's physmap, grant table and rings."""

    def __init__(self, host: "Host") -> None:
        self.host = host
        self.ram = Ram(self._initial)
        self.guests: Dict[int, GuestMemory] = {}
        self._next_fresh = FRESH_MFN_BASE
        self._set_up: Dict[int, Tuple[int, int]] = {}
        #: console page key -> domid (its first touch prints the boot messages)
        self._consoles: Dict[Hashable, int] = {}
        #: (domid, frame) -> how many more times a foreign mapping finds it paged out (ENOENT)
        self.paged_out: Dict[Tuple[int, int], int] = {}
        #: grant refs mapped now: (domid, ref) -> mappings, for GTF_reading/GTF_writing
        self.grant_maps: Dict[Tuple[int, int], List[bool]] = {}
        self.lock = threading.RLock()

    # -- physmaps -------------------------------------------------------------------------------------
    def guest(self, d: "Domain") -> GuestMemory:
        g = self.guests.get(d.domid)
        if g is None:
            implicit = d.tot_pages if d.built else 0
            g = self.guests[d.domid] = GuestMemory(d.domid, implicit, translated=d.hvm)
            if d.pv and d.built and not d.is_dom0:
                self.magic(d)
        return g

    def fresh_mfn(self) -> int:
        mfn = self._next_fresh
        if mfn >= FRESH_MFN_END:
            raise OSError(12, "sim: no fresh machine frames left")  # ENOMEM
        self._next_fresh += 1
        return mfn

    def forget(self, domid: int) -> None:
        """A destroyed domain's frames go."""
        g = self.guests.pop(domid, None)
        if g is not None:
            for mfn in g.p2m.values():
                self.ram.release(("mfn", mfn))
            for key in self.ram.keys():
                if key[0] == "mfn" and g.base <= key[1] < g.base + g.implicit:
                    self.ram.release(key)
        for i in range(GNTTAB_FRAMES):
            self.ram.release(("gnttab", domid, i))
        self.ram.release(("shinfo", domid))
        self._set_up.pop(domid, None)
        for k in [k for k, v in self._consoles.items() if v == domid]:
            del self._consoles[k]

    # -- what xl leaves a PV guest --------------------------------------------------------------------
    def magic(self, d: "Domain") -> Tuple[int, int]:
        """(console, xenstore) frames of a guest as its xenstore nodes give them: gfns when translated,
        else mfns."""
        got = self._set_up.get(d.domid)
        if got is not None:
            return got
        g = self.guest(d)
        if g.translated:
            for gfn in (CONSOLE_MAGIC_GFN, STORE_MAGIC_GFN):
                if gfn not in g.p2m:
                    g.p2m[gfn] = self.fresh_mfn()
            got = (CONSOLE_MAGIC_GFN, STORE_MAGIC_GFN)
        else:
            top = max(2, g.implicit)
            if g.implicit < 2:
                g.implicit = 2
            got = (g.base + top - 2, g.base + top - 1)
        self._set_up[d.domid] = got
        mfn = g.mfn(got[0]) if g.translated else got[0]
        self._consoles[("mfn", mfn)] = d.domid
        return got

    def console_key(self, d: "Domain") -> Tuple[str, int]:
        frame = self.magic(d)[0]
        g = self.guest(d)
        mfn = g.mfn(frame) if g.translated else frame
        assert mfn is not None
        return ("mfn", mfn)

    def _initial(self, key: Hashable) -> Optional[bytes]:
        """What a frame holds when first touched: a guest's console with its boot messages, its grant
        table seeded as xl seeds it."""
        owner = self._consoles.get(key)
        if owner is not None and owner in self.host.domains:
            return bytes(self.host.consoles.initial_page(self.host.domains[owner]))
        if isinstance(key, tuple) and key[0] == "gnttab" and key[2] == 0:
            d = self.host.domains.get(key[1])
            if d is None or not d.pv or d.is_dom0:
                return None
            lay = self.grant_layout()
            flags = self.host.variant.constants["GTF_permit_access"]
            page = bytearray(PAGE)
            for ref, frame in enumerate(self.magic(d)):
                at = ref * lay.size
                lay.put(page, "flags", flags, at)
                lay.put(page, "domid", 0, at)
                lay.put(page, "frame", frame, at)
            return bytes(page)
        return None

    # -- grant tables -----------------------------------------------------------------------------------
    def grant_entry(self, domid: int, ref: int) -> Optional[Tuple[int, int, int, Tuple[str, int, int], int]]:
        """(flags, domid, frame, page key, offset) of grant ``ref`` of ``domid``; None past the table."""
        lay = self.grant_layout()
        idx, slot = divmod(ref, PAGE // lay.size)
        if idx >= GNTTAB_FRAMES:
            return None
        key = ("gnttab", domid, idx)
        raw = self.ram.read(key, slot * lay.size, lay.size)
        return lay.get(raw, "flags"), lay.get(raw, "domid"), lay.get(raw, "frame"), key, slot * lay.size

    def grant_layout(self) -> Any:
        """``grant_entry_v1`` as the simulator reads the generated rows (the gnttab family)."""
        return self.host.family("gnttab").layout("grant_entry_v1")

    def set_grant_flags(self, key: Tuple[str, int, int], at: int, flags: int) -> None:
        self.ram.write(key, at + self.grant_layout().offset("flags"), _u16.pack(flags))
