"""Line editing, completion and persistent history for interactive xpsh."""

from __future__ import annotations

import os
import shlex
from typing import Any, List, Optional

from .allcommands import all_names, resolve
from .parse import split_commands
from .session import Session

__all__ = ["Readline", "history_path", "complete"]

HISTORY_LENGTH = 1000


def history_path(env: Any) -> str:
    """``$XDG_CACHE_HOME/xpsh/history`` (``~/.cache/xpsh/history`` by default)."""
    base = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "xpsh", "history")


def _open_quote(line: str) -> Optional[int]:
    """Where the quote that is still open at the end of ``line`` starts (the line parser's
    quoting: '...' literal, "..." with \\ and \\" escapes, \\ outside), else None."""
    at: Optional[int] = None
    quote = ""
    i = 0
    while i < len(line):
        ch = line[i]
        if quote:
            if ch == quote:
                quote, at = "", None
            elif quote == '"' and ch == "\\":
                i += 1
        elif ch == "\\":
            i += 1
        elif ch in ("'", '"'):
            quote, at = ch, i
        i += 1
    return at


def complete(session: Session, line: str, text: str) -> List[str]:
    """Candidates for the word ``text`` at the end of ``line`` (the line up to the cursor).

    Readline splits words at blanks, so in ``dominfo 'my w`` it asks for ``w``: the word
    really typed starts at the open quote, and each candidate is cut to what replaces ``w``.
    """
    q = _open_quote(line)
    if q is not None and q < len(line) - len(text):
        word = line[q:]
        cut = len(word) - len(text)
        return [c[cut:] for c in complete(session, line, word) if c.startswith(word)]
    head = line[: len(line) - len(text)] if text else line
    before = head.rsplit(";", 1)[-1]
    try:
        words = split_commands(before)
        tokens = words[0] if words else []
    except Exception:
        tokens = before.split()
    if not tokens:
        return sorted(n for n in all_names() if n.startswith(text))
    cmd = resolve(tokens[0])
    if cmd is None:
        return []
    if cmd.name == "help":
        return sorted(n for n in all_names() + ["host", "monitor", "control", "shell"] if n.startswith(text))
    # The option the previous word opened, if it takes a value.
    prev = tokens[-1] if len(tokens) > 1 else ""
    if prev.startswith("--"):
        name = prev[2:]
        opt = next((o for o in cmd.opts if o.name == name), None)
        if opt is not None and opt.value is not None:
            if name == "set":
                return [w for w in ("weight=", "cap=") if w.startswith(text)]
            return []
        arg = next((a for a in cmd.args if a.name == name), None)
        if arg is not None:
            return _values(session, arg.kind, text)
    if text.startswith("-"):
        flags = [f"--{o.name}" for o in cmd.opts] + [f"--{a.name}" for a in cmd.args]
        return sorted(f for f in flags if f.startswith(text))
    # Which positional is being typed: count the positionals already given.
    given = 0
    skip = False
    for tok in tokens[1:]:
        if skip:
            skip = False
            continue
        if tok.startswith("--"):
            name = tok[2:].split("=", 1)[0]
            o = next((o for o in cmd.opts if o.name == name), None)
            if "=" not in tok and ((o is not None and o.value is not None) or any(a.name == name for a in cmd.args)):
                skip = True
            continue
        if tok.startswith("-") and len(tok) > 1 and not tok[1].isdigit():
            continue
        given += 1
    if given < len(cmd.args):
        return _values(session, cmd.args[given].kind, text)
    if cmd.args and cmd.args[-1].multi:  # uptime web1 db<TAB>
        return _values(session, cmd.args[-1].kind, text)
    return []


def _values(session: Session, kind: str, text: str) -> List[str]:
    if kind == "domain":
        # What is typed may open a quote ('my w); candidates are quoted for the line
        # parser, so a name with blanks, quotes or ';' stays one argument.
        typed = text[1:] if text[:1] in ("'", '"') else text
        if text[:1] == '"':  # keep the quote the user opened
            return sorted({'"' + w.replace("\\", "\\\\").replace('"', '\\"') + '"'
                           for w in session.domain_words() if w.startswith(typed)})
        return sorted({shlex.quote(w) for w in session.domain_words() if w.startswith(typed)})
    if kind == "command":
        return sorted(n for n in all_names() if n.startswith(text))
    return []


class Readline:
    """Installs completion and loads/saves history around an interactive session."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.path = history_path(session.env)
        self._matches: List[str] = []
        self._rl: Optional[Any] = None
        self._old_completer: Any = None
        self._old_delims: Optional[str] = None

    def start(self) -> None:
        try:
            import readline
        except ImportError:  # pragma: no cover - Python built without readline
            return
        self._rl = readline
        self._old_completer = readline.get_completer()
        self._old_delims = readline.get_completer_delims()
        readline.set_completer(self._complete)
        readline.set_completer_delims(" \t\n;")
        if "libedit" in (readline.__doc__ or ""):
            readline.parse_and_bind("bind ^I rl_complete")
        else:
            readline.parse_and_bind("tab: complete")
        readline.set_history_length(HISTORY_LENGTH)
        readline.clear_history()
        try:
            readline.read_history_file(self.path)
        except OSError:
            pass

    def stop(self) -> None:
        rl = self._rl
        if rl is None:
            return
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            rl.write_history_file(self.path)
        except OSError as exc:
            self.session.stderr.write(f"xpsh: cannot save history to {self.path}: {exc}\n")
        rl.set_completer(self._old_completer)
        if self._old_delims is not None:
            rl.set_completer_delims(self._old_delims)
        self._rl = None

    def _complete(self, text: str, state: int) -> Optional[str]:
        rl = self._rl
        if rl is None:
            return None
        if state == 0:
            try:
                line = rl.get_line_buffer()[: rl.get_endidx()]
                self._matches = complete(self.session, line, text)
            except Exception:
                self._matches = []
        if state < len(self._matches):
            return self._matches[state]
        return None

