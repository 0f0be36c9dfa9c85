"""A guest's memory and HVM parameters: ``memory_op`` and ``hvm_op`` on another domain.

``XENMEM_populate_physmap`` gives a domain frames at the guest frame numbers
asked (extents of ``2**order`` pages), ``XENMEM_decrease_reservation`` takes
frames back, ``XENMEM_claim_pages`` reserves free memory for a domain about to
be built (0 cancels the claim), ``XENMEM_maximum_gpfn`` answers the domain's
highest guest frame.  All take a ``xen_memory_reservation`` (or a bare
``domid_t``) and return a count or a frame number.

What populate_physmap answers depends on the guest: an x86 PV guest is not
translated, so Xen writes the machine frames it gave back over the list; a
translated guest (x86 HVM/PVH, every Arm guest) keeps the list as it was.
Either way the frames returned are those a foreign mapping and
decrease_reservation take for that guest.

``HVMOP_get_param`` / ``HVMOP_set_param`` read and write one of a domain's
``HVM_PARAM_*`` values (an x86 PV guest has none: Xen says EINVAL; every Arm
guest has them: where its xenstore and console rings are, their ports).
"""

from __future__ import annotations

import errno as _errno

from ..errors import HypercallError, from_errno
from .engine import PAYLOAD_OFFSET, Check, Request, op

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable, List, Union

    from .engine import Engine

__all__ = ["POPULATE_PHYSMAP", "DECREASE_RESERVATION", "CLAIM_PAGES", "MAXIMUM_GPFN", "GET_PARAM", "SET_PARAM",
           "MAX_EXTENTS", "MAX_ORDER", "MAX_FRAME", "MAX_CLAIM"]

#: The most extents one call takes (the payload: 8 bytes each).
MAX_EXTENTS = 1 << 20
#: Extent orders beyond a 2**63-byte extent are no order at all (Xen refuses far smaller ones: EPERM).
MAX_ORDER = 51
#: The highest frame number of a 64-bit physical address (x86_64 and Arm64: 52 bits at most).
MAX_FRAME = (1 << 52 >> 12) - 1
#: The most pages a claim asks for (an unsigned long's worth would be all memory many times over).
MAX_CLAIM = MAX_FRAME + 1
#: xen_pfn_t on x86_64 and Arm64
_PFN = 8

_RESERVATION = dict(struct="xen_memory_reservation", domain=True, domid_field="domid", returns=True)
#: gfns in, frames out (x86 PV: machine frames written over the list)
POPULATE_PHYSMAP = Request("memory_op", "populate_physmap", send=("domid", "extent_start", "nr_extents", "extent_order"),
                           pointers=("extent_start",), reads=False, **_RESERVATION)  # type: ignore[arg-type]
DECREASE_RESERVATION = Request("memory_op", "decrease_reservation",
                               send=("domid", "extent_start", "nr_extents", "extent_order"),
                               pointers=("extent_start",), reads=False, **_RESERVATION)  # type: ignore[arg-type]
#: nr_extents pages of order 0, no list (0: the claim is cancelled)
CLAIM_PAGES = Request("memory_op", "claim_pages", send=("domid", "nr_extents"), reads=False,
                      checks=(Check(1, "pages", 0, MAX_CLAIM),), **_RESERVATION)  # type: ignore[arg-type]
#: the argument is a bare domid_t; the answer, the return value
MAXIMUM_GPFN = Request("memory_op", "maximum_gpfn", struct="domid_t", domain=True, domid_field="domid",
                       send=("domid",), reads=True, returns=True)
GET_PARAM = Request("hvm_op", "get_param", struct="xen_hvm_param", domain=True, domid_field="domid",
                    send=("domid", "index"), read=("value",), reads=True)
SET_PARAM = Request("hvm_op", "set_param", struct="xen_hvm_param", domain=True, domid_field="domid",
                    send=("domid", "index", "value"), reads=False, checks=(Check(2, "value", 0, (1 << 64) - 1),))


def _frames(frames: Iterable[int], what: str) -> List[int]:
    """A list of frame numbers, each checked; TypeError, ValueError."""
    if isinstance(frames, (str, bytes, bytearray)):
        raise TypeError(f"{what} must be an iterable of ints, not {type(frames).__name__}")
    try:
        out = list(frames)
    except TypeError:
        raise TypeError(f"{what} must be an iterable of ints, not {type(frames).__name__}") from None
    if not out:
        raise ValueError(f"{what}: no frames given")
    if len(out) > MAX_EXTENTS:
        raise ValueError(f"{what}: {len(out)} extents in one call (at most {MAX_EXTENTS})")
    for f in out:
        if isinstance(f, bool) or not isinstance(f, int):
            raise TypeError(f"{what}: a frame must be an int, not {type(f).__name__}")
        if not 0 <= f <= MAX_FRAME:
            raise ValueError(f"{what}: frame {f:#x} is out of range 0..{MAX_FRAME:#x}")
    return out


def _partial(err: int, subop: str, domid: int, detail: str) -> HypercallError:
    """The typed error of a memory_op that did part of what it was asked (Xen answers a count)."""
    exc = from_errno(err, hypercall="memory_op", subop=subop, domid=domid)
    return type(exc)(err, f"{exc.message}: {detail}", hypercall="memory_op", subop=subop, domid=domid)


def _order(order: Any) -> int:
    return Check(0, "order", 0, MAX_ORDER)(order)  # type: ignore[no-any-return]


def _extents(e: Engine, req: Request, domid: int, frames: List[int], order: int) -> "tuple[int, List[int]]":
    """Issue ``req`` over ``frames``: (extents done, the list as Xen left it)."""
    n = len(frames)
    view, at = e.payload(n * _PFN)
    view[PAYLOAD_OFFSET:PAYLOAD_OFFSET + n * _PFN] = b"".join(f.to_bytes(_PFN, "little") for f in frames)
    done = int(e(req, domid, at, n, order)[0])
    raw = bytes(view[PAYLOAD_OFFSET:PAYLOAD_OFFSET + n * _PFN])
    return done, [int.from_bytes(raw[i:i + _PFN], "little") for i in range(0, n * _PFN, _PFN)]


@op("populate_physmap", reads=False)
def _populate_physmap(e: Engine) -> Callable[..., List[int]]:
    """``XENMEM_populate_physmap``: give domain ``domid`` an extent of ``2**order`` pages at
    each guest frame of ``gfns``; returns the frames (see the module doc).  Nothing
    half-done: when Xen populates fewer extents than asked (out of memory, above the
    domain's max_mem), those it did are released again and the error says how many."""
    def populate_physmap(domid: int, gfns: Iterable[int], order: int = 0) -> List[int]:
        domid = e.check(POPULATE_PHYSMAP, (domid, 0, 1, 0))[0]
        frames = _frames(gfns, "populate_physmap")
        order = _order(order)
        done, out = _extents(e, POPULATE_PHYSMAP, domid, frames, order)
        if done != len(frames):
            if done > 0:
                _extents(e, DECREASE_RESERVATION, domid, out[:done], order)
            raise _partial(_errno.ENOMEM, "populate_physmap", domid,
                           f"Xen populated {done} of {len(frames)} extents (released again)")
        return out

    return populate_physmap


@op("decrease_reservation", reads=False)
def _decrease_reservation(e: Engine) -> Callable[..., int]:
    """``XENMEM_decrease_reservation``: take back from domain ``domid`` the extents of
    ``2**order`` pages at ``frames`` (what :meth:`populate_physmap` returned); returns how
    many.  Xen stops at the first frame the domain does not have: the error then says
    how many were released before it (those cannot be given back)."""
    def decrease_reservation(domid: int, frames: Iterable[int], order: int = 0) -> int:
        domid = e.check(DECREASE_RESERVATION, (domid, 0, 1, 0))[0]
        got = _frames(frames, "decrease_reservation")
        order = _order(order)
        done, _out = _extents(e, DECREASE_RESERVATION, domid, got, order)
        if done != len(got):
            raise _partial(_errno.EINVAL, "decrease_reservation", domid,
                           f"Xen released {done} of {len(got)} extents, not frame {got[done]:#x} (not the "
                           "domain's?) nor any after it")
        return done

    return decrease_reservation


@op("claim_pages", reads=False)
def _claim_pages(e: Engine) -> Callable[[int, int], None]:
    """``XENMEM_claim_pages``: reserve ``pages`` free pages for domain ``domid`` (its
    populations then draw on them; ``xl info``'s outstanding_claims); 0 cancels the claim."""
    def claim_pages(domid: int, pages: int) -> None:
        e(CLAIM_PAGES, domid, pages)

    return claim_pages


@op("maximum_gpfn", reads=True)
def _maximum_gpfn(e: Engine) -> Callable[[int], int]:
    """``XENMEM_maximum_gpfn``: the highest guest frame number of domain ``domid``."""
    def maximum_gpfn(domid: int) -> int:
        return int(e(MAXIMUM_GPFN, domid)[0])

    return maximum_gpfn


def param_index(e: Engine, name: Union[int, str]) -> int:
    """An HVM parameter's index: an int, or a name of the release's ``HVM_PARAM_*`` (with or
    without the prefix, any case: ``"store_pfn"``); TypeError, ValueError."""
    limit = int(e.variant.constants.get("HVM_NR_PARAMS", 0))
    if isinstance(name, str):
        key = name.upper()
        key = key if key.startswith("HVM_PARAM_") else "HVM_PARAM_" + key
        index = e.variant.constants.get(key)
        if index is None or key.startswith("HVM_PARAM_CALLBACK_TYPE_") or key.endswith("_MASK"):
            raise ValueError(f"Xen {e.variant.release} has no HVM parameter {name!r}")
        return int(index)
    if isinstance(name, bool) or not isinstance(name, int):
        raise TypeError(f"an HVM parameter is an int or a name, not {type(name).__name__}")
    if not 0 <= name < limit:
        raise ValueError(f"HVM parameter {name} is out of range 0..{limit - 1}")
    return name


@op("hvm_param", reads=True)
def _hvm_param(e: Engine) -> Callable[[int, Union[int, str]], int]:
    """``HVMOP_get_param``: one of domain ``domid``'s HVM parameters (by index or
    ``HVM_PARAM_*`` name)."""
    def hvm_param(domid: int, name: Union[int, str]) -> int:
        domid = e.check(GET_PARAM, (domid, 0))[0]
        return int(e(GET_PARAM, domid, param_index(e, name))[0])

    return hvm_param


@op("set_hvm_param", reads=False)
def _set_hvm_param(e: Engine) -> Callable[[int, Union[int, str], int], None]:
    """``HVMOP_set_param``: set one of domain ``domid``'s HVM parameters."""
    def set_hvm_param(domid: int, name: Union[int, str], value: int) -> None:
        domid = e.check(SET_PARAM, (domid, 0, value))[0]
        e(SET_PARAM, domid, param_index(e, name), value)

    return set_hvm_param
