"""Event channels of other domains: ``EVTCHNOP_alloc_unbound`` and ``EVTCHNOP_status``.

dom0 allocates a port of a guest that waits for one peer (``alloc_unbound``: how a
toolstack gives a guest its xenstore and console channels) and asks the state of
any domain's port (``status``).  This domain's own ports are bound through
:class:`xenprivcmd.EventChannels` (``/dev/xen/evtchn``).

``evtchn_status``'s union ``u`` holds, by status: the remote domid (unbound), the
remote domid and port (interdomain), the pirq or the virq (a ``uint32_t`` at its
start): read as the union's first 32 bits and the interdomain port after them,
the domid being the low 16 bits of the first (every Xen architecture is little-endian).
"""

from __future__ import annotations

from ..abi.hypercalls import DOMID_MAX
from ..evtchn import MAX_PORT
from ..types import EvtchnStatus
from .engine import Check, Request, op

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Dict

    from .engine import Engine

__all__ = ["ALLOC_UNBOUND", "STATUS", "STATUS_NAMES"]

ALLOC_UNBOUND = Request("event_channel_op", "alloc_unbound", struct="evtchn_alloc_unbound", domain=True,
                        domid_field="dom", send=("dom", "remote_dom"), read=("port",), reads=False,
                        checks=(Check(1, "remote domid", 0, DOMID_MAX),))
STATUS = Request("event_channel_op", "status", struct="evtchn_status", domain=True, domid_field="dom",
                 send=("dom", "port"), read=("status", "vcpu", "u.pirq", "u.interdomain.port"), reads=True,
                 checks=(Check(1, "port", 1, MAX_PORT),))
#: EVTCHNSTAT_* names, without the prefix
STATUS_NAMES = ("closed", "unbound", "interdomain", "pirq", "virq", "ipi")


def _names(e: Engine) -> Dict[int, str]:
    k = e.variant.constants
    return {int(k["EVTCHNSTAT_" + n]): n for n in STATUS_NAMES if "EVTCHNSTAT_" + n in k}


@op("evtchn_alloc_unbound", reads=False)
def _alloc_unbound(e: Engine) -> Callable[..., int]:
    """``EVTCHNOP_alloc_unbound``: a new port of domain ``domid`` that ``remote_domid``
    (dom0 by default) may bind; returns the port."""
    def evtchn_alloc_unbound(domid: int, remote_domid: int = 0) -> int:
        return int(e(ALLOC_UNBOUND, domid, remote_domid)[0])

    return evtchn_alloc_unbound


@op("evtchn_status", reads=True)
def _status(e: Engine) -> Callable[[int, int], EvtchnStatus]:
    """``EVTCHNOP_status``: the state of port ``port`` of domain ``domid``."""
    names = _names(e)

    def evtchn_status(domid: int, port: int) -> EvtchnStatus:
        domid = e.check(STATUS, (domid, port))[0]
        status, vcpu, first, remote_port = e(STATUS, domid, port)
        name = names.get(status, f"unknown {status}")
        remote = first & 0xFFFF if name in ("unbound", "interdomain") else None
        return EvtchnStatus(domid, port, name, vcpu, remote, remote_port if name == "interdomain" else None,
                            first if name == "pirq" else None, first if name == "virq" else None)

    return evtchn_status
