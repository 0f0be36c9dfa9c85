"""INTERIM: the numbers issue 24's primitives need until the generated tables have them.

Every struct and constant of the privcmd/evtchn/gntdev ioctls and of the Xen
headers the guest-memory, event-channel and grant code uses is read through
:func:`linux_uapi` and :func:`xen_constant` below, nowhere else.  Until the
generated tables for the Linux uapi and for these Xen families land
(``xenprivcmd.abi.linux_uapi`` and the families of ``variant.constants``),
the values are kept here, in this one clearly marked place;
``tests/test_interim.py`` compares them with the facts seen on real Xen
(``privcmd-surface.md``) and, once the tables exist, with the tables.  Then
this module goes and its callers read the tables.

Sources: Linux's uapi headers ``xen/privcmd.h``, ``xen/evtchn.h``,
``xen/gntdev.h`` (the ioctl numbers are ``_IOC(_IOC_NONE, type, nr, size)``,
the same on x86_64 and arm64); Xen's ``public/memory.h``, ``public/xen.h``,
``public/event_channel.h``, ``public/grant_table.h``,
``public/io/console.h``.
"""

from __future__ import annotations

import ctypes

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Optional, Tuple

__all__ = ["linux_uapi", "xen_constant", "XEN_CONSTANTS", "XEN_LAYOUTS", "ioc"]


def ioc(kind: str, nr: int, size: int) -> int:
    """``_IOC(_IOC_NONE, kind, nr, size)`` (asm-generic/ioctl.h; x86_64 and arm64 alike)."""
    return (size << 16) | (ord(kind) << 8) | nr


class privcmd_mmapbatch_v2(ctypes.Structure):
    """``struct privcmd_mmapbatch_v2 { unsigned int num; domid_t dom; __u64 addr;
    const xen_pfn_t *arr; int *err; }``"""

    _fields_ = [("num", ctypes.c_uint32), ("dom", ctypes.c_uint16), ("addr", ctypes.c_uint64),
                ("arr", ctypes.c_uint64), ("err", ctypes.c_uint64)]


class privcmd_mmap_resource(ctypes.Structure):
    """``struct privcmd_mmap_resource { domid_t dom; __u32 type; __u32 id; __u32 idx;
    __u64 num; __u64 addr; }``"""

    _fields_ = [("dom", ctypes.c_uint16), ("type", ctypes.c_uint32), ("id", ctypes.c_uint32),
                ("idx", ctypes.c_uint32), ("num", ctypes.c_uint64), ("addr", ctypes.c_uint64)]


class ioctl_evtchn_bind_virq(ctypes.Structure):
    _fields_ = [("virq", ctypes.c_uint32)]


class ioctl_evtchn_bind_interdomain(ctypes.Structure):
    _fields_ = [("remote_domain", ctypes.c_uint32), ("remote_port", ctypes.c_uint32)]


class ioctl_evtchn_bind_unbound_port(ctypes.Structure):
    _fields_ = [("remote_domain", ctypes.c_uint32)]


class ioctl_evtchn_unbind(ctypes.Structure):
    _fields_ = [("port", ctypes.c_uint32)]


class ioctl_evtchn_notify(ctypes.Structure):
    _fields_ = [("port", ctypes.c_uint32)]


class ioctl_gntdev_grant_ref(ctypes.Structure):
    _fields_ = [("domid", ctypes.c_uint32), ("ref", ctypes.c_uint32)]


class ioctl_gntdev_map_grant_ref(ctypes.Structure):
    """``{ __u32 count; __u32 pad; __u64 index; struct ioctl_gntdev_grant_ref refs[1]; }``"""

    _fields_ = [("count", ctypes.c_uint32), ("pad", ctypes.c_uint32), ("index", ctypes.c_uint64),
                ("refs", ioctl_gntdev_grant_ref * 1)]


class ioctl_gntdev_unmap_grant_ref(ctypes.Structure):
    _fields_ = [("index", ctypes.c_uint64), ("count", ctypes.c_uint32), ("pad", ctypes.c_uint32)]


_STRUCTS: Dict[str, Any] = {c.__name__: c for c in (
    privcmd_mmapbatch_v2, privcmd_mmap_resource, ioctl_evtchn_bind_virq, ioctl_evtchn_bind_interdomain,
    ioctl_evtchn_bind_unbound_port, ioctl_evtchn_unbind, ioctl_evtchn_notify, ioctl_gntdev_grant_ref,
    ioctl_gntdev_map_grant_ref, ioctl_gntdev_unmap_grant_ref)}

_CONSTANTS: Dict[str, int] = {
    "IOCTL_PRIVCMD_MMAPBATCH_V2": ioc("P", 4, 32),
    "IOCTL_PRIVCMD_RESTRICT": ioc("P", 6, 2),
    "IOCTL_PRIVCMD_MMAP_RESOURCE": ioc("P", 7, 32),
    "IOCTL_EVTCHN_BIND_VIRQ": ioc("E", 0, 4),
    "IOCTL_EVTCHN_BIND_INTERDOMAIN": ioc("E", 1, 8),
    "IOCTL_EVTCHN_BIND_UNBOUND_PORT": ioc("E", 2, 4),
    "IOCTL_EVTCHN_UNBIND": ioc("E", 3, 4),
    "IOCTL_EVTCHN_NOTIFY": ioc("E", 4, 4),
    "IOCTL_GNTDEV_MAP_GRANT_REF": ioc("G", 0, 24),
    "IOCTL_GNTDEV_UNMAP_GRANT_REF": ioc("G", 1, 16),
}


class _Uapi:
    """The shape of ``xenprivcmd.abi.linux_uapi(arch)``: ``.structs`` and ``.constants``."""

    def __init__(self, arch: str) -> None:
        self.arch = arch
        self.structs = _STRUCTS
        self.constants = _CONSTANTS


_UAPI = {a: _Uapi(a) for a in ("x86_64", "aarch64")}


def linux_uapi(arch: str) -> _Uapi:
    """The Linux uapi structs and ioctl numbers of ``arch`` (x86_64 or aarch64)."""
    try:
        return _UAPI[arch]
    except KeyError:
        raise LookupError(f"no Linux uapi numbers for arch {arch!r}") from None


#: Xen constants: name -> (value, first release that has it).
XEN_CONSTANTS: Dict[str, Tuple[int, Tuple[int, int]]] = {
    # public/memory.h (XENMEM_acquire_resource: 4.11; vmtrace buffers: 4.15)
    "XENMEM_resource_ioreq_server": (0, (4, 11)),
    "XENMEM_resource_grant_table": (1, (4, 11)),
    "XENMEM_resource_vmtrace_buf": (2, (4, 15)),
    "XENMEM_resource_grant_table_id_shared": (0, (4, 11)),
    "XENMEM_resource_grant_table_id_status": (1, (4, 11)),
    # public/xen.h
    "VIRQ_TIMER": (0, (3, 0)), "VIRQ_DEBUG": (1, (3, 0)), "VIRQ_CONSOLE": (2, (3, 0)),
    "VIRQ_DOM_EXC": (3, (3, 0)), "VIRQ_TBUF": (4, (3, 0)), "VIRQ_DEBUGGER": (6, (3, 0)),
    "VIRQ_XENOPROF": (7, (3, 0)), "VIRQ_CON_RING": (8, (3, 0)), "VIRQ_PCPU_STATE": (9, (4, 0)),
    "VIRQ_MEM_EVENT": (10, (4, 0)), "VIRQ_ARGO": (11, (4, 13)), "VIRQ_ENOMEM": (12, (4, 0)),
    "VIRQ_XENPMU": (13, (4, 6)), "NR_VIRQS": (24, (3, 0)),
    # public/grant_table.h
    "GTF_permit_access": (1, (3, 0)), "GTF_readonly": (4, (3, 0)), "GTF_reading": (8, (3, 0)),
    "GTF_writing": (16, (3, 0)),
    # public/event_channel.h
    "EVTCHNSTAT_closed": (0, (3, 0)), "EVTCHNSTAT_unbound": (1, (3, 0)), "EVTCHNSTAT_interdomain": (2, (3, 0)),
    "EVTCHNSTAT_pirq": (3, (3, 0)), "EVTCHNSTAT_virq": (4, (3, 0)), "EVTCHNSTAT_ipi": (5, (3, 0)),
}

#: Xen struct layouts: name -> (size, {member: offset}) (the same on x86_64 and arm64).
XEN_LAYOUTS: Dict[str, Tuple[int, Dict[str, int]]] = {
    "grant_entry_v1": (8, {"flags": 0, "domid": 2, "frame": 4}),
    # public/io/console.h (4.17 added a u32 connection after out_prod: size 3092)
    "xencons_interface": (3088, {"in": 0, "out": 1024, "in_cons": 3072, "in_prod": 3076, "out_cons": 3080,
                                 "out_prod": 3084}),
    # public/io/xs_wire.h
    "xenstore_domain_interface": (2064, {"req": 0, "rsp": 1024, "req_cons": 2048, "req_prod": 2052,
                                         "rsp_cons": 2056, "rsp_prod": 2060}),
}


def xen_constant(xen: Tuple[int, ...], name: str) -> Optional[int]:
    """The value of Xen constant ``name`` in release ``xen`` (a version tuple), ``None`` when
    that release does not have it."""
    got = XEN_CONSTANTS.get(name)
    if got is None or tuple(xen[:2]) < got[1]:
        return None
    return got[0]
