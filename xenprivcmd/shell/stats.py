"""xpsh I/O and statistics commands: domifstat, domblkstat (virsh's), domstats (virsh's groups).

The counters are dom0's netback and blkback ones (:mod:`xenprivcmd.iostats`), from the
guest's side as virsh shows them: ``rx_bytes`` is what the guest received.
"""

from __future__ import annotations

from .parse import Arg, Args, Opt, UsageError
from .registry import DOMAIN, _dom_ref, _name, _who, command, vcpu_state

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Tuple

    from .session import Session

__all__ = ["cmd_domifstat", "cmd_domblkstat", "cmd_domstats", "interface_dict", "disk_dict", "NET_FIELDS",
           "VIRSH_STATE", "VIRSH_VCPU_STATE"]

#: The counters domifstat prints, in virsh's order (InterfaceStats' names).
NET_FIELDS = ("rx_bytes", "rx_packets", "rx_errs", "rx_drop", "tx_bytes", "tx_packets", "tx_errs", "tx_drop")


def interface_dict(i: Any) -> Dict[str, Any]:
    """One interface in the JSON schema (shell README): InterfaceStats' names."""
    d = {"name": i.name, "devid": i.devid, "mac": i.mac}
    d.update((k, getattr(i, k)) for k in NET_FIELDS)
    return d


def disk_dict(b: Any) -> Dict[str, Any]:
    """One disk in the JSON schema: BlockStats' names, bytes beside blkback's 512-byte sectors."""
    return {"name": b.name, "devid": b.devid, "rd_req": b.rd_req, "rd_bytes": b.rd_bytes, "rd_sect": b.rd_sect,
            "wr_req": b.wr_req, "wr_bytes": b.wr_bytes, "wr_sect": b.wr_sect, "oo_req": b.oo_req,
            "f_req": b.f_req, "ds_req": b.ds_req}


def _pick(items: List[Any], wanted: Optional[str], what: str, info: Any, keys: Any) -> List[Any]:
    if not items:
        raise UsageError(f"domain {_who(info)} has no {what}")
    if wanted is None:
        return items
    found = [x for x in items if wanted in keys(x)]
    if not found:
        names = ", ".join(x.name for x in items)
        raise UsageError(f"domain {_who(info)} has no {what.split(' (')[0][:-1]} {wanted!r} (it has: {names})")
    return found


@command("domifstat", "monitor", "network interface counters of a domain",
         "A domain's network interfaces (netback vifs) as virsh domifstat prints them, one counter a line:"
         " 'vif1.0 rx_bytes 3288'.  rx is what the guest received, tx what it sent (netback counts the other"
         " way round; xentop's NETTX is this rx).  IFACE: the interface's name in dom0 (vif1.0), its MAC or"
         " its device number; without it, every interface.",
         args=[DOMAIN, Arg("interface", "str", required=False, help="vif name (vif1.0), MAC or device number")])
def cmd_domifstat(s: Session, a: Args) -> None:
    info = s.lookup(a.domain)
    wanted = a.get("interface")
    nets = _pick(s.handle.interface_stats(info.domid), None if wanted is None else str(wanted).lower(),
                 "network interfaces (netback vifs)", info,
                 lambda i: (i.name.lower(), (i.mac or "").lower(), str(i.devid)))
    text = "".join(f"{i.name} {k} {getattr(i, k)}\n" for i in nets for k in NET_FIELDS)
    s.result({"domain": _dom_ref(info), "interfaces": [interface_dict(i) for i in nets]}, text)


_HUMAN = (("rd_req", "number of read operations:"), ("rd_bytes", "number of bytes read:"),
          ("wr_req", "number of write operations:"), ("wr_bytes", "number of bytes written:"),
          ("errs", "error count:"), ("flush_operations", "number of flush operations:"))


def _virsh_block(b: Any) -> List[Tuple[str, int]]:
    """virsh domblkstat's fields for one blkback disk, as libvirt's libxl driver fills them
    (errs: blkback's oo_req; flush_operations: its f_req)."""
    return [("rd_req", b.rd_req), ("rd_bytes", b.rd_bytes), ("wr_req", b.wr_req), ("wr_bytes", b.wr_bytes),
            ("errs", b.oo_req), ("flush_operations", b.f_req)]


@command("domblkstat", "monitor", "disk I/O counters of a domain",
         "A domain's virtual disks (blkback vbds) as virsh domblkstat prints them: 'xvda rd_req 15', then"
         " rd_bytes, wr_req, wr_bytes, errs (blkback's out-of-requests count, as libvirt reports it) and"
         " flush_operations.  Bytes are blkback's 512-byte sectors.  DEV: the disk's name in the guest (xvda)"
         " or its device number; without it, every disk.  --human: virsh's labelled form.",
         args=[DOMAIN, Arg("device", "str", required=False, help="disk name (xvda) or device number")],
         opts=[Opt("human", "labelled output, as virsh domblkstat --human")])
def cmd_domblkstat(s: Session, a: Args) -> None:
    info = s.lookup(a.domain)
    wanted = a.get("device")
    if isinstance(wanted, str) and wanted.startswith("/dev/"):
        wanted = wanted[5:]
    disks = _pick(s.handle.block_stats(info.domid), None if wanted is None else str(wanted),
                  "disks (blkback vbds)", info, lambda b: (b.name, str(b.devid)))
    out = []
    for b in disks:
        fields = _virsh_block(b)
        if a.get("human"):
            labels = dict(_HUMAN)
            out.append(f"Device: {b.name}\n" + "".join(f" {labels[k]:<31} {v}\n" for k, v in fields))
        else:
            out.append("".join(f"{b.name} {k} {v}\n" for k, v in fields))
    s.result({"domain": _dom_ref(info), "disks": [disk_dict(b) for b in disks]}, "\n".join(out))


# -- domstats -------------------------------------------------------------------------------------

#: virsh's numbers for domain states (virDomainState) and vcpu states (virVcpuState).
VIRSH_STATE = {"no state": 0, "running": 1, "idle": 2, "paused": 3, "in shutdown": 4, "dying": 4, "shut off": 5,
               "crashed": 6}
VIRSH_VCPU_STATE = {"offline": 0, "running": 1, "blocked": 2, "runnable": 1}
#: virsh's reason numbers for the reason words domstate gives, per state (virDomain*Reason).
VIRSH_REASON = {("running", "booted"): 1, ("running", "unpaused"): 5, ("paused", "user"): 2,
                ("shut off", "poweroff"): 1, ("shut off", "reboot"): 1, ("shut off", "suspend"): 1,
                ("shut off", "destroyed"): 2, ("crashed", "crash"): 1}

GROUPS = ("state", "cpu-total", "balloon", "vcpu", "net", "block")


@command("domstats", "monitor", "statistics of domains, by virsh's groups",
         "Statistics of the domains named (default: every one) in virsh domstats' groups and keys: state,"
         " cpu-total (cpu.time), balloon, vcpu, net (--interface) and block; every group unless some are"
         " asked for.  Text: virsh's 'Domain: NAME' blocks of 'group.key=value' lines.  --json: one document,"
         " the groups as objects with the shell's usual key names (README, JSON schema).",
         args=[Arg("domains", "domain", required=False, multi=True, help="domains (default: all)")],
         opts=[Opt("state", "the state group"), Opt("cpu-total", "the cpu-total group (cpu.time)"),
               Opt("balloon", "the balloon group"), Opt("vcpu", "the vcpu group"),
               Opt("interface", "the net group (virsh's flag)"), Opt("net", "the net group"),
               Opt("block", "the block group"),
               Opt("list-running", "only running domains"), Opt("list-paused", "only paused domains"),
               Opt("list-shutoff", "only shut off domains")])
def cmd_domstats(s: Session, a: Args) -> None:
    from .domains import _reason

    h = s.handle
    names = a.get("domains") or []
    assert isinstance(names, list)
    infos = [s.lookup(d) for d in names] if names else h.domains(names=True)
    filters = [state for flag, states in (("list-running", ("running", "idle")), ("list-paused", ("paused",)),
                                          ("list-shutoff", ("shut off",))) if a.get(flag) for state in states]
    if filters:
        infos = [i for i in infos if i.state in filters]
    groups = [g for g in GROUPS if a.get(g) or (g == "net" and a.get("interface"))] or list(GROUPS)
    vcpus: Dict[int, List[Any]] = {}
    if "vcpu" in groups and infos:
        for v in h.vcpu_list([i.domid for i in infos]):
            vcpus.setdefault(v.domid, []).append(v)
    nets: Dict[int, List[Any]] = {}
    disks: Dict[int, List[Any]] = {}
    if "net" in groups:
        for x in h.interface_stats():
            nets.setdefault(x.domid, []).append(x)
    if "block" in groups:
        for x in h.block_stats():
            disks.setdefault(x.domid, []).append(x)
    docs, text = [], []
    for i in infos:
        doc: Dict[str, Any] = {"domain": _dom_ref(i)}
        flat: List[Tuple[str, Any]] = []
        if "state" in groups:
            reason = _reason(s, i)
            doc["state"] = {"state": i.state, "reason": reason}
            flat += [("state.state", VIRSH_STATE.get(i.state, 0)),
                     ("state.reason", VIRSH_REASON.get((i.state, reason), 0))]
        if "cpu-total" in groups:
            doc["cpu"] = {"cpu_time_ns": i.cpu_time}
            flat.append(("cpu.time", i.cpu_time))
        if "balloon" in groups:
            doc["balloon"] = {"memory_kib": i.memory_kib, "max_memory_kib": i.max_memory_kib}
            flat += [("balloon.current", i.memory_kib), ("balloon.maximum", i.max_memory_kib)]
        if "vcpu" in groups:
            rows = vcpus.get(i.domid, [])
            doc["vcpu"] = {"vcpus": i.vcpus, "online_vcpus": i.nr_online_vcpus,
                           "vcpu_list": [{"vcpu": v.vcpu, "state": vcpu_state(v), "cpu_time_ns": v.cpu_time}
                                    for v in rows]}
            flat += [("vcpu.current", i.nr_online_vcpus), ("vcpu.maximum", i.vcpus)]
            for v in rows:
                flat += [(f"vcpu.{v.vcpu}.state", VIRSH_VCPU_STATE[vcpu_state(v)]),
                         (f"vcpu.{v.vcpu}.time", v.cpu_time)]
        if "net" in groups:
            mine = nets.get(i.domid, [])
            doc["net"] = [interface_dict(x) for x in mine]
            flat.append(("net.count", len(mine)))
            for n, x in enumerate(mine):
                flat.append((f"net.{n}.name", x.name))
                flat += [(f"net.{n}.{k.replace('_packets', '.pkts').replace('_', '.')}", getattr(x, k))
                         for k in NET_FIELDS]
        if "block" in groups:
            mine = disks.get(i.domid, [])
            doc["block"] = [disk_dict(x) for x in mine]
            flat.append(("block.count", len(mine)))
            for n, x in enumerate(mine):
                flat += [(f"block.{n}.name", x.name), (f"block.{n}.rd.reqs", x.rd_req),
                         (f"block.{n}.rd.bytes", x.rd_bytes), (f"block.{n}.wr.reqs", x.wr_req),
                         (f"block.{n}.wr.bytes", x.wr_bytes), (f"block.{n}.fl.reqs", x.f_req),
                         (f"block.{n}.discard.reqs", x.ds_req), (f"block.{n}.errs", x.oo_req)]
        docs.append(doc)
        text.append(f"Domain: '{_name(i)}'\n" + "".join(f"  {k}={v}\n" for k, v in flat) + "\n")
    s.result({"domains": docs}, "".join(text))
