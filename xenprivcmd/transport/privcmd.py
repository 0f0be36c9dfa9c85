"""The one module of xenprivcmd that touches the operating system.

Everything that opens a device, issues an ``ioctl``, maps, locks or advises
memory lives here.  Above this module the library only sees a
:class:`Transport`: "issue hypercall *op* with these five arguments" and "give
me a hypercall buffer of at least *n* bytes".  The simulator, the fakes and the
record/replay transports plug in behind the same interface, so the encode ->
hypercall -> decode path above it is the production one in every test.

Hypercall buffers follow libxencall:

* when ``/dev/xen/hypercall`` exists, buffers are ``mmap``\\ s of it (the
  kernel hands out memory Xen may safely access);
* otherwise anonymous private memory mapped with ``MAP_LOCKED``, advised
  ``MADV_DONTFORK`` and with every page touched, so it is resident before the
  hypervisor writes to it.

Invariants (who owns what, when a view dies):

* a :class:`Buffer` owns its mapping; :meth:`Buffer.release` unmaps it and
  every view taken from it is dead from then on (views must not outlive the
  buffer; the ops layer only keeps views inside one call);
* each thread has its own scratch buffer per transport (no lock on the hot
  path); it grows geometrically and is never shrunk while the thread lives;
* after ``fork()`` the child forgets every buffer of the parent without
  touching its address range (``MADV_DONTFORK`` mappings are not there in the
  child) and maps new ones on first use.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import fcntl
import mmap
import os
import struct
from _thread import _local as _thread_local
from _thread import allocate_lock as _allocate_lock
from _weakrefset import WeakSet

from ..errors import NotDom0Error, PrivcmdPermissionError, RestrictedError, XenError, XenNotAvailable
from .libc import MAP_FAILED as _MAP_FAILED
from .libc import libc as _libc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Tuple, Type, TypeVar

__all__ = [
    "PAGE_SIZE",
    "IOCTL_PRIVCMD_HYPERCALL",
    "Buffer",
    "Transport",
    "PrivcmdTransport",
    "open_privcmd",
    "peek",
    "struct_at",
]

PAGE_SIZE = mmap.PAGESIZE

# struct privcmd_hypercall { __u64 op; __u64 arg[5]; } (linux/include/uapi/xen/privcmd.h)
# IOCTL_PRIVCMD_HYPERCALL = _IOC(_IOC_NONE, 'P', 0, sizeof(struct privcmd_hypercall))
_HYPERCALL_REQ = struct.Struct("=6Q")
IOCTL_PRIVCMD_HYPERCALL = (ord("P") << 8) | (_HYPERCALL_REQ.size << 16)

PRIVCMD_PATHS = ("/dev/xen/privcmd", "/proc/xen/privcmd")
HYPERCALL_BUF_PATH = "/dev/xen/hypercall"

_PROT_RW = mmap.PROT_READ | mmap.PROT_WRITE
_MAP_LOCKED = 0x2000  # same value on x86_64 and arm64 (asm-generic/mman.h)
_MADV_DONTFORK = getattr(mmap, "MADV_DONTFORK", 10)

# How many times an ioctl interrupted by a signal (EINTR) is issued again.
# The privcmd driver returns EINTR before Xen acted, so a retry never applies
# an operation twice.
EINTR_RETRIES = 16


class privcmd_hypercall(ctypes.Structure):
    """``struct privcmd_hypercall`` of the Linux privcmd driver."""

    _fields_ = [("op", ctypes.c_uint64), ("arg", ctypes.c_uint64 * 5)]


assert ctypes.sizeof(privcmd_hypercall) == _HYPERCALL_REQ.size == 48




def _round_up(size: int) -> int:
    return max(PAGE_SIZE, (size + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1))


if TYPE_CHECKING:
    _C = TypeVar("_C", bound="ctypes._CData")


class Buffer:
    """A page-aligned region of memory the hypervisor may read and write.

    ``address`` is what goes into a hypercall argument; ``view`` is a
    writable ``memoryview`` of the same bytes (no copy).  ``at(cls, offset)``
    gives a ctypes object laid over the buffer (cached per class and offset),
    so a reply is read in place.
    """

    __slots__ = ("address", "size", "view", "kind", "_unmap", "_pid", "_views", "__weakref__")

    def __init__(self, address: int, size: int, kind: str, unmap: Optional[Callable[[int, int], None]]) -> None:
        self.address = address
        self.size = size
        self.kind = kind
        self._unmap = unmap
        self._pid = os.getpid()
        self.view = memoryview((ctypes.c_char * size).from_address(address)).cast("B")
        self._views: Dict[Tuple[type, int], object] = {}

    def at(self, cls: Type[_C], offset: int = 0) -> _C:
        """A ctypes ``cls`` instance over the buffer at ``offset`` (zero copy)."""
        key = (cls, offset)
        obj = self._views.get(key)
        if obj is None:
            if offset < 0 or offset + ctypes.sizeof(cls) > self.size:
                raise ValueError(f"{cls.__name__} at offset {offset} does not fit in a {self.size}-byte buffer")
            obj = self._views[key] = cls.from_address(self.address + offset)  # type: ignore[attr-defined]
        return obj  # type: ignore[return-value]

    def clear(self, length: Optional[int] = None, offset: int = 0) -> None:
        """Zero ``length`` bytes from ``offset`` (default: all of it from the start)."""
        n = self.size - offset if length is None else length
        if not (0 <= offset and 0 <= n and offset + n <= self.size):
            raise ValueError(f"cannot clear {n} bytes at {offset} of a {self.size}-byte buffer")
        ctypes.memset(self.address + offset, 0, n)

    @property
    def alive(self) -> bool:
        return self.address != 0

    def release(self) -> None:
        """Unmap the memory; every view of it is dead afterwards."""
        if self.address == 0:
            return
        address, size, unmap = self.address, self.size, self._unmap
        self._views.clear()
        self.view.release()
        self.address = 0
        if unmap is not None and self._pid == os.getpid():
            unmap(address, size)

    def forget(self) -> None:
        """Drop the buffer without unmapping it (the child after ``fork()``)."""
        self._views.clear()
        self.view.release()
        self.address = 0

    def __del__(self) -> None:
        try:
            self.release()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass

    def __repr__(self) -> str:
        return f"<Buffer {self.kind} {self.size} bytes at {self.address:#x}>"


def peek(address: int, size: int) -> bytes:
    """A copy of ``size`` bytes at ``address``: what a request points to, for tracing and
    recordings (the caller checks that it lies in memory it owns, e.g. a hypercall buffer)."""
    if address <= 0 or size < 0:
        raise ValueError(f"cannot read {size} bytes at {address:#x}")
    return ctypes.string_at(address, size)


def struct_at(cls: Type[_C], address: int) -> _C:
    """A ctypes ``cls`` over the memory at ``address``, in place (a request a wrapper decodes
    and may adjust before it is issued; the caller checks the address is one it was handed)."""
    if address <= 0:
        raise ValueError(f"no {cls.__name__} at {address:#x}")
    return cls.from_address(address)  # type: ignore[attr-defined, no-any-return]


def _munmap(address: int, size: int) -> None:
    if _libc.munmap(address, size) != 0:  # pragma: no cover - only on a library bug
        raise OSError(ctypes.get_errno(), "munmap of a hypercall buffer failed")


def _map_anonymous(size: int, locked: bool) -> Buffer:
    """Anonymous memory for hypercall buffers, the way libxencall maps it."""
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | (_MAP_LOCKED if locked else 0)
    address = _libc.mmap(None, size, _PROT_RW, flags, -1, 0)
    if address is None or address == _MAP_FAILED:
        err = ctypes.get_errno()
        hint = " (RLIMIT_MEMLOCK too low?)" if locked and err in (_errno.EAGAIN, _errno.ENOMEM, _errno.EPERM) else ""
        raise XenError(err, f"cannot map a {size}-byte hypercall buffer: {os.strerror(err)}{hint}")
    if _libc.madvise(address, size, _MADV_DONTFORK) != 0:
        err = ctypes.get_errno()
        _libc.munmap(address, size)
        raise XenError(err, f"madvise(MADV_DONTFORK) on a hypercall buffer failed: {os.strerror(err)}")
    ctypes.memset(address, 0, size)  # touch every page
    return Buffer(address, size, "anonymous-locked" if locked else "anonymous", _munmap)


def _map_device(fd: int, size: int) -> Buffer:
    address = _libc.mmap(None, size, _PROT_RW, mmap.MAP_SHARED, fd, 0)
    if address is None or address == _MAP_FAILED:
        err = ctypes.get_errno()
        raise XenError(err, f"cannot map {size} bytes of {HYPERCALL_BUF_PATH}: {os.strerror(err)}")
    # Write every page (libxencall memsets too): Xen on Arm translates buffer
    # addresses with "at s12e1w", which fails on a clean page the kernel keeps
    # read-only until its first write fault (CPUs without FEAT_HAFDBS) -> EFAULT.
    ctypes.memset(address, 0, size)
    return Buffer(address, size, HYPERCALL_BUF_PATH, _munmap)


_live_transports: "WeakSet[Transport]" = WeakSet()


def _after_fork_in_child() -> None:
    for transport in list(_live_transports):
        transport._forget_buffers()


os.register_at_fork(after_in_child=_after_fork_in_child)


class Transport:
    """What the library above sees of a hypervisor connection.

    Subclasses implement :meth:`hypercall` and :meth:`_map`; buffer
    management (per-thread scratch buffers, growth, fork safety, counters)
    is shared.  ``calls`` counts hypercalls issued through this transport
    (the tests use it to prove that bad input issues none).  In-process
    transports count exactly under threads; the privcmd device's count is a
    statistic kept off the hot path's lock, so threads issuing at once may
    leave it a few short.
    """

    #: Which memory the buffers come from, e.g. ``"/dev/xen/hypercall"``.
    buffer_kind = "unset"
    #: What this transport talks to: ``"privcmd"``, ``"sim"``, ``"replay"``, ...
    kind = "unset"
    #: Whether a multicall (hypercall 13) may be issued through it as one trap.
    multicall = False
    #: The domain a restricted device acts on (``Handle.restrict``), None when it is not restricted.
    restricted: Optional[int] = None

    def __init__(self) -> None:
        self.calls = 0
        self.closed = False
        self._local = _thread_local()
        self._lock = _allocate_lock()
        self._buffers: "WeakSet[Buffer]" = WeakSet()
        #: Guest memory mapped through this transport (transport.mapping.Mapping), closed with it.
        self._mappings: Optional["WeakSet[Any]"] = None
        _live_transports.add(self)

    # -- to be provided by subclasses ----------------------------------------
    def hypercall(self, op: int, a0: int = 0, a1: int = 0, a2: int = 0, a3: int = 0, a4: int = 0) -> int:
        """Issue hypercall ``op``; return its (non-negative) result or raise ``OSError``."""
        raise NotImplementedError

    def _map(self, size: int) -> Buffer:
        raise NotImplementedError

    # -- buffers ----------------------------------------------------------------
    def scratch(self, size: int = PAGE_SIZE) -> Buffer:
        """This thread's hypercall buffer, at least ``size`` bytes.

        Reused across calls; replaced by a larger one (the old one unmapped)
        when ``size`` exceeds it.  Only the calling thread may use it, and
        only until its next call to ``scratch``.
        """
        buf: Optional[Buffer] = getattr(self._local, "buf", None)
        if buf is not None and buf.size >= size and buf.address:
            return buf
        return self._grow(buf, size)

    def _grow(self, old: Optional[Buffer], size: int) -> Buffer:
        if self.closed:
            raise XenError(_errno.EBADF, "the handle is closed")
        if size <= 0:
            raise ValueError(f"buffer size must be positive, not {size}")
        want = _round_up(size)
        if old is not None and old.address:
            want = max(want, 2 * old.size)
        buf = self._map(want)
        with self._lock:
            self._buffers.add(buf)
        self._local.buf = buf
        self._local.lane = None  # built again over the new buffer on next use
        if old is not None:
            old.release()
        return buf

    def track(self, mapping: Any) -> Any:
        """Remember a guest mapping made through this transport: :meth:`close` closes it."""
        with self._lock:
            if self._mappings is None:
                self._mappings = WeakSet()
            self._mappings.add(mapping)
        return mapping

    def live_mappings(self) -> List[Any]:
        """The guest mappings made through this transport and still open."""
        with self._lock:
            return [m for m in list(self._mappings or ()) if not m.closed]

    def _close_mappings(self) -> None:
        for m in self.live_mappings():
            m.close()
        self._mappings = None

    def _forget_buffers(self) -> None:
        for buf in list(self._buffers):
            buf.forget()
        self._buffers = WeakSet()
        self._local = _thread_local()
        self._lock = _allocate_lock()

    def stats(self) -> Dict[str, int]:
        """Counters for soak tests: hypercalls issued, buffers and bytes mapped."""
        live = [b for b in list(self._buffers) if b.alive]
        return {"calls": self.calls, "buffers": len(live), "mapped_bytes": sum(b.size for b in live)}

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._close_mappings()
        for buf in list(self._buffers):
            buf.release()
        self._local = _thread_local()
        _live_transports.discard(self)

    def describe(self) -> str:
        return f"{self.kind} (buffers: {self.buffer_kind})"

    def xenstore(self) -> Any:
        """A connection to the xenstore of this transport's host (close it when done);
        :class:`~xenprivcmd.errors.XenstoreUnavailable` when it has none."""
        from ..errors import XenstoreUnavailable

        raise XenstoreUnavailable(_errno.ENOENT, f"no xenstore behind {self.describe()}")


class MemoryTransport(Transport):
    """Base for transports whose "hypervisor" runs in this process (fakes,
    simulator, replay): buffers are plain anonymous mappings, not locked, so
    no privilege is needed, and the hypercall is answered by :meth:`handle`,
    which reads the request straight from the caller's buffers by address.
    """

    buffer_kind = "anonymous"

    def _map(self, size: int) -> Buffer:
        return _map_anonymous(size, locked=False)

    def hypercall(self, op: int, a0: int = 0, a1: int = 0, a2: int = 0, a3: int = 0, a4: int = 0) -> int:
        if self.closed:
            raise XenError(_errno.EBADF, "the handle is closed")
        if self.restricted is not None:
            raise RestrictedError(_errno.EPERM, f"the handle is restricted to domain {self.restricted}: hypercalls"
                                  " are refused (only mappings of that domain are allowed)", domid=self.restricted)
        with self._lock:  # exact under threads: the tests count hypercalls through it
            self.calls += 1
        return self.handle(op, (a0, a1, a2, a3, a4))

    def handle(self, op: int, args: Tuple[int, int, int, int, int]) -> int:
        """Answer one hypercall: return a result or raise ``OSError(errno)``."""
        raise NotImplementedError

    @staticmethod
    def read(address: int, size: int) -> bytes:
        """Bytes of a caller's buffer (for in-process hypervisors)."""
        return ctypes.string_at(address, size)

    @staticmethod
    def write(address: int, data: bytes) -> None:
        """Write into a caller's buffer (for in-process hypervisors)."""
        ctypes.memmove(address, data, len(data))


class Lane:
    """One thread's hypercall buffer on the privcmd device, with prebuilt
    ``privcmd_hypercall`` requests over it: what a prepared request is issued on
    (:mod:`xenprivcmd.ops.engine`).  ``view`` and ``base`` are the buffer's bytes
    and address, ``size`` its length; :meth:`request` gives the prebuilt request
    for a hypercall and its arguments (``None`` standing for ``base``).  Dies
    with the buffer: a larger buffer gets a new lane."""

    __slots__ = ("buf", "view", "base", "size", "requests")

    def __init__(self, buf: Buffer) -> None:
        self.buf = buf
        self.view = buf.view
        self.base = buf.address
        self.size = buf.size
        #: The requests built so far, by key (``requests.get(key) or request(key)``).
        self.requests: Dict[Tuple[Optional[int], ...], privcmd_hypercall] = {}

    def request(self, key: Tuple[Optional[int], ...]) -> privcmd_hypercall:
        """The prebuilt request for ``key`` = (hypercall, a0, ..., a4), ``None`` = ``base``."""
        req = self.requests.get(key)
        if req is None:
            base = self.base
            req = self.requests[key] = privcmd_hypercall(
                key[0], tuple(base if a is None else a for a in key[1:]))  # type: ignore[arg-type]
        return req


class PrivcmdTransport(Transport):
    """The Linux privcmd driver of a Xen dom0."""

    kind = "privcmd"
    multicall = True

    def __init__(self, fd: int, path: str, buf_fd: Optional[int]) -> None:
        super().__init__()
        self.fd = fd
        self.path = path
        self._buf_fd = buf_fd
        self.buffer_kind = HYPERCALL_BUF_PATH if buf_fd is not None else "anonymous-locked"
        #: The ioctl every hypercall ends in (``fcntl.ioctl``; a test may plug in a simulated device).
        self.ioctl: Callable[..., int] = _ioctl
        #: IOCTL_PRIVCMD_HYPERCALL, read once (a benchmark's fake device changes it first).
        self.request = IOCTL_PRIVCMD_HYPERCALL
        #: The ioctl of the mapping requests (transport.mapping; a test may plug in a fake device).
        self.device_ioctl: Callable[..., int] = _ioctl
        self._gntdev: Any = None

    def lane(self, size: int = PAGE_SIZE) -> Lane:
        """This thread's :class:`Lane` over a buffer of at least ``size`` bytes (built on
        first use, and again when the buffer grew)."""
        lane: Optional[Lane] = getattr(self._local, "lane", None)
        if lane is None or lane.size < size or not lane.buf.address:
            buf = self.scratch(size)
            lane = getattr(self._local, "lane", None)  # scratch() drops the lane of a buffer it replaced
            if lane is None or lane.buf is not buf:
                lane = self._local.lane = Lane(buf)
        return lane

    def reissue(self, exc: OSError, req: privcmd_hypercall) -> int:
        """A prepared request's ioctl raised ``exc``: EINTR is issued again (Xen did
        nothing, up to :data:`EINTR_RETRIES` times); any other error is raised as it is."""
        if isinstance(exc, InterruptedError):
            return self._retry(req)
        raise exc

    def hypercall(self, op: int, a0: int = 0, a1: int = 0, a2: int = 0, a3: int = 0, a4: int = 0) -> int:
        # Hot path: one pack into this thread's prebuilt request, one ioctl.
        local = self._local
        try:
            req = local.req
        except AttributeError:
            req = local.req = privcmd_hypercall()
        _pack_req(req, 0, op, a0, a1, a2, a3, a4)
        self.calls += 1
        try:
            return self.ioctl(self.fd, self.request, req, True)
        except InterruptedError:
            return self._retry(req)
        except ValueError:
            if self.closed:
                raise XenError(_errno.EBADF, "the handle is closed") from None
            raise

    def _retry(self, req: privcmd_hypercall) -> int:
        for _ in range(EINTR_RETRIES):
            try:
                return int(self.ioctl(self.fd, self.request, req, True))
            except InterruptedError:
                continue
        raise InterruptedError(_errno.EINTR, f"hypercall {req.op} interrupted {EINTR_RETRIES + 1} times")

    def _map(self, size: int) -> Buffer:
        if self._buf_fd is not None:
            return _map_device(self._buf_fd, size)
        return _map_anonymous(size, locked=True)

    # -- guest memory, grants, event channels (transport.mapping, .gntdev, .evtchn) -------------------
    @property
    def arch(self) -> str:
        """This machine's architecture: the layouts of the device's ioctls."""
        from .. import _machine_arch

        return _machine_arch()

    def device_mmap(self, size: int, writable: bool) -> int:
        """Reserve ``size`` bytes of the device for a mapping ioctl (``MAP_SHARED``)."""
        from .mapping import map_device

        return map_device(self.fd, size, writable)

    def map_foreign(self, domid: int, frames: Tuple[int, ...], writable: bool) -> Any:
        """Map ``frames`` of ``domid`` (``IOCTL_PRIVCMD_MMAPBATCH_V2``; checked by the caller)."""
        from . import mapping

        return self.track(mapping.foreign(self, domid, frames, writable))

    def map_resource(self, domid: int, type_: int, id_: int, frame: int, count: int, writable: bool) -> Any:
        """Map a resource of ``domid`` (``IOCTL_PRIVCMD_MMAP_RESOURCE``)."""
        from . import mapping

        return self.track(mapping.resource(self, domid, type_, id_, frame, count, writable))

    def restrict(self, domid: int) -> None:
        """``IOCTL_PRIVCMD_RESTRICT``; from then on every hypercall is refused here, before the ioctl."""
        from . import mapping

        mapping.restrict(self, domid)
        self.restricted = domid

        def refuse(fd: int, request: int, arg: Any, mutate: bool = True) -> int:
            raise RestrictedError(_errno.EPERM, f"the handle is restricted to domain {domid}: hypercalls are"
                                  " refused (only mappings of that domain are allowed)", domid=domid)

        self.ioctl = refuse

    def map_grants(self, domid: int, refs: Tuple[int, ...], writable: bool) -> Any:
        """Map grant references of ``domid`` through ``/dev/xen/gntdev`` (opened on first use)."""
        if self.closed:
            raise XenError(_errno.EBADF, "the handle is closed")
        with self._lock:
            dev = self._gntdev
            if dev is None:
                from .gntdev import GrantDevice

                dev = self._gntdev = GrantDevice(arch=self.arch)
        return self.track(dev.map(domid, refs, writable))

    def open_evtchn(self) -> Any:
        """A new ``/dev/xen/evtchn`` device (for :class:`xenprivcmd.EventChannels`)."""
        from .evtchn import EvtchnDevice

        return EvtchnDevice(arch=self.arch)

    def close(self) -> None:
        if self.closed:
            return
        super().close()
        if self._gntdev is not None:
            self._gntdev.close()
        for fd in (self.fd, self._buf_fd):
            if fd is not None:
                os.close(fd)
        self.fd = -1

    def describe(self) -> str:
        return f"{self.path} (buffers: {self.buffer_kind})"

    def xenstore(self) -> Any:
        """This dom0's xenstore: xenstored's socket, else the xenbus device
        (:meth:`xenprivcmd.store.Xenstore.open`)."""
        from ..store.client import Xenstore

        return Xenstore.open()


_pack_req = _HYPERCALL_REQ.pack_into
_ioctl = fcntl.ioctl


def open_privcmd(paths: Tuple[str, ...] = PRIVCMD_PATHS, hypercall_buf: Optional[str] = HYPERCALL_BUF_PATH) -> PrivcmdTransport:
    """Open the privcmd device (``/dev/xen/privcmd``, else ``/proc/xen/privcmd``).

    Raises :class:`NotDom0Error` when no device exists, and
    :class:`PrivcmdPermissionError` when it exists but may not be opened.
    """
    denied: Optional[Tuple[str, OSError]] = None
    for path in paths:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        except PermissionError as exc:
            if denied is None:
                denied = (path, exc)
            continue
        except OSError as exc:
            raise XenNotAvailable(exc.errno or _errno.EIO, f"cannot open {path}: {exc.strerror}") from None
        buf_fd: Optional[int] = None
        if hypercall_buf:
            try:
                buf_fd = os.open(hypercall_buf, os.O_RDWR | os.O_CLOEXEC)
            except OSError:
                buf_fd = None  # older kernels: locked anonymous memory instead
        return PrivcmdTransport(fd, path, buf_fd)
    if denied is not None:
        denied_path, denied_exc = denied
        raise PrivcmdPermissionError(
            denied_exc.errno or _errno.EACCES, f"permission denied opening {denied_path}: run as root"
        )
    raise NotDom0Error(
        _errno.ENOENT,
        "no privcmd device (" + ", ".join(paths) + "): this is not a Xen dom0"
        " (or the xen-privcmd module is not loaded)",
    )
