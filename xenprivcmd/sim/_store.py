"""The simulated host's xenstore, and the guests that answer it.

The store holds what a toolstack (xl/libxl) writes for each domain:
``/local/domain/<id>/name``, ``vm``, ``memory/static-max``,
``memory/target``, ``control/shutdown``, the frontend and backend nodes of its
vifs and disks (``device/vif/<devid>``, ``/local/domain/0/backend/vbd/<id>/<devid>/dev``,
...), and ``/vm/<uuid>/{uuid,name,start_time}``.
Names live in ``host.names`` (the simulator's oldest xenstore view) and are
read from there; everything else is a node in :attr:`SimStore.nodes`.

A domain with PV drivers (``Domain.pv``: every domain of a host
description unless ``"pv": false``; never one made by ``createdomain``,
which has no kernel) acts as Linux's drivers do, at once when the node is
written and only while it is not paused: on ``control/shutdown`` it clears
the node (the acknowledgement) and shuts down with that reason
(``poweroff``, ``reboot``, ``suspend``, ``crash``, ``halt`` = poweroff);
on ``memory/target`` its balloon driver sets its memory to the target (at
most its ``max_mem``); on ``cpu/<n>/availability`` its cpu hotplug driver
brings vcpu n ``online`` or ``offline`` (never vcpu 0 offline, as Linux on x86).  A paused domain or one without PV drivers leaves the
node as written.  There is no toolstack daemon: a domain that reboots stays
shut down with reason ``reboot``.

It speaks xenstore's messages (:meth:`SimStore.request`), so it has every
operation of :class:`xenprivcmd.store.Xenstore` through the same code
(read, write, directory, rm, mkdir, get/set_perms, transactions,
introduce/release) and raises its exceptions.  Watches fire on every
change at or below their path (once when set, as xenstored does), on a
removal also below it; ``@releaseDomain`` when a domain shuts down, dies or
goes, ``@introduceDomain`` when one is introduced.  Transactions conflict
(EAGAIN at the commit) when the store changed since they started, or for
the next :attr:`SimStore.conflicts` commits.  ``control/sysrq`` = ``h``
makes a guest print the sysrq help on its console (and clear the node), as
Linux does.
"""

from __future__ import annotations

import errno as _errno
import os
import threading
import time
import uuid
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Tuple, Union

from ..store.client import WATCH_QUEUE_MAX
from ..store.ops import _path_bytes
from ..store.session import ConnectionOps
from ..store.watch import Watch
from ..store.wire import (
    _TYPE_NAMES,
    XS_DIRECTORY,
    XS_GET_DOMAIN_PATH,
    XS_GET_PERMS,
    XS_INTRODUCE,
    XS_IS_DOMAIN_INTRODUCED,
    XS_MKDIR,
    XS_READ,
    XS_RELEASE,
    XS_RM,
    XS_SET_PERMS,
    XS_TRANSACTION_END,
    XS_TRANSACTION_START,
    XS_WRITE,
    error,
)
from ..types import WatchEvent
from ._console import SYSRQ_HELP

if TYPE_CHECKING:
    from ._host import Domain, Host

__all__ = ["SimStore", "SHUTDOWN_CODES"]

#: control/shutdown words Linux's xen manage driver knows -> SHUTDOWN_* code.
SHUTDOWN_CODES = {"poweroff": 0, "halt": 0, "reboot": 1, "suspend": 2, "crash": 3}


class SimStore(ConnectionOps):
    """A xenstore for one simulated :class:`~xenprivcmd.sim._host.Host` (see the module doc)."""

    kind = "sim"
    path = "sim"
    reconnects = 0

    def __init__(self, host: "Host") -> None:
        self.host = host
        self.nodes: Dict[str, Union[bytes, Callable[[], bytes]]] = {}
        self.writes = 0
        #: node -> its permissions in the wire form (``["n0", "r3"]``); others inherit their parent's
        self.perms: Dict[str, List[str]] = {}
        #: domid -> (frame, port) of the domains xenstored knows (every built guest at first)
        self.introduced: Dict[int, Tuple[int, int]] = {}
        #: the next commits that answer EAGAIN whatever happened (a test's conflicts)
        self.conflicts = 0
        self.generation = 0
        self.dropped_events = 0
        self._tx: Dict[int, Tuple[Dict[str, Optional[bytes]], int]] = {}
        self._next_tx = 1
        #: set_perms inside each open transaction (path -> perms), applied at its commit
        self._tx_perms: Dict[int, Dict[str, List[str]]] = {}
        self._lock = threading.RLock()
        self._cond = threading.Condition(threading.RLock())
        self._queues: Dict[str, List[WatchEvent]] = {}
        self._watches: Dict[str, str] = {}
        self._token_seq = 0
        self.nodes["/local/pool/0/name"] = b"Pool-0"
        wall = time.time()
        for domid in host.domids:
            self.add_domain(host.domains[domid], wall - self._uptime_of(domid))

    def _uptime_of(self, domid: int) -> float:
        """Seconds each built-in domain has been up: dom0 since the host booted, guests less."""
        boot = self.host.clock.now() / 1e9
        return boot if domid == 0 else boot * (0.25 + 0.5 * ((domid * 7919) % 97) / 97)

    def add_domain(self, d: "Domain", start_time: Optional[float] = None) -> None:
        """The nodes a toolstack writes when it builds ``d`` (none for a bare createdomain domain)."""
        base = f"/local/domain/{d.domid}"
        u = str(uuid.UUID(bytes=bytes(d.handle)))
        self.nodes[base + "/vm"] = f"/vm/{u}".encode()
        self.nodes[f"/vm/{u}/uuid"] = u.encode()
        if start_time is not None:
            self.nodes[f"/vm/{u}/start_time"] = f"{start_time:.2f}".encode()
        kib = d.max_pages * 4
        self.nodes[base + "/memory/static-max"] = str(kib).encode()
        self.nodes[base + "/memory/target"] = str(d.tot_pages * 4).encode()
        if d.domid != 0:
            self.nodes[base + "/control/shutdown"] = b""
        if d.domid != 0 and d.pv and d.built:
            self._rings(d, base)
        if d.built:
            self.introduced[d.domid] = (0, 0)
            self.perms[base] = ["n0", f"r{d.domid}"]
        for v in d.vcpus:
            self.nodes[f"{base}/cpu/{v.vid}/availability"] = b"online" if v.online else b"offline"
        self.add_devices(d)

    def _rings(self, d: "Domain", base: str) -> None:
        """What xl writes of a guest's console and xenstore ring (frames made on first read)."""
        host = self.host

        def frame(i: int) -> Callable[[], bytes]:
            return lambda: str(host.memory.magic(d)[i]).encode()

        from ._evtchn import CONSOLE_PORT, STORE_PORT

        self.nodes[base + "/console/ring-ref"] = frame(0)
        self.nodes[base + "/console/port"] = str(CONSOLE_PORT).encode()
        self.nodes[base + "/console/type"] = b"xenconsoled"
        self.nodes[base + "/console/tty"] = lambda: host.consoles.tty(d).encode()
        self.nodes[base + "/store/ring-ref"] = frame(1)
        self.nodes[base + "/store/port"] = str(STORE_PORT).encode()

    def add_devices(self, d: "Domain") -> None:
        """The nodes xl writes for ``d``'s vifs and disks (frontend and dom0's backend), connected."""
        from ._backends import disk_devid, mac_of

        n = self.nodes
        for kind, devid, extra in ([("vif", i, {"mac": mac_of(d.domid, i), "bridge": "xenbr0", "handle": str(i),
                                                "script": "/etc/xen/scripts/vif-bridge"}) for i in d.vifs]
                                   + [("vbd", disk_devid(x), {"dev": x, "type": "phy", "mode": "w",
                                                              "params": f"/var/lib/xen/images/{d.domid}-{x}.img",
                                                              "device-type": "disk"}) for x in d.disks]):
            front = f"/local/domain/{d.domid}/device/{kind}/{devid}"
            back = f"/local/domain/0/backend/{kind}/{d.domid}/{devid}"
            n[front + "/backend"] = back.encode()
            n[front + "/backend-id"] = b"0"
            n[front + "/state"] = b"4"
            n[back + "/frontend"] = front.encode()
            n[back + "/frontend-id"] = str(d.domid).encode()
            n[back + "/online"] = b"1"
            n[back + "/state"] = b"4"
            n[back + "/hotplug-status"] = b"connected"
            if kind == "vif":
                n[front + "/mac"] = extra["mac"].encode()
                n[front + "/handle"] = str(devid).encode()
            else:
                n[front + "/virtual-device"] = str(devid).encode()
                n[front + "/device-type"] = b"disk"
            for k, v in extra.items():
                n[f"{back}/{k}"] = v.encode()

    def forget(self, domid: int) -> None:
        """A destroyed domain's nodes go, its backends' too (the toolstack's cleanup); watches on them fire."""
        base = f"/local/domain/{domid}/"
        prefixes = (base, f"/local/domain/0/backend/vif/{domid}/", f"/local/domain/0/backend/vbd/{domid}/")
        with self._lock:
            gone = [k for k in self.nodes if k.startswith(prefixes)]
            for k in gone:
                del self.nodes[k]
            self.introduced.pop(domid, None)
        if any(k.startswith(base) for k in gone):
            self.fire(base.rstrip("/"), removed=True)

    # -- watches ------------------------------------------------------------------------
    def fire(self, path: str, removed: bool = False) -> None:
        """Fire the watches at or above ``path`` (a node, or a special path such as
        ``@releaseDomain``); for a removal also those below it, each with its own path."""
        with self._cond:
            for token, wp in list(self._watches.items()):
                if path == wp or (not wp.startswith("@") and path.startswith(wp.rstrip("/") + "/")):
                    self._event(token, path)
                elif removed and wp.startswith(path.rstrip("/") + "/"):
                    self._event(token, wp)

    # -- the Xenstore interface ----------------------------------------------------
    def domain_names(self) -> Dict[int, str]:
        """domid -> name, as the toolstack wrote them (what Xenstore.domain_names answers)."""
        return dict(self.host.names)

    def _event(self, token: str, path: str) -> None:
        q = self._queues.get(token)
        if q is not None:
            if len(q) >= WATCH_QUEUE_MAX:
                del q[0]
                self.dropped_events += 1
            q.append(WatchEvent(path, token))
            self._cond.notify_all()

    def watch(self, path: str, token: Optional[str] = None) -> Watch:
        """As :meth:`xenprivcmd.store.Xenstore.watch` (fired once when set, then on every change)."""
        p = _path_bytes(path).decode()
        if token is None:
            self._token_seq += 1
            token = f"xenprivcmd:sim:{self._token_seq}"
        if not isinstance(token, str) or not token or "\0" in token:
            raise ValueError(f"xenstore watch token must be a non-empty str without NUL, not {token!r}")
        with self._cond:
            if token in self._queues:
                raise ValueError(f"xenstore watch token {token!r} is already in use on this connection")
            self._queues[token] = []
            self._watches[token] = p
            self._event(token, p)
        return Watch(self, p, token)  # type: ignore[arg-type]

    def _unwatch(self, path: str, token: str) -> None:
        with self._cond:
            self._queues.pop(token, None)
            self._watches.pop(token, None)
            self._cond.notify_all()

    def _next_event(self, token: str, timeout: Optional[float]) -> Optional[WatchEvent]:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                q = self._queues.get(token)
                if q is None:
                    raise ValueError("the watch is closed")
                if q:
                    return q.pop(0)
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._cond.wait(left)

    # -- the wire messages -----------------------------------------------------------------
    def close(self) -> None:
        pass

    def __enter__(self) -> "SimStore":
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def _domain_of(self, path: str) -> Optional[int]:
        parts = path.split("/")
        if len(parts) >= 4 and parts[1:3] == ["local", "domain"] and parts[3].isdigit():
            return int(parts[3])
        return None

    def request(self, msg_type: int, payload: bytes, *, path: Optional[str] = None, tx_id: int = 0) -> bytes:
        """Answer one message as xenstored would (the simulated store speaks the protocol's
        messages, so the client's operations, transactions included, run unchanged over it)."""
        op = _TYPE_NAMES.get(msg_type, str(msg_type))
        try:
            with self._lock:
                reactions: List[Tuple[int, str, bytes]] = []
                body, fired = self._answer(msg_type, payload, tx_id, reactions)
        except OSError as exc:
            err = exc.errno or _errno.EIO
            name = _errno.errorcode.get(err, "EIO")
            where = f" {path}" if path is not None else ""
            raise error(err, f"xenstore {op}{where}: {os.strerror(err)} ({name})", path=path, op=op) from None
        for p, removed in fired:
            self.fire(p, removed)
        for domid, node, data in reactions:
            d = self.host.domains.get(domid)
            if d is not None:
                self._guest_reacts(d, node, data)
        return body

    def _answer(self, msg_type: int, payload: bytes, tx_id: int,
                reactions: List[Tuple[int, str, bytes]]) -> Tuple[bytes, List[Tuple[str, bool]]]:
        """(reply, watches to fire); the guests' reactions to writes go to ``reactions``."""
        fired: List[Tuple[str, bool]] = []
        if msg_type == XS_WRITE:
            path_b, sep, value = payload.partition(b"\0")
            if not sep:
                raise OSError(_errno.EINVAL, "no path")
        else:
            if not payload.endswith(b"\0"):
                raise OSError(_errno.EINVAL, "unterminated")
            path_b, _sep, value = payload[:-1].partition(b"\0")
        arg = path_b.decode("utf-8", "replace")
        if msg_type == XS_TRANSACTION_START:
            tid = self._next_tx
            self._next_tx += 1
            self._tx[tid] = ({}, self.generation)
            return b"%d\0" % tid, fired
        if msg_type == XS_TRANSACTION_END:
            got = self._tx.pop(tx_id, None)
            tx_perms = self._tx_perms.pop(tx_id, {})
            if got is None:
                raise OSError(_errno.ENOENT, "no such transaction")
            if arg != "T":
                return b"OK\0", fired
            changes, gen = got
            if self.conflicts > 0 or gen != self.generation:
                self.conflicts = max(0, self.conflicts - 1)
                raise OSError(_errno.EAGAIN, "conflict")
            for p, v in changes.items():
                if v is None:
                    self._rm(p, fired)
                else:
                    self._write(p, v, fired, reactions)
            for p, given in tx_perms.items():
                if self._exists(p):
                    self.perms[p] = given
                    self._changed(p, fired)
            return b"OK\0", fired
        if msg_type in (XS_INTRODUCE, XS_RELEASE, XS_IS_DOMAIN_INTRODUCED, XS_GET_DOMAIN_PATH):
            words = payload[:-1].split(b"\0")
            if not words[0].isdigit():
                raise OSError(_errno.EINVAL, "not a domid")
            domid = int(words[0])
            if msg_type == XS_GET_DOMAIN_PATH:
                return b"/local/domain/%d\0" % domid, fired
            if msg_type == XS_IS_DOMAIN_INTRODUCED:
                return (b"T\0" if domid in self.introduced else b"F\0"), fired
            if domid not in self.host.domains:
                raise OSError(_errno.ESRCH if msg_type == XS_INTRODUCE else _errno.ENOENT, "no such domain")
            if msg_type == XS_RELEASE:
                if self.introduced.pop(domid, None) is None:
                    raise OSError(_errno.ENOENT, "not introduced")
                fired.append(("@releaseDomain", False))
                return b"OK\0", fired
            if len(words) != 3 or not all(w.isdigit() for w in words):
                raise OSError(_errno.EINVAL, "introduce takes domid, frame, port")
            if domid in self.introduced:
                raise OSError(_errno.EEXIST, "already introduced")
            self.introduced[domid] = (int(words[1]), int(words[2]))
            fired.append(("@introduceDomain", False))
            return b"OK\0", fired
        if not arg.startswith("/") or (arg != "/" and arg.endswith("/")) or "//" in arg:
            raise OSError(_errno.EINVAL, "not a path")
        overlay: Optional[Dict[str, Optional[bytes]]] = None
        if tx_id:
            open_tx = self._tx.get(tx_id)
            if open_tx is None:
                raise OSError(_errno.ENOENT, "no such transaction")
            overlay = open_tx[0]
        if msg_type == XS_READ:
            return self._read(arg, overlay), fired
        if msg_type == XS_DIRECTORY:
            return b"".join(k.encode() + b"\0" for k in self._directory(arg, overlay)), fired
        if msg_type == XS_GET_PERMS:
            if not self._exists(arg, overlay):
                raise OSError(_errno.ENOENT, "no such node")
            return b"".join(w.encode() + b"\0" for w in self._perms_of(arg)), fired
        if msg_type == XS_SET_PERMS:
            perms = [w.decode("ascii", "replace") for w in value.split(b"\0") if w]
            if not self._exists(arg, overlay):
                raise OSError(_errno.ENOENT, "no such node")
            if not perms or any(w[0] not in "nrwb" or not w[1:].isdigit() for w in perms):
                raise OSError(_errno.EINVAL, "bad permissions")
            if tx_id:  # applied at the commit, after the transaction's writes
                self._tx_perms.setdefault(tx_id, {})[arg] = perms
                return b"OK\0", fired
            self.perms[arg] = perms
            self._changed(arg, fired)
            return b"OK\0", fired
        if msg_type in (XS_WRITE, XS_MKDIR, XS_RM):
            owner = self._domain_of(arg)
            if owner is not None and owner not in self.host.domains:
                raise OSError(_errno.EACCES, "no such domain")
            if msg_type == XS_MKDIR and self._exists(arg, overlay):
                return b"OK\0", fired
            if overlay is not None:
                self._tx_change(overlay, arg, None if msg_type == XS_RM else bytes(value))
            elif msg_type == XS_RM:
                self._rm(arg, fired)
            else:
                self._write(arg, bytes(value), fired, reactions)
            return b"OK\0", fired
        raise OSError(_errno.EINVAL, f"message type {msg_type} is not simulated")

    # -- the tree ----------------------------------------------------------------------------------
    def _value(self, path: str) -> Optional[bytes]:
        domid = self._domain_of(path)
        if domid is not None and domid not in self.host.domains:
            return None
        if domid is not None and path == f"/local/domain/{domid}/name":
            name = self.host.names.get(domid)
            if name is not None:
                return name.encode()
        value = self.nodes.get(path)
        if value is None:
            return None
        return value() if callable(value) else value

    def _exists(self, path: str, overlay: Optional[Dict[str, Optional[bytes]]] = None) -> bool:
        if overlay is not None and path in overlay:
            return overlay[path] is not None
        if path == "/" or self._value(path) is not None:
            return True
        prefix = path + "/"
        if path == "/local/domain":
            return True
        return any(k.startswith(prefix) for k in self.nodes)

    def _read(self, path: str, overlay: Optional[Dict[str, Optional[bytes]]] = None) -> bytes:
        if overlay is not None and path in overlay:
            got = overlay[path]
            if got is None:
                raise OSError(_errno.ENOENT, "removed in the transaction")
            return got
        value = self._value(path)
        if value is None:
            if self._exists(path):
                return b""  # a directory node
            raise OSError(_errno.ENOENT, "no such node")
        return value

    def _directory(self, path: str, overlay: Optional[Dict[str, Optional[bytes]]] = None) -> List[str]:
        prefix = path.rstrip("/") + "/"
        if prefix == "/local/domain/":
            return [str(d) for d in self.host.domids]
        keys = set(k for k in self.nodes if k.startswith(prefix))
        if overlay is not None:
            for k, v in overlay.items():
                if v is None:
                    keys = {x for x in keys if x != k and not x.startswith(k + "/")}
                elif k.startswith(prefix):
                    keys.add(k)
        kids = sorted({k[len(prefix):].split("/", 1)[0] for k in keys})
        if not kids and not self._exists(path, overlay):
            raise OSError(_errno.ENOENT, "no such node")
        return kids

    def _perms_of(self, path: str) -> List[str]:
        """The node's own permissions, else its nearest parent's (as xenstored creates nodes)."""
        p = path
        while True:
            got = self.perms.get(p)
            if got is not None:
                return got
            if p in ("/", ""):
                return ["n0"]
            p = p.rsplit("/", 1)[0] or "/"

    def _changed(self, path: str, fired: List[Tuple[str, bool]], removed: bool = False) -> None:
        self.writes += 1
        self.generation += 1
        fired.append((path, removed))

    def _write(self, path: str, data: bytes, fired: List[Tuple[str, bool]],
               reactions: List[Tuple[int, str, bytes]]) -> None:
        domid = self._domain_of(path)
        if domid is not None and path == f"/local/domain/{domid}/name":
            self.host.set_name(domid, data.decode("utf-8", "replace"))
        else:
            self.nodes[path] = data
        self._changed(path, fired)
        if domid is not None:
            reactions.append((domid, path[len(f"/local/domain/{domid}/"):], data))

    def _rm(self, path: str, fired: List[Tuple[str, bool]]) -> None:
        if not self._exists(path):
            parent = path.rsplit("/", 1)[0] or "/"
            if self._exists(parent):
                return  # xenstored: removing a missing node of an existing parent is fine
            raise OSError(_errno.ENOENT, "no such node")
        for k in [k for k in self.nodes if k == path or k.startswith(path.rstrip("/") + "/")]:
            del self.nodes[k]
        for k in [k for k in self.perms if k == path or k.startswith(path.rstrip("/") + "/")]:
            del self.perms[k]
        self._changed(path, fired, removed=True)

    @staticmethod
    def _tx_change(overlay: Dict[str, Optional[bytes]], path: str, value: Optional[bytes]) -> None:
        if value is None:
            for k in [k for k in overlay if k.startswith(path + "/")]:
                del overlay[k]
        overlay[path] = value

    # -- the guest's PV drivers ------------------------------------------------------
    def _guest_reacts(self, d: "Domain", node: str, data: bytes) -> None:
        if not d.pv or d.pause_count > 0 or d.dying or d.shutdown_code is not None:
            return
        if node == "control/shutdown" and data:
            code = SHUTDOWN_CODES.get(data.decode("ascii", "replace"))
            if code is None:
                return  # Linux ignores a word it does not know (and does not acknowledge it)
            self.write(f"/local/domain/{d.domid}/control/shutdown", b"")
            self.host.shutdown(d, code)
        elif node == "control/sysrq" and data:
            self.write(f"/local/domain/{d.domid}/control/sysrq", b"")  # Linux acknowledges, then acts
            if data[:1] == b"h":
                self.host.consoles.write(d, "\r\n" + SYSRQ_HELP)
        elif node.startswith("cpu/") and node.endswith("/availability") and node[4:-13].isdigit():
            if data in (b"online", b"offline"):  # Linux's xen cpu hotplug driver
                self.host.set_vcpu_online(d, int(node[4:-13]), data == b"online")
        elif node == "memory/target":
            try:
                kib = int(data.decode("ascii"))
            except ValueError:
                return
            self.host.balloon(d, kib)
