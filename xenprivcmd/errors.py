"""The exceptions xenprivcmd raises.

Two families, kept apart on purpose:

* :class:`XenError` and its subclasses are ``OSError``\\ s.  They keep ``errno``
  and say which hypercall, sub-op and domain failed.  Where a builtin exists for
  the errno, the class inherits it too, so both ``except ProcessLookupError``
  and ``except xenprivcmd.NoSuchDomain`` work.
* :class:`DecodeError` means the reply made no sense (a count beyond the
  buffer, an unterminated string, ...).  It is a ``ValueError``, never an
  ``OSError``: the hypervisor did not refuse anything, we refused its answer.

:func:`from_errno` is the one place an errno becomes an exception.
"""

from __future__ import annotations

import errno as _errno
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional

__all__ = [
    "XenprivcmdError",
    "XenError",
    "XenNotAvailable",
    "NotDom0Error",
    "PrivcmdPermissionError",
    "HypercallError",
    "InterfaceVersionMismatch",
    "NoSuchDomain",
    "HypervisorPermissionError",
    "NotSupported",
    "TryAgain",
    "Interrupted",
    "ReadOnlyError",
    "DecodeError",
    "AmbiguousDomain",
    "GuestTimeout",
    "ConfigError",
    "ImageError",
    "MonitorError",
    "MappingError",
    "RestrictedError",
    "from_errno",
]


class XenprivcmdError(Exception):
    """Base of every exception raised by xenprivcmd."""


class XenError(XenprivcmdError, OSError):
    """An operating-system or hypervisor error.

    ``errno`` is the errno; ``hypercall`` (e.g. ``"domctl"``), ``subop``
    (e.g. ``"getdomaininfo"``) and ``domid`` say what failed, where known.
    """

    def __init__(
        self,
        errno: int,
        message: str,
        *,
        hypercall: Optional[str] = None,
        subop: Optional[str] = None,
        domid: Optional[int] = None,
    ) -> None:
        super().__init__(errno, message)
        self.hypercall = hypercall
        self.subop = subop
        self.domid = domid
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (_rebuild, (type(self), self.errno, self.message, self.hypercall, self.subop, self.domid))


def _rebuild(cls, errno, message, hypercall, subop, domid):  # type: ignore[no-untyped-def]
    return cls(errno, message, hypercall=hypercall, subop=subop, domid=domid)


class XenNotAvailable(XenError):
    """Xen cannot be reached from here (raised when a handle is opened)."""


class NotDom0Error(XenNotAvailable, FileNotFoundError):
    """There is no privcmd device: this is not a Xen dom0."""


class PrivcmdPermissionError(XenNotAvailable, PermissionError):
    """The privcmd device exists but may not be opened: run as root."""


class HypercallError(XenError):
    """The hypervisor (or the privcmd driver) refused a hypercall."""


class InterfaceVersionMismatch(HypercallError):
    """EACCES from domctl/sysctl: the interface version we sent is not the hypervisor's."""


class NoSuchDomain(HypercallError, ProcessLookupError):
    """ESRCH: the domain does not exist."""


class HypervisorPermissionError(HypercallError, PermissionError):
    """EPERM: the hypervisor denies this caller the operation."""


class NotSupported(HypercallError):
    """ENOSYS / EOPNOTSUPP: this hypervisor does not have the operation."""


class Interrupted(HypercallError, InterruptedError):
    """EINTR: interrupted by a signal before the hypervisor acted (nothing was applied)."""


class TryAgain(HypercallError, BlockingIOError):
    """EAGAIN / EBUSY: the hypervisor asks to retry later."""


class ReadOnlyError(XenError, PermissionError):
    """A state-changing operation on a handle opened read-only (nothing was issued)."""


class DecodeError(XenprivcmdError, ValueError):
    """A reply from the hypervisor is malformed; nothing in it was trusted."""


class AmbiguousDomain(XenprivcmdError, ValueError):
    """A domain name matches more than one domain; ``domids`` lists them (name them by id)."""

    def __init__(self, message: str, domids: "tuple[int, ...]" = ()) -> None:
        super().__init__(message)
        self.domids = tuple(domids)

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (str(self), self.domids))


class GuestTimeout(XenprivcmdError, TimeoutError):
    """A guest did not do what the toolstack asked through xenstore in time
    (no PV drivers acknowledged ``control/shutdown``, or it did not shut down)."""

    def __init__(self, message: str, domid: Optional[int] = None) -> None:
        super().__init__(message)
        self.domid = domid

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (str(self), self.domid))


class ConfigError(XenprivcmdError, ValueError):
    """A domain configuration is refused: a syntax error, a key that is not supported, a
    bad value, or values that contradict each other.

    ``key`` names the setting (``None`` for a syntax error), ``line`` its line in the
    config text (``None`` for a config built in Python), ``source`` the file it came
    from (``None`` when unknown).  ``str()`` starts with ``source:line:`` where known.
    """

    def __init__(self, message: str, *, key: Optional[str] = None, line: Optional[int] = None,
                 source: Optional[str] = None) -> None:
        if source and line is not None:
            prefix = f"{source}:{line}: "
        elif source:
            prefix = f"{source}: "
        elif line is not None:
            prefix = f"line {line}: "
        else:
            prefix = ""
        super().__init__(prefix + message)
        self.key = key
        self.line = line
        self.source = source
        self.message = message

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (_rebuild_config, (type(self), self.message, self.key, self.line, self.source))


def _rebuild_config(cls, message, key, line, source):  # type: ignore[no-untyped-def]
    return cls(message, key=key, line=line, source=source)


class MonitorError(XenprivcmdError, RuntimeError):
    """A guest's on-shutdown monitor (:mod:`xenprivcmd.build.monitor`) could not be started
    (its log says why)."""


class ImageError(XenprivcmdError, ValueError):
    """A kernel (or initrd) image cannot be used: not a kernel this builder knows, a
    compression it cannot undo, headers that contradict themselves, or a layout that does
    not fit the guest.  ``path`` names the file where known."""

    def __init__(self, message: str, path: Optional[str] = None) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.message = message
        self.path = path

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.message, self.path))


class MappingError(HypercallError):
    """Guest frames (or grant references) that could not be mapped; nothing stays mapped.

    ``failed`` maps each frame (``map_foreign``) or grant reference (``map_grants``) that
    failed to its errno, in the order given; ``errno`` is the first one's.  Frames a
    hypervisor reports paged out (ENOENT) were retried first, as libxenforeignmemory does.
    """

    def __init__(self, errno: int, message: str, *, failed: "Optional[dict[int, int]]" = None,
                 hypercall: Optional[str] = None, subop: Optional[str] = None, domid: Optional[int] = None) -> None:
        super().__init__(errno, message, hypercall=hypercall, subop=subop, domid=domid)
        self.failed = dict(failed or {})

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (_rebuild_mapping_error, (type(self), self.errno, self.message, self.failed, self.hypercall,
                                         self.subop, self.domid))


def _rebuild_mapping_error(cls, errno, message, failed, hypercall, subop, domid):  # type: ignore[no-untyped-def]
    return cls(errno, message, failed=failed, hypercall=hypercall, subop=subop, domid=domid)


class RestrictedError(XenError, PermissionError):
    """An operation on another domain (or a hypercall) through a handle restricted to one
    domain (:meth:`~xenprivcmd.Handle.restrict`); nothing was issued."""


def _describe(hypercall: Optional[str], subop: Optional[str], domid: Optional[int]) -> str:
    what = hypercall or "hypercall"
    if subop:
        what = f"{what} {subop}"
    if domid is not None:
        what = f"{what}(domid={domid})"
    return what


def from_errno(
    err: int,
    *,
    hypercall: Optional[str] = None,
    subop: Optional[str] = None,
    domid: Optional[int] = None,
) -> HypercallError:
    """Build the typed exception for a failed hypercall.

    EACCES means "wrong interface version" only for domctl/sysctl/dom0_op,
    where Xen checks the version before anything else; elsewhere it is a
    permission error.
    """
    name = _errno.errorcode.get(err, str(err))
    what = _describe(hypercall, subop, domid)
    cls: type[HypercallError]
    if err == _errno.ESRCH:
        cls, reason = NoSuchDomain, "no such domain"
    elif err == _errno.EACCES and hypercall in ("domctl", "sysctl", "dom0_op"):
        cls, reason = InterfaceVersionMismatch, "interface version not accepted by the hypervisor"
    elif err in (_errno.EPERM, _errno.EACCES):
        cls, reason = HypervisorPermissionError, "permission denied by the hypervisor"
    elif err in (_errno.ENOSYS, _errno.EOPNOTSUPP):
        cls, reason = NotSupported, "not supported by this hypervisor"
    elif err == _errno.EINTR:
        cls, reason = Interrupted, "interrupted by a signal"
    elif err in (_errno.EAGAIN, _errno.EBUSY):
        cls, reason = TryAgain, "hypervisor busy, try again"
    else:
        cls, reason = HypercallError, os.strerror(err)
    return cls(err, f"{what}: {reason} ({name})", hypercall=hypercall, subop=subop, domid=domid)


# -- remote hosts (xen+ssh://, sim+ssh://: xenprivcmd.remote) ------------------------------------

class RemoteError(XenNotAvailable):
    """A remote hypervisor cannot be reached, or its connection failed.

    ``host`` names the remote (``root@host:port``).  Raised when a remote
    handle is opened, and by an operation whose connection broke.
    """

    host: Optional[str] = None


class HostUnreachable(RemoteError, ConnectionError):
    """The SSH connection could not be made (refused, no route, timed out, unknown host name)."""


class AuthenticationFailed(RemoteError, PermissionError):
    """The SSH server refused every key (and password) offered."""


class HostKeyMismatch(RemoteError):
    """The server's host key is not the one known for it (or none is known and checking is on)."""


class NoRemotePython(RemoteError, FileNotFoundError):
    """No usable ``python3`` (>= 3.9) on the remote."""


class RemoteNotDom0(NotDom0Error, RemoteError):
    """The remote host has no privcmd device: it is not a Xen dom0."""


class RemotePermissionError(PrivcmdPermissionError, RemoteError):
    """The remote user may not open the privcmd device (log in as root)."""


class ConnectionLost(RemoteError, ConnectionError):
    """The connection broke (or timed out) during an operation.

    ``applied`` is ``False`` when the operation changes nothing (a read),
    ``None`` when it may or may not have been applied on the remote: it is
    never retried.  The handle is closed.
    """

    applied: Optional[bool] = None


class ProtocolMismatch(RemoteError):
    """The remote helper speaks another version of the remote protocol, or not at all."""


__all__ += ["RemoteError", "HostUnreachable", "AuthenticationFailed", "HostKeyMismatch", "NoRemotePython",
            "RemoteNotDom0", "RemotePermissionError", "ConnectionLost", "ProtocolMismatch"]


# -- xenstore (xenprivcmd.store) ------------------------------------------------------


class XenstoreError(XenprivcmdError, OSError):
    """xenstore refused a request, or the connection to it failed.

    ``errno`` is the errno, ``path`` (also ``filename``) the node the request
    was about, ``op`` the message type name (``"READ"``, ...), where known.
    """

    def __init__(self, errno: int, message: str, *, path: Optional[str] = None, op: Optional[str] = None) -> None:
        super().__init__(errno, message)
        self.message = message
        self.path = path
        self.op = op
        self.filename = path

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (_rebuild_xenstore_error, (type(self), self.errno, self.message, self.path, self.op))


def _rebuild_xenstore_error(cls, errno, message, path, op):  # type: ignore[no-untyped-def]
    return cls(errno, message, path=path, op=op)


class XenstoreNoEntry(XenstoreError, FileNotFoundError):
    """ENOENT: the node does not exist."""


class XenstoreTimeout(XenstoreError, TimeoutError):
    """No (complete) reply within the timeout; the connection was dropped."""


class XenstoreUnavailable(XenstoreError):
    """Neither the xenstored socket nor the xenbus device can be opened."""


__all__ += ["XenstoreError", "XenstoreNoEntry", "XenstoreTimeout", "XenstoreUnavailable"]
