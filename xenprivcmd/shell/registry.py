"""The xpsh command registry: :class:`Command`, the :func:`command` decorator that
registers one, the catalogue of where each command is defined, and the helpers the
command modules share (argument specs, names, tables, label blocks).

Each command is a function ``(session, args)`` registered with its argument spec, its
help, and whether (for given arguments) it changes state.  Output goes through
:meth:`Session.result` (text, or JSON with ``--json``).  The command modules (host,
domains, monitor, builtins, xlstyle, node, toolstack) import this module and never the
session at run time; the session imports a command's module when it first runs it
(:meth:`Session.command`), so a one-shot command loads only its own.
"""

from __future__ import annotations

from .parse import Arg, Args, Opt, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Sequence

    from .session import Session

__all__ = ["Command", "COMMANDS", "ALIASES", "GROUPS", "HOMES", "command", "resolve", "all_names",
           "vcpu_state", "stream_isatty", "shell_words"]

GROUPS = (
    ("host", "Host and Hypervisor"),
    ("monitor", "Domain Monitoring"),
    ("control", "Domain Control"),
    ("shell", "Shell"),
)

#: Every command name and alias, in help's order, with the module of this package that
#: defines it (importing the module registers its commands).  tests/test_layering.py checks
#: it against the registered commands.
HOMES = {
    "version": "node", "uri": "builtins", "nodeinfo": "node", "capabilities": "node", "freecell": "node",
    "sched": "node", "sched-credit": "node", "sched-credit2": "node", "dmesg": "monitor",
    "list": "domains", "dominfo": "domains", "domstate": "domains", "domid": "domains", "domname": "domains",
    "domuuid": "domains", "vcpuinfo": "domains", "vcpucount": "domains", "schedinfo": "domains",
    "domifstat": "stats", "domblkstat": "stats", "domstats": "stats",
    "top": "top",
    "suspend": "domains", "pause": "domains", "resume": "domains", "unpause": "domains", "destroy": "domains",
    "setvcpus": "domains", "vcpu-set": "domains", "vcpupin": "domains", "vcpu-pin": "domains",
    "help": "builtins", "connect": "builtins", "quit": "builtins", "exit": "builtins",
    "info": "xlstyle", "topology": "xlstyle", "numainfo": "xlstyle", "cpupool-list": "xlstyle",
    "vcpu-list": "xlstyle",
    "shutdown": "toolstack", "reboot": "toolstack", "setmem": "toolstack", "mem-set": "toolstack",
    "setmaxmem": "toolstack", "mem-max": "toolstack",
    "uptime": "toolstack", "event": "events", "console": "console", "create": "create",
}
_RANK = {word: i for i, word in enumerate(HOMES)}


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
            parts.append((f"<{a.name}>" if a.required else f"[<{a.name}>]") + ("..." if a.multi else ""))
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
        _register(Command(name, func, group, summary, description or summary, args, opts, changes, aliases))
        for a in aliases:
            ALIASES[a] = name
        return func

    return deco


def _register(cmd: Command) -> None:
    """Add ``cmd`` where the catalogue puts it (help lists COMMANDS in their order),
    whatever order the command modules were imported in; uncatalogued ones go last."""
    rank = _RANK.get(cmd.name, len(_RANK))
    later = [n for n in COMMANDS if _RANK.get(n, len(_RANK)) > rank]
    COMMANDS[cmd.name] = cmd
    for n in later:
        COMMANDS[n] = COMMANDS.pop(n)


def resolve(name: str) -> Optional[Command]:
    return COMMANDS.get(ALIASES.get(name, name))


def all_names() -> List[str]:
    return sorted(list(COMMANDS) + list(ALIASES))


DOMAIN = Arg("domain", "domain", help="domain name, id or uuid")
FORCE = Opt("force", "act on domain 0 too")
#: virsh's --live/--current/--config: accepted and meaningless here (Xen keeps no domain
#: configuration; every change is to the running domain).
LIVE_OPTS = [Opt("live", "accepted for virsh habits: every change is live"),
             Opt("current", "accepted for virsh habits: every change is live"),
             Opt("config", "accepted for virsh habits: there is no stored configuration to change")]


# -- helpers ----------------------------------------------------------------------------------

def _name(info: Any) -> str:
    return _name_of(info.domid, info.name)


def _name_of(domid: int, name: Optional[str]) -> str:
    """How a domain is named in text output: its name, Domain-0, or ``-`` when it has none."""
    return name if name else ("Domain-0" if domid == 0 else "-")


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


def vcpu_state(v: Any) -> str:
    """offline, running, blocked, or runnable (online, neither running nor blocked: a
    paused domain's vcpu, or one waiting for a pcpu)."""
    if not v.online:
        return "offline"
    return "running" if v.running else ("blocked" if v.blocked else "runnable")


def _seconds(ns: int) -> str:
    return f"{ns / 1e9:.1f}s"



def shell_words(message: str) -> str:
    """A library error's advice in the shell's words: ``force=True`` is ``--force``, the
    methods are their commands (``set_max_mem`` is ``setmaxmem``)."""
    if "raise the limit with set_max_mem, or force=True" in message:
        # the limit memory/static-max is the toolstack's: only --force goes past it
        advice = ("--force sets it anyway" if "(memory/static-max)" in message
                  else "raise the limit with setmaxmem, or use --force")
        message = message.replace("raise the limit with set_max_mem, or force=True", advice)
    for lib, sh in (("(force=True to set it anyway)", "(--force sets it anyway)"),
                    ("(force=True to set it)", "(--force sets it)"), ("force=True", "--force"),
                    ("set_memory_target", "setmem"), ("set_max_mem", "setmaxmem"),
                    ("set_online_vcpus", "setvcpus"), ("set_max_vcpus", "setvcpus --maximum")):
        message = message.replace(lib, sh)
    return message


def stream_isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
