"""xpsh's I/O commands on the simulator (issue 26): domifstat and domblkstat in virsh's format,
domstats in virsh's groups, top with xentop's columns, flags and keys.

The simulated guests' counters move while they run; db1 (idle) and build1 (paused) hold
still, so their figures can be compared exactly with the library's.
"""

from __future__ import annotations

import json
import re
from typing import Any, Dict, List

import pytest

import xenprivcmd
from xenprivcmd.shell import top as topmod

from .test_shell import fails, inproc, ok


@pytest.fixture
def sim():
    h = xenprivcmd.open("sim:///default")
    yield h
    h.close()


def run_ok(*argv: str, handle: Any) -> str:
    rc, out, err = inproc(*argv, handle=handle)
    assert rc == 0 and err == "", (rc, out, err)
    return out


# -- domifstat ----------------------------------------------------------------------------------------

def test_domifstat_is_virshs_format_from_the_guests_side(sim):
    lib, = sim.interface_stats("build1")
    out = run_ok("domifstat", "build1", handle=sim)
    assert out.splitlines() == [f"vif3.0 {k} {getattr(lib, k)}" for k in
                                ("rx_bytes", "rx_packets", "rx_errs", "rx_drop", "tx_bytes", "tx_packets", "tx_errs",
                                 "tx_drop")]
    # rx is what netback transmitted (dom0's side, the simulated sysfs)
    fs = sim.transport.sysfs()
    assert int(fs.read("class/net/vif3.0/statistics/tx_bytes")) == lib.rx_bytes
    assert int(fs.read("class/net/vif3.0/statistics/rx_bytes")) == lib.tx_bytes


def test_domifstat_by_name_mac_or_number_and_errors(sim):
    whole = run_ok("domifstat", "db1", handle=sim)
    mac = sim.interface_stats("db1")[0].mac
    for ident in ("vif2.0", mac.upper(), "0"):
        assert run_ok("domifstat", "db1", ident, handle=sim) == whole
    rc, out, err = inproc("domifstat", "db1", "vif2.7", handle=sim)
    assert rc == 1 and err == "error: domain 'db1' has no network interface 'vif2.7' (it has: vif2.0)\n"
    rc, out, err = inproc("domifstat", "Domain-0", handle=sim)
    assert rc == 1 and err == "error: domain 'Domain-0' has no network interfaces (netback vifs)\n"
    assert "failed to get domain 'nosuch'" in fails("domifstat", "nosuch")


# -- domblkstat -----------------------------------------------------------------------------------------

def test_domblkstat_is_virshs_format(sim):
    a, b = sim.block_stats("db1")
    out = run_ok("domblkstat", "db1", handle=sim)
    want = []
    for d in (a, b):
        want += [f"{d.name} rd_req {d.rd_req}", f"{d.name} rd_bytes {d.rd_sect * 512}", f"{d.name} wr_req {d.wr_req}",
                 f"{d.name} wr_bytes {d.wr_sect * 512}", f"{d.name} errs {d.oo_req}",
                 f"{d.name} flush_operations {d.f_req}", ""]
    assert out.splitlines() == want[:-1]
    assert run_ok("domblkstat", "db1", "/dev/xvdb", handle=sim) == run_ok("domblkstat", "db1", "51728", handle=sim)
    human = run_ok("domblkstat", "db1", "xvdb", "--human", handle=sim)
    assert human.startswith("Device: xvdb\n number of read operations:      ") and f"{b.rd_sect * 512}\n" in human
    rc, out, err = inproc("domblkstat", "db1", "xvdz", handle=sim)
    assert rc == 1 and err == "error: domain 'db1' has no disk 'xvdz' (it has: xvda, xvdb)\n"


# -- domstats --------------------------------------------------------------------------------------------

def _blocks(text: str) -> Dict[str, Dict[str, str]]:
    out: Dict[str, Dict[str, str]] = {}
    for block in text.strip("\n").split("\n\n"):
        head, *lines = block.splitlines()
        m = re.match(r"^Domain: '(.+)'$", head)
        assert m, head
        assert all(ln.startswith("  ") and "=" in ln for ln in lines), lines
        out[m.group(1)] = dict(ln.strip().split("=", 1) for ln in lines)
    return out


def test_domstats_text_is_virshs_groups_and_keys(sim):
    text = run_ok("domstats", handle=sim)
    assert text.endswith("\n\n")
    doms = _blocks(text)
    assert list(doms) == ["Domain-0", "web1", "db1", "build1"]
    db = doms["db1"]
    info = sim.domain_info(2)
    disks = sim.block_stats(2)
    net, = sim.interface_stats(2)
    assert (db["state.state"], db["state.reason"]) == ("2", "0")  # VIR_DOMAIN_BLOCKED (virsh: idle), no reason
    assert doms["build1"]["state.state"] == "3" and doms["build1"]["state.reason"] == "2"  # paused by the user
    assert (doms["web1"]["state.state"], doms["web1"]["state.reason"]) == ("1", "1")  # running, booted
    assert db["cpu.time"] == str(info.cpu_time)
    assert (db["balloon.current"], db["balloon.maximum"]) == (str(info.memory_kib), str(info.max_memory_kib))
    assert (db["vcpu.current"], db["vcpu.maximum"]) == ("2", "2")
    assert db["vcpu.0.state"] == "2" and db["vcpu.1.time"] == str(sim.vcpu_info(2)[1].cpu_time)  # blocked
    assert db["net.count"] == "1" and db["net.0.name"] == "vif2.0"
    assert db["net.0.rx.bytes"] == str(net.rx_bytes) and db["net.0.tx.pkts"] == str(net.tx_packets)
    assert db["block.count"] == "2" and [db["block.0.name"], db["block.1.name"]] == ["xvda", "xvdb"]
    assert db["block.1.rd.bytes"] == str(disks[1].rd_bytes) and db["block.1.fl.reqs"] == str(disks[1].f_req)
    assert doms["Domain-0"]["net.count"] == "0" and "net.0.name" not in doms["Domain-0"]


def test_domstats_groups_and_domains(sim):
    doms = _blocks(run_ok("domstats", "--interface", "--balloon", "db1", "build1", handle=sim))
    assert list(doms) == ["db1", "build1"]
    assert {k.split(".")[0] for k in doms["db1"]} == {"net", "balloon"}
    assert list(_blocks(run_ok("domstats", "--state", "--list-paused", handle=sim))) == ["build1"]
    assert "failed to get domain 'ghost'" in fails("domstats", "ghost")


def test_domstats_json_uses_the_shells_key_names(sim):
    rc, out, err = inproc("--json", "domstats", "db1", handle=sim)
    assert rc == 0, err
    d, = json.loads(out)["domains"]
    assert d["domain"] == {"id": 2, "name": "db1"}
    assert set(d) == {"domain", "state", "cpu", "balloon", "vcpu", "net", "block"}
    assert d["state"] == {"state": "idle", "reason": "booted"}
    assert set(d["balloon"]) == {"memory_kib", "max_memory_kib"} and set(d["cpu"]) == {"cpu_time_ns"}
    assert d["vcpu"]["vcpus"] == 2 and d["vcpu"]["online_vcpus"] == 2
    assert [v["state"] for v in d["vcpu"]["vcpu_list"]] == ["blocked", "blocked"]
    net = d["net"][0]
    lib = sim.interface_stats(2)[0]
    assert {k: net[k] for k in lib._fields if k != "domid"} == {k: getattr(lib, k) for k in lib._fields if k != "domid"}
    assert [x["name"] for x in d["block"]] == ["xvda", "xvdb"] and d["block"][0]["rd_bytes"] == d["block"][0]["rd_sect"] * 512


# -- top -------------------------------------------------------------------------------------------------

XENTOP_HEAD = ["NAME", "STATE", "CPU(sec)", "CPU(%)", "MEM(k)", "MEM(%)", "MAXMEM(k)", "MAXMEM(%)", "VCPUS", "NETS",
               "NETTX(k)", "NETRX(k)", "VBDS", "VBD_OO", "VBD_RD", "VBD_WR", "VBD_RSECT", "VBD_WSECT", "SSID"]


def _rows(out: str) -> Dict[str, Dict[str, str]]:
    lines = out.splitlines()
    head = lines[0].split()
    assert head == XENTOP_HEAD, lines[0]
    return {ln.split()[0]: dict(zip(head, ln.split())) for ln in lines[1:]
            if ln.split() and ln.split()[0] not in ("NAME", "VCPUs(sec):", "VBD") and not ln.startswith("Net")}


def test_top_batch_has_xentops_columns_in_xentops_direction(sim):
    out = run_ok("top", "-b", "-i", "1", handle=sim)
    assert not out.startswith("xpsh top") and "\x1b[" not in out  # xentop -b: no summary, no screen codes
    rows = _rows(out)
    b = rows["build1"]
    net, = sim.interface_stats("build1")
    disk, = sim.block_stats("build1")
    info = sim.domain_info(3)
    assert b["STATE"] == "----p-" and rows["db1"]["STATE"] == "--b---" and rows["web1"]["STATE"] == "-----r"
    assert b["NETS"] == "1" and b["VBDS"] == "1" and rows["db1"]["VBDS"] == "2"
    assert int(b["NETTX(k)"]) == net.rx_bytes // 1024 and int(b["NETRX(k)"]) == net.tx_bytes // 1024
    assert (int(b["VBD_OO"]), int(b["VBD_RD"]), int(b["VBD_WR"]), int(b["VBD_RSECT"]), int(b["VBD_WSECT"])) == \
        (disk.oo_req, disk.rd_req, disk.wr_req, disk.rd_sect, disk.wr_sect)
    assert int(b["MEM(k)"]) == info.memory_kib and int(b["VCPUS"]) == info.vcpus and b["SSID"] == str(info.ssidref)
    assert int(b["CPU(sec)"]) == info.cpu_time // 10**9 and b["CPU(%)"] == "0.0"


def test_top_flags_d_i_n_x_v_r_f(sim):
    for argv in (["-d", "0.5"], ["-d0.5"], ["--delay", "0.5"], ["-bi1"]):
        assert "build1" in run_ok("top", "-i", "1", *argv, handle=sim), argv
    out = run_ok("top", "-b", "-i", "1", "-n", "-x", "-v", handle=sim)
    net, = sim.interface_stats("build1")
    lines = out.splitlines()
    at = lines.index(next(ln for ln in lines if ln.split()[:1] == ["build1"]))
    assert lines[at + 1].startswith("VCPUs(sec):   0: ")
    assert lines[at + 2] == (f"Net0 RX: {net.tx_bytes:8d}bytes {net.tx_packets:8d}pkts {net.tx_errs:8d}err "
                             f"{net.tx_drop:8d}drop  TX: {net.rx_bytes:8d}bytes {net.rx_packets:8d}pkts "
                             f"{net.rx_errs:8d}err {net.rx_drop:8d}drop")
    assert re.match(r"^VBD BlkBack 51712 \[ca: 0\]  OO: +\d+   RD: +\d+   WR: +\d+   RSECT: +\d+   WSECT: +\d+$",
                    lines[at + 3]), lines[at + 3]
    db = lines.index(next(ln for ln in lines if ln.split()[:1] == ["db1"]))
    assert "[ca:10]" in lines[db + 4]  # xvdb: device 51728, minor 0x10
    assert run_ok("top", "-b", "-i", "1", "-r", handle=sim).count("NAME  STATE") == 4
    with xenprivcmd.open("sim:///?domains=3&seed=5") as h:
        h.transport.host.set_name(2, "a-rather-long-domain-name")
        short = run_ok("top", "-b", "-i", "1", handle=h)
        full = run_ok("top", "-b", "-i", "1", "-f", handle=h)
    assert re.search(r"^a-rather-l -", short, re.M) and re.search(r"^a-rather-long-domain-name -", full, re.M)
    assert full.index("NAME") + 4 == len("a-rather-long-domain-name")  # the column grew to the longest name
    assert "requires a value" in fails("top", "-d")
    assert "expects a number" in fails("top", "-d", "x")


def test_top_sorts_by_any_column(sim):
    out = run_ok("top", "-b", "-i", "1", "--sort", "vbd_rsect", handle=sim)
    sects = [int(r["VBD_RSECT"]) for r in _rows(out).values()]
    assert sects == sorted(sects, reverse=True) and len(sects) == 4
    names = list(_rows(run_ok("top", "-b", "-i", "1", "--sort", "name", handle=sim)))
    assert names == sorted(names, key=str.lower)
    assert "one of name, state, cpu_time, cpu, mem" in fails("top", "--sort", "bogus")


def test_top_keys_toggle_sort_scroll_and_set_the_delay():
    view: Dict[str, Any] = {"networks": False, "vbds": False, "vcpus": False, "repeat": False, "full": False,
                            "sort": "id", "first": 0, "delay": 3.0}
    assert topmod.handle_keys(b"n", view) is True and view["networks"]
    assert topmod.handle_keys(b"B", view) is True and view["vbds"]
    assert topmod.handle_keys(b"vr", view) is True and view["vcpus"] and view["repeat"]
    assert topmod.handle_keys(b"s", view) is True and view["sort"] == "name"
    assert topmod.handle_keys(b"\x1b[B\x1b[B\x1b[A", view) is True and view["first"] == 1
    assert topmod.handle_keys(b"d", view) is True and view["prompt"] == ""
    assert topmod.handle_keys(b"0.25\r", view) is True and view["delay"] == 0.25 and view["prompt"] is None
    assert topmod.handle_keys(b"x", view) is None  # not a key of xentop's
    assert topmod.handle_keys(b"q", view) is False and topmod.handle_keys(b"Q", view) is False


def test_top_on_a_terminal_cuts_rows_at_its_width_and_fits_its_height():
    with xenprivcmd.open("sim:///?domains=30") as h:
        p = h.physinfo()
        rnd = topmod.sample(h, {}, None, p, want_vcpus=False)
        view = {"networks": True, "vbds": True, "vcpus": False, "repeat": False, "full": False, "sort": "id",
                "first": 0, "delay": 3.0}
        text = topmod.render(rnd, p, view, summary="4.23.0", rows=24, cols=72)
    lines = text.split("\n")
    assert len(lines) <= 24 and all(len(ln) <= 72 for ln in lines), lines
    assert any("more domains" in ln for ln in lines) and lines[-1].startswith("  Delay  Networks")
    assert lines[3].startswith("      NAME  STATE   CPU(sec)") and len(lines[3]) == 72  # the header, cut


def test_top_json_has_each_domains_devices(sim):
    rc, out, err = inproc("--json", "top", "-i", "1", "-v", handle=sim)
    assert rc == 0, err
    rnd, = json.loads(out)["iterations"]
    b = next(d for d in rnd["domains"] if d["name"] == "db1")
    assert [x["name"] for x in b["block"]] == ["xvda", "xvdb"] and b["net"][0]["name"] == "vif2.0"
    assert b["max_memory_percent"] > 0 and b["ssidref"] == 0 and len(b["vcpu_list"]) == 2
    assert not any(k.startswith("_") for d in rnd["domains"] for k in d)


def test_io_commands_on_any_uri():
    """The same commands through a subprocess (tests/test_remote.py runs test_shell.py over ssh)."""
    out = ok("domifstat", "db1", "vif2.0")
    assert out.splitlines()[0].startswith("vif2.0 rx_bytes ")
    data: List[Any] = json.loads(ok("domblkstat", "db1", "--json"))["disks"]  # global option after the command
    assert [d["name"] for d in data] == ["xvda", "xvdb"]
