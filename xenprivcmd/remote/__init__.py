"""Hypervisors on other hosts, over OpenSSH: ``xen+ssh://`` and ``sim+ssh://``.

    import xenprivcmd
    with xenprivcmd.open("xen+ssh://root@dom0.example/") as xen:
        print([d.name for d in xen.domains()])

URIs (libvirt's form)::

    xen+ssh://[user@]host[:port]/[?param=value&...]          the remote's privcmd device
    sim+ssh://[user@]host[:port]/default[?sim options&...]   a simulated host on the remote
                                                             (sim:/// options: xen=, domains=, ...)

Parameters: ``keyfile=`` (ssh ``-i``), ``known_hosts=`` (ssh's
``UserKnownHostsFile``), ``no_verify=1`` (``StrictHostKeyChecking=no``),
``no_tty=1`` (``BatchMode=yes``: never prompt), ``command=`` (the ssh
binary, default ``ssh``), ``python=`` (the remote interpreter, default
``python3``; may carry options: ``python=python3%20-S``), ``timeout=``
(seconds one operation may take, default 60).

The system's ``ssh`` carries the connection (one per handle: the user's keys,
agent, ``~/.ssh/config`` and ``known_hosts``; host keys checked unless
``no_verify=1``).  The remote needs only ``python3`` >= 3.9: the package ships
itself and is cached there by content hash (:mod:`xenprivcmd.remote._boot`),
or an installed xenprivcmd of the same version is used.  Every public
operation of :class:`~xenprivcmd.handle.Handle` is forwarded by name, one
round trip each (``handle.round_trips`` counts them).  The protocol is
described in README.md ("Remote hosts"); ``python3 -m xenprivcmd.remote
--read-only`` is the helper an ``authorized_keys`` forced command runs.

Errors (:mod:`xenprivcmd.errors`, all :class:`RemoteError`\\ s):
``HostUnreachable``, ``AuthenticationFailed``, ``HostKeyMismatch``,
``NoRemotePython``, ``RemoteNotDom0``, ``RemotePermissionError``,
``ConnectionLost`` (an operation whose connection broke or timed out; never
retried; ``applied`` is False for reads, None when it may have been applied),
``ProtocolMismatch``.
"""

from __future__ import annotations

from typing import Any

from .. import __version__ as VERSION
from ._codec import PROTOCOL

__all__ = ["open_uri", "PROTOCOL", "VERSION"]


def open_uri(uri: str, abi: Any = None, **kw: Any) -> Any:
    """The opener ``xenprivcmd.open`` calls for ``xen+ssh://`` and ``sim+ssh://``."""
    from ._client import open_remote

    return open_remote(uri, abi=abi, **kw)
