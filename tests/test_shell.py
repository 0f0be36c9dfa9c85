"""xpsh against the simulator: every command as ``python -m xenprivcmd -c sim:///default``,
output formats, ``--json`` schemas, exit codes, error lines, -r, -N, -t, dom0 safety."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from typing import Any, Dict, Optional, Tuple

import pytest

import xenprivcmd
from xenprivcmd.shell import run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: The URI every subprocess and the ``sim`` fixture use; tests/test_remote.py runs this whole
#: file again with a sim+ssh:// URI (through a real sshd) and expects the same results.
URI = os.environ.get("XENPRIVCMD_TEST_URI") or "sim:///default"


def _env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("XPSH_")}
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra or {})
    return env


def xpsh(*args: str, env: Optional[Dict[str, str]] = None, uri: Optional[str] = URI,
         timeout: float = 60) -> Tuple[int, str, str]:
    """Run ``python -m xenprivcmd [-c URI] ARGS``; (status, stdout, stderr)."""
    cmd = [sys.executable, "-m", "xenprivcmd"] + (["-c", uri] if uri else []) + list(args)
    p = subprocess.run(cmd, capture_output=True, text=True, env=_env(env), timeout=timeout, cwd=ROOT)
    return p.returncode, p.stdout, p.stderr


def ok(*args: str, **kw: Any) -> str:
    rc, out, err = xpsh(*args, **kw)
    assert rc == 0, (rc, out, err)
    assert "Traceback" not in err
    return out


def fails(*args: str, **kw: Any) -> str:
    """Status 1, one ``error:`` line on stderr, no traceback; returns that line."""
    rc, out, err = xpsh(*args, **kw)
    assert rc == 1, (rc, out, err)
    assert "Traceback" not in err and "Traceback" not in out
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def inproc(*argv: str, handle: Any = None, env: Optional[Dict[str, str]] = None) -> Tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    rc = run(list(argv), stdout=out, stderr=err, handle=handle, env=env or {})
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture
def sim():
    h = xenprivcmd.open(URI)
    yield h
    h.close()


@pytest.fixture
def local_sim():
    """An in-process simulator, for tests that reach into it (fault injection)."""
    h = xenprivcmd.open("sim:///default")
    yield h
    h.close()


def issued_count(err: str) -> int:
    m = re.search(r"xpsh: hypercalls issued: (\d+)", err)
    assert m, err
    return int(m.group(1))


# -- output formats ------------------------------------------------------------------------------

def test_list_is_virsh_table():
    out = ok("list")
    lines = out.splitlines()
    assert lines[0] == " Id   Name       State"
    assert lines[1] == "-" * 26
    assert lines[2] == " 0    Domain-0   running"
    assert lines[3] == " 1    web1       running"
    assert lines[4] == " 2    db1        idle"
    assert lines[5] == " 3    build1     paused"
    assert lines[6] == ""


def test_list_variants():
    assert ok("list", "--name").split() == ["Domain-0", "web1", "db1", "build1"]
    assert ok("list", "--state-paused", "--name").split() == ["build1"]
    assert "6f1c2a52-0d5e-4c1b-9f3a-2b7d8e9a0c11" in ok("list", "--uuid")
    quiet = ok("-q", "list")
    assert "Name" not in quiet and "---" not in quiet and " 1   web1       running" in quiet  # widths from data only, as virsh -q
    xl = ok("list", "--xl").splitlines()
    assert xl[0].split() == ["Name", "ID", "Mem", "VCPUs", "State", "Time(s)"]
    assert re.match(r"^web1 +1 +1024 +2 +r----- +\d+\.\d$", xl[2])
    assert re.match(r"^build1 +3 +512 +1 +--p--- +\d+\.\d$", xl[4])


def test_dominfo_block_by_id_name_uuid():
    by_name = ok("dominfo", "web1")
    for label, value in (("Id", "1"), ("Name", "web1"), ("UUID", "6f1c2a52-0d5e-4c1b-9f3a-2b7d8e9a0c11"),
                         ("OS Type", "linux"), ("State", "running"), ("CPU(s)", "2"),
                         ("Max memory", "2097152 KiB"), ("Used memory", "1048576 KiB"), ("Xen state", "r-----")):
        assert f"{label + ':':<15} {value}\n" in by_name
    assert re.search(r"^CPU time:       \d+\.\ds$", by_name, re.M)
    assert "Name:           web1" in ok("dominfo", "6f1c2a52-0d5e-4c1b-9f3a-2b7d8e9a0c11")
    assert "Name:           web1" in ok("dominfo", "--domain", "1")


def test_nodeinfo_block():
    out = ok("nodeinfo")
    assert "CPU model:           x86_64\n" in out
    assert "CPU(s):              4\n" in out
    assert "NUMA cell(s):        1\n" in out
    assert re.search(r"^Memory size:         \d+ KiB$", out, re.M)
    assert re.search(r"^CPU frequency:       \d+ MHz$", out, re.M)


def test_vcpuinfo_blocks():
    out = ok("vcpuinfo", "db1")
    blocks = [b for b in out.split("\n\n") if b.strip()]
    assert len(blocks) == 2
    assert blocks[0].startswith("VCPU:           0\nCPU:            ")
    assert "CPU Affinity:   yyyy" in blocks[0]
    assert re.search(r"State:          (running|blocked|offline)", blocks[1])
    assert "CPU Affinity:   0-3" in ok("vcpuinfo", "db1", "--pretty")


def test_host_commands():
    assert "Running hypervisor: Xen 4." in ok("version")
    caps = ok("capabilities")
    assert re.search(r"^ABI variant:         \S+ \(x86_64, layout x86_64/", caps, re.M)
    assert re.search(r"^Detection:           \S", caps, re.M)
    assert re.search(r"^Detection probes:    domctl 0x[0-9a-f]+ accepted", caps, re.M)
    assert re.match(r"^Total: +\d+ KiB\n$", ok("freecell"))
    cells = ok("freecell", "--all")
    assert re.search(r"^ +0: +\d+ KiB$", cells, re.M) and "Total:" in cells
    sched = ok("sched")
    assert sched.startswith("Scheduler: credit")
    assert re.search(r"^ web1 +1 +256 +0$", sched, re.M)
    assert "(XEN) Xen version" in ok("dmesg")
    assert ok("uri") == URI + "\n"


def test_small_monitoring_commands():
    assert ok("domstate", "build1") == "paused\n"
    assert ok("domstate", "build1", "--reason") == "paused (user)\n"
    assert ok("domid", "web1") == "1\n"
    assert ok("domname", "2") == "db1\n"
    assert ok("domuuid", "web1") == "6f1c2a52-0d5e-4c1b-9f3a-2b7d8e9a0c11\n"
    assert ok("vcpucount", "web1") == "maximum      live           2\ncurrent      live           2\n"
    assert ok("schedinfo", "web1") == "Scheduler      : credit\nweight         : 256\ncap            : 0\n"
    pin = ok("vcpupin", "web1").splitlines()
    assert pin[:4] == [" VCPU   CPU Affinity", "-" * 22, " 0      0-3", " 1      0-3"]
    assert ok("vcpupin", "web1", "1").splitlines()[2] == " 1      0-3"


def test_help():
    out = ok("help")
    assert out.startswith("Grouped commands:")
    for name in ("list", "dominfo", "vcpupin", "top", "capabilities", "setmaxmem"):
        assert re.search(rf"^    {name} ", out, re.M), name
    one = ok("help", "vcpupin")
    assert "SYNOPSIS\n    vcpupin <domain> [<vcpu>] [<cpulist>]" in one
    assert "help keyword 'control'" in ok("help", "control")
    assert "did you mean 'dominfo'" in fails("help", "domnifo")


def test_version_and_usage():
    rc, out, err = xpsh("--version", uri=None)
    assert rc == 0 and out == f"xpsh (xenprivcmd) {xenprivcmd.__version__}\n"
    rc, out, err = xpsh("--help", uri=None)
    assert rc == 0 and "--dry-run" in out


# -- control ----------------------------------------------------------------------------------------

def test_control_commands_change_the_simulated_host():
    out = ok("suspend web1; domstate web1; resume web1; domstate web1; setmaxmem web1 1536M; dominfo web1;"
             " vcpupin web1 0 0-3,^2; vcpupin web1 0; schedinfo web1 --set weight=512 --set cap=10;"
             " destroy db1; list --all --name")
    lines = out.splitlines()
    assert lines[0] == "Domain 'web1' suspended"
    assert lines[1] == "paused"
    assert lines[2] == "Domain 'web1' resumed"
    assert lines[3] == "running"
    assert "Max memory:     1572864 KiB" in out
    assert " 0      0-1,3" in out
    assert "weight         : 512\ncap            : 10\n" in out
    assert "Domain 'db1' destroyed" in out
    assert out.rstrip().splitlines()[-3:] == ["Domain-0", "web1", "build1"]


@pytest.mark.parametrize("size,kib", [("1G", 1 << 20), ("1GiB", 1 << 20), ("1GB", 976563), ("2048", 2048),
                                      ("2048k", 2048), ("2048KB", 2000), ("512M", 512 << 10), ("1T", 1 << 30),
                                      ("4096b", 4), ("1000b", 1)])
def test_setmaxmem_size_suffixes(sim, size, kib):
    rc, out, err = inproc("setmaxmem", "web1", size, "--force", handle=sim)
    assert rc == 0, err
    assert sim.domain_info(1).max_pages == kib // 4  # Xen keeps max_memkb >> 2 pages


def test_vcpupin_r_and_soft(sim):
    assert inproc("vcpupin", "web1", "0", "1", handle=sim)[0] == 0
    assert sorted(sim.vcpu_affinity(1, 0).hard) == [1]
    assert inproc("vcpupin", "web1", "0", "r", handle=sim)[0] == 0
    assert sorted(sim.vcpu_affinity(1, 0).hard) == [0, 1, 2, 3]
    assert inproc("vcpupin", "web1", "1", "2-3", "--soft", handle=sim)[0] == 0
    aff = sim.vcpu_affinity(1, 1)
    assert sorted(aff.soft or ()) == [2, 3] and sorted(aff.hard) == [0, 1, 2, 3]


def test_setvcpus(sim):
    rc, out, err = inproc("setvcpus", "web1", "2", handle=sim)
    assert rc == 0 or err.startswith("error: "), err
    assert "Traceback" not in err


def test_dom0_is_protected_without_force(sim):
    before = sim.domain_info(0)[:6]
    for argv in (["destroy", "0"], ["suspend", "Domain-0"], ["setmem", "0", "1G"], ["setmaxmem", "Domain-0", "1G"]):
        rc, out, err = inproc(*argv, handle=sim)
        assert rc == 1 and err.startswith("error: refusing to ") and "--force" in err, (argv, err)
    assert sim.domain_info(0)[:6] == before
    rc, out, err = inproc("-N", "suspend", "0", "--force", handle=sim)
    assert rc == 0 and "pausedomain(domid=0)" in out


# -- errors -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args,expect", [
    (["dominfo", "nosuch"], "error: failed to get domain 'nosuch'"),
    (["dominfo", "999"], "error: failed to get domain '999'"),
    (["setmem", "web1", "1Q"], "error: invalid size '1Q'"),
    (["setmem", "web1", "lots"], "error: invalid size 'lots'"),
    (["vcpupin", "web1", "0", "0-99"], "error: invalid cpulist '0-99'"),
    (["vcpupin", "web1", "0", "a-b"], "error: invalid cpulist 'a-b'"),
    (["dominfo"], "error: command 'dominfo' requires <domain> option"),
    (["list", "--bogus"], "error: command 'list' doesn't support option --bogus"),
    (["lst"], "error: unknown command: 'lst'; did you mean 'list'?"),
    (["domnifo", "1"], "did you mean 'dominfo'?"),
    (["--bogus", "list"], "error: unknown option '--bogus'"),
    (["schedinfo", "web1", "--set", "wieght=3"], "did you mean 'weight'?"),
    (["schedinfo", "web1", "--set", "weight=0"], "error: weight 0 is out of range"),
    (["vcpupin", "web1", "7", "1"], "error: vcpu 7 is out of range"),
    (["dominfo", "web1", "extra"], "error: command 'dominfo': unexpected argument 'extra'"),
    (["top", "--iterations", "x"], "expects an integer"),
    (["dominfo 'unterminated"], "error: cannot parse command line"),
])
def test_bad_input_is_one_error_line(args, expect):
    assert expect in fails(*args)


def test_hypercall_errors_name_the_hypercall_and_errno(local_sim):
    local_sim.transport.faults.fail(1, op="domctl", subop="pausedomain")  # EPERM
    rc, out, err = inproc("suspend", "web1", handle=local_sim)
    assert rc == 1
    assert err.startswith("error: domctl pausedomain(domid=1): ") and "(EPERM)" in err


def test_not_a_dom0_is_one_error_line():
    if os.path.exists("/dev/xen/privcmd") or os.path.exists("/proc/xen/privcmd"):
        pytest.skip("this machine is a Xen dom0")
    line = fails("list", uri=None)
    assert "not a Xen dom0" in line
    assert "not a Xen dom0" in fails("list", uri="xen:///")
    assert "unknown hypervisor URI" in fails("list", uri="nope:///")


def test_help_and_version_need_no_connection():
    assert "Grouped commands" in ok("help", uri="nope:///")


def test_default_uri_from_environment():
    out = ok("list", "--name", uri=None, env={"XPSH_DEFAULT_CONNECT_URI": URI})
    assert "web1" in out


def test_several_commands_keep_going_and_fail_overall():
    rc, out, err = xpsh("domid web1; dominfo nosuch; domid db1")
    assert rc == 1
    assert out == "1\n2\n"
    assert err.count("error:") == 1


# -- --json -------------------------------------------------------------------------------------------

DOMAIN_FIELDS = {"id": int, "name": str, "uuid": str, "state": str, "state_letters": str, "memory_kib": int,
                 "max_memory_kib": int, "vcpus": int, "online_vcpus": int, "cpu_time_ns": int}
DOMINFO_FIELDS = dict(DOMAIN_FIELDS, os_type=str, hvm=bool, hap=bool, paused=bool, dying=bool,
                      shutdown_reason=(str, type(None)), cpupool=(int, type(None)), ssidref=int, flags=int)
NODEINFO_FIELDS = {"cpu_model": str, "cpus": int, "max_cpu_id": int, "cpu_mhz": int, "sockets": int,
                   "cores_per_socket": int, "threads_per_core": int, "numa_cells": int, "memory_kib": int,
                   "free_memory_kib": int, "virt_caps": list}
VCPU_FIELDS = {"vcpu": int, "cpu": (int, type(None)), "state": str, "online": bool, "cpu_time_ns": int,
               "hard_affinity": list, "affinity_map": str, "soft_affinity": (list, type(None))}


def has_fields(obj: Dict[str, Any], fields: Dict[str, Any]) -> None:
    for k, t in fields.items():
        assert k in obj, k
        assert isinstance(obj[k], t), (k, obj[k], t)


def jout(*args: str) -> Any:
    return json.loads(ok("--json", *args))


def test_json_list_dominfo_nodeinfo_vcpuinfo():
    lst = jout("list", "--all")
    assert [d["name"] for d in lst["domains"]] == ["Domain-0", "web1", "db1", "build1"]
    for d in lst["domains"]:
        has_fields(d, DOMAIN_FIELDS)
    info = jout("dominfo", "web1")
    has_fields(info, DOMINFO_FIELDS)
    assert info["id"] == 1 and info["state"] == "running" and info["max_memory_kib"] == 2 << 20
    has_fields(jout("nodeinfo"), NODEINFO_FIELDS)
    vc = jout("vcpuinfo", "db1")
    assert vc["domain"] == {"id": 2, "name": "db1"}
    for v in vc["vcpus"]:
        has_fields(v, VCPU_FIELDS)
        assert v["hard_affinity"] == [0, 1, 2, 3] and v["affinity_map"] == "yyyy"


@pytest.mark.parametrize("args,keys", [
    (["version"], {"library", "uri", "hypervisor"}),
    (["uri"], {"uri"}),
    (["capabilities"], {"hypervisor", "capabilities", "virt_caps", "scheduler", "abi", "detection", "buffers"}),
    (["freecell", "--all"], {"cells", "total_free_kib"}),
    (["sched"], {"scheduler", "sched_id", "domains"}),
    (["dmesg"], {"console"}),
    (["domstate", "web1"], {"id", "name", "state", "state_letters", "reason"}),
    (["domid", "web1"], {"id", "name", "uuid"}),
    (["domname", "1"], {"id", "name", "uuid"}),
    (["domuuid", "web1"], {"id", "name", "uuid"}),
    (["vcpucount", "web1"], {"id", "name", "vcpus", "online_vcpus"}),
    (["schedinfo", "web1"], {"domain", "scheduler", "weight", "cap"}),
    (["vcpupin", "web1"], {"domain", "vcpus"}),
    (["top", "--iterations", "2", "--delay", "0.01"], {"iterations"}),
    (["help"], {"commands"}),
    (["help", "list"], {"name", "group", "summary", "synopsis", "description", "aliases", "options"}),
    (["suspend", "web1"], {"domain", "action", "ok"}),
    (["resume", "build1"], {"domain", "action", "ok"}),
    (["destroy", "db1"], {"domain", "action", "ok"}),
    (["setmem", "web1", "1G"], {"domain", "action", "ok", "target_kib", "max_memory_kib"}),
    (["setmaxmem", "web1", "1G"], {"domain", "action", "ok", "max_memory_kib"}),
    (["vcpupin", "web1", "0", "1"], {"domain", "action", "ok", "vcpu", "hard_affinity"}),
    (["setvcpus", "web1", "1"], {"domain", "action", "ok", "online_vcpus"}),
    (["domifstat", "web1"], {"domain", "interfaces"}),
    (["domblkstat", "db1"], {"domain", "disks"}),
    (["domstats"], {"domains"}),
    (["schedinfo", "web1", "--set", "weight=300"], {"domain", "scheduler", "weight", "cap"}),
])
def test_every_command_has_json(args, keys):
    data = jout(*args)
    assert keys <= set(data), (args, data)


def test_json_scalars():
    assert jout("schedinfo", "web1", "--weight", "300")["weight"] == 300
    top = jout("top", "--iterations", "2", "--delay", "0.01")["iterations"]
    assert len(top) == 2 and top[0]["interval_s"] is None and isinstance(top[1]["interval_s"], float)
    assert {d["name"] for d in top[1]["domains"]} == {"Domain-0", "web1", "db1", "build1"}
    assert all(isinstance(d["cpu_percent"], float) for d in top[1]["domains"])
    assert jout("suspend", "web1") == {"domain": {"id": 1, "name": "web1"}, "action": "suspend", "ok": True,
                                       "changed": True}


def test_json_several_commands_one_document_per_line():
    out = ok("--json", "domid web1; domname 2")
    docs = [json.loads(line) for line in out.splitlines()]
    assert [d["id"] for d in docs] == [1, 2]


# -- read-only, dry run, timing -----------------------------------------------------------------------

CHANGING = [["suspend", "web1"], ["resume", "build1"], ["destroy", "db1"], ["setmem", "web1", "1G"],
            ["setmaxmem", "web1", "1G"], ["setvcpus", "web1", "1"], ["vcpupin", "web1", "0", "1"],
            ["schedinfo", "web1", "--set", "weight=5"], ["schedinfo", "web1", "--cap", "5"], ["dmesg", "-c"]]


@pytest.mark.parametrize("argv", CHANGING)
def test_readonly_refuses_before_any_hypercall(argv):
    rc, out, err = xpsh("-r", *argv, env={"XPSH_DEBUG_COUNT": "1"})
    assert rc == 1 and out == ""
    assert f"error: command '{argv[0]}' changes state: refused in read-only mode (-r)" in err
    assert issued_count(err) == 0
    assert "Traceback" not in err


def test_readonly_issues_nothing_more_after_reads(sim):
    rc, out, err = xpsh("-r", "list", env={"XPSH_DEBUG_COUNT": "1"})
    assert rc == 0
    base = issued_count(err)
    rc, out, err = xpsh("-r", "list; suspend web1; destroy db1", env={"XPSH_DEBUG_COUNT": "1"})
    assert rc == 1 and issued_count(err) == base
    before = {d.domid: d.flags for d in sim.domains()}
    rc, out, err = inproc("-r", "suspend web1; destroy db1; vcpupin web1 0 1; vcpupin web1", handle=sim)
    assert rc == 1 and " 0      0-3" in out
    assert {d.domid: d.flags for d in sim.domains()} == before
    # reads still work
    assert inproc("-r", "list", "--name", handle=sim)[1].split() == ["Domain-0", "web1", "db1", "build1"]


def test_dry_run_issues_no_changing_hypercall(sim):
    before = {d.domid: (d.flags, d.max_pages, d.vcpus) for d in sim.domains()}
    aff_before = sim.vcpu_affinity(1, 0)
    weight_before = sim.sched_params(1)
    console_before = sim.read_console()
    calls_log_start = len(sim.transport.log) if hasattr(sim.transport, "log") else 0
    rc, out, err = inproc("-N", "suspend web1; resume build1; destroy db1; setmem web1 1G; setmaxmem web1 3G;"
                          " vcpupin web1 0 1; schedinfo web1 --set weight=5 --set cap=7; dmesg -c", handle=sim)
    assert rc == 0, err
    assert "domctl pausedomain(domid=1)" in out
    assert "domctl unpausedomain(domid=3)" in out
    assert "domctl destroydomain(domid=2)" in out
    assert "domctl max_mem(domid=1) max_memkb=1049600" in out  # setmem 1G: + libxl's 1 MiB
    assert "domctl max_mem(domid=1) max_memkb=3145728" in out
    assert re.search(r"domctl setvcpuaffinity\(domid=1\) vcpu=0 flags=HARD cpumap_hard\.bitmap=1 ", out)
    assert re.search(r"domctl scheduler_op\(domid=1\) sched_id=5 cmd=putinfo credit\.weight=5 credit\.cap=7", out)
    assert "sysctl readconsole clear=1" in out
    assert "Domain 'web1' suspended" not in out  # no claim of success
    assert {d.domid: (d.flags, d.max_pages, d.vcpus) for d in sim.domains()} == before
    assert sim.vcpu_affinity(1, 0) == aff_before
    assert sim.sched_params(1) == weight_before
    assert sim.read_console() == console_before
    assert sim.domain_info(2).domid == 2  # db1 not destroyed
    if hasattr(sim.transport, "log"):
        subops = [str(e[1]) for e in list(sim.transport.log)[calls_log_start:]]
        for bad in ("pausedomain", "unpausedomain", "destroydomain", "max_mem", "setvcpuaffinity"):
            assert not any(bad == s or s.endswith("_" + bad) for s in subops), (bad, subops)


def test_dry_run_subprocess_timing_shows_only_reads():
    rc, out, err = xpsh("-N", "-t", "suspend web1; destroy db1; domstate web1; list --name")
    assert rc == 0, err
    assert "would issue 1 hypercall" in out and "domctl pausedomain(domid=1)" in out
    assert "running\nDomain-0\nweb1\ndb1\nbuild1\n" in out  # nothing changed
    assert "pausedomain" not in err and "destroydomain" not in err
    assert "getdomaininfolist" in err


def test_dry_run_json():
    data = json.loads(ok("-N", "--json", "setmaxmem", "web1", "1G"))
    assert data["dry_run"] is True and data["command"] == "setmaxmem"
    (call,) = data["hypercalls"]
    assert call == {"op": 36, "hypercall": "domctl", "subop": "max_mem", "domid": 1, "fields": {"max_memkb": 1 << 20}}


def test_timing_lists_hypercalls_with_latency():
    rc, out, err = xpsh("-t", "domstate", "1")
    assert rc == 0 and out == "running\n"
    assert re.search(r"^\(Time: \d+\.\d{3} ms, \d+ hypercalls?\)$", err, re.M)
    assert re.search(r"^  domctl getdomaininfo\(domid=1\) +\d+\.\d us$", err, re.M)
    rc, out, err = xpsh("-t", "--json", "domstate", "1")
    t = json.loads(err.splitlines()[-1])
    assert t["time_ms"] > 0 and any(h["subop"] == "getdomaininfo" and h["domid"] == 1 for h in t["hypercalls"])


# -- top, dmesg ---------------------------------------------------------------------------------------

def test_top_batch_iterations():
    out = ok("top", "--iterations", "2", "--delay", "0.05")
    rounds = [r for r in out.split("xpsh top - ") if r.strip()]
    assert len(rounds) == 2
    assert "4 domains: 2 running, 1 blocked, 1 paused" in rounds[0]
    assert re.search(r"NAME +STATE +CPU\(sec\) +CPU\(%\) +MEM\(k\) +MEM\(%\) +MAXMEM\(k\) +MAXMEM\(%\) +VCPUS +NETS"
                     r" +NETTX\(k\) +NETRX\(k\) +VBDS +VBD_OO +VBD_RD +VBD_WR +VBD_RSECT +VBD_WSECT +SSID$", rounds[0], re.M)
    # xentop's state letters (dsbcpr); CPU(%) 0.0 until a second round has a delta
    assert re.search(r"^ +web1 -----r +\d+ +0\.0 +1048576", rounds[0], re.M)
    assert re.search(r"^ +web1 -----r +\d+ +\d+\.\d +1048576", rounds[1], re.M)
    assert "\x1b[" not in out


def test_dmesg_clear_and_follow(local_sim):
    local_sim.transport.host.console.line("(XEN) hello from the test")
    rc, out, err = inproc("dmesg; dmesg -c; dmesg", handle=local_sim)
    assert rc == 0
    assert out.count("hello from the test") == 2
    rc, out, err = inproc("dmesg", handle=local_sim)
    assert "hello from the test" not in out
    local_sim.transport.host.console.line("(XEN) line one")
    rc, out, err = inproc("dmesg", "-f", "--count", "2", "--interval", "0.01", handle=local_sim)
    assert rc == 0 and out.count("line one") == 1


def test_injected_handle_is_restored(sim):
    t = sim.transport
    assert inproc("-t", "-N", "suspend", "web1", handle=sim)[0] == 0
    assert sim.transport is t and not sim.closed
