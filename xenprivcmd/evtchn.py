"""Event channels of this domain: :class:`EventChannels`, over ``/dev/xen/evtchn``.

::

    with xenprivcmd.open() as xen, xenprivcmd.EventChannels() as ec:
        remote = xen.evtchn_alloc_unbound(guest)      # a port of the guest, for dom0
        local = ec.bind_interdomain(guest, remote)    # dom0's end of it
        ec.notify(local)                              # the guest's port fires
        for port in ec.wait(timeout=5.0):             # ports that fired here (unmasked again)
            ...

An event channel connects a port of one domain to a port of another (or of the same)
domain, a virtual IRQ, or another vcpu.  ``bind_*`` make a local port bound through
this object and return its number; ``notify`` fires the other end; ``wait`` returns
the local ports that fired, each unmasked for its next event.  A port is masked from
its delivery until the ``wait`` that reports it: events in between are coalesced into
one, reported by a later ``wait`` (the Linux driver's rule).  ``fileno()`` is readable when a
port has fired, for ``select``/``selectors``.  ``close()`` (or the end of a ``with``
block) unbinds every port bound through it.

Checked before any ioctl (``TypeError``/``ValueError``): domids 0..0x7FEF, ports
1..2**17 - 1 (the FIFO ABI's limit; the 2-level ABI's is lower, and Xen says so),
virqs 0..NR_VIRQS - 1 or their names (``"dom_exc"``), and that a port given to
``notify``/``unbind`` was bound through this object.  The hypervisor's refusals are
the typed errors of :mod:`xenprivcmd.errors` (``hypercall="event_channel_op"``).

:meth:`xenprivcmd.Handle.event_channels` gives the event channels of the handle's
hypervisor (the simulator's own for ``sim://``).
"""

from __future__ import annotations

import _thread

from .abi.hypercalls import check_domid

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, FrozenSet, List, Optional, Set, Union

__all__ = ["EventChannels", "MAX_PORT", "check_port", "virq_number"]

#: The highest port any event-channel ABI has (EVTCHN_FIFO_NR_CHANNELS - 1).
MAX_PORT = (1 << 17) - 1


def check_port(port: int, label: str) -> int:
    """``port`` if it could be an event-channel port, else ``TypeError``/``ValueError``."""
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"{label}: a port is an int, not {type(port).__name__}")
    if not 1 <= port <= MAX_PORT:
        raise ValueError(f"{label}: port {port} is out of range 1..{MAX_PORT}")
    return port


def _check_domid(domid: int, label: str) -> int:
    """The package's one domid check (:func:`~xenprivcmd.abi.hypercalls.check_domid`), the
    call named in its error."""
    try:
        return check_domid(domid)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{label}: {exc}") from None


def virq_number(virq: Union[int, str], variant: Any = None) -> int:
    """A virq by number or name (``3``, ``"dom_exc"``, ``"VIRQ_DOM_EXC"``), by the constants of
    ``variant`` (default: the newest release's; the numbers have not changed)."""
    if variant is None:
        from . import _machine_arch, abi

        arch = _machine_arch()
        variant = abi.variant(abi.releases()[-1], arch=arch if arch in abi.arches() else "x86_64")
    consts = variant.constants
    nr = int(consts["NR_VIRQS"])
    if isinstance(virq, str):
        name = virq.upper()
        name = name if name.startswith("VIRQ_") else "VIRQ_" + name
        value = consts.get(name)
        if value is None or name == "VIRQ_ARCH_0" or not 0 <= value < nr:
            known = sorted(n[5:].lower() for n, v in consts.with_prefix("VIRQ_").items() if 0 <= v < nr)
            raise ValueError(f"bind_virq: no virq {virq!r} (known: {', '.join(known)})")
        return int(value)
    if isinstance(virq, bool) or not isinstance(virq, int):
        raise TypeError(f"bind_virq: a virq is an int or a name, not {type(virq).__name__}")
    if not 0 <= virq < nr:
        raise ValueError(f"bind_virq: virq {virq} is out of range 0..{nr - 1}")
    return virq


class EventChannels:
    """This domain's event channels (see the module doc).

    ``EventChannels()`` opens ``/dev/xen/evtchn`` (``path`` names another);
    ``device`` is an already open device (the simulator's).  Raises
    :class:`~xenprivcmd.errors.NotDom0Error` when there is no such device,
    :class:`~xenprivcmd.errors.PrivcmdPermissionError` when it may not be opened.
    """

    def __init__(self, path: Optional[str] = None, *, device: Any = None, variant: Any = None) -> None:
        if device is None:
            from . import _machine_arch
            from .transport.evtchn import EVTCHN_PATH, EvtchnDevice

            device = EvtchnDevice(path or EVTCHN_PATH, arch=_machine_arch())
        self._dev = device
        #: the ABI variant whose constants name virqs (the newest release's when not given)
        self.variant = variant
        self._ports: Set[int] = set()
        self._lock = _thread.allocate_lock()
        self.closed = False

    # -- binding ---------------------------------------------------------------------------------
    def _bound(self, port: int) -> int:
        with self._lock:
            self._ports.add(port)
        return port

    def _check_open(self, label: str) -> None:
        if self.closed:
            raise ValueError(f"{label}: the event channels are closed")

    def bind_interdomain(self, domid: int, port: int) -> int:
        """Bind a local port to ``port`` of ``domid`` (an unbound port that domain made for this
        one, e.g. by :meth:`~xenprivcmd.Handle.evtchn_alloc_unbound`); returns the local port."""
        _check_domid(domid, "bind_interdomain")
        check_port(port, "bind_interdomain")
        self._check_open("bind_interdomain")
        return self._bound(self._dev.bind_interdomain(domid, port))

    def bind_unbound(self, domid: int) -> int:
        """A new local port that ``domid`` may bind to (``EVTCHNOP_alloc_unbound`` for this domain);
        returns it."""
        _check_domid(domid, "bind_unbound")
        self._check_open("bind_unbound")
        return self._bound(self._dev.bind_unbound(domid))

    def bind_virq(self, virq: Union[int, str]) -> int:
        """A local port for virtual IRQ ``virq`` (a number or a name such as ``"dom_exc"``); the
        hypervisor refuses a virq some port of this domain already has (EEXIST)."""
        number = virq_number(virq, self.variant)
        self._check_open("bind_virq")
        return self._bound(self._dev.bind_virq(number))

    def _mine(self, port: int, label: str) -> int:
        check_port(port, label)
        self._check_open(label)
        with self._lock:
            if port not in self._ports:
                raise ValueError(f"{label}: port {port} is not bound through these event channels")
        return port

    def notify(self, port: int) -> None:
        """Fire the other end of local ``port``."""
        self._dev.notify(self._mine(port, "notify"))

    def unbind(self, port: int) -> None:
        """Unbind local ``port`` (its other end sees it closed)."""
        self._dev.unbind(self._mine(port, "unbind"))
        with self._lock:
            self._ports.discard(port)

    @property
    def ports(self) -> FrozenSet[int]:
        """The local ports bound through this object now."""
        with self._lock:
            return frozenset(self._ports)

    # -- events -------------------------------------------------------------------------------------
    def fileno(self) -> int:
        """Readable when a port has fired (for ``select``)."""
        self._check_open("fileno")
        return int(self._dev.fileno())

    def wait(self, timeout: Optional[float] = None) -> List[int]:
        """The local ports that fired, sorted, each unmasked again; ``[]`` when none fired within
        ``timeout`` seconds (``None``: wait as long as it takes; 0: only look)."""
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                    or not timeout >= 0):
            raise ValueError(f"wait: timeout must be a number of seconds >= 0 or None, not {timeout!r}")
        self._check_open("wait")
        import select
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        poller = select.poll()
        poller.register(self._dev.fileno(), select.POLLIN)
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready = poller.poll(None if left is None else int(left * 1000 + 0.999))
            if ready:
                ports = self._dev.read_pending()
                if ports:
                    self._dev.unmask(ports)
                    return sorted(set(ports))
            if left is not None and left <= 0:
                return []

    # -- lifetime -----------------------------------------------------------------------------------
    def close(self) -> None:
        """Unbind every port and close the device; idempotent."""
        if self.closed:
            return
        self.closed = True
        with self._lock:
            self._ports.clear()
        self._dev.close()

    def __enter__(self) -> "EventChannels":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{len(self._ports)} ports bound"
        return f"<xenprivcmd.EventChannels {getattr(self._dev, 'path', '?')} {state}>"
