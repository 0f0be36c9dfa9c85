"""``--web.config.file``: TLS and basic auth in Prometheus exporter-toolkit's format.

The file is the one Prometheus' own exporters read (exporter-toolkit's
``docs/web-configuration.md``)::

    tls_server_config:
      cert_file: /etc/xenprivcmd/exporter.crt     # relative paths: from the file's directory
      key_file: /etc/xenprivcmd/exporter.key
      client_auth_type: RequireAndVerifyClientCert  # optional, NoClientCert by default
      client_ca_file: /etc/xenprivcmd/clients.crt   # with Verify*/Require* above
      client_allowed_sans: [prometheus.example.org] # optional (a block list works too)
      min_version: TLS12                          # TLS10..TLS13; default TLS12
      max_version: TLS13                          # default TLS13
      prefer_server_cipher_suites: true
    http_server_config:
      headers:                                    # added to every answer
        X-Content-Type-Options: nosniff
    basic_auth_users:
      prometheus: $2y$10$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG

What the exporter does with it: with ``tls_server_config`` every connection
must complete a TLS handshake first (a plain-HTTP request gets no answer: the
connection is closed); with ``basic_auth_users`` every request needs
``Authorization: Basic`` with a listed user and the password of its bcrypt
hash (``$2a$``, ``$2b$``, ``$2y$``), else 401 with ``WWW-Authenticate``.  A
password that verified once is remembered (its SHA-256 under a per-process
key, one per user), so a scrape costs one bcrypt only after a change; a
wrong one costs a full bcrypt every time.

Like exporter-toolkit, the file (and the certificate, key and CA files it
names) is looked at again on every connection: a change is picked up by the
next connection (a certificate renewed in place needs no restart); a changed
file that no longer loads, or that would switch TLS on or off, keeps the
previous settings and logs one line.

Reading YAML: the standard library has no YAML parser, and the exporter
takes no hard dependency for one.  :func:`parse_yaml` reads the subset
these files use -- block mappings and lists, plain and quoted scalars,
``[a, b]`` lists of scalars, comments -- the same way with or without PyYAML
installed, and names the line of anything else (anchors, tags, block
scalars, flow mappings).  bcrypt: libcrypt's ``crypt_r`` through ctypes
(libxcrypt, Debian's libcrypt1, knows ``$2b$``/``$2y$``), else the
``bcrypt`` module when installed; without either a file with users is
refused at start-up.

Not supported, each refused with a clear error rather than ignored:
``cert``/``key``/``client_ca`` inline, ``cipher_suites`` and
``curve_preferences`` (Go's names), ``client_auth_type`` ``RequestClientCert``
and ``RequireAnyClientCert`` (Python's ssl verifies every client certificate
it asks for), ``rate_limit``.  ``http2`` is accepted and has no effect (the
exporter answers HTTP/1.0).
"""

from __future__ import annotations

import base64
import binascii
import ctypes
import hashlib
import hmac
import os
import ssl
import threading
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

from ..errors import XenprivcmdError

__all__ = ["WebConfigError", "WebConfig", "TlsSettings", "parse_yaml", "load", "Watcher", "BasicAuth",
           "bcrypt_verify", "TLS_VERSIONS", "CLIENT_AUTH", "HEADERS"]


class WebConfigError(XenprivcmdError, ValueError):
    """The web config file cannot be used: says which file, line or key, and why."""


#: min_version/max_version values -> ssl.TLSVersion
TLS_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1,
                "TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
#: client_auth_type values this exporter supports -> ssl verify mode
CLIENT_AUTH = {"NoClientCert": ssl.CERT_NONE, "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
               "RequireAndVerifyClientCert": ssl.CERT_REQUIRED}
#: http_server_config.headers names exporter-toolkit allows
HEADERS = ("Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options", "X-XSS-Protection",
           "Strict-Transport-Security")
_UNSUPPORTED = {
    "cert": "inline certificates are not supported: put it in a file and name it in cert_file",
    "key": "inline keys are not supported: put it in a file and name it in key_file",
    "client_ca": "inline CA certificates are not supported: put them in a file and name it in client_ca_file",
    "cipher_suites": "cipher_suites (Go's suite names) is not supported: OpenSSL's defaults are used",
    "curve_preferences": "curve_preferences (Go's curve names) is not supported: OpenSSL's defaults are used",
}


# -- the YAML subset -----------------------------------------------------------------------------

class _Line(NamedTuple):
    number: int
    indent: int
    text: str  # without indentation and comment


def _strip_comment(text: str, where: str) -> str:
    """``text`` without a ``#`` comment (one outside quotes, at the start or after a blank)."""
    quote = ""
    for i, c in enumerate(text):
        if quote:
            if c == quote:
                quote = ""
            elif c == "\\" and quote == '"':
                continue
        elif c in "'\"" and (i == 0 or text[i - 1] in " \t:-[,"):
            quote = c
        elif c == "#" and (i == 0 or text[i - 1] in " \t"):
            return text[:i].rstrip()
    return text.rstrip()


def _lines(source: str, where: str) -> List[_Line]:
    out: List[_Line] = []
    for n, raw in enumerate(source.splitlines(), 1):
        if "\t" in raw[:len(raw) - len(raw.lstrip(" \t"))]:
            raise WebConfigError(f"{where}:{n}: a tab in the indentation (YAML indents with spaces)")
        text = _strip_comment(raw.strip(), where)
        if not text or (text in ("---", "...") and raw.startswith(("---", "..."))):
            continue
        if text.startswith("%"):
            raise WebConfigError(f"{where}:{n}: YAML directives are not supported")
        out.append(_Line(n, len(raw) - len(raw.lstrip(" ")), text))
    return out


_ESCAPES = {"\\": "\\", '"': '"', "/": "/", "n": "\n", "t": "\t", "r": "\r", "0": "\0", " ": " "}


def _scalar(text: str, where: str) -> Any:
    """One scalar: quoted (a str), or plain (null, a bool, an int, else a str)."""
    if text[:1] == "'":
        if len(text) < 2 or not text.endswith("'"):
            raise WebConfigError(f"{where}: unterminated single-quoted string")
        body = text[1:-1]
        if "'" in body.replace("''", ""):
            raise WebConfigError(f"{where}: text after a quoted string")
        return body.replace("''", "'")
    if text[:1] == '"':
        out: List[str] = []
        i = 1
        while i < len(text):
            c = text[i]
            if c == '"':
                if i != len(text) - 1:
                    raise WebConfigError(f"{where}: text after a quoted string")
                return "".join(out)
            if c == "\\":
                e = text[i + 1:i + 2]
                if e in _ESCAPES:
                    out.append(_ESCAPES[e])
                    i += 2
                    continue
                if e == "u" and len(text) >= i + 6:
                    try:
                        out.append(chr(int(text[i + 2:i + 6], 16)))
                    except ValueError:
                        raise WebConfigError(f"{where}: bad \\u escape") from None
                    i += 6
                    continue
                raise WebConfigError(f"{where}: unsupported escape \\{e} in a double-quoted string")
            out.append(c)
            i += 1
        raise WebConfigError(f"{where}: unterminated double-quoted string")
    if text[:1] in ("&", "*", "!", "|", ">", "{", "@", "`"):
        what = {"&": "anchors", "*": "aliases", "!": "tags", "|": "block scalars", ">": "block scalars",
                "{": "flow mappings"}.get(text[0], f"a plain value starting with {text[0]!r}")
        raise WebConfigError(f"{where}: {what} are not supported in this file")
    if text[:1] == "[":
        if not text.endswith("]"):
            raise WebConfigError(f"{where}: a flow list must end on its line with ]")
        inner = text[1:-1].strip()
        if not inner:
            return []
        items = [p.strip() for p in inner.split(",")]
        if any(not p or p[0] in "[{" for p in items):
            raise WebConfigError(f"{where}: only a flat list of scalars is supported in [...]")
        return [_scalar(p, where) for p in items]
    if text in ("~", "null", "Null", "NULL"):
        return None
    if text in ("true", "True", "TRUE"):
        return True
    if text in ("false", "False", "FALSE"):
        return False
    digits = text[1:] if text[:1] in "+-" else text
    if digits.isdigit() and digits.isascii():
        return int(text, 10)
    if ": " in text or text.endswith(":"):
        raise WebConfigError(f"{where}: a mapping in a value (put it on its own lines)")
    return text


def _key(text: str, where: str) -> Tuple[str, str]:
    """``key: rest`` -> (key, rest); quoted keys too."""
    if text[:1] in "'\"":
        q = text[0]
        end = text.find(q, 1)
        while q == "'" and end > 0 and text[end + 1:end + 2] == "'":
            end = text.find(q, end + 2)
        if end < 0 or text[end + 1:end + 2] != ":":
            raise WebConfigError(f"{where}: expected 'key: value'")
        return str(_scalar(text[:end + 1], where)), text[end + 2:].strip()
    i = text.find(": ")
    if i < 0 and text.endswith(":"):
        i = len(text) - 1
    if i <= 0:
        raise WebConfigError(f"{where}: expected 'key: value'")
    key = text[:i].rstrip()
    if key[:1] in ("&", "*", "!", "?", "{", "["):
        raise WebConfigError(f"{where}: complex keys, anchors and tags are not supported")
    return key, text[i + 1:].strip()


def _block(lines: List[_Line], i: int, indent: int, where: str) -> Tuple[Any, int]:
    """The block (mapping or list) whose lines start at ``lines[i]`` with ``indent``."""
    first = lines[i]
    is_list = first.text == "-" or first.text.startswith("- ")
    out_map: Dict[str, Any] = {}
    out_list: List[Any] = []
    while i < len(lines):
        ln = lines[i]
        at = f"{where}:{ln.number}"
        if ln.indent < indent:
            break
        if ln.indent > indent:
            raise WebConfigError(f"{at}: unexpected indentation")
        item = ln.text == "-" or ln.text.startswith("- ")
        if is_list and not item:
            break  # a list at its key's own indentation ends there (the key's mapping goes on)
        if item and not is_list:
            raise WebConfigError(f"{at}: a list item and a mapping key at the same level")
        if is_list:
            rest = ln.text[1:].strip()
            if not rest:
                if i + 1 < len(lines) and lines[i + 1].indent > indent:
                    value, i = _block(lines, i + 1, lines[i + 1].indent, where)
                    out_list.append(value)
                    continue
                out_list.append(None)
            elif ": " in rest or rest.endswith(":"):
                raise WebConfigError(f"{at}: mappings inside lists are not supported in this file")
            else:
                out_list.append(_scalar(rest, at))
            i += 1
            continue
        key, rest = _key(ln.text, at)
        if key in out_map:
            raise WebConfigError(f"{at}: {key!r} appears twice")
        if rest:
            out_map[key] = _scalar(rest, at)
            i += 1
        elif i + 1 < len(lines) and (lines[i + 1].indent > indent or (
                lines[i + 1].indent == indent and lines[i + 1].text.startswith("- "))):
            out_map[key], i = _block(lines, i + 1, lines[i + 1].indent, where)
        else:
            out_map[key] = None
            i += 1
    return (out_list if is_list else out_map), i


def parse_yaml(source: str, where: str = "<web config>") -> Any:
    """The YAML subset web config files use, as Python values (see the module's docstring).

    Raises :class:`WebConfigError` naming ``where`` and the line for anything outside it.
    """
    lines = _lines(source, where)
    if not lines:
        return None
    if lines[0].indent != 0:
        raise WebConfigError(f"{where}:{lines[0].number}: the document must start at column 1")
    if ":" not in lines[0].text and not lines[0].text.startswith("-"):
        value = _scalar(lines[0].text, f"{where}:{lines[0].number}")
        if len(lines) > 1:
            raise WebConfigError(f"{where}:{lines[1].number}: text after the document's value")
        return value
    value, i = _block(lines, 0, 0, where)
    if i < len(lines):
        raise WebConfigError(f"{where}:{lines[i].number}: a mapping key after a list at the same level")
    return value


# -- bcrypt --------------------------------------------------------------------------------------

_CRYPT_DATA_SIZE = 32768  # libxcrypt's struct crypt_data
_crypt_lock = threading.Lock()
_verifier: Optional[Callable[[bytes, bytes], bool]] = None
# a bcrypt hash of a random password: what an unknown user's password is checked against,
# so that an unknown name costs the same time as a wrong password (made by _self_test)
_HASH_PREFIXES = (b"$2a$", b"$2b$", b"$2y$")


def _libcrypt_verifier() -> Optional[Callable[[bytes, bytes], bool]]:
    try:
        lib = ctypes.CDLL("libcrypt.so.1")
    except OSError:
        from ctypes.util import find_library

        name = find_library("crypt")
        if not name:
            return None
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            return None
    fn = getattr(lib, "crypt_r", None)
    if fn is None:
        return None
    fn.restype = ctypes.c_char_p
    fn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p]

    def verify(password: bytes, hashed: bytes) -> bool:
        data = ctypes.create_string_buffer(_CRYPT_DATA_SIZE)  # zeroed: crypt_r initialises it
        out = fn(password, hashed, data)  # ctypes releases the GIL: other requests go on
        return bool(out) and hmac.compare_digest(out, hashed)

    return verify


def _module_verifier() -> Optional[Callable[[bytes, bytes], bool]]:
    try:
        import bcrypt  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return None

    def verify(password: bytes, hashed: bytes) -> bool:
        try:
            return bool(bcrypt.checkpw(password, hashed))
        except ValueError:
            return False

    return verify


#: A known answer (password "U*U"; the first of the classic crypt_blowfish test vectors) that a
#: verifier must accept, with one wrong password it must refuse, before it is trusted.
_KNOWN = (b"U*U", b"$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW")


def _working(verify: Optional[Callable[[bytes, bytes], bool]]) -> bool:
    if verify is None:
        return False
    try:
        return verify(_KNOWN[0], _KNOWN[1]) and not verify(b"U*U*", _KNOWN[1]) \
            and verify(_KNOWN[0], b"$2b$" + _KNOWN[1][4:])
    except (OSError, ValueError, TypeError):
        return False


def bcrypt_verify(password: bytes, hashed: bytes) -> bool:
    """Whether ``password`` matches the bcrypt ``hashed`` (``$2a$``/``$2b$``/``$2y$``).

    Raises :class:`WebConfigError` when neither libcrypt nor the ``bcrypt``
    module can verify bcrypt hashes on this machine.
    """
    global _verifier
    verify = _verifier
    if verify is None:
        with _crypt_lock:
            if _verifier is None:
                for make in (_libcrypt_verifier, _module_verifier):
                    candidate = make()
                    if _working(candidate):
                        _verifier = candidate
                        break
                else:
                    raise WebConfigError("cannot verify bcrypt hashes here: libcrypt (libxcrypt) has no bcrypt "
                                         "and the bcrypt module is not installed (apt install python3-bcrypt)")
            verify = _verifier
    assert verify is not None
    if not hashed.startswith(_HASH_PREFIXES) or len(hashed) != 60:
        return False
    return verify(password, hashed)


class BasicAuth:
    """``basic_auth_users``: checks ``Authorization`` header values.

    A password that verified is remembered per user as an HMAC-SHA-256 under
    a key of this process (never the password), until it or the user's hash
    changes: one entry per user, whatever the number of requests.
    """

    def __init__(self, users: Dict[str, str]) -> None:
        self.users = {u: h.encode("ascii") for u, h in users.items()}
        self._key = os.urandom(32)
        self._ok: Dict[str, Tuple[bytes, bytes]] = {}  # user -> (hash, hmac of the password)
        self._decoy = next(iter(self.users.values()), b"")

    def check(self, header: Optional[str]) -> Optional[str]:
        """The user that ``header`` (an ``Authorization`` value) authenticates, else ``None``."""
        if not header or header[:6].lower() != "basic ":
            return None
        try:
            user, sep, password = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, ValueError):
            return None
        if not sep:
            return None
        pw = password.encode("utf-8")
        mac = hmac.new(self._key, pw, hashlib.sha256).digest()
        hashed = self.users.get(user)
        if hashed is None:
            bcrypt_verify(pw, self._decoy)  # as slow as a wrong password: names cannot be probed
            return None
        seen = self._ok.get(user)
        if seen is not None and seen[0] == hashed and hmac.compare_digest(seen[1], mac):
            return user
        if bcrypt_verify(pw, hashed):
            self._ok[user] = (hashed, mac)
            return user
        return None


# -- the file ------------------------------------------------------------------------------------

class TlsSettings(NamedTuple):
    cert_file: str
    key_file: str
    client_auth: str
    client_ca_file: Optional[str]
    client_allowed_sans: Tuple[str, ...]
    min_version: str
    max_version: str
    prefer_server_cipher_suites: bool


class WebConfig(NamedTuple):
    """One reading of the file: TLS (``None``: plain HTTP), users, extra answer headers."""

    path: str
    tls: Optional[TlsSettings]
    context: Optional[ssl.SSLContext]
    auth: Optional[BasicAuth]
    headers: Tuple[Tuple[str, str], ...]

    def files(self) -> Tuple[str, ...]:
        """The file and those it names: what :class:`Watcher` looks at."""
        t = self.tls
        named = () if t is None else (t.cert_file, t.key_file) + ((t.client_ca_file,) if t.client_ca_file else ())
        return (self.path,) + named


def _mapping(value: Any, what: str, allowed: Tuple[str, ...]) -> Dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise WebConfigError(f"{what}: expected a mapping, got {type(value).__name__}")
    for k in value:
        if k in _UNSUPPORTED:
            raise WebConfigError(f"{what}.{k}: {_UNSUPPORTED[k]}")
        if k not in allowed:
            raise WebConfigError(f"{what}: unknown key {k!r} (known: {', '.join(allowed)})")
    return value


def _string(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise WebConfigError(f"{what}: expected a non-empty string")
    return value


def _tls(value: Any, where: str, base: str) -> TlsSettings:
    what = f"{where}: tls_server_config"
    t = _mapping(value, what, ("cert_file", "key_file", "client_auth_type", "client_ca_file", "client_allowed_sans",
                               "min_version", "max_version", "prefer_server_cipher_suites", "cipher_suites",
                               "curve_preferences", "cert", "key", "client_ca"))
    for k in ("cert_file", "key_file"):
        if k not in t:
            raise WebConfigError(f"{what}: {k} is required")
    auth = t.get("client_auth_type", "NoClientCert")
    if auth in ("RequestClientCert", "RequireAnyClientCert"):
        raise WebConfigError(f"{what}.client_auth_type: {auth} is not supported (Python's ssl verifies every "
                             "client certificate it asks for): use VerifyClientCertIfGiven or "
                             "RequireAndVerifyClientCert with client_ca_file")
    if auth not in CLIENT_AUTH:
        raise WebConfigError(f"{what}.client_auth_type: {auth!r} is not one of {', '.join(CLIENT_AUTH)}")
    ca = t.get("client_ca_file")
    if ca is not None and auth == "NoClientCert":
        raise WebConfigError(f"{what}: client_ca_file is set but client_auth_type is NoClientCert")
    if ca is None and auth != "NoClientCert":
        raise WebConfigError(f"{what}: client_auth_type {auth} needs client_ca_file")
    sans = t.get("client_allowed_sans") or []
    if not isinstance(sans, list) or not all(isinstance(s, str) and s for s in sans):
        raise WebConfigError(f"{what}.client_allowed_sans: expected a list of names")
    if sans and auth != "RequireAndVerifyClientCert":
        raise WebConfigError(f"{what}.client_allowed_sans needs client_auth_type RequireAndVerifyClientCert")
    versions = []
    for k, default in (("min_version", "TLS12"), ("max_version", "TLS13")):
        v = t.get(k, default)
        if v not in TLS_VERSIONS:
            raise WebConfigError(f"{what}.{k}: {v!r} is not one of {', '.join(TLS_VERSIONS)}")
        versions.append(v)
    if TLS_VERSIONS[versions[0]] > TLS_VERSIONS[versions[1]]:
        raise WebConfigError(f"{what}: min_version {versions[0]} is above max_version {versions[1]}")
    prefer = t.get("prefer_server_cipher_suites", True)
    if not isinstance(prefer, bool):
        raise WebConfigError(f"{what}.prefer_server_cipher_suites: expected true or false")

    def path(k: str) -> str:
        return os.path.join(base, _string(t[k], f"{what}.{k}"))

    return TlsSettings(path("cert_file"), path("key_file"), auth, path("client_ca_file") if ca is not None else None,
                       tuple(sans), versions[0], versions[1], prefer)


def _context(t: TlsSettings, what: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.minimum_version = TLS_VERSIONS[t.min_version]
        ctx.maximum_version = TLS_VERSIONS[t.max_version]
    except (ValueError, ssl.SSLError) as exc:
        raise WebConfigError(f"{what}: this OpenSSL refuses {t.min_version}..{t.max_version}: {exc}") from None
    if t.prefer_server_cipher_suites:
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    try:
        ctx.load_cert_chain(t.cert_file, t.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise WebConfigError(f"{what}: cannot load cert_file {t.cert_file} with key_file {t.key_file}: {exc}") from None
    ctx.verify_mode = CLIENT_AUTH[t.client_auth]
    if t.client_ca_file is not None:
        try:
            ctx.load_verify_locations(cafile=t.client_ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise WebConfigError(f"{what}: cannot load client_ca_file {t.client_ca_file}: {exc}") from None
    return ctx


def load(path: str) -> WebConfig:
    """Read and check the file at ``path``, build its TLS context and users.

    Raises :class:`WebConfigError` (with the file, line or key) for anything
    it cannot use; nothing is half-applied.
    """
    try:
        with open(path, encoding="utf-8") as f:
            source = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise WebConfigError(f"{path}: cannot read it: {exc}") from None
    doc = _mapping(parse_yaml(source, path), path, ("tls_server_config", "http_server_config", "basic_auth_users",
                                                    "rate_limit"))
    if "rate_limit" in doc:
        raise WebConfigError(f"{path}: rate_limit is not supported (the exporter serves from a bounded pool of "
                             "threads and caches answers for --min-interval)")
    base = os.path.dirname(os.path.abspath(path))
    tls = _tls(doc["tls_server_config"], path, base) if doc.get("tls_server_config") is not None else None
    context = _context(tls, f"{path}: tls_server_config") if tls is not None else None
    http = _mapping(doc.get("http_server_config"), f"{path}: http_server_config", ("http2", "headers"))
    if not isinstance(http.get("http2", True), bool):
        raise WebConfigError(f"{path}: http_server_config.http2: expected true or false")
    headers = _mapping(http.get("headers"), f"{path}: http_server_config.headers", HEADERS)
    for k, v in headers.items():
        if v is not None and (not isinstance(v, str) or any(c in v for c in "\r\n")):
            raise WebConfigError(f"{path}: http_server_config.headers.{k}: expected one line of text")
    users_doc = doc.get("basic_auth_users")
    users: Dict[str, str] = {}
    if users_doc is not None:
        if not isinstance(users_doc, dict):
            raise WebConfigError(f"{path}: basic_auth_users: expected a mapping of user names to bcrypt hashes")
        for user, hashed in users_doc.items():
            if ":" in user or not user:
                raise WebConfigError(f"{path}: basic_auth_users: {user!r} is no user name (no ':' in a name)")
            if not isinstance(hashed, str) or not hashed.encode("ascii", "replace").startswith(_HASH_PREFIXES) \
                    or len(hashed) != 60:
                raise WebConfigError(f"{path}: basic_auth_users.{user}: not a bcrypt hash ($2y$..., 60 "
                                     "characters: htpasswd -nBC 10 \"\" | tr -d ':\\n')")
            users[user] = hashed
        if users:
            bcrypt_verify(b"", users[next(iter(users))].encode("ascii"))  # refuses the file when bcrypt cannot be checked
    return WebConfig(path, tls, context, BasicAuth(users) if users else None,
                     tuple((k, v) for k, v in headers.items() if v))


def _stamp(files: Tuple[str, ...]) -> Tuple[Any, ...]:
    out: List[Any] = []
    for f in files:
        try:
            st = os.stat(f)
            out.append((st.st_ino, st.st_size, st.st_mtime_ns))
        except OSError:
            out.append(None)
    return tuple(out)


class Watcher:
    """The file's current settings: :meth:`current` looks at the files again (a few ``stat``\\ s)
    and reloads on a change; a reload that fails keeps the previous settings and logs one line."""

    def __init__(self, path: str, log: Callable[[str], None]) -> None:
        self.path = path
        self.log = log
        self.config = load(path)
        self._stamp = _stamp(self.config.files())
        self._lock = threading.Lock()

    def current(self) -> WebConfig:
        stamp = _stamp(self.config.files())
        if stamp == self._stamp:
            return self.config
        with self._lock:
            if stamp != self._stamp:
                try:
                    new = load(self.path)
                    if (new.tls is None) != (self.config.tls is None):
                        raise WebConfigError(f"{self.path}: TLS cannot be switched {'on' if new.tls else 'off'} "
                                             "without a restart")
                    self.config = new
                    self._stamp = _stamp(new.files())
                    self.log(f"xenprivcmd-exporter: reloaded --web.config.file {self.path}")
                except WebConfigError as exc:
                    self._stamp = stamp  # one line per change, not per connection
                    self.log(f"xenprivcmd-exporter: --web.config.file: keeping the previous settings: {exc}")
        return self.config
