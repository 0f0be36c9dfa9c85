"""What a virsh / xl user types (issue 26, "Tried as a new user would"), on the simulator:
one test per item of the issue's list, each failing on the code before its fix.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Dict, Iterator, Set

import pytest

import xenprivcmd

from .test_shell import ROOT, fails, inproc, ok, xpsh


@pytest.fixture
def sim() -> Iterator[Any]:
    h = xenprivcmd.open("sim:///default")
    yield h
    h.close()


def test_pauses_do_not_stack_in_the_shell(sim):
    """suspend web1; suspend web1; resume web1 left web1 paused (Xen counts pauses) while xpsh said resumed."""
    rc, out, err = inproc("suspend web1; suspend web1; resume web1; domstate web1", handle=sim)
    assert rc == 0, err
    assert out.splitlines() == ["Domain 'web1' suspended", "Domain 'web1' suspended", "Domain 'web1' resumed",
                                "running"]
    assert not sim.domain_info(1).paused
    # the second suspend issues no pausedomain at all (as virsh on libxl)
    rc, out, err = inproc("-N", "suspend build1", handle=sim)
    assert "would issue no state-changing hypercall" in out, out
    # paused twice by someone else: resume says it stays paused
    sim.pause(1)
    sim.pause(1)
    rc, out, err = inproc("resume web1", handle=sim)
    assert rc == 0 and "warning: domain 'web1' is still paused" in err and sim.domain_info(1).paused


def test_online_vcpus_where_xl_and_virsh_show_them(sim):
    sim.set_online_vcpus(1, 1)  # web1: 2 vcpus, 1 online
    xl = next(ln.split() for ln in inproc("list", "--xl", handle=sim)[1].splitlines()[1:] if ln.split()[0] == "web1")
    assert xl[3] == "1"  # xl list's VCPUs: the online ones
    assert "CPU(s):         1\n" in inproc("dominfo", "web1", handle=sim)[1]
    assert "maximum      live           2\ncurrent      live           1\n" == inproc("vcpucount", "web1", handle=sim)[1]


def test_vcpu_set_changes_the_online_vcpus_through_xenstore(sim):
    store = sim.transport.xenstore()
    rc, out, err = inproc("vcpu-set web1 1", handle=sim)
    assert rc == 0, err
    assert store.read("/local/domain/1/cpu/1/availability") == b"offline"
    assert sim.domain_info(1).nr_online_vcpus == 1 and sim.domain_info(1).vcpus == 2
    assert inproc("setvcpus web1 2 --live", handle=sim)[0] == 0 and sim.domain_info(1).nr_online_vcpus == 2
    rc, out, err = inproc("setvcpus web1 3", handle=sim)
    assert rc == 1 and "can run 1..2 vcpus (its maximum), not 3" in err and "--maximum" in err
    rc, out, err = inproc("setvcpus Domain-0 1", handle=sim)
    assert rc == 1 and "--force" in err
    rc, out, err = inproc("-N", "vcpu-set web1 1", handle=sim)
    assert "xenstore write /local/domain/1/cpu/1/availability = 'offline'" in out
    assert sim.domain_info(1).nr_online_vcpus == 2  # nothing was written


def test_setvcpus_maximum_and_a_lowering_on_old_xen_in_words():
    with xenprivcmd.open("sim:///?xen=4.4") as old:
        calls = old.transport.calls
        rc, out, err = inproc("setvcpus web1 1 --maximum", handle=old)
        assert rc == 1 and err.startswith("error: setvcpus: Xen 4.4") and "cannot lower" in err
        assert "EINVAL" not in err and "without --maximum" in err
        assert "max_vcpus" not in [e[1] for e in list(old.transport.log)[-(old.transport.calls - calls):]]
        assert inproc("setvcpus web1 3 --maximum", handle=old)[0] == 0 and old.domain_info(1).vcpus == 3


def test_errors_in_the_shells_words():
    for args, wanted in ((("setmem", "web1", "0"), "--force"), (("setmem", "web1", "4G"), "--force"),
                         (("setmaxmem", "web1", "1M"), "--force")):
        line = fails(*args)
        assert wanted in line and "force=True" not in line and "set_max_mem" not in line, line
    # a limit the shell can raise is named by its command
    with xenprivcmd.open("sim:///default") as h:
        h.transport.xenstore().rm("/local/domain/1/memory/static-max")
        rc, out, err = inproc("setmem", "web1", "4G", handle=h)
        assert rc == 1 and "raise the limit with setmaxmem, or use --force" in err, err


def test_a_failed_command_in_a_json_list_writes_a_json_error():
    rc, out, err = xpsh("--json", "dominfo web1; dominfo nosuch; domstate web1")
    assert rc == 1
    docs = [json.loads(line) for line in out.splitlines()]
    assert len(docs) == 3 and docs[0]["name"] == "web1" and docs[2]["state"] == "running"
    assert docs[1] == {"command": "dominfo", "error": "failed to get domain 'nosuch': no domain named 'nosuch'"}
    assert err == "error: failed to get domain 'nosuch': no domain named 'nosuch'\n"


def _keys(doc: Any, out: Set[str]) -> Set[str]:
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.add(k)
            _keys(v, out)
    elif isinstance(doc, list):
        for v in doc:
            _keys(v, out)
    return out


#: command lines whose JSON the checks below read (the changing ones on a fresh host each)
JSON_COMMANDS = ["list", "dominfo web1", "vcpuinfo web1", "vcpu-list", "vcpupin web1", "vcpucount web1",
                 "schedinfo web1", "sched", "domstate web1", "top", "domifstat web1", "domblkstat web1",
                 "domstats", "uptime", "vcpupin web1 0 1", "vcpupin web1 0 1 --soft", "setmaxmem web1 3G",
                 "setmem web1 1G", "setvcpus web1 1", "suspend web1", "resume build1"]


def test_one_key_name_per_idea():
    keys: Dict[str, Set[str]] = {}
    for line in JSON_COMMANDS:
        keys[line] = _keys(json.loads(ok("--json", line)), set())
    every = set().union(*keys.values())
    # affinity: hard_affinity and soft_affinity everywhere; counts of vcpus: vcpus and online_vcpus
    assert not every & {"affinity", "hard", "soft", "maximum", "current", "count"}, every
    assert "hard_affinity" in keys["vcpuinfo web1"] & keys["vcpu-list"] & keys["vcpupin web1"] & keys["vcpupin web1 0 1"]
    assert "soft_affinity" in keys["vcpupin web1 0 1 --soft"]
    # memory_kib is the memory a domain has now; its limit is max_memory_kib
    assert "memory_kib" not in keys["setmaxmem web1 3G"] and "max_memory_kib" in keys["setmaxmem web1 3G"]
    assert "memory_kib" not in keys["setmem web1 1G"]
    assert {"vcpus", "online_vcpus"} <= keys["vcpucount web1"] and "online_vcpus" in keys["setvcpus web1 1"]


def test_the_json_schema_is_documented():
    """Every key the commands' JSON has is in the shell README's JSON schema section."""
    readme = Path(ROOT, "xenprivcmd", "shell", "README.md").read_text()
    schema = readme[readme.index("## JSON schema"):]
    documented = set(re.findall(r"`(\w+)`", schema)) | set(re.findall(r'"(\w+)"', schema))
    for line in JSON_COMMANDS + ["domstats --json"]:
        missing = _keys(json.loads(ok("--json", *line.split())), set()) - documented
        assert not missing, (line, missing)


def test_global_options_after_the_command():
    assert json.loads(ok("list", "--json"))["domains"][0]["id"] == 0
    assert ok("list", "-q").splitlines()[0].split()[:2] == ["0", "Domain-0"]  # no header
    rc, out, err = xpsh("suspend", "web1", "-r")
    assert rc == 1 and "refused in read-only mode" in err
    assert "sim:///?xen=4.10" in ok("uri", "-c", "sim:///?xen=4.10", uri=None)
    assert "Xen version" in ok("dmesg", "-c")  # dmesg's own -c (clear), not --connect
    assert "(Time:" in xpsh("domstate", "web1", "-t")[2]


@pytest.mark.parametrize("alias, command", [("mem-set", "setmem"), ("mem-max", "setmaxmem"), ("vcpu-set", "setvcpus"),
                                            ("vcpu-pin", "vcpupin"), ("sched-credit", "sched"),
                                            ("sched-credit2", "sched")])
def test_xls_command_names_are_aliases(alias, command):
    assert json.loads(ok("--json", "help", alias))["name"] == command


def test_xl_syntax_of_the_aliases(sim):
    assert inproc("mem-set web1 512M", handle=sim)[0] == 0
    assert sim.transport.xenstore().read("/local/domain/1/memory/target") == b"524288"
    assert inproc("vcpu-pin web1 0 2", handle=sim)[0] == 0 and sim.vcpu_affinity(1, 0).hard == {2}
    rc, out, err = inproc("sched-credit -d web1 -w 512 -c 50", handle=sim)
    assert rc == 0, err
    assert sim.sched_params(1).weight == 512 and sim.sched_params(1).cap == 50
    assert re.search(r"^ web1 +1 +512 +50$", inproc("sched-credit -d web1", handle=sim)[1], re.M)
    assert "name it with -d DOMAIN" in inproc("sched-credit -w 5", handle=sim)[2]


def test_an_empty_command_line_is_no_command():
    rc, out, err = xpsh("")
    assert (rc, out, err) == (0, "", "")
    rc, out, err = xpsh("  ")
    assert (rc, out, err) == (0, "", "")
