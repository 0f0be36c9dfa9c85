"""dom0_op for Xen 3.0.0-3.0.2 (hypercall 7, ``struct dom0_op``): how the engine lays out
the domctl and sysctl requests there.

Before Xen 3.0.3 there was no domctl/sysctl: the toolstack used one hypercall,
``__HYPERVISOR_dom0_op`` (7), with ``struct dom0_op { uint32_t cmd; uint32_t
interface_version; union {...} u; }`` (``public/dom0_ops.h``).  Every command
that acts on a domain carries the domid *inside its union member*
(``u.pausedomain.domain``), not in the wrapper.

:class:`Dom0OpFamilies` resolves the same :class:`~.engine.Request` declarations
as :class:`~.engine.Families` does for the domctl era, so the operations of
:mod:`.domains` and :mod:`.host` run unchanged:

* sub-op -> union member -> ``DOM0_<MEMBER>`` (:data:`SUBOPS`: ``max_mem`` ->
  ``setdomainmaxmem``, ``setvcpuaffinity`` -> ``setvcpuaffinity``, or
  ``pincpudomain`` in 3.0.0/3.0.1); the payload struct is the member's
  (``dom0_<member>``), whose fields carry the names the requests use;
* the domid goes into the member's ``domain`` field, and a request reading the
  header's domid (createdomain's answer) reads it there;
* the cpumap is a 64-bit ``cpumap_t`` in the request itself (getvcpuinfo reports
  it; setvcpuaffinity takes it): :mod:`.domains` declares those requests apart;
* ``getdomaininfo`` records have ``DOMFLAGS_*`` (the scheduled cpu in bits
  8..15, no hvm bit), translated by :class:`~.domains.FlagMap`;
* a sub-op the era lacks (``get_domain_state``, ``getcpuinfo``, topology,
  NUMA, ``scheduler_op``) raises :class:`NotSupported` before any hypercall.
"""

from __future__ import annotations

import ctypes
import errno as _errno

from ..abi.hypercalls import HYPERVISOR_dom0_op, command_names
from ..abi.layout import has_field
from ..errors import NotSupported
from .engine import Families, Layout, Request, field_path

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time (cold start)
    from typing import Any, Dict, List, Optional, Tuple

__all__ = ["Dom0OpFamilies", "SUBOPS"]

#: domctl/sysctl sub-op -> the dom0_op union members that do it (the first the release has).
SUBOPS: Dict[str, Tuple[str, ...]] = {
    "getdomaininfo": ("getdomaininfo",),
    "getdomaininfolist": ("getdomaininfolist",),
    "pausedomain": ("pausedomain",),
    "unpausedomain": ("unpausedomain",),
    "destroydomain": ("destroydomain",),
    "createdomain": ("createdomain",),
    "max_vcpus": ("max_vcpus",),
    "max_mem": ("setdomainmaxmem",),
    "getvcpuinfo": ("getvcpuinfo",),
    "setvcpuaffinity": ("setvcpuaffinity", "pincpudomain"),
    "physinfo": ("physinfo",),
    "sched_id": ("sched_id",),
    "readconsole": ("readconsole",),
}


class Dom0OpFamilies(Families):
    """Requests laid out on ``struct dom0_op`` (see the module doc)."""

    dom0_op = True

    def __init__(self, variant: Any) -> None:
        if not variant.is_dom0_op:
            raise ValueError(f"Xen {variant.release} has domctl/sysctl, not dom0_op")
        super().__init__(variant)
        #: The release's DOM0_* commands, by name (the union member's).
        self._commands = {name: cmd for cmd, name in command_names(variant, "dom0_op").items()}
        cls = self.structs["dom0_op"]
        if [cls.cmd.offset, cls.interface_version.offset] != [0, 4]:
            raise ValueError(f"unexpected dom0_op header layout in {variant.release}")
        self._op = (ctypes.sizeof(cls), cls.u.offset, int(variant.dom0_op_interface_version))

    def resolve(self, subop: str) -> Optional[Tuple[str, int]]:
        """(union member, DOM0_* command) doing ``subop`` in this release, or None."""
        for member in SUBOPS.get(subop, ()):
            if member in self._commands:
                return member, self._commands[member]
        return None

    def _member(self, subop: str, what: str) -> Tuple[str, int]:
        got = self.resolve(subop)
        if got is None:
            raise NotSupported(_errno.ENOSYS,
                               f"{what}: Xen {self.variant.release} (dom0_op interface) has no such operation")
        return got

    def struct(self, name: str, what: str) -> type:
        """``name``, or for ``xen_domctl_<op>``/``xen_sysctl_<op>`` the dom0_op member doing it."""
        cls = self.structs.get(name)
        if cls is None and name.startswith(("xen_domctl_", "xen_sysctl_")):
            got = self.resolve(name.split("_", 2)[2])
            if got is not None:
                cls = self.structs.get("dom0_" + got[0])
        if cls is None:
            raise NotSupported(_errno.ENOSYS, f"{what}: Xen {self.variant.release} (dom0_op interface) has no {name}")
        return cls  # type: ignore[no-any-return]

    def layout(self, request: Request) -> Layout:
        if request.family not in ("domctl", "sysctl"):
            return super().layout(request)
        if request.stable:
            raise NotSupported(_errno.ENOSYS, f"{request.name}: Xen {self.variant.release} has no stable domctls")
        member, cmd = self._member(request.subop, request.name)
        cls = self.structs.get("dom0_" + member)
        if cls is None:
            raise NotSupported(_errno.ENOSYS, f"{request.name}: Xen {self.variant.release} has no dom0_{member}")
        size, u, iv = self._op
        head: List[Tuple[int, str, Optional[int]]] = [(0, "I", cmd), (4, "I", iv)]
        domain = field_path(cls, "domain")[0] if has_field(cls, "domain") else None
        if request.family == "domctl":
            if domain is None:
                raise NotSupported(_errno.ENOSYS, f"{request.name}: dom0_{member} carries no domid")
            head.append((u + domain, "H", None if request.domain else 0))
        lay = self._finish(request, cls, HYPERVISOR_dom0_op, (None, 0, 0, 0, 0), size, u, head,
                           header_domain=None if domain is None else u + domain)
        return lay
