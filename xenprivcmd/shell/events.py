"""xpsh event: domain life events as they happen (virsh event)."""

from __future__ import annotations

import time

from .parse import Args, Opt, UsageError
from .registry import command

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Optional

    from .session import Session

__all__ = ["cmd_event", "event_text"]


def event_text(e: Any, timestamp: bool = False) -> str:
    """One event as text: ``event 'shutdown' for domain 'web1' (1): poweroff``."""
    who = f"'{e.name}' ({e.domid})" if e.name else f"{e.domid}"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.time)) + f".{int(e.time * 1000) % 1000:03d}+0000: " \
        if timestamp else ""
    return f"{stamp}event '{e.event}' for domain {who}" + (f": {e.detail}" if e.detail else "")


def event_dict(e: Any) -> Dict[str, Any]:
    return {"event": e.event, "domid": e.domid, "name": e.name, "detail": e.detail, "time": round(e.time, 3)}


@command("event", "monitor", "wait for domain events",
         "Print domain life events as they happen (as virsh event): started, paused, unpaused, shutdown"
         " (with its reason: poweroff, reboot, suspend, crash, watchdog, soft_reset), dying, destroyed."
         "  Without --loop it waits for one event; --timeout ends the wait (status 0, no event is no error);"
         " Ctrl-C ends --loop (status 0).  --domain limits it to one domain (a name follows the domain"
         " through reboots).  --json writes one object a line: event, domid, name, detail, time (seconds"
         " since the epoch).",
         opts=[Opt("loop", "keep waiting after the first event"),
               Opt("timeout", "stop after this many seconds", value="float", metavar="SECONDS"),
               Opt("domain", "only this domain (name, id or uuid)", value="str", metavar="DOM"),
               Opt("json", "one JSON object a line"),
               Opt("timestamp", "start each line with the time it was seen")])
def cmd_event(s: Session, a: Args) -> None:
    timeout = a.get("timeout")
    if timeout is not None and not float(timeout) >= 0:  # type: ignore[arg-type]
        raise UsageError("event: --timeout must be a number of seconds >= 0")
    domains: Optional[Any] = None
    dom = a.get("domain")
    if dom is not None:
        i = s.lookup(dom)  # an unknown domain is an error, as virsh's
        domains = [i.name if i.name else i.domid]
    as_json = bool(a.get("json")) or s.opts.json
    loop = bool(a.get("loop"))
    count = 0
    stream = s.handle.events(domains=domains, timeout=None if timeout is None else float(timeout))  # type: ignore[arg-type]
    try:
        for e in stream:
            count += 1
            if as_json:
                import json

                s.write(json.dumps(event_dict(e)) + "\n")
            else:
                s.write(event_text(e, bool(a.get("timestamp"))) + "\n")
            s.stdout.flush()
            if not loop:
                break
    except KeyboardInterrupt:
        if not as_json:
            s.write("event loop interrupted\n")
    finally:
        stream.close()
    if not as_json:
        if count == 0 and timeout is not None:
            s.write("event loop timed out\n")
        s.write(f"events received: {count}\n")
    s.stdout.flush()
