"""A small xenstore client in pure Python (:mod:`.client`), its connections
(:mod:`.connection`: xenstored's socket or the xenbus device) and the wire
protocol (:mod:`.wire`).  Its errors are in :mod:`xenprivcmd.errors`."""

from .client import Xenstore, try_domain_names

__all__ = ["Xenstore", "try_domain_names"]
