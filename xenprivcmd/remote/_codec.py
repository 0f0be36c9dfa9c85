"""Frames and values of the remote protocol (stdlib only: it runs on the remote too).

A frame is a 4-byte big-endian length and that many bytes of UTF-8 JSON.
Values are JSON with tags for what JSON lacks; every JSON object on the
wire is a tag, so a plain value never looks like one:

=============================  ===============================================
``{"$t": [...]}``              tuple
``{"$m": [[k, v], ...]}``      dict (any key type: ``domain_names()`` has ints)
``{"$b": "base64"}``           bytes
``{"$u": "uuid"}``             uuid.UUID
``{"$fs": [...]}``             frozenset (``{"$s": [...]}`` set)
``{"$nt": "mod:Name",          a NamedTuple of a ``xenprivcmd`` module
 "v": [...]}``                 (``xenprivcmd.types:DomainInfo``), fields in order
``{"$e": {error}}``            an exception returned as a value (``domain_infos``)
=============================  ===============================================

An exception travels as ``{"type": "module.Name", "message": str, "errno":
int|null, "hypercall", "subop", "domid"}`` and is rebuilt as the same class
when it is one of xenprivcmd's or an allowed builtin (:func:`decode_error`).
"""

from __future__ import annotations

import base64
import builtins
import importlib
import json
import struct
import uuid
from typing import IO, Any, Callable, Dict, Optional

__all__ = ["PROTOCOL", "MAX_FRAME", "encode", "decode", "write_frame", "read_frame", "encode_error",
           "decode_error", "FrameError"]

#: The protocol version: both ends must say the same in their hello.
PROTOCOL = 1
#: The largest frame either end accepts (a full host's listing is ~12 MiB of JSON).
MAX_FRAME = 256 << 20

_LEN = struct.Struct(">I")

#: Builtin exceptions rebuilt as themselves on the client; anything else becomes a RemoteError.
BUILTIN_ERRORS = ("ValueError", "TypeError", "KeyError", "LookupError", "IndexError", "OverflowError",
                  "NotImplementedError", "OSError", "PermissionError", "FileNotFoundError")


class FrameError(ValueError):
    """A frame or value that is not of this protocol."""


#: Types that are JSON as they are (checked by exact type first: the hot path).
_PLAIN = frozenset({type(None), bool, int, float, str})


def encode(v: Any) -> Any:
    """A Python value as tagged JSON data (raises TypeError for what has no encoding)."""
    if type(v) in _PLAIN or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, tuple):
        cls = type(v)
        fields = getattr(cls, "_fields", None)
        items = [x if type(x) in _PLAIN else encode(x) for x in v]
        if fields is not None and cls.__module__.startswith("xenprivcmd"):
            return {"$nt": f"{cls.__module__}:{cls.__qualname__}", "v": items}
        return {"$t": items}
    if isinstance(v, list):
        return [x if type(x) in _PLAIN else encode(x) for x in v]
    if isinstance(v, dict):
        return {"$m": [[encode(k), encode(x)] for k, x in v.items()]}
    if isinstance(v, (bytes, bytearray, memoryview)):
        return {"$b": base64.b64encode(bytes(v)).decode("ascii")}
    if isinstance(v, uuid.UUID):
        return {"$u": str(v)}
    if isinstance(v, frozenset):
        return {"$fs": [encode(x) for x in sorted(v, key=repr)]}
    if isinstance(v, set):
        return {"$s": [encode(x) for x in sorted(v, key=repr)]}
    if isinstance(v, Exception):
        return {"$e": encode_error(v)}
    raise TypeError(f"a {type(v).__name__} cannot be sent over the remote protocol")


def encode_arg(v: Any) -> Any:
    """Like :func:`encode`, but any other iterable (a generator, a range) is sent as a list."""
    try:
        return encode(v)
    except TypeError:
        if hasattr(v, "__iter__") and not isinstance(v, (str, bytes, dict)):
            return [encode(x) for x in v]
        raise


def _named(name: Any) -> Any:
    if not isinstance(name, str) or ":" not in name:
        raise FrameError(f"bad NamedTuple tag {name!r}")
    module, qual = name.split(":", 1)
    if module != "xenprivcmd" and not module.startswith("xenprivcmd."):
        raise FrameError(f"NamedTuple {name!r} is not one of xenprivcmd's")
    try:
        cls = getattr(importlib.import_module(module), qual)
    except (ImportError, AttributeError):
        raise FrameError(f"this xenprivcmd has no {name}") from None
    if not (isinstance(cls, type) and issubclass(cls, tuple) and hasattr(cls, "_fields")):
        raise FrameError(f"{name} is not a NamedTuple")
    return cls


def decode(v: Any) -> Any:
    """The inverse of :func:`encode` (raises FrameError on a malformed value)."""
    if isinstance(v, list):
        return [x if type(x) in _PLAIN else decode(x) for x in v]
    if not isinstance(v, dict):
        return v
    if len(v) == 1:
        (tag, body), = v.items()
        if tag == "$t" and isinstance(body, list):
            return tuple(decode(x) for x in body)
        if tag == "$m" and isinstance(body, list):
            return {decode(k): decode(x) for k, x in body}
        if tag == "$b" and isinstance(body, str):
            return base64.b64decode(body)
        if tag == "$u" and isinstance(body, str):
            return uuid.UUID(body)
        if tag == "$fs" and isinstance(body, list):
            return frozenset(decode(x) for x in body)
        if tag == "$s" and isinstance(body, list):
            return {decode(x) for x in body}
        if tag == "$e" and isinstance(body, dict):
            return decode_error(body, lambda name, err: FrameError(f"{name}: {err.get('message')}"))
    if set(v) == {"$nt", "v"} and isinstance(v["v"], list):
        cls = _named(v["$nt"])
        try:
            return cls._make([x if type(x) in _PLAIN else decode(x) for x in v["v"]])
        except TypeError as exc:
            raise FrameError(f"{v['$nt']}: {exc}") from None
    raise FrameError(f"untagged object in a value: {sorted(v)[:4]}")


def write_frame(out: IO[bytes], msg: Dict[str, Any]) -> int:
    """Send one message; returns the bytes written."""
    data = json.dumps(msg, separators=(",", ":")).encode("utf-8")
    out.write(_LEN.pack(len(data)) + data)
    out.flush()
    return len(data) + _LEN.size


def parse_frame(data: bytes) -> Dict[str, Any]:
    try:
        msg = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise FrameError(f"a frame that is not JSON: {exc}") from None
    if not isinstance(msg, dict):
        raise FrameError("a frame that is not a JSON object")
    return msg


def frame_length(header: bytes) -> int:
    (n,) = _LEN.unpack(header)
    if n > MAX_FRAME:
        raise FrameError(f"a {n}-byte frame is beyond the {MAX_FRAME}-byte limit")
    return int(n)


def read_frame(inp: IO[bytes]) -> Optional[Dict[str, Any]]:
    """One message, or None at a clean end of stream (blocking; the server's reader)."""
    header = inp.read(_LEN.size)
    if not header:
        return None
    if len(header) < _LEN.size:
        raise FrameError("the stream ended inside a frame header")
    n = frame_length(header)
    data = inp.read(n)
    if len(data) < n:
        raise FrameError("the stream ended inside a frame")
    return parse_frame(data)


def encode_error(exc: BaseException) -> Dict[str, Any]:
    cls = type(exc)
    return {
        "type": f"{cls.__module__}.{cls.__qualname__}",
        "message": str(exc),
        "errno": getattr(exc, "errno", None),
        "hypercall": getattr(exc, "hypercall", None),
        "subop": getattr(exc, "subop", None),
        "domid": getattr(exc, "domid", None),
    }


def decode_error(err: Dict[str, Any], fallback: Callable[[str, Dict[str, Any]], BaseException]) -> BaseException:
    """The exception an error document describes: xenprivcmd's own classes and
    :data:`BUILTIN_ERRORS` as themselves, anything else through ``fallback(type, err)``."""
    name = str(err.get("type", ""))
    message = str(err.get("message", ""))
    module, _, qual = name.rpartition(".")
    if module == "builtins" and qual in BUILTIN_ERRORS:
        cls = getattr(builtins, qual)
        if issubclass(cls, OSError) and isinstance(err.get("errno"), int):
            return cls(err["errno"], message)  # type: ignore[no-any-return]
        return cls(message)  # type: ignore[no-any-return]
    if module == "xenprivcmd.errors":
        from .. import errors

        cls = getattr(errors, qual, None)
        if isinstance(cls, type) and issubclass(cls, errors.XenError) and isinstance(err.get("errno"), int):
            return cls(err["errno"], message, hypercall=err.get("hypercall"), subop=err.get("subop"),
                       domid=err.get("domid"))
        if isinstance(cls, type) and issubclass(cls, errors.XenprivcmdError):
            try:
                return cls(message)
            except TypeError:
                pass
    return fallback(name, err)
