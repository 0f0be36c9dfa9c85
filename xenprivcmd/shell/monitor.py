"""xpsh's dmesg: the hypervisor's console ring, -f to follow it (top is in :mod:`.top`)."""

from __future__ import annotations

import time

from .parse import Args, Opt
from .registry import command

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .session import Session

__all__ = ["cmd_dmesg"]


@command("dmesg", "host", "hypervisor console ring",
         "Print the hypervisor's console ring (xl dmesg).  -c clears it after reading; -f follows it,"
         " polling every --interval seconds (--count polls, default until interrupted).",
         opts=[Opt("clear", "clear the ring after reading", short="c"),
               Opt("follow", "keep printing what is new", short="f"),
               Opt("interval", "seconds between polls with -f (default 1)", value="float"),
               Opt("count", "stop -f after this many polls", value="int")],
         changes=lambda a: bool(a.get("clear")))
def cmd_dmesg(s: Session, a: Args) -> None:
    h = s.handle
    if not a.get("follow"):
        text = h.read_console(clear=bool(a.get("clear")))
        s.result({"console": text}, text)
        return
    interval = a.get("interval", 1.0)
    count = a.get("count")
    assert isinstance(interval, float) or isinstance(interval, int)
    polls = 0
    first = True
    try:
        while True:
            chunk = h.read_console(clear=bool(a.get("clear")) and first, incremental=True)
            first = False
            if chunk:
                if s.opts.json:
                    s.result({"console": chunk})
                else:
                    s.write(chunk)
                    s.stdout.flush()
            polls += 1
            if isinstance(count, int) and polls >= count:
                break
            time.sleep(float(interval))
    except KeyboardInterrupt:
        s.line()
        raise  # exit status 130, as README says
