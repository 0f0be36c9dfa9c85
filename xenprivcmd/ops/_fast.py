"""Precomputed op plans: the hot ops on the local privcmd device.

For one handle (one ABI variant, one :class:`~xenprivcmd._privcmd.PrivcmdTransport`)
everything that does not change between calls is computed once: the op
numbers, the ``struct.Struct`` that writes a request's header and inputs
(its padding bytes included, so no stale byte of an earlier call is ever
read by Xen as input; bytes Xen only writes are not cleared), the reader of
the reply, and the calling thread's prebuilt ``privcmd_hypercall`` already
pointing at its buffer (:class:`~xenprivcmd._privcmd.Lane`).  A call checks
its arguments, packs once, issues one ioctl, unpacks once and builds its
typed result, in one Python frame: each op is compiled once per handle from
the small templates below, with its constants bound as globals of that one
function, and the handle installs it in place of its method.

The handle uses these only while its transport is that device itself
(``Handle.transport`` reassigned, e.g. by the shell's tracing, puts the
general methods back); through the simulator, record/replay, tracing or a
read-only wrapper it takes the general path of :mod:`xenprivcmd.ops.domains`
and :mod:`.host`.  ``tests/test_fast.py`` runs both against the simulator
behind a fake ioctl, for every release.
"""

from __future__ import annotations

import _operator as operator  # the C module: operator.py is more to load
import errno as _errno
import struct

from .._hypercalls import error
from .._layout import _code, fields, record_reader
from .._privcmd import PrivcmdTransport, privcmd_hypercall
from ..errors import DecodeError, NoSuchDomain, XenError
from ..types import DomainInfo, PhysInfo, SchedParams, VcpuInfo
from . import domains as _dom
from . import host as _host
from ._wire import DOMID_FIRST_RESERVED, DOMID_MAX, PAYLOAD_OFFSET, Wire, check_domid

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time (cold start, issue 15)
    from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

__all__ = ["PrivcmdTransport", "plans", "xen_version_plan", "PLANNED"]

#: Handle methods that have a plan (installed on the handle while it talks to the device).
PLANNED = ("xen_version", "domain_info", "domains", "vcpu_info", "pause", "unpause", "set_max_mem", "physinfo",
           "sched_id", "sched_params")


def _format(items: Sequence[Tuple[int, str]], end: int = 0) -> str:
    """A little-endian struct format writing ``items`` (offset, code) with zero padding between."""
    fmt = ["<"]
    pos = 0
    for offset, code in sorted(items):
        if offset < pos:
            raise ValueError(f"overlapping request fields at {offset}")
        if offset > pos:
            fmt.append(f"{offset - pos}x")
        fmt.append(code)
        pos = offset + struct.calcsize("<" + code)
    if end > pos:
        fmt.append(f"{end - pos}x")
    return "".join(fmt)


def _failed(t: PrivcmdTransport, exc: OSError, req: privcmd_hypercall, hypercall: str, subop: str,
            domid: Optional[int]) -> int:
    """The ioctl raised: EINTR is issued again (Xen did nothing); else the typed error."""
    try:
        return t.failed(exc, req)
    except OSError as final:
        raise error(final, hypercall=hypercall, subop=subop, domid=domid) from None


def _closed(t: PrivcmdTransport) -> int:
    """A ValueError from the ioctl: the fd was closed under us, or a real bug."""
    if t.closed:
        raise XenError(_errno.EBADF, "the handle is closed") from None
    raise  # noqa: PLE0704 - re-raises the ValueError being handled by the caller


# One hypercall on the thread's lane: {values} packed at 0, {req} the lane's request.
_ISSUE = """\
{indent}pack_{n}(view, 0, {values})
{indent}t.calls += 1
{indent}try:
{indent}    rc = ioctl(t.fd, request, lane.{req}, True)
{indent}except OSError as exc:
{indent}    rc = failed(t, exc, lane.{req}, {hypercall!r}, {subop!r}, {domid})
{indent}except ValueError:
{indent}    rc = closed(t)
"""

_LANE = """\
    lane = getattr(t._local, "lane", None)
    if lane is None:
        lane = t.lane()
    view = lane.view
"""

# Anything but an int in range goes to the handle's resolver: range errors for
# ints, and names, UUIDs, DomainInfos looked up (handle._domid).
_CHECK_DOMID = f"""\
    if domid.__class__ is not int or not 0 <= domid <= {DOMID_MAX}:
        domid = resolve(domid)
"""


class _Builder:
    """Compiles the plans of one handle (see the module doc)."""

    def __init__(self, t: PrivcmdTransport) -> None:
        self.t = t
        self.env: Dict[str, Any] = {
            "t": t, "ioctl": t.ioctl, "request": t.request, "failed": _failed, "closed": _closed,
            "check_domid": check_domid, "DOMID_MAX": DOMID_MAX, "new": tuple.__new__,
        }
        self.n = 0

    def issue(self, st: struct.Struct, values: str, which: str, subop: str, domid: str = "None",
              indent: str = "    ") -> str:
        """Source of one issue of ``which`` (domctl/sysctl) with ``st`` packing ``values``."""
        self.n += 1
        self.env[f"pack_{self.n}"] = st.pack_into
        return _ISSUE.format(indent=indent, n=self.n, values=values, req=which, hypercall=which, subop=subop,
                             domid=domid)

    def compile(self, name: str, params: str, body: str, **env: Any) -> Callable[..., Any]:
        scope = dict(self.env, **env)
        src = f"def {name}({params}):\n{body}"
        exec(compile(src, f"<xenprivcmd plan {name}>", "exec"), scope)  # noqa: S102 - our own template
        fn: Callable[..., Any] = scope[name]
        fn.__doc__ = f"{name}: precomputed plan on {self.t.path} (see xenprivcmd.ops._fast)"
        return fn


def xen_version_plan(t: PrivcmdTransport) -> Callable[[], Tuple[int, int]]:
    """``XENVER_version`` on the lane's prebuilt request: (major, minor)."""
    b = _Builder(t)
    body = """\
    lane = getattr(t._local, "lane", None)
    if lane is None:
        lane = t.lane()
    t.calls += 1
    try:
        v = ioctl(t.fd, request, lane.xenver, True)
    except OSError as exc:
        v = failed(t, exc, lane.xenver, "xen_version", "XENVER_version", None)
    except ValueError:
        v = closed(t)
    return v >> 16, v & 0xFFFF
"""
    return b.compile("xen_version", "", body)


def plans(handle: Any, w: Wire, t: Any) -> Dict[str, Callable[..., Any]]:
    """The handle's planned methods for ``t`` (empty unless ``t`` is the privcmd device itself)."""
    if not isinstance(t, PrivcmdTransport) or w.dom0_op:
        return {}
    b = _Builder(t)
    b.env["resolve"] = handle._domid
    out: Dict[str, Callable[..., Any]] = {"xen_version": xen_version_plan(t)}
    u = w.domctl_u
    su = w.sysctl_u
    head = [(0, "I"), (4, "I"), (8, "H")]
    structs = w.variant.structs

    def domctl(subop: str, inputs: List[Tuple[int, str]] = ()) -> Tuple[int, struct.Struct]:  # type: ignore[assignment]
        cmd = w.const("XEN_DOMCTL_" + subop, f"domctl {subop}")
        return cmd, struct.Struct(_format(head + [(u + at, code) for at, code in inputs], u))

    def sysctl(subop: str) -> Tuple[int, struct.Struct]:
        cmd = w.const("XEN_SYSCTL_" + subop, f"sysctl {subop}")
        return cmd, struct.Struct(_format([(0, "I"), (4, "I")], su))

    iv, siv = w.domctl_iv, w.sysctl_iv

    # -- getdomaininfo (and the vcpus of one domain) -------------------------------------
    cmd, st = domctl("getdomaininfo")
    info_env = {"info_reader": w.info_reader.unpack_from, "info_slow": w._info_slow, "DomainInfo": DomainInfo,
                "NoSuchDomain": NoSuchDomain, "ESRCH": _errno.ESRCH,
                "with_names": handle.with_names}
    info_src = b.issue(st, f"{cmd}, {iv}, domid", "domctl", "getdomaininfo", "domid") + f"""\
    rec = info_reader(view, {u})
    if rec[0] != domid:
        raise NoSuchDomain(ESRCH, f"domctl getdomaininfo(domid={{domid}}): no such domain (ESRCH)",
                           hypercall="domctl", subop="getdomaininfo", domid=domid)
    info = {"new(DomainInfo, rec + (None,))" if w.info_fast else "info_slow(rec)"}
"""
    out["domain_info"] = b.compile(
        "domain_info", "domid, name=False",
        _CHECK_DOMID + _LANE + info_src + "    if name:\n        return with_names([info])[0]\n    return info\n", **info_env)

    vi = structs["xen_domctl_getvcpuinfo"]
    reader, index = record_reader(vi, ("vcpu", "online", "blocked", "running", "cpu_time", "cpu"))
    vcmd, vst = domctl("getvcpuinfo", [(fields(vi)["vcpu"][0], "I")])
    out["vcpu_info"] = b.compile("vcpu_info", "domid", _CHECK_DOMID + _LANE + info_src + """\
    n = info.max_vcpu_id + 1
    if n > MAX_VCPUS:
        raise DecodeError(f"getdomaininfo: {n} vcpus of domain {domid} is beyond any Xen")
    out = []
    for vcpu in range(n):
""" + b.issue(vst, f"{vcmd}, {iv}, domid, vcpu", "domctl", "getvcpuinfo", "domid", indent="        ") + """\
        online, blocked, running, cpu_time, cpu = pick(vcpu_reader(view, %d))
        out.append(new(VcpuInfo, (vcpu, online != 0, blocked != 0, running != 0, cpu_time, cpu)))
    return out
""" % u, **info_env, MAX_VCPUS=_dom.MAX_VCPUS, DecodeError=DecodeError, VcpuInfo=VcpuInfo,
        vcpu_reader=reader.unpack_from, pick=operator.itemgetter(*index[1:]))  # type: ignore[misc]

    # -- the listing: getdomaininfolist, paginated, records read in place ----------------
    gl = fields(structs["xen_sysctl_getdomaininfolist"])
    lcmd = w.const("XEN_SYSCTL_getdomaininfolist", "sysctl getdomaininfolist")
    lst = struct.Struct(_format([(0, "I"), (4, "I"), (su + gl["first_domain"][0], "H"),
                                 (su + gl["max_domains"][0], "I"), (su + gl["buffer"][0], "Q")], su))
    chunk, size = _dom.LIST_CHUNK, w.info_size
    need = PAYLOAD_OFFSET + chunk * size
    out["domains"] = b.compile("domains", "names=False", f"""\
    lane = getattr(t._local, "lane", None)
    if lane is None or lane.buf.size < {need}:
        t.scratch({need})
        lane = t.lane()
    view = lane.view
    records = lane.buf.address + {PAYLOAD_OFFSET}
    out = []
    first = 0
    while first < {DOMID_FIRST_RESERVED}:
""" + b.issue(lst, f"{lcmd}, {siv}, first, {chunk}, records", "sysctl", "getdomaininfolist",
              indent="        ") + f"""\
        n = u32(view, {su + gl["num_domains"][0]})[0]
        if n > {chunk}:
            raise DecodeError(f"getdomaininfolist: {{n}} domains returned for {chunk} asked")
        recs = iter_unpack(view[{PAYLOAD_OFFSET}:{PAYLOAD_OFFSET} + n * {size}])
        batch = {"[new(DomainInfo, r + (None,)) for r in recs]" if w.info_fast else "[info_slow(r) for r in recs]"}
        check_listing(batch, first)
        out += batch
        if n < {chunk}:
            break
        first = batch[-1][0] + 1
    if names:
        return with_names(out)
    return out
""", **info_env, iter_unpack=w.info_reader.iter_unpack, u32=struct.Struct("<I").unpack_from, DecodeError=DecodeError,
        check_listing=_dom.check_listing)

    # -- simple domctls ----------------------------------------------------------------------
    for name, subop in (("pause", "pausedomain"), ("unpause", "unpausedomain")):
        cmd, st = domctl(subop)
        out[name] = b.compile(name, "domid", _CHECK_DOMID + _LANE + b.issue(
            st, f"{cmd}, {iv}, domid", "domctl", subop, "domid"))
    cmd, st = domctl("max_mem", [(fields(structs["xen_domctl_max_mem"])["max_memkb"][0], "Q")])
    out["set_max_mem"] = b.compile("set_max_mem", "domid, kib, force=False", _CHECK_DOMID + """\
    check_int(kib, "memory (KiB)", 0, MAX_MEM_KIB)
    if not force:
        refuse_below_use(domid, kib)
""" + _LANE + b.issue(st, f"{cmd}, {iv}, domid, kib", "domctl", "max_mem", "domid"),
        check_int=_dom._check_int, MAX_MEM_KIB=_dom.MAX_MEM_KIB, refuse_below_use=handle._refuse_below_use)

    # -- physinfo ------------------------------------------------------------------------------
    out.update(_physinfo_plan(b, w, t, sysctl, siv))

    # -- scheduler -------------------------------------------------------------------------------
    cmd, st = sysctl("sched_id")
    sched_id_src = _LANE + b.issue(st, f"{cmd}, {siv}", "sysctl", "sched_id") + f"""\
    sid = u32(view, {su})[0]
"""
    sched_env = {"u32": struct.Struct("<I").unpack_from, "NAMES": _host.SCHEDULER_NAMES}
    out["sched_id"] = b.compile("sched_id", "", sched_id_src + """\
    return sid, NAMES.get(sid, f"sched-{sid}")
""", **sched_env)
    getinfo = w.constants.get("XEN_DOMCTL_SCHEDOP_getinfo")
    if getinfo is not None and "xen_domctl_scheduler_op" in structs:
        f = fields(structs["xen_domctl_scheduler_op"])
        members = fields(f["u"][1])
        readers: Dict[int, Tuple[str, Callable[..., Tuple[int, ...]], bool, int]] = {}
        for name in _dom.SCHEDULERS:
            if name in members:
                at, cls = members[name]
                p = fields(cls)
                items = [(p["weight"][0], _code(p["weight"][1]))]
                if "cap" in p:
                    items.append((p["cap"][0], _code(p["cap"][1])))
                sid = int(w.constants.get(_dom.SCHEDULERS[name], -1))
                readers[sid] = (name, struct.Struct(_format(items)).unpack_from, "cap" in p, u + f["u"][0] + at)
        cmd, st = domctl("scheduler_op", [(f["sched_id"][0], "I"), (f["cmd"][0], "I")])
        out["sched_params"] = b.compile("sched_params", "domid", _CHECK_DOMID + sched_id_src + """\
    got = readers.get(sid)
    if got is None:
        return general(domid)
    name, unpack, has_cap, at = got
""" + b.issue(st, f"{cmd}, {iv}, domid, sid, {int(getinfo)}", "domctl", "scheduler_op", "domid") + """\
    vals = unpack(view, at)
    return new(SchedParams, (name, vals[0], vals[1] if has_cap else None))
""", **sched_env, readers=readers, SchedParams=SchedParams, general=type(handle).sched_params.__get__(handle))
    return out


def _physinfo_plan(b: _Builder, w: Wire, t: PrivcmdTransport, sysctl: Callable[[str], Tuple[int, struct.Struct]],
                   siv: int) -> Dict[str, Callable[..., Any]]:
    cls = w.variant.structs["xen_sysctl_physinfo"]
    st, index, hw_off, hw_n = _host._physinfo_reader(cls)
    names = PhysInfo._fields[:13]
    if any(index.get(n) is None for n in names):
        return {}  # an old release (no nr_cpus, outstanding_pages...): the general decoder
    cmd, req = sysctl("physinfo")
    su = w.sysctl_u
    body = _LANE + b.issue(req, f"{cmd}, {siv}", "sysctl", "physinfo") + f"""\
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
