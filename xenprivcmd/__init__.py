"""xenprivcmd: talk to the Xen hypervisor from a Linux dom0 through privcmd.

Pure Python (ctypes + stdlib): no compiler, no libxenctrl, no Xen headers at
run time.  The running hypervisor's ABI is detected and the matching
domctl/sysctl layouts, generated from Xen's public headers, are used.

    import xenprivcmd
    with xenprivcmd.open() as xen:
        print(xen.version().release)
"""

from __future__ import annotations

from typing import Optional

from .errors import (
    DecodeError,
    HypercallError,
    HypervisorPermissionError,
    InterfaceVersionMismatch,
    Interrupted,
    NoSuchDomain,
    NotDom0Error,
    NotSupported,
    PrivcmdPermissionError,
    ReadOnlyError,
    TryAgain,
    XenError,
    XenNotAvailable,
    XenprivcmdError,
)
from .handle import Handle
from .types import VersionInfo

__version__ = "0.1.0"

__all__ = [
    "open",
    "Handle",
    "VersionInfo",
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
]

LOCAL_URIS = ("", "privcmd", "privcmd:", "privcmd:///", "xen:", "xen:///", "xen:///system")


def open(uri: Optional[str] = None, abi: Optional[str] = None, read_only: bool = False) -> Handle:  # noqa: A001
    """Open a connection to a hypervisor.

    ``uri`` ``None`` (or ``"xen:///"``, ``"privcmd:///"``) is the local privcmd
    device.  Raises :class:`NotDom0Error` when this machine is no Xen dom0,
    :class:`PrivcmdPermissionError` when the device may not be opened (run as
    root), ``ValueError`` for a URI it does not know.  ``abi`` (a release
    such as ``"4.17.0"``) overrides detection; the hypervisor must still
    accept its interface versions.  ``read_only=True`` gives a handle that
    refuses every state-changing operation with :class:`ReadOnlyError` before
    any hypercall (see :meth:`Handle.make_read_only`).
    """
    handle = _open(uri, abi)
    if read_only:
        handle.make_read_only()
    return handle


def _open(uri: Optional[str], abi: Optional[str]) -> Handle:
    from ._privcmd import open_privcmd

    name = "xen:///" if uri is None else uri
    if uri is None or uri in LOCAL_URIS:
        return Handle(open_privcmd(), name, abi=abi, arch=_machine_arch())
    if not isinstance(uri, str):
        raise TypeError(f"uri must be a str, not {type(uri).__name__}")
    scheme = uri.split(":", 1)[0]
    if scheme in _SCHEMES:
        module, func = _SCHEMES[scheme]
        import importlib

        opener = getattr(importlib.import_module(module, __name__), func)
        return opener(uri, abi=abi)  # type: ignore[no-any-return]
    raise ValueError(f"unknown hypervisor URI {uri!r} (known: xen:///, " + ", ".join(f"{s}://" for s in _SCHEMES) + ")")


# Other transports, imported only when their URI is used:
# scheme -> (module, function(uri, abi=...) -> Handle).
_SCHEMES = {
    "sim": (".sim", "open_uri"),
    "record": (".record", "open_record"),
    "replay": (".record", "open_replay"),
}


def _machine_arch() -> str:
    import platform

    m = platform.machine()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(m, m)
