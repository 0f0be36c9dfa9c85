"""The handle returned by :func:`xenprivcmd.open`."""

from __future__ import annotations

from types import TracebackType
from typing import Optional, Type

from ._privcmd import Transport
from .ops import version as _version
from .types import VersionInfo

__all__ = ["Handle"]


class Handle:
    """A connection to one hypervisor.

    Everything goes through ``self.transport`` (the real privcmd device, the
    simulator, or a replay).  Close it with :meth:`close` or use it as a
    context manager.  A handle may be shared by threads.
    """

    def __init__(self, transport: Transport, uri: str) -> None:
        self.transport = transport
        self.uri = uri
        self._varbuf_ops: Optional[bool] = None

    # -- lifetime ---------------------------------------------------------------
    def close(self) -> None:
        """Release the device and every hypercall buffer.  Idempotent."""
        self.transport.close()

    @property
    def closed(self) -> bool:
        return self.transport.closed

    def __enter__(self) -> "Handle":
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else self.transport.describe()
        return f"<xenprivcmd.Handle {self.uri} {state}>"

    # -- xen_version ------------------------------------------------------------
    def version(self) -> VersionInfo:
        """The hypervisor's version, build and capabilities.

        Raises :class:`~xenprivcmd.errors.HypercallError` subclasses when the
        hypervisor refuses, :class:`~xenprivcmd.errors.DecodeError` on a
        malformed reply.
        """
        if self._varbuf_ops is None:
            self._varbuf_ops = _version.has_varbuf_ops(self.transport)
        return _version.info(self.transport, self._varbuf_ops)

    def xen_version(self) -> "tuple[int, int]":
        """(major, minor) in one hypercall."""
        return _version.version(self.transport)

    @property
    def buffer_kind(self) -> str:
        """Where hypercall buffers come from (``/dev/xen/hypercall``,
        ``anonymous-locked``, or a simulator's memory)."""
        return self.transport.buffer_kind
