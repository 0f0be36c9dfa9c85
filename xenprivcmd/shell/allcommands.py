"""Every xpsh command, registered: importing this module imports every command module.

The registry itself (:class:`Command`, :func:`command`, :data:`COMMANDS`, the helpers the
command modules share) is :mod:`.registry`; the commands are in :mod:`.node`,
:mod:`.domains`, :mod:`.monitor`, :mod:`.top`, :mod:`.stats`, :mod:`.builtins`, :mod:`.xlstyle`,
:mod:`.toolstack`, :mod:`.events`, :mod:`.console` and :mod:`.create`.  A session imports only the modules of the commands it runs
(:meth:`Session.command`); what needs all of them (completion, the tests) imports this.
"""

from __future__ import annotations

from . import builtins, console, create, domains, events, monitor, node, stats, toolstack, top, xlstyle  # noqa: F401 - they register their commands
from .registry import ALIASES, COMMANDS, GROUPS, Command, all_names, command, resolve, vcpu_state

__all__ = ["Command", "COMMANDS", "ALIASES", "GROUPS", "command", "resolve", "all_names", "vcpu_state"]
