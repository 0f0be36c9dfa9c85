"""The exporter's answers (issue 26): gzip when the client asks, HEAD, prometheus_client's
``name[]`` selection, and the vif error/drop and blkback flush/discard counters.

Each is checked against an independent reference: Python's gzip for the encoding,
prometheus_client's own restricted registry for ``name[]``, the simulated dom0's sysfs
files for the counters.
"""

from __future__ import annotations

import gzip
import http.client
import urllib.parse
from typing import Dict, Iterator, List, Optional, Tuple

import pytest

import xenprivcmd
from xenprivcmd.exporter.metrics import Exporter
from xenprivcmd.exporter.scrape import Scraper

from .exporter_helpers import by_domid, parse, start_exporter, stop_exporter


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    # a long min-interval: every request within the module sees the same read
    p, port = start_exporter("sim:///default", "--min-interval", "600")
    yield port
    assert stop_exporter(p) == 0
    assert p.stderr is not None and "Traceback" not in p.stderr.read()


def request(port: int, method: str = "GET", path: str = "/metrics",
            headers: Optional[Dict[str, str]] = None) -> Tuple[int, Dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def test_gzip_when_the_client_accepts_it(port: int) -> None:
    code, plain_h, plain = request(port)
    assert code == 200 and "content-encoding" not in plain_h and plain.startswith(b"# HELP ")
    for accept in ("gzip", "deflate, gzip;q=1.0, *;q=0.5", "x-gzip", "GZIP"):
        code, h, body = request(port, headers={"Accept-Encoding": accept})
        assert code == 200 and h["content-encoding"] == "gzip" and h["vary"] == "Accept-Encoding", accept
        assert int(h["content-length"]) == len(body) < len(plain) // 3
        assert gzip.decompress(body) == plain
    for refused in ("gzip;q=0", "identity", "deflate", "gzip;q=0.0"):
        code, h, body = request(port, headers={"Accept-Encoding": refused})
        assert "content-encoding" not in h and body == plain, refused


def test_head_has_gets_headers_and_no_body(port: int) -> None:
    for path, headers in (("/metrics", {}), ("/metrics", {"Accept-Encoding": "gzip"}), ("/", {}),
                          ("/nothing", {})):
        gcode, gh, gbody = request(port, "GET", path, headers)
        hcode, hh, hbody = request(port, "HEAD", path, headers)
        assert hcode == gcode != 501 and hbody == b"", (path, hcode)
        assert {k: v for k, v in hh.items() if k != "date"} == {k: v for k, v in gh.items() if k != "date"}, path
        assert int(hh["content-length"]) == len(gbody)


def _names(body: bytes) -> List[str]:
    return sorted(parse(body))


def test_name_selection_is_prometheus_clients(port: int) -> None:
    from prometheus_client import generate_latest

    want = ["xen_up", "xen_domain_cpu_time_seconds_total", "xen_domain_block_read_requests_total",
            "xen_domain_cpu_time_seconds", "nonexistent"]
    query = urllib.parse.urlencode([("name[]", n) for n in want])
    code, h, body = request(port, path=f"/metrics?{query}")
    assert code == 200
    # the families prometheus_client's restricted registry gives for the same names, on the same host
    from prometheus_client import CollectorRegistry

    with xenprivcmd.open("sim:///default") as sim:
        ex = Exporter(Scraper(sim), min_interval=0)
        registry = CollectorRegistry(auto_describe=False, support_collectors_without_names=True)
        registry.register(ex)  # type: ignore[arg-type]
        theirs = generate_latest(registry.restricted_registry(want))
    assert _names(body) == _names(theirs) == ["xen_domain_block_read_requests_total",
                                              "xen_domain_cpu_time_seconds_total", "xen_up"]
    assert [ln for ln in body.decode().splitlines() if ln.startswith("# TYPE")] == \
        [ln for ln in theirs.decode().splitlines() if ln.startswith("# TYPE")]
    code, h, gz = request(port, path=f"/metrics?{query}", headers={"Accept-Encoding": "gzip"})
    assert h["content-encoding"] == "gzip" and gzip.decompress(gz) == body
    assert request(port, path="/metrics?name[]=nonexistent")[2] == b""
    assert request(port, path="/metrics?other=1")[2] == request(port)[2]


def test_vif_errors_drops_and_blkback_flushes_discards(tmp_path) -> None:
    with xenprivcmd.open("sim:///default") as sim:
        sim.pause("web1")  # its counters hold still while read
        s = parse(Exporter(Scraper(sim), min_interval=0).render())
        fs = sim.transport.sysfs()
        for metric, path in (("receive_drop", "tx_dropped"), ("receive_errs", "tx_errors"),
                             ("transmit_drop", "rx_dropped"), ("transmit_errs", "rx_errors"),
                             ("receive_bytes", "tx_bytes"), ("transmit_bytes", "rx_bytes")):
            got = by_domid(s, f"xen_domain_network_{metric}_total")
            assert got[1] == int(fs.read(f"class/net/vif1.0/statistics/{path}")), metric
        assert by_domid(s, "xen_domain_network_receive_drop_total")[1] > 0  # the simulated vif drops a few
        for metric, path in (("flush_requests", "f_req"), ("discard_requests", "ds_req")):
            got = {(int(lab["domid"]), lab["device"]): v for lab, v in s[f"xen_domain_block_{metric}_total"]}
            assert got[(1, "51712")] == int(fs.read(f"bus/xen-backend/devices/vbd-1-51712/statistics/{path}"))
            assert (2, "51728") in got and got[(1, "51712")] > 0
