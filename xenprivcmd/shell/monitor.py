"""xpsh monitoring commands that keep running: top (xentop-like) and dmesg (the
hypervisor's console ring, -f to follow it)."""

from __future__ import annotations

import time

from .parse import Args, Opt, UsageError
from .registry import _name_of, command, stream_isatty

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional

    from .session import Session

__all__ = ["cmd_dmesg", "cmd_top"]


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


_TOP_SORT = {
    "cpu": (lambda d: -(d["cpu_percent"] or 0.0), "CPU(%), highest first"),
    "mem": (lambda d: -d["memory_kib"], "memory, largest first"),
    "name": (lambda d: _name_of(d["id"], d["name"]), "name"),
    "id": (lambda d: d["id"], "domid"),
}


@command("top", "monitor", "live per-domain CPU and memory usage",
         "A refreshing per-domain CPU/memory view (like xentop), CPU% computed from cpu_time deltas."
         "  On a terminal it redraws every --delay seconds and fits the window (the rows that do not fit"
         " are counted on the last line); q quits.  --iterations N runs N rounds in batch mode"
         " (no screen clearing).  --sort cpu|mem|name|id orders the rows (default id).",
         opts=[Opt("iterations", "number of rounds (batch mode)", value="int", short=None),
               Opt("delay", "seconds between rounds (default 3)", value="float", short="d"),
               Opt("interval", "the same as --delay", value="float"),
               Opt("sort", "row order: cpu, mem, name or id (default)", value="str"),
               Opt("batch", "batch mode: do not clear the screen", short="b")])
def cmd_top(s: Session, a: Args) -> None:
    h = s.handle
    delay = float(a.get("delay", a.get("interval", 3.0)))  # type: ignore[arg-type]
    sort = str(a.get("sort", "id"))
    if sort not in _TOP_SORT:
        raise UsageError(f"top: --sort {sort!r}: one of {', '.join(_TOP_SORT)}")
    iterations = a.get("iterations")
    live = iterations is None and not a.get("batch") and not s.opts.json and stream_isatty(s.stdout)
    if iterations is None and not live and not a.get("batch"):
        iterations = 1
    if isinstance(iterations, int) and iterations < 1:
        raise UsageError("top: --iterations must be at least 1")
    p = h.physinfo()
    total_kib = p.total_memory_kib or 1
    prev: Dict[int, int] = {}
    prev_t: Optional[float] = None
    rounds: List[Dict[str, Any]] = []
    n = 0
    keys = _Keys() if live else None
    try:
        while True:
            now = time.monotonic()
            infos = h.domains(names=True)
            interval = None if prev_t is None else now - prev_t
            doms = []
            for i in infos:
                pct: Optional[float] = None
                if interval and i.domid in prev:
                    pct = round(max(0, i.cpu_time - prev[i.domid]) / (interval * 1e9) * 100, 1)
                doms.append({
                    "id": i.domid, "name": i.name, "state": i.state, "state_letters": i.state_letters,
                    "cpu_time_ns": i.cpu_time, "cpu_percent": pct,
                    "memory_kib": i.memory_kib, "memory_percent": round(i.memory_kib * 100 / total_kib, 1),
                    "max_memory_kib": i.max_memory_kib, "vcpus": i.vcpus, "online_vcpus": i.nr_online_vcpus,
                })
            doms.sort(key=_TOP_SORT[sort][0])  # type: ignore[arg-type, no-untyped-call]
            prev = {i.domid: i.cpu_time for i in infos}
            prev_t = now
            rnd = {"time": round(time.time(), 3), "interval_s": None if interval is None else round(interval, 3),
                   "domains": doms}
            rounds.append(rnd)
            if not s.opts.json:
                import shutil

                rows = shutil.get_terminal_size().lines if live else None
                s.write(("\x1b[H\x1b[2J" if live else "") + _top_text(s, rnd, p, rows) + ("" if live else "\n"))
                s.stdout.flush()
            n += 1
            if isinstance(iterations, int) and n >= iterations:
                break
            if keys is not None:
                if keys.wait_for_quit(delay):
                    break
            else:
                time.sleep(delay)
    except KeyboardInterrupt:
        if s.opts.json:
            s.result({"iterations": rounds})
        else:
            s.line()
        raise  # exit status 130
    finally:
        if keys is not None:
            keys.restore()
    if s.opts.json:
        s.result({"iterations": rounds})


class _Keys:
    """Single keys from a terminal on stdin (cbreak, no echo) while ``top`` runs: q quits."""

    def __init__(self) -> None:
        import sys

        self.fd: Optional[int] = None
        self.saved: Any = None
        try:
            import termios
            import tty

            if sys.stdin.isatty():
                fd = sys.stdin.fileno()
                self.saved = termios.tcgetattr(fd)
                tty.setcbreak(fd)
                self.fd = fd
        except (ImportError, OSError, ValueError):
            self.fd = None

    def wait_for_quit(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True when q (or Q) was pressed."""
        if self.fd is None:
            time.sleep(seconds)
            return False
        import os
        import select

        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                data = os.read(self.fd, 64)
                if not data or b"q" in data.lower():
                    return True

    def restore(self) -> None:
        if self.fd is not None and self.saved is not None:
            import termios

            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)
            self.fd = None


def _top_text(s: Session, rnd: Dict[str, Any], p: Any, rows: Optional[int] = None) -> str:
    """One round of top; ``rows`` (the terminal's height) bounds it: domains that do not fit
    are counted on a last line instead."""
    states = [d["state"] for d in rnd["domains"]]
    summary = (f"xpsh top - {time.strftime('%H:%M:%S', time.localtime(rnd['time']))}   "
               f"{len(states)} domains: {sum(st in ('running', 'no state') for st in states)} running, "
               f"{states.count('idle')} blocked, {states.count('paused')} paused, {states.count('crashed')} crashed, "
               f"{states.count('dying')} dying, {states.count('shut off')} shutdown\n"
               f"Mem: {p.total_memory_kib}k total, {p.total_memory_kib - p.free_memory_kib}k used, "
               f"{p.free_memory_kib}k free    CPUs: {p.nr_cpus} @ {p.cpu_khz // 1000}MHz\n")
    head = f"{'NAME':>16} {'STATE':>6} {'CPU(sec)':>9} {'CPU(%)':>7} {'MEM(k)':>10} {'MEM(%)':>7} {'MAXMEM(k)':>10} {'VCPUS':>6}\n"
    body = ""
    shown = rnd["domains"]
    if rows is not None:
        room = max(1, rows - (0 if s.opts.quiet else 3) - 1)
        if len(shown) > room:
            shown = shown[: room - 1]
    for d in shown:
        pct = "-" if d["cpu_percent"] is None else f"{d['cpu_percent']:.1f}"
        name = _name_of(d["id"], d["name"])
        body += (f"{name[:16]:>16} {d['state_letters']:>6} {d['cpu_time_ns'] // 1_000_000_000:9d} {pct:>7} "
                 f"{d['memory_kib']:10d} {d['memory_percent']:7.1f} {d['max_memory_kib']:10d} {d['vcpus']:6d}\n")
    hidden = len(rnd["domains"]) - len(shown)
    if hidden:
        body += f"... {hidden} more domain{'s' if hidden != 1 else ''} (a taller terminal, or --sort, shows others)\n"
    return ("" if s.opts.quiet else summary + head) + body
