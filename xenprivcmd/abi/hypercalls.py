"""The hypercall vocabulary: Xen's numbers and names for what this package issues.

Everything that names a hypercall, a sub-op or a command, or that turns a
transport's ``OSError`` into the typed error, comes from here:

* ``HYPERVISOR_<name>``: the ``__HYPERVISOR_*`` numbers the package uses, and
  :data:`HYPERCALL_NAMES` (number -> name) for every hypercall of
  ``public/xen.h``, to show what a trace or a recording holds;
* ``XENVER_<name>`` (``public/version.h``): the sub-ops of ``xen_version``,
  :data:`XENVER_NAMES` (number -> name);
* ``XENMEM_*`` (``public/memory.h``): the ``memory_op`` sub-ops the package uses;
* :func:`command_names`: the domctl, sysctl or dom0_op commands of one
  release, read from its constants by one rule (below);
  :func:`interface_command_names` names the commands of a request by the
  interface version it carries, and :func:`command_name` the command of one
  request, as record/replay and tracing show them;
* :func:`issue`: one hypercall on a transport, an ``OSError`` raised as the
  typed :mod:`~xenprivcmd.errors` exception naming what failed (:func:`error`).

Which macros are commands.  A family's commands are the macros
``XEN_DOMCTL_<name>``, ``XEN_SYSCTL_<name>`` or (Xen 3.0.0-3.0.2)
``DOM0_<NAME>`` whose value goes into the request's ``cmd``.  The other
macros sharing the prefix are the interface version and values of one
command's fields (flags, limits, sub-ops, indices).  Xen spells domctl and
sysctl commands in lower case and nearly all those values in upper case
(``XEN_DOMCTL_CDF_hvm``, ``XEN_SYSCTL_CPUPOOL_OP_INFO``); the few value
enumerations spelled like commands, and dom0_op's (all its names are upper
case), are listed in :data:`FIELD_ENUMS` with the command they belong to.  So
``<name>`` is a command when it is not ``INTERFACE_VERSION``, is spelled in
the family's case, and is a command of :data:`FIELD_ENUMS` or starts with
none of its prefixes.  dom0_op commands are named in lower case, as the
members of ``struct dom0_op``'s union (``DOM0_SETDOMAINMAXMEM`` ->
``setdomainmaxmem``).  ``tests/test_hypercalls.py`` checks that no two
commands of a release share a number, that every enumeration belongs to a
command of the releases that have it, and the names against facts of the
headers (and dom0_op's against its union's members).

No OS access and nothing costly to import: stdlib only; the ABI tables are
read only when a request is named by its interface version.
"""

from __future__ import annotations

import errno as _errno

from .. import abi as _abi
from ..errors import ReadOnlyError, RestrictedError, from_errno

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time (cold start, issue 15)
    from typing import Any, Dict, Optional, Tuple

    from ..errors import HypercallError
    from ..transport.privcmd import Transport

__all__ = [
    "HYPERVISOR_dom0_op", "HYPERVISOR_memory_op", "HYPERVISOR_multicall", "HYPERVISOR_xen_version",
    "HYPERVISOR_sysctl", "HYPERVISOR_domctl", "HYPERVISOR_hvm_op",
    "HYPERVISOR_event_channel_op", "HYPERCALLS", "HYPERCALL_NAMES", "XENVER_NAMES",
    "XENMEM_get_sharing_freed_pages", "XENMEM_get_sharing_shared_pages", "COMMAND_FAMILIES", "FAMILIES",
    "FIELD_ENUMS", "DOMID_FIRST_RESERVED", "DOMID_MAX", "check_domid", "SCHEDULER_NAMES", "scheduler_name",
    "is_command", "command_names", "interface_command_names", "command_name", "issue", "error",
]

# -- hypercalls (public/xen.h) ----------------------------------------------------------------

#: ``__HYPERVISOR_<name>`` -> number, the names of the newest release that has the number
#: (7 is ``dom0_op`` in 3.0.0-3.0.2 and ``platform_op`` since).
HYPERCALLS: Dict[str, int] = {
    "set_trap_table": 0, "mmu_update": 1, "set_gdt": 2, "stack_switch": 3, "set_callbacks": 4,
    "fpu_taskswitch": 5, "sched_op_compat": 6, "dom0_op": 7, "platform_op": 7, "set_debugreg": 8,
    "get_debugreg": 9, "update_descriptor": 10, "memory_op": 12, "multicall": 13, "update_va_mapping": 14,
    "set_timer_op": 15, "event_channel_op_compat": 16, "xen_version": 17, "console_io": 18,
    "physdev_op_compat": 19, "grant_table_op": 20, "vm_assist": 21, "update_va_mapping_otherdomain": 22,
    "iret": 23, "vcpu_op": 24, "set_segment_base": 25, "mmuext_op": 26, "xsm_op": 27, "nmi_op": 28,
    "sched_op": 29, "callback_op": 30, "xenoprof_op": 31, "event_channel_op": 32, "physdev_op": 33,
    "hvm_op": 34, "sysctl": 35, "domctl": 36, "kexec_op": 37, "tmem_op": 38, "argo_op": 39,
    "xenpmu_op": 40, "dm_op": 41, "hypfs_op": 42,
}

#: The package issues hypercall 7 only as dom0_op (3.0.0-3.0.2), so that is its name here.
HYPERVISOR_dom0_op = HYPERCALLS["dom0_op"]
HYPERVISOR_memory_op = HYPERCALLS["memory_op"]
HYPERVISOR_multicall = HYPERCALLS["multicall"]
HYPERVISOR_xen_version = HYPERCALLS["xen_version"]
HYPERVISOR_sysctl = HYPERCALLS["sysctl"]
HYPERVISOR_domctl = HYPERCALLS["domctl"]
HYPERVISOR_hvm_op = HYPERCALLS["hvm_op"]
HYPERVISOR_event_channel_op = HYPERCALLS["event_channel_op"]

#: number -> name, for what a trace, a recording or the simulator's log shows.
HYPERCALL_NAMES: Dict[int, str] = {n: name for name, n in HYPERCALLS.items() if name != "platform_op"}

# -- xen_version sub-ops (public/version.h; the *2 ones since Xen 4.20) -----------------------

XENVER_version = 0
XENVER_extraversion = 1
XENVER_compile_info = 2
XENVER_capabilities = 3
XENVER_changeset = 4
XENVER_platform_parameters = 5
XENVER_get_features = 6
XENVER_pagesize = 7
XENVER_guest_handle = 8
XENVER_commandline = 9
XENVER_build_id = 10
XENVER_extraversion2 = 11
XENVER_capabilities2 = 12
XENVER_changeset2 = 13
XENVER_commandline2 = 14

#: sub-op number -> name (``XENVER_<name>``).
XENVER_NAMES: Dict[int, str] = {n: k[len("XENVER_"):] for k, n in list(globals().items()) if k.startswith("XENVER_")}

# -- memory_op sub-ops (public/memory.h): the memory-sharing page counts, no argument ----------

XENMEM_get_sharing_freed_pages = 18
XENMEM_get_sharing_shared_pages = 19

# -- domains and schedulers (public/xen.h, public/domctl.h) -------------------------------------

#: The first domid Xen reserves (DOMID_SELF, DOMID_IO, ... from here on).
DOMID_FIRST_RESERVED = 0x7FF0
#: Largest domid a caller may name (DOMID_FIRST_RESERVED - 1).
DOMID_MAX = DOMID_FIRST_RESERVED - 1


def check_domid(domid: Any) -> int:
    """A domid named by a caller: an int in 0..0x7FEF (no reserved ids); TypeError, ValueError.
    The one domid check of the package (hypercalls, xenstore, the shell)."""
    if isinstance(domid, bool) or not isinstance(domid, int):
        raise TypeError(f"domid must be an int, not {type(domid).__name__}")
    if not 0 <= domid <= DOMID_MAX:
        raise ValueError(f"domid {domid} is out of range 0..{DOMID_MAX:#x}")
    return domid


#: XEN_SCHEDULER_* id -> name (the same in every release that has them; 0 is SCHED_BVT of the
#: dom0_op era); a scheduler's name is also the member of ``xen_domctl_scheduler_op.u`` holding
#: its parameters.
SCHEDULER_NAMES: Dict[int, str] = {0: "bvt", 4: "sedf", 5: "credit", 6: "credit2", 7: "arinc653", 8: "rtds",
                                   9: "null"}


def scheduler_name(sched_id: int) -> str:
    """``credit``, ``credit2``, ... (``sched-<id>`` for an id no release names)."""
    return SCHEDULER_NAMES.get(sched_id, f"sched-{sched_id}")


# -- domctl / sysctl / dom0_op commands ---------------------------------------------------------

#: hypercall -> the family of the commands it carries (a request starts with cmd, interface_version).
COMMAND_FAMILIES: Dict[int, str] = {HYPERVISOR_domctl: "domctl", HYPERVISOR_sysctl: "sysctl", HYPERVISOR_dom0_op: "dom0_op"}

#: family -> (the prefix of its macros, whether its commands are spelled in lower case).
FAMILIES: Dict[str, Tuple[str, bool]] = {
    "domctl": ("XEN_DOMCTL_", True),
    "sysctl": ("XEN_SYSCTL_", True),
    "dom0_op": ("DOM0_", False),
}

#: family -> {command: prefix of the values of its fields that are spelled like commands}.
FIELD_ENUMS: Dict[str, Dict[str, str]] = {
    "domctl": {"vmtrace_op": "vmtrace_"},  # XEN_DOMCTL_vmtrace_enable ... are vmtrace_op's cmd values
    "sysctl": {
        "pm_op": "pm_op_",  # XEN_SYSCTL_pm_op_get_cputopo ... : pm_op's cmd values
        "get_cpu_featureset": "cpu_featureset_",  # XEN_SYSCTL_cpu_featureset_raw ... : its index
        "get_cpu_policy": "cpu_policy_",  # XEN_SYSCTL_cpu_policy_host ... : its index
    },
    "dom0_op": {
        "PERFCCONTROL": "PERFCCONTROL_OP_", "SHADOW_CONTROL": "SHADOW_CONTROL_OP_", "TBUFCONTROL": "TBUF_",
    },
}

def is_command(family: str, name: str) -> bool:
    """Whether the macro ``<family's prefix><name>`` is a command (the rule of the module doc)."""
    lower = FAMILIES[family][1]
    if name == "INTERFACE_VERSION" or name[:1].islower() != lower:
        return False
    enums = FIELD_ENUMS[family]
    return name in enums or not name.startswith(tuple(enums.values()))


_names: Dict[Tuple[str, str, str], Dict[int, str]] = {}


def command_names(variant: Any, family: str) -> Dict[int, str]:
    """``{number: name}`` of the ``family`` ("domctl", "sysctl", "dom0_op") commands
    of ``variant`` (an :class:`~xenprivcmd.abi.Variant`): see the module doc."""
    key = (variant.arch, variant.constants_key, family)
    names = _names.get(key)
    if names is None:
        prefix, lower = FAMILIES[family]
        # only the tables that can hold such names (the core ones), not every family's
        named = variant.constants.with_prefix(prefix)
        names = {}
        for macro in sorted(named):
            name = macro[len(prefix):]
            if macro.startswith(prefix) and is_command(family, name):
                names[int(named[macro])] = name if lower else name.lower()
        _names[key] = names
    return names


_by_interface: Dict[Tuple[str, int], Dict[int, str]] = {}


def interface_command_names(family: str, interface_version: int) -> Dict[int, str]:
    """``{number: name}`` for a ``family`` request carrying ``interface_version``: the
    commands of every release with that interface version (the newest's name first); for
    a version no release has (a probe, a development build), the newest release's.
    That is each release's own name but for two dom0_op commands 3.0.2 renamed under
    the same interface version (``setdomaininfo``, ``pincpudomain`` of 3.0.0/3.0.1).

    Command numbers are the same on every architecture (domctl.h and sysctl.h are
    common), so the x86_64 tables answer for all.
    """
    key = (family, interface_version)
    names = _by_interface.get(key)
    if names is None:
        attr = family + "_interface_version"
        names = {}
        for release in reversed(_abi.releases()):
            v = _abi.variant(release)
            if getattr(v, attr) == interface_version:
                for n, name in command_names(v, family).items():
                    names.setdefault(n, name)
        if not names:
            names = dict(command_names(_abi.variant(_abi.head_release()), family))
        _by_interface[key] = names
    return names


def command_name(op: int, cmd: int, interface_version: int) -> Optional[str]:
    """The name of command ``cmd`` in a request of hypercall ``op`` (domctl, sysctl,
    dom0_op) carrying ``interface_version``; None when unknown (and for other hypercalls)."""
    family = COMMAND_FAMILIES.get(op)
    return None if family is None else interface_command_names(family, interface_version).get(cmd)


# -- issuing -------------------------------------------------------------------------------------

def error(exc: OSError, *, hypercall: str, subop: Optional[str] = None, domid: Optional[int] = None) -> HypercallError:
    """The typed exception for a hypercall the transport failed with ``exc``."""
    return from_errno(exc.errno or _errno.EIO, hypercall=hypercall, subop=subop, domid=domid)


def issue(t: Transport, op: int, a0: int, a1: int = 0, *, hypercall: Optional[str] = None,
          subop: Optional[str] = None, domid: Optional[int] = None) -> int:
    """Issue hypercall ``op``; an OSError becomes the typed error naming what failed
    (``hypercall`` defaults to the op's name; a read-only handle's refusal passes
    through as it is)."""
    try:
        return t.hypercall(op, a0, a1)
    except (ReadOnlyError, RestrictedError):
        raise
    except OSError as exc:
        raise error(exc, hypercall=hypercall or HYPERCALL_NAMES.get(op, f"hypercall{op}"), subop=subop,
                    domid=domid) from None
