"""The simulated host's xenstore, and the guests that answer it.

The store holds what a toolstack (xl/libxl) writes for each domain:
``/local/domain/<id>/name``, ``vm``, ``memory/static-max``,
``memory/target``, ``control/shutdown``, and ``/vm/<uuid>/{uuid,name,start_time}``.
Names live in ``host.names`` (the simulator's oldest xenstore view) and are
read from there; everything else is a node in :attr:`SimStore.nodes`.

A domain with PV drivers (``Domain.pv``: every domain of a host
description unless ``"pv": false``; never one made by ``createdomain``,
which has no kernel) acts as Linux's drivers do, at once when the node is
written and only while it is not paused: on ``control/shutdown`` it clears
the node (the acknowledgement) and shuts down with that reason
(``poweroff``, ``reboot``, ``suspend``, ``crash``, ``halt`` = poweroff);
on ``memory/target`` its balloon driver sets its memory to the target (at
most its ``max_mem``).  A paused domain or one without PV drivers leaves the
node as written.  There is no toolstack daemon: a domain that reboots stays
shut down with reason ``reboot``.

The methods mirror :class:`xenprivcmd.store.Xenstore` (``read``,
``write``, ``directory``, ``rm``) and raise its exceptions.
"""

from __future__ import annotations

import errno as _errno
import time
import uuid
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Union

from ..errors import XenstoreError, XenstoreNoEntry

if TYPE_CHECKING:
    from ._host import Domain, Host

__all__ = ["SimStore", "SHUTDOWN_CODES"]

#: control/shutdown words Linux's xen manage driver knows -> SHUTDOWN_* code.
SHUTDOWN_CODES = {"poweroff": 0, "halt": 0, "reboot": 1, "suspend": 2, "crash": 3}


class SimStore:
    """A xenstore for one simulated :class:`~xenprivcmd.sim._host.Host` (see the module doc)."""

    kind = "sim"
    path = "sim"

    def __init__(self, host: "Host") -> None:
        self.host = host
        self.nodes: Dict[str, Union[bytes, Callable[[], bytes]]] = {}
        self.writes = 0
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

    def forget(self, domid: int) -> None:
        """A destroyed domain's nodes go (the toolstack's cleanup)."""
        base = f"/local/domain/{domid}/"
        for k in [k for k in self.nodes if k.startswith(base)]:
            del self.nodes[k]

    def fire(self, path: str) -> None:
        """Fire the watches on ``path`` (a node, or a special path such as ``@releaseDomain``)."""

    # -- the Xenstore interface ----------------------------------------------------
    def domain_names(self) -> Dict[int, str]:
        """domid -> name, as the toolstack wrote them (what Xenstore.domain_names answers)."""
        return dict(self.host.names)

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

    def read(self, path: str) -> bytes:
        domid = self._domain_of(path)
        if domid is not None and domid not in self.host.domains:
            raise XenstoreNoEntry(_errno.ENOENT, f"xenstore READ {path}: No such file or directory (ENOENT)",
                                  path=path, op="READ")
        if domid is not None and path == f"/local/domain/{domid}/name":
            name = self.host.names.get(domid)
            if name is not None:
                return name.encode()
        try:
            value = self.nodes[path]
            return value() if callable(value) else value
        except KeyError:
            raise XenstoreNoEntry(_errno.ENOENT, f"xenstore READ {path}: No such file or directory (ENOENT)",
                                  path=path, op="READ") from None

    def directory(self, path: str) -> List[str]:
        prefix = path.rstrip("/") + "/"
        if prefix == "/local/domain/":
            return [str(d) for d in self.host.domids]
        kids = sorted({k[len(prefix):].split("/", 1)[0] for k in self.nodes if k.startswith(prefix)})
        if not kids and path not in self.nodes:
            raise XenstoreNoEntry(_errno.ENOENT, f"xenstore DIRECTORY {path}: No such file or directory (ENOENT)",
                                  path=path, op="DIRECTORY")
        return kids

    def write(self, path: str, value: Union[bytes, str]) -> None:
        data = value.encode() if isinstance(value, str) else bytes(value)
        domid = self._domain_of(path)
        if domid is not None and domid not in self.host.domains:
            raise XenstoreError(_errno.EACCES, f"xenstore WRITE {path}: Permission denied (EACCES)",
                                path=path, op="WRITE")
        self.writes += 1
        if domid is not None and path == f"/local/domain/{domid}/name":
            self.host.set_name(domid, data.decode("utf-8", "replace"))
            return
        self.nodes[path] = data
        if domid is not None:
            self._guest_reacts(self.host.domains[domid], path[len(f"/local/domain/{domid}/"):], data)

    def rm(self, path: str) -> None:
        self.writes += 1
        for k in [k for k in self.nodes if k == path or k.startswith(path.rstrip("/") + "/")]:
            del self.nodes[k]

    # -- the guest's PV drivers ------------------------------------------------------
    def _guest_reacts(self, d: "Domain", node: str, data: bytes) -> None:
        if not d.pv or d.pause_count > 0 or d.dying or d.shutdown_code is not None:
            return
        if node == "control/shutdown" and data:
            code = SHUTDOWN_CODES.get(data.decode("ascii", "replace"))
            if code is None:
                return  # Linux ignores a word it does not know (and does not acknowledge it)
            self.nodes[f"/local/domain/{d.domid}/control/shutdown"] = b""
            self.host.shutdown(d, code)
        elif node == "memory/target":
            try:
                kib = int(data.decode("ascii"))
            except ValueError:
                return
            self.host.balloon(d, kib)
