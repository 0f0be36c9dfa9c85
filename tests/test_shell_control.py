"""Issue 16 on the simulator: toolstack control through xenstore (shutdown, reboot, the
balloon target, uptime), the xl-layout commands (info, vcpu-list, cpupool-list, numainfo,
topology), the resolver, and one regression test per bug of the issue (bug N: test_bugN_*),
each failing on the code before its fix."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import time
import uuid
from typing import Any, Dict, List

import pytest

import xenprivcmd
from xenprivcmd import abi
from xenprivcmd.errors import AmbiguousDomain, GuestTimeout, NoSuchDomain
from xenprivcmd.shell import run
from xenprivcmd.shell.interactive import complete
from xenprivcmd.shell.session import Options, Session

from .test_shell import ROOT, URI, _env, fails, inproc, ok
from .test_shell_interactive import Pty


@pytest.fixture
def sim():
    h = xenprivcmd.open(URI)
    yield h
    h.close()


def host_file(tmp_path: Any, domains: List[Dict[str, Any]], **extra: Any) -> str:
    path = tmp_path / "host.json"
    path.write_text(json.dumps(dict({"domains": domains}, **extra)))
    return f"sim://{path}"


def jrun(*argv: str, handle: Any = None) -> Any:
    rc, out, err = inproc("--json", *argv, handle=handle)
    assert rc == 0, err
    return json.loads(out)


def series() -> List[str]:
    """The newest release of every series the simulator has (3.0 .. the development head)."""
    newest: Dict[str, str] = {}
    for r in abi.releases():
        newest[".".join(r.split("-")[0].split(".")[:2])] = r
    return sorted(newest.values(), key=lambda r: abi.variant(r).xen)


# -- the resolver ---------------------------------------------------------------------------

def test_every_op_takes_id_name_uuid_or_domaininfo(sim):
    info = sim.domain_info(1)
    for ref in (1, "web1", "1", str(info.uuid), info.uuid, info):
        assert sim.domain_info(ref).domid == 1
        assert len(sim.vcpu_info(ref)) == 2
        assert sim.sched_params(ref).weight == 256
    sim.pause("web1")
    assert sim.domain_info(1).paused
    sim.unpause(info)
    assert not sim.domain_info(1).paused


def test_resolver_errors_for_unknown_and_ambiguous_names(tmp_path):
    with xenprivcmd.open(host_file(tmp_path, [{"name": "twin"}, {"name": "twin"}, {"name": "solo"}])) as h:
        with pytest.raises(AmbiguousDomain) as exc:
            h.pause("twin")
        assert exc.value.domids == (1, 2) and "name one by id" in str(exc.value)
        assert not h.domain_info(1).paused and not h.domain_info(2).paused
        with pytest.raises(NoSuchDomain, match="no domain named 'ghost'"):
            h.lookup("ghost")
        with pytest.raises(TypeError):
            h.lookup(2.5)  # type: ignore[arg-type]
    assert "2 domains are named 'twin'" in fails("-c", host_file(tmp_path, [{"name": "twin"}, {"name": "twin"}]),
                                                 "dominfo", "twin", uri=None)


def test_domaininfo_repr_shows_what_people_read(sim):
    info = sim.domain_info(1)
    r = repr(info)
    assert r == ("DomainInfo(domid=1, name='web1', state='running', memory_kib=1048576, vcpus=2,"
                 " uuid='6f1c2a52-0d5e-4c1b-9f3a-2b7d8e9a0c11')")
    # issue 26: every name the repr shows is an attribute holding that value (it said id=, which is none)
    import re

    for key, value in re.findall(r"(\w+)=('[^']*'|\d+)", r):
        assert str(getattr(info, key)) == value.strip("'"), key


def test_a_domain_has_its_name_however_it_was_asked_for(sim):
    # issue 26: domains() and domain_info(1) gave name=None while domain_info("web1") had it
    named = {d.domid: d.name for d in sim.domains()}
    assert named[0] == "Domain-0" and named[1] == "web1"
    assert sim.domain_info(1).name == sim.domain_info("web1").name == sim.lookup(1).name == "web1"
    assert [i.name for i in sim.domain_infos([0, 1])] == ["Domain-0", "web1"]
    # asked for no name: one hypercall, no xenstore
    assert {d.name for d in sim.domains(names=False)} == {None}
    assert sim.domain_info(1, name=False).name is None
    assert [i.name for i in sim.domain_infos([0, 1], names=False)] == [None, None]


def test_numa_nodes_in_kib(sim):
    (node,) = sim.numa_info()
    assert node.memsize_kib == sim.physinfo().total_memory_kib
    assert 0 < node.memfree_kib <= node.memsize_kib


# -- the library's control ops on every release -------------------------------------------------

@pytest.mark.parametrize("release", series())
def test_control_ops_on_every_release(release):
    with xenprivcmd.open(f"sim:///?xen={release}") as h:
        target, max_kib = h.set_memory_target("web1", 64 << 10)
        assert (target, max_kib) == (64 << 10, (64 << 10) + 1024)  # libxl's LIBXL_MAXMEM_CONSTANT above it
        w = h.domain_info("web1")
        assert w.memory_kib == 64 << 10 and w.max_memory_kib == (64 << 10) + 1024  # the balloon driver did it
        after = h.shutdown("db1", wait=True)
        assert after is not None and after.shutdown and after.shutdown_reason == "poweroff"
        assert after.state == "shut off"
        rebooted = h.reboot("web1", wait=True)
        assert rebooted is not None and rebooted.shutdown_reason == "reboot"
        ups = dict((i.domid, up) for i, up in h.uptimes())
        assert set(ups) == {0, 1, 2, 3} and all(up is not None and up > 0 for up in ups.values())
        assert h.uptime("build1") == pytest.approx(ups[3], abs=5)


def test_set_memory_target_refuses_zero_and_above_the_limit(sim):
    before = sim.domain_info(1)
    with pytest.raises(ValueError, match="0 KiB"):
        sim.set_memory_target("web1", 0)
    with pytest.raises(ValueError, match="above domain 1's limit of 2097152 KiB"):
        sim.set_memory_target("web1", 3 << 20)
    assert sim.domain_info(1)[:4] == before[:4]
    assert sim.set_memory_target("web1", 3 << 20, force=True) == (3 << 20, (3 << 20) + 1024)


def test_set_max_mem_refuses_a_limit_below_the_use(sim):
    with pytest.raises(ValueError, match="below the 1048576 KiB"):
        sim.set_max_mem("web1", 512 << 10)
    assert sim.domain_info(1).max_memory_kib == 2 << 20
    sim.set_max_mem("web1", 512 << 10, force=True)
    assert sim.domain_info(1).max_memory_kib == 512 << 10


def test_a_guest_without_pv_drivers_never_acknowledges(tmp_path):
    with xenprivcmd.open(host_file(tmp_path, [{"name": "bare", "pv": False}])) as h:
        t0 = time.monotonic()
        with pytest.raises(GuestTimeout, match="did not acknowledge control/shutdown=poweroff within 0.3 s"):
            h.shutdown("bare", ack_timeout=0.3)
        assert time.monotonic() - t0 < 5
        assert not h.domain_info(1).shutdown
        assert h.transport.host.store.read("/local/domain/1/control/shutdown") == b""  # withdrawn


def test_shutdown_refuses_dom0_paused_and_shut_down_domains(sim):
    with pytest.raises(ValueError, match="domain 0"):
        sim.shutdown(0)
    with pytest.raises(ValueError, match="paused"):
        sim.shutdown("build1")
    sim.shutdown("db1", wait=True)
    with pytest.raises(ValueError, match="already shut off"):
        sim.reboot("db1")


def test_cpupools(sim):
    (pool,) = sim.cpupools()
    assert (pool.pool_id, pool.name, pool.scheduler, pool.n_dom) == (0, "Pool-0", "credit", 4)
    assert pool.cpus == frozenset(range(4)) and sim.free_cpus() == frozenset()


# -- the shell's new commands ---------------------------------------------------------------------

@pytest.mark.parametrize("release", series())
def test_shell_commands_on_every_release(release):
    uri = f"sim:///?xen={release}"
    with xenprivcmd.open(uri) as h:
        assert inproc("setmem", "web1", "64M", handle=h)[0] == 0
        assert h.domain_info(1).memory_kib == 64 << 10
        rc, out, err = inproc("shutdown", "--wait", "db1", handle=h)
        assert rc == 0 and out == "Domain 'db1' is shut off (poweroff)\n", err
        rc, out, err = inproc("reboot web1; domstate --reason web1", handle=h)
        assert rc == 0 and out.splitlines() == ["Domain 'web1' is being rebooted", "shut off (reboot)"], err
        info = jrun("info", "-n", handle=h)
        v = h.version()
        assert info["xen_version"] == v.release and info["xen_major"] == v.major
        assert info["nr_cpus"] == 4 and info["total_memory"] == h.physinfo().total_memory_kib // 1024
        has_numa = h.engine.families.has("xen_sysctl_numainfo")
        assert (info["numa_info"] is not None) == has_numa
        assert not has_numa or [n["node"] for n in info["numa_info"]] == [0]
        rows = jrun("vcpu-list", handle=h)["vcpus"]
        assert [(r["domain"]["id"], r["vcpu"]) for r in rows] == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1),
                                                                  (2, 0), (2, 1), (3, 0)]
        ups = jrun("uptime", handle=h)["domains"]
        assert [u["id"] for u in ups] == [0, 1, 2, 3] and all(u["uptime_s"] > 0 for u in ups)
        rc, out, err = inproc("cpupool-list", handle=h)
        if h.engine.families.has("xen_sysctl_cpupool_op"):
            assert rc == 0 and out.splitlines()[1].split() == ["Pool-0", "4", "credit", "y", "4"], err
        else:
            assert rc == 1 and err.startswith("error: ") and "Traceback" not in err


@pytest.mark.parametrize("sched", ["credit", "credit2"])
def test_cpupool_list_is_xls_layout_for_every_scheduler(sched):
    """xl prints "%-19s%3d %9s       y       %4d" (the scheduler right-aligned: credit2 on
    trixie's Xen 4.20 showed a left-aligned column one space off) and -c a plain comma list."""
    out = ok("cpupool-list", uri=f"sim:///default?sched={sched}")
    assert out.splitlines() == ["Name               CPUs   Sched     Active   Domain count",
                                f"Pool-0               4 {sched:>9}       y          4"]
    out = ok("cpupool-list", "-c", uri=f"sim:///default?sched={sched}")
    assert out.splitlines() == ["Name               CPU list", "Pool-0             0,1,2,3"]


def test_info_has_xl_fields_in_xl_order():
    out = ok("info")
    names = [line.split(":", 1)[0].strip() for line in out.splitlines()]
    assert names == [
        "host", "release", "version", "machine", "nr_cpus", "max_cpu_id", "nr_nodes", "cores_per_socket",
        "threads_per_core", "cpu_mhz", "hw_caps", "virt_caps", "total_memory", "free_memory",
        "sharing_freed_memory", "sharing_used_memory", "outstanding_claims", "free_cpus", "xen_major",
        "xen_minor", "xen_extra", "xen_version", "xen_caps", "xen_scheduler", "xen_pagesize", "platform_params",
        "xen_changeset", "xen_commandline", "cc_compiler", "cc_compile_by", "cc_compile_domain",
        "cc_compile_date", "build_id", "xend_config_format"]
    assert "cpu_mhz                : 2400.000\n" in out and "virt_caps              : pv hvm hap shadow\n" in out
    n = ok("info", "-n")
    assert "cpu_topology           :\ncpu:    core    socket     node\n  0:       0        0        0\n" in n
    assert "numa_info              :\nnode:    memsize    memfree    distances\n   0:     16384" in n
    assert ok("topology") in n and ok("numainfo") in n


def test_vcpu_list_layout_and_affinity(sim):
    sim.set_vcpu_affinity("web1", 1, hard={0, 2, 3}, soft={1})
    rc, out, err = inproc("vcpu-list", "web1", handle=sim)
    lines = out.splitlines()
    assert lines[0].split() == ["Name", "ID", "VCPU", "CPU", "State", "Time(s)", "Affinity", "(Hard", "/", "Soft)"]
    assert lines[1].split()[:3] == ["web1", "1", "0"] and lines[1].endswith(" all / all")
    assert lines[2].endswith(" 0,2-3 / 1")


def test_dry_run_shows_xenstore_writes_and_changes_nothing(sim):
    rc, out, err = inproc("-N", "setmem web1 64M; shutdown db1; reboot web1", handle=sim)
    assert rc == 0, err
    assert "  domctl max_mem(domid=1) max_memkb=66560\n" in out
    assert "  xenstore write /local/domain/1/memory/target = '65536'\n" in out
    assert "  xenstore write /local/domain/2/control/shutdown = 'poweroff'\n" in out
    assert "  xenstore write /local/domain/1/control/shutdown = 'reboot'\n" in out
    assert sim.transport.host.store.writes == 0
    assert sim.domain_info(1).memory_kib == 1 << 20 and not sim.domain_info(2).shutdown


def test_readonly_refuses_the_new_changing_commands(sim):
    for cmd in ("setmem web1 64M", "shutdown db1", "reboot db1", "setmaxmem web1 2G"):
        rc, out, err = inproc("-r", cmd, handle=sim)
        assert rc == 1 and "read-only" in err, cmd
    assert sim.transport.host.store.writes == 0


def test_setmem_and_setmaxmem_errors_are_one_line():
    assert "above domain 1's limit" in fails("setmem", "web1", "3G")
    assert "0 KiB" in fails("setmem", "web1", "0")
    assert "below the 1048576 KiB" in fails("setmaxmem", "web1", "0")
    assert "paused" in fails("shutdown", "build1")


# -- habits ------------------------------------------------------------------------------------

def test_habits():
    assert ok("dominfo", "--help") == ok("help", "dominfo")
    assert ok("list", "--inactive") == " Id   Name   State\n--------------------\n\n"
    xl = ok("list", "--xl", "web1", "3").splitlines()
    assert [ln.split()[0] for ln in xl[1:]] == ["web1", "build1"]
    out = ok("vcpupin web1 0 all; vcpupin web1 0; schedinfo web1 weight=300 --live; setmaxmem web1 3G --config")
    assert " 0      0-3" in out and "weight         : 300" in out
    assert "naming domains needs --xl" in fails("list", "web1")


# -- the bugs of the issue ----------------------------------------------------------------------------

def test_bug1_completed_names_are_quoted(tmp_path):
    uri = host_file(tmp_path, [{"name": "my web server"}, {"name": "db;1"}])
    s = Session(Options(uri=uri), io.StringIO(), io.StringIO(), env={})
    assert complete(s, "dominfo my", "my") == ["'my web server'"]
    assert complete(s, "dominfo db", "db") == ["'db;1'"]
    assert complete(s, "dominfo 'my", "'my") == ["'my web server'"]
    assert complete(s, "vcpu-list 'my web server' d", "d") == ["'db;1'"]  # every DOMAIN of a list
    # readline splits at blanks and ';': past an open quote it asks for the last piece only
    assert complete(s, "dominfo 'my w", "w") == ["web server'"]
    assert complete(s, "dominfo 'my web ", "") == ["web server'"[4:]]
    assert complete(s, 'dominfo "my w', "w") == ['web server"']
    assert complete(s, "dominfo 'db;", "") == ["1'"]
    assert complete(s, "list; dominfo 'my w", "w") == ["web server'"]
    assert complete(s, "dominfo 'x y", "y") == []
    out = io.StringIO()
    assert run(["-c", uri, "dominfo 'my web server'; dominfo 'db;1'"], stdout=out, stderr=io.StringIO(), env={}) == 0
    assert "my web server" in out.getvalue() and "db;1" in out.getvalue()
    s.close()


def test_bug1_tab_after_an_open_quote_completes_the_name_on_a_terminal(tmp_path):
    uri = host_file(tmp_path, [{"name": "my web server"}, {"name": "db;1"}])
    p = _spawn("-c", uri, extra={"XDG_CACHE_HOME": str(tmp_path), "HOME": str(tmp_path)})
    try:
        p.expect(r"xpsh # ")
        p.send("dominfo 'my w\t\r")  # readline asks for "w"; the line becomes dominfo 'my web server'
        p.expect(r"Name: +my web server")
        p.expect(r"xpsh # ")
        p.send('domstate "my web \t\r')
        p.expect(r"running")
        p.expect(r"xpsh # ")
        p.send("quit\r")
        assert p.wait(timeout=10) == 0
    finally:
        p.close()
    assert "Traceback" not in p.seen and "error:" not in p.seen


def test_bug2_help_top_says_cpu_percent_once():
    out = ok("help", "top")
    assert "CPU% computed" in out and "%%" not in out


def _spawn(*args: str, extra: Dict[str, str]) -> Pty:
    env = _env(dict({"TERM": "dumb", "INPUTRC": "/dev/null"}, **extra))
    return Pty(list(args), env)


def test_bug3_top_quits_on_q_and_fits_the_terminal():
    p = _spawn("-c", "sim:///?domains=60", "top", "--delay", "30", extra={"LINES": "20", "COLUMNS": "100"})
    try:
        p.expect(r"\x1b\[H\x1b\[2Jxpsh top - ")
        frame = p.expect(r"(?s)(.*?)more domains \(a taller terminal").group(1)
        assert len(frame.splitlines()) <= 19, frame
        t0 = time.monotonic()
        p.send("q")
        assert p.wait(timeout=10) == 0
        assert time.monotonic() - t0 < 10  # long before the 30 s delay
    finally:
        p.close()
    assert "Traceback" not in p.seen


def test_bug3_top_sort_keys():
    out = ok("-c", "sim:///?domains=12", "top", "--sort", "name", uri=None)
    names = [ln.split()[0] for ln in out.splitlines()[4:] if ln.strip()]  # 3 summary lines and the header
    assert names == sorted(names, key=str.lower) and len(names) == 12
    out = ok("-c", "sim:///?domains=12", "top", "--sort", "mem", uri=None)
    mems = [int(ln.split()[4]) for ln in out.splitlines()[4:] if ln.strip()]
    assert mems == sorted(mems, reverse=True)
    assert "--sort 'x'" in fails("top", "--sort", "x")


def test_bug4_connect_keeps_the_working_connection():
    rc, out, err = inproc("-c", "sim:///?xen=4.17", "connect sim:///bogus; uri; domname 1; connect; uri")
    assert rc == 1 and err.count("error: ") == 1 and "bogus" in err
    assert out.splitlines() == ["sim:///?xen=4.17", "web1", "sim:///?xen=4.17"]


def test_bug5_readable_errors_for_resume_and_setvcpus(sim):
    rc, out, err = inproc("resume", "web1", handle=sim)
    assert rc == 1 and err == "error: domain 'web1' is not paused\n"
    calls = sim.transport.calls
    rc, out, err = inproc("setvcpus", "web1", "4", "--maximum", handle=sim)
    assert rc == 1 and "from Xen 4.12 a domain's vcpu count is fixed at creation" in err
    assert all(e[1] != "max_vcpus" for e in list(sim.transport.log)[-(sim.transport.calls - calls):])
    assert "Xen before 4.12 only" in ok("help", "setvcpus")
    with xenprivcmd.open("sim:///?xen=4.10") as old:
        assert inproc("setvcpus", "web1", "3", "--maximum", handle=old)[0] == 0


def test_bug6_vcpuinfo_agrees_with_the_library_after_suspend(sim):
    assert inproc("suspend", "web1", handle=sim)[0] == 0
    lib = sim.vcpu_info(1)
    assert all(not v.blocked and not v.running for v in lib)
    data = jrun("vcpuinfo", "web1", handle=sim)
    assert [v["state"] for v in data["vcpus"]] == ["runnable", "runnable"]
    assert "State:          blocked" not in inproc("vcpuinfo", "web1", handle=sim)[1]


def test_bug7_a_created_domain_looks_the_same_everywhere(sim):
    domid = sim.create_domain(max_vcpus=1)
    info = sim.domain_info(domid)
    dominfo = inproc("dominfo", str(domid), handle=sim)[1]
    xl = [ln for ln in inproc("list", "--xl", handle=sim)[1].splitlines() if ln.split()[1:2] == [str(domid)]][0]
    top = [ln for ln in inproc("top", handle=sim)[1].splitlines() if ln.split()[:1] == ["-"]][0]
    listed = [ln for ln in inproc("list", handle=sim)[1].splitlines() if ln.split()[:1] == [str(domid)]][0]
    # dominfo and list --xl show the vcpus online (as virsh and xl), top xentop's VCPUS (max_vcpu_id + 1)
    assert f"CPU(s):         {info.nr_online_vcpus}\n" in dominfo
    assert xl.split()[0] == "-" and int(xl.split()[3]) == info.nr_online_vcpus
    assert listed.split()[1] == "-" and top.split()[0] == "-" and int(top.split()[8]) == info.vcpus


def _interrupt(args: List[str], wait_for: str) -> int:
    cmd = [sys.executable, "-m", "xenprivcmd", "-c", URI] + args
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=ROOT)
    try:
        assert p.stdout is not None
        seen = ""
        while wait_for not in seen:
            line = p.stdout.readline()
            assert line, seen
            seen += line
        p.send_signal(signal.SIGINT)
        return p.wait(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_bug8_sigint_exits_130():
    assert _interrupt(["top", "--batch", "--delay", "0.2"], "web1") == 130
    assert _interrupt(["dmesg", "-f", "--interval", "0.2"], "Xen version") == 130


def test_bug9_silent_options_and_messages():
    assert "--xl cannot be combined with --name" in fails("list", "--xl", "--name")
    out = ok("-N", "dmesg", "-c")
    assert "readconsole clear=1" in out and "0x" not in out and "buffer" not in out
    msg = fails("list", uri="bogus:///")
    assert "record:PATH" in msg and "replay:PATH" in msg and "record://" not in msg


def test_bug10_numeric_names_fall_back_to_the_name(tmp_path):
    uri = host_file(tmp_path, [{"name": "12"}, {"name": "web"}])
    out = ok("dominfo", "12", uri=uri)
    assert "Id:             1\nName:           12\n" in out
    with xenprivcmd.open(uri) as h:
        assert h.lookup("12").domid == 1 and h.lookup("1").name == "12"
        assert h.domain_info("12").name == "12"


def test_bug11_domstate_reason_after_resume():
    out = ok("suspend web1; domstate --reason web1; resume web1; domstate --reason web1; domstate --reason db1")
    assert out.splitlines()[1:] == ["paused (user)", "Domain 'web1' resumed", "running (unpaused)", "idle (booted)"]


def test_uuid_reference_in_the_shell():
    u = str(uuid.UUID("c3d4e5f6-a7b8-4c9d-8e0f-1a2b3c4d5e33"))
    assert ok("domname", u) == "build1\n"
