"""``HYPERVISOR_xen_version``: who the hypervisor is.

The ``XENVER_*`` sub-op numbers (:mod:`xenprivcmd.abi.hypercalls`) and payload
sizes are a stable ABI (unchanged since Xen 3.0; the ``*2`` sub-ops were added
in Xen 4.20 by "xen/version: Introduce non-truncating deterministically-signed
XENVER_* subops").  The tests check these numbers against the generated
constants of every release.
"""

from __future__ import annotations

import errno as _errno
import struct

from ..abi.hypercalls import (
    XENVER_NAMES,
    HYPERVISOR_xen_version,
    XENVER_build_id,
    XENVER_capabilities,
    XENVER_capabilities2,
    XENVER_changeset,
    XENVER_changeset2,
    XENVER_commandline,
    XENVER_commandline2,
    XENVER_compile_info,
    XENVER_extraversion,
    XENVER_extraversion2,
    XENVER_get_features,
    XENVER_pagesize,
    XENVER_platform_parameters,
    XENVER_version,
    issue,
)
from ..errors import DecodeError, HypercallError
from ..types import VersionInfo

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional, Tuple

    from ..transport.privcmd import Buffer, Transport

#: sub-op number -> its macro name (``XENVER_compile_info``), as errors name it.
SUBOP_NAMES = {n: "XENVER_" + name for n, name in XENVER_NAMES.items()}

# Fixed-size payloads of the original sub-ops (version.h).
XEN_EXTRAVERSION_LEN = 16
XEN_COMPILE_INFO = (("compiler", 64), ("compile_by", 16), ("compile_domain", 32), ("compile_date", 32))
XEN_CAPABILITIES_INFO_LEN = 1024
XEN_CHANGESET_INFO_LEN = 64
XEN_COMMANDLINE_LEN = 1024

# Largest reply we accept from a *2 sub-op (Xen's are < 4 KiB; a size beyond
# this is a garbled reply, not a reason to map megabytes).
VARBUF_MAX = 1 << 20

_u32 = struct.Struct("=I")
_u64 = struct.Struct("=Q")
_feature_info = struct.Struct("=II")

# errnos that mean "not here" rather than a failure (the same for the precomputed plan, ops/_fast_host.py)
#: the probe of the *2 sub-ops: the hypervisor has none of them
NO_VARBUF = (_errno.ENOSYS, _errno.EOPNOTSUPP, _errno.EINVAL)
#: XENVER_commandline: XSM may hide it; Xen < 3.2 has no such sub-op
NO_COMMANDLINE = (_errno.EPERM, _errno.ENOSYS)
#: XENVER_build_id: before Xen 4.7, or built without a build id
NO_BUILD_ID = (_errno.ENOSYS, _errno.ENODATA, _errno.EPERM, _errno.EINVAL)


def call(t: Transport, subop: int, address: int = 0) -> int:
    """Issue one ``xen_version`` sub-op; typed error on failure."""
    return issue(t, HYPERVISOR_xen_version, subop, address, subop=SUBOP_NAMES.get(subop, str(subop)))


def version(t: Transport) -> Tuple[int, int]:
    """(major, minor) from ``XENVER_version``."""
    return split_version(call(t, XENVER_version))


def split_version(v: int) -> Tuple[int, int]:
    """(major, minor) of what ``XENVER_version`` returned."""
    if v < 0 or v > 0xFFFFFFFF:
        raise DecodeError(f"XENVER_version returned {v}, not a 32-bit version")
    return v >> 16, v & 0xFFFF


def cstring(view: memoryview, offset: int, size: int, what: str) -> str:
    """A NUL-terminated string from a fixed-size char array of the reply."""
    raw = bytes(view[offset : offset + size])
    end = raw.find(b"\0")
    if end < 0:
        raise DecodeError(f"{what}: string not NUL-terminated within its {size}-byte field")
    return raw[:end].decode("utf-8", "replace")


def fixed_string(t: Transport, subop: int, size: int) -> str:
    buf = t.scratch(size)
    buf.clear(size)
    call(t, subop, buf.address)
    return cstring(buf.view, 0, size, SUBOP_NAMES[subop])


def varbuf(t: Transport, subop: int) -> bytes:
    """A ``xen_varbuf`` sub-op: ask for the size, then fetch that much."""
    need = call(t, subop, 0)
    if need > VARBUF_MAX:
        raise too_big(subop, need)
    buf = t.scratch(_u32.size + need + 1)
    buf.clear(_u32.size + need)
    _u32.pack_into(buf.view, 0, need)
    got = call(t, subop, buf.address)
    if got > need:
        raise overrun(subop, got, need)
    return bytes(buf.view[_u32.size : _u32.size + got])


def too_big(subop: int, need: int) -> DecodeError:
    """The error for a ``xen_varbuf`` size beyond :data:`VARBUF_MAX`."""
    return DecodeError(f"{SUBOP_NAMES[subop]}: size {need} is beyond any plausible reply")


def overrun(subop: int, got: int, need: int) -> DecodeError:
    """The error for a ``xen_varbuf`` reply longer than the buffer it was given."""
    return DecodeError(f"{SUBOP_NAMES[subop]}: {got} bytes written into a {need}-byte buffer")


def _text(data: bytes) -> str:
    # *2 replies carry no terminator; tolerate (and drop) a stray trailing NUL.
    return data.rstrip(b"\0").decode("utf-8", "replace")


def has_varbuf_ops(t: Transport) -> bool:
    """Whether the hypervisor answers the non-truncating ``*2`` sub-ops."""
    try:
        call(t, XENVER_extraversion2, 0)
    except HypercallError as exc:
        if exc.errno in NO_VARBUF:
            return False
        raise
    return True


def extraversion(t: Transport, use_varbuf: bool) -> str:
    if use_varbuf:
        return _text(varbuf(t, XENVER_extraversion2))
    return fixed_string(t, XENVER_extraversion, XEN_EXTRAVERSION_LEN)


def capabilities(t: Transport, use_varbuf: bool) -> Tuple[str, ...]:
    if use_varbuf:
        text = _text(varbuf(t, XENVER_capabilities2))
    else:
        text = fixed_string(t, XENVER_capabilities, XEN_CAPABILITIES_INFO_LEN)
    return tuple(text.split())


def changeset(t: Transport, use_varbuf: bool) -> str:
    if use_varbuf:
        return _text(varbuf(t, XENVER_changeset2))
    return fixed_string(t, XENVER_changeset, XEN_CHANGESET_INFO_LEN)


def commandline(t: Transport, use_varbuf: bool) -> Optional[str]:
    try:
        if use_varbuf:
            return _text(varbuf(t, XENVER_commandline2))
        return fixed_string(t, XENVER_commandline, XEN_COMMANDLINE_LEN)
    except HypercallError as exc:
        if exc.errno in NO_COMMANDLINE:
            return None
        raise


#: The size of XENVER_compile_info's reply.
COMPILE_INFO_SIZE = sum(n for _, n in XEN_COMPILE_INFO)


def compile_info(t: Transport) -> Tuple[str, str, str, str]:
    buf = t.scratch(COMPILE_INFO_SIZE)
    buf.clear(COMPILE_INFO_SIZE)
    call(t, XENVER_compile_info, buf.address)
    return compile_fields(buf.view)


def compile_fields(view: memoryview) -> Tuple[str, str, str, str]:
    """The four strings of a XENVER_compile_info reply at the start of ``view``."""
    out = []
    offset = 0
    for name, n in XEN_COMPILE_INFO:
        out.append(cstring(view, offset, n, f"compile_info.{name}"))
        offset += n
    return out[0], out[1], out[2], out[3]


def platform_parameters(t: Transport) -> int:
    buf: Buffer = t.scratch(_u64.size)
    buf.clear(_u64.size)
    call(t, XENVER_platform_parameters, buf.address)
    return int(_u64.unpack_from(buf.view, 0)[0])


def features(t: Transport, index: int = 0) -> int:
    buf = t.scratch(_feature_info.size)
    _feature_info.pack_into(buf.view, 0, index, 0)
    call(t, XENVER_get_features, buf.address)
    return int(_feature_info.unpack_from(buf.view, 0)[1])


def build_id(t: Transport) -> Optional[str]:
    try:
        data = varbuf(t, XENVER_build_id)
    except HypercallError as exc:
        if exc.errno in NO_BUILD_ID:
            return None
        raise
    return data.hex()


def info(t: Transport, use_varbuf: Optional[bool] = None) -> VersionInfo:
    """Everything ``xen_version`` tells, as a :class:`VersionInfo`."""
    major, minor = version(t)
    if use_varbuf is None:
        use_varbuf = has_varbuf_ops(t)
    compiler, compile_by, compile_domain, compile_date = compile_info(t)
    pagesize = call(t, XENVER_pagesize)
    return VersionInfo(
        major=major,
        minor=minor,
        extraversion=extraversion(t, use_varbuf),
        compiler=compiler,
        compile_by=compile_by,
        compile_domain=compile_domain,
        compile_date=compile_date,
        capabilities=capabilities(t, use_varbuf),
        changeset=changeset(t, use_varbuf),
        virt_start=platform_parameters(t),
        features=features(t, 0),
        pagesize=pagesize,
        commandline=commandline(t, use_varbuf),
        build_id=build_id(t),
        varbuf_ops=use_varbuf,
    )
