"""Precomputed op plans: the ops of one request and one reply on the local privcmd device.

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
function, on its first call (:func:`stand_ins`: the handle holds a stand-in
that builds the plan and puts it in its own place, so a process compiles only
the plans it uses).  An op of a few
hypercalls (vcpu_info, set_vcpu_affinity, set_sched_params, read_console's
chunks, version's dozen XENVER sub-ops) issues each the same way, in the general
path's order: recordings of real dom0s are replayed against both.  Argument checks and the errors raised
are the general path's own functions (:mod:`xenprivcmd.ops.domains`), called
before anything is issued; destroy's EAGAIN retry is
:func:`~xenprivcmd.ops.domains.retry_while_busy`.

The handle uses these only while its transport is that device itself
(``Handle.transport`` reassigned, e.g. by the shell's tracing, puts the
general methods back); through the simulator, record/replay, tracing or a
read-only wrapper it takes the general path of :mod:`xenprivcmd.ops.domains`
and :mod:`.host`, and a read-only handle never has plans (those of the
state-changing ops do not check :meth:`~xenprivcmd.handle.Handle._check_writable`).
An op a release lacks (getcpuinfo before 3.2, ...) has no plan there: the
general method says NotSupported.  ``tests/test_fast.py`` runs both against the simulator
behind a fake ioctl, for every release.
"""

from __future__ import annotations

import _operator as operator  # the C module: operator.py is more to load
import ctypes
import errno as _errno
import struct

from .. import _hypercalls as _hc
from .._hypercalls import HYPERCALL_NAMES, HYPERVISOR_xen_version, error
from .._layout import _code, fields, record_reader
from .._privcmd import PrivcmdTransport, privcmd_hypercall
from ..errors import DecodeError, HypercallError, NoSuchDomain, XenError
from ..types import DomainInfo, PcpuInfo, PhysInfo, SchedParams, VcpuAffinity, VcpuInfo, VersionInfo
from . import domains as _dom
from . import host as _host
from . import version as _ver
from ._wire import DOMID_FIRST_RESERVED, DOMID_MAX, PAYLOAD_OFFSET, Wire, check_domid

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time (cold start, issue 15)
    from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

    _Sysctl = Callable[..., Tuple[int, struct.Struct]]

__all__ = ["PrivcmdTransport", "plans", "stand_ins", "xen_version_plan", "version_plan", "PLANNED"]

#: Handle methods that have a plan (installed on the handle while it talks to the device).
PLANNED = ("xen_version", "version", "domain_info", "domains", "vcpu_info", "pause", "unpause", "destroy",
           "set_max_mem", "set_max_vcpus", "vcpu_affinity", "set_vcpu_affinity", "sched_id", "sched_params",
           "set_sched_params", "physinfo", "pcpu_info", "read_console")
# General on purpose:
# - create_domain: rare, and its request is laid out by field name from the release's createdomain
#   struct (which fields exist, grant_opts, Arm's flags and arch config) in ops/domains.py; a plan
#   would copy that layout logic, and its undo (destroy on any failure) with it.
# - cpu_topology, numa_info: rare, decoded with construct (ops/_slow.py), imported lazily.
# - the rest of the handle (xenstore, cpupools, batches): not one request and one reply.


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


# One ioctl of the prebuilt request {req}, its result in {out}.
_CALL = """\
{indent}t.calls += 1
{indent}try:
{indent}    {out} = ioctl(t.fd, request, {req}, True)
{indent}except OSError as exc:
{indent}    {out} = failed(t, exc, {req}, {hypercall!r}, {subop!r}, {domid})
{indent}except ValueError:
{indent}    {out} = closed(t)
"""
# One hypercall on the thread's lane: {values} packed at 0 by {pack}, {req} the lane's request.
_ISSUE = "{indent}{pack}(view, 0, {values})\n" + _CALL

_LANE_ONLY = """\
    lane = getattr(t._local, "lane", None)
    if lane is None:
        lane = t.lane()
"""
_LANE = _LANE_ONLY + "    view = lane.view\n"


def _lane(need: object) -> str:
    """The lane over a buffer of at least ``need`` bytes (a number or an expression of the plan)."""
    return f"""\
    lane = getattr(t._local, "lane", None)
    if lane is None or lane.buf.size < {need}:
        t.scratch({need})
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

    def issue(self, st: Optional[struct.Struct], values: str, which: str, subop: str, domid: str = "None",
              indent: str = "    ", pack: str = "") -> str:
        """Source of one issue of ``which`` (domctl/sysctl) with ``st`` packing ``values``
        (or the plan's own ``pack``, a name of its body, when the Struct is chosen per call)."""
        if st is not None:
            self.n += 1
            pack = f"pack_{self.n}"
            self.env[pack] = st.pack_into
        return _ISSUE.format(indent=indent, pack=pack, values=values, req="lane." + which, out="rc", hypercall=which,
                             subop=subop, domid=domid)

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
    body = _LANE_ONLY + _CALL.format(
        indent="    ", req="lane.xenver", out="v", hypercall="xen_version", subop="XENVER_version", domid=None) + """\
    return v >> 16, v & 0xFFFF
"""
    return b.compile("xen_version", "", body)


def version_plan(handle: Any, t: PrivcmdTransport) -> Callable[[], VersionInfo]:
    """``Handle.version()``: :func:`ops.version.info <xenprivcmd.ops.version.info>`'s sub-ops in its
    order (the ``*2`` probe first, once per handle, its answer kept in ``handle._varbuf_ops``), each
    on a request of the lane's ``xenvers`` with its argument in place, decoded and failing as there."""
    spec: List[Tuple[int, bool]] = []  # the lane's requests: (sub-op, whether arg 1 is the buffer)
    hc = HYPERCALL_NAMES[HYPERVISOR_xen_version]

    def call(subop: int, at: bool, out: str = "rc", indent: str = "    ") -> str:
        if (subop, at) not in spec:
            spec.append((subop, at))
        return _CALL.format(indent=indent, req=f"r{spec.index((subop, at))}", out=out, hypercall=hc,
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

    body = _LANE_ONLY + reqs("    ") + """\
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

    return _Builder(t).compile(
        "version", "", body, h=handle, requests=requests, VersionInfo=VersionInfo, HypercallError=HypercallError,
        ZEROS=memoryview(bytes(max(_ver.XEN_CAPABILITIES_INFO_LEN, _ver.XEN_COMMANDLINE_LEN))),
        NO_VARBUF=_ver.NO_VARBUF, NO_COMMANDLINE=_ver.NO_COMMANDLINE, NO_BUILD_ID=_ver.NO_BUILD_ID, cstring=_ver.cstring,
        text=_ver._text, split_version=_ver.split_version, compile_fields=_ver.compile_fields, too_big=_ver.too_big,
        overrun=_ver.overrun, u32_into=_ver._u32.pack_into, u64=_ver._u64.unpack_from,
        feature_into=_ver._feature_info.pack_into, feature=_ver._feature_info.unpack_from)


def stand_ins(handle: Any, w: Optional[Wire], t: PrivcmdTransport) -> Dict[str, Callable[..., Any]]:
    """For each planned op a stand-in that, on its first call, builds that op's plan (and those
    built with it), puts them in its place on the handle and runs it: a process compiles only
    the plans it uses (a one-shot listing, one).  Without a wire (before the ABI is known), only
    the ``xen_version`` hypercall's.  A stand-in whose handle was taken off the plans meanwhile
    (another transport, or a newer set of stand-ins) installs nothing and runs what the handle
    has now; where the release has no plan for the op, the general method from then on."""
    names = PLANNED if w is not None else ("xen_version", "version")
    mine: Dict[str, Callable[..., Any]] = {}

    def build(name: str) -> Dict[str, Callable[..., Any]]:
        if w is not None:
            return plans(handle, w, t, only=name)
        return {name: xen_version_plan(t) if name == "xen_version" else version_plan(handle, t)}

    def make(name: str) -> Callable[..., Any]:
        def stand_in(*args: Any, **kw: Any) -> Any:
            d = handle.__dict__
            if d.get(name) is stand_in:
                for n, fn in build(name).items():
                    if d.get(n) is mine.get(n):
                        d[n] = fn
                if d.get(name) is stand_in:
                    del d[name]
            fn = d.get(name)
            if fn is None:
                return getattr(type(handle), name)(handle, *args, **kw)
            return fn(*args, **kw)

        stand_in.__name__ = stand_in.__qualname__ = name
        stand_in.__doc__ = f"{name}: its precomputed plan, built on this first call (xenprivcmd.ops._fast)"
        return stand_in

    for name in names:
        mine[name] = make(name)
    return mine


def plans(handle: Any, w: Wire, t: Any, only: Optional[str] = None) -> Dict[str, Callable[..., Any]]:
    """The handle's planned methods for ``t`` (empty unless ``t`` is the privcmd device itself);
    with ``only``, that op's plan and those built with it (none where the release lacks the op)."""
    if not isinstance(t, PrivcmdTransport) or w.dom0_op:
        return {}
    b = _Builder(t)
    b.env["resolve"] = handle._domid
    out: Dict[str, Callable[..., Any]] = {}
    u = w.domctl_u
    su = w.sysctl_u
    head = [(0, "I"), (4, "I"), (8, "H")]
    structs = w.variant.structs

    def domctl(subop: str, inputs: List[Tuple[int, str]] = (), size: int = 0) -> Tuple[int, struct.Struct]:  # type: ignore[assignment]
        """The op number and the Struct of a domctl: header and ``inputs`` (offsets in ``u``),
        zeros between them and up to ``size`` bytes of ``u`` (the sub-op's whole struct)."""
        cmd = w.const("XEN_DOMCTL_" + subop, f"domctl {subop}")
        return cmd, struct.Struct(_format(head + [(u + at, code) for at, code in inputs], u + size))

    def sysctl(subop: str, inputs: List[Tuple[int, str]] = (), size: int = 0) -> Tuple[int, struct.Struct]:  # type: ignore[assignment]
        """As ``domctl``, for a sysctl."""
        cmd = w.const("XEN_SYSCTL_" + subop, f"sysctl {subop}")
        return cmd, struct.Struct(_format([(0, "I"), (4, "I")] + [(su + at, code) for at, code in inputs], su + size))

    iv, siv = w.domctl_iv, w.sysctl_iv
    info_env = {"info_reader": w.info_reader.unpack_from, "info_slow": w._info_slow, "DomainInfo": DomainInfo,
                "NoSuchDomain": NoSuchDomain, "ESRCH": _errno.ESRCH, "with_names": handle.with_names}

    # -- getdomaininfo (and the vcpus of one domain) -------------------------------------
    def info() -> None:
        cmd, st = domctl("getdomaininfo")
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
    def listing() -> None:
        gl = fields(structs["xen_sysctl_getdomaininfolist"])
        lcmd = w.const("XEN_SYSCTL_getdomaininfolist", "sysctl getdomaininfolist")
        lst = struct.Struct(_format([(0, "I"), (4, "I"), (su + gl["first_domain"][0], "H"),
                                     (su + gl["max_domains"][0], "I"), (su + gl["buffer"][0], "Q")], su))
        chunk, size = _dom.LIST_CHUNK, w.info_size
        need = PAYLOAD_OFFSET + chunk * size
        out["domains"] = b.compile("domains", "names=False", _lane(need) + f"""\
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
    def simple() -> None:
        for name, subop in (("pause", "pausedomain"), ("unpause", "unpausedomain")):
            cmd, st = domctl(subop)
            out[name] = b.compile(name, "domid", _CHECK_DOMID + _LANE + b.issue(
                st, f"{cmd}, {iv}, domid", "domctl", subop, "domid"))
        if "XEN_DOMCTL_max_vcpus" in w.constants:
            mv = structs["xen_domctl_max_vcpus"]
            cmd, st = domctl("max_vcpus", [(fields(mv)["max"][0], "I")], ctypes.sizeof(mv))
            out["set_max_vcpus"] = b.compile("set_max_vcpus", "domid, n", _CHECK_DOMID + """\
    check_int(n, "vcpu count", 1, MAX_VCPUS)
""" + _LANE + b.issue(st, f"{cmd}, {iv}, domid, n", "domctl", "max_vcpus", "domid"),
                check_int=_dom._check_int, MAX_VCPUS=_dom.MAX_VCPUS)
        # destroy: EAGAIN (Xen <= 4.5 tearing down) retried with ops/domains' own backoff
        cmd, st = domctl("destroydomain")
        once = b.compile("destroy_once", "domid", _LANE + b.issue(st, f"{cmd}, {iv}, domid", "domctl",
                                                                    "destroydomain", "domid"))
        out["destroy"] = b.compile("destroy", "domid", _CHECK_DOMID + """\
    retry(lambda: once(domid))
""", once=once, retry=_dom.retry_while_busy)
        cmd, st = domctl("max_mem", [(fields(structs["xen_domctl_max_mem"])["max_memkb"][0], "Q")])
        out["set_max_mem"] = b.compile("set_max_mem", "domid, kib, force=False", _CHECK_DOMID + """\
    check_int(kib, "memory (KiB)", 0, MAX_MEM_KIB)
    if not force:
        refuse_below_use(domid, kib)
""" + _LANE + b.issue(st, f"{cmd}, {iv}, domid, kib", "domctl", "max_mem", "domid"),
            check_int=_dom._check_int, MAX_MEM_KIB=_dom.MAX_MEM_KIB, refuse_below_use=handle._refuse_below_use)



    # -- scheduler -------------------------------------------------------------------------------
    def sched() -> None:
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
            # per scheduler: its name, the reader of its parameters, whether it has a cap, where
            # they are, and the writer of a putinfo (header, sched_id, cmd and the whole member)
            readers: Dict[int, Tuple[str, Callable[..., Tuple[int, ...]], bool, int, Callable[..., None]]] = {}
            op_head = [(f["sched_id"][0], "I"), (f["cmd"][0], "I")]
            for name in _dom.SCHEDULERS:
                if name in members:
                    at, cls = members[name]
                    p = fields(cls)
                    items = [(p["weight"][0], _code(p["weight"][1]))]
                    if "cap" in p:
                        items.append((p["cap"][0], _code(p["cap"][1])))
                    sid = int(w.constants.get(_dom.SCHEDULERS[name], -1))
                    member = f["u"][0] + at
                    put = domctl("scheduler_op", op_head + [(member + i, c) for i, c in items],
                                 member + ctypes.sizeof(cls))[1].pack_into
                    readers[sid] = (name, struct.Struct(_format(items)).unpack_from, "cap" in p, u + member, put)
            cmd, st = domctl("scheduler_op", op_head)
            getinfo_src = b.issue(st, f"{cmd}, {iv}, domid, sid, {int(getinfo)}", "domctl", "scheduler_op", "domid") + """\
    vals = unpack(view, at)
    params = new(SchedParams, (name, vals[0], vals[1] if has_cap else None))
"""
            # a scheduler without a reader here: the general path from its sched_id on (no second sched_id)
            pick_src = sched_id_src + """\
    got = readers.get(sid)
    if got is None:
        return {general}
    name, unpack, has_cap, at, put = got
"""
            sched_env.update(readers=readers, SchedParams=SchedParams, w=w, t=t)
            out["sched_params"] = b.compile("sched_params", "domid", _CHECK_DOMID + pick_src.format(
                general="general(w, t, domid, sid, NAMES.get(sid, f'sched-{sid}'))") + getinfo_src + """\
    return params
""", **sched_env, general=_dom._sched_params)
            putinfo = w.constants.get("XEN_DOMCTL_SCHEDOP_putinfo")
            if putinfo is not None:
                out["set_sched_params"] = b.compile("set_sched_params", "domid, weight=None, cap=None", _CHECK_DOMID + """\
    check_sched_args(domid, weight, cap)
""" + pick_src.format(general="general(w, t, domid, lambda: (sid, NAMES.get(sid, f'sched-{sid}')), weight, cap)")
                    + getinfo_src + """\
    weight, cap = put_values(w, params, weight, cap)
""" + b.issue(None, f"{cmd}, {iv}, domid, sid, {int(putinfo)}, *((weight,) if cap is None else (weight, cap))",
                  "domctl", "scheduler_op", "domid", pack="put") + getinfo_src + """\
    return params
""", **sched_env, general=_dom.set_sched_params, check_sched_args=_dom.check_sched_args,
                    put_values=_dom.put_values)
    def affinity() -> None:
        if "domain_info" not in out:
            info()
        out.update(_affinity_plans(b, w, handle, domctl, out["domain_info"]))

    # which builder makes which plans (one that makes several: those that share their parts)
    builders: Dict[str, Callable[[], None]] = {
        "xen_version": lambda: out.update(xen_version=xen_version_plan(t)),
        "version": lambda: out.update(version=version_plan(handle, t)),
        "domain_info": info, "vcpu_info": info, "domains": listing,
        "pause": simple, "unpause": simple, "destroy": simple, "set_max_mem": simple, "set_max_vcpus": simple,
        "physinfo": lambda: out.update(_physinfo_plan(b, w, t, sysctl)),
        "pcpu_info": lambda: out.update(_pcpu_info_plan(b, w, handle, sysctl)),
        "read_console": lambda: out.update(_read_console_plan(b, w, handle, sysctl)),
        "sched_id": sched, "sched_params": sched, "set_sched_params": sched,
        "vcpu_affinity": affinity, "set_vcpu_affinity": affinity,
    }
    ran = set()
    for name in PLANNED if only is None else (only,):
        build = builders[name]
        if build not in ran:
            ran.add(build)
            build()
    return out


def _affinity_plans(b: _Builder, w: Wire, handle: Any, domctl: Callable[..., Tuple[int, struct.Struct]],
                    domain_info: Callable[..., DomainInfo]) -> Dict[str, Callable[..., Any]]:
    """getvcpuaffinity / setvcpuaffinity: the cpumaps are guest handles into the buffer past the
    domctl (hard at PAYLOAD_OFFSET, soft 8 bytes past it), ``nr_bits`` the handle's nr_cpus()."""
    cls = w.variant.structs.get("xen_domctl_vcpuaffinity")
    if cls is None or "XEN_DOMCTL_getvcpuaffinity" not in w.constants:
        return {}
    f = fields(cls)
    modern = "cpumap_soft" in f  # 4.5+: flags, a hard and a soft map; before, one map
    inputs = [(f["vcpu"][0], "I")]
    values = "vcpu"
    if modern:
        inputs.append((f["flags"][0], "I"))
        values += ", flags"
    for name, base in (("cpumap_hard", "base"), ("cpumap_soft", "base + nb + 8")) if modern else (("cpumap", "base"),):
        at, mcls = f[name]
        mf = fields(mcls)
        nr = mf["nr_bits" if "nr_bits" in mf else "nr_cpus"]
        inputs += [(at + mf["bitmap"][0], _code(mf["bitmap"][1])), (at + nr[0], _code(nr[1]))]
        values += f", {base}, n"
    size = ctypes.sizeof(cls)
    gcmd, gst = domctl("getvcpuaffinity", inputs, size)
    iv = w.domctl_iv
    env: Dict[str, Any] = {
        "check_int": _dom._check_int, "check_vcpu": _dom._check_vcpu, "MAX_VCPUS": _dom.MAX_VCPUS,
        "nr_cpus": handle.nr_cpus, "info": domain_info, "cpus_from": _dom._cpus_from, "VcpuAffinity": VcpuAffinity,
    }
    both = 0
    if modern:
        env["HARD"] = hard = w.const("XEN_VCPUAFFINITY_HARD", "affinity")
        env["SOFT"] = soft = w.const("XEN_VCPUAFFINITY_SOFT", "affinity")
        both = hard | soft
    # nr_cpus() (the handle's cache) first, then getdomaininfo, as the general path (recordings replay it)
    head = _CHECK_DOMID + """\
    check_int(vcpu, "vcpu", 0, MAX_VCPUS - 1)
    n = nr_cpus()
    check_vcpu(info(domid), vcpu)
"""
    where = """\
    nb = (n + 7) >> 3
""" + _lane(f"{PAYLOAD_OFFSET} + 2 * nb + 16") + f"""\
    base = lane.buf.address + {PAYLOAD_OFFSET}
"""
    get_src = b.issue(gst, f"{gcmd}, {iv}, domid, " + values.replace("flags", str(both)), "domctl",
                      "getvcpuaffinity", "domid") + f"""\
    return new(VcpuAffinity, (vcpu, cpus_from(view[{PAYLOAD_OFFSET}:{PAYLOAD_OFFSET} + nb], n),
                              {f"cpus_from(view[{PAYLOAD_OFFSET} + nb + 8:{PAYLOAD_OFFSET} + 2 * nb + 8], n)" if modern else "None"}))
"""
    out = {"vcpu_affinity": b.compile("vcpu_affinity", "domid, vcpu", head + where + get_src, **env)}
    if "XEN_DOMCTL_setvcpuaffinity" not in w.constants:
        return out
    scmd, sst = domctl("setvcpuaffinity", inputs, size)
    # the maps Xen reads are written whole (an absent one as zeros, as the general path clears it)
    out["set_vcpu_affinity"] = b.compile("set_vcpu_affinity", "domid, vcpu, hard=None, soft=None", _CHECK_DOMID + """\
    check_request(vcpu, hard, soft)
    n = nr_cpus()
    hard, soft = maps(w, n, hard, soft)
    check_vcpu(info(domid), vcpu)
""" + where + f"""\
    view[{PAYLOAD_OFFSET}:{PAYLOAD_OFFSET} + 2 * nb + 16] = (bitmap(hard, nb) + PAD + bitmap(soft, nb) + PAD)
""" + ("""\
    flags = (0 if hard is None else HARD) | (0 if soft is None else SOFT)
""" if modern else "") + b.issue(sst, f"{scmd}, {iv}, domid, {values}", "domctl", "setvcpuaffinity", "domid")
        + get_src, **env, check_request=_dom.check_affinity_request, maps=_dom.affinity_maps, w=w,
        bitmap=_bitmap, PAD=bytes(8))
    return out


def _bitmap(cpus: Optional[Iterable[int]], nbytes: int) -> bytes:
    """A little-endian cpumap of ``nbytes`` (all zeros for None)."""
    return (0 if cpus is None else sum(1 << c for c in cpus)).to_bytes(nbytes, "little")


# -- the host sysctls -------------------------------------------------------------------------

_u32 = struct.Struct("<I").unpack_from


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
