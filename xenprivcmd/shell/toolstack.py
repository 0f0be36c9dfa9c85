"""xpsh commands that act through the toolstack's xenstore nodes: shutdown, reboot,
setmem (the balloon target), setmaxmem (the hypervisor limit), uptime."""

from __future__ import annotations

from .parse import Arg, Args, Opt, UsageError, parse_size_kib
from .registry import DOMAIN, FORCE, LIVE_OPTS, _always, _dom0_guard, _dom_ref, _name, _who, command, shell_words

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional

    from .session import Session

__all__ = ["format_uptime"]


def _request(s: Session, a: Args, word: str) -> None:
    i = s.lookup(a.domain)
    h = s.handle
    if s.dry_store is not None:  # -N: the request, not the wait for an answer
        if i.domid == 0:
            raise UsageError("domain 0 is shut down from inside it, not through xenstore")
        s.dry_store.write(f"/local/domain/{i.domid}/control/shutdown", word)
        return
    wait = bool(a.get("wait"))
    timeout = float(a.get("timeout", 60.0))  # type: ignore[arg-type]
    try:
        after = (h.shutdown if word == "poweroff" else h.reboot)(i, wait=wait, timeout=timeout)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    state = "gone" if after is None else after.state
    reason = None if after is None else after.shutdown_reason
    if wait:
        text = f"Domain {_who(i)} is {state}" + (f" ({reason})" if reason else "")
    else:
        text = f"Domain {_who(i)} is being " + ("shut down" if word == "poweroff" else "rebooted")
    s.result({"domain": _dom_ref(i), "action": "shutdown" if word == "poweroff" else "reboot", "ok": True,
              "waited": wait, "state": state, "shutdown_reason": reason}, text + "\n")


_WAIT = [Opt("wait", "wait until the guest has shut down (else only until it acknowledged)", short="w"),
         Opt("timeout", "seconds --wait waits (default 60)", value="float")]


@command("shutdown", "control", "gracefully shut down a domain",
         "Ask the guest to power off through xenstore (control/shutdown = poweroff, as xl shutdown)."
         "  Fails when no PV driver acknowledges within 10 s; --wait waits until it is down.",
         args=[DOMAIN], opts=_WAIT, changes=_always)
def cmd_shutdown(s: Session, a: Args) -> None:
    _request(s, a, "poweroff")


@command("reboot", "control", "reboot a domain",
         "Ask the guest to reboot through xenstore (control/shutdown = reboot, as xl reboot): it shuts"
         " down with reason reboot and its toolstack builds it again.  --wait waits for the shutdown.",
         args=[DOMAIN], opts=_WAIT, changes=_always)
def cmd_reboot(s: Session, a: Args) -> None:
    _request(s, a, "reboot")


_SIZE = Arg("size", "size", help="new size; a number with an optional unit (default KiB): b, k/KiB, KB, M/MiB, MB,"
                                 " G/GiB, GB, T")


@command("setmem", "control", "change the balloon target",
         "Set the memory the guest's balloon driver aims for (memory/target, as virsh setmem and xl"
         " mem-set); the hypervisor limit (max_mem) follows it as libxl sets it.  A target of 0 or above"
         " the guest's memory/static-max needs --force.",
         args=[DOMAIN, _SIZE],
         opts=[Opt("force", "act on domain 0 too; allow a target of 0 or above the limit")] + LIVE_OPTS,
         changes=_always, aliases=("mem-set",))
def cmd_setmem(s: Session, a: Args) -> None:
    kib = parse_size_kib(str(a.size))
    i = s.lookup(a.domain)
    _dom0_guard(s, i, a, "setmem")
    try:
        target, max_kib = s.handle.set_memory_target(i, kib, force=bool(a.get("force")))
    except ValueError as exc:
        raise UsageError(f"setmem: {shell_words(str(exc))}") from None
    s.result({"domain": _dom_ref(i), "action": "setmem", "ok": True, "target_kib": target,
              "max_memory_kib": max_kib}, "")


@command("setmaxmem", "control", "change the maximum memory limit",
         "Set a domain's hard memory limit (XEN_DOMCTL_max_mem; the balloon target is setmem's)."
         "  A limit below what the domain uses now needs --force.",
         args=[DOMAIN, _SIZE], opts=[FORCE] + LIVE_OPTS, changes=_always, aliases=("mem-max",))
def cmd_setmaxmem(s: Session, a: Args) -> None:
    kib = parse_size_kib(str(a.size))
    i = s.lookup(a.domain)
    _dom0_guard(s, i, a, "setmaxmem")
    try:
        s.handle.set_max_mem(i.domid, kib, force=bool(a.get("force")))
    except ValueError as exc:
        raise UsageError(f"setmaxmem: {shell_words(str(exc))}") from None
    s.result({"domain": _dom_ref(i), "action": "setmaxmem", "ok": True, "max_memory_kib": kib}, "")


def format_uptime(seconds: float) -> str:
    """``xl uptime``'s form: ``H:MM:SS``, or ``N day(s), H:MM:SS``."""
    total = int(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours:2d}:{minutes:02d}:{secs:02d}"
    return f"{days} day{'s' if days != 1 else ''}, {clock}" if days else clock


@command("uptime", "monitor", "domain uptimes",
         "How long each domain (or each one named) has been up, as xl uptime: from the start_time the"
         " toolstack wrote to xenstore (dom0: this machine's uptime); '-' when unknown.",
         args=[Arg("domains", "domain", required=False, multi=True, help="domains to show (default: all)")])
def cmd_uptime(s: Session, a: Args) -> None:
    names = a.get("domains")
    doms: Optional[List[Any]] = [s.lookup(d) for d in names] if isinstance(names, list) else None
    rows = s.handle.uptimes(doms)
    out: List[Dict[str, Any]] = []
    text = "" if s.opts.quiet else f"{'Name':<33} {'ID':>4} Uptime\n"
    for i, up in rows:
        out.append({"id": i.domid, "name": i.name, "uptime_s": None if up is None else round(up, 2)})
        text += f"{_name(i):<33} {i.domid:4d} {'-' if up is None else format_uptime(up)}\n"
    s.result({"domains": out}, text)
