"""The exporter's HTTP side: a bounded pool of threads, TLS and basic auth.

A service that runs for months must not grow with the requests it serves:

* connections are served by ``threads`` long-lived threads (default
  :data:`THREADS`), not a thread per request: each keeps its hypercall
  buffer for its whole life, so nothing is mapped or unmapped per scrape,
  and a burst of clients waits in a bounded queue (beyond it a connection
  is closed unanswered) instead of starting threads;
* every connection has a deadline for each read and write
  (:data:`IO_TIMEOUT`): a client that stops talking frees its thread;
* answers are HTTP/1.0 (one request per connection), so no idle
  keep-alive connection holds a thread.

With a :class:`~.webconfig.Watcher` (``--web.config.file``) each connection
first gets the file's current settings: the TLS handshake (a failed one,
plain HTTP on a TLS port included, closes the connection unanswered), then
basic auth on every request (401 with ``WWW-Authenticate`` without valid
credentials), and the file's extra headers on every answer.

:class:`Handler` keeps one path for every request: :meth:`Handler.answer`
checks credentials and calls :meth:`Handler.route` (path and query ->
:class:`Response`), :meth:`Handler.send` writes it.  GET and HEAD (the same
headers, no body) go that way; ``/metrics`` is gzip-compressed when the client
accepts it (README warns of 32 MB answers on big hosts) and takes
prometheus_client's ``name[]`` parameter to select families.
"""

from __future__ import annotations

import gzip
import queue
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, List, NamedTuple, Optional, Tuple
from urllib.parse import parse_qs

from .. import __version__
from .webconfig import Watcher, WebConfig

__all__ = ["Server", "Handler", "Response", "THREADS", "BACKLOG", "IO_TIMEOUT", "CONTENT_TYPE"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Threads serving connections (a Prometheus pair and a curl at once, and a spare).
THREADS = 4
#: Connections accepted but waiting for a thread; beyond that they are closed unanswered.
BACKLOG = 32
#: Seconds a connection may take for a TLS handshake, a request or writing an answer.
IO_TIMEOUT = 30.0
_PLAIN = WebConfig("", None, None, None, ())
_LANDING = (b"<html><head><title>xenprivcmd exporter</title></head><body>"
            b"<h1>xenprivcmd exporter</h1><p><a href=\"/metrics\">/metrics</a></p></body></html>\n")
_TEXT = "text/plain; charset=utf-8"


class Response(NamedTuple):
    code: int
    content_type: str
    body: bytes
    headers: Tuple[Tuple[str, str], ...] = ()


UNAUTHORIZED = Response(401, _TEXT, b"Unauthorized\n",
                        (("WWW-Authenticate", 'Basic realm="xenprivcmd-exporter", charset="UTF-8"'),))


class Handler(BaseHTTPRequestHandler):
    """One connection's request (HTTP/1.0)."""

    server: "Server"
    server_version = f"xenprivcmd-exporter/{__version__}"
    timeout = IO_TIMEOUT

    def __init__(self, request: Any, client_address: Any, server: "Server", config: WebConfig) -> None:
        self.config = config
        super().__init__(request, client_address, server)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send(self.answer())

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's name
        """The GET answer's status and headers (its Content-Length too), without the body."""
        self.send(self.answer(), body=False)

    def answer(self) -> Response:
        """Credentials first (when the web config has users), then :meth:`route`."""
        auth = self.config.auth
        if auth is not None and auth.check(self.headers.get("Authorization")) is None:
            return UNAUTHORIZED
        path, _, query = self.path.partition("?")
        return self.route(path, query)

    def route(self, path: str, query: str) -> Response:
        """The answer to ``GET path?query``: ``/metrics`` (``name[]=`` selects families by
        their samples' names, as prometheus_client does; gzip-compressed when the client's
        ``Accept-Encoding`` takes gzip), the landing page, or 404."""
        if path == "/metrics":
            exporter = self.server.exporter
            names = parse_qs(query).get("name[]", [])
            if self.gzip_accepted():
                body = gzip.compress(exporter.render(names), mtime=0) if names else exporter.render_gzip()
                return Response(200, CONTENT_TYPE, body, (("Content-Encoding", "gzip"), ("Vary", "Accept-Encoding")))
            return Response(200, CONTENT_TYPE, exporter.render(names), (("Vary", "Accept-Encoding"),))
        if path == "/":
            return Response(200, "text/html; charset=utf-8", _LANDING)
        return Response(404, _TEXT, b"not found: try /metrics\n")

    def gzip_accepted(self) -> bool:
        """Whether the request's ``Accept-Encoding`` takes gzip (``gzip``, ``x-gzip`` or ``*``,
        with no ``q=0``)."""
        for item in (self.headers.get("Accept-Encoding") or "").split(","):
            coding, _, params = item.partition(";")
            if coding.strip().lower() not in ("gzip", "x-gzip", "*"):
                continue
            q = params.strip().lower()
            if q.startswith("q="):
                try:
                    return float(q[2:]) > 0
                except ValueError:
                    return False
            return True
        return False

    def send(self, r: Response, body: bool = True) -> None:
        """Status, headers (the answer's, then the web config's), and the body unless ``body`` is false."""
        self.send_response(r.code)
        self.send_header("Content-Type", r.content_type)
        self.send_header("Content-Length", str(len(r.body)))
        for k, v in r.headers + self.config.headers:
            self.send_header(k, v)
        self.end_headers()
        if body:
            self.wfile.write(r.body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        pass  # no access log: a scrape every few seconds would fill it


class Server(HTTPServer):
    """``/metrics`` from ``exporter`` on ``address``, served by ``threads`` threads.

    ``web``: the ``--web.config.file`` settings (``None``: plain HTTP, no
    users).  :meth:`serve_forever` accepts; :meth:`shutdown` (from another
    thread) stops it; :meth:`server_close` closes the socket and ends the
    threads.
    """

    request_queue_size = 64

    def __init__(self, address: Tuple[str, int], exporter: Any, threads: int = THREADS,
                 web: Optional[Watcher] = None) -> None:
        if threads < 1:
            raise ValueError(f"threads must be at least 1, not {threads}")
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.exporter = exporter
        self.web = web
        self._waiting: "queue.Queue[Optional[Tuple[socket.socket, Any]]]" = queue.Queue(BACKLOG)
        self._threads: List[threading.Thread] = []  # before bind: a failed bind calls server_close
        super().__init__(address, Handler)  # type: ignore[arg-type]
        for i in range(threads):
            t = threading.Thread(target=self._work, name=f"xenprivcmd-exporter-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    @property
    def tls(self) -> bool:
        return self.web is not None and self.web.config.tls is not None

    def process_request(self, request: Any, client_address: Any) -> None:
        try:
            self._waiting.put_nowait((request, client_address))
        except queue.Full:  # every thread busy and the queue full: no answer rather than a new thread
            self.shutdown_request(request)

    def _work(self) -> None:
        while True:
            item = self._waiting.get()
            if item is None:
                return
            sock, address = item
            try:
                self._serve(sock, address)
            except Exception:  # noqa: BLE001, S110 - one connection's failure never ends a thread
                pass
            finally:
                self.shutdown_request(sock)

    def _serve(self, sock: socket.socket, address: Any) -> None:
        config = self.web.current() if self.web is not None else _PLAIN
        sock.settimeout(IO_TIMEOUT)
        if config.context is not None:
            try:
                tls = config.context.wrap_socket(sock, server_side=True)
            except (ssl.SSLError, OSError):  # no handshake (plain HTTP, a wrong certificate): no answer
                return
            try:
                if config.tls is not None and config.tls.client_allowed_sans and \
                        not _allowed(tls.getpeercert(), config.tls.client_allowed_sans):
                    return
                Handler(tls, address, self, config)
            finally:
                tls.close()
        else:
            Handler(sock, address, self, config)

    def server_close(self) -> None:
        super().server_close()
        for _t in self._threads:
            self._waiting.put(None)
        for t in self._threads:
            t.join(timeout=IO_TIMEOUT + 5)
        self._threads = []


def _allowed(cert: Any, sans: Tuple[str, ...]) -> bool:
    """Whether the verified client certificate has one of ``sans`` among its subject alternative names."""
    names = {value for _kind, value in (cert or {}).get("subjectAltName", ())}
    return any(s in names for s in sans)
