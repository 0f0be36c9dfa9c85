"""The Prometheus exporter on the real hypervisor, fetched over HTTP inside the dom0,
cross-checked with Xen's own ``xl`` and ``xenstore-read``."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from typing import Dict, Iterator, Tuple

import pytest

from ..exporter_helpers import Samples, by_domid, get, one, parse, start_exporter, stop_exporter
from .conftest import xl_info, xl_list, xl_table


def _loopback_up() -> None:
    """tools/xenvm's dom0 boots with ``lo`` down: bring it up (SIOCGIFFLAGS/SIOCSIFFLAGS,
    no ip(8) needed) so that the HTTP GET to 127.0.0.1 reaches the exporter."""
    import fcntl
    import socket
    import struct

    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sh14x", b"lo", 0)
        flags = struct.unpack("16sh14x", fcntl.ioctl(s, siocgifflags, req))[1]
        if not flags & iff_up:
            fcntl.ioctl(s, siocsifflags, struct.pack("16sh14x", b"lo", flags | iff_up))


@pytest.fixture(scope="module")
def exporter() -> Iterator[int]:
    _loopback_up()
    p, port = start_exporter("xen:///", "--min-interval", "0")
    yield port
    assert stop_exporter(p) == 0
    assert p.stderr is not None
    rest = p.stderr.read()
    assert "Traceback" not in rest and "scrape failed" not in rest, rest


def scrape(port: int) -> Samples:
    code, ctype, body = get(f"http://127.0.0.1:{port}/metrics")
    assert code == 200 and ctype.startswith("text/plain"), (code, ctype)
    s = parse(body)
    assert one(s, "xen_up") == 1
    return s


def test_memory_vcpus_and_names_agree_with_xl_list(exporter: int) -> None:
    s = scrape(exporter)
    rows = {int(r["id"]): r for r in xl_list()}
    mem = by_domid(s, "xen_domain_memory_bytes")
    assert set(mem) == set(rows)
    online = by_domid(s, "xen_domain_vcpus_online")
    names = {int(lab["domid"]): lab["name"] for lab, _v in s["xen_domain_memory_bytes"]}
    for domid, row in rows.items():
        assert int(mem[domid]) // (1 << 20) == int(row["mem"]), (domid, mem[domid], row)
        assert online[domid] == int(row["vcpus"]), (domid, row)
        assert names[domid] == row["name"]
    # every vcpu xl lists, and its domain's vcpu count
    vcpu_rows = xl_table("vcpu-list")
    listed = {(int(r[1]), int(r[2])) for r in vcpu_rows}
    ours = {(int(lab["domid"]), int(lab["vcpu"])) for lab, _v in s["xen_vcpu_cpu_time_seconds_total"]}
    assert ours == listed
    vcpus = by_domid(s, "xen_domain_vcpus")
    for domid in rows:
        assert vcpus[domid] == sum(1 for d, _v in listed if d == domid)


def test_host_memory_cpus_and_version_agree_with_xl_info(exporter: int) -> None:
    s = scrape(exporter)
    info = xl_info()
    assert int(one(s, "xen_host_memory_bytes")) // (1 << 20) == int(info["total_memory"])
    assert abs(int(one(s, "xen_host_memory_free_bytes")) // (1 << 20) - int(info["free_memory"])) <= 64
    assert one(s, "xen_host_cpus") == int(info["nr_cpus"])
    assert len(s["xen_host_cpu_idle_seconds_total"]) == int(info["nr_cpus"])
    (lab, _v), = s["xen_info"]
    assert lab["version"] == f"{info['xen_major']}.{info['xen_minor']}{info['xen_extra']}"
    assert lab["scheduler"] == info["xen_scheduler"]
    assert lab["arch"] == info["machine"]


def test_balloon_targets_are_xenstores(exporter: int, guest: int) -> None:
    exe = shutil.which("xenstore-read")
    assert exe, "xenstore-read is not on PATH in this dom0"
    s = scrape(exporter)
    targets = by_domid(s, "xen_domain_memory_target_bytes")
    assert guest in targets, "guest1 (made by xl) has a memory/target in xenstore"
    for domid in by_domid(s, "xen_domain_memory_bytes"):
        r = subprocess.run([exe, f"/local/domain/{domid}/memory/target"], capture_output=True, text=True, timeout=30)
        if r.returncode == 0:
            assert targets[domid] == int(r.stdout.strip()) * 1024, domid
        else:
            assert domid not in targets, domid


def test_backend_counters_only_where_dom0_has_backends(exporter: int) -> None:
    s = scrape(exporter)
    vifs = [n for n in os.listdir("/sys/class/net") if n.startswith("vif") and "-" not in n]
    assert bool(vifs) == ("xen_domain_network_receive_bytes_total" in s), vifs


def _times(s: Samples) -> Tuple[Dict[int, float], Dict[Tuple[int, int], float], Dict[str, float]]:
    dom = by_domid(s, "xen_domain_cpu_time_seconds_total")
    vcpu = {(int(lab["domid"]), int(lab["vcpu"])): v for lab, v in s["xen_vcpu_cpu_time_seconds_total"]}
    idle = {lab["cpu"]: v for lab, v in s["xen_host_cpu_idle_seconds_total"]}
    return dom, vcpu, idle


def test_cpu_time_is_monotonic_between_two_scrapes(exporter: int) -> None:
    d1, v1, i1 = _times(scrape(exporter))
    time.sleep(1.0)
    d2, v2, i2 = _times(scrape(exporter))
    assert set(d1) == set(d2) and set(v1) == set(v2)
    assert all(d2[k] >= d1[k] for k in d1) and all(v2[k] >= v1[k] for k in v1)
    assert d2[0] > d1[0], "dom0 runs the exporter: its cpu time moves"
    assert all(i2[c] >= i1[c] for c in i1)
    assert sum(i2.values()) > sum(i1.values())


def test_a_scrape_costs_few_hypercalls(exporter: int) -> None:
    s = scrape(exporter)
    s = scrape(exporter)  # the first read also detected the ABI
    n_vcpus = len(s["xen_vcpu_cpu_time_seconds_total"])
    n_domains = len(s["xen_domain_vcpus"])
    calls = one(s, "xen_scrape_hypercalls")
    # the listing, the vcpus in multicall traps of up to 1024, physinfo, getcpuinfo
    assert calls == -(-n_domains // 1024) + -(-n_vcpus // 1024) + 2, (calls, n_domains, n_vcpus)
    assert one(s, "xen_scrape_errors_total") == 0


def _proc(pid: int) -> Dict[str, int]:
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    with open(f"/proc/{pid}/maps") as f:
        maps = sum(1 for _ in f)
    return {"rss_kib": rss, "maps": maps, "fds": len(os.listdir(f"/proc/{pid}/fd"))}


SOAK = os.environ.get("XENPRIVCMD_EXPORTER_SOAK") == "1"
SOAK_WARMUP = 200  # requests before the baseline
SOAK_SECONDS = 90.0  # of requests after the warm-up (~2 minutes of emulated dom0 in all)
SOAK_MIN_REQUESTS, SOAK_MIN_READS = 1000, 250  # fewer says too little: the test fails
# A busy host runs the emulated dom0 at half speed or less (915 requests in 90 s while a 2-core
# host ran other work, 4301 on a quiet one): the run then goes on past SOAK_SECONDS until it has
# the requests and reads above, up to this long.
SOAK_MAX_SECONDS = 240.0


def _raw_get(port: int) -> bytes:
    """GET /metrics with a plain socket (http.client costs the emulated dom0 more than the exporter)."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=60) as c:
        c.sendall(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        chunks = []
        while True:
            chunk = c.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    answer = b"".join(chunks)
    assert answer.startswith(b"HTTP/1.0 200 ") and b"\nxen_up 1.0\n" in answer, answer[:300]
    return answer


@pytest.mark.skipif(not SOAK, reason="the exporter soak runs in one dom0, bookworm's "
                    "(tools/run-tests sets XENPRIVCMD_EXPORTER_SOAK=1 there): ~2 minutes of emulated dom0")
def test_soak_thousands_of_scrapes_leave_rss_mappings_and_fds_flat() -> None:
    """The exporter process under thousands of requests on the real hypervisor, one connection
    each as Prometheus makes them, as fast as this dom0 sends them: with --min-interval 0.1 the
    hypervisor is read afresh for a request every 0.1 s at most (each a new answer: cpu times
    move) and the others get the last answer. After a warm-up its resident memory, mappings and
    fds must stay where they were. A thread per request, each mapping and releasing its own
    hypercall buffer, grew by about 300 bytes a scrape in a Xen 4.17 dom0 (issue 27)."""
    import json

    _loopback_up()
    p, port = start_exporter("xen:///", "--min-interval", "0.1")
    try:
        for _ in range(SOAK_WARMUP):
            _raw_get(port)
        points = [dict(_proc(p.pid), requests=0, reads=0)]
        t0 = time.monotonic()
        n = reads = 0
        last = b""
        while True:
            spent = time.monotonic() - t0
            if spent >= SOAK_MAX_SECONDS or (spent >= SOAK_SECONDS and n >= SOAK_MIN_REQUESTS
                                             and reads >= SOAK_MIN_READS):
                break
            body = _raw_get(port).split(b"\r\n\r\n", 1)[1]
            n += 1
            if body != last:
                reads, last = reads + 1, body
            if n % 100 == 0:
                points.append(dict(_proc(p.pid), requests=n, reads=reads))
        elapsed = time.monotonic() - t0
        end = dict(_proc(p.pid), requests=n, reads=reads)
        points.append(end)
    finally:
        assert stop_exporter(p) == 0
    figures = {"requests": n, "fresh_reads": reads, "seconds": round(elapsed, 1), "points": points}
    suite = os.environ.get("XENVM_SUITE", "local")
    os.makedirs(f"results/{suite}", exist_ok=True)
    with open(f"results/{suite}/exporter-soak.json", "w") as f:
        json.dump(figures, f, indent=1)
    assert n >= SOAK_MIN_REQUESTS and reads >= SOAK_MIN_READS, figures
    base = points[0]
    # The allocator grows in steps of 376 KiB, flat before and after (seen once in two runs, and
    # twice in a third: at 3700 and 5000 requests of 6400, 2 rises in 65 samples); a leak grows
    # all along (~300 bytes a fresh read: a rise of a page or more in most of the samples, taken
    # every 100 requests). So: the run within two such steps, and at most two rises.
    rss = [pt["rss_kib"] for pt in points]
    rises = sum(1 for a, b in zip(rss, rss[1:]) if b > a)
    assert end["rss_kib"] - base["rss_kib"] <= 2 * 512 and rises <= 2, (rises, figures)
    assert end["fds"] == base["fds"], figures
    assert end["maps"] - base["maps"] <= 2, figures
    assert p.stderr is not None
    rest = p.stderr.read()
    assert "Traceback" not in rest and "scrape failed" not in rest, rest
