"""Xen's numbers the builder needs, taken from an :class:`~xenprivcmd.abi.Variant`.

Every number comes from the variant's generated tables (``variant.constants``, built from
Xen's public headers for each release and arch: the ELF note types, Arm's guest memory map
and interrupts, PSCI function numbers, start_info flags ...).  The few the tables do not
carry yet -- public/device_tree_defs.h's, and arch-arm.h's ``SCTLR_GUEST_INIT`` (written
with ``xen_mk_ullong``, which the generator does not evaluate) -- are kept in :data:`PENDING`,
the one place they live, as Xen 4.14 to 4.21 spell them.  TODO: drop each entry once the
generator emits it; ``tests/test_build_kernel.py`` fails when an entry differs from the tables.

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

#: arch ("x86_64", "aarch64", or "*" for every arch) -> name -> value: what the generated
#: tables do not carry yet (the device tree definitions of public/device_tree_defs.h, and
#: public/arch-arm.h's SCTLR_GUEST_INIT: the boot vcpu's system control register).
PENDING: Dict[str, Dict[str, int]] = {
    "aarch64": {
        "GUEST_PHANDLE_GIC": 65000,
        "GUEST_ROOT_ADDRESS_CELLS": 2,
        "GUEST_ROOT_SIZE_CELLS": 2,
        "DT_IRQ_TYPE_LEVEL_LOW": 8,
        "SCTLR_GUEST_INIT": 0x00C50078,
    },
}

#: XEN_ELFNOTE_* names as libelf prints them (``ENTRY``, ``HYPERCALL_PAGE``, ...), in
#: public/elfnote.h's order; a release's tables have those it knows.
ELFNOTE_NAMES = ("INFO", "ENTRY", "HYPERCALL_PAGE", "VIRT_BASE", "PADDR_OFFSET", "XEN_VERSION", "GUEST_OS",
                 "GUEST_VERSION", "LOADER", "PAE_MODE", "FEATURES", "BSD_SYMTAB", "HV_START_LOW", "L1_MFN_VALID",
                 "SUSPEND_CANCEL", "INIT_P2M", "MOD_START_PFN", "SUPPORTED_FEATURES", "PHYS32_ENTRY",
                 "PHYS32_RELOC")


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


def elfnote_types(variant: Variant) -> Mapping[int, str]:
    """Note type number -> short name (``1 -> "ENTRY"``) for ``variant``: the notes its
    public/elfnote.h defines."""
    out: Dict[int, str] = {}
    for short in ELFNOTE_NAMES:
        try:
            out[const(variant, "XEN_ELFNOTE_" + short)] = short
        except KeyError:
            continue
    return out
