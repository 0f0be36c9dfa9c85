"""Input syntax of xpsh: command lines, options, sizes, cpu lists."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing, re, shlex and trace are not loaded by a one-shot command's start-up
    import re
    from typing import Dict, FrozenSet, Iterable, List, Optional, Sequence, Tuple, Union

    Value = Union[None, bool, int, float, str, List[str]]

__all__ = [
    "UsageError",
    "split_commands",
    "parse_size_kib",
    "parse_cpulist",
    "format_cpulist",
    "affinity_map",
    "Arg",
    "Opt",
    "Args",
    "parse_args",
]


class UsageError(Exception):
    """Bad input from the user: reported as one ``error:`` line, exit status 1."""


# -- command lines --------------------------------------------------------------------------

def split_commands(line: str) -> List[List[str]]:
    """``'list --all; dominfo "my vm"'`` -> ``[["list", "--all"], ["dominfo", "my vm"]]``.

    Shell-like quoting; ``;`` separates commands; ``#`` starts a comment.
    """
    import shlex

    lex = shlex.shlex(line, posix=True, punctuation_chars=";")
    lex.whitespace_split = True
    lex.commenters = "#"
    out: List[List[str]] = [[]]
    try:
        for tok in lex:
            if tok and set(tok) == {";"}:
                out.append([])
            else:
                out[-1].append(tok)
    except ValueError as exc:  # "No closing quotation"
        raise UsageError(f"cannot parse command line: {exc}") from None
    return [c for c in out if c]


def split_argv(argv: Sequence[str]) -> List[List[str]]:
    """Command tokens from a one-shot argv: a single argument holding a
    whole command line (``xpsh "list; dominfo 1"``) is split like a typed
    line; otherwise the arguments are taken as they are, with lone ``;``
    separating commands.  An empty or blank line is no command (as an empty
    interactive line)."""
    if len(argv) == 1 and not argv[0].strip():
        return []
    if len(argv) == 1 and any(ch == ";" or ch.isspace() for ch in argv[0]):
        return split_commands(argv[0])
    out: List[List[str]] = [[]]
    for tok in argv:
        if tok == ";":
            out.append([])
        else:
            out[-1].append(tok)
    return [c for c in out if c]


# -- sizes ------------------------------------------------------------------------------------

def _re(pattern: str) -> "re.Pattern[str]":
    """A compiled pattern, ``re`` imported on first use (sizes, cpu lists)."""
    import re

    return re.compile(pattern)


def format_cpulist(cpus: Iterable[int]) -> str:
    """``{0, 1, 2, 5}`` -> ``"0-2,5"`` (:func:`xenprivcmd.transport.decode.format_cpulist`)."""
    from ..transport.decode import format_cpulist as fmt

    return fmt(cpus)


_SIZE_RE = r"^\s*(\d+)\s*([A-Za-z]*)\s*$"
_POWERS = {"": 0, "b": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5, "e": 6}


def parse_size_kib(text: str, default_unit: str = "KiB") -> int:
    """A virsh scaled integer, in KiB (rounded up).

    Suffixes as virsh: ``b``/``bytes``; ``k``, ``KiB`` (1024) vs ``KB``
    (1000); likewise ``M``/``MiB``/``MB``, ``G``, ``T``, ``P``, ``E``.  No
    suffix means ``default_unit``.
    """
    m = _re(_SIZE_RE).match(text)
    if not m:
        raise UsageError(f"invalid size {text!r}: expected a number with an optional unit (k, KiB, KB, M, MiB, MB, G, ...)")
    number, unit = int(m.group(1)), m.group(2) or default_unit
    scale = _scale(unit)
    if scale is None:
        raise UsageError(f"invalid size {text!r}: unknown unit {unit!r} (b, k/KiB, KB, M/MiB, MB, G/GiB, GB, T/TiB, TB, P, E)")
    nbytes = number * scale
    return -(-nbytes // 1024)


def _scale(unit: str) -> Optional[int]:
    u = unit.lower()
    if u in ("b", "byte", "bytes"):
        return 1
    first, rest = u[:1], u[1:]
    if first not in _POWERS or first == "b":
        return None
    power = _POWERS[first]
    if rest in ("", "ib"):
        return int(1024 ** power)
    if rest == "b":
        return int(1000 ** power)
    return None


# -- cpu lists --------------------------------------------------------------------------------

_CPU_ITEM = r"^(\^)?(\d+)(?:-(\d+))?$"


def parse_cpulist(text: str, nr_cpus: int) -> FrozenSet[int]:
    """virsh cpulist syntax: ``0-3,^2``, ``1,5``, ``r`` or ``all`` (all cpus, as xl says)."""
    s = text.strip()
    if s in ("r", "all"):
        return frozenset(range(nr_cpus))
    if not s:
        raise UsageError("empty cpulist")
    add: set[int] = set()
    remove: set[int] = set()
    for item in s.split(","):
        m = _re(_CPU_ITEM).match(item.strip())
        if not m:
            raise UsageError(f"invalid cpulist {text!r}: cannot parse {item!r} (expected N, N-M, ^N or r)")
        neg, lo_s, hi_s = m.groups()
        lo = int(lo_s)
        hi = int(hi_s) if hi_s is not None else lo
        if hi < lo:
            raise UsageError(f"invalid cpulist {text!r}: range {item!r} is backwards")
        if hi >= nr_cpus:
            raise UsageError(f"invalid cpulist {text!r}: cpu {hi} out of range 0..{nr_cpus - 1}")
        (remove if neg else add).update(range(lo, hi + 1))
    cpus = add - remove
    if not cpus:
        raise UsageError(f"invalid cpulist {text!r}: no cpu left")
    return frozenset(cpus)


def affinity_map(cpus: Iterable[int], nr_cpus: int) -> str:
    """virsh's ``CPU Affinity: yy-y`` map."""
    s = set(cpus)
    return "".join("y" if c in s else "-" for c in range(nr_cpus))


# -- command arguments ----------------------------------------------------------------------

class Arg:
    """A positional argument (also accepted as ``--NAME VALUE``, as virsh does)."""

    def __init__(self, name: str, kind: str = "str", required: bool = True, help: str = "",  # noqa: A002
                 multi: bool = False) -> None:
        #: The last positional may take every remaining word (a list).
        self.multi = multi
        self.name = name
        self.kind = kind  # "domain", "int", "str", "size", "cpulist", "command"
        self.required = required
        self.help = help


class Opt:
    """An option: a flag (``value=None``) or ``--NAME VALUE`` (``value`` = "int", "float", "str")."""

    def __init__(self, name: str, help: str = "", value: Optional[str] = None, short: Optional[str] = None,  # noqa: A002
                 multi: bool = False, metavar: Optional[str] = None) -> None:
        self.name = name
        self.help = help
        self.value = value
        self.short = short
        self.multi = multi
        self.metavar = metavar or (value or "")




class Args:
    """Parsed arguments: ``a.domain``, ``a.get("all")``."""

    def __init__(self, values: Dict[str, Value]) -> None:
        self._values = values

    def get(self, name: str, default: Value = None) -> Value:
        v = self._values.get(name)
        return default if v is None else v

    def __getattr__(self, name: str) -> Value:
        if name.startswith("_"):
            raise AttributeError(name)
        return self._values.get(name.replace("_", "-"), self._values.get(name))

    def __contains__(self, name: str) -> bool:
        return self._values.get(name) is not None


def _convert(cmd: str, name: str, kind: str, text: str) -> Value:
    if kind == "int":
        try:
            return int(text, 10)
        except ValueError:
            raise UsageError(f"{cmd}: --{name} expects an integer, not {text!r}") from None
    if kind == "float":
        try:
            v = float(text)
        except ValueError:
            raise UsageError(f"{cmd}: --{name} expects a number, not {text!r}") from None
        if not v >= 0:
            raise UsageError(f"{cmd}: --{name} must not be negative")
        return v
    return text


def parse_args(cmd: str, tokens: Sequence[str], args: Sequence[Arg], opts: Sequence[Opt]) -> Args:
    """virsh-style: positionals in order (or ``--name value``), ``--flag``,
    ``--opt value`` / ``--opt=value``, short flags ``-cf``, ``--`` ends options."""
    by_long = {o.name: o for o in opts}
    by_short = {o.short: o for o in opts if o.short}
    by_arg = {a.name: a for a in args}
    values: Dict[str, Value] = {}
    positional: List[str] = []
    i = 0
    only_pos = False

    def set_opt(o: Opt, v: Value) -> None:
        if o.multi:
            lst = values.setdefault(o.name, [])
            assert isinstance(lst, list)
            lst.append(str(v))
        else:
            values[o.name] = v

    while i < len(tokens):
        tok = tokens[i]
        i += 1
        if only_pos or tok == "-" or not tok.startswith("-") or (tok[1:2].isdigit() and tok[1:2].isascii()) or tok.startswith("^"):
            positional.append(tok)
            continue
        if tok == "--":
            only_pos = True
            continue
        if tok.startswith("--"):
            name, eq, inline = tok[2:].partition("=")
            o = by_long.get(name)
            a = by_arg.get(name)
            if o is not None:
                if o.value is None:
                    if eq:
                        raise UsageError(f"command '{cmd}': option --{name} takes no value")
                    set_opt(o, True)
                    continue
                if not eq:
                    if i >= len(tokens):
                        raise UsageError(f"command '{cmd}': option --{name} requires a value")
                    inline = tokens[i]
                    i += 1
                set_opt(o, _convert(cmd, name, o.value, inline))
                continue
            if a is not None:
                if not eq:
                    if i >= len(tokens):
                        raise UsageError(f"command '{cmd}': option --{name} requires a value")
                    inline = tokens[i]
                    i += 1
                if name in values:
                    raise UsageError(f"command '{cmd}': option --{name} given twice")
                values[name] = inline
                continue
            raise UsageError(f"command '{cmd}' doesn't support option --{name}")
        # short flags, possibly combined (-nx); one taking a value takes the rest of the word
        # or the next one, as getopt does (-d 0.5, -d0.5, -bi3)
        for j, ch in enumerate(tok[1:], 1):
            o = by_short.get(ch)
            if o is None:
                raise UsageError(f"command '{cmd}' doesn't support option -{ch}")
            if o.value is not None:
                inline = tok[j + 1:]
                if not inline:
                    if i >= len(tokens):
                        raise UsageError(f"command '{cmd}': option -{ch} requires a value")
                    inline = tokens[i]
                    i += 1
                set_opt(o, _convert(cmd, o.name, o.value, inline))
                break
            set_opt(o, True)
    pending = [a for a in args if a.name not in values]
    for tok in positional:
        if not pending:
            raise UsageError(f"command '{cmd}': unexpected argument {tok!r}")
        if pending[0].multi:
            lst = values.setdefault(pending[0].name, [])
            assert isinstance(lst, list)
            lst.append(tok)
            continue
        values[pending.pop(0).name] = tok
    for a in args:
        if a.required and a.name not in values:
            raise UsageError(f"command '{cmd}' requires <{a.name}> option")
    return Args(values)


def suggest(word: str, choices: Iterable[str]) -> Optional[str]:
    """The closest known word (difflib), if any is close enough."""
    import difflib

    got = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return got[0] if got else None


def parse_set(items: Sequence[str], known: Tuple[str, ...]) -> Dict[str, int]:
    """``["weight=512", "cap=0"]`` -> ``{"weight": 512, "cap": 0}``."""
    out: Dict[str, int] = {}
    for item in items:
        key, eq, val = item.partition("=")
        key = key.strip().lower()
        if not eq:
            raise UsageError(f"invalid --set {item!r}: expected NAME=VALUE")
        if key not in known:
            hint = suggest(key, known)
            raise UsageError(f"invalid --set {item!r}: unknown parameter {key!r}"
                             + (f" (did you mean {hint!r}?)" if hint else f" (known: {', '.join(known)})"))
        try:
            out[key] = int(val.strip(), 10)
        except ValueError:
            raise UsageError(f"invalid --set {item!r}: {key} must be an integer") from None
    return out
