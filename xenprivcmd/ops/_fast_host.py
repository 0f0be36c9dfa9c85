"""Precomputed op plans of the host sysctls: physinfo, pcpu_info, read_console.

Built by :func:`xenprivcmd.ops._fast.plans` with the same builder and templates
(see that module's doc); the general path is :mod:`xenprivcmd.ops.host`.
"""

from __future__ import annotations

import _operator as operator
import ctypes
import struct

from .._layout import _code, fields, record_reader
from ..errors import DecodeError
from ..types import PcpuInfo, PhysInfo
from . import host as _host
from ._fast import _LANE, _Builder, _lane
from ._wire import PAYLOAD_OFFSET

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Tuple

    from .._privcmd import PrivcmdTransport
    from ._wire import Wire

    _Sysctl = Callable[..., Tuple[int, struct.Struct]]

_u32 = struct.Struct("<I").unpack_from


def plans(b: _Builder, w: Wire, t: PrivcmdTransport, handle: Any, sysctl: _Sysctl) -> Dict[str, Callable[..., Any]]:
    out = _physinfo_plan(b, w, t, sysctl)
    out.update(_pcpu_info_plan(b, w, handle, sysctl))
    out.update(_read_console_plan(b, w, handle, sysctl))
    return out


def _inputs(cls: type, names: List[str]) -> List[Tuple[int, str]]:
    """(offset, struct code) of the fields ``names`` of ``cls`` (those it has)."""
    f = fields(cls)
    return [(f[n][0], _code(f[n][1])) for n in names if n in f]


def _physinfo_plan(b: _Builder, w: Wire, t: PrivcmdTransport, sysctl: _Sysctl) -> Dict[str, Callable[..., Any]]:
    cls = w.variant.structs["xen_sysctl_physinfo"]
    st, index, hw_off, hw_n = _host._physinfo_reader(cls)
    names = PhysInfo._fields[:13]
    if any(index.get(n) is None for n in names):
        return {}  # an old release (no nr_cpus, outstanding_pages...): the general decoder
    cmd, req = sysctl("physinfo")
    su = w.sysctl_u
    body = _LANE + b.issue(req, f"{cmd}, {w.sysctl_iv}", "sysctl", "physinfo") + f"""\
    vals = pick(reader(view, {su}))
    if vals[2] == 0 or vals[4] == 0:
        return general(w, t)  # only an odd reply says so: the general decoder's rules
    if not 0 <= vals[3] < MAX_CPUS or vals[2] > vals[3] + 1:
        raise DecodeError(f"physinfo: nr_cpus {{vals[2]}} / max_cpu_id {{vals[3]}} make no sense")
    caps = vals[7]
    virt = caps_cache.get(caps)
    if virt is None:
        virt = caps_cache[caps] = tuple(name for bit, name in PHYSCAP_NAMES if caps >> bit & 1)
    return new(PhysInfo, vals + (hw(view, {su + hw_off}), virt))
"""
    return {"physinfo": b.compile(
        "physinfo", "", body, pick=operator.itemgetter(*(index[n] for n in names)), reader=st.unpack_from,
        general=_host.physinfo, w=w, MAX_CPUS=_host.MAX_CPUS, DecodeError=DecodeError, caps_cache={},
        PHYSCAP_NAMES=_host.PHYSCAP_NAMES, PhysInfo=PhysInfo, hw=struct.Struct(f"<{hw_n}I").unpack_from)}


def _pcpu_info_plan(b: _Builder, w: Wire, handle: Any, sysctl: _Sysctl) -> Dict[str, Callable[..., Any]]:
    """getcpuinfo: the idle time of every pcpu (the exporter's every scrape), records read
    with one ``iter_unpack``; nr_cpus() is the handle's cache, as the general path's."""
    structs = w.variant.structs
    cls, rec = structs.get("xen_sysctl_getcpuinfo"), structs.get("xen_sysctl_cpuinfo")
    if cls is None or rec is None or "XEN_SYSCTL_getcpuinfo" not in w.constants:
        return {}  # the general path says NotSupported
    reader, index = record_reader(rec, ("idletime",))
    if index != [0]:
        return {}
    size = ctypes.sizeof(rec)
    cmd, st = sysctl("getcpuinfo", _inputs(cls, ["max_cpus", "info"]), ctypes.sizeof(cls))
    got_at = w.sysctl_u + fields(cls)["nr_cpus"][0]
    P = PAYLOAD_OFFSET
    body = """\
    n = nr_cpus()
""" + _lane(f"{P} + n * {size}") + b.issue(st, f"{cmd}, {w.sysctl_iv}, n, lane.buf.address + {P}", "sysctl",
                                           "getcpuinfo") + f"""\
    got = u32(view, {got_at})[0]
    if got > n:
        raise DecodeError(f"getcpuinfo: {{got}} cpus returned for {{n}} asked")
    return [new(PcpuInfo, (i, r[0])) for i, r in enumerate(records(view[{P}:{P} + got * {size}]))]
"""
    return {"pcpu_info": b.compile("pcpu_info", "", body, nr_cpus=handle.nr_cpus, u32=_u32, DecodeError=DecodeError,
                                   records=reader.iter_unpack, PcpuInfo=PcpuInfo)}


def _read_console_plan(b: _Builder, w: Wire, handle: Any, sysctl: _Sysctl) -> Dict[str, Callable[..., Any]]:
    """readconsole in CONSOLE_CHUNK pieces; the index and clear rules of ops/host.read_console
    (and the handle's: its incremental index kept on the handle, clear refused when read-only)."""
    cls = w.variant.structs.get("xen_sysctl_readconsole")
    if cls is None or "XEN_SYSCTL_readconsole" not in w.constants:
        return {}
    f = fields(cls)
    has_index = "incremental" in f
    names = ["clear", "incremental", "index", "buffer", "count"] if has_index else ["clear", "buffer", "count"]
    cmd, st = sysctl("readconsole", _inputs(cls, names), ctypes.sizeof(cls))
    su, P, chunk = w.sysctl_u, PAYLOAD_OFFSET, _host.CONSOLE_CHUNK
    ask = "1 if clear else 0, " + ("1 if (asked or out) else 0, idx, " if has_index else "") + f"buffer, {chunk}"
    # no index (before 3.2): one read, whatever its size, as the general path
    done = "        index = None\n        break\n" if not has_index else f"""\
        index = u32(view, {su + f["index"][0]})[0]
        if count < {chunk} or index == idx:
            break
        idx = index
        clear = False
"""
    body = """\
    if clear:
        check_writable("read_console(clear=True)")
    index = h._console_index if incremental else None
    asked = index is not None
    idx = index or 0
    out = bytearray()
""" + _lane(P + chunk) + f"""\
    buffer = lane.buf.address + {P}
    while True:
""" + b.issue(st, f"{cmd}, {w.sysctl_iv}, {ask}", "sysctl", "readconsole", indent="        ") + f"""\
        count = u32(view, {su + f["count"][0]})[0]
        if count > {chunk}:
            raise DecodeError(f"readconsole: {{count}} bytes returned for a {chunk}-byte buffer")
        out += view[{P}:{P} + count]
        if len(out) > {_host.MAX_CONSOLE_BYTES}:
            raise DecodeError("readconsole: more than {_host.MAX_CONSOLE_BYTES} bytes, beyond any console ring")
""" + done + """\
    if incremental:
        h._console_index = index
    return bytes(out).decode("utf-8", "replace")
"""
    return {"read_console": b.compile("read_console", "clear=False, incremental=False", body, h=handle, u32=_u32,
                                      DecodeError=DecodeError, check_writable=handle._check_writable)}
