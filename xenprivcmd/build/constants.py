"""Xen's numbers the builder needs, taken from an :class:`~xenprivcmd.abi.Variant`.

Every number comes from the variant's generated tables (``variant.constants``, built from
Xen's public headers for each release and arch) when the tables carry it.  A few that the
tables do not carry yet -- the ELF note types of ``public/elfnote.h`` and Arm's guest
memory map of ``public/arch-arm.h`` (under ``__XEN_TOOLS__``) -- are kept in
:data:`PENDING`, the one place they live, each as the headers of Xen 4.17 and 4.20 spell
it.  TODO: drop each entry once ``tools/gen_structs.py`` emits it;
``tests/test_build_constants.py`` fails when an entry differs from the tables, and says
which entries the tables now have.

>>> from xenprivcmd.abi import variant
>>> const(variant("4.17.0"), "XEN_ELFNOTE_ENTRY"), const(variant("4.17.0", arch="aarch64"), "GUEST_RAM0_BASE")
(1, 1073741824)
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, Mapping

    from ..abi import Variant

__all__ = ["const", "PENDING", "ELFNOTE_NAMES", "elfnote_types"]

#: arch ("x86_64", "aarch64", or "*" for every arch) -> name -> value.
PENDING: Dict[str, Dict[str, int]] = {
    "*": {
        # public/elfnote.h (the same numbers since Xen 3.0; PHYS32_RELOC from 4.20)
        "XEN_ELFNOTE_INFO": 0,
        "XEN_ELFNOTE_ENTRY": 1,
        "XEN_ELFNOTE_HYPERCALL_PAGE": 2,
        "XEN_ELFNOTE_VIRT_BASE": 3,
        "XEN_ELFNOTE_PADDR_OFFSET": 4,
        "XEN_ELFNOTE_XEN_VERSION": 5,
        "XEN_ELFNOTE_GUEST_OS": 6,
        "XEN_ELFNOTE_GUEST_VERSION": 7,
        "XEN_ELFNOTE_LOADER": 8,
        "XEN_ELFNOTE_PAE_MODE": 9,
        "XEN_ELFNOTE_FEATURES": 10,
        "XEN_ELFNOTE_BSD_SYMTAB": 11,
        "XEN_ELFNOTE_HV_START_LOW": 12,
        "XEN_ELFNOTE_L1_MFN_VALID": 13,
        "XEN_ELFNOTE_SUSPEND_CANCEL": 14,
        "XEN_ELFNOTE_INIT_P2M": 15,
        "XEN_ELFNOTE_MOD_START_PFN": 16,
        "XEN_ELFNOTE_SUPPORTED_FEATURES": 17,
        "XEN_ELFNOTE_PHYS32_ENTRY": 18,
        "XEN_ELFNOTE_PHYS32_RELOC": 19,
    },
    "aarch64": {
        # public/arch-arm.h: the guest's memory map and interrupts (Xen 4.17 and 4.20)
        "GUEST_GICD_BASE": 0x03001000,
        "GUEST_GICD_SIZE": 0x00001000,
        "GUEST_GICC_BASE": 0x03002000,
        "GUEST_GICC_SIZE": 0x00002000,
        "GUEST_GICV3_GICD_BASE": 0x03001000,
        "GUEST_GICV3_GICD_SIZE": 0x00010000,
        "GUEST_GICV3_RDIST_REGIONS": 1,
        "GUEST_GICV3_GICR0_BASE": 0x03020000,
        "GUEST_GICV3_GICR0_SIZE": 0x01000000,
        "GUEST_GNTTAB_BASE": 0x38000000,
        "GUEST_GNTTAB_SIZE": 0x01000000,
        "GUEST_MAGIC_BASE": 0x39000000,
        "GUEST_MAGIC_SIZE": 0x01000000,
        "GUEST_RAM_BANKS": 2,
        "GUEST_RAM0_BASE": 0x40000000,
        "GUEST_RAM0_SIZE": 0xC0000000,
        "GUEST_RAM1_BASE": 0x0200000000,
        "GUEST_RAM1_SIZE": 0xFE00000000,
        "GUEST_MAX_VCPUS": 128,
        "GUEST_TIMER_VIRT_PPI": 27,
        "GUEST_TIMER_PHYS_S_PPI": 29,
        "GUEST_TIMER_PHYS_NS_PPI": 30,
        "GUEST_EVTCHN_PPI": 31,
        "PSCI_cpu_suspend": 0,
        "PSCI_cpu_off": 1,
        "PSCI_cpu_on": 2,
        "PSCI_migrate": 3,
        # public/device_tree_defs.h
        "GUEST_PHANDLE_GIC": 65000,
        "GUEST_ROOT_ADDRESS_CELLS": 2,
        "GUEST_ROOT_SIZE_CELLS": 2,
        "DT_IRQ_TYPE_LEVEL_LOW": 8,
    },
}


def const(variant: Variant, name: str) -> int:
    """The value of Xen's macro ``name`` for ``variant``: from its generated tables, else
    from :data:`PENDING`.  Raises ``KeyError`` naming the macro, the release and the arch
    when neither has it."""
    table = variant.constants
    if name in table:
        return table[name]
    for key in (variant.arch, "*"):
        pending = PENDING.get(key, {})
        if name in pending:
            return pending[name]
    raise KeyError(f"{name}: not a constant of Xen {variant.release} on {variant.arch}")


#: XEN_ELFNOTE_* names as libelf prints them (``ENTRY``, ``HYPERCALL_PAGE``, ...).
ELFNOTE_NAMES = tuple(n[len("XEN_ELFNOTE_"):] for n in PENDING["*"] if n.startswith("XEN_ELFNOTE_"))


def elfnote_types(variant: Variant) -> Mapping[int, str]:
    """Note type number -> short name (``1 -> "ENTRY"``) for ``variant``."""
    out: Dict[int, str] = {}
    for short in ELFNOTE_NAMES:
        try:
            out[const(variant, "XEN_ELFNOTE_" + short)] = short
        except KeyError:
            continue
    return out
