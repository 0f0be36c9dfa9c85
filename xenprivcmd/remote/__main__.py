"""``python3 -m xenprivcmd.remote [--read-only] [--uri URI]``: the remote helper.

Run by ssh for a client on another host, typically as an ``authorized_keys``
forced command::

    command="python3 -m xenprivcmd.remote --read-only",restrict ssh-ed25519 AAAA... monitor@example

With ``--read-only`` every operation that may change state is refused here,
on the remote, whatever the client asks.  ``--uri`` limits the session to one
hypervisor URI (default: whatever the client asks of ``xen:///`` and
``sim:`` URIs).  It speaks on stdin/stdout only.
"""

from __future__ import annotations

import sys
from typing import List, Optional

from ._boot import HELPER_MAGIC
from ._codec import PROTOCOL


def main(argv: Optional[List[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    read_only = False
    force_uri: Optional[str] = None
    while args:
        a = args.pop(0)
        if a in ("--read-only", "-r"):
            read_only = True
        elif a == "--uri" and args:
            force_uri = args.pop(0)
        elif a.startswith("--uri="):
            force_uri = a[len("--uri="):]
        else:
            sys.stderr.write(f"error: xenprivcmd.remote: unknown argument {a!r} (--read-only, --uri URI)\n")
            return 2
    from ._server import serve

    out = sys.stdout.buffer
    out.write(b"\n" + HELPER_MAGIC + b" %d\n" % PROTOCOL)
    out.flush()
    serve(source="helper", read_only=read_only, force_uri=force_uri)
    return 0


if __name__ == "__main__":
    sys.exit(main())
