"""The exporter serves without growing: the simulator's version of the real-dom0 soak
(tests/realxen/test_exporter.py).

The server runs in this process on 127.0.0.1 and is scraped over HTTP, one
connection a scrape as Prometheus does; after a warm-up, two equal windows
of scrapes must leave Python's live objects, the transport's hypercall
buffers, the process's mappings and its fds where they were, and the traced
heap within a bound.  A thread per request (each mapping and releasing its
own hypercall buffer) grew the traced heap by ~270 bytes a scrape here.
"""

from __future__ import annotations

import gc
import http.client
import io
import os
import threading
import tracemalloc
from typing import Any, Dict, Iterator

import pytest

import xenprivcmd
from xenprivcmd.exporter.metrics import Exporter
from xenprivcmd.exporter.scrape import Scraper
from xenprivcmd.exporter.server import THREADS, Server

WARMUP, WINDOW = 400, 400


@pytest.fixture()
def server() -> Iterator[Server]:
    h = xenprivcmd.open("sim:///default", read_only=True)
    srv = Server(("127.0.0.1", 0), Exporter(Scraper(h), 0, log=io.StringIO()))
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(10)
        h.close()


def _scrape(port: int) -> None:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        c.request("GET", "/metrics")
        r = c.getresponse()
        assert r.status == 200 and b"xen_up 1.0" in r.read()
    finally:
        c.close()


def _figures(srv: Server) -> Dict[str, Any]:
    gc.collect()
    with open("/proc/self/maps", encoding="ascii", errors="replace") as f:
        maps = sum(1 for _ in f)
    st = srv.exporter.scraper.handle.transport.stats()
    return {"objects": len(gc.get_objects()), "traced": tracemalloc.get_traced_memory()[0], "maps": maps,
            "fds": len(os.listdir("/proc/self/fd")), "buffers": st["buffers"], "mapped": st["mapped_bytes"]}


def test_scrapes_leave_nothing_behind(server: Server) -> None:
    port = server.server_address[1]
    for _ in range(WARMUP):
        _scrape(port)
    tracemalloc.start(1)
    try:
        points = [_figures(server)]
        for _ in range(2):
            for _ in range(WINDOW):
                _scrape(port)
            points.append(_figures(server))
    finally:
        tracemalloc.stop()
    base, mid, end = points
    for p in points:  # at most one hypercall buffer per server thread, ever
        assert p["buffers"] <= THREADS and p["buffers"] == base["buffers"], points
        assert p["mapped"] == base["mapped"], points
    assert end["fds"] == base["fds"], points
    assert end["maps"] - base["maps"] <= 2, points  # the allocator may map an arena of its own
    assert end["objects"] - mid["objects"] <= 20, points
    assert end["objects"] - base["objects"] <= 40, points
    # A thread per request left ~270 bytes a scrape (~110 KB a window). What remains is bounded:
    # CPython's type attribute cache keeps the name strings http.server builds per request
    # ('do_GET', ...) until their 4096 entries are all used, ~10 bytes a scrape and falling.
    assert end["traced"] - mid["traced"] <= 64 * WINDOW, points
    assert server.exporter.errors == 0 and server.exporter.reads >= WARMUP + 2 * WINDOW
