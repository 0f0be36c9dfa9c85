"""A xenstore watch: :class:`Watch`, what :meth:`Xenstore.watch <.client.Xenstore.watch>` returns.

::

    with xs.watch("/local/domain/3/memory/target") as w:
        w.next(timeout=1.0)                 # xenstored's own event, fired when the watch was set
        for event in w:                     # WatchEvent(path, token), as long as it takes
            print(event.path)

Events are queued per watch by the client as they arrive (also while other requests
wait for their replies), at most :data:`~.client.WATCH_QUEUE_MAX` of them; ``next``
takes the oldest or waits for one.  The watch is set again by itself when the client
reconnects (xenstored then fires it once more).  Closing it (or the end of the ``with``
block, or closing the client) unwatches it; ``next`` then raises ``ValueError`` and
iteration stops.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional

    from ..types import WatchEvent
    from .client import Xenstore

__all__ = ["Watch"]


class Watch:
    """One watch of a :class:`~.client.Xenstore` (see the module doc)."""

    def __init__(self, store: "Xenstore", path: str, token: str) -> None:
        self.store = store
        self.path = path
        self.token = token
        self.closed = False

    def next(self, timeout: Optional[float] = None) -> Optional["WatchEvent"]:
        """The next event; ``None`` when none came within ``timeout`` seconds (``None``: wait as
        long as it takes).  Raises ``ValueError`` once the watch is closed."""
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                    or not timeout >= 0):
            raise ValueError(f"watch: timeout must be a number of seconds >= 0 or None, not {timeout!r}")
        if self.closed:
            raise ValueError(f"the watch on {self.path} is closed")
        return self.store._next_event(self.token, timeout)

    def __iter__(self) -> "Watch":
        return self

    def __next__(self) -> "WatchEvent":
        if self.closed:
            raise StopIteration
        try:
            event = self.store._next_event(self.token, None)
        except ValueError:  # closed meanwhile
            raise StopIteration from None
        assert event is not None
        return event

    def close(self) -> None:
        """Unwatch (``XS_UNWATCH``); idempotent."""
        if not self.closed:
            self.closed = True
            self.store._unwatch(self.path, self.token)

    def __enter__(self) -> "Watch":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<xenstore watch {self.path!r} token={self.token!r}{' closed' if self.closed else ''}>"
