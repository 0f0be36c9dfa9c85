"""xpsh commands: host, monitoring, control, shell.

Each command is a function ``(session, args)`` registered with its argument
spec, its help, and whether (for given arguments) it changes state.  Output
goes through :meth:`Session.result` (text, or JSON with ``--json``).
"""

from __future__ import annotations

import time

from .. import __version__
from .parse import (
    Arg,
    Args,
    Opt,
    UsageError,
    affinity_map,
    format_cpulist,
    parse_cpulist,
    parse_set,
    parse_size_kib,
)
from .session import Session, stream_isatty

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Sequence

__all__ = ["Command", "COMMANDS", "GROUPS", "resolve"]

GROUPS = (
    ("host", "Host and Hypervisor"),
    ("monitor", "Domain Monitoring"),
    ("control", "Domain Control"),
    ("shell", "Shell"),
)


class Command:
    def __init__(self, name: str, func: Callable[[Session, Args], None], group: str, summary: str,
                 description: str, args: Sequence[Arg], opts: Sequence[Opt],
                 changes: Callable[[Args], bool], aliases: Sequence[str]) -> None:
        self.name = name
        self.func = func
        self.group = group
        self.summary = summary
        self.description = description
        self.args = list(args)
        self.opts = list(opts)
        self.changes = changes
        self.aliases = list(aliases)

    def synopsis(self) -> str:
        parts = [self.name]
        for a in self.args:
            parts.append(f"<{a.name}>" if a.required else f"[<{a.name}>]")
        for o in self.opts:
            flag = f"--{o.name}" + (f" <{o.metavar}>" if o.value else "")
            parts.append(f"[{flag}]" + ("..." if o.multi else ""))
        return " ".join(parts)


COMMANDS: Dict[str, Command] = {}
ALIASES: Dict[str, str] = {}


def _never(_a: Args) -> bool:
    return False


def _always(_a: Args) -> bool:
    return True


def command(name: str, group: str, summary: str, description: str = "", args: Sequence[Arg] = (),
            opts: Sequence[Opt] = (), changes: Callable[[Args], bool] = _never,
            aliases: Sequence[str] = ()) -> Callable[[Callable[[Session, Args], None]], Callable[[Session, Args], None]]:
    def deco(func: Callable[[Session, Args], None]) -> Callable[[Session, Args], None]:
        COMMANDS[name] = Command(name, func, group, summary, description or summary, args, opts, changes, aliases)
        for a in aliases:
            ALIASES[a] = name
        return func

    return deco


def resolve(name: str) -> Optional[Command]:
    return COMMANDS.get(ALIASES.get(name, name))


def all_names() -> List[str]:
    return sorted(list(COMMANDS) + list(ALIASES))


DOMAIN = Arg("domain", "domain", help="domain name, id or uuid")
FORCE = Opt("force", "act on domain 0 too")


# -- helpers ----------------------------------------------------------------------------------

def _name(info: Any) -> str:
    return info.name if info.name else ("Domain-0" if info.domid == 0 else "-")


def _dom_ref(info: Any) -> Dict[str, Any]:
    return {"id": info.domid, "name": info.name}


def _who(info: Any) -> str:
    return f"'{info.name}'" if info.name else str(info.domid)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], quiet: bool, right: Sequence[int] = ()) -> str:
    """virsh's vshTable layout: ' cell' padded to the column width, two spaces
    between columns, a dashes line under the header (width + 3 per column)."""
    cells = [list(headers)] + [list(r) for r in rows]
    widths = [max(len(r[i]) for r in (cells if not quiet else cells[1:] or [list(headers)])) for i in range(len(headers))]
    out: List[str] = []

    def fmt(row: Sequence[str]) -> str:
        parts = []
        for i, c in enumerate(row):
            last = i == len(row) - 1
            if i in right:
                cell = " " + c.rjust(widths[i])
            else:
                cell = " " + (c if last else c.ljust(widths[i]))
            parts.append(cell + ("" if last else "  "))
        return "".join(parts)

    if not quiet:
        out.append(fmt(headers))
        out.append("-" * sum(w + 3 for w in widths))
    out += [fmt(r) for r in cells[1:]]
    return "\n".join(out) + "\n"


def _labels(pairs: Sequence[Sequence[Any]], width: int = 15) -> str:
    return "".join(f"{str(k) + ':':<{width}} {v}\n" for k, v in pairs)


def _dom0_guard(s: Session, info: Any, a: Args, what: str) -> None:
    if info.domid == 0 and not a.get("force"):
        raise UsageError(f"refusing to {what} domain 0 ({_name(info)}) without --force")


def _info_dict(i: Any) -> Dict[str, Any]:
    return {
        "id": i.domid,
        "name": i.name,
        "uuid": i.uuid_str,
        "state": i.state,
        "state_letters": i.state_letters,
        "memory_kib": i.memory_kib,
        "max_memory_kib": i.max_memory_kib,
        "vcpus": i.vcpus,
        "online_vcpus": i.nr_online_vcpus,
        "cpu_time_ns": i.cpu_time,
    }


def _seconds(ns: int) -> str:
    return f"{ns / 1e9:.1f}s"


# -- host -------------------------------------------------------------------------------------

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


@command("uri", "host", "print the hypervisor canonical URI")
def cmd_uri(s: Session, a: Args) -> None:
    s.result({"uri": s.uri}, s.uri)


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
            cells.append({"cell": n.node, "free_kib": n.memfree // 1024, "total_kib": n.memsize // 1024})
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
         "The host's scheduler and the weight/cap of every domain (like xl sched-credit).")
def cmd_sched(s: Session, a: Args) -> None:
    h = s.handle
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


@command("dmesg", "host", "hypervisor console ring",
         "Print the hypervisor's console ring (xl dmesg).  -c clears it after reading; -f follows it,"
         " polling every --interval seconds (--count polls, default until interrupted).",
         opts=[Opt("clear", "clear the ring after reading", short="c"),
               Opt("follow", "keep printing what is new", short="f"),
               Opt("interval", "seconds between polls with -f (default 1)", value="float"),
               Opt("count", "stop -f after this many polls", value="int")],
         changes=lambda a: bool(a.get("clear")))
def cmd_dmesg(s: Session, a: Args) -> None:
    h = s.handle
    if not a.get("follow"):
        text = h.read_console(clear=bool(a.get("clear")))
        s.result({"console": text}, text)
        return
    interval = a.get("interval", 1.0)
    count = a.get("count")
    assert isinstance(interval, float) or isinstance(interval, int)
    polls = 0
    first = True
    try:
        while True:
            chunk = h.read_console(clear=bool(a.get("clear")) and first, incremental=True)
            first = False
            if chunk:
                if s.opts.json:
                    s.result({"console": chunk})
                else:
                    s.write(chunk)
                    s.stdout.flush()
            polls += 1
            if isinstance(count, int) and polls >= count:
                break
            time.sleep(float(interval))
    except KeyboardInterrupt:
        s.line()


# -- monitoring -------------------------------------------------------------------------------

_STATE_FILTERS = {
    "state-running": ("running", "idle", "no state"),
    "state-paused": ("paused",),
    "state-shutoff": ("shut off",),
    "state-other": ("crashed", "dying", "in shutdown"),
}


@command("list", "monitor", "list domains",
         "List domains (virsh list).  Without --all, domains that are shut off or dying are left out.",
         opts=[Opt("all", "list every domain, shut off and dying ones too"),
               Opt("state-running", "only running (and idle) domains"),
               Opt("state-paused", "only paused domains"),
               Opt("state-shutoff", "only shut off domains"),
               Opt("state-other", "only crashed or dying domains"),
               Opt("name", "print names only"),
               Opt("uuid", "print UUIDs only"),
               Opt("id", "print ids only"),
               Opt("xl", "xl list layout (Mem, VCPUs, xl state letters, Time)")])
def cmd_list(s: Session, a: Args) -> None:
    infos = s.handle.domains(names=True)
    wanted = [st for k, v in _STATE_FILTERS.items() if a.get(k) for st in v]
    if wanted:
        infos = [i for i in infos if i.state in wanted]
    elif not a.get("all"):
        infos = [i for i in infos if i.state not in ("shut off", "dying")]
    data = {"domains": [_info_dict(i) for i in infos]}
    if a.get("name") or a.get("uuid") or a.get("id"):
        lines = []
        for i in infos:
            parts = []
            if a.get("id"):
                parts.append(str(i.domid))
            if a.get("uuid"):
                parts.append(str(i.uuid))
            if a.get("name"):
                parts.append(_name(i))
            lines.append("  ".join(parts))
        s.result(data, "".join(line + "\n" for line in lines) + ("" if s.opts.quiet else "\n"))
        return
    if a.get("xl"):
        text = "" if s.opts.quiet else f"{'Name':<40} {'ID':>5} {'Mem':>5} {'VCPUs':>5}\tState\tTime(s)\n"
        for i in infos:
            text += (f"{_name(i):<40} {i.domid:5d} {i.memory_kib // 1024:5d} {i.nr_online_vcpus:5d}"
                     f"     {i.state_letters} {i.cpu_time / 1e9:10.1f}\n")
        s.result(data, text)
        return
    rows = [[str(i.domid), _name(i), i.state] for i in infos]
    s.result(data, _table(["Id", "Name", "State"], rows, s.opts.quiet) + ("" if s.opts.quiet else "\n"))


@command("dominfo", "monitor", "domain information", "Basic information about a domain.", args=[DOMAIN])
def cmd_dominfo(s: Session, a: Args) -> None:
    i = s.lookup(a.domain)
    data = dict(_info_dict(i))
    data.update({
        "os_type": "hvm" if i.hvm else "linux",
        "hvm": i.hvm, "hap": i.hap, "paused": i.paused, "dying": i.dying,
        "shutdown_reason": i.shutdown_reason, "cpupool": i.cpupool, "ssidref": i.ssidref, "flags": i.flags,
    })
    rows: List[Sequence[Any]] = [
        ("Id", i.domid), ("Name", _name(i)), ("UUID", str(i.uuid)), ("OS Type", data["os_type"]),
        ("State", i.state), ("CPU(s)", i.vcpus), ("CPU time", _seconds(i.cpu_time)),
        ("Max memory", f"{i.max_memory_kib} KiB"), ("Used memory", f"{i.memory_kib} KiB"),
        ("Xen state", i.state_letters),
    ]
    if i.shutdown_reason:
        rows.append(("Shutdown reason", i.shutdown_reason))
    if i.cpupool is not None:
        rows.append(("Cpupool", i.cpupool))
    s.result(data, _labels(rows) + "\n")


def _reason(i: Any) -> str:
    if i.shutdown_reason:
        return str(i.shutdown_reason)
    if i.paused:
        return "user"
    return "unknown"


@command("domstate", "monitor", "domain state", "The state of a domain (and with --reason, why).",
         args=[DOMAIN], opts=[Opt("reason", "also print the reason for the state")])
def cmd_domstate(s: Session, a: Args) -> None:
    i = s.lookup(a.domain)
    reason = _reason(i)
    text = f"{i.state} ({reason})" if a.get("reason") else i.state
    s.result({"id": i.domid, "name": i.name, "state": i.state, "state_letters": i.state_letters,
              "reason": reason}, text + "\n")


@command("domid", "monitor", "convert a domain name or UUID to domain id", args=[DOMAIN])
def cmd_domid(s: Session, a: Args) -> None:
    i = s.lookup(a.domain)
    s.result({"id": i.domid, "name": i.name, "uuid": str(i.uuid)}, str(i.domid))


@command("domname", "monitor", "convert a domain id or UUID to domain name", args=[DOMAIN])
def cmd_domname(s: Session, a: Args) -> None:
    i = s.lookup(a.domain)
    s.result({"id": i.domid, "name": i.name, "uuid": str(i.uuid)}, _name(i))


@command("domuuid", "monitor", "convert a domain name or id to domain UUID", args=[DOMAIN])
def cmd_domuuid(s: Session, a: Args) -> None:
    i = s.lookup(a.domain)
    s.result({"id": i.domid, "name": i.name, "uuid": str(i.uuid)}, str(i.uuid))


@command("vcpuinfo", "monitor", "detailed domain vcpu information",
         "Every vcpu of a domain: where it runs, its state, CPU time and affinity.",
         args=[DOMAIN], opts=[Opt("pretty", "print the affinity as a cpu list")])
def cmd_vcpuinfo(s: Session, a: Args) -> None:
    h = s.handle
    i = s.lookup(a.domain)
    nr = h.nr_cpus()
    vcpus = []
    text = ""
    for v in h.vcpu_info(i.domid):
        try:
            aff = h.vcpu_affinity(i.domid, v.vcpu)
            hard: Optional[List[int]] = sorted(aff.hard)
            soft = None if aff.soft is None else sorted(aff.soft)
        except Exception:
            hard, soft = None, None
        state = "offline" if not v.online else ("running" if v.running else "blocked")
        vcpus.append({
            "vcpu": v.vcpu, "cpu": v.cpu if v.online else None, "state": state, "online": v.online,
            "cpu_time_ns": v.cpu_time, "affinity": hard,
            "affinity_map": None if hard is None else affinity_map(hard, nr), "soft_affinity": soft,
        })
        shown = "-" if hard is None else (format_cpulist(hard) if a.get("pretty") else affinity_map(hard, nr))
        text += _labels([
            ("VCPU", v.vcpu), ("CPU", v.cpu if v.online else "-"), ("State", state),
            ("CPU time", _seconds(v.cpu_time)), ("CPU Affinity", shown),
        ]) + "\n"
    s.result({"domain": _dom_ref(i), "vcpus": vcpus}, text)


@command("vcpucount", "monitor", "domain vcpu counts", args=[DOMAIN])
def cmd_vcpucount(s: Session, a: Args) -> None:
    i = s.lookup(a.domain)
    text = f"{'maximum':<12} {'live':<12} {i.vcpus:3d}\n{'current':<12} {'live':<12} {i.nr_online_vcpus:3d}\n"
    s.result({"id": i.domid, "name": i.name, "maximum": i.vcpus, "current": i.nr_online_vcpus}, text)


@command("schedinfo", "monitor", "show/set scheduler parameters",
         "Show a domain's scheduler parameters; set them with --set weight=N --set cap=N"
         " (or --weight N --cap N).",
         args=[DOMAIN],
         opts=[Opt("set", "a parameter to set: weight=N or cap=N", value="str", multi=True, metavar="name=value"),
               Opt("weight", "set the weight (1..65535)", value="int"),
               Opt("cap", "set the cap (0..65534, 0 = none)", value="int")],
         changes=lambda a: bool(a.get("set")) or a.get("weight") is not None or a.get("cap") is not None)
def cmd_schedinfo(s: Session, a: Args) -> None:
    sets = a.get("set") or []
    assert isinstance(sets, list)
    values = parse_set(sets, ("weight", "cap"))
    for k in ("weight", "cap"):
        v = a.get(k)
        if isinstance(v, int):
            values[k] = v
    i = s.lookup(a.domain)
    h = s.handle
    if values:
        p = h.set_sched_params(i.domid, weight=values.get("weight"), cap=values.get("cap"))
    else:
        p = h.sched_params(i.domid)
    rows = [("Scheduler", p.scheduler), ("weight", p.weight)]
    if p.cap is not None:
        rows.append(("cap", p.cap))
    text = "".join(f"{k:<15}: {v}\n" for k, v in rows)
    s.result({"domain": _dom_ref(i), "scheduler": p.scheduler, "weight": p.weight, "cap": p.cap}, text)


@command("top", "monitor", "live per-domain CPU and memory usage",
         "A refreshing per-domain CPU/memory view (like xentop), CPU%% computed from cpu_time deltas."
         "  --iterations N --delay S runs N rounds in batch mode (no screen clearing).",
         opts=[Opt("iterations", "number of rounds (batch mode)", value="int", short=None),
               Opt("delay", "seconds between rounds (default 3)", value="float"),
               Opt("batch", "batch mode: do not clear the screen", short="b")])
def cmd_top(s: Session, a: Args) -> None:
    h = s.handle
    delay = float(a.get("delay", 3.0))  # type: ignore[arg-type]
    iterations = a.get("iterations")
    live = iterations is None and not a.get("batch") and not s.opts.json and stream_isatty(s.stdout)
    if iterations is None and not live and not a.get("batch"):
        iterations = 1
    if isinstance(iterations, int) and iterations < 1:
        raise UsageError("top: --iterations must be at least 1")
    p = h.physinfo()
    total_kib = p.total_memory_kib or 1
    prev: Dict[int, int] = {}
    prev_t: Optional[float] = None
    rounds: List[Dict[str, Any]] = []
    n = 0
    try:
        while True:
            now = time.monotonic()
            infos = h.domains(names=True)
            interval = None if prev_t is None else now - prev_t
            doms = []
            for i in infos:
                pct: Optional[float] = None
                if interval and i.domid in prev:
                    pct = round(max(0, i.cpu_time - prev[i.domid]) / (interval * 1e9) * 100, 1)
                doms.append({
                    "id": i.domid, "name": i.name, "state": i.state, "state_letters": i.state_letters,
                    "cpu_time_ns": i.cpu_time, "cpu_percent": pct,
                    "memory_kib": i.memory_kib, "memory_percent": round(i.memory_kib * 100 / total_kib, 1),
                    "max_memory_kib": i.max_memory_kib, "vcpus": i.nr_online_vcpus,
                })
            prev = {i.domid: i.cpu_time for i in infos}
            prev_t = now
            rnd = {"time": round(time.time(), 3), "interval_s": None if interval is None else round(interval, 3),
                   "domains": doms}
            rounds.append(rnd)
            if not s.opts.json:
                s.write(("\x1b[H\x1b[2J" if live else "") + _top_text(s, rnd, p, infos) + ("" if live else "\n"))
                s.stdout.flush()
            n += 1
            if isinstance(iterations, int) and n >= iterations:
                break
            time.sleep(delay)
    except KeyboardInterrupt:
        if not s.opts.json:
            s.line()
    if s.opts.json:
        s.result({"iterations": rounds})


def _top_text(s: Session, rnd: Dict[str, Any], p: Any, infos: Sequence[Any]) -> str:
    states = [d["state"] for d in rnd["domains"]]
    summary = (f"xpsh top - {time.strftime('%H:%M:%S', time.localtime(rnd['time']))}   "
               f"{len(states)} domains: {sum(st in ('running', 'no state') for st in states)} running, "
               f"{states.count('idle')} blocked, {states.count('paused')} paused, {states.count('crashed')} crashed, "
               f"{states.count('dying')} dying, {states.count('shut off')} shutdown\n"
               f"Mem: {p.total_memory_kib}k total, {p.total_memory_kib - p.free_memory_kib}k used, "
               f"{p.free_memory_kib}k free    CPUs: {p.nr_cpus} @ {p.cpu_khz // 1000}MHz\n")
    head = f"{'NAME':>16} {'STATE':>6} {'CPU(sec)':>9} {'CPU(%)':>7} {'MEM(k)':>10} {'MEM(%)':>7} {'MAXMEM(k)':>10} {'VCPUS':>6}\n"
    body = ""
    for d in rnd["domains"]:
        pct = "-" if d["cpu_percent"] is None else f"{d['cpu_percent']:.1f}"
        name = d["name"] or ("Domain-0" if d["id"] == 0 else str(d["id"]))
        body += (f"{name[:16]:>16} {d['state_letters']:>6} {d['cpu_time_ns'] // 1_000_000_000:9d} {pct:>7} "
                 f"{d['memory_kib']:10d} {d['memory_percent']:7.1f} {d['max_memory_kib']:10d} {d['vcpus']:6d}\n")
    return ("" if s.opts.quiet else summary + head) + body


# -- control ----------------------------------------------------------------------------------

@command("suspend", "control", "suspend (pause) a domain", "Pause a domain (XEN_DOMCTL_pausedomain).",
         args=[DOMAIN], opts=[FORCE], changes=_always, aliases=("pause",))
def cmd_suspend(s: Session, a: Args) -> None:
    i = s.lookup(a.domain)
    _dom0_guard(s, i, a, "suspend")
    s.handle.pause(i.domid)
    s.result({"domain": _dom_ref(i), "action": "suspend", "ok": True}, f"Domain {_who(i)} suspended\n")


@command("resume", "control", "resume (unpause) a domain", "Unpause a domain (XEN_DOMCTL_unpausedomain).",
         args=[DOMAIN], changes=_always, aliases=("unpause",))
def cmd_resume(s: Session, a: Args) -> None:
    i = s.lookup(a.domain)
    s.handle.unpause(i.domid)
    s.result({"domain": _dom_ref(i), "action": "resume", "ok": True}, f"Domain {_who(i)} resumed\n")


@command("destroy", "control", "destroy (stop) a domain", "Destroy a domain at once (XEN_DOMCTL_destroydomain).",
         args=[DOMAIN], opts=[FORCE], changes=_always)
def cmd_destroy(s: Session, a: Args) -> None:
    i = s.lookup(a.domain)
    _dom0_guard(s, i, a, "destroy")
    s.handle.destroy(i.domid)
    s.result({"domain": _dom_ref(i), "action": "destroy", "ok": True}, f"Domain {_who(i)} destroyed\n")


def _setmem(s: Session, a: Args, action: str) -> None:
    kib = parse_size_kib(str(a.size))
    i = s.lookup(a.domain)
    _dom0_guard(s, i, a, action)
    s.handle.set_max_mem(i.domid, kib)
    s.result({"domain": _dom_ref(i), "action": action, "ok": True, "memory_kib": kib}, "")


_SIZE = Arg("size", "size", help="new size; a number with an optional unit (default KiB): b, k/KiB, KB, M/MiB, MB, G/GiB, GB, T")


@command("setmem", "control", "change the memory allocation limit",
         "Set a domain's memory limit (XEN_DOMCTL_max_mem; xpsh has no balloon driver channel,"
         " so this is the same limit setmaxmem sets).",
         args=[DOMAIN, _SIZE], opts=[FORCE], changes=_always)
def cmd_setmem(s: Session, a: Args) -> None:
    _setmem(s, a, "setmem")


@command("setmaxmem", "control", "change the maximum memory limit",
         "Set a domain's maximum memory (XEN_DOMCTL_max_mem).", args=[DOMAIN, _SIZE], opts=[FORCE], changes=_always)
def cmd_setmaxmem(s: Session, a: Args) -> None:
    _setmem(s, a, "setmaxmem")


@command("setvcpus", "control", "change the number of virtual CPUs",
         "Set a domain's maximum vcpu count (XEN_DOMCTL_max_vcpus; Xen before 4.12 only).",
         args=[DOMAIN, Arg("count", "int", help="number of vcpus")], changes=_always)
def cmd_setvcpus(s: Session, a: Args) -> None:
    try:
        n = int(str(a.count), 10)
    except ValueError:
        raise UsageError(f"setvcpus: invalid vcpu count {a.count!r}") from None
    i = s.lookup(a.domain)
    s.handle.set_max_vcpus(i.domid, n)
    s.result({"domain": _dom_ref(i), "action": "setvcpus", "ok": True, "count": n}, "")


@command("vcpupin", "control", "show or set vcpu affinity",
         "Without a cpulist, show the affinity of every vcpu (or of VCPU); with one, pin VCPU"
         " (cpulist: 0-3,^2 or r for all; --soft sets the soft affinity).",
         args=[DOMAIN, Arg("vcpu", "int", required=False, help="vcpu number"),
               Arg("cpulist", "cpulist", required=False, help="host cpus: N, N-M, ^N, comma separated, or r")],
         opts=[Opt("soft", "set the soft affinity instead of the hard one")],
         changes=lambda a: a.get("cpulist") is not None)
def cmd_vcpupin(s: Session, a: Args) -> None:
    vcpu: Optional[int] = None
    if a.get("vcpu") is not None:
        try:
            vcpu = int(str(a.vcpu), 10)
        except ValueError:
            raise UsageError(f"vcpupin: invalid vcpu number {a.vcpu!r}") from None
    cpulist = a.get("cpulist")
    h = s.handle
    if cpulist is not None:
        if vcpu is None:
            raise UsageError("vcpupin: a cpulist needs a vcpu")
        cpus = parse_cpulist(str(cpulist), h.nr_cpus())
        i = s.lookup(a.domain)
        if a.get("soft"):
            h.set_vcpu_affinity(i.domid, vcpu, soft=cpus)
        else:
            h.set_vcpu_affinity(i.domid, vcpu, hard=cpus)
        s.result({"domain": _dom_ref(i), "action": "vcpupin", "ok": True, "vcpu": vcpu,
                  "soft" if a.get("soft") else "hard": sorted(cpus)}, "")
        return
    i = s.lookup(a.domain)
    vcpus = [vcpu] if vcpu is not None else list(range(i.vcpus))
    rows = []
    out = []
    for v in vcpus:
        aff = h.vcpu_affinity(i.domid, v)
        out.append({"vcpu": v, "affinity": sorted(aff.hard),
                    "soft_affinity": None if aff.soft is None else sorted(aff.soft)})
        rows.append([str(v), format_cpulist(aff.hard)])
    s.result({"domain": _dom_ref(i), "vcpus": out}, _table(["VCPU", "CPU Affinity"], rows, s.opts.quiet) + "\n")


# -- shell ------------------------------------------------------------------------------------

@command("help", "shell", "print help", "Print the list of commands, or detailed help on one command or group.",
         args=[Arg("command", "command", required=False, help="a command or group name")])
def cmd_help(s: Session, a: Args) -> None:
    what = a.get("command")
    if what is None:
        if s.opts.json:
            s.result({"commands": [{"name": c.name, "group": c.group, "summary": c.summary, "aliases": c.aliases}
                                   for c in COMMANDS.values()]})
            return
        text = "Grouped commands:\n\n"
        for key, title in GROUPS:
            text += f" {title} (help keyword '{key}'):\n"
            for c in sorted((c for c in COMMANDS.values() if c.group == key), key=lambda c: c.name):
                text += f"    {c.name:<16} {c.summary}\n"
            text += "\n"
        s.result(None, text)
        return
    word = str(what)
    groups = dict(GROUPS)
    if word in groups:
        text = f" {groups[word]} (help keyword '{word}'):\n"
        for c in sorted((c for c in COMMANDS.values() if c.group == word), key=lambda c: c.name):
            text += f"    {c.name:<16} {c.summary}\n"
        s.result({"group": word, "commands": [c.name for c in COMMANDS.values() if c.group == word]}, text + "\n")
        return
    cmd = resolve(word)
    if cmd is None:
        from .parse import suggest

        hint = suggest(word, list(COMMANDS) + list(groups))
        raise UsageError(f"command or command group '{word}' doesn't exist" + (f"; did you mean '{hint}'?" if hint else ""))
    text = f"  NAME\n    {cmd.name} - {cmd.summary}\n\n  SYNOPSIS\n    {cmd.synopsis()}\n\n"
    text += f"  DESCRIPTION\n    {cmd.description}\n\n"
    if cmd.aliases:
        text += f"  ALIASES\n    {', '.join(cmd.aliases)}\n\n"
    if cmd.args or cmd.opts:
        text += "  OPTIONS\n"
        for arg in cmd.args:
            flag = f"[--{arg.name}] <{arg.kind if arg.kind != 'domain' else 'string'}>"
            text += f"    {flag:<24} {arg.help}\n"
        for o in cmd.opts:
            flag = (f"-{o.short}, " if o.short else "") + f"--{o.name}" + (f" <{o.metavar}>" if o.value else "")
            text += f"    {flag:<24} {o.help}\n"
        text += "\n"
    data = {"name": cmd.name, "group": cmd.group, "summary": cmd.summary, "synopsis": cmd.synopsis(),
            "description": cmd.description, "aliases": cmd.aliases,
            "options": [a2.name for a2 in cmd.args] + [o.name for o in cmd.opts]}
    s.result(data, text)


@command("connect", "shell", "(re)connect to a hypervisor",
         "Close the connection and open URI (default: the default URI).",
         args=[Arg("uri", "str", required=False, help="hypervisor URI, e.g. xen:/// or sim:///default")])
def cmd_connect(s: Session, a: Args) -> None:
    uri = a.get("uri")
    s.connect(str(uri) if uri else (s.env.get("XPSH_DEFAULT_CONNECT_URI") or "xen:///"))
    s.result({"uri": s.uri}, "")


@command("quit", "shell", "quit this interactive shell", aliases=("exit",))
def cmd_quit(s: Session, a: Args) -> None:
    s.quit = True
