"""The xenstore wire protocol (Xen's public header ``io/xs_wire.h``): message
types, the 16-byte header, the payload limit, and the errno names xenstored
answers with.  Shared by the client (:mod:`.client`), its connections
(:mod:`.connection`) and the simulator's xenstore."""

from __future__ import annotations

import errno as _errno
import struct

from ..errors import XenstoreError, XenstoreNoEntry

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional

# enum xsd_sockmsg_type (io/xs_wire.h); XS_CONTROL was called XS_DEBUG before Xen 4.9.
XS_CONTROL = 0
XS_DIRECTORY = 1
XS_READ = 2
XS_GET_PERMS = 3
XS_WATCH = 4
XS_UNWATCH = 5
XS_TRANSACTION_START = 6
XS_TRANSACTION_END = 7
XS_INTRODUCE = 8
XS_RELEASE = 9
XS_GET_DOMAIN_PATH = 10
XS_WRITE = 11
XS_MKDIR = 12
XS_RM = 13
XS_SET_PERMS = 14
XS_WATCH_EVENT = 15
XS_ERROR = 16
XS_IS_DOMAIN_INTRODUCED = 17

_TYPE_NAMES = {
    XS_CONTROL: "CONTROL",
    XS_DIRECTORY: "DIRECTORY",
    XS_READ: "READ",
    XS_GET_PERMS: "GET_PERMS",
    XS_WATCH: "WATCH",
    XS_UNWATCH: "UNWATCH",
    XS_TRANSACTION_START: "TRANSACTION_START",
    XS_TRANSACTION_END: "TRANSACTION_END",
    XS_INTRODUCE: "INTRODUCE",
    XS_RELEASE: "RELEASE",
    XS_GET_DOMAIN_PATH: "GET_DOMAIN_PATH",
    XS_WRITE: "WRITE",
    XS_MKDIR: "MKDIR",
    XS_RM: "RM",
    XS_SET_PERMS: "SET_PERMS",
    XS_WATCH_EVENT: "WATCH_EVENT",
    XS_ERROR: "ERROR",
    XS_IS_DOMAIN_INTRODUCED: "IS_DOMAIN_INTRODUCED",
}

XENSTORE_PAYLOAD_MAX = 4096

# struct xsd_sockmsg: four uint32_t in the byte order of the host (xenstored
# and the kernel relay use native order; every Xen architecture is little-endian).
HEADER = struct.Struct("=4I")

DEFAULT_TIMEOUT = 5.0


# The errno names xenstored sends (xsd_errors[] in io/xs_wire.h); any other
# E* name the errno module knows is accepted too, anything else becomes EIO.
_XSD_ERRORS = (
    "EINVAL",
    "EACCES",
    "EEXIST",
    "EISDIR",
    "ENOENT",
    "ENOMEM",
    "ENOSPC",
    "EIO",
    "ENOTEMPTY",
    "ENOSYS",
    "EROFS",
    "EBUSY",
    "EAGAIN",
    "EISCONN",
    "E2BIG",
)


def errno_from_name(name: str) -> int:
    """The errno number of an errno name from xenstored (``"ENOENT"`` -> 2); EIO if unknown."""
    if name in _XSD_ERRORS or (name.startswith("E") and name.isalnum() and name.isupper()):
        value = getattr(_errno, name, None)
        if isinstance(value, int):
            return value
    return _errno.EIO


def error(err: int, message: str, *, path: Optional[str], op: Optional[str]) -> XenstoreError:
    cls = XenstoreNoEntry if err == _errno.ENOENT else XenstoreError
    return cls(err, message, path=path, op=op)
