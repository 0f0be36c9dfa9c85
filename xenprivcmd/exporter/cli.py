"""``xenprivcmd-exporter``: options, the read-only handle, the HTTP server.

    xenprivcmd-exporter [--uri URI] [--listen HOST:PORT] [--min-interval SECONDS]
                        [--xenstore PATH] [--sysfs DIR] [--web.config.file FILE]
                        [--once] [--version]

Bad options, a URI the library cannot open, a web config file that cannot
be used (:mod:`.webconfig`) and an address that cannot be bound give one
``error: ...`` line on stderr and exit status 1.  The HTTP side is
:mod:`.server`.  Once
serving, nothing the hypervisor does stops the exporter: a failed read is
``xen_up 0`` (see :mod:`.metrics`).  SIGTERM and SIGINT stop it (exit 0).
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
import threading
from typing import Any, List, NoReturn, Optional, Sequence, TextIO, Tuple

from .. import __version__
from . import DEFAULT_HOST, DEFAULT_MIN_INTERVAL, DEFAULT_PORT

__all__ = ["main", "parse_listen", "UsageError"]

MAX_MIN_INTERVAL = 86400.0


class UsageError(Exception):
    """A bad option: one ``error:`` line, exit 1."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def parse_listen(value: str) -> Tuple[str, int]:
    """``HOST:PORT``, ``[IPV6]:PORT`` or ``:PORT`` (every address) -> (host, port).

    Port 0 lets the kernel pick a free port (the start-up line on stderr says which).
    """
    if not isinstance(value, str) or ":" not in value:
        raise UsageError(f"--listen {value!r}: expected HOST:PORT (e.g. {DEFAULT_HOST}:{DEFAULT_PORT})")
    if value.startswith("["):
        end = value.find("]")
        if end < 0 or value[end + 1:end + 2] != ":":
            raise UsageError(f"--listen {value!r}: expected [IPV6]:PORT")
        host, port_text = value[1:end], value[end + 2:]
    else:
        host, port_text = value.rsplit(":", 1)
        if ":" in host:
            raise UsageError(f"--listen {value!r}: put an IPv6 address in brackets, [{host}]:{port_text}")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise UsageError(f"--listen {value!r}: the port must be 0..65535 (0: any free port)")
    return host, int(port_text)


def _min_interval(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise UsageError(f"--min-interval {text!r}: not a number of seconds") from None
    if not math.isfinite(v) or not 0 <= v <= MAX_MIN_INTERVAL:
        raise UsageError(f"--min-interval {text!r}: must be 0..{MAX_MIN_INTERVAL:g} seconds")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="xenprivcmd-exporter", description="Prometheus exporter for a Xen host (read-only).")
    p.add_argument("--uri", default="xen:///", help="hypervisor URI: xen:/// (default), sim:///default, ...")
    p.add_argument("--listen", default=f"{DEFAULT_HOST}:{DEFAULT_PORT}", metavar="HOST:PORT",
                   help=f"address to serve /metrics on (default {DEFAULT_HOST}:{DEFAULT_PORT}; ':PORT' is every address)")
    p.add_argument("--min-interval", default=str(DEFAULT_MIN_INTERVAL), metavar="SECONDS",
                   help=f"scrapes closer together than this reuse the last answer (default {DEFAULT_MIN_INTERVAL:g})")
    p.add_argument("--xenstore", metavar="PATH",
                   help="xenstored socket or xenbus device for names and balloon targets "
                        "(default: the local xenstore with xen:///, none otherwise)")
    p.add_argument("--sysfs", metavar="DIR",
                   help="sysfs root for netback/blkback counters (default /sys with xen:///, none otherwise)")
    p.add_argument("--web.config.file", dest="web_config_file", metavar="FILE",
                   help="TLS and basic auth settings in Prometheus exporter-toolkit's format (YAML: "
                        "tls_server_config, basic_auth_users with bcrypt hashes, http_server_config.headers)")
    p.add_argument("--once", action="store_true", help="print one scrape on stdout and exit (1 when xen_up is 0)")
    p.add_argument("--version", action="version", version=f"xenprivcmd-exporter {__version__}")
    return p


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    args = build_parser().parse_args(list(argv))
    args.listen = parse_listen(args.listen)
    args.min_interval = _min_interval(args.min_interval)
    return args


def _fail(err: TextIO, message: str) -> int:
    print(f"error: {message}", file=err, flush=True)
    return 1


def main(argv: Optional[Sequence[str]] = None, stdout: Optional[TextIO] = None,
         stderr: Optional[TextIO] = None) -> int:
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
    except UsageError as exc:
        return _fail(err, f"{exc} (xenprivcmd-exporter --help lists the options)")
    try:
        from .metrics import Exporter
    except ImportError as exc:
        return _fail(err, f"the exporter needs prometheus_client ({exc}): pip install 'xenprivcmd[exporter]'")
    import xenprivcmd

    from .scrape import Scraper
    from .webconfig import Watcher, WebConfigError

    web = None
    if args.web_config_file is not None:  # checked with --once too
        try:  # before the handle: a bad file is a usage error, whatever the hypervisor
            web = Watcher(args.web_config_file, lambda line: _say(err, line))
        except WebConfigError as exc:
            return _fail(err, f"--web.config.file {exc}")

    try:
        handle = xenprivcmd.open(args.uri, read_only=True)
    except (xenprivcmd.XenprivcmdError, ValueError, TypeError, OSError) as exc:
        return _fail(err, f"--uri {args.uri}: {exc}")
    try:
        exporter = Exporter(Scraper(handle, xenstore=args.xenstore, sysfs=args.sysfs), args.min_interval, log=err)
        if args.once:
            out.write(exporter.render().decode())
            out.flush()
            return 0 if exporter.up else 1
        return _serve(exporter, args.listen, err, web)
    finally:
        handle.close()


def _say(err: TextIO, line: str) -> None:
    try:
        print(line, file=err, flush=True)
    except (OSError, ValueError):  # a closed log must not stop the exporter
        pass


def _serve(exporter: Any, listen: Tuple[str, int], err: TextIO, web: Any = None) -> int:
    from .server import Server

    try:
        server = Server(listen, exporter, web=web)
    except (OSError, OverflowError) as exc:
        host, port = listen
        return _fail(err, f"--listen {host}:{port}: cannot listen there: {exc}")
    stop: List[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        stop.append(signum)
        threading.Thread(target=server.shutdown, daemon=True).start()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    host, port = str(server.server_address[0]), server.server_address[1]
    shown = f"[{host}]" if ":" in host else host
    scheme = "https" if server.tls else "http"
    auth = " (basic auth)" if web is not None and web.config.auth is not None else ""
    print(f"xenprivcmd-exporter {__version__}: serving {scheme}://{shown}:{port}/metrics{auth} for "
          f"{exporter.scraper.handle.uri}", file=err, flush=True)
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        server.server_close()
        for s, h in old.items():
            signal.signal(s, h)
    return 0
