"""xpsh commands of the shell itself: uri, help, connect, quit."""

from __future__ import annotations

from .parse import Arg, Args, UsageError, suggest
from .registry import GROUPS, command

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .session import Session

__all__ = ["cmd_uri", "cmd_help", "cmd_connect", "cmd_quit"]


@command("uri", "host", "print the hypervisor canonical URI")
def cmd_uri(s: Session, a: Args) -> None:
    s.result({"uri": s.uri}, s.uri)


@command("help", "shell", "print help", "Print the list of commands, or detailed help on one command or group.",
         args=[Arg("command", "command", required=False, help="a command or group name")])
def cmd_help(s: Session, a: Args) -> None:
    what = a.get("command")
    if what is None:
        if s.opts.json:
            s.result({"commands": [{"name": c.name, "group": c.group, "summary": c.summary, "aliases": c.aliases}
                                   for c in s.commands()]})
            return
        text = "Grouped commands:\n\n"
        for key, title in GROUPS:
            text += f" {title} (help keyword '{key}'):\n"
            for c in sorted((c for c in s.commands() if c.group == key),
                            key=lambda c: c.name):
                text += f"    {c.name:<16} {c.summary}\n"
            text += "\n"
        s.result(None, text)
        return
    word = str(what)
    groups = dict(GROUPS)
    if word in groups:
        text = f" {groups[word]} (help keyword '{word}'):\n"
        members = [c for c in s.commands() if c.group == word]
        for c in sorted(members, key=lambda c: c.name):
            text += f"    {c.name:<16} {c.summary}\n"
        s.result({"group": word, "commands": [c.name for c in members]}, text + "\n")
        return
    cmd = s.command(word)
    if cmd is None:
        hint = suggest(word, [c.name for c in s.commands()] + list(groups))
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
         "Open URI (default: the current URI again) and switch to it; if it cannot be opened,"
         " the current connection stays.",
         args=[Arg("uri", "str", required=False, help="hypervisor URI, e.g. xen:/// or sim:///default")])
def cmd_connect(s: Session, a: Args) -> None:
    uri = a.get("uri")
    s.connect(str(uri) if uri else s.uri)
    s.result({"uri": s.uri}, "")


@command("quit", "shell", "quit this interactive shell", aliases=("exit",))
def cmd_quit(s: Session, a: Args) -> None:
    s.quit = True
