"""The ``record:`` and ``replay:`` URIs (opened through :func:`xenprivcmd.open`)."""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple
from urllib.parse import parse_qsl

from ..transport.privcmd import Transport
from ._format import load
from ._recording import RecordingTransport
from ._replay import ReplayTransport


def _split_uri(uri: str, scheme: str) -> Tuple[str, Dict[str, str]]:
    if not uri.startswith(scheme + ":"):
        raise ValueError(f"not a {scheme}: URI: {uri!r}")
    rest = uri[len(scheme) + 1 :]
    query = ""
    if "?" in rest:
        rest, query = rest.split("?", 1)
    if rest.startswith("//"):
        rest = rest[2:]
        host, slash, path = rest.partition("/")
        if host not in ("", "localhost"):
            raise ValueError(f"{scheme}: URIs name a local file, not host {host!r}: {uri!r}")
        rest = slash + path
    if not rest:
        raise ValueError(f"{scheme}: URI without a file: {uri!r}")
    return rest, dict(parse_qsl(query, keep_blank_values=True))


def open_record(uri: str, abi: Optional[str] = None) -> Any:
    """``record:PATH`` / ``record:///PATH?inner=URI&comment=TEXT`` -> a recording Handle."""
    from .. import _machine_arch
    from .. import open as xopen
    from ..handle import Handle
    from ..transport.privcmd import open_privcmd

    path, params = _split_uri(uri, "record")
    unknown = set(params) - {"inner", "comment"}
    if unknown:
        raise ValueError(f"record: URI: unknown parameter(s) {', '.join(sorted(unknown))} (known: inner, comment)")
    inner_uri = params.get("inner")
    inner: Transport
    if inner_uri:
        if inner_uri.startswith("record:"):
            raise ValueError("record: cannot wrap another record: URI")
        inner_handle = xopen(inner_uri)
        inner, arch = inner_handle.transport, inner_handle.arch
    else:
        inner, arch, inner_uri = open_privcmd(), _machine_arch(), "xen:///"
    try:
        t = RecordingTransport(inner, path, comment=params.get("comment", ""), inner_uri=inner_uri, arch=arch, abi=abi)
    except BaseException:
        inner.close()
        raise
    return Handle(t, uri, abi=abi, arch=arch)


def open_replay(uri: str, abi: Optional[str] = None) -> Any:
    """``replay:PATH`` / ``replay:///PATH?strict=0`` -> a Handle serving the recording."""
    from ..handle import Handle

    path, params = _split_uri(uri, "replay")
    unknown = set(params) - {"strict"}
    if unknown:
        raise ValueError(f"replay: URI: unknown parameter(s) {', '.join(sorted(unknown))} (known: strict)")
    strict = params.get("strict", "1").lower() not in ("0", "no", "false", "off")
    rec = load(path)
    if abi is None and rec.header.get("abi", "detected") != "detected":
        abi = rec.header["abi"]
    arch = rec.header.get("arch") or "x86_64"
    return Handle(ReplayTransport(rec, strict=strict), uri, abi=abi, arch=arch)
