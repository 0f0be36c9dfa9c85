"""A tiny in-process xenstored speaking the xenstore wire protocol.

It serves a unix socket in a directory of the caller (a thread accepting, a
thread per connection) and, for the device transport, any stream it is handed
(a socketpair end, the master side of a raw pty).  The store is a dict of
node path -> value; a node's children are the nodes one level below it.

Supported: READ, DIRECTORY, WRITE, RM, MKDIR, GET_PERMS, SET_PERMS, GET_DOMAIN_PATH,
WATCH/UNWATCH (each watch fired once when set, as xenstored does, then on every change
at or below its path; a removal also fires the watches below the removed node),
TRANSACTION_START/END (a copy of the store per transaction; a commit after another
change to the store answers EAGAIN, as does one of the next :attr:`conflicts` commits),
INTRODUCE, RELEASE, IS_DOMAIN_INTRODUCED (firing ``@introduceDomain`` /
``@releaseDomain``); any other type gets an ``EINVAL`` error reply, as from xenstored.  Fault modes, for the client's
error paths, are taken from :attr:`FakeXenstored.faults` (one per request,
first in first out) or else :attr:`FakeXenstored.fault` (every request):

``wrong_req_id``  the reply carries another request's id
``oversize``      the reply header claims 5000 bytes of payload
``truncate``      half a reply, then the connection is closed
``close``         the connection is closed without a reply
``wrong_type``    the reply has another request's type (XS_RM)
``event_first``   an unrequested watch event (token "stray") comes before the reply
``silent``        the request is read and never answered
``error:NAME``    an error reply carrying NAME (e.g. ``error:EACCES``)

:attr:`overlaps` counts requests that arrived while a previous request on the
same connection was still unanswered (the client must never pipeline).
"""

from __future__ import annotations

import os
import select
import socket
import struct
import threading
import time
from typing import Callable, Dict, List, Optional, Tuple

XS_DIRECTORY = 1
XS_READ = 2
XS_GET_PERMS = 3
XS_WATCH = 4
XS_UNWATCH = 5
XS_TRANSACTION_START = 6
XS_TRANSACTION_END = 7
XS_INTRODUCE = 8
XS_RELEASE = 9
XS_GET_DOMAIN_PATH = 10
XS_WRITE = 11
XS_MKDIR = 12
XS_RM = 13
XS_SET_PERMS = 14
XS_WATCH_EVENT = 15
XS_ERROR = 16
XS_IS_DOMAIN_INTRODUCED = 17

PAYLOAD_MAX = 4096
HDR = struct.Struct("<IIII")

UUID0 = "00000000-0000-0000-0000-000000000000"
UUID1 = "5d2c7a4e-8f3b-4c1d-9e6a-0b1c2d3e4f50"
UUID5 = "a1b2c3d4-e5f6-4789-abcd-ef0123456789"


def default_tree() -> Dict[str, bytes]:
    """A dom0, a guest with /vm/<uuid>/uuid, a guest whose uuid is only in its vm path."""
    nodes = {
        "/local/domain/0/name": b"Domain-0",
        "/local/domain/0/domid": b"0",
        "/local/domain/0/vm": f"/vm/{UUID0}".encode(),
        "/local/domain/1/name": b"web",
        "/local/domain/1/vm": f"/vm/{UUID1}".encode(),
        f"/vm/{UUID1}/uuid": UUID1.encode(),
        f"/vm/{UUID1}/name": b"web",
        "/local/domain/5/name": b"db",
        "/local/domain/5/vm": f"/vm/{UUID5}-2".encode(),
        "/local/domain/pool": b"",  # not a domid: ignored by domain_names()
    }
    tree: Dict[str, bytes] = {"/": b""}
    for path, value in nodes.items():
        _create(tree, path, value)
    return tree


def _parent(path: str) -> str:
    head = path.rsplit("/", 1)[0]
    return head or "/"


def _create(tree: Dict[str, bytes], path: str, value: bytes) -> None:
    parts = path.strip("/").split("/")
    for i in range(1, len(parts)):
        tree.setdefault("/" + "/".join(parts[:i]), b"")
    tree[path] = value


class _Conn:
    """One client stream: framing and a buffer of bytes read ahead."""

    def __init__(self, recv: Callable[[int], bytes], send: Callable[[bytes], None], fileno: int) -> None:
        self.recv, self._send, self.fileno = recv, send, fileno
        self.buf = b""
        self.watches: List[Tuple[str, str]] = []  # (path, token)
        self.lock = threading.Lock()

    def send(self, data: bytes) -> None:
        with self.lock:
            self._send(data)

    def event(self, path: str, token: str) -> None:
        body = path.encode() + b"\0" + token.encode() + b"\0"
        try:
            self.send(HDR.pack(XS_WATCH_EVENT, 0, 0, len(body)) + body)
        except OSError:
            pass

    def read_message(self) -> Optional[Tuple[int, int, int, bytes]]:
        while True:
            if len(self.buf) >= HDR.size:
                mtype, req_id, tx_id, length = HDR.unpack_from(self.buf)
                if len(self.buf) >= HDR.size + length:
                    payload = self.buf[HDR.size : HDR.size + length]
                    self.buf = self.buf[HDR.size + length :]
                    return mtype, req_id, tx_id, payload
            try:
                chunk = self.recv(65536)
            except OSError:
                return None
            if not chunk:
                return None
            self.buf += chunk

    def pending(self) -> bool:
        """Has the client sent more than the message being answered?"""
        if self.buf:
            return True
        try:
            return bool(select.select([self.fileno], [], [], 0)[0])
        except (OSError, ValueError):
            return False


class FakeXenstored:
    def __init__(self, directory: str, tree: Optional[Dict[str, bytes]] = None, name: str = "socket") -> None:
        self.path = os.path.join(directory, name)
        self.tree: Dict[str, bytes] = default_tree() if tree is None else tree
        self.faults: List[str] = []
        self.fault: Optional[str] = None
        self.reply_delay = 0.0
        self.requests: List[Tuple[int, int, bytes]] = []  # (type, req_id, payload)
        self.perms: Dict[str, List[str]] = {}
        self.introduced: Dict[int, Tuple[int, int]] = {}
        self.conflicts = 0
        self.generation = 0
        self._tx: Dict[int, Tuple[Dict[str, bytes], int]] = {}
        self._next_tx = 1
        self._conns: List[_Conn] = []
        self.connections = 0
        self.overlaps = 0
        self._lock = threading.Lock()
        self._listener: Optional[socket.socket] = None
        self._threads: List[threading.Thread] = []
        self._streams: List[Callable[[], None]] = []  # closers
        self._stopping = False

    # -- life cycle --------------------------------------------------------

    def start(self) -> FakeXenstored:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.path)
        listener.listen(16)
        self._listener = listener
        self._spawn(self._accept_loop)
        return self

    def stop(self) -> None:
        self._stopping = True
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
        with self._lock:
            closers = list(self._streams)
        for close in closers:
            close()
        for t in self._threads:
            t.join(timeout=5)
        if os.path.exists(self.path):
            os.unlink(self.path)

    def __enter__(self) -> FakeXenstored:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        t = threading.Thread(target=target, args=args, daemon=True)
        t.start()
        self._threads.append(t)

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            self.serve_socket(sock)

    def serve_socket(self, sock: socket.socket) -> None:
        """Serve a connected stream socket (an accepted client, or a socketpair end) in a thread."""

        def close() -> None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

        with self._lock:
            self.connections += 1
            self._streams.append(close)
        self._spawn(self._serve, _Conn(sock.recv, sock.sendall, sock.fileno()), close)

    def serve_fd(self, fd: int) -> None:
        """Serve a raw file descriptor (the master side of a pty standing in for /dev/xen/xenbus)."""

        def send(data: bytes) -> None:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]

        done = threading.Event()

        def recv(n: int) -> bytes:
            while not (done.is_set() or self._stopping):
                if select.select([fd], [], [], 0.05)[0]:
                    return os.read(fd, n)
            return b""

        def close() -> None:
            done.set()

        with self._lock:
            self.connections += 1
            self._streams.append(close)
        self._spawn(self._serve, _Conn(recv, send, fd), close)

    # -- the protocol --------------------------------------------------------

    def _serve(self, conn: _Conn, close: Callable[[], None]) -> None:
        with self._lock:
            self._conns.append(conn)
        try:
            self._serve_conn(conn, close)
        finally:
            with self._lock:
                if conn in self._conns:
                    self._conns.remove(conn)

    def fire(self, path: str, removed: bool = False) -> None:
        """Fire every watch at or above ``path`` (and, for a removal, below it)."""
        with self._lock:
            targets = [(c, wp, tok) for c in self._conns for wp, tok in c.watches]
        for c, wp, tok in targets:
            if path == wp or path.startswith(wp.rstrip("/") + "/"):
                c.event(path, tok)
            elif removed and wp.startswith(path.rstrip("/") + "/"):
                c.event(wp, tok)

    def _serve_conn(self, conn: _Conn, close: Callable[[], None]) -> None:
        while not self._stopping:
            msg = conn.read_message()
            if msg is None:
                break
            mtype, req_id, tx_id, payload = msg
            with self._lock:
                self.requests.append((mtype, req_id, payload))
                fault = self.faults.pop(0) if self.faults else self.fault
            if self.reply_delay:
                time.sleep(self.reply_delay)
            if conn.pending():
                with self._lock:
                    self.overlaps += 1
            if fault == "silent":
                continue
            if fault == "close":
                break
            fired: List[Tuple[str, bool]] = []
            if fault is not None and fault.startswith("error:"):
                rtype, body = XS_ERROR, fault[len("error:") :].encode() + b"\0"
            else:
                rtype, body = self.handle(mtype, payload, tx_id, conn, fired)
            if fault == "event_first":
                conn.event("/stray", "stray")
            try:
                if fault == "wrong_req_id":
                    conn.send(HDR.pack(rtype, req_id + 1, tx_id, len(body)) + body)
                elif fault == "oversize":
                    conn.send(HDR.pack(rtype, req_id, tx_id, 5000) + b"x" * 5000)
                elif fault == "wrong_type":
                    conn.send(HDR.pack(XS_RM, req_id, tx_id, len(body)) + body)
                elif fault == "truncate":
                    whole = HDR.pack(rtype, req_id, tx_id, len(body) + 8) + body
                    conn.send(whole[: HDR.size + len(body) // 2])
                    break
                else:
                    conn.send(HDR.pack(rtype, req_id, tx_id, len(body)) + body)
            except OSError:
                break
            for path, removed in fired:
                self.fire(path, removed)
        close()

    def handle(self, mtype: int, payload: bytes, tx_id: int = 0, conn: Optional[_Conn] = None,
               fired: Optional[List[Tuple[str, bool]]] = None) -> Tuple[int, bytes]:
        """The reply (type, payload) to one request; the watches to fire after it go to ``fired``."""
        fired = [] if fired is None else fired
        if len(payload) > PAYLOAD_MAX:
            return XS_ERROR, b"E2BIG\0"
        if mtype == XS_WRITE:
            path_b, sep, value = payload.partition(b"\0")
            if not sep:
                return XS_ERROR, b"EINVAL\0"
        else:
            if not payload.endswith(b"\0"):
                return XS_ERROR, b"EINVAL\0"
            path_b, _sep, value = payload[:-1].partition(b"\0")
        arg = path_b.decode("utf-8", errors="replace")
        with self._lock:
            if mtype == XS_GET_DOMAIN_PATH:
                if not arg.isdigit():
                    return XS_ERROR, b"EINVAL\0"
                return mtype, b"/local/domain/%d\0" % int(arg)
            if mtype == XS_TRANSACTION_START:
                tid = self._next_tx
                self._next_tx += 1
                self._tx[tid] = (dict(self.tree), self.generation)
                return mtype, b"%d\0" % tid
            if mtype == XS_TRANSACTION_END:
                got = self._tx.pop(tx_id, None)
                if got is None:
                    return XS_ERROR, b"ENOENT\0"
                if arg != "T":
                    return mtype, b"OK\0"
                tree, gen = got
                if self.conflicts > 0 or gen != self.generation:
                    self.conflicts = max(0, self.conflicts - 1)
                    return XS_ERROR, b"EAGAIN\0"
                changed = [p for p in set(tree) | set(self.tree) if tree.get(p) != self.tree.get(p)]
                self.tree = tree
                self.generation += 1
                fired.extend((p, p not in tree) for p in sorted(changed))
                return mtype, b"OK\0"
            if mtype in (XS_INTRODUCE, XS_RELEASE, XS_IS_DOMAIN_INTRODUCED):
                words = payload[:-1].split(b"\0")
                if not words or not words[0].isdigit():
                    return XS_ERROR, b"EINVAL\0"
                domid = int(words[0])
                if mtype == XS_IS_DOMAIN_INTRODUCED:
                    return mtype, b"T\0" if domid in self.introduced else b"F\0"
                if mtype == XS_RELEASE:
                    if self.introduced.pop(domid, None) is None:
                        return XS_ERROR, b"ENOENT\0"
                    fired.append(("@releaseDomain", False))
                    return mtype, b"OK\0"
                if len(words) != 3 or not all(w.isdigit() for w in words):
                    return XS_ERROR, b"EINVAL\0"
                if domid in self.introduced:
                    return XS_ERROR, b"EEXIST\0"
                self.introduced[domid] = (int(words[1]), int(words[2]))
                fired.append(("@introduceDomain", False))
                return mtype, b"OK\0"
            if mtype in (XS_WATCH, XS_UNWATCH):
                token = value.decode()
                if conn is None or not token:
                    return XS_ERROR, b"EINVAL\0"
                if mtype == XS_WATCH:
                    if (arg, token) in conn.watches:
                        return XS_ERROR, b"EEXIST\0"
                    conn.watches.append((arg, token))
                    conn_ = conn
                    threading.Timer(0.001, conn_.event, (arg, token)).start()  # fired once when set
                    return mtype, b"OK\0"
                if (arg, token) not in conn.watches:
                    return XS_ERROR, b"ENOENT\0"
                conn.watches.remove((arg, token))
                return mtype, b"OK\0"
            if not arg.startswith("/") or (arg != "/" and arg.endswith("/")) or "//" in arg:
                return XS_ERROR, b"EINVAL\0"
            tree = self.tree
            if tx_id:
                got = self._tx.get(tx_id)
                if got is None:
                    return XS_ERROR, b"ENOENT\0"
                tree = got[0]
            if mtype == XS_READ:
                if arg not in tree:
                    return XS_ERROR, b"ENOENT\0"
                return mtype, tree[arg]
            if mtype == XS_DIRECTORY:
                if arg not in tree:
                    return XS_ERROR, b"ENOENT\0"
                prefix = arg.rstrip("/") + "/"
                names = [p[len(prefix) :] for p in tree if p != arg and p.startswith(prefix)]
                body = b"".join(n.encode() + b"\0" for n in names if "/" not in n)
                return mtype, body
            if mtype == XS_GET_PERMS:
                if arg not in tree:
                    return XS_ERROR, b"ENOENT\0"
                return mtype, b"".join(p.encode() + b"\0" for p in self.perms.get(arg, ["n0"]))
            if mtype == XS_SET_PERMS:
                if arg not in tree:
                    return XS_ERROR, b"ENOENT\0"
                words = [w.decode() for w in value.split(b"\0") if w]
                if not words or any(w[0] not in "nrwb" or not w[1:].isdigit() for w in words):
                    return XS_ERROR, b"EINVAL\0"
                self.perms[arg] = words
                self._changed(tx_id, fired, arg)
                return mtype, b"OK\0"
            if mtype in (XS_WRITE, XS_MKDIR):
                if mtype == XS_MKDIR and arg in tree:
                    return mtype, b"OK\0"
                _create(tree, arg, value if mtype == XS_WRITE else b"")
                self._changed(tx_id, fired, arg)
                return mtype, b"OK\0"
            if mtype == XS_RM:
                if arg == "/":
                    return XS_ERROR, b"EINVAL\0"
                if arg not in tree:
                    # xenstored: removing a missing node is fine if its parent exists
                    if _parent(arg) in tree:
                        return mtype, b"OK\0"
                    return XS_ERROR, b"ENOENT\0"
                for p in [p for p in tree if p == arg or p.startswith(arg + "/")]:
                    del tree[p]
                self._changed(tx_id, fired, arg, removed=True)
                return mtype, b"OK\0"
        return XS_ERROR, b"EINVAL\0"

    def _changed(self, tx_id: int, fired: List[Tuple[str, bool]], path: str, removed: bool = False) -> None:
        if not tx_id:  # a transaction's changes fire at its commit
            self.generation += 1
            fired.append((path, removed))
