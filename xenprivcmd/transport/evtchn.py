"""The event-channel device ``/dev/xen/evtchn`` of a Linux domain.

One of the modules that touch the operating system (``tests/test_layering.py``).
Each bind ioctl makes a local port of this domain, bound to this open file; the
ioctl returns the port.  ``read`` gives the ports that fired since the last read
(4 bytes each; a port is masked once delivered), ``write`` of ports unmasks them;
closing the file unbinds every port bound through it.  :class:`EvtchnDevice` is that
file; :class:`xenprivcmd.EventChannels` is what the library offers over it (and
over the simulator's device, which has the same methods).
"""

from __future__ import annotations

import errno as _errno
import fcntl
import os
import struct

from .. import abi as _abi
from ..errors import NotDom0Error, PrivcmdPermissionError, XenError, XenNotAvailable, from_errno

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterable, List, Optional

__all__ = ["EVTCHN_PATH", "EvtchnDevice", "READ_MAX"]

EVTCHN_PATH = "/dev/xen/evtchn"
#: The most bytes one read asks for (the driver takes at most a page).
READ_MAX = 4096


class EvtchnDevice:
    """An open ``/dev/xen/evtchn`` (non-blocking)."""

    kind = "evtchn"

    def __init__(self, path: str = EVTCHN_PATH, arch: str = "x86_64") -> None:
        try:
            self.fd: Optional[int] = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NONBLOCK)
        except FileNotFoundError:
            raise NotDom0Error(_errno.ENOENT, f"no {path}: not a Xen domain, or the xen-evtchn module is not"
                               " loaded") from None
        except PermissionError as exc:
            raise PrivcmdPermissionError(exc.errno or _errno.EACCES, f"permission denied opening {path}: run as"
                                         " root") from None
        except OSError as exc:
            raise XenNotAvailable(exc.errno or _errno.EIO, f"cannot open {path}: {exc.strerror}") from None
        self.path = path
        self._uapi = _abi.linux_uapi(arch)

    def fileno(self) -> int:
        if self.fd is None:
            raise ValueError("the event channels are closed")
        return self.fd

    def _ioctl(self, name: str, subop: str, domid: Optional[int], **fields: int) -> int:
        u = self._uapi
        arg = u.structs["ioctl_evtchn_" + name](**fields)
        request = u.constants["IOCTL_EVTCHN_" + name.upper()]
        while True:
            try:
                return int(fcntl.ioctl(self.fileno(), request, arg, True))
            except InterruptedError:
                continue
            except OSError as exc:
                raise from_errno(exc.errno or _errno.EIO, hypercall="event_channel_op", subop=subop,
                                 domid=domid) from None

    def bind_virq(self, virq: int) -> int:
        return self._ioctl("bind_virq", "bind_virq", None, virq=virq)

    def bind_interdomain(self, domid: int, port: int) -> int:
        return self._ioctl("bind_interdomain", "bind_interdomain", domid, remote_domain=domid, remote_port=port)

    def bind_unbound(self, domid: int) -> int:
        return self._ioctl("bind_unbound_port", "alloc_unbound", domid, remote_domain=domid)

    def notify(self, port: int) -> None:
        self._ioctl("notify", "send", None, port=port)

    def unbind(self, port: int) -> None:
        self._ioctl("unbind", "close", None, port=port)

    def read_pending(self) -> List[int]:
        """The ports delivered since the last read (each now masked); [] when none."""
        try:
            data = os.read(self.fileno(), READ_MAX)
        except BlockingIOError:
            return []
        except OSError as exc:
            raise XenError(exc.errno or _errno.EIO, f"read of {self.path}: {exc.strerror}") from None
        n = len(data) // 4
        return list(struct.unpack(f"={n}I", data[: 4 * n]))

    def unmask(self, ports: Iterable[int]) -> None:
        data = b"".join(struct.pack("=I", p) for p in ports)
        if data:
            try:
                os.write(self.fileno(), data)
            except OSError as exc:
                raise XenError(exc.errno or _errno.EIO, f"write of {self.path}: {exc.strerror}") from None

    def close(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)
