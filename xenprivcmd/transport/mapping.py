"""Guest memory mapped into this process: the :class:`Mapping` type and the privcmd
device's mapping ioctls (``IOCTL_PRIVCMD_MMAPBATCH_V2``, ``IOCTL_PRIVCMD_MMAP_RESOURCE``,
``IOCTL_PRIVCMD_RESTRICT``).

One of the modules that touch the operating system (``tests/test_layering.py`` names
them): it maps and unmaps memory and issues the ioctls; above it the library sees
:class:`Mapping` objects.  The grant device (:mod:`.gntdev`) and the simulator's
memory build their mappings with :func:`map_device` / :func:`map_file_pages` and
wrap them here.

What a mapping is, as libxenforeignmemory does it: an ``mmap`` of ``n`` pages of
the privcmd device (``MAP_SHARED``, read-only unless writable), then one ioctl that
points those pages at the guest's frames.  ``MMAPBATCH_V2`` reports an errno per
frame; frames the hypervisor reports paged out (``ENOENT``) are asked for again,
alone, with a growing pause (100 us up to 10 ms) for up to
:data:`PAGED_RETRY_SECONDS` (libxenforeignmemory retries them forever).  Any frame
still failing then unmaps everything and raises one
:class:`~xenprivcmd.errors.MappingError` naming each failed frame and its errno.

Lifetime (who owns what, when a view dies):

* a :class:`Mapping` owns its address range; :meth:`Mapping.close` (or leaving its
  ``with`` block, or closing the handle that made it, or the mapping being garbage)
  gives the guest's frames back at once.  The :attr:`Mapping.view` object is released
  then: any use of it raises ``ValueError``;
* slices or other exports taken from the view outlive ``close`` safely: the range is
  first replaced by private zero pages (``MAP_FIXED``; the guest's frames are no longer
  mapped), and those pages are unmapped when the last export is gone.  So a stale
  slice reads zeros, never another mapping's memory and never a fault;
* after ``fork()`` the child has none of the parent's mappings (the privcmd driver
  marks them ``VM_DONTCOPY``; the others are advised ``MADV_DONTFORK``): in the child
  every inherited :class:`Mapping` is closed without touching its range.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import mmap
import os
import time
from _weakrefset import WeakSet

from .. import abi as _abi
from ..errors import MappingError, NotSupported, XenError, from_errno
from .libc import MAP_FAILED as _MAP_FAILED
from .libc import libc as _libc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Dict, List, Optional, Sequence, Tuple

    from .privcmd import PrivcmdTransport

__all__ = ["Mapping", "XEN_PAGE_SIZE", "PAGED_RETRY_SECONDS", "map_device", "map_file_pages", "remap", "foreign",
           "resource", "restrict", "describe_failures"]

#: Xen's page size (the privcmd interface maps 4 KiB frames).
XEN_PAGE_SIZE = 4096
#: How long frames reported paged out (ENOENT) are asked for again.
PAGED_RETRY_SECONDS = 5.0
#: Mappings of more frames than this are refused before any ioctl (16 GiB).
MAX_FRAMES = 1 << 22

_PROT_R = mmap.PROT_READ
_PROT_RW = mmap.PROT_READ | mmap.PROT_WRITE
_MAP_FIXED = 0x10  # the same on x86_64 and arm64 (asm-generic/mman-common.h)
_MADV_DONTFORK = getattr(mmap, "MADV_DONTFORK", 10)
_EINTR_RETRIES = 16

_live: "WeakSet[Mapping]" = WeakSet()


def _in_child() -> None:
    for m in list(_live):
        m._forget()


os.register_at_fork(after_in_child=_in_child)


class Mapping:
    """Frames of a guest mapped into this process.

    ``view`` is a ``memoryview`` of ``len(frames) * 4096`` bytes (read-only unless
    the mapping was made writable) that reads and writes the guest's memory itself,
    not a copy.  ``frames`` are what was mapped, in order: the frames given to
    ``map_foreign``, the resource frames of ``map_resource`` (``frame`` ..
    ``frame + count - 1``), or the grant references of ``map_grants``.  ``kind`` is
    ``"foreign"``, ``"resource"`` or ``"grant"``.  Use it as a context manager or
    call :meth:`close`; see the module doc for what closing does to views.
    """

    __slots__ = ("domid", "frames", "kind", "writable", "size", "_address", "_view", "_ro", "_exporter",
                 "_on_close", "_pid", "__weakref__")

    def __init__(self, address: int, size: int, *, domid: int, frames: Tuple[int, ...], kind: str,
                 writable: bool, on_close: Optional[Callable[[], None]] = None) -> None:
        self.domid = domid
        self.frames = frames
        self.kind = kind
        self.writable = writable
        self.size = size
        self._address = address
        self._exporter: Optional[ctypes.Array[ctypes.c_char]] = (ctypes.c_char * size).from_address(address)
        self._view: Optional[memoryview] = memoryview(self._exporter).cast("B")
        self._ro: Optional[memoryview] = None if writable else self._view.toreadonly()
        self._on_close = on_close
        self._pid = os.getpid()
        _live.add(self)

    @property
    def view(self) -> memoryview:
        """The mapped bytes (``ValueError`` once the mapping is closed)."""
        v = self._ro if self._ro is not None else self._view
        if v is None:
            raise ValueError(f"{self!r} is closed")
        return v

    @property
    def address(self) -> int:
        """Where the mapping starts in this process (0 once closed)."""
        return self._address

    @property
    def closed(self) -> bool:
        return self._view is None

    def close(self) -> None:
        """Unmap the guest's frames; idempotent (see the module doc for views)."""
        if self._view is None:
            return
        for v in (self._ro, self._view):
            if v is not None:
                v.release()
        self._ro = self._view = None
        exporter, self._exporter = self._exporter, None
        address, size = self._address, self.size
        self._address = 0
        _live.discard(self)
        on_close, self._on_close = self._on_close, None
        try:
            if self._pid == os.getpid():
                import sys

                if sys.getrefcount(exporter) > 2:  # a slice or another export still points here
                    _retire(address, size, exporter)
                else:
                    _unmap(address, size)
        finally:
            if on_close is not None and self._pid == os.getpid():
                on_close()

    def _forget(self) -> None:
        """In a child after fork(): drop the mapping without touching the range."""
        for v in (self._ro, self._view):
            if v is not None:
                try:
                    v.release()
                except BufferError:  # pragma: no cover - an export of our view object itself
                    pass
        self._ro = self._view = self._exporter = None
        self._address = 0
        self._on_close = None

    def __enter__(self) -> "Mapping":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return self.size

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"at {self._address:#x}"
        shown = ", ".join(f"{f:#x}" for f in self.frames[:4]) + (", ..." if len(self.frames) > 4 else "")
        what = "refs" if self.kind == "grant" else "frames"
        return (f"<xenprivcmd.Mapping {self.kind} domid={self.domid} {what}=[{shown}] "
                f"{'rw' if self.writable else 'ro'} {state}>")


def _unmap(address: int, size: int) -> None:
    if _libc.munmap(address, size) != 0:  # pragma: no cover - only on a library bug
        raise OSError(ctypes.get_errno(), f"munmap of a guest mapping at {address:#x} failed")


def _retire(address: int, size: int, exporter: object) -> None:
    """Let the guest's frames go now, keep the range readable (zeros) until ``exporter`` dies."""
    import weakref

    got = _libc.mmap(address, size, _PROT_R, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_FIXED, -1, 0)
    if got is None or got == _MAP_FAILED:  # pragma: no cover - out of memory: unmap (a stale slice faults)
        _unmap(address, size)
        return
    weakref.finalize(exporter, _unmap, address, size)


def map_device(fd: int, size: int, writable: bool, offset: int = 0) -> int:
    """``mmap(NULL, size, prot, MAP_SHARED, fd, offset)``: the address, or ``OSError``."""
    address = _libc.mmap(None, size, _PROT_RW if writable else _PROT_R, mmap.MAP_SHARED, fd, offset)
    if address is None or address == _MAP_FAILED:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(address)


def map_file_pages(fd: int, offsets: Sequence[int], writable: bool) -> int:
    """The pages of file ``fd`` at byte ``offsets`` (page-aligned), in order, as one
    contiguous range: runs of consecutive offsets are one mapping each (``MAP_FIXED``
    into a reserved range).  Advised ``MADV_DONTFORK``.  The address, or ``OSError``."""
    n = len(offsets)
    size = n * XEN_PAGE_SIZE
    runs: List[Tuple[int, int, int]] = []  # (first index, pages, file offset)
    for i, off in enumerate(offsets):
        if runs and runs[-1][2] + runs[-1][1] * XEN_PAGE_SIZE == off:
            first, count, start = runs[-1]
            runs[-1] = (first, count + 1, start)
        else:
            runs.append((i, 1, off))
    prot = _PROT_RW if writable else _PROT_R
    if len(runs) == 1:
        address = map_device(fd, size, writable, runs[0][2])
    else:
        base = _libc.mmap(None, size, 0, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
        if base is None or base == _MAP_FAILED:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        address = int(base)
        for first, count, off in runs:
            at = address + first * XEN_PAGE_SIZE
            got = _libc.mmap(at, count * XEN_PAGE_SIZE, prot, mmap.MAP_SHARED | _MAP_FIXED, fd, off)
            if got is None or got == _MAP_FAILED:
                err = ctypes.get_errno()
                _unmap(address, size)
                raise OSError(err, os.strerror(err))
    if _libc.madvise(address, size, _MADV_DONTFORK) != 0:  # pragma: no cover - never seen
        err = ctypes.get_errno()
        _unmap(address, size)
        raise OSError(err, os.strerror(err))
    return address


def remap(address: int, fd: int, offset: int, pages: int, writable: bool) -> None:
    """Point ``pages`` pages at ``address`` (inside a mapping of ours) at file ``fd``'s bytes from
    ``offset`` (``MAP_FIXED``): what the privcmd driver does to a reserved range, for a simulated
    device."""
    prot = _PROT_RW if writable else _PROT_R
    got = _libc.mmap(address, pages * XEN_PAGE_SIZE, prot, mmap.MAP_SHARED | _MAP_FIXED, fd, offset)
    if got is None or got == _MAP_FAILED:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def describe_failures(failed: Dict[int, int], what: str, limit: int = 8) -> str:
    """``0x3f2 (EINVAL), 0x3f3 (ENOENT)`` for at most ``limit`` of them, and how many more."""
    items = list(failed.items())
    text = ", ".join(f"{k:#x} ({_errno.errorcode.get(e, str(e))})" for k, e in items[:limit])
    if len(items) > limit:
        text += f" and {len(items) - limit} more"
    return f"{len(items)} {what}: {text}"


# -- the privcmd device's mapping ioctls ----------------------------------------------------------

def _uapi(t: "PrivcmdTransport") -> "_abi.LinuxUAPI":
    return _abi.linux_uapi(t.arch)


def _ioctl(t: "PrivcmdTransport", request: int, arg: object) -> int:
    for _ in range(_EINTR_RETRIES):
        try:
            return int(t.device_ioctl(t.fd, request, arg, True))
        except InterruptedError:
            continue
        except ValueError:
            if t.closed:
                raise XenError(_errno.EBADF, "the handle is closed") from None
            raise
    raise InterruptedError(_errno.EINTR, f"ioctl {request:#x} interrupted {_EINTR_RETRIES} times")


def _reserve(t: "PrivcmdTransport", pages: int, writable: bool, what: str, domid: int) -> int:
    if t.closed:
        raise XenError(_errno.EBADF, "the handle is closed")
    try:
        return t.device_mmap(pages * XEN_PAGE_SIZE, writable)
    except OSError as exc:
        err = exc.errno or _errno.ENOMEM
        raise XenError(err, f"{what}(domid={domid}): cannot map {pages} pages of {t.path}: {os.strerror(err)}",
                       domid=domid) from None


def _device_error(err: int, subop: str, domid: int) -> XenError:
    if err == _errno.ENOTTY:
        return NotSupported(err, f"privcmd {subop}(domid={domid}): this kernel's privcmd driver has no such ioctl"
                            " (ENOTTY)", hypercall="privcmd", subop=subop, domid=domid)
    return from_errno(err, hypercall="memory_op" if subop == "acquire_resource" else "privcmd", subop=subop,
                      domid=domid)


def foreign(t: "PrivcmdTransport", domid: int, frames: Tuple[int, ...], writable: bool,
            retry_seconds: float = PAGED_RETRY_SECONDS) -> Mapping:
    """``IOCTL_PRIVCMD_MMAPBATCH_V2`` (see the module doc); ``frames`` already checked."""
    uapi = _uapi(t)
    S = uapi.structs["privcmd_mmapbatch_v2"]
    request = uapi.constants["IOCTL_PRIVCMD_MMAPBATCH_V2"]
    n = len(frames)
    address = _reserve(t, n, writable, "map_foreign", domid)
    try:
        arr = (ctypes.c_uint64 * n)(*frames)  # xen_pfn_t: 64 bits on x86_64 and arm64
        err = (ctypes.c_int * n)()
        base_arr, base_err = ctypes.addressof(arr), ctypes.addressof(err)
        paged = False
        try:
            _ioctl(t, request, S(num=n, dom=domid, addr=address, arr=base_arr, err=base_err))
        except OSError as exc:
            if exc.errno != _errno.ENOENT:
                raise _device_error(exc.errno or _errno.EIO, "mmapbatch_v2", domid) from None
            paged = True
        if paged:
            deadline = time.monotonic() + retry_seconds
            pause = 100e-6
            while True:
                todo = [i for i in range(n) if err[i] == -_errno.ENOENT]
                if not todo or time.monotonic() >= deadline:
                    break
                time.sleep(pause)
                pause = min(pause * 2, 0.01)
                i = 0
                while i < len(todo):
                    j = i
                    while j + 1 < len(todo) and todo[j + 1] == todo[j] + 1:
                        j += 1
                    first, count = todo[i], j - i + 1
                    try:
                        _ioctl(t, request, S(num=count, dom=domid, addr=address + first * XEN_PAGE_SIZE,
                                             arr=base_arr + 8 * first, err=base_err + 4 * first))
                    except OSError as exc:
                        if exc.errno != _errno.ENOENT:
                            raise _device_error(exc.errno or _errno.EIO, "mmapbatch_v2", domid) from None
                    i = j + 1
        failed: Dict[int, int] = {}
        for i in range(n):
            if err[i]:
                failed.setdefault(frames[i], -err[i])
    except BaseException:
        _unmap(address, n * XEN_PAGE_SIZE)
        raise
    if failed:
        _unmap(address, n * XEN_PAGE_SIZE)
        first_err = next(iter(failed.values()))
        note = f" (paged out still after {retry_seconds:g} s)" if _errno.ENOENT in failed.values() else ""
        raise MappingError(first_err, f"map_foreign(domid={domid}): "
                           f"{describe_failures(failed, 'of ' + str(n) + ' frames failed')}{note}",
                           failed=failed, hypercall="privcmd", subop="mmapbatch_v2", domid=domid)
    return Mapping(address, n * XEN_PAGE_SIZE, domid=domid, frames=frames, kind="foreign", writable=writable)


def resource(t: "PrivcmdTransport", domid: int, type_: int, id_: int, frame: int, count: int,
             writable: bool) -> Mapping:
    """``IOCTL_PRIVCMD_MMAP_RESOURCE``: ``count`` frames of a domain's resource from ``frame``."""
    uapi = _uapi(t)
    S = uapi.structs["privcmd_mmap_resource"]
    address = _reserve(t, count, writable, "map_resource", domid)
    try:
        _ioctl(t, uapi.constants["IOCTL_PRIVCMD_MMAP_RESOURCE"],
               S(dom=domid, type=type_, id=id_, idx=frame, num=count, addr=address))
    except OSError as exc:
        _unmap(address, count * XEN_PAGE_SIZE)
        raise _device_error(exc.errno or _errno.EIO, "acquire_resource", domid) from None
    except BaseException:
        _unmap(address, count * XEN_PAGE_SIZE)
        raise
    return Mapping(address, count * XEN_PAGE_SIZE, domid=domid, frames=tuple(range(frame, frame + count)),
                   kind="resource", writable=writable)


def restrict(t: "PrivcmdTransport", domid: int) -> None:
    """``IOCTL_PRIVCMD_RESTRICT``: the device acts on ``domid`` only from now on (cannot be undone)."""
    uapi = _uapi(t)
    try:
        _ioctl(t, uapi.constants["IOCTL_PRIVCMD_RESTRICT"], ctypes.c_uint16(domid))
    except OSError as exc:
        raise _device_error(exc.errno or _errno.EIO, "restrict", domid) from None
