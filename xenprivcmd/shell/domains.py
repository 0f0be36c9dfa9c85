"""xpsh domain commands: listing and inspecting domains (list, dominfo, domstate,
domid/domname/domuuid, vcpuinfo, vcpucount, schedinfo) and controlling them (suspend,
resume, destroy, setvcpus, vcpupin)."""

from __future__ import annotations

import errno

from .parse import Arg, Args, Opt, UsageError, affinity_map, format_cpulist, parse_cpulist, parse_set
from .registry import (
    DOMAIN,
    FORCE,
    LIVE_OPTS,
    _always,
    _dom0_guard,
    _dom_ref,
    _info_dict,
    _labels,
    _name,
    _seconds,
    _table,
    _who,
    command,
    vcpu_state,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, List, Optional, Sequence

    from .session import Session

__all__ = ["cmd_list", "cmd_dominfo", "cmd_domstate", "cmd_domid", "cmd_domname", "cmd_domuuid", "cmd_vcpuinfo",
           "cmd_vcpucount", "cmd_schedinfo", "cmd_suspend", "cmd_resume", "cmd_destroy", "cmd_setvcpus",
           "cmd_vcpupin"]


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
               Opt("xl", "xl list layout (Mem, VCPUs, xl state letters, Time)"),
               Opt("inactive", "only inactive (defined, not running) domains: always none, Xen keeps no"
                   " inactive domains")],
         args=[Arg("domains", "domain", required=False, help="with --xl: only these domains (xl list DOM...)",
                   multi=True)])
def cmd_list(s: Session, a: Args) -> None:
    wanted_doms = a.get("domains") or []
    assert isinstance(wanted_doms, list)
    if wanted_doms and not a.get("xl"):
        raise UsageError("list: naming domains needs --xl (as xl list DOM); virsh list takes none")
    if a.get("inactive"):
        infos = []
    elif wanted_doms:
        infos = [s.lookup(d) for d in wanted_doms]
    else:
        infos = s.handle.domains(names=True)
    wanted = [st for k, v in _STATE_FILTERS.items() if a.get(k) for st in v]
    if wanted:
        infos = [i for i in infos if i.state in wanted]
    elif not a.get("all") and not wanted_doms:
        infos = [i for i in infos if i.state not in ("shut off", "dying")]
    data = {"domains": [_info_dict(i) for i in infos]}
    if a.get("xl") and (a.get("name") or a.get("uuid") or a.get("id")):
        raise UsageError("list: --xl cannot be combined with --name, --uuid or --id")
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
        ("State", i.state), ("CPU(s)", i.nr_online_vcpus), ("CPU time", _seconds(i.cpu_time)),
        ("Max memory", f"{i.max_memory_kib} KiB"), ("Used memory", f"{i.memory_kib} KiB"),
        ("Xen state", i.state_letters),
    ]
    if i.shutdown_reason:
        rows.append(("Shutdown reason", i.shutdown_reason))
    if i.cpupool is not None:
        rows.append(("Cpupool", i.cpupool))
    s.result(data, _labels(rows) + "\n")


def _reason(s: Session, i: Any) -> str:
    """virsh's reason words where they apply: a shut down domain's reason from Xen; a paused
    one ``user``; a running one ``unpaused`` after this session resumed it, else ``booted``."""
    if i.shutdown_reason:
        return str(i.shutdown_reason)
    known = s.reasons.get((i.domid, str(i.uuid)))
    if i.paused:
        return "user"
    if i.dying:
        return "destroyed"
    return known if known == "unpaused" else "booted"


@command("domstate", "monitor", "domain state", "The state of a domain (and with --reason, why).",
         args=[DOMAIN], opts=[Opt("reason", "also print the reason for the state")])
def cmd_domstate(s: Session, a: Args) -> None:
    i = s.lookup(a.domain)
    reason = _reason(s, i)
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
    for v in h.vcpu_list([i.domid]):  # vcpus and affinities in few multicall traps
        hard: List[int] = sorted(v.hard)
        soft = None if v.soft is None else sorted(v.soft)
        state = vcpu_state(v)
        vcpus.append({
            "vcpu": v.vcpu, "cpu": v.cpu if v.online else None, "state": state, "online": v.online,
            "cpu_time_ns": v.cpu_time, "hard_affinity": hard,
            "affinity_map": affinity_map(hard, nr), "soft_affinity": soft,
        })
        shown = format_cpulist(hard) if a.get("pretty") else affinity_map(hard, nr)
        text += _labels([
            ("VCPU", v.vcpu), ("CPU", v.cpu if v.online else "-"), ("State", state),
            ("CPU time", _seconds(v.cpu_time)), ("CPU Affinity", shown),
        ]) + "\n"
    s.result({"domain": _dom_ref(i), "vcpus": vcpus}, text)


@command("vcpucount", "monitor", "domain vcpu counts", args=[DOMAIN])
def cmd_vcpucount(s: Session, a: Args) -> None:
    i = s.lookup(a.domain)
    text = f"{'maximum':<12} {'live':<12} {i.vcpus:3d}\n{'current':<12} {'live':<12} {i.nr_online_vcpus:3d}\n"
    s.result({"id": i.domid, "name": i.name, "vcpus": i.vcpus, "online_vcpus": i.nr_online_vcpus}, text)


@command("schedinfo", "monitor", "show/set scheduler parameters",
         "Show a domain's scheduler parameters; set them with --set weight=N --set cap=N,"
         " --weight N --cap N, or as words after the domain (schedinfo web1 weight=512).",
         args=[DOMAIN, Arg("params", "str", required=False, multi=True,
                           help="parameters to set as name=value (weight=N, cap=N), as with --set")],
         opts=LIVE_OPTS + [Opt("set", "a parameter to set: weight=N or cap=N", value="str", multi=True,
                               metavar="name=value"),
               Opt("weight", "set the weight (1..65535)", value="int"),
               Opt("cap", "set the cap (0..65534, 0 = none)", value="int")],
         changes=lambda a: bool(a.get("set") or a.get("params")) or a.get("weight") is not None
         or a.get("cap") is not None)
def cmd_schedinfo(s: Session, a: Args) -> None:
    sets = list(a.get("set") or []) + list(a.get("params") or [])  # type: ignore[arg-type]
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


# -- control ----------------------------------------------------------------------------------

@command("suspend", "control", "suspend (pause) a domain",
         "Pause a domain (XEN_DOMCTL_pausedomain).  A paused domain is left as it is (as virsh does): Xen"
         " counts pauses, and a second one would take a second resume.",
         args=[DOMAIN], opts=[FORCE], changes=_always, aliases=("pause",))
def cmd_suspend(s: Session, a: Args) -> None:
    i = s.lookup(a.domain)
    _dom0_guard(s, i, a, "suspend")
    if not i.paused:
        s.handle.pause(i.domid)
    s.reasons[(i.domid, str(i.uuid))] = "user"
    s.result({"domain": _dom_ref(i), "action": "suspend", "ok": True, "changed": not i.paused},
             f"Domain {_who(i)} suspended\n")


@command("resume", "control", "resume (unpause) a domain",
         "Unpause a domain (XEN_DOMCTL_unpausedomain).  When something else paused it too (Xen counts"
         " pauses), it stays paused and xpsh says so.",
         args=[DOMAIN], changes=_always, aliases=("unpause",))
def cmd_resume(s: Session, a: Args) -> None:
    i = s.lookup(a.domain)
    h = s.handle
    try:
        h.unpause(i.domid)
    except OSError as exc:
        if exc.errno == errno.EINVAL and not h.domain_info(i.domid, name=False).paused:
            raise UsageError(f"domain {_who(i)} is not paused") from None
        raise
    s.reasons[(i.domid, str(i.uuid))] = "unpaused"
    still = s.dry is None and h.domain_info(i.domid, name=False).paused
    if still:
        s.stderr.write(f"warning: domain {_who(i)} is still paused: it was paused more than once (Xen counts"
                       " pauses; another resume, or the tool that paused it, unpauses it)\n")
    s.result({"domain": _dom_ref(i), "action": "resume", "ok": True, "paused": still},
             f"Domain {_who(i)} resumed\n")


@command("destroy", "control", "destroy (stop) a domain",
         "Destroy a domain at once (XEN_DOMCTL_destroydomain) and remove its xenstore nodes as xl destroy does"
         " (/local/domain/N, /vm/UUID, /libxl/N, its devices' backend directories).",
         args=[DOMAIN], opts=[FORCE], changes=_always)
def cmd_destroy(s: Session, a: Args) -> None:
    from ..control import destroy

    i = s.lookup(a.domain)
    _dom0_guard(s, i, a, "destroy")
    if i.domid == 0:  # --force: the hypervisor's answer, as asked (no xenstore of dom0's to remove)
        s.handle.destroy(0)
    else:
        destroy(s.handle, i.domid)
    s.result({"domain": _dom_ref(i), "action": "destroy", "ok": True}, f"Domain {_who(i)} destroyed\n")


@command("setvcpus", "control", "change the number of virtual CPUs",
         "Set how many vcpus the guest runs (as virsh setvcpus --live and xl vcpu-set do: xenstore"
         " cpu/N/availability, which the guest's PV drivers follow), 1 up to its maximum.  --maximum changes"
         " the maximum itself (XEN_DOMCTL_max_vcpus): Xen before 4.12 only, and only upwards; from 4.12 it is"
         " fixed when the domain is created.",
         args=[DOMAIN, Arg("count", "int", help="number of vcpus")],
         opts=[FORCE, Opt("maximum", "change the maximum (max_vcpus, Xen before 4.12), not the vcpus in use")]
         + LIVE_OPTS, changes=_always, aliases=("vcpu-set",))
def cmd_setvcpus(s: Session, a: Args) -> None:
    try:
        n = int(str(a.count), 10)
    except ValueError:
        raise UsageError(f"setvcpus: invalid vcpu count {a.count!r}") from None
    i = s.lookup(a.domain)
    h = s.handle
    if not a.get("maximum"):
        _dom0_guard(s, i, a, "setvcpus")
        if not 1 <= n <= i.vcpus:
            raise UsageError(f"setvcpus: domain {_who(i)} can run 1..{i.vcpus} vcpus (its maximum), not {n}"
                             + ("; setvcpus --maximum raises the maximum (Xen before 4.12)" if n > i.vcpus else ""))
        h.set_online_vcpus(i.domid, n)
        s.result({"domain": _dom_ref(i), "action": "setvcpus", "ok": True, "online_vcpus": n}, "")
        return
    xen = h.abi.xen
    if xen >= (4, 12):
        raise UsageError(f"setvcpus: from Xen 4.12 a domain's vcpu count is fixed at creation"
                         f" (domain {_who(i)} has {i.vcpus}); this is Xen {h.abi.release}")
    if n < i.vcpus:
        raise UsageError(f"setvcpus: Xen {h.abi.release} cannot lower a domain's maximum vcpus (domain {_who(i)}"
                         f" has {i.vcpus}): max_vcpus only grows; setvcpus {i.name or i.domid} {n}"
                         " (without --maximum) takes vcpus offline instead")
    try:
        h.set_max_vcpus(i.domid, n)
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            raise UsageError(f"setvcpus: Xen {h.abi.release} refused {n} vcpus for domain {_who(i)} (it has"
                             f" {i.vcpus}; Xen allows at most its MAX_VIRT_CPUS, and only before the domain has"
                             " run on old releases)") from None
        raise
    s.result({"domain": _dom_ref(i), "action": "setvcpus", "ok": True, "vcpus": n}, "")


@command("vcpupin", "control", "show or set vcpu affinity",
         "Without a cpulist, show the affinity of every vcpu (or of VCPU); with one, pin VCPU"
         " (cpulist: 0-3,^2 or r for all; --soft sets the soft affinity).",
         args=[DOMAIN, Arg("vcpu", "int", required=False, help="vcpu number"),
               Arg("cpulist", "cpulist", required=False, help="host cpus: N, N-M, ^N, comma separated, or r")],
         opts=LIVE_OPTS + [Opt("soft", "set the soft affinity instead of the hard one")],
         changes=lambda a: a.get("cpulist") is not None, aliases=("vcpu-pin",))
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
                  "soft_affinity" if a.get("soft") else "hard_affinity": sorted(cpus)}, "")
        return
    i = s.lookup(a.domain)
    vcpus = [vcpu] if vcpu is not None else list(range(i.vcpus))
    rows = []
    out = []
    for v in vcpus:
        aff = h.vcpu_affinity(i.domid, v)
        out.append({"vcpu": v, "hard_affinity": sorted(aff.hard),
                    "soft_affinity": None if aff.soft is None else sorted(aff.soft)})
        rows.append([str(v), format_cpulist(aff.hard)])
    s.result({"domain": _dom_ref(i), "vcpus": out}, _table(["VCPU", "CPU Affinity"], rows, s.opts.quiet) + "\n")
