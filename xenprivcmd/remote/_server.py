"""The remote end: one Handle served over stdin/stdout (stdlib only).

Started by the boot stages (:mod:`xenprivcmd.remote._boot`) or as
``python3 -m xenprivcmd.remote`` (an ``authorized_keys`` forced command).
It answers one request at a time, in order, until its stdin ends.
"""

from __future__ import annotations

import os
import sys
from typing import IO, Any, Dict, Optional, Tuple

from . import _codec
from ._codec import PROTOCOL, decode, encode, encode_error, read_frame, write_frame

__all__ = ["serve", "READ_ONLY_BATCH", "allowed_read_only", "TARGET_SCHEMES"]

#: Operations of a batch (Handle.batch()) that only read.
READ_ONLY_BATCH = frozenset({"domain_info", "vcpu_info", "vcpu_affinity"})

#: Which hypervisor URIs a remote session may open.
TARGET_SCHEMES = ("xen", "sim")

#: Handle methods that are not operations over the link (the client has its own).
_NOT_OPS = frozenset({"close", "batch", "make_read_only", "events", "map_foreign", "map_resource", "map_grants",
                      "restrict", "event_channels"})


def allowed_read_only(method: str, kwargs: Dict[str, Any]) -> bool:
    """True when ``method(**kwargs)`` changes nothing (``read_console(clear=True)`` clears the
    ring): a Handle method whose operation is declared to only read
    (:func:`xenprivcmd.handle.read_only_methods`); anything else, including every method added
    to Handle later, is refused until it is declared so."""
    from ..handle import read_only_methods

    if method not in read_only_methods():
        return False
    return not (method == "read_console" and kwargs.get("clear"))


def refusal(method: str) -> BaseException:
    """The error a read-only session answers to a state-changing call."""
    import errno

    from .. import errors

    return errors.ReadOnlyError(errno.EPERM, f"{method}: refused: this connection is read-only")


class _Session:
    def __init__(self, read_only: bool, force_uri: Optional[str]) -> None:
        self.read_only = read_only
        self.force_uri = force_uri
        self.handle: Any = None
        self.streams: Dict[int, Any] = {}
        self._next_stream = 0

    # -- requests -----------------------------------------------------------------------------
    def dispatch(self, msg: Dict[str, Any]) -> Dict[str, Any]:
        op = msg.get("op")
        if op == "open":
            return self.open(msg)
        if self.handle is None:
            raise _codec.FrameError(f"{op!r} before open")
        if op == "abi":
            return self.run(msg, self.abi)
        if op == "read_only":
            self.read_only = True
            self.handle.make_read_only()
            return {"ok": True, "value": None}
        if op == "batch":
            return self.batch(msg)
        if op == "events":
            return self.run(msg, lambda: self.events(msg))
        if op == "call":
            method = str(msg.get("method", ""))
            args = decode(msg.get("args", []))
            kwargs = decode(msg.get("kwargs", {"$m": []}))
            if not isinstance(args, list) or not isinstance(kwargs, dict):
                raise _codec.FrameError("args must be a list and kwargs a map")
            func = self.method(method)
            if self.read_only and not allowed_read_only(method, kwargs):
                raise refusal(method)
            return self.run(msg, lambda: encode(func(*args, **{str(k): v for k, v in kwargs.items()})))
        raise _codec.FrameError(f"unknown request {op!r}")

    def open(self, msg: Dict[str, Any]) -> Dict[str, Any]:
        import xenprivcmd

        if self.handle is not None:
            raise _codec.FrameError("open twice")
        uri = str(msg.get("uri", "xen:///"))
        if self.force_uri is not None and uri != self.force_uri:
            raise PermissionError(f"this helper serves {self.force_uri} only, not {uri}")
        if uri.split(":", 1)[0] not in TARGET_SCHEMES:
            raise ValueError(f"a remote session opens xen:/// or sim: URIs, not {uri!r}")
        self.read_only = self.read_only or bool(msg.get("read_only"))
        abi = msg.get("abi")
        kw: Dict[str, Any] = {}
        if self.read_only and "read_only" in xenprivcmd.open.__code__.co_varnames:
            kw["read_only"] = True
        self.handle = h = xenprivcmd.open(None if uri == "xen:///" else uri, abi=abi, **kw)
        return {"ok": True, "value": {"arch": h.arch, "buffer_kind": h.buffer_kind, "uri": uri,
                                      "describe": h.transport.describe(), "read_only": self.read_only}}

    def batch(self, msg: Dict[str, Any]) -> Dict[str, Any]:
        """Queue every operation on one real Batch and run it: one round trip.  An
        argument error (or a refusal) answers for the whole batch, and nothing runs."""
        ops = decode(msg.get("ops", []))
        if not isinstance(ops, list) or not all(isinstance(o, tuple) and len(o) == 3 for o in ops):
            raise _codec.FrameError("batch ops must be (method, args, kwargs) triples")
        b = self.handle.batch()
        calls = []
        for name, args, kwargs in ops:
            name = str(name)
            if name.startswith("_") or name == "run" or not callable(getattr(type(b), name, None)):
                raise _codec.FrameError(f"a batch has no operation {name!r}")
            if self.read_only and name not in READ_ONLY_BATCH:
                raise refusal(f"batch {name}")
            calls.append(getattr(b, name)(*args, **kwargs))

        def run() -> Any:
            b.run()
            return [[c.done, encode(c.error) if c.error is not None else None,
                     encode(c.result()) if c.done and c.error is None else None] for c in calls]

        return self.run(msg, run)

    #: How long one "events next" request may wait on the remote, in seconds (the link's timeout is longer).
    EVENTS_WAIT_MAX = 10.0

    def events(self, msg: Dict[str, Any]) -> Any:
        """Domain event streams (Handle.events) kept here, read a batch at a time:
        ``open`` (domains, timeout) -> id, ``next`` (id, wait) -> the events that came within
        ``wait`` seconds, ``close`` (id)."""
        action = msg.get("action")
        if action == "open":
            domains = decode(msg.get("domains"))
            timeout = decode(msg.get("timeout"))
            stream = self.handle.events(domains=domains, timeout=timeout)
            self._next_stream += 1
            self.streams[self._next_stream] = stream
            return self._next_stream
        stream = self.streams.get(msg.get("stream"))  # type: ignore[arg-type]
        if stream is None:
            raise ValueError(f"no event stream {msg.get('stream')!r} in this session")
        if action == "close":
            self.streams.pop(msg.get("stream"), None)  # type: ignore[arg-type]
            stream.close()
            return None
        if action != "next":
            raise _codec.FrameError(f"unknown events action {action!r}")
        wait = msg.get("wait", 0)
        if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not wait >= 0:
            raise ValueError(f"events: wait must be a number of seconds >= 0, not {wait!r}")
        first = stream.next(min(float(wait), self.EVENTS_WAIT_MAX))
        out = [] if first is None else [first]
        while first is not None and len(out) < 1000:
            more = stream.next(0)
            if more is None:
                break
            out.append(more)
        return encode(out)

    def method(self, name: str) -> Any:
        from ..handle import Handle

        if name.startswith("_") or name in _NOT_OPS or not callable(getattr(Handle, name, None)):
            raise _codec.FrameError(f"Handle has no operation {name!r} in xenprivcmd {_version()}")
        return getattr(self.handle, name)

    def abi(self) -> Any:
        h = self.handle
        v = h.abi
        return encode({"release": v.release, "arch": v.arch, "detection": h.detection})

    def run(self, msg: Dict[str, Any], func: Any) -> Dict[str, Any]:
        """Run ``func`` with the hypercall watchers the request asks for; the reply."""
        from ..transport.wrappers import DryRunTransport, TimingTransport, innermost

        h = self.handle
        orig = h.transport
        base = innermost(orig).calls
        timer = dry = None
        t = orig
        if msg.get("trace"):
            t = timer = TimingTransport(t)
        store = None
        if msg.get("dry_run"):
            from ..control import DryStore

            t = dry = DryRunTransport(t, variant=h.abi)
            h.store_override = store = DryStore(h)  # xenstore writes are held back here too
        h.transport = t
        reply: Dict[str, Any]
        try:
            reply = {"ok": True, "value": func()}
        except Exception as exc:  # noqa: BLE001 - every failure goes back as a typed error
            reply = {"ok": False, "error": encode_error(exc)}
        finally:
            h.transport = orig
            if store is not None:
                store.close()
                h.store_override = None
        reply["hypercalls"] = innermost(orig).calls - base
        if store is not None:
            reply["store_writes"] = list(store.writes)
        if timer is not None:
            reply["timed"] = [encode(r) for r in timer.take()]
        if dry is not None:
            reply["held"] = [encode(r) for r in dry.take()]
        return reply

    def close(self) -> None:
        for stream in self.streams.values():
            stream.close()
        self.streams.clear()
        if self.handle is not None:
            self.handle.close()


def _version() -> str:
    from .. import __version__

    return __version__


def hello(source: str, path: Optional[str], read_only: bool) -> Dict[str, Any]:
    import platform

    return {"hello": "xenprivcmd", "protocol": PROTOCOL, "version": _version(), "source": source,
            "path": path, "python": platform.python_version(), "executable": sys.executable,
            "pid": os.getpid(), "read_only": read_only}


def _streams(inp: Optional[IO[bytes]], out: Optional[IO[bytes]]) -> Tuple[IO[bytes], IO[bytes]]:
    """The protocol's streams; from here on stray prints go to stderr, never into the stream."""
    if inp is None:
        inp = sys.stdin.buffer
    if out is None:
        out = os.fdopen(os.dup(1), "wb")
        os.dup2(2, 1)
        sys.stdout = sys.stderr
    return inp, out


def serve(inp: Optional[IO[bytes]] = None, out: Optional[IO[bytes]] = None, source: str = "helper",
          path: Optional[str] = None, read_only: bool = False, force_uri: Optional[str] = None) -> None:
    """Say hello, then answer requests until the client goes away."""
    if out is sys.stdout.buffer:
        out = None
    inp, out = _streams(inp, out)
    session = _Session(read_only, force_uri)
    write_frame(out, hello(source, path, read_only))
    try:
        while True:
            try:
                msg = read_frame(inp)
            except _codec.FrameError as exc:
                write_frame(out, {"ok": False, "error": encode_error(exc)})
                return
            if msg is None or msg.get("op") == "bye":
                return
            try:
                reply = session.dispatch(msg)
            except Exception as exc:  # noqa: BLE001 - answered, never fatal
                reply = {"ok": False, "error": encode_error(exc), "hypercalls": 0}
            reply["id"] = msg.get("id")
            try:
                write_frame(out, reply)
            except TypeError as exc:  # a value with no encoding slipped through
                write_frame(out, {"id": msg.get("id"), "ok": False, "error": encode_error(exc)})
    except (BrokenPipeError, ConnectionError):
        return
    finally:
        session.close()
