"""xl's configuration file syntax (xl.cfg(5)), read as xl reads it.

The grammar is libxlutil's (``tools/libs/util/libxlu_cfg_l.l`` and ``libxlu_cfg_y.y``
in Xen's source; the same from Xen 4.2 to 4.21):

- a file is a sequence of statements ``KEY = VALUE`` or ``KEY += VALUE``, each ended by a
  newline or ``;`` (the last one may end the file); empty statements are fine;
- ``KEY`` is ``[a-z][._0-9a-z]*`` (lower case only);
- ``VALUE`` is a string in single or double quotes (on one line; escapes ``\\"``
  ``\\'`` ``\\\\`` ``\\a`` ``\\b`` ``\\f`` ``\\n`` ``\\r`` ``\\t`` ``\\v``), a number
  token ``[0-9][0-9a-fx]*`` (kept as its text: ``memory = 128`` and ``memory = "128"``
  are the same), or a list ``[ VALUE, ... ]`` (lists nest; a trailing comma and
  newlines between the items are allowed);
- ``#`` starts a comment that runs to the end of the line, and must end with a newline
  (a comment on the last line of a file without a final newline is a lexical error in xl);
- blanks are spaces and tabs only: a carriage return (a DOS line end) is an error.

A later assignment of a key replaces an earlier one; ``+=`` appends to the earlier
value (string to string, list to list).  xl's numeric escapes (``\\x41``, ``\\101``)
never work (its lexer rejects every one of them): they are refused here too.

:func:`parse` gives the settings; it knows nothing of what the keys mean
(:mod:`xenprivcmd.build.config` does).
"""

from __future__ import annotations

from ..errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Tuple, Union

    Value = Union[str, "List[Value]"]

__all__ = ["Setting", "parse", "parse_long", "quote"]


class Setting:
    """One key's value as the file leaves it: ``value`` a str or a (nested) list of them,
    ``line`` where its last assignment is, ``op`` ``"="`` or ``"+="`` (that assignment's)."""

    __slots__ = ("key", "value", "line", "op")

    def __init__(self, key: str, value: Value, line: int, op: str) -> None:
        self.key = key
        self.value = value
        self.line = line
        self.op = op

    def __repr__(self) -> str:
        return f"Setting({self.key!r}, {self.value!r}, line={self.line}, op={self.op!r})"


# -- the lexer ---------------------------------------------------------------------------

_IDENT_FIRST = frozenset("abcdefghijklmnopqrstuvwxyz")
_IDENT_REST = _IDENT_FIRST | frozenset("._0123456789")
_DIGITS = frozenset("0123456789")
_NUMBER_REST = _DIGITS | frozenset("abcdefx")
_ESCAPES = {'"': '"', "'": "'", "\\": "\\", "a": "\a", "b": "\b", "f": "\f",
            "n": "\n", "r": "\r", "t": "\t", "v": "\v"}

# token kinds
IDENT, NUMBER, STRING, NEWLINE, EOF = "identifier", "number", "string", "newline", "end of file"


class _Token:
    __slots__ = ("kind", "text", "value", "line")

    def __init__(self, kind: str, text: str, value: str, line: int) -> None:
        self.kind = kind      # IDENT, NUMBER, STRING, NEWLINE, EOF or the punctuation itself
        self.text = text      # as written
        self.value = value    # IDENT/NUMBER: the text; STRING: unquoted
        self.line = line


def _error(source: Optional[str], line: int, message: str) -> ConfigError:
    return ConfigError(message, key=None, line=line, source=source)


def _near(text: str) -> str:
    return "end of line" if text in ("", "\n") else repr(text.rstrip("\n"))


def _tokens(text: str, source: Optional[str]) -> List[_Token]:
    out: List[_Token] = []
    i, n, line = 0, len(text), 1
    while i < n:
        c = text[i]
        if c in " \t":
            i += 1
        elif c == "\n":
            out.append(_Token(NEWLINE, "\n", "", line))
            line += 1
            i += 1
        elif c == "#":
            j = text.find("\n", i)
            if j < 0:
                raise _error(source, line, "lexical error near '#': a comment must end with a newline "
                             "(xl refuses a comment on the last line of a file without one)")
            out.append(_Token(NEWLINE, text[i:j + 1], "", line))
            line += 1
            i = j + 1
        elif c in _IDENT_FIRST:
            j = i + 1
            while j < n and text[j] in _IDENT_REST:
                j += 1
            out.append(_Token(IDENT, text[i:j], text[i:j], line))
            i = j
        elif c in _DIGITS:
            j = i + 1
            while j < n and text[j] in _NUMBER_REST:
                j += 1
            out.append(_Token(NUMBER, text[i:j], text[i:j], line))
            i = j
        elif c in "'\"":
            j, value = _string(text, i, line, source)
            out.append(_Token(STRING, text[i:j], value, line))
            i = j
        elif text.startswith("+=", i):
            out.append(_Token("+=", "+=", "", line))
            i += 2
        elif c in ",[]=;":
            out.append(_Token(c, c, "", line))
            i += 1
        else:
            j = i
            while j < n and text[j] not in " \t\n":
                j += 1
            what = "a carriage return (a DOS line end?)" if c == "\r" else repr(text[i:j] or c)
            hint = ("; arbitrary Python is no longer supported in xl configs" if c in "+-.():" else "")
            raise _error(source, line, f"lexical error near {what}{hint}")
    out.append(_Token(EOF, "", "", line))
    return out


def _string(text: str, i: int, line: int, source: Optional[str]) -> Tuple[int, str]:
    """The quoted string at ``text[i]``: (index after it, its value)."""
    quote_char = text[i]
    j = i + 1
    chars: List[str] = []
    n = len(text)
    while True:
        if j >= n or text[j] == "\n":
            raise _error(source, line, f"lexical error near {text[i:j]!r}: the string has no closing "
                         f"{quote_char} on its line")
        c = text[j]
        if c == quote_char:
            return j + 1, "".join(chars)
        if c == "\\":
            if j + 1 >= n or text[j + 1] == "\n":
                raise _error(source, line, f"lexical error near {text[i:j + 1]!r}: a backslash cannot "
                             "end a line inside a string")
            e = text[j + 1]
            if e in _ESCAPES:
                chars.append(_ESCAPES[e])
            elif e == "x" or e in "01234567":
                kind = "hex" if e == "x" else "octal"
                raise _error(source, line, f"invalid {kind} escape \\{e}... in quoted string (xl's lexer "
                             "rejects numeric character escapes)")
            else:
                raise _error(source, line, f"invalid character after backslash in quoted string: \\{e}")
            j += 2
        else:
            chars.append(c)
            j += 1


# -- the parser -----------------------------------------------------------------------------

class _Parser:
    def __init__(self, tokens: List[_Token], source: Optional[str]) -> None:
        self.toks = tokens
        self.pos = 0
        self.source = source
        self.settings: Dict[str, Setting] = {}

    def peek(self) -> _Token:
        return self.toks[self.pos]

    def take(self) -> _Token:
        t = self.toks[self.pos]
        self.pos += 1
        return t

    def fail(self, t: _Token, expected: str) -> ConfigError:
        line = t.line
        got = t.kind if t.kind in (IDENT, NUMBER, STRING) else None
        near = _near(t.text)
        what = f"unexpected {got} {near}" if got else f"unexpected {near}"
        return _error(self.source, line, f"syntax error: {what}, expecting {expected}")

    def skip_newlines(self) -> None:
        while self.peek().kind == NEWLINE:
            self.pos += 1

    def file(self) -> Dict[str, Setting]:
        while True:
            t = self.peek()
            if t.kind == EOF:
                return self.settings
            if t.kind in (NEWLINE, ";"):
                self.pos += 1
                continue
            if t.kind != IDENT:
                raise self.fail(t, "a key (lower case: [a-z][._0-9a-z]*)")
            self.assignment()
            end = self.peek()
            if end.kind in (NEWLINE, ";"):
                self.pos += 1
            elif end.kind != EOF:
                raise self.fail(end, "a newline or ';' after the value")

    def assignment(self) -> None:
        key = self.take()
        op = self.take()
        if op.kind not in ("=", "+="):
            raise self.fail(op, "'=' or '+='")
        value_line = self.peek().line
        value = self.value()
        prev = self.settings.get(key.value)
        if op.kind == "+=" and prev is not None:
            if isinstance(prev.value, str) != isinstance(value, str):
                raise _error(self.source, value_line,
                             f"{key.value}: can't add [list] to \"string\" or vice versa")
            value = prev.value + value  # type: ignore[operator]
        self.settings[key.value] = Setting(key.value, value, value_line, op.kind)

    def value(self) -> Value:
        t = self.take()
        if t.kind in (STRING, NUMBER):
            return t.value
        if t.kind != "[":
            raise self.fail(t, "a value (a quoted string, a number or a [list])")
        items: List[Value] = []
        self.skip_newlines()
        if self.peek().kind == "]":
            self.pos += 1
            return items
        while True:
            items.append(self.value())
            self.skip_newlines()
            t = self.take()
            if t.kind == "]":
                return items
            if t.kind != ",":
                raise self.fail(t, "',' or ']' in the list")
            self.skip_newlines()
            if self.peek().kind == "]":
                self.pos += 1
                return items


def parse(text: str, source: Optional[str] = None) -> Dict[str, Setting]:
    """The settings of an xl config, key -> :class:`Setting` in the order keys first appear.

    ``source`` (a file name) goes into error messages.  Raises :class:`ConfigError`
    (``key`` ``None``, ``line`` set) for a lexical or syntax error, or a ``+=`` of a list
    to a string or the reverse.

    >>> s = parse('name = "web1"  # a comment\\nmemory = 512; vcpus = 2\\ncpus = ["0",\\n  "1-3",]\\n')
    >>> [(k, v.value, v.line) for k, v in s.items()]
    [('name', 'web1', 1), ('memory', '512', 2), ('vcpus', '2', 2), ('cpus', ['0', '1-3'], 3)]
    >>> parse("memory = 128M")
    Traceback (most recent call last):
    ...
    xenprivcmd.errors.ConfigError: line 1: lexical error near 'M'
    >>> parse("name = web1")
    Traceback (most recent call last):
    ...
    xenprivcmd.errors.ConfigError: line 1: syntax error: unexpected identifier 'web1', expecting a value (a quoted string, a number or a [list])
    """
    if not isinstance(text, str):
        raise TypeError(f"an xl config is a str, not {type(text).__name__}")
    return _Parser(_tokens(text, source), source).file()


# -- numbers as xl reads them --------------------------------------------------------------

_LONG_MIN, _LONG_MAX = -(1 << 63), (1 << 63) - 1
_C_SPACE = " \t\n\v\f\r"


def parse_long(text: str) -> Optional[int]:
    """The number C's ``strtol(text, &end, 0)`` reads when it reads all of ``text`` (as xl's
    ``xlu_cfg_get_long`` does): leading blanks, a sign, ``0x`` hex, a leading ``0`` octal,
    else decimal; ``None`` when ``text`` is not that (or overflows a 64-bit long).

    >>> parse_long("128"), parse_long("0x100"), parse_long("010"), parse_long(" -3")
    (128, 256, 8, -3)
    >>> parse_long("0128"), parse_long("1.5"), parse_long(""), parse_long("12 ")
    (None, None, None, None)
    """
    s = text.lstrip(_C_SPACE)
    sign = 1
    if s[:1] in ("+", "-"):
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if s[:2] in ("0x", "0X") and len(s) > 2:
        digits, base = s[2:], 16
    elif s[:1] == "0":
        digits, base = s, 8
    else:
        digits, base = s, 10
    allowed = {8: "01234567", 10: "0123456789", 16: "0123456789abcdefABCDEF"}[base]
    if not digits or any(ch not in allowed for ch in digits):
        return None
    value = sign * int(digits, base)
    if not _LONG_MIN <= value <= _LONG_MAX:
        return None
    return value


# -- writing values back ------------------------------------------------------------------

_UNESCAPE = {v: "\\" + k for k, v in _ESCAPES.items() if k not in "'"}


def quote(value: str) -> str:
    """``value`` as an xl string literal (double quotes) that :func:`parse` reads back as
    ``value``.  Raises ``ValueError`` for characters xl's syntax cannot carry
    (other control characters than those with a backslash escape: numeric escapes
    do not work in xl).

    >>> quote('a "b"\\tc')
    '"a \\\\"b\\\\"\\\\tc"'
    """
    out = ['"']
    for ch in value:
        if ch in _UNESCAPE:
            out.append(_UNESCAPE[ch])
        elif ch < " " or ch == "\x7f":
            raise ValueError(f"{value!r}: character {ch!r} cannot be written in an xl config string")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)
