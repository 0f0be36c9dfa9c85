"""A small xenstore client: read the store's tree from dom0, in pure Python.

The library uses it for what the hypervisor does not know: domain names and
VM UUIDs live in xenstore, not in Xen.  Everything else in xenprivcmd works
without it; :func:`try_domain_names` is the entry point that never fails
because xenstore is missing.

Wire protocol (Xen's public header ``io/xs_wire.h``): every message is a
16-byte header ``struct xsd_sockmsg { uint32_t type, req_id, tx_id, len; }``
in the host's byte order, followed by ``len`` bytes of payload, at most
``XENSTORE_PAYLOAD_MAX`` (4096).  Requests carry nul-terminated strings; the
reply echoes ``type`` and ``req_id``, or has type ``XS_ERROR`` and an errno
*name* such as ``"ENOENT\\0"``.  This client issues one request at a time on
its connection (a lock is held from sending the request to reading the whole
reply).  Watch events (``XS_WATCH_EVENT``) may arrive at any time: the client
queues each for its watch (:meth:`Xenstore.watch`, :mod:`.watch`), also while
waiting for a reply.  Transactions (:meth:`Xenstore.transaction`,
:mod:`.transaction`) carry their id in ``tx_id``; other requests 0.

Two transports speak the same framing:

* the unix socket of a xenstored running in this domain
  (``/run/xenstored/socket``, ``/var/run/xenstored/socket``);
* the kernel device ``/dev/xen/xenbus`` (``/proc/xen/xenbus`` on old
  kernels), which relays messages to xenstored wherever it runs.

:meth:`Xenstore.open` tries the socket first, then the device, like
libxenstore.  The socket talks to the daemon directly (no relay through the
kernel and the xenstore ring, whose requests are serialised for the whole
kernel), and a socket file left behind by a dead xenstored is detected at
once (``ECONNREFUSED``) instead of blocking.  The device is still the only way
when xenstored runs in a stub domain and no socket exists.  ``XENSTORED_PATH``
in the environment (libxenstore's variable) names the one path to use, socket
or device, with no fallback.

Failures:

* :class:`XenstoreError` (an ``OSError``) when xenstored refuses a request:
  ``errno`` is the errno, ``path`` the node; ``ENOENT`` is the subclass
  :class:`XenstoreNoEntry`, also a ``FileNotFoundError``;
  :class:`XenstoreTimeout` (also a ``TimeoutError``) when no reply came in
  time;
* :class:`XenstoreUnavailable` when there is nothing to connect to;
* :class:`xenprivcmd.errors.DecodeError` when a reply is malformed (another
  request's id, a length beyond 4096, a connection closed mid-reply).

After a timeout or a malformed reply the connection is closed (a late reply
could otherwise be taken for the answer to the next request); the next request
connects again when the :class:`Xenstore` was opened from a path.
"""

from __future__ import annotations

import _socket as socket  # the C module: socket.py would load enum, selectors, collections
import errno as _errno
import os
from _thread import allocate_lock

from ..abi.hypercalls import check_domid
from ..errors import DecodeError, XenstoreError, XenstoreNoEntry, XenstoreTimeout, XenstoreUnavailable
from ..types import WatchEvent
from .connection import ENV_PATH, Connection, connect_auto, connect_path
from .ops import _path_bytes, _text
from .session import ConnectionOps
from .wire import (
    _TYPE_NAMES,
    DEFAULT_TIMEOUT,
    HEADER,
    XENSTORE_PAYLOAD_MAX,
    XS_ERROR,
    XS_UNWATCH,
    XS_WATCH,
    XS_WATCH_EVENT,
    errno_from_name,
    error,
)

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing and uuid are not loaded by a one-shot listing
    from typing import Callable, Dict, List, Optional, Tuple

    from .watch import Watch

#: Events kept per watch that nobody has taken yet; older ones are dropped (``dropped_events``).
WATCH_QUEUE_MAX = 4096
#: How often a waiting watch looks again at events other threads' requests queued, in seconds.
WATCH_SLICE = 0.05

__all__ = ["Xenstore", "try_domain_names"]

# --------------------------------------------------------------------------
# The client


def _parse_uuid(text: str) -> Optional[str]:
    try:
        import uuid as _uuid

        return str(_uuid.UUID(text.strip()))
    except ValueError:
        return None


class Xenstore(ConnectionOps):
    """A connection to xenstore.

    ``with Xenstore.open() as xs: xs.read("/local/domain/0/name")``.  Safe to
    share between threads: requests are serialised on the connection.
    """

    def __init__(
        self,
        transport: Optional[Connection] = None,
        *,
        timeout: Optional[float] = DEFAULT_TIMEOUT,
        connector: Optional[Callable[[], Connection]] = None,
    ) -> None:
        if transport is None and connector is None:
            raise ValueError("Xenstore needs a transport or a connector")
        self.timeout = timeout
        self._transport = transport
        self._connector = connector
        self._lock = allocate_lock()
        self._req_id = 0
        self._closed = False
        self.reconnects = 0
        #: token -> the watch's queue of events; token -> its path (re-registered after a reconnect)
        self._queues: Dict[str, List[WatchEvent]] = {}
        self._watches: Dict[str, str] = {}
        self._token_seq = 0
        #: watch events dropped because a watch's queue was full (WATCH_QUEUE_MAX)
        self.dropped_events = 0

    @classmethod
    def open(cls, path: Optional[str] = None, *, timeout: Optional[float] = DEFAULT_TIMEOUT) -> Xenstore:
        """Connect to xenstore.

        ``path`` (or else ``$XENSTORED_PATH``) names a socket or a device and
        is the only one tried; without either, the xenstored sockets are tried
        first, then the xenbus devices.  ``timeout`` (seconds, ``None`` for
        none) bounds the connect and every reply.
        """
        if path is None:
            path = os.environ.get(ENV_PATH) or None

        connector: Callable[[], Connection]
        if path is None:

            def connector() -> Connection:
                return connect_auto(timeout)

        else:
            fixed = path

            def connector() -> Connection:
                if not os.path.exists(fixed):
                    raise XenstoreUnavailable(_errno.ENOENT, f"no xenstore: {fixed} does not exist", path=fixed)
                try:
                    return connect_path(fixed, timeout)
                except socket.timeout:
                    raise
                except OSError as e:
                    err = e.errno or _errno.EIO
                    raise XenstoreUnavailable(err, f"no xenstore at {fixed}: {os.strerror(err)}", path=fixed) from e

        try:
            transport = connector()
        except socket.timeout as e:
            raise XenstoreTimeout(_errno.ETIMEDOUT, f"xenstore: connect timed out after {timeout} s") from e
        return cls(transport, timeout=timeout, connector=connector)

    # -- plumbing ----------------------------------------------------------

    @property
    def kind(self) -> Optional[str]:
        """``"socket"`` or ``"device"`` (``None`` while disconnected)."""
        return None if self._transport is None else self._transport.kind

    @property
    def path(self) -> Optional[str]:
        """The socket or device path of the current connection."""
        return None if self._transport is None else self._transport.path

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._queues.clear()
            self._watches.clear()
            self._drop()

    def __enter__(self) -> Xenstore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self.kind} {self.path!r}"
        return f"<Xenstore {state}>"

    def _drop(self) -> None:
        transport, self._transport = self._transport, None
        if transport is not None:
            try:
                transport.close()
            except OSError:
                pass

    def _connected(self) -> Connection:
        if self._closed:
            raise ValueError("I/O operation on a closed Xenstore")
        if self._transport is None:
            if self._connector is None:
                raise XenstoreError(_errno.ENOTCONN, "xenstore: connection lost and cannot be reopened")
            try:
                self._transport = self._connector()
            except socket.timeout as e:
                raise XenstoreTimeout(_errno.ETIMEDOUT, f"xenstore: connect timed out after {self.timeout} s") from e
            self.reconnects += 1
            transport = self._transport
            for token, path in list(self._watches.items()):  # xenstored forgot them with the old connection
                self._exchange(transport, XS_WATCH, _path_bytes(path) + b"\0" + token.encode("utf-8") + b"\0",
                               path, 0)
            return transport
        return self._transport

    def _recv_exact(self, transport: Connection, size: int, what: str) -> bytes:
        chunks: List[bytes] = []
        got = 0
        while got < size:
            chunk = transport.recv(size - got, self.timeout)
            if not chunk:
                raise DecodeError(f"xenstore: connection closed after {got} of {size} bytes of {what}")
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def _message(self, transport: Connection, where: str) -> Tuple[int, int, bytes]:
        """One whole message: (type, req_id, payload)."""
        header = self._recv_exact(transport, HEADER.size, "the reply header")
        rtype, rid, _tx, length = HEADER.unpack(header)
        if length > XENSTORE_PAYLOAD_MAX:
            raise DecodeError(f"xenstore{where}: reply length {length} exceeds {XENSTORE_PAYLOAD_MAX}")
        return rtype, rid, self._recv_exact(transport, length, "the reply payload")

    def request(self, msg_type: int, payload: bytes, *, path: Optional[str] = None, tx_id: int = 0) -> bytes:
        """Send one message (in transaction ``tx_id``, 0 for none) and return the payload of its reply.

        Watch events that arrive before the reply are queued for their watches.  Raises
        :class:`XenstoreError` for an error reply, :class:`DecodeError` for a malformed one,
        :class:`XenstoreTimeout` when none comes in time.
        """
        op = _TYPE_NAMES.get(msg_type, str(msg_type))
        where = f" {path}" if path is not None else ""
        if len(payload) > XENSTORE_PAYLOAD_MAX:
            raise XenstoreError(
                _errno.E2BIG,
                f"xenstore {op}{where}: request of {len(payload)} bytes exceeds {XENSTORE_PAYLOAD_MAX}",
                path=path,
                op=op,
            )
        with self._lock:
            transport = self._connected()
            return self._exchange(transport, msg_type, payload, path, tx_id)

    def _exchange(self, transport: Connection, msg_type: int, payload: bytes, path: Optional[str],
                  tx_id: int) -> bytes:
        """One request and its reply on ``transport``; the caller holds the lock."""
        op = _TYPE_NAMES.get(msg_type, str(msg_type))
        where = f" {path}" if path is not None else ""
        self._req_id = (self._req_id + 1) & 0xFFFFFFFF or 1
        req_id = self._req_id
        try:
            transport.send(HEADER.pack(msg_type, req_id, tx_id, len(payload)) + payload, self.timeout)
            while True:
                rtype, rid, body = self._message(transport, f" {op}{where}")
                if rtype == XS_WATCH_EVENT:
                    self._queue_event(body)
                    continue
                if rid != req_id:
                    raise DecodeError(f"xenstore {op}{where}: reply to request {rid}, expected {req_id}")
                if rtype not in (msg_type, XS_ERROR):
                    name = _TYPE_NAMES.get(rtype, str(rtype))
                    raise DecodeError(f"xenstore {op}{where}: reply of type {name}")
                break
        except DecodeError:
            self._drop()
            raise
        except socket.timeout as e:
            self._drop()
            raise XenstoreTimeout(
                _errno.ETIMEDOUT, f"xenstore {op}{where}: no reply within {self.timeout} s", path=path, op=op
            ) from e
        except OSError as e:
            self._drop()
            err = e.errno or _errno.EIO
            raise XenstoreError(err, f"xenstore {op}{where}: {os.strerror(err)}", path=path, op=op) from e
        except BaseException:  # KeyboardInterrupt mid-reply: the stream is out of step
            self._drop()
            raise
        if rtype == XS_ERROR:
            name = body.split(b"\0", 1)[0].decode("ascii", errors="replace")
            err = errno_from_name(name)
            raise error(err, f"xenstore {op}{where}: {os.strerror(err)} ({name})", path=path, op=op)
        return body

    # -- watches (the queues live here; the Watch objects in .watch) --------------

    def _queue_event(self, body: bytes) -> None:
        """A watch event: to its watch's queue (at most WATCH_QUEUE_MAX kept), or dropped when none."""
        parts = body.split(b"\0")
        if len(parts) < 2:
            return
        event = WatchEvent(parts[0].decode("utf-8", "replace"), parts[1].decode("utf-8", "replace"))
        q = self._queues.get(event.token)
        if q is not None:
            if len(q) >= WATCH_QUEUE_MAX:
                del q[0]
                self.dropped_events += 1
            q.append(event)

    def watch(self, path: str, token: Optional[str] = None) -> Watch:
        """Watch ``path`` and everything below it (``XS_WATCH``); ``path`` may be a node or
        ``@introduceDomain`` / ``@releaseDomain``.  Returns a :class:`~.watch.Watch`: a context
        manager (leaving it unwatches) with ``next(timeout=None)`` and iteration.  ``token``
        (default: one unique to this client) comes back with each event.  xenstored fires each
        new watch once at once, so the first event says only that the watch is set.

        Raises ``ValueError`` for a token in use on this connection or with a NUL, and as
        :meth:`request`.
        """
        from .watch import Watch

        p = _path_bytes(path)
        if token is None:
            self._token_seq += 1
            token = f"xenprivcmd:{os.getpid()}:{id(self):x}:{self._token_seq}"
        if not isinstance(token, str) or not token or "\0" in token:
            raise ValueError(f"xenstore watch token must be a non-empty str without NUL, not {token!r}")
        with self._lock:
            if token in self._queues:
                raise ValueError(f"xenstore watch token {token!r} is already in use on this connection")
            self._queues[token] = []
            self._watches[token] = path
        try:
            self.request(XS_WATCH, p + b"\0" + token.encode("utf-8") + b"\0", path=path)
        except BaseException:
            with self._lock:
                self._queues.pop(token, None)
                self._watches.pop(token, None)
            raise
        return Watch(self, path, token)

    def _unwatch(self, path: str, token: str) -> None:
        with self._lock:
            known = self._watches.pop(token, None) is not None
            self._queues.pop(token, None)
            if not known or self._closed or self._transport is None:
                return
        try:
            self.request(XS_UNWATCH, _path_bytes(path) + b"\0" + token.encode("utf-8") + b"\0", path=path)
        except (XenstoreNoEntry, XenstoreUnavailable):
            pass

    def _next_event(self, token: str, timeout: Optional[float]) -> Optional[WatchEvent]:
        """The next event of the watch ``token``: queued, or read off the connection while no
        request is in flight; None at the timeout.  Other threads' requests run meanwhile."""
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                q = self._queues.get(token)
                if q is None:
                    raise ValueError("the watch is closed")
                if q:
                    return q.pop(0)
                transport = self._connected()
                if transport.readable(0):
                    self._unsolicited(transport)
                    continue
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            transport.readable(WATCH_SLICE if left is None else min(left, WATCH_SLICE))

    def _unsolicited(self, transport: Connection) -> None:
        """Read a message nobody asked for (the caller holds the lock): a watch event, else the
        stream is out of step."""
        try:
            rtype, rid, body = self._message(transport, " (watch)")
        except socket.timeout as e:
            self._drop()
            raise XenstoreTimeout(_errno.ETIMEDOUT, f"xenstore: half a message, then nothing for {self.timeout} s",
                                  op="WATCH_EVENT") from e
        except DecodeError:
            self._drop()
            raise
        except OSError as e:
            self._drop()
            err = e.errno or _errno.EIO
            raise XenstoreError(err, f"xenstore: {os.strerror(err)}", op="WATCH_EVENT") from e
        if rtype != XS_WATCH_EVENT:
            self._drop()
            raise DecodeError(f"xenstore: a message of type {_TYPE_NAMES.get(rtype, rtype)} (request {rid})"
                              " with no request outstanding")
        self._queue_event(body)

    # -- operations: read, write, ... (.ops), transactions, domains (.session) ----

    # -- what the library needs --------------------------------------------

    def domids(self) -> List[int]:
        """The domids listed under ``/local/domain``, ascending."""
        names = self.directory("/local/domain")
        return sorted(int(n) for n in names if n.isascii() and n.isdigit() and len(n) <= 5 and int(n) <= 0xFFFF)

    def name_of(self, domid: int) -> Optional[str]:
        """The name of a domain, ``None`` when it has none (or does not exist)."""
        try:
            return _text(self.read(f"/local/domain/{check_domid(domid)}/name"))
        except XenstoreNoEntry:
            return None

    def domain_names(self) -> Dict[int, str]:
        """``{domid: name}`` for every domain under ``/local/domain`` that has a name."""
        try:
            domids = self.domids()
        except XenstoreNoEntry:
            return {}
        names: Dict[int, str] = {}
        for domid in domids:
            name = self.name_of(domid)  # None: the domain went away since the listing
            if name is not None:
                names[domid] = name
        return names

    def domid_of(self, name: str) -> Optional[int]:
        """The domid of the domain called ``name`` (the lowest one if several), or ``None``."""
        for domid, dname in sorted(self.domain_names().items()):
            if dname == name:
                return domid
        return None

    def vm_uuid(self, domid: int) -> Optional[str]:
        """The UUID of a domain, from ``/vm/<uuid>/uuid`` or else the ``/vm/<uuid>`` path itself.

        ``None`` when the domain has no ``vm`` node or neither gives a UUID.
        """
        try:
            vm = _text(self.read(f"/local/domain/{check_domid(domid)}/vm")).rstrip("/")
        except XenstoreNoEntry:
            return None
        if not vm.startswith("/"):
            return None
        try:
            found = _parse_uuid(_text(self.read(vm + "/uuid")))
        except XenstoreNoEntry:
            found = None
        if found is not None:
            return found
        # The path: "/vm/<uuid>", or "/vm/<uuid>-<n>" after a rename by old toolstacks.
        last = vm.rsplit("/", 1)[-1]
        return _parse_uuid(last) or _parse_uuid(last[:36])

    def domain_uuid_map(self) -> Dict[int, str]:
        """``{domid: uuid}`` for every domain under ``/local/domain`` whose UUID is known."""
        try:
            domids = self.domids()
        except XenstoreNoEntry:
            return {}
        uuids: Dict[int, str] = {}
        for domid in domids:
            found = self.vm_uuid(domid)
            if found is not None:
                uuids[domid] = found
        return uuids


def try_domain_names(path: Optional[str] = None, *, timeout: Optional[float] = DEFAULT_TIMEOUT) -> Dict[int, str]:
    """``{domid: name}`` from xenstore, or ``{}`` when xenstore is unavailable or fails.

    Never raises for a missing, dead, slow or misbehaving xenstore: names are a
    nicety, and the library works without them.
    """
    try:
        with Xenstore.open(path, timeout=timeout) as xs:
            return xs.domain_names()
    except (OSError, DecodeError):
        return {}
