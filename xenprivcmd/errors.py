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
