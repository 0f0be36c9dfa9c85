"""xen+ssh:// to a real dom0 (Debian's Xen under QEMU, Debian's sshd in it), from the host.

The dom0's python3 has no xenprivcmd on its path for ssh sessions: the
package ships itself.  ``xl`` is run in the dom0 over plain ssh.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any, Dict

import pytest

import xenprivcmd
from xenprivcmd import errors

from .. import scenarios
from .conftest import Dom0

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def xpsh(uri: str, *args: str) -> "subprocess.CompletedProcess[str]":
    env = {k: v for k, v in os.environ.items() if not k.startswith("XPSH_")}
    env["PYTHONPATH"] = ROOT
    return subprocess.run([sys.executable, "-m", "xenprivcmd", "-c", uri, *args], capture_output=True, text=True,
                          env=env, timeout=600, cwd=ROOT)


def by_name(rows: Any, key: str) -> Dict[str, Any]:
    return {r[key]: r for r in rows}


def test_json_list_equals_xl_list(dom0: Dom0):
    p = xpsh(dom0.uri(), "--json", "list")
    assert p.returncode == 0, p.stderr
    ours = json.loads(p.stdout)["domains"]
    xl = dom0.xl_list()
    assert len(ours) == len(xl) >= 2, (ours, xl)
    mine = by_name(ours, "name")
    for row in xl:
        d = mine[row["name"]]
        assert str(d["id"]) == row["id"]
        assert str(d["memory_kib"] // 1024) == row["mem"]
        assert str(d["online_vcpus"]) == row["vcpus"]
        assert ("p" in d["state_letters"]) == ("p" in row["state"])
        assert d["cpu_time_ns"] / 1e9 <= float(row["time"]) + 0.1  # xl ran later
    assert "guest1" in mine and "Domain-0" in mine


def test_pause_over_ssh_is_seen_by_xl(dom0: Dom0):
    uri = dom0.uri()
    assert "p" not in by_name(dom0.xl_list(), "name")["guest1"]["state"]
    p = xpsh(uri, "suspend", "guest1")
    assert p.returncode == 0 and "suspended" in p.stdout, p.stderr
    try:
        assert "p" in by_name(dom0.xl_list(), "name")["guest1"]["state"]
    finally:
        p = xpsh(uri, "resume", "guest1")
        assert p.returncode == 0, p.stderr
    assert "p" not in by_name(dom0.xl_list(), "name")["guest1"]["state"]


def test_shipped_to_a_dom0_without_xenprivcmd(dom0: Dom0):
    out = dom0.ssh("python3 -c 'import xenprivcmd' 2>&1; echo status=$?")
    assert "ModuleNotFoundError" in out and "status=1" in out, out
    with xenprivcmd.open(dom0.uri()) as h:
        hello = h.transport.hello
        assert hello["source"] in ("shipped", "cached") and hello["executable"].startswith("/usr/bin/python3")
        assert h.transport.kind == "ssh" and "/dev/xen/privcmd" in h.transport.describe()
        v = h.version()
        info = dict(line.split(":", 1) for line in dom0.ssh(". /etc/profile; xl info").splitlines()
                    if ":" in line)
        info = {k.strip(): x.strip() for k, x in info.items()}
        assert (info["xen_major"], info["xen_minor"]) == (str(v.major), str(v.minor))
        assert h.abi.xen[:2] == (v.major, v.minor)


def test_scenarios_over_ssh(dom0: Dom0):
    """The scenario suite, on the real hypervisor, through the link."""
    with xenprivcmd.open(dom0.uri()) as h:
        results = scenarios.run_all(h)
        trips = h.round_trips
    failed = {k: repr(v) for k, v in results.items() if v is not None}
    assert not failed, failed
    assert trips > len(results)


def test_xenstore_commands_over_ssh(dom0: Dom0):
    """uptime, setmem and -N shutdown go through the dom0's own xenstore, as there."""
    uri = dom0.uri()
    p = xpsh(uri, "uptime")
    assert p.returncode == 0, p.stderr
    theirs = dom0.ssh(". /etc/profile; xl uptime").splitlines()
    ours = p.stdout.splitlines()
    assert ours[0] == theirs[0]
    assert sorted(ln.split()[0] for ln in ours[1:]) == sorted(ln.split()[0] for ln in theirs[1:]), (ours, theirs)
    domid = by_name(dom0.xl_list(), "name")["guest1"]["id"]
    node = f"/local/domain/{domid}/memory/target"
    target = int(dom0.ssh(f". /etc/profile; xenstore-read {node}").strip())
    # the target it has now (no change for the tests that follow), written again over the link
    p = xpsh(uri, "--json", "setmem", "guest1", f"{target}k")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["target_kib"] == target
    assert int(dom0.ssh(f". /etc/profile; xenstore-read {node}").strip()) == target
    p = xpsh(uri, "-N", "shutdown guest1")
    assert p.returncode == 0, p.stderr
    assert f"xenstore write /local/domain/{domid}/control/shutdown = 'poweroff'" in p.stdout, p.stdout
    assert dom0.ssh(f". /etc/profile; xenstore-read /local/domain/{domid}/control/shutdown 2>/dev/null; true") \
        .strip() == ""
    assert "guest1" in by_name(dom0.xl_list(), "name")


def test_forced_read_only_helper_on_a_real_dom0(dom0: Dom0):
    with xenprivcmd.open(dom0.uri(key="readonly")) as h:
        assert h.transport.hello["source"] == "helper" and h.transport.hello["read_only"]
        guest = h.lookup("guest1").domid
        h.read_only = False  # the refusal must come from the dom0's helper
        for call in (lambda: h.pause(guest), lambda: h.destroy(guest)):
            with pytest.raises(errors.XenprivcmdError, match="read-only"):
                call()
        assert h.domain_info(guest).paused is False
    row = by_name(dom0.xl_list(), "name")["guest1"]
    assert "p" not in row["state"]


def test_non_root_is_told_permission_denied(dom0: Dom0):
    with pytest.raises(errors.RemotePermissionError) as info:
        xenprivcmd.open(dom0.uri(user="monitor"))
    assert "permission denied" in str(info.value) and isinstance(info.value, errors.PrivcmdPermissionError)
    p = xpsh(dom0.uri(user="monitor"), "list")
    assert p.returncode == 1 and p.stderr.startswith("error: monitor@127.0.0.1") and "run as root" in p.stderr


def test_latency_over_ssh_reported(dom0: Dom0):
    """Not a timed assertion: the per-op figures go to results/ for the README."""
    with xenprivcmd.open(dom0.uri()) as h:
        h.domain_info(0)
        n = 50
        t = time.perf_counter()
        for _ in range(n):
            h.domain_info(0)
        per_op = (time.perf_counter() - t) / n
        before = h.round_trips
        h.domains()
        assert h.round_trips == before + 1
    out = os.path.join(ROOT, "results", "realxen-ssh.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"domain_info_over_ssh_us": round(per_op * 1e6, 1), "round_trips_per_op": 1}, f)
    print(f"domain_info over ssh to the QEMU dom0: {per_op * 1e6:.0f} us per op, 1 round trip")


def test_io_counters_over_ssh_are_the_remote_dom0s(dom0: Dom0):
    """issue 26: over xen+ssh:// interface_stats / block_stats read the remote dom0's sysfs (its device guest)."""
    def sysfs() -> Dict[str, int]:
        out = dom0.ssh("cd /sys/class/net && for d in vif*.0; do echo $d $(cat $d/statistics/tx_bytes) "
                       "$(cat $d/statistics/rx_bytes); done; cd /sys/bus/xen-backend/devices && for d in vbd-*; do "
                       "echo $d $(cat $d/statistics/rd_req) $(cat $d/statistics/wr_sect); done")
        got = {}
        for line in out.splitlines():
            name, a, b = line.split()
            got[name + ":a"], got[name + ":b"] = int(a), int(b)
        return got

    before = sysfs()
    assert before, "the ssh suite's dom0 must boot the device guest (tools/run-tests: SSH_SUITES within DEVICE_SUITES)"
    with xenprivcmd.open(dom0.uri()) as h:
        nets, disks = h.interface_stats(), h.block_stats()
    after = sysfs()
    assert [f"{n.name}" for n in nets] == sorted(k[:-2] for k in before if k.startswith("vif") and k.endswith(":a"))
    for n in nets:  # rx: what the guest received, the vif's transmit counter
        assert before[n.name + ":a"] <= n.rx_bytes <= after[n.name + ":a"]
        assert before[n.name + ":b"] <= n.tx_bytes <= after[n.name + ":b"]
    for d in disks:
        key = f"vbd-{d.domid}-{d.devid}"
        assert d.name == "xvda" and before[key + ":a"] <= d.rd_req <= after[key + ":a"]
        assert before[key + ":b"] <= d.wr_sect <= after[key + ":b"]
    p = xpsh(dom0.uri(), "domblkstat", "guest1", "xvda")
    assert p.returncode == 0 and p.stdout.startswith("xvda rd_req "), p.stderr
