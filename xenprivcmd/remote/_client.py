"""The client end: a :class:`~xenprivcmd.handle.Handle` whose operations run on another host."""

from __future__ import annotations

import errno
import inspect
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from .. import abi as _abi
from .. import errors
from ..events import DomainEvents
from ..handle import Handle
from ..ops.batch import Batch as _Batch
from ..transport.privcmd import Buffer, Transport
from . import _boot, _codec
from ._link import HANDSHAKE_TIMEOUT, Link, Target, classify, parse_uri
from ._server import READ_ONLY_BATCH, allowed_read_only, refusal

__all__ = ["RemoteHandle", "RemoteTransport", "open_remote"]


class RemoteTransport(Transport):
    """The link as the shell and the tests see a transport: ``calls`` counts the
    hypercalls the remote issued for us, ``round_trips`` the requests sent.
    Hypercalls themselves are not forwarded (their buffers hold pointers)."""

    kind = "ssh"

    def __init__(self, link: Link, hello: Dict[str, Any]) -> None:
        super().__init__()
        self.link = link
        self.hello = hello
        self.round_trips = 0
        self.buffer_kind = "remote"
        self.remote_describe = ""
        self._next_id = 0
        self._req_lock = threading.Lock()

    def hypercall(self, op: int, a0: int = 0, a1: int = 0, a2: int = 0, a3: int = 0, a4: int = 0) -> int:
        raise errors.NotSupported(errno.EOPNOTSUPP, f"hypercall {op}: hypercalls are not forwarded over ssh "
                                  "(use the handle's operations)")

    def _map(self, size: int) -> Buffer:
        raise errors.NotSupported(errno.EOPNOTSUPP, "no hypercall buffers on a remote handle")

    def stats(self) -> Dict[str, int]:
        return {"calls": self.calls, "round_trips": self.round_trips, "buffers": 0, "mapped_bytes": 0,
                "bytes_sent": self.link.bytes_sent, "bytes_received": self.link.bytes_received}

    def describe(self) -> str:
        h = self.hello
        return (f"ssh {self.link.target.where} -> {self.remote_describe or self.link.target.remote_uri} "
                f"(python {h.get('python')}, xenprivcmd {h.get('version')} {h.get('source')})")

    def request(self, msg: Dict[str, Any], what: str, applied: Optional[bool]) -> Dict[str, Any]:
        """One round trip.  A broken or silent link closes the handle and raises
        :class:`ConnectionLost` (``applied`` says what may have happened); nothing is retried."""
        with self._req_lock:
            if self.closed:
                lost = errors.ConnectionLost(errno.ENOTCONN, f"{self.link.target.where}: {what}: the connection "
                                             "is closed (open a new handle)")
                lost.host, lost.applied = self.link.target.where, False
                raise lost
            self._next_id += 1
            msg["id"] = self._next_id
            self.round_trips += 1
            deadline = time.monotonic() + self.link.target.timeout
            reason = None
            try:
                self.link.send(msg)
                reply = self.link.recv(deadline)
                if reply is None:
                    reason = "the connection was lost"
                elif reply.get("id") != msg["id"]:
                    reason = f"a reply to request {reply.get('id')} came for request {msg['id']}"
            except TimeoutError:
                reason = f"no reply within {self.link.target.timeout:g} s"
            except (BrokenPipeError, ConnectionError, OSError):
                reason = "the connection was lost"
            except _codec.FrameError as exc:
                reason = f"a malformed reply ({exc})"
            if reason is not None:
                self._abort()
                outcome = {False: "nothing was changed", None: "it may or may not have been applied (not retried)"}
                lost = errors.ConnectionLost(errno.ECONNRESET, f"{self.link.target.where}: {what}: {reason}; "
                                             f"{outcome.get(applied, '')}; the handle is closed")
                lost.host, lost.applied = self.link.target.where, applied
                raise lost
            assert reply is not None
            self.calls += int(reply.get("hypercalls", 0))
            return reply

    def _forget_buffers(self) -> None:
        # The child of a fork() shares the parent's ssh pipes: it must never use them.
        super()._forget_buffers()
        self.closed = True

    def _abort(self) -> None:
        self.link.kill()
        super().close()

    def close(self) -> None:
        if self.closed:
            return
        try:
            self.link.send({"op": "bye"})
        except OSError:
            pass
        self.link.close()
        super().close()


def _remote_error(where: str) -> Callable[[str, Dict[str, Any]], BaseException]:
    def fallback(name: str, err: Dict[str, Any]) -> BaseException:
        if name.endswith("FrameError"):
            exc: errors.RemoteError = errors.ProtocolMismatch(errno.EPROTO, f"{where}: {err.get('message')}")
        else:
            exc = errors.RemoteError(errno.EIO, f"{where}: remote {name}: {err.get('message')}")
        exc.host = where
        return exc
    return fallback


def _open_error(where: str, exc: BaseException) -> BaseException:
    """What opening the remote hypervisor raised, as the remote kind of error."""
    if isinstance(exc, errors.NotDom0Error):
        out: errors.RemoteError = errors.RemoteNotDom0(exc.errno or errno.ENOENT, f"{where}: {exc}")
    elif isinstance(exc, errors.PrivcmdPermissionError):
        out = errors.RemotePermissionError(exc.errno or errno.EACCES, f"{where}: {exc}")
    else:
        return exc
    out.host = where
    return out


def _watchers(t: Any) -> Tuple[Any, Any, Any]:
    """(innermost transport, timing wrapper, dry-run wrapper) of a transport chain."""
    from ..transport.wrappers import DryRunTransport, TimingTransport, TransportWrapper

    timer = dry = None
    while isinstance(t, TransportWrapper):
        if isinstance(t, TimingTransport) and timer is None:
            timer = t
        if isinstance(t, DryRunTransport) and dry is None:
            dry = t
        t = t.inner
    return t, timer, dry


class RemoteHandle(Handle):
    """A handle on a hypervisor on another host, over one ssh connection.

    Every public operation of :class:`~xenprivcmd.handle.Handle` is forwarded
    by name (one request, one round trip), so operations added to Handle work
    over the link without a protocol change.  ``abi`` and ``detection`` come
    from the remote's detection (one round trip, once).  Wrapping
    ``transport`` in the trace wrappers (``xpsh -t``, ``-N``) makes the remote
    time (or hold back) its hypercalls and send the records back.
    """

    def __init__(self, transport: RemoteTransport, uri: str, arch: str, read_only: bool) -> None:
        super().__init__(transport, uri, arch=arch)
        self.read_only = read_only

    @property
    def round_trips(self) -> int:
        """Requests sent over the link so far (the handshake's not counted)."""
        return self._remote().round_trips

    def _remote(self) -> RemoteTransport:
        inner, _, _ = _watchers(self.transport)
        assert isinstance(inner, RemoteTransport)
        return inner

    def _call(self, method: str, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Any:
        try:
            msg = {"op": "call", "method": method, "args": [_codec.encode_arg(a) for a in args],
                   "kwargs": {"$m": [[k, _codec.encode_arg(v)] for k, v in kwargs.items()]}}
        except TypeError as exc:
            raise TypeError(f"{method}: {exc}") from None
        reads = allowed_read_only(method, kwargs)
        if self.read_only and not reads:
            raise refusal(method)
        return self._request(msg, method, applied=False if reads else None)

    def _request(self, msg: Dict[str, Any], what: str, applied: Optional[bool]) -> Any:
        remote, timer, dry = _watchers(self.transport)
        if timer is not None:
            msg["trace"] = True
        if dry is not None:
            msg["dry_run"] = True
        reply = remote.request(msg, what, applied)
        if timer is not None:
            for rec in reply.get("timed", []):
                timer._add(_codec.decode(rec))
        if dry is not None:
            with dry._rec_lock:
                dry.intercepted.extend(_codec.decode(rec) for rec in reply.get("held", []))
            held_writes = getattr(getattr(self, "store_override", None), "writes", None)
            if isinstance(held_writes, list):  # the remote's held-back xenstore writes, for -N's report
                held_writes.extend(str(w) for w in reply.get("store_writes", []))
        if not reply.get("ok"):
            where = remote.link.target.where
            raise _codec.decode_error(reply.get("error") or {}, _remote_error(where))
        return _codec.decode(reply.get("value"))

    @property
    def abi(self) -> "_abi.Variant":
        """The remote hypervisor's ABI variant (detected there once)."""
        if self._abi is None:
            with self._lock:
                if self._abi is None:
                    got = self._request({"op": "abi"}, "abi", applied=False)
                    self.detection = dict(got["detection"])
                    self._abi = _abi.variant(got["release"], arch=got["arch"])
        return self._abi

    @property
    def engine(self) -> Any:
        raise errors.NotSupported(errno.EOPNOTSUPP, "a remote handle has no hypercall layer: use its operations")

    def xenstore(self) -> Any:
        """None here: the remote's xenstore is reached through the operations that use it
        (shutdown, setmem, uptime, ...), which run on the remote."""
        raise errors.XenstoreUnavailable(errno.ENOENT, f"no local xenstore for {self.uri}: the remote's "
                                         "operations use its own")

    def make_read_only(self) -> None:
        """Refuse every state-changing operation from now on, here and on the remote."""
        if not self.read_only:
            self._request({"op": "read_only"}, "make_read_only", applied=False)
            self.read_only = True

    def batch(self) -> "RemoteBatch":
        """A batch whose operations run on the remote in one round trip (see Handle.batch)."""
        return RemoteBatch(self)

    def events(self, *, domains: Any = None, timeout: Optional[float] = None) -> "RemoteDomainEvents":
        """:meth:`Handle.events` run on the remote (its xenstore watches and polls), the events
        fetched a batch at a time (each request waits up to 10 s there for the next)."""
        wire = None if domains is None else _codec.encode([_codec.encode_arg(d) for d in (
            [domains] if isinstance(domains, (str, int)) else domains)])
        sid = self._request({"op": "events", "action": "open", "domains": wire, "timeout": timeout},
                            "events", applied=False)
        return RemoteDomainEvents(self, int(sid), timeout)

    def _local_only(self, what: str) -> Any:
        raise errors.NotSupported(errno.EOPNOTSUPP, f"{what}: maps or binds on this machine only, not over ssh"
                                  f" ({self.uri}): run it on the dom0")

    def map_foreign(self, *a: Any, **k: Any) -> Any:
        return self._local_only("map_foreign")

    def map_resource(self, *a: Any, **k: Any) -> Any:
        return self._local_only("map_resource")

    def map_grants(self, *a: Any, **k: Any) -> Any:
        return self._local_only("map_grants")

    def restrict(self, *a: Any, **k: Any) -> Any:
        return self._local_only("restrict")

    def event_channels(self, *a: Any, **k: Any) -> Any:
        return self._local_only("event_channels")


class RemoteDomainEvents(DomainEvents):
    """:class:`xenprivcmd.events.DomainEvents` over the link: the same ``next``, iteration,
    ``close`` and context manager; the stream itself runs on the remote."""

    #: The longest one request waits on the remote for an event.
    WAIT = 10.0

    def __init__(self, handle: RemoteHandle, stream: int, timeout: Optional[float]) -> None:
        # no super().__init__: nothing is watched or polled here, the remote does it
        self._remote = handle
        self._stream = stream
        self._end = None if timeout is None else time.monotonic() + timeout
        self._queue: List[Any] = []
        self.closed = False

    def next(self, timeout: Optional[float] = None) -> Any:
        if self.closed:
            raise ValueError("the event stream is closed")
        limit = None if timeout is None else time.monotonic() + timeout
        while not self._queue:
            now = time.monotonic()
            ends = [t for t in (limit, self._end) if t is not None]
            if ends and now >= min(ends):
                return None
            wait = min([self.WAIT] + [t - now for t in ends])
            got = self._remote._request({"op": "events", "action": "next", "stream": self._stream,
                                         "wait": wait}, "events", applied=False)
            self._queue.extend(got)
        return self._queue.pop(0)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if not self._remote.closed:
            try:
                self._remote._request({"op": "events", "action": "close", "stream": self._stream}, "events",
                                      applied=False)
            except (errors.RemoteError, OSError):
                pass

    def __repr__(self) -> str:
        return f"<xenprivcmd.DomainEvents over ssh, stream {self._stream}{' closed' if self.closed else ''}>"


class RemoteBatch(_Batch):
    """:meth:`Handle.batch` over the link: the operations are queued here and
    sent in one request; the remote runs them on its own batch (multicall
    traps).  Unlike a local batch, a bad argument raises from :meth:`run`
    (nothing of the batch runs) rather than when it is queued."""

    def __init__(self, handle: RemoteHandle) -> None:  # noqa: B026 - no local engine: not Batch's init
        self.traps = 0
        self._remote_handle = handle
        self._queued: List[Tuple[str, Tuple[Any, ...], Dict[str, Any], Any]] = []

    def _enqueue(self, name: str, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Any:
        from ..ops.batch import Call

        if self._remote_handle.read_only and name not in READ_ONLY_BATCH:
            raise refusal(f"batch {name}")
        call = Call(f"{name}({', '.join(map(repr, args))})")
        self._queued.append((name, args, kwargs, call))
        return call

    def __len__(self) -> int:
        return len(self._queued)

    def __enter__(self) -> "RemoteBatch":  # noqa: PYI034 - the same shape as Batch's
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.run()

    def run(self) -> None:
        """Run every queued operation remotely; each Call then holds its outcome."""
        ops, self._queued = self._queued, []
        if not ops:
            return
        try:
            wire = [_codec.encode((name, [_codec.encode_arg(a) for a in args],
                                   {k: _codec.encode_arg(v) for k, v in kwargs.items()}))
                    for name, args, kwargs, _call in ops]
        except TypeError as exc:
            raise TypeError(f"batch: {exc}") from None
        reads = all(name in READ_ONLY_BATCH for name, _a, _k, _c in ops)
        # the operations travel already encoded: decode() of a tagged value gives it back
        outcomes = self._remote_handle._request({"op": "batch", "ops": wire}, f"batch of {len(ops)}",
                                         applied=False if reads else None)
        for (_name, _args, _kwargs, call), (done, error, value) in zip(ops, outcomes):
            if error is not None:
                call._fail(error)
            elif done:
                call._set(value)


def _batch_methods() -> None:
    for name, f in vars(_Batch).items():
        if inspect.isfunction(f) and not name.startswith("_") and name not in ("run", "add"):
            def op(self: RemoteBatch, *args: Any, _name: str = name, **kwargs: Any) -> Any:
                return self._enqueue(_name, args, kwargs)

            op.__name__ = op.__qualname__ = name
            op.__doc__ = f.__doc__
            setattr(RemoteBatch, name, op)


_batch_methods()


def _forwarder(name: str, original: Any) -> Any:
    def op(self: RemoteHandle, *args: Any, **kwargs: Any) -> Any:
        return self._call(name, args, kwargs)

    op.__name__ = op.__qualname__ = name
    op.__doc__ = original.__doc__
    op.__wrapped__ = original  # type: ignore[attr-defined]  # inspect.signature shows Handle's
    return op


#: Handle's operations, forwarded by name (``close`` and the private ones stay local).
FORWARDED = tuple(sorted(n for n, f in vars(Handle).items()
                         if inspect.isfunction(getattr(f, "__wrapped__", f))  # an _Operation wraps its method
                         and not n.startswith("_") and n != "close"
                         and n not in vars(RemoteHandle)))
for _name in FORWARDED:
    setattr(RemoteHandle, _name, _forwarder(_name, vars(Handle)[_name]))


def _handshake(link: Link, target: Target) -> Dict[str, Any]:
    """Boot (or meet) the remote helper; its hello."""
    deadline = time.monotonic() + HANDSHAKE_TIMEOUT
    where = target.where

    def ended() -> BaseException:
        status = link.wait(5.0)
        if status is None:
            link.kill()
        link._stderr_thread.join(1.0)
        return classify(target, status, link.stderr)

    def lost(what: str) -> BaseException:
        err = errors.ConnectionLost(errno.ECONNRESET, f"{where}: {what}")
        err.host = where
        link.kill()
        return err

    try:
        magic = link.read_magic(deadline)
        if magic is None:
            raise ended()
        if magic.startswith(_boot.BOOT_MAGIC):
            from .. import __version__

            data, digest = _boot.bundle()
            stage1 = _boot.STAGE1.encode("utf-8")
            link.write(len(stage1).to_bytes(4, "big") + stage1)
            link.send({"version": __version__, "protocol": _codec.PROTOCOL, "hash": digest,
                       "min_python": list(_boot.MIN_PYTHON)})
            while True:
                msg = link.recv(deadline)
                if msg is None:
                    raise ended()
                status = msg.get("status")
                if status == "need":
                    link.write(len(data).to_bytes(4, "big") + data)
                elif status == "old":
                    err = errors.NoRemotePython(errno.ENOENT, f"{where}: {msg.get('executable')} is Python "
                                                f"{msg.get('python')}; xenprivcmd needs python3 >= "
                                                f"{'.'.join(map(str, _boot.MIN_PYTHON))} "
                                                "(python=PATH names another)")
                    err.host = where
                    link.close()
                    raise err
                elif status == "corrupt":
                    raise lost("the bundle arrived corrupted (checksum mismatch)")
                else:
                    return msg
        elif magic.startswith(_boot.HELPER_MAGIC):
            msg = link.recv(deadline)
            if msg is None:
                raise ended()
            return msg
        link.kill()
        raise errors.ProtocolMismatch(errno.EPROTO, f"{where}: the remote printed no xenprivcmd greeting "
                                      f"(a login banner or shell rc filling the stream?)")
    except TimeoutError:
        raise lost(f"no answer within {HANDSHAKE_TIMEOUT:g} s while starting the remote helper") from None
    except (BrokenPipeError, ConnectionError):
        raise ended() from None
    except _codec.FrameError as exc:
        link.kill()
        raise errors.ProtocolMismatch(errno.EPROTO, f"{where}: not xenprivcmd's protocol: {exc}") from None


def open_remote(uri: str, abi: Optional[str] = None, read_only: bool = False, **_ignored: Any) -> RemoteHandle:
    """``xenprivcmd.open("xen+ssh://...")``: see :mod:`xenprivcmd.remote`."""
    target = parse_uri(uri)
    link = Link(target)
    hello = _handshake(link, target)
    where = target.where
    if hello.get("hello") != "xenprivcmd" or hello.get("protocol") != _codec.PROTOCOL:
        link.kill()
        err = errors.ProtocolMismatch(errno.EPROTO, f"{where}: the remote helper speaks protocol "
                                      f"{hello.get('protocol')!r} (xenprivcmd {hello.get('version')}); "
                                      f"this client speaks {_codec.PROTOCOL}")
        err.host = where
        raise err
    transport = RemoteTransport(link, hello)
    try:
        reply = transport.request({"op": "open", "uri": target.remote_uri, "abi": abi, "read_only": read_only},
                                  "open", applied=False)
    finally:
        transport.round_trips = 0
    if not reply.get("ok"):
        transport.close()
        raise _open_error(where, _codec.decode_error(reply.get("error") or {}, _remote_error(where)))
    info = reply["value"]
    transport.buffer_kind = f"remote {info.get('buffer_kind')}"
    transport.remote_describe = str(info.get("describe", ""))
    return RemoteHandle(transport, uri, arch=str(info.get("arch", "x86_64")),
                        read_only=bool(info.get("read_only")) or bool(hello.get("read_only")))
