"""Building guests without libxl: the pieces that need no hypervisor.

- :mod:`.config`: :class:`~xenprivcmd.build.config.DomainConfig`, a guest's configuration
  read from xl's config files (:mod:`.xlcfg`: xl's syntax).

Nothing here is imported by ``import xenprivcmd``; ``xenprivcmd.DomainConfig`` loads
:mod:`.config` on first use.  Only the standard library is used.
"""
