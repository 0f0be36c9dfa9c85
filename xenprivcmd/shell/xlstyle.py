"""xpsh commands in xl's layouts: info (xl info [-n]), vcpu-list, cpupool-list,
numainfo and topology (the two sections of xl info -n)."""

from __future__ import annotations

import os

from ..errors import NotSupported
from ..ops.host import PHYSCAP_NAMES
from .parse import Arg, Args, Opt, format_cpulist
from .registry import _name_of, command, vcpu_state

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, FrozenSet, List, Optional, Sequence, Tuple

    from .session import Session

__all__ = ["info_fields", "cpus_text"]

#: xl's virt_caps words, in xl's order, from the physinfo capability names.
_VIRT_ORDER = ("pv", "hvm", "hvm_directio", "pv_directio", "hap", "shadow", "iommu_hap_pt_share", "vmtrace",
               "vpmu", "gnttab-v1", "gnttab-v2")


def cpus_text(cpus: Optional[FrozenSet[int]], nr_cpus: int) -> str:
    """xl's affinity form: ``all``, ``none`` or a cpu list (``0-2,5``)."""
    if cpus is None:
        return "-"
    if not cpus:
        return "none"
    if len(cpus) >= nr_cpus and set(range(nr_cpus)) <= set(cpus):
        return "all"
    return format_cpulist(cpus)


def _virt_caps(capabilities: int) -> str:
    have = {name for bit, name in PHYSCAP_NAMES if capabilities >> bit & 1}
    words: List[str] = []
    for w in _VIRT_ORDER:
        if w == "hvm_directio":
            ok = "hvm" in have and "directio" in have
        elif w == "pv_directio":
            ok = "pv" in have and "directio" in have
        else:
            ok = w in have
        if ok:
            words.append(w)
    return " ".join(words)


def _uname(s: Session) -> Tuple[str, str, str, str]:
    """dom0's (nodename, release, version, machine): this machine's on a local dom0."""
    t = s.handle.transport
    own = getattr(t, "uname", None)
    if callable(own):
        got = own()
        return str(got[0]), str(got[1]), str(got[2]), str(got[3])
    u = os.uname()
    return u.nodename, u.release, u.version, u.machine


def info_fields(s: Session) -> List[Tuple[str, Any]]:
    """Every ``xl info`` field, with xl's names, in xl's order, and xl's units (MiB)."""
    h = s.handle
    p = h.physinfo()
    v = h.version()
    mib = (1 << 20) // (v.pagesize or 4096)
    try:
        free_cpus: Optional[int] = len(h.free_cpus())
    except (NotSupported, OSError):
        free_cpus = 0
    sharing = h.sharing_pages()
    node, release, version, machine = _uname(s)
    try:
        sched = h.sched_id()[1]
    except OSError:
        sched = "-"
    return [
        ("host", node), ("release", release), ("version", version), ("machine", machine),
        ("nr_cpus", p.nr_cpus), ("max_cpu_id", p.max_cpu_id), ("nr_nodes", p.nr_nodes),
        ("cores_per_socket", p.cores_per_socket), ("threads_per_core", p.threads_per_core),
        ("cpu_mhz", f"{p.cpu_khz // 1000}.{p.cpu_khz % 1000:03d}"),
        ("hw_caps", ":".join(f"{w:08x}" for w in p.hw_cap)),
        ("virt_caps", _virt_caps(p.capabilities)),
        ("total_memory", p.total_pages // mib), ("free_memory", p.free_pages // mib),
        ("sharing_freed_memory", sharing["freed"] // mib), ("sharing_used_memory", sharing["shared"] // mib),
        ("outstanding_claims", (p.outstanding_pages or 0) // mib), ("free_cpus", free_cpus),
        ("xen_major", v.major), ("xen_minor", v.minor), ("xen_extra", v.extraversion),
        ("xen_version", v.release), ("xen_caps", " ".join(v.capabilities)), ("xen_scheduler", sched),
        ("xen_pagesize", v.pagesize), ("platform_params", f"virt_start=0x{v.virt_start:x}"),
        ("xen_changeset", v.changeset), ("xen_commandline", v.commandline or ""),
        ("cc_compiler", v.compiler), ("cc_compile_by", v.compile_by), ("cc_compile_domain", v.compile_domain),
        ("cc_compile_date", v.compile_date), ("build_id", v.build_id or ""), ("xend_config_format", 4),
    ]


def _xl_lines(pairs: Sequence[Tuple[str, Any]]) -> str:
    return "".join(f"{k:<23}: {v}\n" for k, v in pairs)


def _topology(s: Session) -> Tuple[List[Dict[str, Any]], str]:
    rows = s.handle.cpu_topology()
    data = [{"cpu": c.cpu, "core": c.core, "socket": c.socket, "node": c.node} for c in rows]
    text = "cpu_topology           :\ncpu:    core    socket     node\n"
    for c in rows:
        if c.core is None:
            continue  # an offline cpu: xl leaves it out
        text += f"{c.cpu:3d}:    {c.core:4d}     {c.socket:4d}     {c.node:4d}\n"
    return data, text


def _numa(s: Session) -> Tuple[List[Dict[str, Any]], str]:
    nodes = s.handle.numa_info()
    data = [{"node": n.node, "memsize_kib": n.memsize_kib, "memfree_kib": n.memfree_kib,
             "distances": list(n.distances)} for n in nodes]
    text = "numa_info              :\nnode:    memsize    memfree    distances\n"
    for n in nodes:
        if n.memsize_kib is None:
            continue  # no memory information: xl leaves it out
        text += (f"{n.node:4d}:    {n.memsize_kib >> 10:6d}     {(n.memfree_kib or 0) >> 10:6d}      "
                 + ",".join(str(d) for d in n.distances) + "\n")
    return data, text


@command("info", "host", "host and hypervisor information (xl info)",
         "Every field of xl info, with xl's names, order and units (memory in MiB).  -n adds the cpu"
         " topology and NUMA sections (xl info -n).  --json: {\"FIELD\": value, ...} in the same order,"
         " with cpu_topology and numa_info lists under -n.",
         opts=[Opt("numa", "also the cpu topology and NUMA nodes (xl info -n)", short="n")])
def cmd_info(s: Session, a: Args) -> None:
    pairs = info_fields(s)
    data: Dict[str, Any] = dict(pairs)
    text = _xl_lines(pairs[:18])
    if a.get("numa"):
        for key, section in (("cpu_topology", _topology), ("numa_info", _numa)):
            try:
                data[key], part = section(s)
            except NotSupported:  # a release without the sysctl: the section is left out (null)
                data[key], part = None, ""
            text += part
    text += _xl_lines(pairs[18:])
    s.result(data, text)


@command("topology", "host", "cpu topology (xl info -n's cpu_topology)",
         "Core, socket and NUMA node of every online pcpu, as xl info -n shows them.")
def cmd_topology(s: Session, a: Args) -> None:
    data, text = _topology(s)
    s.result({"cpus": data}, text)


@command("numainfo", "host", "NUMA nodes (xl info -n's numa_info)",
         "Memory size, free memory (MiB in text, KiB in --json) and distances of every NUMA node,"
         " as xl info -n shows them.")
def cmd_numainfo(s: Session, a: Args) -> None:
    data, text = _numa(s)
    s.result({"nodes": data}, text)


@command("cpupool-list", "host", "cpupools (xl cpupool-list)",
         "Every cpupool: name, number of cpus, scheduler, active and domain count, as xl prints them (its"
         " Active column is always y; the JSON's active says whether the pool has cpus).  --cpus lists"
         " the cpus of each instead (xl cpupool-list -c).",
         opts=[Opt("cpus", "list each pool's cpus", short="c")])
def cmd_cpupool_list(s: Session, a: Args) -> None:
    pools = s.handle.cpupools()
    data = {"pools": [{"id": p.pool_id, "name": p.name, "scheduler": p.scheduler, "cpus": sorted(p.cpus),
                       "active": bool(p.cpus), "domains": p.n_dom} for p in pools]}
    # xl cpupool-list's layout, to the character: "%-19s" then "%3d %9s       y       %4d"
    # (xl prints every pool as active) or, with -c, the cpus as a plain comma list
    if a.get("cpus"):
        text = "" if s.opts.quiet else f"{'Name':<19}CPU list\n"
        for p in pools:
            text += f"{p.name or str(p.pool_id):<19}{','.join(map(str, sorted(p.cpus)))}\n"
    else:
        text = "" if s.opts.quiet else f"{'Name':<19}CPUs   Sched     Active   Domain count\n"
        for p in pools:
            text += f"{p.name or str(p.pool_id):<19}{len(p.cpus):3d} {p.scheduler:>9}       y       {p.n_dom:4d}\n"
    s.result(data, text)


@command("vcpu-list", "monitor", "every vcpu of every domain (xl vcpu-list)",
         "One line per vcpu, as xl vcpu-list (the vcpus and affinities of many domains in few"
         " multicall traps): name, id, vcpu, pcpu (- when offline), state (r running,"
         " b blocked, p offline), CPU time and hard / soft affinity (all, none or a cpu list; soft is -"
         " before Xen 4.5).",
         args=[Arg("domains", "domain", required=False, multi=True, help="domains to list (default: all)")])
def cmd_vcpu_list(s: Session, a: Args) -> None:
    h = s.handle
    names = a.get("domains")
    infos = [s.lookup(d) for d in names] if isinstance(names, list) else None
    nr = h.nr_cpus()
    out: List[Dict[str, Any]] = []
    text = "" if s.opts.quiet else (f"{'Name':<32} {'ID':>5} {'VCPU':>5} {'CPU':>5} {'State':>5} {'Time(s)':>9}"
                                    " Affinity (Hard / Soft)\n")
    for v in h.vcpu_list(None if infos is None else [i.domid for i in infos]):
        letters = ("r" if v.running else "-") + ("b" if v.blocked else "-") + ("-" if v.online else "p")
        out.append({"domain": {"id": v.domid, "name": v.name}, "vcpu": v.vcpu,
                    "cpu": v.cpu if v.online else None, "online": v.online, "state": vcpu_state(v),
                    "state_letters": letters, "cpu_time_ns": v.cpu_time, "hard_affinity": sorted(v.hard),
                    "soft_affinity": None if v.soft is None else sorted(v.soft)})
        cpu = str(v.cpu) if v.online else "-"
        text += (f"{_name_of(v.domid, v.name):<32} {v.domid:5d} {v.vcpu:5d} {cpu:>4} {letters:>5}"
                 f" {v.cpu_time / 1e9:9.1f}  {cpus_text(v.hard, nr)} / {cpus_text(v.soft, nr)}\n")
    s.result({"vcpus": out}, text)
