"""``HYPERVISOR_xen_version``: who the hypervisor is.

The ``XENVER_*`` sub-op numbers (:mod:`xenprivcmd.abi.hypercalls`) and payload
sizes are a stable ABI (unchanged since Xen 3.0; the ``*2`` sub-ops were added
in Xen 4.20 by "xen/version: Introduce non-truncating deterministically-signed
XENVER_* subops"), so the requests name their sub-op by number on every
release: the probe of a ``*2`` sub-op must be issued to a hypervisor whose
tables do not have it.  The tests check these numbers against the generated
constants of every release.
"""

from __future__ import annotations

import errno as _errno
import struct

from ..abi import hypercalls as _hc
from ..abi.hypercalls import XENVER_NAMES
from ..errors import DecodeError, HypercallError
from ..types import VersionInfo
from .engine import Request, halves, op

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Optional, Tuple

    from .engine import Engine

#: sub-op number -> its macro name (``XENVER_compile_info``), as errors name it.
SUBOP_NAMES = {n: "XENVER_" + name for n, name in XENVER_NAMES.items()}

# Fixed-size payloads of the original sub-ops (version.h).
XEN_EXTRAVERSION_LEN = 16
XEN_COMPILE_INFO = (("compiler", 64), ("compile_by", 16), ("compile_domain", 32), ("compile_date", 32))
XEN_CAPABILITIES_INFO_LEN = 1024
XEN_CHANGESET_INFO_LEN = 64
XEN_COMMANDLINE_LEN = 1024
#: The size of XENVER_compile_info's reply.
COMPILE_INFO_SIZE = sum(n for _, n in XEN_COMPILE_INFO)

# Largest reply we accept from a *2 sub-op (Xen's are < 4 KiB; a size beyond
# this is a garbled reply, not a reason to map megabytes).
VARBUF_MAX = 1 << 20

# errnos that mean "not here" rather than a failure
#: the probe of the *2 sub-ops: the hypervisor has none of them
NO_VARBUF = (_errno.ENOSYS, _errno.EOPNOTSUPP, _errno.EINVAL)
#: XENVER_commandline: XSM may hide it; Xen < 3.2 has no such sub-op
NO_COMMANDLINE = (_errno.EPERM, _errno.ENOSYS)
#: XENVER_build_id: before Xen 4.7, or built without a build id
NO_BUILD_ID = (_errno.ENOSYS, _errno.ENODATA, _errno.EPERM, _errno.EINVAL)


def _req(subop: int, struct_name: Optional[str] = None, send: Tuple[str, ...] = (),
         read: Tuple[str, ...] = ()) -> Request:
    return Request("xen_version", SUBOP_NAMES[subop], arg=subop, struct=struct_name, send=send, read=read,
                   reads=True, returns=True)


# -- the requests: the sub-op number as the first argument, the payload (if any) as the second ---

VERSION = _req(_hc.XENVER_version)
PAGESIZE = _req(_hc.XENVER_pagesize)
#: a fixed-size reply, cleared first (a short reply is never read as an earlier call's text)
EXTRAVERSION = _req(_hc.XENVER_extraversion, "xen_extraversion_t")
COMPILE_INFO = _req(_hc.XENVER_compile_info, "xen_compile_info")
CAPABILITIES = _req(_hc.XENVER_capabilities, "xen_capabilities_info_t")
CHANGESET = _req(_hc.XENVER_changeset, "xen_changeset_info_t")
COMMANDLINE = _req(_hc.XENVER_commandline, "xen_commandline_t")
PLATFORM_PARAMETERS = _req(_hc.XENVER_platform_parameters, "xen_platform_parameters", read=("virt_start",))
GET_FEATURES = _req(_hc.XENVER_get_features, "xen_feature_info", send=("submap_idx",), read=("submap",))
#: a ``xen_varbuf`` sub-op (Xen 4.20+, and build_id since 4.7): the size asked with no buffer ...
SIZES = {n: _req(n) for n in (_hc.XENVER_extraversion2, _hc.XENVER_capabilities2, _hc.XENVER_changeset2,
                             _hc.XENVER_commandline2, _hc.XENVER_build_id)}
# ... then fetched into a buffer of that size (XenVersion.varbuf: the varbuf's ``len``, its bytes after it)
_u32 = struct.Struct("=I")
#: The sizes of the fixed-size replies (version.h's, the same in every release).
FIXED_SIZES = {EXTRAVERSION: XEN_EXTRAVERSION_LEN, COMPILE_INFO: COMPILE_INFO_SIZE,
               CAPABILITIES: XEN_CAPABILITIES_INFO_LEN, CHANGESET: XEN_CHANGESET_INFO_LEN,
               COMMANDLINE: XEN_COMMANDLINE_LEN}


def split_version(v: int) -> Tuple[int, int]:
    """(major, minor) of what ``XENVER_version`` returned."""
    if v < 0 or v > 0xFFFFFFFF:
        raise DecodeError(f"XENVER_version returned {v}, not a 32-bit version")
    return v >> 16, v & 0xFFFF


def cstring(view: memoryview, offset: int, size: int, what: str) -> str:
    """A NUL-terminated string from a fixed-size char array of the reply."""
    raw = bytes(view[offset:offset + size])
    end = raw.find(b"\0")
    if end < 0:
        raise DecodeError(f"{what}: string not NUL-terminated within its {size}-byte field")
    return raw[:end].decode("utf-8", "replace")


def too_big(subop: int, need: int) -> DecodeError:
    """The error for a ``xen_varbuf`` size beyond :data:`VARBUF_MAX`."""
    return DecodeError(f"{SUBOP_NAMES[subop]}: size {need} is beyond any plausible reply")


def overrun(subop: int, got: int, need: int) -> DecodeError:
    """The error for a ``xen_varbuf`` reply longer than the buffer it was given."""
    return DecodeError(f"{SUBOP_NAMES[subop]}: {got} bytes written into a {need}-byte buffer")


def _text(data: bytes) -> str:
    # *2 replies carry no terminator; tolerate (and drop) a stray trailing NUL.
    return data.rstrip(b"\0").decode("utf-8", "replace")


def compile_fields(view: memoryview) -> Tuple[str, str, str, str]:
    """The four strings of a XENVER_compile_info reply at the start of ``view``."""
    out = []
    offset = 0
    for name, n in XEN_COMPILE_INFO:
        out.append(cstring(view, offset, n, f"compile_info.{name}"))
        offset += n
    return out[0], out[1], out[2], out[3]


class XenVersion:
    """The ``xen_version`` sub-ops on one engine (the order :func:`version` asks them in is
    what recordings of real dom0s hold)."""

    def __init__(self, e: Engine) -> None:
        self.e = e

    def fixed(self, req: Request) -> memoryview:
        """A fixed-size sub-op: its buffer cleared, issued, the view to read it from."""
        e = self.e
        e(req)
        return e.buffer(FIXED_SIZES[req])[0]

    def string(self, req: Request) -> str:
        return cstring(self.fixed(req), 0, FIXED_SIZES[req], SUBOP_NAMES[req.arg or 0])

    def varbuf(self, subop: int) -> bytes:
        """A ``xen_varbuf`` sub-op: ask for the size, then fetch that much."""
        e = self.e
        need = int(e(SIZES[subop])[0])
        if need > VARBUF_MAX:
            raise too_big(subop, need)
        view, address = e.buffer(_u32.size + need + 1)
        view[_u32.size:_u32.size + need] = bytes(need)
        _u32.pack_into(view, 0, need)
        got = e.hypercall(_hc.HYPERVISOR_xen_version, subop, address, subop=SUBOP_NAMES[subop])
        if got > need:
            raise overrun(subop, got, need)
        return bytes(view[_u32.size:_u32.size + got])

    def has_varbuf_ops(self) -> bool:
        """Whether the hypervisor answers the non-truncating ``*2`` sub-ops."""
        try:
            self.e(SIZES[_hc.XENVER_extraversion2])
        except HypercallError as exc:
            if exc.errno in NO_VARBUF:
                return False
            raise
        return True

    def version(self) -> Tuple[int, int]:
        return split_version(self.e(VERSION)[0])

    def extraversion(self, varbuf: bool) -> str:
        return _text(self.varbuf(_hc.XENVER_extraversion2)) if varbuf else self.string(EXTRAVERSION)

    def capabilities(self, varbuf: bool) -> Tuple[str, ...]:
        return tuple((_text(self.varbuf(_hc.XENVER_capabilities2)) if varbuf else self.string(CAPABILITIES)).split())

    def changeset(self, varbuf: bool) -> str:
        return _text(self.varbuf(_hc.XENVER_changeset2)) if varbuf else self.string(CHANGESET)

    def compile_info(self) -> Tuple[str, str, str, str]:
        return compile_fields(self.fixed(COMPILE_INFO))

    def commandline(self, varbuf: bool) -> Optional[str]:
        try:
            return _text(self.varbuf(_hc.XENVER_commandline2)) if varbuf else self.string(COMMANDLINE)
        except HypercallError as exc:
            if exc.errno in NO_COMMANDLINE:
                return None
            raise

    def build_id(self) -> Optional[str]:
        try:
            return self.varbuf(_hc.XENVER_build_id).hex()
        except HypercallError as exc:
            if exc.errno in NO_BUILD_ID:
                return None
            raise


def boot(t: Any, arch: str = "x86_64") -> XenVersion:
    """The ``xen_version`` sub-ops on a transport whose release is not known yet (ABI
    detection, its cache): their layouts are the same in every release, so the newest
    release's tables lay them out."""
    from .. import abi
    from ..abi.hypercalls import check_domid
    from .engine import Engine, Families, HandleState

    fam = Families(abi.variant(abi.head_release(), arch=arch if arch in abi.arches() else abi.DEFAULT_ARCH))
    return XenVersion(Engine(fam, t, resolve=check_domid, state=HandleState(), handle=None))


@op("xen_version", reads=True)
def _xen_version(e: Engine) -> Callable[[], Tuple[int, int]]:
    """(major, minor) in one hypercall (the runner itself)."""
    return e.runner(VERSION, convert=halves)  # type: ignore[no-any-return]


@op("version", reads=True)
def _version(e: Engine) -> Callable[[], VersionInfo]:
    """Everything ``xen_version`` tells, as a :class:`VersionInfo` (the ``*2`` probe first,
    once per handle)."""
    x = XenVersion(e)

    def version() -> VersionInfo:
        vb = e.state.varbuf_ops
        if vb is None:
            vb = e.state.varbuf_ops = x.has_varbuf_ops()
        major, minor = x.version()
        compiler, compile_by, compile_domain, compile_date = x.compile_info()
        pagesize = e(PAGESIZE)[0]
        extraversion = x.extraversion(vb)
        caps = x.capabilities(vb)
        changeset = x.changeset(vb)
        virt_start = e(PLATFORM_PARAMETERS)[1]
        features = e(GET_FEATURES, 0)[1]
        return VersionInfo(
            major=major, minor=minor, extraversion=extraversion, compiler=compiler, compile_by=compile_by,
            compile_domain=compile_domain, compile_date=compile_date, capabilities=caps,
            changeset=changeset, virt_start=int(virt_start), features=int(features), pagesize=int(pagesize),
            commandline=x.commandline(vb), build_id=x.build_id(), varbuf_ops=vb,
        )

    return version
