"""xpsh: a virsh-like shell for Xen, on xenprivcmd.

    xpsh [options] COMMAND [ARGS]      one command
    xpsh [options] "CMD1; CMD2"        several
    xpsh [options]                     interactive

``run(argv, stdout, stderr, handle=...)`` runs it in-process and returns the
exit status; ``main()`` is the console script.  Commands, output formats and
the ``--json`` schema: ``xenprivcmd/shell/README.md``.
"""

from __future__ import annotations

from .cli import main, run

__all__ = ["main", "run"]
