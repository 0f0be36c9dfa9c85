"""xpsh top: xentop's view of the domains, its columns, flags and keys.

The columns are xentop's (Xen's tools/xentop), with its widths, its letters for the
state (``dsbcpr``: dying, shutdown, blocked, crashed, paused, running) and its
direction for the network: NETTX(k) is what netback *transmitted*, i.e. what the guest
received (the library's ``rx_bytes``), NETRX(k) what the guest sent.  VBD_RSECT and
VBD_WSECT are blkback's 512-byte sectors.  ``-n``, ``-x``, ``-v`` add xentop's lines per
network, disk and vcpu; ``-r`` repeats the header before each domain.
"""

from __future__ import annotations

import time

from .parse import Args, Opt, UsageError
from .registry import _name_of, command, stream_isatty, vcpu_state

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Tuple

    from .session import Session

__all__ = ["cmd_top", "SORTS", "sample", "render"]


def _state_letters(d: Dict[str, Any]) -> str:
    """xentop's six letters, in its order: dying, shutdown, blocked, crashed, paused, running."""
    f = d["_flags"]
    return "".join(ch if on else "-" for ch, on in (
        ("d", f["dying"]), ("s", f["shutdown"]), ("b", f["blocked"]), ("c", f["crashed"]), ("p", f["paused"]),
        ("r", f["running"])))


def _net_kib(d: Dict[str, Any], key: str) -> int:
    return int(sum(n[key] for n in d["net"]) // 1024)


def _vbd_total(d: Dict[str, Any], key: str) -> int:
    return int(sum(b[key] for b in d["block"]))


#: --sort keys and the s key's cycle, in xentop's column order (then the domid):
#: key -> (sort key of a row, words for help).  Numbers sort highest first, as xentop's.
SORTS: Dict[str, Tuple[Callable[[Dict[str, Any]], Any], str]] = {
    "name": (lambda d: _name_of(d["id"], d["name"]).lower(), "NAME"),
    "state": (lambda d: tuple(ch == "-" for ch in _state_letters(d)), "STATE"),
    "cpu_time": (lambda d: -d["cpu_time_ns"], "CPU(sec)"),
    "cpu": (lambda d: -(d["cpu_percent"] or 0.0), "CPU(%)"),
    "mem": (lambda d: -d["memory_kib"], "MEM(k)"),
    "maxmem": (lambda d: -d["max_memory_kib"], "MAXMEM(k)"),
    "vcpus": (lambda d: -d["vcpus"], "VCPUS"),
    "nets": (lambda d: -len(d["net"]), "NETS"),
    "nettx": (lambda d: -_net_kib(d, "rx_bytes"), "NETTX(k)"),
    "netrx": (lambda d: -_net_kib(d, "tx_bytes"), "NETRX(k)"),
    "vbds": (lambda d: -len(d["block"]), "VBDS"),
    "vbd_oo": (lambda d: -_vbd_total(d, "oo_req"), "VBD_OO"),
    "vbd_rd": (lambda d: -_vbd_total(d, "rd_req"), "VBD_RD"),
    "vbd_wr": (lambda d: -_vbd_total(d, "wr_req"), "VBD_WR"),
    "vbd_rsect": (lambda d: -_vbd_total(d, "rd_sect"), "VBD_RSECT"),
    "vbd_wsect": (lambda d: -_vbd_total(d, "wr_sect"), "VBD_WSECT"),
    "ssid": (lambda d: d["ssidref"], "SSID"),
    "id": (lambda d: d["id"], "the domid"),
}


@command("top", "monitor", "live per-domain CPU, memory, network and disk usage (xentop)",
         "xentop's view: one row a domain with xentop's columns (NAME STATE CPU(sec) CPU(%) MEM(k) MEM(%)"
         " MAXMEM(k) MAXMEM(%) VCPUS NETS NETTX(k) NETRX(k) VBDS VBD_OO VBD_RD VBD_WR VBD_RSECT VBD_WSECT"
         " SSID), CPU% computed from cpu_time deltas (can exceed 100 with several vcpus; 0.0 on the first"
         " round).  NETTX(k) is what netback sent to the guest, as xentop counts it.  On a terminal it redraws"
         " every -d seconds, fits the window (rows that do not fit are counted on the last line, lines are cut"
         " at its width) and takes xentop's keys: q quit, n networks, b vbds, v vcpus, r repeat header,"
         " s next sort column, d delay, arrows scroll.  -b: batch (xentop's: no summary, no screen codes);"
         " -i N: N rounds; without a terminal one round.  --sort: a column (name, state, cpu_time, cpu, mem,"
         " maxmem, vcpus, nets, nettx, netrx, vbds, vbd_oo, vbd_rd, vbd_wr, vbd_rsect, vbd_wsect, ssid) or"
         " id (default).",
         opts=[Opt("iterations", "number of rounds", value="int", short="i"),
               Opt("delay", "seconds between rounds (default 3)", value="float", short="d"),
               Opt("interval", "the same as --delay", value="float"),
               Opt("sort", "row order: a column's key, or id (default)", value="str"),
               Opt("batch", "batch mode: no summary, no screen codes, no keys (xentop -b)", short="b"),
               Opt("networks", "a line per network interface (xentop -n)", short="n"),
               Opt("vbds", "a line per virtual disk (xentop -x)", short="x"),
               Opt("vcpus", "a line of vcpu times per domain (xentop -v)", short="v"),
               Opt("repeat-header", "the header before each domain (xentop -r)", short="r"),
               Opt("full-name", "names not cut to 10 characters (xentop -f)", short="f")])
def cmd_top(s: Session, a: Args) -> None:
    delay = float(a.get("delay", a.get("interval", 3.0)))  # type: ignore[arg-type]
    sort = str(a.get("sort", "id"))
    if sort not in SORTS:
        raise UsageError(f"top: --sort {sort!r}: one of {', '.join(SORTS)}")
    iterations = a.get("iterations")
    if isinstance(iterations, int) and iterations < 1:
        raise UsageError("top: --iterations must be at least 1")
    batch = bool(a.get("batch"))
    live = not batch and not s.opts.json and stream_isatty(s.stdout)
    if iterations is None and not live and not batch:
        iterations = 1
    view = {"networks": bool(a.get("networks")), "vbds": bool(a.get("vbds")), "vcpus": bool(a.get("vcpus")),
            "repeat": bool(a.get("repeat-header")), "full": bool(a.get("full-name")), "sort": sort, "first": 0,
            "delay": delay}
    h = s.handle
    p = h.physinfo()
    version = h.version().release if not batch else ""
    prev: Dict[int, int] = {}
    prev_t: Optional[float] = None
    rounds: List[Dict[str, Any]] = []
    n = 0
    keys = _Keys() if live else None
    try:
        while True:
            now = time.monotonic()
            rnd = sample(h, prev, None if prev_t is None else now - prev_t, p, want_vcpus=bool(view["vcpus"]))
            prev = {d["id"]: d["cpu_time_ns"] for d in rnd["domains"]}
            prev_t = now
            rnd["domains"].sort(key=SORTS[str(view["sort"])][0])  # type: ignore[arg-type,no-untyped-call]
            rounds.append(rnd)
            if not s.opts.json:
                import shutil

                size = shutil.get_terminal_size() if live else None
                text = render(rnd, p, view, summary=None if batch else version, quiet=s.opts.quiet,
                              rows=size.lines if size else None, cols=size.columns if size else None)
                s.write(("\x1b[H\x1b[2J" if live else "") + text)
                s.stdout.flush()
            n += 1
            if isinstance(iterations, int) and n >= iterations:
                break
            if keys is not None:
                if not keys.wait(float(view["delay"]), view):  # type: ignore[arg-type]
                    break
            else:
                time.sleep(float(view["delay"]))  # type: ignore[arg-type]
    except KeyboardInterrupt:
        if s.opts.json:
            s.result({"iterations": [_public(r) for r in rounds]})
        else:
            s.line()
        raise  # exit status 130
    finally:
        if keys is not None:
            keys.restore()
    if s.opts.json:
        s.result({"iterations": [_public(r) for r in rounds]})


def _public(rnd: Dict[str, Any]) -> Dict[str, Any]:
    """A round as the JSON schema has it (no private keys)."""
    out = dict(rnd)
    out["domains"] = [{k: v for k, v in d.items() if not k.startswith("_")} for d in rnd["domains"]]
    return out


def sample(h: Any, prev: Dict[int, int], interval: Optional[float], p: Any, want_vcpus: bool) -> Dict[str, Any]:
    """One round: every domain with its cpu%, memory, and its vifs' and vbds' counters."""
    from ..errors import NotSupported
    from .stats import disk_dict, interface_dict

    infos = h.domains(names=True)
    try:
        nets, disks = h.interface_stats(), h.block_stats()
    except NotSupported:  # no dom0 sysfs behind the handle (a replay): no devices
        nets, disks = [], []
    vcpus: Dict[int, List[Any]] = {}
    if want_vcpus and infos:
        from ..errors import NoSuchDomain

        try:
            for v in h.vcpu_list():
                vcpus.setdefault(v.domid, []).append(v)
        except NoSuchDomain:
            pass
    total_kib = p.total_memory_kib or 1
    doms = []
    for i in infos:
        pct: Optional[float] = None
        if interval and i.domid in prev:
            pct = round(max(0, i.cpu_time - prev[i.domid]) / (interval * 1e9) * 100, 1)
        crashed = i.shutdown_code == 3
        d: Dict[str, Any] = {
            "id": i.domid, "name": i.name, "state": i.state, "state_letters": i.state_letters,
            "cpu_time_ns": i.cpu_time, "cpu_percent": pct,
            "memory_kib": i.memory_kib, "memory_percent": round(i.memory_kib * 100 / total_kib, 1),
            "max_memory_kib": i.max_memory_kib, "max_memory_percent": round(i.max_memory_kib * 100 / total_kib, 1),
            "vcpus": i.vcpus, "online_vcpus": i.nr_online_vcpus, "ssidref": i.ssidref,
            "net": [interface_dict(x) for x in nets if x.domid == i.domid],
            "block": [disk_dict(x) for x in disks if x.domid == i.domid],
            "_flags": {"dying": i.dying, "shutdown": i.shutdown, "blocked": i.blocked, "crashed": crashed,
                       "paused": i.paused, "running": i.running},
        }
        if want_vcpus:
            d["vcpu_list"] = [{"vcpu": v.vcpu, "state": vcpu_state(v), "cpu_time_ns": v.cpu_time}
                              for v in vcpus.get(i.domid, [])]
        doms.append(d)
    return {"time": round(time.time(), 3), "interval_s": None if interval is None else round(interval, 3),
            "domains": doms}


# -- xentop's text ---------------------------------------------------------------------------------

#: (header, default width) in xentop's order
_FIELDS = (("NAME", 10), ("STATE", 6), ("CPU(sec)", 10), ("CPU(%)", 6), ("MEM(k)", 10), ("MEM(%)", 6),
           ("MAXMEM(k)", 10), ("MAXMEM(%)", 9), ("VCPUS", 5), ("NETS", 4), ("NETTX(k)", 8), ("NETRX(k)", 8),
           ("VBDS", 4), ("VBD_OO", 8), ("VBD_RD", 8), ("VBD_WR", 8), ("VBD_RSECT", 10), ("VBD_WSECT", 10),
           ("SSID", 4))
_GROWS = ("NETTX(k)", "NETRX(k)", "VBD_RD", "VBD_WR", "VBD_RSECT", "VBD_WSECT")


def _values(d: Dict[str, Any], full: bool) -> Dict[str, str]:
    name = _name_of(d["id"], d["name"])
    pct = d["cpu_percent"] or 0.0
    return {
        "NAME": name if full else name[:10], "STATE": _state_letters(d),
        "CPU(sec)": str(d["cpu_time_ns"] // 1_000_000_000), "CPU(%)": f"{pct:.1f}",
        "MEM(k)": str(d["memory_kib"]), "MEM(%)": f"{d['memory_percent']:.1f}",
        "MAXMEM(k)": str(d["max_memory_kib"]), "MAXMEM(%)": f"{d['max_memory_percent']:.1f}",
        "VCPUS": str(d["vcpus"]), "NETS": str(len(d["net"])),
        "NETTX(k)": str(_net_kib(d, "rx_bytes")), "NETRX(k)": str(_net_kib(d, "tx_bytes")),
        "VBDS": str(len(d["block"])), "VBD_OO": str(_vbd_total(d, "oo_req")),
        "VBD_RD": str(_vbd_total(d, "rd_req")), "VBD_WR": str(_vbd_total(d, "wr_req")),
        "VBD_RSECT": str(_vbd_total(d, "rd_sect")), "VBD_WSECT": str(_vbd_total(d, "wr_sect")),
        "SSID": str(d["ssidref"]),
    }


def _widths(rows: List[Dict[str, str]], full: bool) -> Dict[str, int]:
    """xentop's widths: the defaults, grown for the counters (and, with -f, the names) that need it."""
    w = dict(_FIELDS)
    for r in rows:
        for k in _GROWS + (("NAME",) if full else ()):
            w[k] = max(w[k], len(r[k]))
    return w


def _summary(rnd: Dict[str, Any], p: Any, version: str) -> str:
    doms = rnd["domains"]
    counts = dict.fromkeys(("running", "blocked", "paused", "shutdown", "crashed", "dying"), 0)
    for d in doms:  # xentop counts each domain once, in this order
        f = d["_flags"]
        for k in ("running", "blocked", "paused", "shutdown", "crashed", "dying"):
            if f[k]:
                counts[k] += 1
                break
    used = p.total_memory_kib - p.free_memory_kib
    return (f"xpsh top - {time.strftime('%H:%M:%S', time.localtime(rnd['time']))}   Xen {version}\n"
            f"{len(doms)} domains: {counts['running']} running, {counts['blocked']} blocked, {counts['paused']} paused,"
            f" {counts['crashed']} crashed, {counts['dying']} dying, {counts['shutdown']} shutdown \n"
            f"Mem: {p.total_memory_kib}k total, {used}k used, {p.free_memory_kib}k free    "
            f"CPUs: {p.nr_cpus} @ {p.cpu_khz // 1000}MHz\n")


def _vcpu_line(d: Dict[str, Any]) -> str:
    out = "VCPUs(sec): "
    for n, v in enumerate(d.get("vcpu_list", [])):
        if v["state"] == "offline":
            continue
        if n and n % 5 == 0:
            out += "\n        "
        out += f" {v['vcpu']:2d}: {v['cpu_time_ns'] // 1_000_000_000:10d}s"
    return out + "\n"


def _net_lines(d: Dict[str, Any]) -> str:
    """xentop's per-network lines, in its direction: RX what netback received (the guest sent)."""
    return "".join(f"Net{n} RX: {x['tx_bytes']:8d}bytes {x['tx_packets']:8d}pkts {x['tx_errs']:8d}err "
                   f"{x['tx_drop']:8d}drop  TX: {x['rx_bytes']:8d}bytes {x['rx_packets']:8d}pkts "
                   f"{x['rx_errs']:8d}err {x['rx_drop']:8d}drop\n" for n, x in enumerate(d["net"]))


def _vbd_lines(d: Dict[str, Any]) -> str:
    return "".join(f"VBD BlkBack {b['devid']:4d} [{b['devid'] >> 8 & 0xFF:2x}:{b['devid'] & 0xFF:2x}]  "
                   f"OO: {b['oo_req']:8d}   RD: {b['rd_req']:8d}   WR: {b['wr_req']:8d}   "
                   f"RSECT: {b['rd_sect']:10d}   WSECT: {b['wr_sect']:10d}\n" for b in d["block"])


def render(rnd: Dict[str, Any], p: Any, view: Dict[str, Any], summary: Optional[str], quiet: bool = False,
           rows: Optional[int] = None, cols: Optional[int] = None) -> str:
    """One round as xentop prints it.  ``summary``: the Xen version for the three summary lines
    (None: batch, none).  ``rows``/``cols``: the terminal's size; what does not fit is counted on
    the last line and lines are cut at its width."""
    full = bool(view["full"])
    view["first"] = min(int(view["first"]), max(0, len(rnd["domains"]) - 1))
    doms = rnd["domains"][int(view["first"]):]
    values = [_values(d, full) for d in doms]
    w = _widths(values, full)
    header = " ".join(f"{h:>{w[h]}}" for h, _ in _FIELDS) + "\n"
    lines: List[str] = []
    if summary is not None and not quiet:
        lines += _summary(rnd, p, summary).splitlines(True)
    for n, (d, v) in enumerate(zip(doms, values)):
        block: List[str] = []
        if not quiet and (n == 0 or view["repeat"]):
            block.append(header)
        block.append(" ".join(f"{v[h]:>{w[h]}}" for h, _ in _FIELDS) + "\n")
        if view["vcpus"]:
            block += _vcpu_line(d).splitlines(True)
        if view["networks"]:
            block += _net_lines(d).splitlines(True)
        if view["vbds"]:
            block += _vbd_lines(d).splitlines(True)
        if rows is not None and len(lines) + len(block) > rows - 2 and n + 1 < len(doms):
            hidden = len(doms) - n
            lines.append(f"... {hidden} more domain{'s' if hidden != 1 else ''} (a taller terminal, the arrow keys"
                         " or --sort show others)\n")
            break
        lines += block
    if rows is not None:
        lines.append(_bottom(view))
    if cols is not None:
        lines = [ln[:cols].rstrip("\n") + ("\n" if ln.endswith("\n") else "") if len(ln.rstrip("\n")) > cols else ln
                 for ln in lines]
    return "".join(lines)


def _bottom(view: Dict[str, Any]) -> str:
    """xentop's key line (without its highlighting)."""
    if view.get("prompt") is not None:
        return f"  Delay(sec): {view['prompt']}"
    return ("  Delay  Networks  vBds  VCPUs  Repeat header  Sort order"
            f" ({SORTS[str(view['sort'])][1]})  Quit")


class _Keys:
    """xentop's keys from a terminal on stdin (cbreak, no echo) while ``top`` runs."""

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

    def wait(self, seconds: float, view: Dict[str, Any]) -> bool:
        """Up to ``seconds``, acting on keys; False when the user quits.  A key that changes the
        view ends the wait at once (the caller redraws), as in xentop."""
        if self.fd is None:
            time.sleep(seconds)
            return True
        import os
        import select

        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            ready, _, _ = select.select([self.fd], [], [], left)
            if not ready:
                continue
            data = os.read(self.fd, 64)
            if not data:
                return False
            verdict = handle_keys(data, view)
            if verdict is not None:
                return verdict

    def restore(self) -> None:
        if self.fd is not None and self.saved is not None:
            import termios

            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)
            self.fd = None


_TOGGLES = {b"n": "networks", b"b": "vbds", b"v": "vcpus", b"r": "repeat"}


def handle_keys(data: bytes, view: Dict[str, Any]) -> Optional[bool]:
    """Act on typed keys: False to quit, True to redraw now, None to keep waiting."""
    redraw = None
    i = 0
    while i < len(data):
        if view.get("prompt") is not None:  # typing a delay, as xentop's prompt
            ch = data[i:i + 1]
            i += 1
            if ch in (b"\r", b"\n"):
                try:
                    value = float(view["prompt"])
                    if value > 0:
                        view["delay"] = value
                except ValueError:
                    pass
                view["prompt"] = None
            elif ch == b"\x1b":
                view["prompt"] = None
            elif ch in (b"\x7f", b"\x08"):
                view["prompt"] = view["prompt"][:-1]
            elif ch.isascii() and ch.decode() in "0123456789.":
                view["prompt"] += ch.decode()
            redraw = True
            continue
        if data[i:i + 3] in (b"\x1b[A", b"\x1bOA"):
            view["first"] = max(0, int(view["first"]) - 1)
            i += 3
            redraw = True
            continue
        if data[i:i + 3] in (b"\x1b[B", b"\x1bOB"):
            view["first"] = int(view["first"]) + 1
            i += 3
            redraw = True
            continue
        ch = data[i:i + 1].lower()
        i += 1
        if ch in (b"q", b"\x1b"):
            return False
        if ch in _TOGGLES:
            view[_TOGGLES[ch]] = not view[_TOGGLES[ch]]
        elif ch == b"s":
            order = list(SORTS)
            view["sort"] = order[(order.index(str(view["sort"])) + 1) % len(order)]
        elif ch == b"d":
            view["prompt"] = ""
        elif ch != b"\x0c":  # Ctrl-L repaints; other keys are ignored
            continue
        redraw = True
    return redraw
