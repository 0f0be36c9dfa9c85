"""The table families beyond domctl/sysctl: what to read from which headers.

The core tables (``_gen_<arch>_layouts.py``, ``_gen_<arch>_consts.py``) hold
the domctl/sysctl/xen_version world, read by every command.  The families
below are what a toolstack needs to map guest memory, bind event channels,
map grants, set HVM parameters, build a domain and speak the console and
xenstore ring protocols.  Each family goes to its own generated module per
arch (``_gen_<arch>_<family>.py``), loaded only when one of its names is
asked for, so a listing never parses them.

All families of a release are read from one translation unit (``ext_tu``):
``xen.h`` and the family headers present in that release.  Generator and
facts tool use the same unit.

Only names are configured here; every number comes from the compiler.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Tuple


@dataclass(frozen=True)
class Family:
    name: str  # module suffix: _gen_<arch>_<name>.py
    title: str  # one line, for the module doc and the documentation
    headers: Tuple[str, ...]  # public headers the family reads (below xen/include/public)
    roots: Tuple[str, ...] = ()  # struct tags / typedef names (their closure is emitted)
    root_prefixes: Tuple[str, ...] = ()  # every struct tag / typedef starting with one of these
    const_prefixes: Tuple[str, ...] = ()  # macro and enumerator names (a full name is its own prefix)

    def wants_const(self, name: str) -> bool:
        return name.startswith(self.const_prefixes)


FAMILIES: Tuple[Family, ...] = (
    Family(
        "memory", "memory reservations, physmap, memory maps, resource mapping (memory.h)",
        ("memory.h",),
        roots=("xen_memory_reservation", "xen_memory_exchange", "xen_memory_domain",
               "xen_machphys_mfn_list", "xen_machphys_mapping", "xen_add_to_physmap",
               "xen_add_to_physmap_batch", "xen_remove_from_physmap", "xen_memory_map",
               "xen_foreign_memory_map", "xen_pod_target", "xen_mem_acquire_resource",
               "xen_translate_gpfn_list", "xen_pfn_t"),
        const_prefixes=("XENMEM_", "XENMEMF_", "XENMAPSPACE_", "XENMAPIDX_"),
    ),
    Family(
        "evtchn", "event channel operations (event_channel.h) and virtual IRQs",
        ("event_channel.h",),
        roots=("evtchn_port_t",),
        root_prefixes=("evtchn_",),
        const_prefixes=("EVTCHNOP_", "EVTCHNSTAT_", "EVTCHN_", "VIRQ_", "NR_VIRQS", "NR_EVENT_CHANNELS"),
    ),
    Family(
        "gnttab", "grant table entries and operations (grant_table.h)",
        ("grant_table.h",),
        roots=("grant_entry", "grant_entry_v1", "grant_entry_v2", "grant_entry_header",
               "grant_ref_t", "grant_handle_t", "grant_status_t"),
        root_prefixes=("gnttab_",),
        const_prefixes=("GNTTABOP_", "GNTTAB_", "GTF_", "_GTF_", "GNTMAP_", "_GNTMAP_", "GNTST_",
                        "GNTCOPY_", "_GNTCOPY_"),
    ),
    Family(
        "hvm", "HVM parameters and operations (hvm/params.h, hvm/hvm_op.h)",
        ("hvm/hvm_op.h", "hvm/params.h"),
        roots=("xen_hvm_param",),
        const_prefixes=("HVMOP_", "HVM_PARAM_", "HVM_NR_PARAMS", "HVMPTM_", "HVMPV_"),
    ),
    Family(
        "sched", "scheduler operations a guest or toolstack issues, shutdown reasons (sched.h)",
        ("sched.h",),
        roots=("sched_shutdown", "sched_remote_shutdown", "sched_poll"),
        const_prefixes=("SCHEDOP_", "SHUTDOWN_"),
    ),
    Family(
        "build", "domain building: start_info, vcpu contexts, shared info, MMU ops, ELF notes, "
        "the guest memory map (xen.h, arch headers, elfnote.h)",
        ("elfnote.h",),
        roots=("start_info", "vcpu_guest_context", "cpu_user_regs", "trap_info", "vcpu_guest_core_regs",
               "shared_info", "vcpu_info", "arch_shared_info", "arch_vcpu_info", "vcpu_time_info",
               "mmuext_op", "mmu_update", "dom0_vga_console_info", "xen_ulong_t"),
        const_prefixes=("SIF_", "VGCF_", "_VGCF_", "MMUEXT_", "MMU_", "UVMF_", "VMASST_", "MAX_VMASST_TYPE",
                        "XEN_ELFNOTE_", "FLAT_", "MACH2PHYS_", "__MACH2PHYS_", "HYPERVISOR_VIRT_",
                        "GUEST_", "PSR_", "PSCI_", "MAX_GUEST_CMDLINE", "XEN_HYPERCALL_TAG"),
    ),
    Family(
        "rings", "the console and xenstore rings and the xenstore wire protocol (io/console.h, "
        "io/xs_wire.h)",
        ("io/console.h", "io/xs_wire.h"),
        roots=("xencons_interface", "xenstore_domain_interface", "xsd_sockmsg", "XENCONS_RING_IDX",
               "XENSTORE_RING_IDX"),
        const_prefixes=("XENSTORE_", "XS_", "XENCONS_"),
    ),
)

BY_NAME = {f.name: f for f in FAMILIES}

# The headers of the families' translation unit, in this order (those present).
EXT_HEADERS: Tuple[str, ...] = ("xen.h",) + tuple(h for f in FAMILIES for h in f.headers)

def ext_headers(incdir: str) -> Tuple[str, ...]:
    return tuple(h for h in EXT_HEADERS if os.path.exists(os.path.join(incdir, h)))


def ext_tu(incdir: str, headers: Tuple[str, ...]) -> str:
    """The families' translation unit for the header tree ``incdir``."""
    lines = ["/* generated translation unit (table families) */", "#include <stdint.h>"]
    xs = os.path.join(incdir, "io", "xs_wire.h")
    if "io/xs_wire.h" in headers:
        with open(xs) as fh:
            if "ifdef EINVAL" not in fh.read():
                # Xen 3.x defines its error table unguarded (4.0: under #ifdef EINVAL)
                lines.append("#include <errno.h>")
    lines += ['#include "%s"' % h for h in headers]
    return "\n".join(lines) + "\n"
