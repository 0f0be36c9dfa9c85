"""The Prometheus exporter (xenprivcmd.exporter) on the simulator.

The exposition text is read back with prometheus_client's own parser and
compared with the simulated host's state (``transport.host``), not with the
library's decoding of it.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import pytest

import xenprivcmd
from xenprivcmd import iostats
from xenprivcmd.exporter.cli import parse_listen
from xenprivcmd.exporter.metrics import STATES, Exporter
from xenprivcmd.exporter.scrape import Scraper
from xenprivcmd.store import connection as xsmod
from xenprivcmd.types import BlockStats, InterfaceStats

from .exporter_helpers import ROOT, by_domid, env, get, one, parse, start_exporter, stop_exporter
from .fakexenstored import FakeXenstored


@pytest.fixture
def sim() -> Iterator[xenprivcmd.Handle]:
    with xenprivcmd.open("sim:///default", read_only=True) as h:
        yield h


@pytest.fixture
def no_real_xenstore(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("XENSTORED_PATH", raising=False)
    monkeypatch.setattr(xsmod, "SOCKET_PATHS", (str(tmp_path / "no-socket"),))
    monkeypatch.setattr(xsmod, "DEVICE_PATHS", (str(tmp_path / "no-xenbus"),))


def test_import_xenprivcmd_loads_neither_the_exporter_nor_prometheus_client() -> None:
    code = ("import sys, xenprivcmd\n"
            "h = xenprivcmd.open('sim:///default'); h.domains(names=True); h.close()\n"
            "bad = [m for m in sys.modules if m.startswith(('prometheus_client', 'xenprivcmd.exporter'))]\n"
            "assert not bad, bad\nprint('clean')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "clean", r.stderr


def test_every_domain_series_agrees_with_the_simulated_host(sim: xenprivcmd.Handle) -> None:
    ex = Exporter(Scraper(sim), min_interval=0)
    s = parse(ex.render())
    host = sim.transport.host
    doms = host.domains
    assert set(by_domid(s, "xen_domain_memory_bytes")) == set(doms)
    for domid, d in doms.items():
        assert by_domid(s, "xen_domain_memory_bytes")[domid] == d.tot_pages * 4096
        assert by_domid(s, "xen_domain_memory_max_bytes")[domid] == d.max_pages * 4096
        assert by_domid(s, "xen_domain_vcpus")[domid] == len(d.vcpus)
        assert by_domid(s, "xen_domain_vcpus_online")[domid] == sum(v.online for v in d.vcpus)
    names = {int(lab["domid"]): lab["name"] for lab, _v in s["xen_domain_memory_bytes"]}
    assert names == dict(host.names) == {0: "Domain-0", 1: "web1", 2: "db1", 3: "build1"}
    # one series per state, exactly one of them 1: the simulator's build1 is paused, db1 blocked
    states: Dict[int, Dict[str, float]] = {}
    for lab, v in s["xen_domain_state"]:
        states.setdefault(int(lab["domid"]), {})[lab["state"]] = v
    for domid, st in states.items():
        assert sorted(st) == sorted(STATES) and sum(st.values()) == 1, (domid, st)
    assert states[3]["paused"] == 1 and states[2]["idle"] == 1 and states[1]["running"] == 1
    info = {int(lab["domid"]): lab for lab, v in s["xen_domain_info"] if v == 1}
    assert info[1]["uuid"] == "6f1c2a52-0d5e-4c1b-9f3a-2b7d8e9a0c11" and info[1]["os_type"] == "linux"
    # vcpu series: one per simulated vcpu, labelled with its domain
    vc = {(int(lab["domid"]), int(lab["vcpu"])) for lab, _v in s["xen_vcpu_cpu_time_seconds_total"]}
    assert vc == {(domid, v.vid) for domid, d in doms.items() for v in d.vcpus}
    # a domain's cpu time is its vcpus' (a paused domain's does not move)
    cpu = by_domid(s, "xen_domain_cpu_time_seconds_total")
    b1 = [v for lab, v in s["xen_vcpu_cpu_time_seconds_total"] if lab["domid"] == "3"]
    assert cpu[3] == pytest.approx(sum(b1)) and cpu[3] == sum(v.base for v in doms[3].vcpus) / 1e9
    # host
    assert one(s, "xen_host_cpus") == host.pcpus
    assert one(s, "xen_host_memory_bytes") == host.total_pages * 4096
    assert 0 < one(s, "xen_host_memory_free_bytes") < one(s, "xen_host_memory_bytes")
    assert {lab["cpu"] for lab, _v in s["xen_host_cpu_idle_seconds_total"]} == {str(c) for c in range(host.pcpus)}
    (lab, v), = s["xen_info"]
    assert v == 1 and lab["scheduler"] == host.sched and lab["arch"] == "x86_64"
    assert lab["version"].startswith(f"{host.xen[0]}.{host.xen[1]}") and lab["abi"] == host.release
    assert one(s, "xen_up") == 1 and one(s, "xen_scrape_errors_total") == 0
    assert one(s, "xen_scrape_hypercalls") > 0 and one(s, "xen_scrape_duration_seconds") > 0
    # no xenstore for a simulated host: no balloon targets, no made-up ones
    assert "xen_domain_memory_target_bytes" not in s


def test_cpu_time_is_monotonic_and_hypercalls_are_counted(sim: xenprivcmd.Handle) -> None:
    ex = Exporter(Scraper(sim), min_interval=0)
    a = parse(ex.render())
    c0 = sim.transport.calls
    b = parse(ex.render())
    assert one(b, "xen_scrape_hypercalls") == sim.transport.calls - c0
    ca, cb = by_domid(a, "xen_domain_cpu_time_seconds_total"), by_domid(b, "xen_domain_cpu_time_seconds_total")
    assert all(cb[d] >= ca[d] for d in ca) and cb[0] > ca[0]  # dom0 runs


def _generate_latest(ex: Exporter) -> bytes:
    """prometheus_client's own exposition of one read (the reference for Exporter.render)."""
    from prometheus_client import generate_latest

    return generate_latest(ex.registry)


@pytest.mark.parametrize("uri", ["sim:///default", "sim:///?domains=1000&seed=5", "sim:///?xen=4.4&domains=30"])
def test_the_fast_exposition_is_prometheus_clients_to_the_byte(uri: str, tmp_path: Path) -> None:
    _fake_sysfs(tmp_path)
    with xenprivcmd.open(uri + ("&" if "?" in uri else "?") + "clock=sim&tick=0", read_only=True) as h:
        host = h.transport.host
        host.names[1] = 'we"b\\1\nx'  # label values to escape
        ex = Exporter(Scraper(h, sysfs=str(tmp_path)), min_interval=0)
        ex.render()  # detection: the next reads issue the same hypercalls
        ours = ex.render()
        theirs = _generate_latest(ex)
    ours_lines = ours.decode().splitlines()
    theirs_lines = theirs.decode().splitlines()
    # the same lines but the scrape's own duration, measured anew by each read
    strip = [line for line in ours_lines if not line.startswith("xen_scrape_duration_seconds ")]
    assert strip == [line for line in theirs_lines if not line.startswith("xen_scrape_duration_seconds ")]
    assert len(ours_lines) == len(theirs_lines) and len(strip) == len(ours_lines) - 1
    assert 'name="we\\"b\\\\1\\nx"' in ours.decode()
    assert parse(ours)["xen_domain_network_transmit_bytes_total"][0][0]["name"] == 'we"b\\1\nx'


def test_the_fast_exposition_of_a_failed_read_is_prometheus_clients(sim: xenprivcmd.Handle) -> None:
    ex = Exporter(Scraper(sim), min_interval=0, log=tempfile.TemporaryFile("w+"))
    ex.render()  # detection and xen_info, once
    sim.transport.faults.fail(errno.EIO, op="sysctl", times=None)
    ours = [ln for ln in ex.render().decode().splitlines() if "duration" not in ln]
    theirs = [ln for ln in _generate_latest(ex).decode().splitlines() if "duration" not in ln]
    assert [ln.replace("errors_total 1.0", "errors_total 2.0") for ln in ours] == theirs


def per_trap(h: xenprivcmd.Handle) -> int:
    """getvcpuinfo entries one multicall trap holds (the batch module's limits)."""
    from xenprivcmd.ops import batch
    from xenprivcmd.ops.domains import GETDOMAININFO

    return min(batch.TRAP_MAX_ENTRIES, batch.TRAP_MAX_BYTES // (batch.MULTICALL_ENTRY_SIZE + batch.slot(h.engine, GETDOMAININFO)))


@pytest.mark.parametrize("n", [1, 100, 1000, 3000])
def test_a_scrapes_hypercalls_grow_with_vcpus_per_trap(n: int) -> None:
    with xenprivcmd.open(f"sim:///?domains={n}&seed=3", read_only=True) as h:
        sc = Scraper(h)
        sc.scrape()  # detection and xen_info: once per handle
        t = h.transport
        c0 = t.calls
        h.domains()
        listing = t.calls - c0
        c0 = t.calls
        s = sc.scrape()
        calls = t.calls - c0
        vcpus = sum(len(d.vcpus) for d in t.host.domains.values())
        assert len(s.vcpus) == vcpus and vcpus >= n
        # the listing, one trap per per_trap vcpus, physinfo, getcpuinfo
        assert calls == listing + -(-vcpus // per_trap(h)) + 2, (calls, listing, vcpus)
        if n >= 1000:
            assert calls * 100 < vcpus


def test_a_hypervisor_error_answers_xen_up_0_and_is_counted(sim: xenprivcmd.Handle) -> None:
    log = tempfile.TemporaryFile("w+")
    ex = Exporter(Scraper(sim), min_interval=0, log=log)
    assert one(parse(ex.render()), "xen_up") == 1
    faults = sim.transport.faults
    faults.fail(errno.EFAULT, op="sysctl", times=None)
    for n in (1, 2):
        s = parse(ex.render())
        assert one(s, "xen_up") == 0 and one(s, "xen_scrape_errors_total") == n
        assert "xen_domain_memory_bytes" not in s and "xen_info" not in s
    faults.clear()
    faults.garble("count", op="sysctl", subop="getdomaininfolist")  # a malformed reply: DecodeError
    s = parse(ex.render())
    assert one(s, "xen_up") == 0 and one(s, "xen_scrape_errors_total") == 3
    faults.clear()
    s = parse(ex.render())
    assert one(s, "xen_up") == 1 and one(s, "xen_scrape_errors_total") == 3 and len(s["xen_domain_memory_bytes"]) == 4
    log.seek(0)
    lines = log.read().splitlines()
    assert len(lines) == 3 and all(line.startswith("xenprivcmd-exporter: scrape failed: ") for line in lines)
    assert "EFAULT" in lines[0] or "Bad address" in lines[0], lines[0]
    assert "DecodeError" in lines[2]


def test_a_closed_handle_is_a_down_scrape_not_a_crash(sim: xenprivcmd.Handle) -> None:
    ex = Exporter(Scraper(sim), min_interval=0, log=tempfile.TemporaryFile("w+"))
    sim.close()
    s = parse(ex.render())
    assert one(s, "xen_up") == 0 and one(s, "xen_scrape_errors_total") == 1


def test_min_interval_reuses_the_last_answer(sim: xenprivcmd.Handle) -> None:
    now = [100.0]
    ex = Exporter(Scraper(sim), min_interval=5, clock=lambda: now[0])
    first = ex.render()
    calls = sim.transport.calls
    now[0] += 4.9
    assert ex.render() is first and sim.transport.calls == calls and ex.reads == 1
    now[0] += 0.2
    second = ex.render()
    assert sim.transport.calls > calls and ex.reads == 2 and second != first


def test_the_exporters_handle_refuses_every_change(sim: xenprivcmd.Handle) -> None:
    from xenprivcmd.errors import ReadOnlyError

    assert sim.read_only
    calls = sim.transport.calls
    for op, args in (("pause", (1,)), ("unpause", (3,)), ("destroy", (1,)), ("set_max_mem", (1, 1 << 20)),
                     ("set_vcpu_affinity", (1, 0, {0})), ("set_sched_params", (1, 512)), ("create_domain", ())):
        with pytest.raises(ReadOnlyError):
            getattr(sim, op)(*args)
    assert sim.transport.calls == calls
    assert sim.transport.host.domains[3].pause_count == 1  # build1 still paused


def _fake_sysfs(root: Path) -> None:
    def put(path: str, **values: int) -> None:
        d = root / path
        d.mkdir(parents=True)
        for k, v in values.items():
            (d / k).write_text(f"{v}\n")

    zero = dict.fromkeys(("rx_errors", "rx_dropped", "tx_errors", "tx_dropped"), 0)
    # dom0's view of vif1.0: it received what the guest transmitted
    put("class/net/vif1.0/statistics", rx_bytes=1000, rx_packets=10, tx_bytes=5000, tx_packets=50, **zero)
    put("class/net/vif1.0-emu/statistics", rx_bytes=7, rx_packets=7, tx_bytes=7, tx_packets=7, **zero)
    put("class/net/vif9.0/statistics", rx_bytes=1, rx_packets=1, tx_bytes=1, tx_packets=1, **zero)  # no domain 9
    put("class/net/eth0/statistics", rx_bytes=3, rx_packets=3, tx_bytes=3, tx_packets=3, **zero)
    (root / "class/net/vif2.1").mkdir(parents=True)  # a vif going away: no statistics left
    put("bus/xen-backend/devices/vbd-2-51712/statistics", rd_req=4, wr_req=6, oo_req=1, rd_sect=8, wr_sect=16,
        f_req=2, ds_req=0)
    # netback's xenbus devices (the emulated NIC's tap vif1.0-emu is none)
    for dev, ifname in (("vif-1-0", "vif1.0"), ("vif-9-0", "vif9.0"), ("vif-2-1", "vif2.1")):
        (root / "bus/xen-backend/devices" / dev / "net" / ifname).mkdir(parents=True)


def test_backend_counters_come_from_sysfs_from_the_guests_side(sim: xenprivcmd.Handle, tmp_path: Path) -> None:
    _fake_sysfs(tmp_path)
    fs = iostats.Sysfs(str(tmp_path))
    assert iostats.interface_stats(fs) == [
        InterfaceStats(1, 0, "vif1.0", None, 5000, 50, 0, 0, 1000, 10, 0, 0),
        InterfaceStats(9, 0, "vif9.0", None, 1, 1, 0, 0, 1, 1, 0, 0)]
    assert iostats.block_stats(fs) == [BlockStats(2, 51712, "xvda", 4, 8, 6, 16, 1, 2, 0)]
    s = parse(Exporter(Scraper(sim, sysfs=str(tmp_path)), min_interval=0).render())
    lab = {"domid": "1", "name": "web1", "device": "0"}
    assert s["xen_domain_network_transmit_bytes_total"] == [(lab, 1000.0)]
    assert s["xen_domain_network_receive_bytes_total"] == [(lab, 5000.0)]
    assert s["xen_domain_network_receive_packets_total"] == [(lab, 50.0)]
    assert s["xen_domain_network_transmit_packets_total"] == [(lab, 10.0)]
    blk = {"domid": "2", "name": "db1", "device": "51712"}
    assert s["xen_domain_block_read_requests_total"] == [(blk, 4.0)]
    assert s["xen_domain_block_write_bytes_total"] == [(blk, 16 * 512.0)]
    assert s["xen_domain_block_out_of_requests_total"] == [(blk, 1.0)]
    # no sysfs tree: no counters at all
    none = iostats.Sysfs(str(tmp_path / "none"))
    assert iostats.interface_stats(none) == [] == iostats.block_stats(none)


@pytest.fixture
def sockdir() -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="xs", dir="/tmp")  # a unix socket path must fit in 108 bytes
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_balloon_targets_and_names_come_from_xenstore(sim: xenprivcmd.Handle, sockdir: str,
                                                      no_real_xenstore: None) -> None:
    tree = {"/": b"", "/local": b"", "/local/domain": b""}
    for domid, name, target in ((0, "Domain-0", None), (1, "web-from-xs", 786432), (2, "db1", None)):
        tree[f"/local/domain/{domid}"] = b""
        tree[f"/local/domain/{domid}/name"] = name.encode()
        if target is not None:
            tree[f"/local/domain/{domid}/memory"] = b""
            tree[f"/local/domain/{domid}/memory/target"] = str(target).encode()
    with FakeXenstored(sockdir, tree) as fake:
        s = parse(Exporter(Scraper(sim, xenstore=fake.path), min_interval=0).render())
        assert s["xen_domain_memory_target_bytes"] == [({"domid": "1", "name": "web-from-xs"}, 786432 * 1024.0)]
        names = {int(lab["domid"]): lab["name"] for lab, _v in s["xen_domain_memory_bytes"]}
        assert names == {0: "Domain-0", 1: "web-from-xs", 2: "db1", 3: ""}  # build1 has no node in this store
    # the store gone: no targets and no names, the hypervisor's figures still there
    s = parse(Exporter(Scraper(sim, xenstore=os.path.join(sockdir, "gone")), min_interval=0).render())
    assert "xen_domain_memory_target_bytes" not in s and one(s, "xen_up") == 1
    assert len(s["xen_domain_memory_bytes"]) == 4


@pytest.mark.parametrize("value, expected", [("127.0.0.1:10120", ("127.0.0.1", 10120)), (":9", ("", 9)),
                                             ("[::1]:80", ("::1", 80)), ("localhost:0", ("localhost", 0))])
def test_listen_addresses(value: str, expected: Tuple[str, int]) -> None:
    assert parse_listen(value) == expected


def _exporter(*args: str, **kw: object) -> "subprocess.CompletedProcess[str]":
    return subprocess.run([sys.executable, "-m", "xenprivcmd.exporter", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=60, env=env(), **kw)  # type: ignore[call-overload]


def _busy_port() -> Iterator[int]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        yield s.getsockname()[1]


@pytest.mark.parametrize("args", [
    ["--listen", "nonsense"], ["--listen", "127.0.0.1:65536"], ["--listen", "127.0.0.1:http"],
    ["--listen", "::1:80"], ["--listen", "[::1:80"], ["--min-interval", "-1"], ["--min-interval", "soon"],
    ["--min-interval", "nan"], ["--min-interval", "1e9"], ["--bogus"], ["--uri"], ["--uri", "nowhere:///"],
    ["--uri", "sim:///?domains=0"], ["--uri", "sim:///no/such/host.json"], ["extra-word"],
    ["--listen", "192.0.2.1:10120"],  # TEST-NET-1: not an address of this machine
    ["--listen", "BUSY"],
])
def test_bad_options_give_one_error_line_and_exit_1(args: List[str]) -> None:
    ports = _busy_port()
    if "BUSY" in args:
        args = ["--uri", "sim:///default", "--listen", f"127.0.0.1:{next(ports)}"]
    elif args[:1] == ["--listen"]:
        args = ["--uri", "sim:///default", *args]
    r = _exporter(*args)
    lines = r.stderr.splitlines()
    assert r.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: "), (args, r.stderr)
    assert "Traceback" not in r.stderr and r.stdout == ""


def test_without_prometheus_client_the_exporter_says_what_to_install() -> None:
    code = ("import sys\nsys.modules['prometheus_client'] = None\n"
            "from xenprivcmd.exporter.cli import main\nsys.exit(main(['--uri', 'sim:///default', '--once']))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("error: ") and "pip install 'xenprivcmd[exporter]'" in r.stderr


def test_once_prints_one_scrape() -> None:
    r = _exporter("--uri", "sim:///default?domains=7", "--once")
    assert r.returncode == 0, r.stderr
    s = parse(r.stdout.encode())
    assert len(s["xen_domain_memory_bytes"]) == 7 and one(s, "xen_up") == 1


def test_once_on_a_refusing_hypervisor_prints_xen_up_0_and_exits_1() -> None:
    r = _exporter("--uri", "sim:///?privileged=0", "--once")
    s = parse(r.stdout.encode())
    assert r.returncode == 1 and one(s, "xen_up") == 0 and one(s, "xen_scrape_errors_total") == 1
    assert "xen_domain_memory_bytes" not in s
    assert r.stderr.startswith("xenprivcmd-exporter: scrape failed: ") and "Traceback" not in r.stderr


def test_serving_over_http_and_stopping_on_sigterm() -> None:
    p, port = start_exporter("sim:///default", "--min-interval", "0")
    try:
        base = f"http://127.0.0.1:{port}"
        code, ctype, body = get(base + "/metrics")
        assert code == 200 and ctype.startswith("text/plain; version=0.0.4")
        s = parse(body)
        assert one(s, "xen_up") == 1 and len(s["xen_domain_vcpus"]) == 4
        code, _ct, body = get(base + "/")
        assert code == 200 and b'href="/metrics"' in body
        assert get(base + "/nothing")[0] == 404
        # concurrent scrapes all answer
        import concurrent.futures

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(lambda _i: get(base + "/metrics")[0], range(24)))
        assert codes == [200] * 24
    finally:
        rc = stop_exporter(p)
    assert rc == 0
    assert p.stderr is not None and "Traceback" not in p.stderr.read()


def test_scrapes_within_min_interval_reuse_the_answer_over_http() -> None:
    p, port = start_exporter("sim:///default", "--min-interval", "30")
    try:
        a = get(f"http://127.0.0.1:{port}/metrics")[2]
        time.sleep(0.05)
        b = get(f"http://127.0.0.1:{port}/metrics")[2]
        assert a == b  # the simulated clock moves with every hypercall: a fresh read would differ
    finally:
        assert stop_exporter(p) == 0
