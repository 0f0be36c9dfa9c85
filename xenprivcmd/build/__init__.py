"""Building guests without libxl: the pieces that need no hypervisor.

- :mod:`.config`: :class:`~xenprivcmd.build.config.DomainConfig`, a guest's configuration
  read from xl's config files (:mod:`.xlcfg`: xl's syntax);
- :mod:`.kernel`: kernel images (ELF, x86 bzImage, arm64 Image; :mod:`.elf` reads ELF) and
  where they go;
- :mod:`.x86pv`: an x86_64 PV guest's boot layout and initial page tables;
- :mod:`.arm`: an arm64 guest's memory layout and device tree (:mod:`.fdt` writes DTBs);
- :mod:`.constants`: the Xen numbers all of them take from an ABI variant.

All are pure functions and small immutable classes over bytes and integers, documented
with what libxl/libxenguest do, for the domain builder to combine with the hypercalls.
Nothing here is imported by ``import xenprivcmd``; ``xenprivcmd.DomainConfig`` loads
:mod:`.config` on first use.  Only the standard library is used.
"""
