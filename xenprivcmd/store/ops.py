"""The operations of xenstore, written once for every store that speaks its messages.

:class:`StoreOps` is what a connection (:class:`~.client.Xenstore`, the simulator's store)
and a :class:`~.transaction.Transaction` share: ``read``, ``directory``, ``write``, ``rm``,
``mkdir``, ``get_perms``, ``set_perms``, each one request through the class's ``_req`` (a
transaction sends its id with it); :class:`~.session.ConnectionOps` adds what only a
connection does.  Arguments invalid on their face raise ``ValueError``/``TypeError``
before anything is sent.
"""

from __future__ import annotations

from ..abi.hypercalls import check_domid
from ..types import XenstorePermission
from .wire import XS_DIRECTORY, XS_GET_PERMS, XS_MKDIR, XS_READ, XS_RM, XS_SET_PERMS, XS_WRITE

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterable, List, Optional, Union

    PermissionLike = Union[XenstorePermission, str, "tuple[int, str]"]

__all__ = ["StoreOps", "parse_permission", "ACCESS"]

#: xenstore's permission letters -> their names.
ACCESS = {"n": "none", "r": "read", "w": "write", "b": "both"}
_LETTER = {v: k for k, v in ACCESS.items()}


def _path_bytes(path: str) -> bytes:
    if not isinstance(path, str) or not path:
        raise ValueError(f"xenstore path must be a non-empty str, not {path!r}")
    if "\0" in path:
        raise ValueError(f"xenstore path contains a NUL: {path!r}")
    return path.encode("utf-8")


def _text(value: bytes) -> str:
    """A xenstore value as text: a trailing NUL dropped, undecodable bytes replaced."""
    if value.endswith(b"\0"):
        value = value[:-1]
    return value.decode("utf-8", errors="replace")


def parse_permission(p: PermissionLike) -> XenstorePermission:
    """A permission from a :class:`XenstorePermission`, a ``(domid, access)`` pair or the wire form
    (``"b0"``, ``"r5"``); ``ValueError``/``TypeError`` otherwise."""
    if isinstance(p, str):
        if len(p) < 2 or p[0] not in ACCESS or not p[1:].isdigit():
            raise ValueError(f"xenstore permission {p!r} is not a letter of 'nrwb' and a domid")
        return XenstorePermission(check_domid(int(p[1:])), ACCESS[p[0]])
    if isinstance(p, tuple) and len(p) == 2:
        domid, access = p
        if access not in _LETTER:
            raise ValueError(f"xenstore permission access {access!r} is not one of {', '.join(_LETTER)}")
        return XenstorePermission(check_domid(domid), access)
    raise TypeError(f"a xenstore permission is a XenstorePermission, (domid, access) or 'b0', not {p!r}")


class StoreOps:
    """The node operations (see the module doc); subclasses provide ``_req``."""

    def _req(self, msg_type: int, payload: bytes, path: Optional[str]) -> bytes:
        raise NotImplementedError

    def read(self, path: str) -> bytes:
        """The value of node ``path``."""
        return self._req(XS_READ, _path_bytes(path) + b"\0", path)

    def directory(self, path: str) -> List[str]:
        """The names of the children of ``path`` (not full paths)."""
        body = self._req(XS_DIRECTORY, _path_bytes(path) + b"\0", path)
        return [name.decode("utf-8", errors="replace") for name in body.split(b"\0") if name]

    def write(self, path: str, value: Union[bytes, str]) -> None:
        """Set node ``path`` to ``value`` (a str is UTF-8 encoded), creating it and its parents."""
        data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        self._req(XS_WRITE, _path_bytes(path) + b"\0" + data, path)

    def rm(self, path: str) -> None:
        """Remove node ``path`` and everything below it."""
        self._req(XS_RM, _path_bytes(path) + b"\0", path)

    def mkdir(self, path: str) -> None:
        """Create node ``path`` (empty) and its parents; nothing changes when it exists."""
        self._req(XS_MKDIR, _path_bytes(path) + b"\0", path)

    def get_perms(self, path: str) -> List[XenstorePermission]:
        """The permissions of ``path``: the owner (and everyone else's access) first, then one
        entry per domain given its own access."""
        body = self._req(XS_GET_PERMS, _path_bytes(path) + b"\0", path)
        return [parse_permission(w.decode("ascii", "replace")) for w in body.split(b"\0") if w]

    def set_perms(self, path: str, perms: Iterable[PermissionLike]) -> None:
        """Set the permissions of ``path`` (the form :meth:`get_perms` gives: owner first)."""
        entries = [parse_permission(p) for p in perms]
        if not entries:
            raise ValueError("set_perms: at least the owner's permission is needed")
        payload = _path_bytes(path) + b"\0" + b"".join(str(e).encode("ascii") + b"\0" for e in entries)
        self._req(XS_SET_PERMS, payload, path)
