"""Domain life events: :meth:`Handle.events <xenprivcmd.Handle.events>` (as ``virsh event``).

::

    with xenprivcmd.open() as xen:
        for e in xen.events(domains=["web1"], timeout=600):
            print(e.event, e.domid, e.name, e.detail)    # shutdown 5 web1 poweroff

Each :class:`~xenprivcmd.types.DomainEvent` is one change seen: ``started`` (a new
domain), ``paused``, ``unpaused``, ``shutdown`` (``detail``: the reason, poweroff, reboot,
suspend, crash, watchdog or soft_reset), ``dying`` and ``destroyed`` (the domain is gone).
The hypervisor tells no one about a domain's life, so the events come from two sources:

* xenstored's special watches: ``@releaseDomain`` fires when a domain shuts down, dies
  or goes (xenstored hears it from the hypervisor's ``VIRQ_DOM_EXC``), ``@introduceDomain``
  when a toolstack introduces a new one.  They wake the stream at once;
* ``getdomaininfolist`` (one hypercall for every domain), compared with what was seen
  before, at each wake-up and at least every :data:`POLL_SECONDS`.  Pause and unpause
  change nothing in xenstore and fire no watch: they are seen by this poll only, so
  within :data:`POLL_SECONDS` (plus one hypercall) of the change.

A domain is named from xenstore (``/local/domain/<id>/name``); a new domain's
``started`` waits up to :data:`NAME_GRACE_SECONDS` for its toolstack to write its name.
A domain whose id is reused between two looks (its UUID changed) is reported destroyed,
then started.  Changes found in the same look are reported in domid order (which came
first is not known).  Without a xenstore (or its watches) the poll alone gives every event.

``domains`` limits the stream: an int (or digits) names a domid, a UUID a domain by UUID,
any other string a name, which follows the domain through reboots (xl builds a
rebooted guest again under a new domid and the same name).
"""

from __future__ import annotations

import time

from .types import DomainEvent, DomainInfo

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Iterable, List, Optional, Set

    from .handle import DomainRef, Handle

__all__ = ["DomainEvents", "POLL_SECONDS", "NAME_GRACE_SECONDS", "EVENTS"]

#: The longest the stream goes without looking at every domain.
POLL_SECONDS = 0.5
#: How long a new domain's ``started`` waits for its name to appear in xenstore.
NAME_GRACE_SECONDS = 1.0
#: Every event a stream reports.
EVENTS = ("started", "paused", "unpaused", "shutdown", "dying", "destroyed")


class _Seen:
    __slots__ = ("handle", "paused", "shutdown", "dying", "name", "first_seen", "announced")

    def __init__(self, info: DomainInfo, name: Optional[str], now: float, announced: bool) -> None:
        self.handle = bytes(info.handle_bytes)
        self.paused = info.paused
        self.shutdown = info.shutdown
        self.dying = info.dying
        self.name = name
        self.first_seen = now
        self.announced = announced


class _Filter:
    """Which domains a stream reports (see the module doc)."""

    def __init__(self, domains: Optional[Iterable["DomainRef"]]) -> None:
        self.all = domains is None
        self.ids: Set[int] = set()
        self.names: Set[str] = set()
        self.uuids: Set[str] = set()
        if domains is None:
            return
        from uuid import UUID

        if isinstance(domains, (str, int, UUID, DomainInfo)):
            domains = [domains]  # type: ignore[list-item]
        for d in domains:
            if isinstance(d, DomainInfo):
                self.ids.add(d.domid)
            elif isinstance(d, bool):
                raise TypeError("a domain is an int domid, a name, a UUID or a DomainInfo, not a bool")
            elif isinstance(d, int):
                from .abi.hypercalls import check_domid

                self.ids.add(check_domid(d))
            elif isinstance(d, UUID):
                self.uuids.add(str(d))
            elif isinstance(d, str) and d.strip():
                text = d.strip()
                if text.isascii() and text.isdigit():
                    self.ids.add(int(text))
                    continue
                try:
                    self.uuids.add(str(UUID(text)))
                except ValueError:
                    self.names.add(text)
            else:
                raise TypeError(f"a domain is an int domid, a name, a UUID or a DomainInfo, not {d!r}")

    def wants(self, domid: int, name: Optional[str], handle: bytes) -> bool:
        if self.all or domid in self.ids or (name is not None and name in self.names):
            return True
        if self.uuids and len(handle) == 16:
            from uuid import UUID

            return str(UUID(bytes=handle)) in self.uuids
        return False


class DomainEvents:
    """A stream of :class:`~xenprivcmd.types.DomainEvent` (see the module doc).

    Iterating it yields events until ``timeout`` seconds (from its start; ``None``: no
    end) have passed; :meth:`next` waits for one event at most its own timeout and
    returns ``None`` when none came.  Close it (or use it in a ``with`` block) to drop
    its xenstore watches.
    """

    def __init__(self, handle: "Handle", domains: Optional[Iterable["DomainRef"]] = None,
                 timeout: Optional[float] = None, poll: float = POLL_SECONDS) -> None:
        for what, value in (("timeout", timeout), ("poll", poll)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not value >= 0):
                raise ValueError(f"events: {what} must be a number of seconds >= 0, not {value!r}")
        self._h = handle
        self._filter = _Filter(domains)
        self._poll = max(0.01, float(poll))
        self._end = None if timeout is None else time.monotonic() + float(timeout)
        self._queue: List[DomainEvent] = []
        self._store: Any = None
        self._watches: List[Any] = []
        self.closed = False
        self._open_store()
        now = time.time()
        self._seen: Dict[int, _Seen] = {}
        for info in handle.domains(names=False):
            self._seen[info.domid] = _Seen(info, self._name(info.domid), now, announced=True)

    # -- xenstore ------------------------------------------------------------------------------------
    def _open_store(self) -> None:
        try:
            self._store = self._h.xenstore()
            for path in ("@releaseDomain", "@introduceDomain"):
                w = self._store.watch(path)
                w.next(2.0)  # xenstored's first event, fired when the watch is set
                self._watches.append(w)
        except (OSError, ValueError, AttributeError):  # no xenstore (or one without watches): the poll alone
            self._drop_store()

    def _drop_store(self) -> None:
        for w in self._watches:
            try:
                w.close()
            except (OSError, ValueError):
                pass
        self._watches = []
        if self._store is not None:
            try:
                self._store.close()
            except OSError:
                pass
        self._store = None

    def _name(self, domid: int) -> Optional[str]:
        if self._store is None:
            names = self._h.domain_names() if self._h.transport.kind != "privcmd" else {}
            return names.get(domid)
        try:
            raw = bytes(self._store.read(f"/local/domain/{domid}/name"))
        except (OSError, ValueError):
            return None
        return raw.rstrip(b"\0").decode("utf-8", "replace") or None

    def _wait(self, seconds: float) -> None:
        """Sleep up to ``seconds``, waking early when a domain watch fires."""
        if not self._watches:
            time.sleep(seconds)
            return
        try:
            fired = self._watches[0].next(seconds)
            while fired is not None:  # drain what is queued: one look covers them
                fired = self._watches[0].next(0)
            while self._watches[1].next(0) is not None:
                pass
        except (OSError, ValueError):  # xenstore went away: poll only from now on
            self._drop_store()

    # -- the comparison -----------------------------------------------------------------------------
    def _emit(self, event: str, domid: int, seen: _Seen, detail: Optional[str] = None) -> None:
        if self._filter.wants(domid, seen.name, seen.handle):
            self._queue.append(DomainEvent(event, domid, seen.name, detail, time.time()))

    def _changes(self, seen: _Seen, info: DomainInfo) -> None:
        domid = info.domid
        if info.paused != seen.paused:
            seen.paused = info.paused
            self._emit("paused" if info.paused else "unpaused", domid, seen)
        if info.shutdown and not seen.shutdown:
            self._emit("shutdown", domid, seen, info.shutdown_reason)
        seen.shutdown = info.shutdown
        if info.dying and not seen.dying:
            self._emit("dying", domid, seen)
        seen.dying = info.dying

    def _look(self) -> None:
        now = time.time()
        infos = {i.domid: i for i in self._h.domains(names=False)}
        for domid, seen in list(self._seen.items()):
            info = infos.get(domid)
            handle = bytes(info.handle_bytes) if info is not None else b""
            if info is None or handle != seen.handle:
                del self._seen[domid]
                if seen.announced:
                    self._emit("destroyed", domid, seen)
        for domid, info in infos.items():
            known = self._seen.get(domid)
            if known is None:
                known = self._seen[domid] = _Seen(info, self._name(domid), now, announced=False)
                known.paused, known.shutdown, known.dying = False, False, False  # all of it is news
            if not known.announced:
                if known.name is None:
                    known.name = self._name(domid)
                if known.name is None and now - known.first_seen < NAME_GRACE_SECONDS:
                    continue  # its toolstack is still writing its nodes
                known.announced = True
                self._emit("started", domid, known)
                known.paused = info.paused  # a domain is built paused: no "paused" for that
            self._changes(known, info)

    # -- the stream ----------------------------------------------------------------------------------
    def next(self, timeout: Optional[float] = None) -> Optional[DomainEvent]:
        """The next event; ``None`` when none came within ``timeout`` seconds (``None``: as long as
        the stream lasts) or the stream's own timeout has passed."""
        if self.closed:
            raise ValueError("the event stream is closed")
        limit = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._queue:
                return self._queue.pop(0)
            now = time.monotonic()
            ends = [t for t in (limit, self._end) if t is not None]
            if ends and now >= min(ends):
                return None
            left = min([self._poll] + [t - now for t in ends])
            self._wait(max(0.0, left))
            self._look()

    def __iter__(self) -> "DomainEvents":
        return self

    def __next__(self) -> DomainEvent:
        event = self.next(None) if not self.closed else None
        if event is None:
            raise StopIteration
        return event

    def close(self) -> None:
        """Drop the xenstore watches; idempotent."""
        if not self.closed:
            self.closed = True
            self._drop_store()

    def __enter__(self) -> "DomainEvents":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<xenprivcmd.DomainEvents {'closed' if self.closed else f'{len(self._seen)} domains'}>"
