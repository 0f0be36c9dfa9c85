"""What a connection to xenstore does beyond the node operations of :mod:`.ops`.

:class:`ConnectionOps` is shared by :class:`~.client.Xenstore` and the simulator's store:
``get_domain_path``, ``introduce_domain``, ``release_domain``, ``is_domain_introduced``
and ``transaction``, each through the class's ``request``.
"""

from __future__ import annotations

from ..abi.hypercalls import check_domid
from .ops import StoreOps, _text
from .wire import XS_GET_DOMAIN_PATH, XS_INTRODUCE, XS_IS_DOMAIN_INTRODUCED, XS_RELEASE

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Optional, TypeVar

    from .transaction import Transaction

    T = TypeVar("T")

__all__ = ["ConnectionOps", "TRANSACTION_ATTEMPTS"]

#: How many times a transaction is tried while xenstored answers EAGAIN.
TRANSACTION_ATTEMPTS = 16


class ConnectionOps(StoreOps):
    """What a connection to xenstore does beyond the node operations (see the module doc);
    subclasses provide ``request(msg_type, payload, path=, tx_id=)`` and ``reconnects``."""

    reconnects = 0

    def request(self, msg_type: int, payload: bytes, *, path: Optional[str] = None, tx_id: int = 0) -> bytes:
        raise NotImplementedError

    def _req(self, msg_type: int, payload: bytes, path: Optional[str]) -> bytes:
        return self.request(msg_type, payload, path=path)

    def get_domain_path(self, domid: int) -> str:
        """The home of a domain in the store, ``/local/domain/<domid>``."""
        body = self.request(XS_GET_DOMAIN_PATH, b"%d\0" % check_domid(domid), path=f"<domid {domid}>")
        return _text(body)

    def introduce_domain(self, domid: int, frame: int, port: int) -> None:
        """Tell xenstored about a new domain (``XS_INTRODUCE``, as a toolstack does once the domain
        is built): its xenstore ring is in ``frame`` (the gfn or mfn of ``store/ring-ref``; newer
        xenstoreds map the ring through grant reference 1 and ignore it) and it listens on
        event-channel ``port`` (an unbound port of the domain for xenstored's domain).
        ``@introduceDomain`` watches fire.  Raises ``ValueError`` for arguments invalid on their
        face, :class:`XenstoreError` when xenstored refuses (EEXIST: already introduced)."""
        check_domid(domid)
        if isinstance(frame, bool) or not isinstance(frame, int) or not 0 <= frame < 1 << 52:
            raise ValueError(f"introduce_domain: frame must be an int in 0..2**52-1, not {frame!r}")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 1 << 17:
            raise ValueError(f"introduce_domain: port must be an int in 1..{(1 << 17) - 1}, not {port!r}")
        self.request(XS_INTRODUCE, b"%d\0%d\0%d\0" % (domid, frame, port), path=f"<domid {domid}>")

    def release_domain(self, domid: int) -> None:
        """Tell xenstored to forget a domain (``XS_RELEASE``, as a toolstack does when it destroys
        one): its connection and watches go, ``@releaseDomain`` watches fire.  The domain's nodes
        stay (the toolstack removes them)."""
        self.request(XS_RELEASE, b"%d\0" % check_domid(domid), path=f"<domid {domid}>")

    def is_domain_introduced(self, domid: int) -> bool:
        """Whether xenstored knows domain ``domid`` (``XS_IS_DOMAIN_INTRODUCED``)."""
        body = self.request(XS_IS_DOMAIN_INTRODUCED, b"%d\0" % check_domid(domid), path=f"<domid {domid}>")
        return body.split(b"\0", 1)[0] == b"T"

    def transaction(self, fn: Optional[Callable[[Transaction], T]] = None, *,
                    attempts: int = TRANSACTION_ATTEMPTS) -> Any:
        """A xenstore transaction, retried while xenstored answers EAGAIN (another writer
        changed what it read), at most ``attempts`` times.

        With ``fn``: ``fn(tx)`` runs in a transaction and is committed; on a conflict the
        transaction is started again and ``fn`` run again; its result is returned.  Without:
        an iterable of attempts::

            for tx in xs.transaction():
                with tx:                      # optional: commits at the end of the block
                    n = int(tx.read(path))
                    tx.write(path, str(n + 1))

        Each attempt is a :class:`~.transaction.Transaction` with the operations of this
        client; it commits when its ``with`` block ends (or, without one, when the loop
        asks for the next attempt); an exception in the block aborts it and is raised, but
        an EAGAIN inside a ``with`` block only starts the next attempt.  After ``attempts``
        conflicts, :class:`XenstoreError` (EAGAIN).
        """
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise ValueError(f"transaction: attempts must be an int >= 1, not {attempts!r}")
        from .transaction import attempts_of, run  # on first use: a one-shot listing never needs it

        if fn is not None:
            return run(self, fn, attempts)
        return attempts_of(self, attempts)
