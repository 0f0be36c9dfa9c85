"""Precomputed op plans of ``Handle.version()`` and the host sysctls (physinfo,
pcpu_info, read_console), built by :mod:`._fast` on their first call (this
module is loaded then, not by a listing); the general paths are
:mod:`.version` and :mod:`.host`.
"""

from __future__ import annotations

import _operator as operator
import ctypes
import struct

from ..abi import hypercalls as _hc
from ..abi.hypercalls import HYPERCALL_NAMES, HYPERVISOR_xen_version
from ..abi.layout import fields, record_reader
from ..errors import DecodeError, HypercallError
from ..transport.privcmd import PrivcmdTransport, privcmd_hypercall
from ..types import PcpuInfo, PhysInfo, VersionInfo
from . import host as _host
from . import version as _ver
from ._plan import CALL, LANE, LANE_ONLY, Builder, inputs, lane
from .wire import PAYLOAD_OFFSET, Wire

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Tuple

    _Sysctl = Callable[..., Tuple[int, struct.Struct]]

__all__ = ["version_plan", "physinfo_plan", "pcpu_info_plan", "read_console_plan"]

_u32 = struct.Struct("<I").unpack_from


def version_plan(handle: Any, t: PrivcmdTransport) -> Callable[[], VersionInfo]:
    """``Handle.version()``: :func:`ops.version.info <xenprivcmd.ops.version.info>`'s sub-ops in its
    order (the ``*2`` probe first, once per handle, its answer kept in ``handle._varbuf_ops``), each
    on a request of the lane's ``xenvers`` with its argument in place, decoded and failing as there."""
    spec: List[Tuple[int, bool]] = []  # the lane's requests: (sub-op, whether arg 1 is the buffer)
    hc = HYPERCALL_NAMES[HYPERVISOR_xen_version]

    def call(subop: int, at: bool, out: str = "rc", indent: str = "    ") -> str:
        if (subop, at) not in spec:
            spec.append((subop, at))
        return CALL.format(indent=indent, req=f"r{spec.index((subop, at))}", out=out, hypercall=hc,
                            subop=_ver.SUBOP_NAMES[subop], domid=None)

    def reqs(indent: str) -> str:  # the lane's requests as locals (their list is complete once the body is)
        return "".join(indent + line + "\n" for line in (
            "view = lane.view", "reqs = lane.xenvers", "if reqs is None:",
            "    reqs = lane.xenvers = requests(lane.buf.address)", "@REQS@ = reqs"))

    def fixed(subop: int, size: int, out: str, indent: str = "        ") -> str:
        # cleared first, as the general path: a short reply is never read as an earlier call's text
        return f"{indent}view[0:{size}] = ZEROS[:{size}]\n" + call(subop, True, indent=indent) + \
            f"{indent}{out} = cstring(view, 0, {size}, {_ver.SUBOP_NAMES[subop]!r})\n"

    def varbuf(subop: int, out: str, indent: str = "        ") -> str:
        # ask the size, the lane grown to it as the general path's scratch buffer, then fetch
        return call(subop, False, "need", indent) + f"""\
{indent}if need > {_ver.VARBUF_MAX}:
{indent}    raise too_big({subop}, need)
{indent}if need > lane.buf.size - 5:
{indent}    t.scratch(need + 5)
{indent}    lane = t.lane()
{reqs(indent + "    ")}{indent}u32_into(view, 0, need)
{indent}view[4:4 + need] = bytes(need)
""" + call(subop, True, "got", indent) + f"""\
{indent}if got > need:
{indent}    raise overrun({subop}, got, need)
{indent}{out} = bytes(view[4:4 + got])
"""

    def unless(errnos: str, src: str, out: str, value: str = "None", indent: str = "    ") -> str:
        """``src`` (one level in), ``out`` set to ``value`` when it fails with one of ``errnos``."""
        return f"{indent}try:\n" + src + f"""\
{indent}except HypercallError as exc:
{indent}    if exc.errno not in {errnos}:
{indent}        raise
{indent}    {out} = {value}
"""

    body = LANE_ONLY + reqs("    ") + """\
    vb = h._varbuf_ops
    if vb is None:
""" + unless("NO_VARBUF", call(_hc.XENVER_extraversion2, False, indent="            ") + "            vb = True\n",
             "vb", "False", "        ") + "        h._varbuf_ops = vb\n" + call(_hc.XENVER_version, False, "v") + f"""\
    major, minor = split_version(v)
    view[0:{_ver.COMPILE_INFO_SIZE}] = ZEROS[:{_ver.COMPILE_INFO_SIZE}]
""" + call(_hc.XENVER_compile_info, True) + """\
    compiler, compile_by, compile_domain, compile_date = compile_fields(view)
""" + call(_hc.XENVER_pagesize, False, "pagesize") + "    if vb:\n" + varbuf(_hc.XENVER_extraversion2, "extra") + \
        varbuf(_hc.XENVER_capabilities2, "caps") + varbuf(_hc.XENVER_changeset2, "changeset") + """\
        extraversion, caps, changeset = text(extra), text(caps), text(changeset)
    else:
""" + fixed(_hc.XENVER_extraversion, _ver.XEN_EXTRAVERSION_LEN, "extraversion") + \
        fixed(_hc.XENVER_capabilities, _ver.XEN_CAPABILITIES_INFO_LEN, "caps") + \
        fixed(_hc.XENVER_changeset, _ver.XEN_CHANGESET_INFO_LEN, "changeset") + """\
    view[0:8] = ZEROS[:8]
""" + call(_hc.XENVER_platform_parameters, True) + """\
    virt_start = u64(view, 0)[0]
    feature_into(view, 0, 0, 0)
""" + call(_hc.XENVER_get_features, True) + """\
    features = feature(view, 0)[1]
""" + unless("NO_COMMANDLINE", "        if vb:\n" + varbuf(_hc.XENVER_commandline2, "line", "            ")
             + "            line = text(line)\n        else:\n"
             + fixed(_hc.XENVER_commandline, _ver.XEN_COMMANDLINE_LEN, "line", "            "), "line") + \
        unless("NO_BUILD_ID", varbuf(_hc.XENVER_build_id, "build_id") + "        build_id = build_id.hex()\n",
               "build_id") + """\
    return new(VersionInfo, (major, minor, extraversion, compiler, compile_by, compile_domain, compile_date,
                             tuple(caps.split()), changeset, virt_start, features, pagesize, line, build_id, vb))
"""
    body = body.replace("@REQS@", ", ".join(f"r{i}" for i in range(len(spec))) + ",")
    made = tuple(spec)

    def requests(address: int) -> Tuple[privcmd_hypercall, ...]:
        return tuple(privcmd_hypercall(HYPERVISOR_xen_version, (s, address if at else 0, 0, 0, 0)) for s, at in made)

    return Builder(t).compile(
        "version", "", body, h=handle, requests=requests, VersionInfo=VersionInfo, HypercallError=HypercallError,
        ZEROS=memoryview(bytes(max(_ver.XEN_CAPABILITIES_INFO_LEN, _ver.XEN_COMMANDLINE_LEN))),
        NO_VARBUF=_ver.NO_VARBUF, NO_COMMANDLINE=_ver.NO_COMMANDLINE, NO_BUILD_ID=_ver.NO_BUILD_ID, cstring=_ver.cstring,
        text=_ver._text, split_version=_ver.split_version, compile_fields=_ver.compile_fields, too_big=_ver.too_big,
        overrun=_ver.overrun, u32_into=_ver._u32.pack_into, u64=_ver._u64.unpack_from,
        feature_into=_ver._feature_info.pack_into, feature=_ver._feature_info.unpack_from)


def physinfo_plan(b: Builder, w: Wire, t: PrivcmdTransport, sysctl: _Sysctl) -> Dict[str, Callable[..., Any]]:
    cls = w.variant.structs["xen_sysctl_physinfo"]
    st, index, hw_off, hw_n = _host._physinfo_reader(cls)
    names = PhysInfo._fields[:13]
    if any(index.get(n) is None for n in names):
        return {}  # an old release (no nr_cpus, outstanding_pages...): the general decoder
    cmd, req = sysctl("physinfo")
    su = w.sysctl_u
    body = LANE + b.issue(req, f"{cmd}, {w.sysctl_iv}", "sysctl", "physinfo") + f"""\
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


def pcpu_info_plan(b: Builder, w: Wire, handle: Any, sysctl: _Sysctl) -> Dict[str, Callable[..., Any]]:
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
    cmd, st = sysctl("getcpuinfo", inputs(cls, ["max_cpus", "info"]), ctypes.sizeof(cls))
    got_at = w.sysctl_u + fields(cls)["nr_cpus"][0]
    P = PAYLOAD_OFFSET
    body = """\
    n = nr_cpus()
""" + lane(f"{P} + n * {size}") + b.issue(st, f"{cmd}, {w.sysctl_iv}, n, lane.buf.address + {P}", "sysctl",
                                           "getcpuinfo") + f"""\
    got = u32(view, {got_at})[0]
    if got > n:
        raise DecodeError(f"getcpuinfo: {{got}} cpus returned for {{n}} asked")
    return [new(PcpuInfo, (i, r[0])) for i, r in enumerate(records(view[{P}:{P} + got * {size}]))]
"""
    return {"pcpu_info": b.compile("pcpu_info", "", body, nr_cpus=handle.nr_cpus, u32=_u32, DecodeError=DecodeError,
                                   records=reader.iter_unpack, PcpuInfo=PcpuInfo)}


def read_console_plan(b: Builder, w: Wire, handle: Any, sysctl: _Sysctl) -> Dict[str, Callable[..., Any]]:
    """readconsole in CONSOLE_CHUNK pieces; the index and clear rules of ops/host.read_console
    (and the handle's: its incremental index kept on the handle, clear refused when read-only)."""
    cls = w.variant.structs.get("xen_sysctl_readconsole")
    if cls is None or "XEN_SYSCTL_readconsole" not in w.constants:
        return {}
    f = fields(cls)
    has_index = "incremental" in f
    names = ["clear", "incremental", "index", "buffer", "count"] if has_index else ["clear", "buffer", "count"]
    cmd, st = sysctl("readconsole", inputs(cls, names), ctypes.sizeof(cls))
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
""" + lane(P + chunk) + f"""\
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
