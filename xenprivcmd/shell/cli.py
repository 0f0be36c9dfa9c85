"""xpsh's entry points: global options, one-shot and interactive runs."""

from __future__ import annotations

import os
import sys

from .. import __version__
from .parse import UsageError, split_argv, split_commands
from .registry import stream_isatty
from .session import Options, Session

TYPE_CHECKING = False
if TYPE_CHECKING:  # a one-shot command's start-up imports no typing, readline or interactive parts
    from typing import Any, Dict, List, Optional, Sequence, TextIO, Tuple

__all__ = ["main", "run", "USAGE"]

USAGE = """\
usage: xpsh [options] [COMMAND [ARGS...]]
       xpsh [options] "COMMAND1 ARGS; COMMAND2 ARGS"

  -c, --connect URI   hypervisor connection URI (default: $XPSH_DEFAULT_CONNECT_URI, else xen:///)
  -r, --readonly      refuse every command that changes state
  -q, --quiet         no table headers
  -t, --timing        time each command and list the hypercalls it issued (on stderr)
      --json          machine-readable output (one JSON document per command)
  -N, --dry-run       print the state-changing hypercalls a command would issue, without issuing them
  -V, --version       print the version and exit
  -h, --help          this help
      --complete LINE completions of LINE (what follows the options), one a line: for shell
                      completion scripts; prints nothing on any error

Without a command, xpsh reads commands interactively ('help' lists them).
"""

_FLAGS = {"-r": "readonly", "--readonly": "readonly", "-q": "quiet", "--quiet": "quiet", "-t": "timing",
          "--timing": "timing", "--json": "json", "-N": "dry_run", "--dry-run": "dry_run",
          "-V": "version", "--version": "version", "-h": "help", "--help": "help"}


def parse_global(argv: Sequence[str]) -> Tuple[Dict[str, Any], List[str]]:
    """Global options up to the first non-option word; returns (options, rest)."""
    opts: Dict[str, Any] = {}
    i = 0
    while i < len(argv):
        tok = argv[i]
        if tok == "--":
            i += 1
            break
        if not tok.startswith("-") or tok == "-":
            break
        i += 1
        if tok in ("-c", "--connect"):
            if i >= len(argv):
                raise UsageError(f"option {tok} requires a URI")
            opts["uri"] = argv[i]
            i += 1
        elif tok.startswith("--connect="):
            opts["uri"] = tok.split("=", 1)[1]
        elif tok == "--complete":  # the rest is the line to complete
            opts["complete"] = " ".join(argv[i:])
            return opts, []
        elif tok in _FLAGS:
            opts[_FLAGS[tok]] = True
        elif tok.startswith("-c") and not tok.startswith("--"):
            opts["uri"] = tok[2:]
        elif not tok.startswith("--") and all(f"-{ch}" in _FLAGS for ch in tok[1:]):
            for ch in tok[1:]:
                opts[_FLAGS[f"-{ch}"]] = True
        else:
            from .parse import suggest

            hint = suggest(tok, [k for k in _FLAGS if k.startswith("--")] + ["--connect"])
            raise UsageError(f"unknown option '{tok}'" + (f"; did you mean '{hint}'?" if hint else "")
                             + " (xpsh --help lists them)")
    return opts, list(argv[i:])


def run(argv: Sequence[str], stdout: Optional[TextIO] = None, stderr: Optional[TextIO] = None,
        stdin: Optional[TextIO] = None, handle: Any = None, env: Optional[Dict[str, str]] = None) -> int:
    """Run xpsh with ``argv`` (without the program name); returns the exit status.

    ``handle`` injects an open :class:`~xenprivcmd.Handle` (its transport is
    wrapped for ``-t``/``-N`` during the run and restored afterwards; it is
    not closed).  ``env`` replaces ``os.environ`` for the run.
    """
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    inp = stdin if stdin is not None else sys.stdin
    environ = dict(os.environ if env is None else env)
    try:
        g, rest = parse_global(argv)
    except UsageError as exc:
        err.write(f"error: {exc}\n")
        return 1
    if g.get("help"):
        out.write(USAGE)
        return 0
    if g.get("version"):
        out.write(f"xpsh (xenprivcmd) {__version__}\n")
        return 0
    opts = Options(uri=g.get("uri"), readonly=bool(g.get("readonly")), quiet=bool(g.get("quiet")),
                   timing=bool(g.get("timing")), json_mode=bool(g.get("json")), dry_run=bool(g.get("dry_run")))
    if "complete" in g:
        return complete_line(opts, g["complete"], out, handle, environ)
    session = Session(opts, out, err, handle=handle, env=environ)
    try:
        if rest:
            try:
                commands = split_argv(rest)
                for tokens in commands:
                    _hoist_globals(session, tokens)
            except UsageError as exc:
                session.error(str(exc))
                return 1
            for tokens in commands:
                session.execute(tokens)
                if session.quit:
                    break
            return 1 if session.failures else 0
        return interactive(session, inp)
    except KeyboardInterrupt:
        err.write("\n")
        return 130
    finally:
        count = session.hypercalls_issued() if environ.get("XPSH_DEBUG_COUNT") else 0
        session.close()
        if environ.get("XPSH_DEBUG_COUNT"):
            err.write(f"xpsh: hypercalls issued: {count}\n")
            err.flush()


def complete_line(opts: Options, line: str, out: TextIO, handle: Any = None,
                  env: Optional[Dict[str, str]] = None) -> int:
    """``xpsh --complete LINE``: the interactive shell's completions of the last word of ``LINE``
    (commands, their options, domain names and ids from ``-c URI``), one a line.  Silent: any
    error (no hypervisor, no permission) prints nothing; the exit status is 0."""
    import io

    session = Session(opts, out, io.StringIO(), handle=handle, env=env)
    try:
        from .interactive import complete

        text = "" if not line or line[-1].isspace() else line.split()[-1]
        for word in complete(session, line, text):
            out.write(word + "\n")
    except Exception:  # noqa: BLE001, S110 - a completion never shows an error
        pass
    finally:
        try:
            session.close()
        except Exception:  # noqa: BLE001, S110
            pass
    return 0


#: Global options also taken after a one-shot command (``xpsh list --json``) when the
#: command has no option of that spelling (``dmesg -c`` is dmesg's, ``top -r`` top's).
_HOISTED = {"--json": "json", "-q": "quiet", "--quiet": "quiet", "-r": "readonly", "--readonly": "readonly",
            "-t": "timing", "--timing": "timing", "-N": "dry_run", "--dry-run": "dry_run"}


def _hoist_globals(session: Session, tokens: List[str]) -> None:
    """Take the global options out of one command's words and apply them (one-shot argv only)."""
    cmd = session.command(tokens[0]) if tokens else None
    if cmd is None:
        return
    longs = {f"--{o.name}": o for o in cmd.opts} | {f"--{a.name}": None for a in cmd.args}
    shorts = {f"-{o.short}": o for o in cmd.opts if o.short}
    keep = tokens[:1]
    i = 1
    while i < len(tokens):
        tok = tokens[i]
        i += 1
        if tok == "--":
            keep += tokens[i - 1:]
            break
        own = longs.get(tok.split("=", 1)[0]) if tok.startswith("--") else shorts.get(tok)
        if tok in longs or own is not None:
            keep.append(tok)
            if (own is None or own.value is not None) and "=" not in tok and i < len(tokens):
                keep.append(tokens[i])  # its value: never a global option
                i += 1
            continue
        if tok in _HOISTED:
            setattr(session.opts, _HOISTED[tok], True)
        elif tok in ("-c", "--connect") or tok.startswith("--connect="):
            if "=" in tok:
                session.opts.uri = tok.split("=", 1)[1]
            elif i < len(tokens):
                session.opts.uri = tokens[i]
                i += 1
            else:
                raise UsageError(f"option {tok} requires a URI")
        else:
            keep.append(tok)
    tokens[:] = keep


def interactive(session: Session, stdin: TextIO) -> int:
    """The read-eval loop: with readline on a terminal, plain lines otherwise."""
    session.interactive = True
    tty = stream_isatty(stdin) and stdin is sys.stdin
    if not tty:
        for line in stdin:
            _run_line(session, line)
            if session.quit:
                break
        return 1 if session.failures else 0
    from .interactive import Readline

    rl = Readline(session)
    rl.start()
    out = session.stdout
    out.write(f"Welcome to xpsh {__version__}, the Xen privcmd shell"
              f"{' (read-only)' if session.opts.readonly else ''}{' (dry run)' if session.opts.dry_run else ''}.\n\n"
              "Type:  'help' for help with commands\n"
              "       'quit' to quit\n\n")
    out.flush()
    prompt = "xpsh > " if session.opts.readonly else "xpsh # "
    try:
        while not session.quit:
            try:
                line = input(prompt)
            except EOFError:
                out.write("\n")
                break
            except KeyboardInterrupt:
                out.write("\n")
                continue
            try:
                _run_line(session, line)
            except KeyboardInterrupt:
                out.write("\n")
    finally:
        rl.stop()
    return 0


def _run_line(session: Session, line: str) -> None:
    try:
        commands = split_commands(line)
    except UsageError as exc:
        session.error(str(exc))
        session.failures += 1
        return
    for tokens in commands:
        session.execute(tokens)
        if session.quit:
            return


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The ``xpsh`` console script (and ``python -m xenprivcmd``)."""
    args = sys.argv[1:] if argv is None else argv
    try:
        return run(args)
    except BrokenPipeError:  # xpsh list | head
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
        except OSError:
            pass
        return 1
