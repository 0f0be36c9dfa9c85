"""The grant device ``/dev/xen/gntdev``: another domain's grant references mapped here.

One of the modules that touch the operating system (``tests/test_layering.py``).
``IOCTL_GNTDEV_MAP_GRANT_REF`` reserves an index for ``count`` (domid, ref) pairs,
``mmap`` of the device at that index maps them (the hypervisor checks each grant
then: the mmap fails when one is not granted to us), and after ``munmap``
``IOCTL_GNTDEV_UNMAP_GRANT_REF`` gives the index back.  The device does not say
which reference failed: when a mapping of several fails, each is tried alone
(up to :data:`PROBE_LIMIT`) so that the :class:`~xenprivcmd.errors.MappingError`
names the ones that failed.
"""

from __future__ import annotations

import errno as _errno
import os
import struct

from .. import abi as _abi
from ..errors import MappingError, NotDom0Error, PrivcmdPermissionError, XenError, XenNotAvailable, from_errno
from .mapping import XEN_PAGE_SIZE, Mapping, _unmap, describe_failures, map_device

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, Optional, Tuple

__all__ = ["GNTDEV_PATH", "GrantDevice", "PROBE_LIMIT"]

GNTDEV_PATH = "/dev/xen/gntdev"
#: A failed mapping of at most this many references is retried one by one to name the failures.
PROBE_LIMIT = 256

_u32 = struct.Struct("=I")
_u64 = struct.Struct("=Q")


class GrantDevice:
    """An open ``/dev/xen/gntdev`` (closed with the handle that opened it)."""

    def __init__(self, path: str = GNTDEV_PATH, arch: str = "x86_64") -> None:
        try:
            self.fd: Optional[int] = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NotDom0Error(_errno.ENOENT, f"no {path}: not a Xen domain, or the xen-gntdev module is not"
                               " loaded") from None
        except PermissionError as exc:
            raise PrivcmdPermissionError(exc.errno or _errno.EACCES, f"permission denied opening {path}: run as"
                                         " root") from None
        except OSError as exc:
            raise XenNotAvailable(exc.errno or _errno.EIO, f"cannot open {path}: {exc.strerror}") from None
        self.path = path
        uapi = _abi.linux_uapi(arch)
        self._map_req = uapi.constants["IOCTL_GNTDEV_MAP_GRANT_REF"]
        self._unmap_req = uapi.constants["IOCTL_GNTDEV_UNMAP_GRANT_REF"]
        m, g, u = (uapi.structs[n] for n in ("ioctl_gntdev_map_grant_ref", "ioctl_gntdev_grant_ref",
                                              "ioctl_gntdev_unmap_grant_ref"))
        self._count_at, self._index_at, self._refs_at = m.count.offset, m.index.offset, m.refs.offset
        self._ref_size, self._domid_at, self._ref_at = _sizeof(g), g.domid.offset, g.ref.offset
        self._unmap_size = _sizeof(u)
        self._u_index_at, self._u_count_at = u.index.offset, u.count.offset

    def _fd(self) -> int:
        if self.fd is None:
            raise XenError(_errno.EBADF, "the handle is closed")
        return self.fd

    def _ioctl(self, request: int, buf: bytearray) -> None:
        import fcntl

        while True:
            try:
                fcntl.ioctl(self._fd(), request, buf, True)
                return
            except InterruptedError:
                continue

    def _reserve(self, domid: int, refs: Tuple[int, ...]) -> int:
        """MAP_GRANT_REF: the index to mmap at."""
        buf = bytearray(max(self._refs_at + len(refs) * self._ref_size, self._refs_at + self._ref_size))
        _u32.pack_into(buf, self._count_at, len(refs))
        for i, ref in enumerate(refs):
            at = self._refs_at + i * self._ref_size
            _u32.pack_into(buf, at + self._domid_at, domid)
            _u32.pack_into(buf, at + self._ref_at, ref)
        try:
            self._ioctl(self._map_req, buf)
        except OSError as exc:
            raise from_errno(exc.errno or _errno.EIO, hypercall="gntdev", subop="map_grant_ref",
                             domid=domid) from None
        return int(_u64.unpack_from(buf, self._index_at)[0])

    def _release(self, index: int, count: int) -> None:
        buf = bytearray(self._unmap_size)
        _u64.pack_into(buf, self._u_index_at, index)
        _u32.pack_into(buf, self._u_count_at, count)
        try:
            self._ioctl(self._unmap_req, buf)
        except (OSError, XenError):  # the device is gone with its fd: nothing left to give back
            pass

    def _try(self, domid: int, refs: Tuple[int, ...], writable: bool) -> Tuple[int, int]:
        """(address, index) of the mapped refs, or OSError with the index given back."""
        index = self._reserve(domid, refs)
        try:
            return map_device(self._fd(), len(refs) * XEN_PAGE_SIZE, writable, index), index
        except BaseException:
            self._release(index, len(refs))
            raise

    def map(self, domid: int, refs: Tuple[int, ...], writable: bool) -> Mapping:
        """Map grant references ``refs`` of ``domid`` (checked by the caller)."""
        n = len(refs)
        try:
            address, index = self._try(domid, refs, writable)
        except OSError as exc:
            if isinstance(exc, XenError):
                raise
            failed = self._probe(domid, refs, writable, exc.errno or _errno.EIO)
            first = next(iter(failed.values()))
            raise MappingError(first, f"map_grants(domid={domid}): "
                               f"{describe_failures(failed, 'of ' + str(n) + ' refs failed')}", failed=failed,
                               hypercall="gntdev", subop="map_grant_ref", domid=domid) from None
        fd = self.fd

        def give_back() -> None:
            if self.fd == fd:
                self._release(index, n)

        return Mapping(address, n * XEN_PAGE_SIZE, domid=domid, frames=refs, kind="grant", writable=writable,
                       on_close=give_back)

    def _probe(self, domid: int, refs: Tuple[int, ...], writable: bool, err: int) -> Dict[int, int]:
        if len(refs) == 1 or len(refs) > PROBE_LIMIT:
            return dict.fromkeys(refs, err)
        failed: Dict[int, int] = {}
        for ref in dict.fromkeys(refs):
            try:
                address, index = self._try(domid, (ref,), writable)
            except OSError as exc:
                failed[ref] = exc.errno or _errno.EIO
                continue
            _unmap(address, XEN_PAGE_SIZE)
            self._release(index, 1)
        return failed or dict.fromkeys(refs, err)  # each alone mapped: the whole was too much at once

    def close(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)


def _sizeof(cls: object) -> int:
    import ctypes

    return ctypes.sizeof(cls)  # type: ignore[arg-type]
