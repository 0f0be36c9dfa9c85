"""xpsh console: the terminal attached to a guest's console (virsh console, xl console)."""

from __future__ import annotations

import os

from .parse import Args, UsageError
from .registry import DOMAIN, _always, _who, command

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .session import Session

__all__ = ["cmd_console", "ESCAPE", "console_tty", "attach"]

#: Ctrl-]: detaches (as virsh and xl console).
ESCAPE = b"\x1d"


def console_tty(s: Session, info: Any) -> str:
    """The pty xenconsoled offers for the guest's console (``console/tty`` in xenstore)."""
    from ..errors import XenstoreNoEntry, XenstoreUnavailable

    h = s.handle
    try:
        store = h.xenstore()
    except XenstoreUnavailable as exc:
        raise UsageError(f"console: no xenstore to find the console in ({exc}); run xpsh on the dom0") from None
    try:
        try:
            raw = bytes(store.read(f"/local/domain/{info.domid}/console/tty"))
        except XenstoreNoEntry:
            raw = b""
    finally:
        store.close()
    path = raw.rstrip(b"\0").decode("utf-8", "replace").strip()
    if not path:
        raise UsageError(f"domain {_who(info)} has no console (no console/tty in xenstore: no xenconsoled, or"
                         " a guest without a PV console)")
    return path


def attach(tty_path: str, infd: int, outfd: int, banner: bytes = b"") -> str:
    """Copy between the terminal (``infd``/``outfd``, raw) and the console pty until Ctrl-]
    (-> ``"detached"``) or the pty closes (-> ``"closed"``: the guest is gone).  ``banner`` is
    written once both are raw (what is typed after it reaches the guest as typed; typeahead is
    kept, not flushed)."""
    import select
    import termios
    import tty

    fd = os.open(tty_path, os.O_RDWR | os.O_NOCTTY)
    try:
        tty.setraw(fd, termios.TCSANOW)  # as xenconsole does: the guest's bytes as they are
        saved = termios.tcgetattr(infd)
        tty.setraw(infd, termios.TCSANOW)
        try:
            os.write(outfd, banner)
            while True:
                ready, _, _ = select.select([infd, fd], [], [])
                if infd in ready:
                    data = os.read(infd, 1024)
                    if not data:
                        return "detached"
                    if ESCAPE in data:
                        head = data.split(ESCAPE, 1)[0]
                        if head:
                            os.write(fd, head)
                        return "detached"
                    os.write(fd, data)
                if fd in ready:
                    try:
                        data = os.read(fd, 4096)
                    except OSError:  # EIO: the other side of the pty is gone
                        return "closed"
                    if not data:
                        return "closed"
                    os.write(outfd, data)
        finally:
            termios.tcsetattr(infd, termios.TCSADRAIN, saved)
    finally:
        os.close(fd)


@command("console", "control", "connect to a domain's console",
         "Attach this terminal to the guest's console (as virsh console and xl console): what the guest"
         " prints shows here, what is typed goes to the guest, in raw mode.  Ctrl-] detaches (status 0)."
         "  Needs a terminal on stdin and the dom0's xenstore (the pty xenconsoled names in"
         " console/tty).  What is typed reaches the guest: refused by -r, and -N has nothing to hold back.",
         args=[DOMAIN], changes=_always)
def cmd_console(s: Session, a: Args) -> None:
    import sys

    if s.opts.dry_run:
        raise UsageError("console: a dry run (-N) cannot attach to a console")
    try:
        infd = sys.stdin.fileno()
    except (AttributeError, ValueError, OSError):
        infd = -1
    if infd < 0 or not os.isatty(infd):
        raise UsageError("console: stdin is not a terminal (run it from one)")
    i = s.lookup(a.domain)
    if i.domid == 0:
        raise UsageError("console: domain 0's console is this machine's own, not a guest console")
    path = console_tty(s, i)
    try:
        outfd = s.stdout.fileno()
    except (AttributeError, ValueError, OSError):
        outfd = 1
    s.stdout.flush()
    banner = f"Connected to domain {_who(i)}\r\nEscape character is ^] (Ctrl + ])\r\n".encode()
    try:
        how = attach(path, infd, outfd, banner)
    except OSError as exc:
        raise UsageError(f"console: cannot open {path}: {exc.strerror}") from None
    if how == "closed":
        os.write(outfd, b"\r\n[the console closed: the domain is gone]\r\n")
    else:
        os.write(outfd, b"\r\n")
