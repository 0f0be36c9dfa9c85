"""Precomputed op plans: the ops of one request and one reply on the local privcmd device.

For one handle (one ABI variant, one :class:`~xenprivcmd.transport.privcmd.PrivcmdTransport`)
everything that does not change between calls is computed once: the op
numbers, the ``struct.Struct`` that writes a request's header and inputs
(its padding bytes included, so no stale byte of an earlier call is ever
read by Xen as input; bytes Xen only writes are not cleared), the reader of
the reply, and the calling thread's prebuilt ``privcmd_hypercall`` already
pointing at its buffer (:class:`~xenprivcmd.transport.privcmd.Lane`).  A call checks
its arguments, packs once, issues one ioctl, unpacks once and builds its
typed result, in one Python frame: each op is compiled once per handle from
the small templates of :mod:`._plan`, with its constants bound as globals of that one
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

from ..abi.layout import _code, fields, record_reader
from ..errors import DecodeError, NoSuchDomain
from ..transport.privcmd import PrivcmdTransport
from ..types import DomainInfo, SchedParams, VcpuAffinity, VcpuInfo
from . import domains as _dom
from . import host as _host
from ._plan import CALL, CHECK_DOMID, LANE, LANE_ONLY, Builder, lane, request_format
from .wire import DOMID_FIRST_RESERVED, PAYLOAD_OFFSET, Wire

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time (cold start, issue 15)
    from typing import Any, Callable, Dict, List, Optional, Tuple

__all__ = ["PrivcmdTransport", "plans", "stand_ins", "xen_version_plan", "PLANNED"]

#: Handle methods that have a plan (installed on the handle while it talks to the device).
PLANNED = ("xen_version", "version", "domain_info", "domains", "vcpu_info", "pause", "unpause", "destroy",
           "set_max_mem", "set_max_vcpus", "vcpu_affinity", "set_vcpu_affinity", "sched_id", "sched_params",
           "set_sched_params", "physinfo", "pcpu_info", "read_console")
# General on purpose:
# - create_domain: rare, and its request is laid out by field name from the release's createdomain
#   struct (which fields exist, grant_opts, Arm's flags and arch config) in ops/domains.py; a plan
#   would copy that layout logic, and its undo (destroy on any failure) with it.
# - cpu_topology, numa_info: rare, decoded with construct (ops/records.py), imported lazily.
# - the rest of the handle (xenstore, cpupools, batches): not one request and one reply.


def xen_version_plan(t: PrivcmdTransport) -> Callable[[], Tuple[int, int]]:
    """``XENVER_version`` on the lane's prebuilt request: (major, minor)."""
    b = Builder(t)
    body = LANE_ONLY + CALL.format(
        indent="    ", req="lane.xenver", out="v", hypercall="xen_version", subop="XENVER_version", domid=None) + """\
    return v >> 16, v & 0xFFFF
"""
    return b.compile("xen_version", "", body)


def _more() -> Any:
    """:mod:`._fast_host`, loaded by the first plan of its ops (a listing never needs it)."""
    from . import _fast_host

    return _fast_host


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
        return {name: xen_version_plan(t) if name == "xen_version" else _more().version_plan(handle, t)}

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
    b = Builder(t)
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
        return cmd, struct.Struct(request_format(head + [(u + at, code) for at, code in inputs], u + size))

    def sysctl(subop: str, inputs: List[Tuple[int, str]] = (), size: int = 0) -> Tuple[int, struct.Struct]:  # type: ignore[assignment]
        """As ``domctl``, for a sysctl."""
        cmd = w.const("XEN_SYSCTL_" + subop, f"sysctl {subop}")
        return cmd, struct.Struct(request_format([(0, "I"), (4, "I")] + [(su + at, code) for at, code in inputs], su + size))

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
            CHECK_DOMID + LANE + info_src + "    if name:\n        return with_names([info])[0]\n    return info\n", **info_env)

        vi = structs["xen_domctl_getvcpuinfo"]
        reader, index = record_reader(vi, ("vcpu", "online", "blocked", "running", "cpu_time", "cpu"))
        vcmd, vst = domctl("getvcpuinfo", [(fields(vi)["vcpu"][0], "I")])
        out["vcpu_info"] = b.compile("vcpu_info", "domid", CHECK_DOMID + LANE + info_src + """\
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
        lst = struct.Struct(request_format([(0, "I"), (4, "I"), (su + gl["first_domain"][0], "H"),
                                            (su + gl["max_domains"][0], "I"), (su + gl["buffer"][0], "Q")], su))
        chunk, size = _dom.LIST_CHUNK, w.info_size
        need = PAYLOAD_OFFSET + chunk * size
        out["domains"] = b.compile("domains", "names=False", lane(need) + f"""\
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
            out[name] = b.compile(name, "domid", CHECK_DOMID + LANE + b.issue(
                st, f"{cmd}, {iv}, domid", "domctl", subop, "domid"))
        if "XEN_DOMCTL_max_vcpus" in w.constants:
            mv = structs["xen_domctl_max_vcpus"]
            cmd, st = domctl("max_vcpus", [(fields(mv)["max"][0], "I")], ctypes.sizeof(mv))
            out["set_max_vcpus"] = b.compile("set_max_vcpus", "domid, n", CHECK_DOMID + """\
    check_int(n, "vcpu count", 1, MAX_VCPUS)
""" + LANE + b.issue(st, f"{cmd}, {iv}, domid, n", "domctl", "max_vcpus", "domid"),
                check_int=_dom._check_int, MAX_VCPUS=_dom.MAX_VCPUS)
        # destroy: EAGAIN (Xen <= 4.5 tearing down) retried with ops/domains' own backoff
        cmd, st = domctl("destroydomain")
        once = b.compile("destroy_once", "domid", LANE + b.issue(st, f"{cmd}, {iv}, domid", "domctl",
                                                                    "destroydomain", "domid"))
        out["destroy"] = b.compile("destroy", "domid", CHECK_DOMID + """\
    retry(lambda: once(domid))
""", once=once, retry=_dom.retry_while_busy)
        cmd, st = domctl("max_mem", [(fields(structs["xen_domctl_max_mem"])["max_memkb"][0], "Q")])
        out["set_max_mem"] = b.compile("set_max_mem", "domid, kib, force=False", CHECK_DOMID + """\
    check_int(kib, "memory (KiB)", 0, MAX_MEM_KIB)
    if not force:
        refuse_below_use(domid, kib)
""" + LANE + b.issue(st, f"{cmd}, {iv}, domid, kib", "domctl", "max_mem", "domid"),
            check_int=_dom._check_int, MAX_MEM_KIB=_dom.MAX_MEM_KIB, refuse_below_use=handle._refuse_below_use)

    # -- scheduler -------------------------------------------------------------------------------
    def sched() -> None:
        cmd, st = sysctl("sched_id")
        sched_id_src = LANE + b.issue(st, f"{cmd}, {siv}", "sysctl", "sched_id") + f"""\
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
                    readers[sid] = (name, struct.Struct(request_format(items)).unpack_from, "cap" in p, u + member, put)
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
            out["sched_params"] = b.compile("sched_params", "domid", CHECK_DOMID + pick_src.format(
                general="general(w, t, domid, sid, NAMES.get(sid, f'sched-{sid}'))") + getinfo_src + """\
    return params
""", **sched_env, general=_dom._sched_params)
            putinfo = w.constants.get("XEN_DOMCTL_SCHEDOP_putinfo")
            if putinfo is not None:
                out["set_sched_params"] = b.compile("set_sched_params", "domid, weight=None, cap=None", CHECK_DOMID + """\
    check_sched_args(domid, weight, cap)
""" + pick_src.format(general="general(w, t, domid, lambda: (sid, NAMES.get(sid, f'sched-{sid}')), weight, cap)")
                    + getinfo_src + """\
    weight, cap = put_values(w, params, weight, cap)
""" + b.issue(None, f"{cmd}, {iv}, domid, sid, {int(putinfo)}, *((weight,) if cap is None else (weight, cap))",
                  "domctl", "scheduler_op", "domid", pack="put") + getinfo_src + """\
    return params
""", **sched_env, general=_dom.set_sched_params, check_sched_args=_dom.check_sched_args,
                    put_values=_dom.put_values)

    # -- vcpu affinity (checks the vcpu with the domain_info plan) --------------------------------
    def affinity() -> None:
        if "domain_info" not in out:
            info()
        out.update(_affinity_plans(b, w, handle, domctl, out["domain_info"]))

    # which builder makes which plans (one that makes several: those that share their parts)
    builders: Dict[str, Callable[[], None]] = {
        "xen_version": lambda: out.update(xen_version=xen_version_plan(t)),
        "version": lambda: out.update(version=_more().version_plan(handle, t)),
        "domain_info": info, "vcpu_info": info, "domains": listing,
        "pause": simple, "unpause": simple, "destroy": simple, "set_max_mem": simple, "set_max_vcpus": simple,
        "physinfo": lambda: out.update(_more().physinfo_plan(b, w, t, sysctl)),
        "pcpu_info": lambda: out.update(_more().pcpu_info_plan(b, w, handle, sysctl)),
        "read_console": lambda: out.update(_more().read_console_plan(b, w, handle, sysctl)),
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


def _affinity_plans(b: Builder, w: Wire, handle: Any, domctl: Callable[..., Tuple[int, struct.Struct]],
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
    head = CHECK_DOMID + """\
    check_int(vcpu, "vcpu", 0, MAX_VCPUS - 1)
    n = nr_cpus()
    check_vcpu(info(domid), vcpu)
"""
    where = """\
    nb = (n + 7) >> 3
""" + lane(f"{PAYLOAD_OFFSET} + 2 * nb + 16") + f"""\
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
    out["set_vcpu_affinity"] = b.compile("set_vcpu_affinity", "domid, vcpu, hard=None, soft=None", CHECK_DOMID + """\
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
        bitmap=_dom.cpumap_bytes, PAD=bytes(8))
    return out
