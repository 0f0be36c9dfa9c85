"""xenprivcmd: talk to the Xen hypervisor from a Linux dom0 through privcmd.

Pure Python (ctypes + stdlib): no compiler, no libxenctrl, no Xen headers at
run time.  The running hypervisor's ABI is detected and the matching
domctl/sysctl layouts, generated from Xen's public headers, are used.

    import xenprivcmd
    with xenprivcmd.open() as xen:
        print(xen.version().release)
"""

# Nothing is imported here: ``import xenprivcmd`` costs little more than
# starting Python (one-shot ``xpsh`` runs, monitoring agents).  The names
# below are loaded on first use (PEP 562 ``__getattr__``).

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional

    from .abi import UnknownABIError
    from .abi.detect import UnknownHypervisorError
    from .build.config import DomainConfig
    from .errors import (
        AmbiguousDomain,
        AuthenticationFailed,
        ConfigError,
        ConnectionLost,
        DecodeError,
        GuestTimeout,
        HostKeyMismatch,
        HostUnreachable,
        HypercallError,
        HypervisorPermissionError,
        ImageError,
        InterfaceVersionMismatch,
        Interrupted,
        MappingError,
        MonitorError,
        NoRemotePython,
        NoSuchDomain,
        NotDom0Error,
        NotSupported,
        PrivcmdPermissionError,
        ProtocolMismatch,
        ReadOnlyError,
        RemoteError,
        RemoteNotDom0,
        RemotePermissionError,
        RestrictedError,
        TryAgain,
        XenError,
        XenNotAvailable,
        XenprivcmdError,
        XenstoreError,
        XenstoreNoEntry,
        XenstoreTimeout,
        XenstoreUnavailable,
    )
    from .evtchn import EventChannels
    from .exporter.webconfig import WebConfigError
    from .handle import Handle
    from .record import RecordingFormatError, ReplayMismatch
    from .store import Xenstore
    from .transport.mapping import Mapping
    from .types import VersionInfo

__version__ = "0.2.0"

__all__ = [
    "open",
    "Handle",
    "VersionInfo",
    "Xenstore",
    "EventChannels",
    "Mapping",
    # every exception the library raises (tests/test_surface.py keeps this complete)
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
    "MappingError",
    "RestrictedError",
    "RemoteError",
    "HostUnreachable",
    "AuthenticationFailed",
    "HostKeyMismatch",
    "NoRemotePython",
    "RemoteNotDom0",
    "RemotePermissionError",
    "ConnectionLost",
    "ProtocolMismatch",
    "XenstoreError",
    "XenstoreNoEntry",
    "XenstoreTimeout",
    "XenstoreUnavailable",
    "UnknownHypervisorError",
    "UnknownABIError",
    "ReplayMismatch",
    "RecordingFormatError",
    "ConfigError",
    "ImageError",
    "MonitorError",
    "DomainConfig",
    "WebConfigError",
]

# name -> the submodule that defines it; every other name of __all__ but open is in .errors
_LAZY = {
    "Handle": ".handle",
    "VersionInfo": ".types",
    "Xenstore": ".store",
    "EventChannels": ".evtchn",
    "Mapping": ".transport.mapping",
    "UnknownHypervisorError": ".abi.detect",
    "UnknownABIError": ".abi",
    "ReplayMismatch": ".record",
    "RecordingFormatError": ".record",
    "DomainConfig": ".build.config",
    "WebConfigError": ".exporter.webconfig",  # the exporter's --web.config.file (no prometheus_client)
}


def __getattr__(name: str) -> object:
    mod = _LAZY.get(name)
    if mod is None and name in __all__ and name != "open":
        mod = ".errors"
    if mod is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_submodule(mod), name)
    globals()[name] = value
    return value


def _submodule(rel: str) -> object:
    """``.name`` -> the imported submodule (``__import__``: importlib's package loads warnings)."""
    import sys

    full = __name__ + rel
    __import__(full)
    return sys.modules[full]


def __dir__() -> "list[str]":
    return sorted(set(globals()) | set(__all__))


LOCAL_URIS = ("", "privcmd", "privcmd:", "privcmd:///", "xen:", "xen:///", "xen:///system")


def open(uri: "Optional[str]" = None, abi: "Optional[str]" = None,  # noqa: A001 - the natural name
         read_only: bool = False, detect: str = "auto") -> "Handle":
    """Open a connection to a hypervisor.

    ``uri`` ``None`` (or ``"xen:///"``, ``"privcmd:///"``) is the local privcmd
    device.  Raises :class:`NotDom0Error` when this machine is no Xen dom0,
    :class:`PrivcmdPermissionError` when the device may not be opened (run as
    root), ``ValueError`` for a URI it does not know.  ``abi`` (a release
    such as ``"4.17.0"``) overrides detection; the hypervisor must still
    accept its interface versions.  ``read_only=True`` gives a handle that
    refuses every state-changing operation with :class:`ReadOnlyError` before
    any hypercall (see :meth:`Handle.make_read_only`).  ``detect``: ``"auto"``
    (the per-boot cache of the detected variant on the local device,
    confirmed by one probe), ``"fresh"`` (detect again, rewrite the cache),
    ``"cache"`` (use the cache on any transport), ``"nocache"``.

    >>> import xenprivcmd
    >>> with xenprivcmd.open("sim:///default?xen=4.17.7") as xen:
    ...     print(xen.version().release, xen.abi.release, xen.abi.domctl_interface_version)
    4.17.7 4.17.7 21
    >>> xenprivcmd.open("vmware:///")
    Traceback (most recent call last):
    ...
    ValueError: unknown hypervisor URI 'vmware:///' (known: xen:///, sim:///default, record:PATH, replay:PATH, xen+ssh:..., sim+ssh:...)
    """
    handle = _open(uri, abi, detect)
    if read_only:
        handle.make_read_only()
    return handle


def _open(uri: "Optional[str]", abi: "Optional[str]", detect: str) -> "Handle":
    from .abi.detect import MODES
    from .handle import Handle
    from .transport.privcmd import open_privcmd

    if detect not in MODES:
        raise ValueError(f"detect must be one of {', '.join(MODES)}, not {detect!r}")

    name = "xen:///" if uri is None else uri
    if uri is None or uri in LOCAL_URIS:
        return Handle(open_privcmd(), name, abi=abi, arch=_machine_arch(), detect=detect)
    if not isinstance(uri, str):
        raise TypeError(f"uri must be a str, not {type(uri).__name__}")
    scheme = uri.split(":", 1)[0]
    if scheme in _SCHEMES:
        module, func = _SCHEMES[scheme]
        opener = getattr(_submodule(module), func)
        h: Handle = opener(uri, abi=abi)
        h.detect_mode = detect
        return h
    known = ", ".join(_SCHEME_FORMS.get(s, f"{s}:...") for s in _SCHEMES)
    raise ValueError(f"unknown hypervisor URI {uri!r} (known: xen:///, {known})")


# Other transports, imported only when their URI is used:
# scheme -> (module, function(uri, abi=...) -> Handle).
_SCHEMES = {
    "sim": (".sim", "open_uri"),
    "record": (".record", "open_record"),
    "replay": (".record", "open_replay"),
    "xen+ssh": (".remote", "open_uri"),
    "sim+ssh": (".remote", "open_uri"),
}


#: How each scheme's URIs are written (for error messages).
_SCHEME_FORMS = {"sim": "sim:///default", "record": "record:PATH", "replay": "replay:PATH"}


def _machine_arch() -> str:
    import os

    m = os.uname().machine
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(m, m)
