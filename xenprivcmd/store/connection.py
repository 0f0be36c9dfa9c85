"""Connections to xenstored: its unix socket, or the kernel's xenbus device.

Both speak the same framing (:mod:`.wire`); :func:`connect_path` opens one
path, :func:`connect_auto` tries each socket, then each device, as
libxenstore does (see :mod:`.client`).
"""

from __future__ import annotations

import _socket as socket  # the C module: socket.py would load enum, selectors, collections
import errno as _errno
import os
import select
import stat

from ..errors import XenstoreUnavailable
from .wire import DEFAULT_TIMEOUT

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import List, Optional, Protocol, Tuple
else:
    Protocol = object

__all__ = ["Connection", "SocketConnection", "DeviceConnection", "connect_path", "connect_auto", "SOCKET_PATHS",
           "DEVICE_PATHS", "ENV_PATH"]

#: Where xenstored's socket may be, in the order tried.
SOCKET_PATHS: Tuple[str, ...] = ("/run/xenstored/socket", "/var/run/xenstored/socket")
#: The kernel's xenbus device (``/proc/xen/xenbus`` on old kernels).
DEVICE_PATHS: Tuple[str, ...] = ("/dev/xen/xenbus", "/proc/xen/xenbus")
#: libxenstore's variable naming the one path to use (socket or device), no fallback.
ENV_PATH = "XENSTORED_PATH"

UNAVAILABLE_MESSAGE = "no xenstore: xenstored is not running and /dev/xen/xenbus is absent"

# --------------------------------------------------------------------------
# Connections


class Connection(Protocol):
    """A byte stream to xenstored: the one interface both connections implement."""

    kind: str
    path: str

    def send(self, data: bytes, timeout: Optional[float]) -> None:
        """Write all of ``data``."""

    def recv(self, size: int, timeout: Optional[float]) -> bytes:
        """Read at most ``size`` (> 0) bytes; ``b""`` at end of stream; ``socket.timeout`` on timeout."""

    def readable(self, timeout: Optional[float]) -> bool:
        """Whether bytes (or the end of the stream) wait to be read, waiting up to ``timeout`` seconds."""

    def close(self) -> None:
        """Release the connection; idempotent."""


class SocketConnection:
    """The unix socket of xenstored."""

    kind = "socket"

    def __init__(self, sock: socket.socket, path: str = "") -> None:
        self.sock = sock
        self.path = path

    @classmethod
    def connect(cls, path: str, timeout: Optional[float] = DEFAULT_TIMEOUT) -> SocketConnection:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(path)
        except BaseException:
            sock.close()
            raise
        return cls(sock, path)

    def send(self, data: bytes, timeout: Optional[float]) -> None:
        self.sock.settimeout(timeout)
        self.sock.sendall(data)

    def recv(self, size: int, timeout: Optional[float]) -> bytes:
        self.sock.settimeout(timeout)
        return self.sock.recv(size)

    def readable(self, timeout: Optional[float]) -> bool:
        return _poll(self.sock.fileno(), timeout)

    def close(self) -> None:
        self.sock.close()


class DeviceConnection:
    """The xenbus device of the kernel (``/dev/xen/xenbus``), or any read/write fd with the same framing.

    The kernel wants each request in whole (it buffers partial writes until a
    message is complete) and queues replies for ``read``.  Reads are preceded
    by ``poll`` so that a missing reply times out instead of blocking.
    """

    kind = "device"

    def __init__(self, fd: int, path: str = "") -> None:
        self.fd: Optional[int] = fd
        self.path = path

    @classmethod
    def open(cls, path: str) -> DeviceConnection:
        return cls(os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOCTTY), path)

    def _fileno(self) -> int:
        if self.fd is None:
            raise OSError(_errno.EBADF, "xenbus device is closed")
        return self.fd

    def _wait(self, event: int, timeout: Optional[float]) -> None:
        poller = select.poll()
        poller.register(self._fileno(), event)
        ms = None if timeout is None else max(0, int(timeout * 1000))
        if not poller.poll(ms):
            raise socket.timeout("timed out")

    def readable(self, timeout: Optional[float]) -> bool:
        return _poll(self._fileno(), timeout)

    def send(self, data: bytes, timeout: Optional[float]) -> None:
        view = memoryview(data)
        while view:
            self._wait(select.POLLOUT, timeout)
            n = os.write(self._fileno(), view)
            view = view[n:]

    def recv(self, size: int, timeout: Optional[float]) -> bytes:
        self._wait(select.POLLIN, timeout)
        try:
            return os.read(self._fileno(), size)
        except OSError as e:
            if e.errno == _errno.EIO:  # a pty whose other side is gone; the kernel device never says EIO
                return b""
            raise

    def close(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)


def _poll(fd: int, timeout: Optional[float]) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    ms = None if timeout is None else max(0, int(timeout * 1000 + 0.999))
    return bool(poller.poll(ms))


def _is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def connect_path(path: str, timeout: Optional[float]) -> Connection:
    """Open ``path``: a unix socket is a xenstored socket, anything else is used as the xenbus device."""
    if _is_socket(path):
        return SocketConnection.connect(path, timeout)
    return DeviceConnection.open(path)


def connect_auto(timeout: Optional[float]) -> Connection:
    """Try each socket, then each device; raise :class:`XenstoreUnavailable` if none answers."""
    failures: List[Tuple[str, OSError]] = []
    for path in SOCKET_PATHS:
        if not _is_socket(path):
            continue
        try:
            return SocketConnection.connect(path, timeout)
        except OSError as e:  # ECONNREFUSED: a socket file left by a dead xenstored
            failures.append((path, e))
    for path in DEVICE_PATHS:
        if not os.path.exists(path):
            continue
        try:
            return DeviceConnection.open(path)
        except OSError as e:
            failures.append((path, e))
    denied = [(p, e) for p, e in failures if isinstance(e, PermissionError)]
    if denied:
        path = denied[0][0]
        raise XenstoreUnavailable(_errno.EACCES, f"no xenstore: permission denied on {path} (run as root)", path=path)
    raise XenstoreUnavailable(_errno.ENOENT, UNAVAILABLE_MESSAGE)
