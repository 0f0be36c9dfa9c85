"""Toolstack control through xenstore against the real hypervisor and xl (issue 16).

Runs after the other real-Xen tests (file order) and before the teardown, in a
dom0 booted with three guests made by xl (``tools/run-tests`` passes
``--guests 3``): guest1 is ballooned and given back its memory; guest2 is
rebooted by the library (xl builds it again) and then shut down by ``xpsh
shutdown --wait``; guest3 is shut down by the library.  The guests' busybox
init has a ``/sbin/poweroff`` and ``/sbin/reboot`` the kernel's xen manage
driver runs; its balloon driver follows ``memory/target``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from typing import Dict, List, Optional, Tuple

import pytest

import xenprivcmd

from .conftest import GUEST_MIB, xl, xl_list

WAIT = 120.0  # seconds any guest reaction may take under TCG


def xpsh(*args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "xenprivcmd", *args], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, (args, out.stdout, out.stderr)
    assert "Traceback" not in out.stderr
    return out.stdout


def domid_of(name: str) -> Optional[int]:
    for row in xl_list():
        if row["name"] == name:
            return int(row["id"])
    return None


def need(name: str) -> int:
    domid = domid_of(name)
    assert domid is not None, f"no {name}: tools/xenvm must boot with --guests 3 (tools/run-tests does)"
    return domid


def until(what: str, check, seconds: float = WAIT, show=None):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"{what}: not within {seconds:g} s" + (f" ({show()})" if show else "")
        time.sleep(0.5)


def xl_pairs(text: str) -> Dict[str, str]:
    out: Dict[str, str] = {}
    for line in text.splitlines():
        m = re.match(r"^([a-z_]+)\s*: ?(.*)$", line)
        if m and m.group(1) not in ("cpu_topology", "numa_info", "device_topology"):
            out[m.group(1)] = m.group(2).strip()
    return out


# -- read-only comparisons first (nothing has changed the host yet) --------------------------------

def test_info_equals_xl_info_field_by_field():
    theirs = xl_pairs(xl("info"))
    ours = xl_pairs(xpsh("info"))
    both = set(theirs) & set(ours)
    assert len(both) >= 30, (sorted(theirs), sorted(ours))
    assert [k for k in ours if k in both] == [k for k in theirs if k in both], "field order differs"
    drift = {"free_memory"}  # dom0's own allocations move it between the two reads
    for k in sorted(both - drift):
        assert ours[k] == theirs[k], (k, ours[k], theirs[k])
    assert abs(int(ours["free_memory"]) - int(theirs["free_memory"])) <= 8
    doc = json.loads(xpsh("--json", "info"))
    assert str(doc["nr_cpus"]) == theirs["nr_cpus"] and doc["xen_version"] == theirs["xen_version"]


def _vcpu_rows(text: str) -> Dict[Tuple[str, str, str], Tuple[bool, str, str]]:
    rows = {}
    lines = text.splitlines()
    header = next(i for i, ln in enumerate(lines) if ln.startswith("Name"))
    for ln in lines[header + 1:]:
        m = re.match(r"^(\S+)\s+(\d+)\s+(\d+)\s+(\S+)\s+(\S+)\s+([\d.]+)\s+(.+?)\s*/\s*(.+?)\s*$", ln)
        assert m, ln
        name, domid, vcpu, cpu, _state, _time, hard, soft = m.groups()
        rows[(name, domid, vcpu)] = (cpu != "-", hard, soft)
    return rows


def test_vcpu_list_equals_xl_vcpu_list():
    xl_text, our_text = xl("vcpu-list"), xpsh("vcpu-list")
    theirs, ours = _vcpu_rows(xl_text), _vcpu_rows(our_text)
    assert ours == theirs
    assert our_text.splitlines()[0] == xl_text.splitlines()[0]
    # the same columns: every field is fixed-width, so the affinities start where xl's do
    def starts(text: str) -> Dict[Tuple[str, ...], int]:
        return {tuple(ln.split()[:3]): ln.index(" / ") for ln in text.splitlines()[1:]}

    assert starts(our_text) == starts(xl_text), (xl_text, our_text)
    assert _vcpu_rows(xpsh("vcpu-list", "guest1")) == {k: v for k, v in theirs.items() if k[0] == "guest1"}


def _seconds(text: str) -> int:
    m = re.match(r"^(?:(\d+) days?, )?\s*(\d+):(\d\d):(\d\d)$", text.strip())
    assert m, text
    days, h, mi, s = (int(x or 0) for x in m.groups())
    return ((days * 24 + h) * 60 + mi) * 60 + s


def _uptimes(text: str) -> Dict[str, int]:
    out = {}
    for ln in text.splitlines()[1:]:
        m = re.match(r"^(\S+)\s+(\d+)\s+(.+)$", ln)
        assert m, ln
        out[m.group(1)] = _seconds(m.group(3))
    return out


def test_uptime_equals_xl_uptime():
    t0 = time.monotonic()
    xl_text, our_text = xl("uptime"), xpsh("uptime")
    apart = time.monotonic() - t0  # xpsh reads later than xl (python's start-up under TCG: seconds)
    assert our_text.splitlines()[0] == xl_text.splitlines()[0]
    theirs, ours = _uptimes(xl_text), _uptimes(our_text)
    assert set(ours) == set(theirs)
    for name, secs in theirs.items():
        assert -1 <= ours[name] - secs <= apart + 2, (name, ours[name], secs, apart)


def test_cpupool_list_matches_xl():
    assert xpsh("cpupool-list") == xl("cpupool-list")  # to the character


# -- the balloon --------------------------------------------------------------------------------------

def _xl_mem(name: str) -> int:
    return next(int(r["mem"]) for r in xl_list() if r["name"] == name)


def _target(domid: int) -> str:
    return subprocess.run(["xenstore-read", f"/local/domain/{domid}/memory/target"], capture_output=True,
                          text=True, check=True).stdout.strip()


#: The balloon target the test sets, per arch: what the xenvm guest (GUEST_MIB: 128 MiB on x86_64,
#: 192 on arm64) can give back.  x86_64: ballooned to 64 MiB (by xl mem-set as by us) its Debian
#: kernel runs out of memory at ~73 MiB and crashes (xl list shows it ---sc-).  aarch64: asked for
#: 96 MiB, it stops at 110 MiB within seconds and stays there (trixie, Xen 4.20): a floor, not
#: slowness; near that floor (112 MiB) a guest hung, out of memory (CI of 2026-12-07).
BALLOON_MIB = {"x86_64": 96, "aarch64": 144}


def _xl_state(name: str) -> str:
    return next(r["state"] for r in xl_list() if r["name"] == name)


def test_setmem_balloons_the_guest_as_xl_mem_set_does(xen):
    mib = BALLOON_MIB[xen.arch]
    domid = need("guest1")
    assert _xl_mem("guest1") >= GUEST_MIB * 25 // 32 - 10  # booted with GUEST_MIB (test_shell.py set 25/32 of it)
    xen.set_memory_target("guest1", GUEST_MIB << 10)  # from the top: a balloon to see
    until(f"guest1 at {GUEST_MIB} MiB", lambda: _xl_mem("guest1") >= GUEST_MIB - 4)
    xpsh("setmem", "guest1", f"{mib}M")
    until(f"guest1 ballooned to about {mib} MiB in xl list", lambda: mib - 3 <= _xl_mem("guest1") <= mib + 3,
          show=lambda: f"xl list Mem {_xl_mem('guest1')}, memory/target {_target(domid)}")
    ours = (_target(domid), xen.domain_info(domid).max_memory_kib)
    assert ours[0] == str(mib << 10)
    dom = json.loads(xpsh("--json", "dominfo", "guest1"))
    assert dom["memory_kib"] // 1024 == _xl_mem("guest1")
    assert "c" not in _xl_state("guest1")  # alive, not crashed
    # xl mem-set on the same guest leaves the same target and the same hypervisor limit
    tried = subprocess.run(["xl", "mem-set", "guest1", f"{mib + 8}m"], capture_output=True, text=True, timeout=120)
    if tried.returncode != 0:
        # Debian trixie's xl on arm64 aborts in every mem-set ("libxl_defbool_val: Assertion
        # `!libxl_defbool_is_default(db)' failed"): a libxl bug, its mem-set never runs.  Then
        # libxl's own rule is the reference: max_mem = the target + LIBXL_MAXMEM_CONSTANT (1 MiB).
        assert "libxl_defbool_val" in tried.stderr and "Assertion" in tried.stderr, tried.stderr
        assert _target(domid) == ours[0] and ours[1] == (mib << 10) + 1024
    else:
        until(f"xl mem-set {mib + 8}m", lambda: mib + 5 <= _xl_mem("guest1") <= mib + 11)
        xl("mem-set", "guest1", f"{mib}m")
        until(f"xl mem-set {mib}m", lambda: mib - 3 <= _xl_mem("guest1") <= mib + 3)
        assert (_target(domid), xen.domain_info(domid).max_memory_kib) == ours
    # and back up: static-max (GUEST_MIB) is the limit, above it is refused
    bad = subprocess.run([sys.executable, "-m", "xenprivcmd", "setmem", "guest1", "1G"], capture_output=True,
                         text=True)
    assert bad.returncode == 1 and "above domain" in bad.stderr and "static-max" in bad.stderr
    xen.set_memory_target("guest1", GUEST_MIB << 10)
    until(f"guest1 back to {GUEST_MIB} MiB", lambda: _xl_mem("guest1") >= GUEST_MIB - 4)


# -- shutdown and reboot (destructive: guest2, guest3) ----------------------------------------------------

#: ``xpsh event --loop --json --domain guest2``, started when this file starts (issue 24): it sees
#: guest2 rebooted, built again by xl, paused and unpaused by xl, shut down and destroyed.
EVENTS: Dict[str, "subprocess.Popen[str]"] = {}
#: Wall-clock times (time.time(), as the events' ``time``) around what the tests did to guest2.
MARKS: Dict[str, float] = {}


@pytest.fixture(scope="module", autouse=True)
def guest2_events():
    EVENTS["p"] = subprocess.Popen([sys.executable, "-m", "xenprivcmd", "event", "--loop", "--json", "--domain",
                                    "guest2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    EVENTS["t0"] = time.monotonic()  # type: ignore[assignment]
    yield
    p = EVENTS["p"]
    if p.poll() is None:
        p.kill()
        p.wait()

def test_library_reboot_shows_reason_reboot_and_xl_restarts_it(xen):
    old = need("guest2")
    assert EVENTS["p"].poll() is None, EVENTS["p"].communicate()
    # xpsh event takes its first look (python's start-up under TCG: seconds) before anything happens
    time.sleep(max(0.0, 15.0 - (time.monotonic() - EVENTS["t0"])))  # type: ignore[operator]
    after = xen.reboot("guest2", wait=True, timeout=WAIT, ack_timeout=WAIT)  # TCG: a slow guest is no failure
    # xl's daemon destroys a rebooted guest at once and builds it again: seen before or gone
    assert after is None or after.shutdown_reason == "reboot", after

    def xl_log() -> str:
        return open("/var/log/xen/xl-guest2.log", encoding="utf-8", errors="replace").read()

    # xl's daemon logs the shutdown after the hypervisor shows it (under TCG, seconds later)
    until("xl's log of guest2's reboot", lambda: re.search(r"has shut down, reason code 1 ", xl_log()),
          show=lambda: xl_log()[-2000:])
    new = until("guest2 built again by xl", lambda: domid_of("guest2") not in (None, old) and domid_of("guest2"))
    assert new != old


def test_xpsh_shutdown_wait(xen):
    # xl destroys the rebooted guest2 and builds it again: unlisted in between
    domid = until("guest2 listed by xl again", lambda: domid_of("guest2"))
    # Linux's xen manage driver announces itself (control/feature-poweroff) once it watches control/shutdown
    until("the rebooted guest2's PV drivers up", lambda: subprocess.run(
        ["xenstore-read", f"/local/domain/{domid}/control/feature-poweroff"], capture_output=True).returncode == 0)
    # xl builds the new domain paused and unpauses it once its devices are up
    until("the rebooted guest2 unpaused", lambda: all(r["name"] != "guest2" or "p" not in r["state"]
                                                      for r in xl_list()))
    # and its init must be running: the manage driver acknowledges control/shutdown as soon as
    # it watches it, but powers off through /sbin/poweroff, which needs the guest's userspace
    # (bullseye under a loaded TCG: acknowledged, never down).  xenconsoled appends the second
    # boot's console to the same log.
    log = "/var/log/xen/console/guest-guest2.log"
    until("the rebooted guest2's init up", lambda: open(log, errors="replace").read().count("xenvm guest up") >= 2,
          show=lambda: open(log, errors="replace").read()[-1500:])
    # a pause and an unpause for xpsh event to see (no xenstore watch fires for them: its poll does)
    MARKS["pause"] = time.time()
    xl("pause", "guest2")
    time.sleep(3)
    MARKS["unpause"] = time.time()
    xl("unpause", "guest2")
    time.sleep(3)
    MARKS["shutdown"] = time.time()
    out = xpsh("shutdown", "--wait", "--timeout", str(WAIT), "guest2")
    assert out in ("Domain 'guest2' is gone\n", "Domain 'guest2' is shut off (poweroff)\n"), out
    until("guest2 not running for xl", lambda: all(r["name"] != "guest2" or "s" in r["state"]
                                                    for r in xl_list()))


def test_xpsh_event_saw_guest2_built_paused_unpaused_shut_down_and_destroyed():
    p = EVENTS["p"]
    until("guest2 destroyed by xl", lambda: domid_of("guest2") is None)
    time.sleep(3)  # the stream's next look
    p.send_signal(2)  # Ctrl-C ends --loop, status 0
    out, err = p.communicate(timeout=WAIT)
    assert p.returncode == 0 and "Traceback" not in err, (p.returncode, err)
    seen = [json.loads(line) for line in out.splitlines()]
    assert seen and all(set(e) == {"event", "domid", "name", "detail", "time"} for e in seen), out
    assert all(e["name"] == "guest2" for e in seen), seen
    # the rebooted guest2: xl built it (started, paused from birth, then unpaused by xl), we
    # paused and unpaused it with xl, xpsh shutdown powered it off, xl destroyed it.  The pause
    # and unpause are ours, not xl's at birth: told apart by the time they were seen.
    assert set(MARKS) == {"pause", "unpause", "shutdown"}, "test_xpsh_shutdown_wait did not get that far"
    last = [e for e in seen if e["event"] == "started"][-1]["domid"]
    mine = [e for e in seen if e["domid"] == last]
    slack = 0.5  # the stream's clock reading is its own, a moment after the hypercall's

    def at(event: str, detail: Optional[str], after: float, before: float = float("inf")) -> float:
        for e in mine:
            if e["event"] == event and e["detail"] == detail and after - slack <= e["time"] <= before:
                return float(e["time"])
        raise AssertionError(f"no {event} ({detail}) of domain {last} between {after:.3f} and {before:.3f}: {mine}")

    started = at("started", None, 0.0, MARKS["pause"])
    paused = at("paused", None, MARKS["pause"], MARKS["unpause"])
    unpaused = at("unpaused", None, MARKS["unpause"], MARKS["shutdown"])
    down = at("shutdown", "poweroff", MARKS["shutdown"])
    gone = at("destroyed", None, down)
    assert started < paused < unpaused < down <= gone, mine
    times = [e["time"] for e in seen]
    assert times == sorted(times)
    # and the first guest2's reboot before it
    first = [(e["event"], e["detail"]) for e in seen if e["domid"] != last]
    assert ("shutdown", "reboot") in first and ("destroyed", None) in first, seen


def _left_behind(xen, domid: int) -> Optional[str]:
    """What the hypervisor still has of a destroyed domain: "gone", "dying", else None."""
    try:
        info = xen.domain_info(domid)
    except xenprivcmd.NoSuchDomain:
        return "gone"
    return "dying" if info.dying else None


def test_library_shutdown_wait(xen):
    domid = need("guest3")
    after = xen.shutdown("guest3", wait=True, timeout=WAIT, ack_timeout=WAIT)
    assert after is None or (after.shutdown and after.shutdown_reason == "poweroff"), after
    until("guest3 gone for xl", lambda: domid_of("guest3") is None)
    # xl destroyed it; Xen frees a destroyed domain once nothing maps its pages any more, and
    # until then getdomaininfo shows it dying (seen on arm64 under TCG): either is right
    left = until("guest3 gone or dying for the hypervisor", lambda: _left_behind(xen, domid),
                 show=lambda: repr(xen.domain_info(domid)))
    if left == "gone":
        with pytest.raises(xenprivcmd.NoSuchDomain):
            xen.shutdown("guest3")
    else:  # refused as dying, or gone meanwhile (Xen frees it whenever its last page is unmapped)
        with pytest.raises((ValueError, xenprivcmd.NoSuchDomain)) as refused:
            xen.shutdown(domid)
        assert isinstance(refused.value, xenprivcmd.NoSuchDomain) or "dying" in str(refused.value), refused.value
    assert all(d.dying for d in xen.domains() if d.domid == domid)
    assert "guest3" not in [r["name"] for r in xl_list()]


def test_guest1_is_left_for_the_teardown() -> None:
    names: List[str] = [r["name"] for r in xl_list()]
    assert "guest1" in names and "guest3" not in names
