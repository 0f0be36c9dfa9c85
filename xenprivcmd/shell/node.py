"""xpsh host commands: version, nodeinfo, capabilities, freecell, sched."""

from __future__ import annotations

from .. import __version__
from .parse import Args, Opt, UsageError
from .registry import _labels, _name, _table, command

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, List, Optional

    from .session import Session

__all__ = ["cmd_version", "cmd_nodeinfo", "cmd_capabilities", "cmd_freecell", "cmd_sched"]


@command("version", "host", "show version", "Show the xpsh/library version and the running hypervisor's.")
def cmd_version(s: Session, a: Args) -> None:
    v = s.handle.version()
    data = {
        "library": __version__,
        "uri": s.uri,
        "hypervisor": {
            "release": v.release, "major": v.major, "minor": v.minor, "extraversion": v.extraversion,
            "compiler": v.compiler, "compile_by": v.compile_by, "compile_domain": v.compile_domain,
            "compile_date": v.compile_date, "changeset": v.changeset, "capabilities": list(v.capabilities),
            "pagesize": v.pagesize, "commandline": v.commandline, "build_id": v.build_id,
        },
    }
    text = (f"Compiled against library: xenprivcmd {__version__}\n"
            f"Using library: xenprivcmd {__version__}\n"
            f"Using API: Xen privcmd\n"
            f"Running hypervisor: Xen {v.release}\n")
    s.result(data, text)



@command("nodeinfo", "host", "node information", "Basic information about the host (XEN_SYSCTL_physinfo).")
def cmd_nodeinfo(s: Session, a: Args) -> None:
    p = s.handle.physinfo()
    mhz = p.cpu_khz // 1000
    data = {
        "cpu_model": s.handle.arch, "cpus": p.nr_cpus, "max_cpu_id": p.max_cpu_id, "cpu_mhz": mhz,
        "sockets": p.nr_sockets, "cores_per_socket": p.cores_per_socket, "threads_per_core": p.threads_per_core,
        "numa_cells": p.nr_nodes, "memory_kib": p.total_memory_kib, "free_memory_kib": p.free_memory_kib,
        "virt_caps": list(p.virt_caps),
    }
    text = _labels([
        ("CPU model", s.handle.arch), ("CPU(s)", p.nr_cpus), ("CPU frequency", f"{mhz} MHz"),
        ("CPU socket(s)", p.nr_sockets), ("Core(s) per socket", p.cores_per_socket),
        ("Thread(s) per core", p.threads_per_core), ("NUMA cell(s)", p.nr_nodes),
        ("Memory size", f"{p.total_memory_kib} KiB"),
    ], width=20)
    s.result(data, text)


@command("capabilities", "host", "hypervisor capabilities and detected ABI",
         "The hypervisor's capabilities, and which ABI variant xenprivcmd detected and how.")
def cmd_capabilities(s: Session, a: Args) -> None:
    h = s.handle
    v = h.version()
    variant = h.abi
    det = dict(h.detection)
    try:
        virt = list(h.physinfo().virt_caps)
    except Exception:
        virt = []
    try:
        sched = h.sched_id()[1]
    except Exception:
        sched = None
    probes = [{"hypercall": p[0], "interface_version": p[1], "accepted": bool(p[2])}
              for p in det.get("probes", []) if isinstance(p, (tuple, list)) and len(p) == 3]
    data = {
        "hypervisor": f"Xen {v.release}",
        "capabilities": list(v.capabilities),
        "virt_caps": virt,
        "scheduler": sched,
        "abi": {
            "release": variant.release, "arch": variant.arch, "exact": bool(variant.exact),
            "domctl_interface_version": variant.domctl_interface_version,
            "sysctl_interface_version": variant.sysctl_interface_version,
            "layout": variant.layout_key,
        },
        "detection": {"method": det.get("method"), "xen": det.get("xen"), "probes": probes},
        "buffers": h.buffer_kind,
    }

    def hx(x: Optional[int]) -> str:
        return "-" if x is None else f"{x:#x}"

    rows = [
        ("Hypervisor", f"Xen {v.release}"),
        ("Capabilities", " ".join(v.capabilities) or "-"),
        ("Virtualization", " ".join(virt) or "-"),
        ("Scheduler", sched or "-"),
        ("ABI variant", f"{variant.release} ({variant.arch}, layout {variant.layout_key}"
                        f"{'' if variant.exact else ', approximate'})"),
        ("domctl interface", hx(variant.domctl_interface_version)),
        ("sysctl interface", hx(variant.sysctl_interface_version)),
        ("Detection", str(det.get("method") or "-")),
        ("Detection probes", ", ".join(f"{p['hypercall']} {p['interface_version']:#x} "
                                       f"{'accepted' if p['accepted'] else 'rejected'}" for p in probes) or "-"),
        ("Hypercall buffers", h.buffer_kind),
    ]
    s.result(data, _labels(rows, width=20))


@command("freecell", "host", "NUMA free memory",
         "Free memory of the host, or per NUMA cell with --all / --cellno.",
         opts=[Opt("all", "show every NUMA cell"), Opt("cellno", "a NUMA cell number", value="int")])
def cmd_freecell(s: Session, a: Args) -> None:
    h = s.handle
    p = h.physinfo()
    cells: List[Dict[str, int]] = []
    if a.get("all") or a.get("cellno") is not None:
        for n in h.numa_info():
            cells.append({"cell": n.node, "free_kib": n.memfree_kib or 0, "total_kib": n.memsize_kib or 0})
        if a.get("cellno") is not None:
            want = a.get("cellno")
            cells = [c for c in cells if c["cell"] == want]
            if not cells:
                raise UsageError(f"freecell: no NUMA cell {want}")
    data = {"cells": cells, "total_free_kib": p.free_memory_kib}
    if a.get("cellno") is not None:
        text = f"{cells[0]['cell']}: {cells[0]['free_kib']} KiB\n"
    elif cells:
        text = "".join(f"{c['cell']:5}: {c['free_kib']:10} KiB\n" for c in cells)
        text += "--------------------\n" + f"Total: {p.free_memory_kib:10} KiB\n"
    else:
        text = f"Total: {p.free_memory_kib} KiB\n"
    s.result(data, text)


@command("sched", "host", "host scheduler and domain parameters",
         "The host's scheduler and the weight/cap of every domain, as xl sched-credit (its aliases"
         " sched-credit, sched-credit2).  With -d DOMAIN only that domain; -w/--weight and -c/--cap set its"
         " parameters (as xl sched-credit -d DOM -w N -c N, and schedinfo).",
         opts=[Opt("domain", "only this domain", value="str", short="d", metavar="DOMAIN"),
               Opt("weight", "set the domain's weight (1..65535)", value="int", short="w"),
               Opt("cap", "set the domain's cap (0..65534, 0 = none)", value="int", short="c")],
         changes=lambda a: a.get("weight") is not None or a.get("cap") is not None,
         aliases=("sched-credit", "sched-credit2"))
def cmd_sched(s: Session, a: Args) -> None:
    h = s.handle
    if a.get("weight") is not None or a.get("cap") is not None or a.get("domain") is not None:
        if a.get("domain") is None:
            raise UsageError("sched: -w/--weight and -c/--cap set one domain's parameters: name it with -d DOMAIN")
        i = s.lookup(a.get("domain"))
        w, c = a.get("weight"), a.get("cap")
        if w is not None or c is not None:
            p = h.set_sched_params(i.domid, weight=w if isinstance(w, int) else None,
                                   cap=c if isinstance(c, int) else None)
        else:
            p = h.sched_params(i.domid)
        sid, name = h.sched_id()
        data = {"scheduler": name, "sched_id": sid,
                "domains": [{"id": i.domid, "name": i.name, "weight": p.weight, "cap": p.cap}]}
        text = f"Scheduler: {name} (id {sid})\n" if not s.opts.quiet else ""
        text += _table(["Name", "ID", "Weight", "Cap"],
                       [[_name(i), str(i.domid), str(p.weight), "-" if p.cap is None else str(p.cap)]],
                       s.opts.quiet, right=(1, 2, 3))
        s.result(data, text)
        return
    sid, name = h.sched_id()
    rows = []
    doms = []
    for i in h.domains(names=True):
        try:
            p = h.sched_params(i.domid)
            weight, cap = p.weight, p.cap
        except Exception:
            weight, cap = None, None
        doms.append({"id": i.domid, "name": i.name, "weight": weight, "cap": cap})
        rows.append([_name(i), str(i.domid), "-" if weight is None else str(weight), "-" if cap is None else str(cap)])
    data = {"scheduler": name, "sched_id": sid, "domains": doms}
    text = f"Scheduler: {name} (id {sid})\n" if not s.opts.quiet else ""
    text += _table(["Name", "ID", "Weight", "Cap"], rows, s.opts.quiet, right=(1, 2, 3))
    s.result(data, text)
