"""The builder of the precomputed op plans (:mod:`._fast`, :mod:`._fast_host`).

A plan is the source of one Python function made from the templates here
(one hypercall on the calling thread's lane; the lane over a buffer of some
size; the domid check), compiled with its constants bound as its globals.
"""

from __future__ import annotations

import errno as _errno
import struct

from ..abi.hypercalls import error
from ..abi.layout import _code, fields
from ..errors import XenError
from ..transport.privcmd import PrivcmdTransport, privcmd_hypercall
from .wire import DOMID_MAX, check_domid

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time (cold start, issue 15)
    from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

__all__ = ["Builder", "CALL", "ISSUE", "LANE", "LANE_ONLY", "CHECK_DOMID", "lane", "inputs", "request_format"]


def request_format(items: Sequence[Tuple[int, str]], end: int = 0) -> str:
    """A little-endian struct format writing ``items`` (offset, code) with zero padding between."""
    fmt = ["<"]
    pos = 0
    for offset, code in sorted(items):
        if offset < pos:
            raise ValueError(f"overlapping request fields at {offset}")
        if offset > pos:
            fmt.append(f"{offset - pos}x")
        fmt.append(code)
        pos = offset + struct.calcsize("<" + code)
    if end > pos:
        fmt.append(f"{end - pos}x")
    return "".join(fmt)


def _failed(t: PrivcmdTransport, exc: OSError, req: privcmd_hypercall, hypercall: str, subop: str,
            domid: Optional[int]) -> int:
    """The ioctl raised: EINTR is issued again (Xen did nothing); else the typed error."""
    try:
        return t.failed(exc, req)
    except OSError as final:
        raise error(final, hypercall=hypercall, subop=subop, domid=domid) from None


def _closed(t: PrivcmdTransport) -> int:
    """A ValueError from the ioctl: the fd was closed under us, or a real bug."""
    if t.closed:
        raise XenError(_errno.EBADF, "the handle is closed") from None
    raise  # noqa: PLE0704 - re-raises the ValueError being handled by the caller


# One ioctl of the prebuilt request {req}, its result in {out}.
CALL = """\
{indent}t.calls += 1
{indent}try:
{indent}    {out} = ioctl(t.fd, request, {req}, True)
{indent}except OSError as exc:
{indent}    {out} = failed(t, exc, {req}, {hypercall!r}, {subop!r}, {domid})
{indent}except ValueError:
{indent}    {out} = closed(t)
"""
# One hypercall on the thread's lane: {values} packed at 0 by {pack}, {req} the lane's request.
ISSUE = "{indent}{pack}(view, 0, {values})\n" + CALL

LANE_ONLY = """\
    lane = getattr(t._local, "lane", None)
    if lane is None:
        lane = t.lane()
"""
LANE = LANE_ONLY + "    view = lane.view\n"


def lane(need: object) -> str:
    """The lane over a buffer of at least ``need`` bytes (a number or an expression of the plan)."""
    return f"""\
    lane = getattr(t._local, "lane", None)
    if lane is None or lane.buf.size < {need}:
        t.scratch({need})
        lane = t.lane()
    view = lane.view
"""

# Anything but an int in range goes to the handle's resolver: range errors for
# ints, and names, UUIDs, DomainInfos looked up (handle._domid).
CHECK_DOMID = f"""\
    if domid.__class__ is not int or not 0 <= domid <= {DOMID_MAX}:
        domid = resolve(domid)
"""


class Builder:
    """Compiles the plans of one handle (see the module doc)."""

    def __init__(self, t: PrivcmdTransport) -> None:
        self.t = t
        self.env: Dict[str, Any] = {
            "t": t, "ioctl": t.ioctl, "request": t.request, "failed": _failed, "closed": _closed,
            "check_domid": check_domid, "DOMID_MAX": DOMID_MAX, "new": tuple.__new__,
        }
        self.n = 0

    def issue(self, st: Optional[struct.Struct], values: str, which: str, subop: str, domid: str = "None",
              indent: str = "    ", pack: str = "") -> str:
        """Source of one issue of ``which`` (domctl/sysctl) with ``st`` packing ``values``
        (or the plan's own ``pack``, a name of its body, when the Struct is chosen per call)."""
        if st is not None:
            self.n += 1
            pack = f"pack_{self.n}"
            self.env[pack] = st.pack_into
        return ISSUE.format(indent=indent, pack=pack, values=values, req="lane." + which, out="rc", hypercall=which,
                             subop=subop, domid=domid)

    def compile(self, name: str, params: str, body: str, **env: Any) -> Callable[..., Any]:
        scope = dict(self.env, **env)
        src = f"def {name}({params}):\n{body}"
        exec(compile(src, f"<xenprivcmd plan {name}>", "exec"), scope)  # noqa: S102 - our own template
        fn: Callable[..., Any] = scope[name]
        fn.__doc__ = f"{name}: precomputed plan on {self.t.path} (see xenprivcmd.ops._fast)"
        return fn


def inputs(cls: type, names: List[str]) -> List[Tuple[int, str]]:
    """(offset, struct code) of the fields ``names`` of ``cls`` (those it has)."""
    f = fields(cls)
    return [(f[n][0], _code(f[n][1])) for n in names if n in f]
