"""The simulated host's event channels, and dom0's ``/dev/xen/evtchn`` over them.

Every domain has a table of ports (:class:`Port`: closed, unbound for a remote
domain, interdomain-bound to a remote (domain, port), bound to a virq).  The
operations are Xen's (``public/event_channel.h``): ``alloc_unbound``,
``bind_interdomain`` (EINVAL unless the remote port is unbound for the binder),
``bind_virq`` (EEXIST when the domain already has the virq), ``close`` (the peer's
port goes back to unbound for the closer, as Xen leaves it), ``send``, ``status``.

Delivery: a port bound through a :class:`SimEvtchnDevice` (dom0's ``/dev/xen/evtchn``
as :class:`xenprivcmd.EventChannels` opens it) is queued on that device and masked
until the device's reader unmasks it (the Linux driver's rule; an event while masked
is remembered and delivered at the unmask); the device's ``fileno()`` is a pipe that is
readable while ports are queued.  A simulated guest with PV drivers answers an event
on a port it allocated for dom0 by notifying it back (a ping gets its pong), unless it
is paused or shut down.  ``VIRQ_DOM_EXC`` fires when a domain shuts down or is
destroyed (what xenstored binds; a second binder gets EEXIST).

Each simulated PV guest starts with port 1 bound to dom0 for its console and port 2
for its xenstore ring (what xenconsoled and xenstored bind; no device of ours holds
dom0's ends).
"""

from __future__ import annotations

import errno as E
import os
import threading
from typing import TYPE_CHECKING, Dict, Iterable, List, Optional, Tuple

if TYPE_CHECKING:
    from ._host import Host

__all__ = ["Port", "EventChannelTable", "SimEvtchnDevice", "MAX_PORTS", "CONSOLE_PORT", "STORE_PORT"]

#: Ports per domain the simulated hypervisor offers (the 2-level ABI's on 64 bits).
MAX_PORTS = 4096
CONSOLE_PORT = 1
STORE_PORT = 2

CLOSED, UNBOUND, INTERDOMAIN, PIRQ, VIRQ, IPI = "closed", "unbound", "interdomain", "pirq", "virq", "ipi"


class Port:
    __slots__ = ("state", "remote_dom", "remote_port", "virq", "vcpu", "device", "echo")

    def __init__(self, state: str, remote_dom: int = 0, remote_port: int = 0, virq: int = 0) -> None:
        self.state = state
        self.remote_dom = remote_dom
        self.remote_port = remote_port
        self.virq = virq
        self.vcpu = 0
        #: the dom0 device it was bound through (its events are queued there)
        self.device: Optional[SimEvtchnDevice] = None
        #: a guest port that notifies its peer back when notified
        self.echo = False


class EventChannelTable:
    """Every domain's ports (see the module doc)."""

    def __init__(self, host: "Host") -> None:
        self.host = host
        self.ports: Dict[int, Dict[int, Port]] = {}
        self.lock = threading.RLock()
        self._seeded: Dict[int, None] = {}

    def table(self, domid: int) -> Dict[int, Port]:
        t = self.ports.get(domid)
        if t is None:
            t = self.ports[domid] = {}
            d = self.host.domains.get(domid)
            if d is not None and d.pv and d.built and not d.is_dom0 and domid not in self._seeded:
                self._seeded[domid] = None
                for port in (CONSOLE_PORT, STORE_PORT):
                    theirs = self._free(self.table(0))
                    self.table(0)[theirs] = Port(INTERDOMAIN, domid, port)
                    t[port] = Port(INTERDOMAIN, 0, theirs)
        return t

    @staticmethod
    def _free(t: Dict[int, Port]) -> int:
        for port in range(1, MAX_PORTS):
            if port not in t or t[port].state == CLOSED:
                return port
        raise OSError(E.ENOSPC, "no free port")

    def _domain(self, domid: int) -> None:
        if domid not in self.host.domains:
            raise OSError(E.ESRCH, f"no domain {domid}")

    def _port(self, domid: int, port: int) -> Port:
        p = self.table(domid).get(port)
        if p is None or p.state == CLOSED:
            raise OSError(E.EINVAL, f"port {port} of domain {domid} is not bound")
        return p

    # -- Xen's operations --------------------------------------------------------------------------------
    def alloc_unbound(self, dom: int, remote_dom: int) -> int:
        with self.lock:
            self._domain(dom)
            self._domain(remote_dom)
            t = self.table(dom)
            port = self._free(t)
            t[port] = Port(UNBOUND, remote_dom)
            d = self.host.domains[dom]
            t[port].echo = d.pv and not d.is_dom0  # the guest's drivers answer what dom0 sends
            return port

    def bind_interdomain(self, dom: int, remote_dom: int, remote_port: int,
                         device: Optional["SimEvtchnDevice"] = None) -> int:
        with self.lock:
            self._domain(remote_dom)
            theirs = self.table(remote_dom).get(remote_port)
            if theirs is None or theirs.state != UNBOUND or theirs.remote_dom != dom:
                raise OSError(E.EINVAL, f"port {remote_port} of domain {remote_dom} is not unbound for {dom}")
            t = self.table(dom)
            port = self._free(t)
            mine = t[port] = Port(INTERDOMAIN, remote_dom, remote_port)
            mine.device = device
            theirs.state, theirs.remote_port = INTERDOMAIN, port
            return port

    def bind_virq(self, dom: int, virq: int, device: Optional["SimEvtchnDevice"] = None) -> int:
        with self.lock:
            t = self.table(dom)
            if any(p.state == VIRQ and p.virq == virq for p in t.values()):
                raise OSError(E.EEXIST, f"virq {virq} is already bound in domain {dom}")
            port = self._free(t)
            p = t[port] = Port(VIRQ, virq=virq)
            p.device = device
            return port

    def close(self, dom: int, port: int) -> None:
        with self.lock:
            p = self._port(dom, port)
            if p.state == INTERDOMAIN:
                peer = self.table(p.remote_dom).get(p.remote_port)
                if peer is not None and peer.state == INTERDOMAIN and peer.remote_port == port:
                    peer.state, peer.remote_dom, peer.remote_port = UNBOUND, dom, 0
            p.state, p.device = CLOSED, None

    def send(self, dom: int, port: int) -> None:
        with self.lock:
            p = self._port(dom, port)
            if p.state != INTERDOMAIN:
                return  # an unbound port's event goes nowhere
            self.deliver(p.remote_dom, p.remote_port, from_dom=dom, from_port=port)

    def deliver(self, dom: int, port: int, from_dom: int = 0, from_port: int = 0) -> None:
        p = self.table(dom).get(port)
        if p is None or p.state == CLOSED:
            return
        if p.device is not None:
            p.device.fire(port)
        elif p.echo and p.state == INTERDOMAIN:
            d = self.host.domains.get(dom)
            if d is not None and d.pause_count == 0 and d.shutdown_code is None and not d.dying:
                self.deliver(p.remote_dom, p.remote_port)

    def status(self, dom: int, port: int) -> Tuple[str, int, int, int]:
        """(state, vcpu, remote domain or virq, remote port) of ``port`` of ``dom``; ESRCH/EINVAL as Xen."""
        with self.lock:
            self._domain(dom)
            if not 0 < port < MAX_PORTS:
                raise OSError(E.EINVAL, f"port {port} is out of range")
            p = self.table(dom).get(port)
            if p is None:
                return CLOSED, 0, 0, 0
            if p.state == VIRQ:
                return VIRQ, p.vcpu, p.virq, 0
            return p.state, p.vcpu, p.remote_dom, p.remote_port

    def fire_virq(self, virq: int) -> None:
        """A global virq (VIRQ_DOM_EXC): to dom0's port for it, if one is bound."""
        with self.lock:
            for port, p in list(self.table(0).items()):
                if p.state == VIRQ and p.virq == virq and p.device is not None:
                    p.device.fire(port)

    def domain_gone(self, domid: int) -> None:
        """Every port of a destroyed domain closes (its peers' go back to unbound)."""
        with self.lock:
            for port, p in list(self.table(domid).items()):
                if p.state != CLOSED:
                    self.close(domid, port)
            self.ports.pop(domid, None)
            self._seeded.pop(domid, None)


class SimEvtchnDevice:
    """dom0's ``/dev/xen/evtchn`` on the simulated host (the methods of
    :class:`xenprivcmd.transport.evtchn.EvtchnDevice`)."""

    kind = "sim-evtchn"
    path = "sim:/dev/xen/evtchn"

    def __init__(self, table: EventChannelTable) -> None:
        self.table = table
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        os.set_blocking(self._w, False)
        self._queue: List[int] = []
        self._masked: Dict[int, None] = {}
        self._pending: Dict[int, None] = {}
        self._mine: Dict[int, None] = {}
        self._lock = threading.Lock()
        self.closed = False

    def fileno(self) -> int:
        if self.closed:
            raise ValueError("the event channels are closed")
        return self._r

    def _call(self, subop: str, domid: Optional[int], fn: "object", *args: object) -> int:
        from ..errors import from_errno

        if self.closed:
            raise ValueError("the event channels are closed")
        try:
            return fn(*args)  # type: ignore[operator, no-any-return]
        except OSError as exc:
            raise from_errno(exc.errno or E.EIO, hypercall="event_channel_op", subop=subop, domid=domid) from None

    def _bound(self, port: int) -> int:
        with self._lock:
            self._mine[port] = None
        return port

    def bind_interdomain(self, domid: int, port: int) -> int:
        return self._bound(self._call("bind_interdomain", domid, self.table.bind_interdomain, 0, domid, port, self))

    def bind_unbound(self, domid: int) -> int:
        def alloc() -> int:
            port = self.table.alloc_unbound(0, domid)
            self.table.table(0)[port].device = self
            self.table.table(0)[port].echo = False
            return port

        return self._bound(self._call("alloc_unbound", domid, alloc))

    def bind_virq(self, virq: int) -> int:
        nr = self.table.host.variant.constants["NR_VIRQS"]
        if not 0 <= virq < nr:
            raise self._einval("bind_virq")
        return self._bound(self._call("bind_virq", None, self.table.bind_virq, 0, virq, self))

    def _einval(self, subop: str) -> BaseException:
        from ..errors import from_errno

        return from_errno(E.EINVAL, hypercall="event_channel_op", subop=subop)

    def notify(self, port: int) -> None:
        if port not in self._mine:
            raise self._einval("send")
        self._call("send", None, self.table.send, 0, port)

    def unbind(self, port: int) -> None:
        if port not in self._mine:
            raise self._einval("close")
        self._call("close", None, self.table.close, 0, port)
        with self._lock:
            self._mine.pop(port, None)
            self._masked.pop(port, None)
            self._pending.pop(port, None)

    # -- delivery ----------------------------------------------------------------------------------------
    def fire(self, port: int) -> None:
        with self._lock:
            if self.closed or port not in self._mine:
                return
            if port in self._masked:
                self._pending[port] = None
                return
            self._masked[port] = None
            self._queue.append(port)
            try:
                os.write(self._w, b"!")
            except BlockingIOError:  # the pipe is full: it is readable anyway
                pass

    def read_pending(self) -> List[int]:
        with self._lock:
            try:
                while os.read(self._r, 4096):
                    pass
            except BlockingIOError:
                pass
            out, self._queue = self._queue, []
            return out

    def unmask(self, ports: Iterable[int]) -> None:
        again = []
        with self._lock:
            for p in ports:
                self._masked.pop(p, None)
                if p in self._pending:
                    del self._pending[p]
                    again.append(p)
        for p in again:
            self.fire(p)

    def close(self) -> None:
        if self.closed:
            return
        with self.table.lock:
            for port in list(self._mine):
                try:
                    self.table.close(0, port)
                except OSError:
                    pass
        with self._lock:
            self.closed = True
            self._mine.clear()
            self._queue.clear()
        os.close(self._r)
        os.close(self._w)
