"""xpsh against the real hypervisor: as a subprocess, and interactive through a pty."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time

import pytest

from .conftest import GUEST_MIB, xl_info, xl_list, xl_table


def xpsh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "xenprivcmd", *args], capture_output=True, text=True, timeout=300)
    if check:
        assert out.returncode == 0, out.stderr
        assert "Traceback" not in out.stderr
    return out


def test_list_json_matches_xl_list(guest):
    doc = json.loads(xpsh("--json", "list", "--all").stdout)
    ours = {d["id"]: d for d in doc["domains"]}
    theirs = {int(r["id"]): r for r in xl_list()}
    assert set(ours) == set(theirs)
    for domid, row in theirs.items():
        assert ours[domid]["name"] == row["name"]
        assert ours[domid]["memory_kib"] // 1024 == int(row["mem"])


def test_list_table_and_xl_layout(guest):
    text = xpsh("list").stdout
    assert text.splitlines()[0].split() == ["Id", "Name", "State"]
    assert any(line.split()[:2] == [str(guest), "guest1"] for line in text.splitlines())
    xl_like = xpsh("list", "--xl").stdout
    assert "guest1" in xl_like


def test_nodeinfo_json_matches_xl_info():
    doc = json.loads(xpsh("--json", "nodeinfo").stdout)
    info = xl_info()
    assert doc["cpus"] == int(info["nr_cpus"])
    assert doc["memory_kib"] // 1024 == int(info["total_memory"])
    assert doc["threads_per_core"] == int(info["threads_per_core"])


def test_dominfo_vcpuinfo_schedinfo(guest):
    dom = json.loads(xpsh("--json", "dominfo", "guest1").stdout)
    assert dom["id"] == guest and dom["name"] == "guest1"
    vc = json.loads(xpsh("--json", "vcpuinfo", "guest1").stdout)
    rows = [r for r in xl_table("vcpu-list") if r[1] == str(guest)]
    assert len(vc["vcpus"]) == len(rows)
    sched = json.loads(xpsh("--json", "schedinfo", "guest1").stdout)
    cmd = "sched-credit" if sched["scheduler"] == "credit" else "sched-credit2"
    row = next(r for r in xl_table(cmd) if r[1] == str(guest))
    assert sched["weight"] == int(row[2])


def test_capabilities_and_version():
    caps = json.loads(xpsh("--json", "capabilities").stdout)
    assert caps["abi"]["domctl_interface_version"] is not None
    assert caps["buffers"]
    ver = json.loads(xpsh("--json", "version").stdout)
    info = xl_info()
    assert ver["hypervisor"]["major"] == int(info["xen_major"])


def test_dmesg_has_xl_dmesg_tail():
    ours = xpsh("dmesg").stdout
    from .conftest import xl

    last = [line for line in xl("dmesg").splitlines() if line.strip()][-1]
    assert last in ours


def test_suspend_resume_and_errors(guest):
    xpsh("suspend", "guest1")
    assert "p" in {r["id"]: r["state"] for r in xl_list()}[str(guest)]
    xpsh("resume", "guest1")
    assert "p" not in {r["id"]: r["state"] for r in xl_list()}[str(guest)]
    bad = xpsh("dominfo", "no-such-domain", check=False)
    assert bad.returncode == 1 and bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr
    refused = xpsh("destroy", "0", check=False)
    assert refused.returncode == 1 and "--force" in refused.stderr
    ro = xpsh("-r", "suspend", "guest1", check=False)
    assert ro.returncode == 1 and "p" not in {r["id"]: r["state"] for r in xl_list()}[str(guest)]


def test_interactive_through_a_pty(guest, tmp_path):
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path), "TERM": "dumb"}
    pid, fd = pty.fork()
    if pid == 0:
        os.execvpe(sys.executable, [sys.executable, "-m", "xenprivcmd"], env)
    out = b""

    def read_until(marker: bytes, timeout: float = 120) -> bytes:
        nonlocal out
        end = time.monotonic() + timeout
        while marker not in out:
            left = end - time.monotonic()
            assert left > 0, f"no {marker!r} in {out[-500:]!r}"
            r, _, _ = select.select([fd], [], [], left)
            if r:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:
                    break
                out += chunk
        return out

    read_until(b"xpsh # ")
    os.write(fd, b"help\r")
    read_until(b"dominfo")
    out = b""
    os.write(fd, b"dominfo gue\t1\r")  # completes the guests' common prefix "guest"
    read_until(b"guest1")
    read_until(b"xpsh # ")
    out = b""
    os.write(fd, b"dominfo nosuch\r")
    read_until(b"error:")
    os.write(fd, b"quit\r")
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert os.WIFEXITED(status)
    history = tmp_path / "xpsh" / "history"
    assert history.exists() and b"dominfo" in history.read_bytes()


# Every other command, on the real hypervisor (read-only ones and changes put back).
#: setmem's target for guest1: 100 of x86_64's 128 MiB, 150 of arm64's 192 MiB (an arm64 guest
#: cannot balloon below about 110 MiB; 128 MiB guests set to 100 and even 112 ran out of memory
#: in CI of 2026-12-07)
SETMEM_MIB = GUEST_MIB * 25 // 32

COMMANDS = [
    ["freecell", "--all"],
    ["sched"],
    ["domstate", "guest1", "--reason"],
    ["domid", "guest1"],
    ["domname", "1"],
    ["domuuid", "guest1"],
    ["vcpucount", "guest1"],
    ["vcpupin", "guest1"],
    ["vcpupin", "guest1", "0", "r"],
    ["setmaxmem", "guest1", "200M"],
    ["setmem", "guest1", f"{SETMEM_MIB}M"],
    ["schedinfo", "guest1", "--set", "weight=300"],
    ["schedinfo", "guest1", "--set", "weight=256"],
    ["top", "--iterations", "2", "--delay", "0.5"],
    ["dmesg", "-c"],
    ["capabilities"],
    ["uri"],
    ["help", "vcpupin"],
]


def test_every_command_works(guest):
    for args in COMMANDS:
        out = xpsh("--json", *args)
        json.loads(out.stdout.splitlines()[-1])
    assert json.loads(xpsh("--json", "domid", "guest1").stdout)["id"] == guest
    # setmem is the balloon target; the hypervisor limit follows it as libxl sets it: the target
    # plus LIBXL_MAXMEM_CONSTANT (1 MiB), PV and HVM alike (xl mem-set, test_zy_control.py)
    info = json.loads(xpsh("--json", "dominfo", "guest1").stdout)
    assert info["max_memory_kib"] == SETMEM_MIB * 1024 + 1024, info


def test_setvcpus_is_refused_by_xen_with_a_one_line_error(guest):
    # max_vcpus must equal createdomain's value from 4.12 on (Xen says EINVAL): xpsh says why, before any call
    out = xpsh("setvcpus", "guest1", "1", "--maximum", check=False)
    assert out.returncode == 1 and out.stderr.startswith("error: ") and len(out.stderr.splitlines()) == 1
    assert "fixed at creation" in out.stderr


def test_non_root_gets_one_line_run_as_root():
    code = (
        "import os, sys\n"
        "from xenprivcmd.shell import main\n"
        "os.setgid(65534); os.setuid(65534)\n"
        "sys.argv = ['xpsh', 'list']\n"
        "sys.exit(main())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == ["error: permission denied opening /dev/xen/privcmd: run as root"]


def test_vcpu_set_takes_vcpus_offline_and_back_as_xl_shows(guest):
    """issue 26: vcpu-set (setvcpus) writes cpu/N/availability as xl vcpu-set; the guest's kernel follows."""
    from .conftest import xl

    def online() -> int:
        return int(next(r.split() for r in xl("list", "guest1").splitlines()[1:] if r.strip())[3])

    def wait_for(n: int) -> None:
        deadline = time.monotonic() + 60
        while online() != n:
            assert time.monotonic() < deadline, f"guest1 does not run {n} vcpus a minute after vcpu-set"
            time.sleep(0.5)

    assert online() == 2
    bad = xpsh("setvcpus", "guest1", "3", check=False)
    assert bad.returncode == 1 and "can run 1..2 vcpus" in bad.stderr
    if os.uname().machine == "aarch64":
        # bookworm-arm64: the guest never took vcpu 1 offline, and from then on it answered no
        # xenstore watch (control/sysrq, memory/target): its watch thread hung in the cpu
        # hotplug. So on arm64 only what vcpu-set would write (the nodes xl vcpu-set writes).
        domid = int(next(r.split() for r in xl("list", "guest1").splitlines()[1:] if r.strip())[1])
        plan = xpsh("--dry-run", "vcpu-set", "guest1", "1").stdout
        assert f"xenstore write /local/domain/{domid}/cpu/0/availability = 'online'" in plan, plan
        assert f"xenstore write /local/domain/{domid}/cpu/1/availability = 'offline'" in plan, plan
        assert online() == 2
        pytest.skip("an arm64 guest's kernel hangs its xenstore watches taking a vcpu offline: "
                    "vcpu-set checked as a dry run only")
    xpsh("vcpu-set", "guest1", "1")
    wait_for(1)
    assert json.loads(xpsh("--json", "dominfo", "guest1").stdout)["online_vcpus"] == 1
    assert "CPU(s):         1\n" in xpsh("dominfo", "guest1").stdout
    xpsh("setvcpus", "guest1", "2")
    wait_for(2)
