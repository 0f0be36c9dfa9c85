"""xenstore transactions: :class:`Transaction`, and the retry loop of
:meth:`Xenstore.transaction <.client.Xenstore.transaction>`.

``XS_TRANSACTION_START`` gives an id; every request carrying it sees the store as
it was at the start plus the transaction's own changes; ``XS_TRANSACTION_END``
with ``T`` commits them all at once, or answers EAGAIN when another writer changed
something the transaction touched (nothing is applied), with ``F`` drops them.
A transaction belongs to the connection that started it: if the client reconnects
meanwhile, the transaction is lost and counts as a conflict (EAGAIN).
"""

from __future__ import annotations

import errno as _errno

from ..errors import XenstoreError
from .ops import StoreOps
from .wire import XS_TRANSACTION_END, XS_TRANSACTION_START

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Iterator, Optional, TypeVar

    from .session import ConnectionOps as Xenstore

    T = TypeVar("T")

__all__ = ["Transaction", "run", "attempts_of"]


def _conflict(exc: BaseException) -> bool:
    return isinstance(exc, XenstoreError) and exc.errno == _errno.EAGAIN


class Transaction(StoreOps):
    """One attempt of a transaction: the node operations of :class:`~.ops.StoreOps` inside it.

    As a context manager it commits when the block ends without an exception and aborts
    otherwise; an EAGAIN (a conflict, at the commit or inside the block) is kept in
    :attr:`conflicted` and not raised, so the retry loop tries again.
    """

    def __init__(self, store: "Xenstore") -> None:
        self.store = store
        self._generation = store.reconnects
        body = store.request(XS_TRANSACTION_START, b"\0", path="<transaction>")
        try:
            self.id = int(body.split(b"\0", 1)[0])
        except ValueError:
            from ..errors import DecodeError

            raise DecodeError(f"xenstore TRANSACTION_START: the id {body[:32]!r} is not a number") from None
        #: "open", "committed", "aborted"
        self.state = "open"
        self.conflicted = False

    def _req(self, msg_type: int, payload: bytes, path: Optional[str]) -> bytes:
        if self.state != "open":
            raise ValueError(f"xenstore transaction {self.id} is {self.state}")
        if self.store.reconnects != self._generation:
            raise XenstoreError(_errno.EAGAIN, f"xenstore transaction {self.id}: the connection was made again"
                                " (the transaction is lost)", path=path, op="TRANSACTION")
        return self.store.request(msg_type, payload, path=path, tx_id=self.id)

    def _end(self, commit: bool) -> None:
        if self.state != "open":
            return
        if self.store.reconnects != self._generation:
            self.state = "aborted"
            if commit:
                raise XenstoreError(_errno.EAGAIN, f"xenstore transaction {self.id}: the connection was made again",
                                    op="TRANSACTION_END")
            return
        try:
            self.store.request(XS_TRANSACTION_END, b"T\0" if commit else b"F\0", path="<transaction>",
                               tx_id=self.id)
        finally:
            self.state = "committed" if commit else "aborted"
        if not commit:
            return

    def commit(self) -> None:
        """Commit; raises :class:`XenstoreError` EAGAIN on a conflict (nothing applied)."""
        try:
            self._end(True)
        except XenstoreError as exc:
            if _conflict(exc):
                self.state = "aborted"
                self.conflicted = True
            raise

    def abort(self) -> None:
        """Drop every change; idempotent."""
        try:
            self._end(False)
        except (XenstoreError, OSError):
            self.state = "aborted"

    def __enter__(self) -> "Transaction":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        if exc is None:
            try:
                self.commit()
            except XenstoreError as e:
                if _conflict(e):
                    return False  # conflicted is set: the loop tries again
                raise
            return False
        self.abort()
        if _conflict(exc):
            self.conflicted = True
            return True  # swallowed: the next attempt runs
        return False

    def __repr__(self) -> str:
        return f"<xenstore transaction {self.id} {self.state}>"


def _exhausted(attempts: int) -> XenstoreError:
    return XenstoreError(_errno.EAGAIN, f"xenstore transaction: conflicted {attempts} times in a row (EAGAIN)",
                         op="TRANSACTION_END")


def attempts_of(store: "Xenstore", attempts: int) -> "Iterator[Transaction]":
    """The attempts of ``for tx in xs.transaction():`` (see Xenstore.transaction)."""
    for _ in range(attempts):
        tx = Transaction(store)
        try:
            yield tx
        except GeneratorExit:  # the loop's body raised (or broke out): nothing is committed
            tx.abort()
            raise
        if tx.state == "open":  # no with block: commit now
            try:
                tx.commit()
            except XenstoreError as exc:
                if not _conflict(exc):
                    raise
        if tx.state == "committed":
            return
        if not tx.conflicted:
            return  # aborted on purpose (tx.abort())
    raise _exhausted(attempts)


def run(store: "Xenstore", fn: "Callable[[Transaction], T]", attempts: int) -> "T":
    """``fn(tx)`` in a transaction, again on every conflict (see Xenstore.transaction)."""
    for _ in range(attempts):
        tx = Transaction(store)
        with tx:
            result = fn(tx)
        if tx.state == "committed":
            return result
        if not tx.conflicted:
            return result
    raise _exhausted(attempts)
