"""The rest of privcmd (issue 24) against the real hypervisor and an xl guest (guest1).

Read-only towards guest1 (it stays for test_zy_control.py): its console ring mapped
with MMAPBATCH_V2 against what xenconsoled logged; its grant refs 0 and 1 mapped
through gntdev (the xenstore ring's producers move when xenstore talks to it); its
grant table through MMAP_RESOURCE; a restricted handle; event channels delivering
through /dev/xen/evtchn; a shorter leak test than the fast suite's.  x86 PV guests are
mapped by mfn, Arm guests by gfn: the xenstore nodes give whichever the guest uses.
"""

from __future__ import annotations

import gc
import os
import struct
import subprocess
import time

import pytest

import xenprivcmd
from xenprivcmd import abi

from ..terminal import read_until
from .conftest import GUEST_MIB, xl_list


def offsets(name: str):
    """member -> offset of a ring struct, from the generated tables (checked against gcc facts)."""
    cls = abi.variant("4.17.0").structs[name]
    return {f[0]: getattr(cls, f[0]).offset for f in cls._fields_ if not f[0].startswith("_pad")}


CONS = offsets("xencons_interface")
STORE = offsets("xenstore_domain_interface")
OUT_SIZE = CONS["in_cons"] - CONS["out"]
WAIT = 60.0


def xs_read(path: str) -> str:
    return subprocess.run(["xenstore-read", path], capture_output=True, text=True, check=True).stdout.strip()


def xs_write(path: str, value: str) -> None:
    subprocess.run(["xenstore-write", path, value], capture_output=True, text=True, check=True)


def guest_domid(name: str = "guest1") -> int:
    for row in xl_list():
        if row["name"] == name:
            return int(row["id"])
    raise AssertionError(f"no {name}")


def u32(view, at: int) -> int:
    return int(struct.unpack_from("<I", view, at)[0])


def consumed_output(view) -> bytes:
    """The last bytes of out[] that xenconsoled has read (out_cons), oldest first."""
    cons = u32(view, CONS["out_cons"])
    n = min(cons, OUT_SIZE)
    return bytes(view[CONS["out"] + (cons - n + i) % OUT_SIZE] for i in range(n))


def test_console_ring_through_map_foreign_holds_what_xenconsoled_logged(xen):
    domid = guest_domid()
    frame = int(xs_read(f"/local/domain/{domid}/console/ring-ref"))
    log_path = "/var/log/xen/console/guest-guest1.log"
    with xen.map_foreign(domid, [frame]) as m:
        assert m.frames == (frame,) and len(m.view) == 4096
        deadline = time.monotonic() + WAIT
        while True:
            text = consumed_output(m.view)
            with open(log_path, "rb") as f:
                log = f.read()
            tail = text[-512:]
            if tail and tail in log:
                break
            assert time.monotonic() < deadline, (tail[-200:], log[-400:])
            time.sleep(0.5)  # xenconsoled writes what it consumed a moment later
    assert b"xenvm guest up" in log  # the guest's own text, through the ring


def test_grant_refs_show_the_rings_with_live_producers(xen):
    domid = guest_domid()
    console = int(xs_read(f"/local/domain/{domid}/console/ring-ref"))
    store = int(xs_read(f"/local/domain/{domid}/store/ring-ref"))
    with xen.map_grants(domid, [1]) as g, xen.map_grants(domid, [0]) as c, \
            xen.map_foreign(domid, [console]) as same:
        assert g.kind == "grant" and g.frames == (1,)
        def producers() -> tuple[int, int]:
            return u32(g.view, STORE["req_prod"]), u32(g.view, STORE["rsp_prod"])

        before = producers()
        assert before[0] > 0 and before[1] > 0  # the guest has talked to xenstore since it booted
        # the guest's sysrq watch fires (xenstored writes the event: rsp_prod moves first), then the
        # guest starts a transaction and reads control/sysrq in it (its requests: req_prod moves; the
        # replies: rsp_prod again).  Wait for both producers to move and the read to be in req[]
        # (1024 bytes, free-running index): the transaction's start alone comes first.
        xs_write(f"/local/domain/{domid}/control/sysrq", "")
        size = STORE["rsp"] - STORE["req"]
        deadline = time.monotonic() + WAIT
        while True:
            after = producers()
            asked = bytes(g.view[STORE["req"] + i % size] for i in range(max(before[0], after[0] - size), after[0]))
            if after[0] > before[0] and after[1] > before[1] and b"control/sysrq" in asked:
                break
            assert time.monotonic() < deadline, (
                f"xenstore ring producers (req_prod, rsp_prod) not both past {before} with the guest's read of "
                f"control/sysrq within {WAIT:g} s: {after}, asked {asked!r}")
            time.sleep(0.2)
        assert bytes(c.view[CONS["out"]:CONS["in_cons"]]) == bytes(same.view[CONS["out"]:CONS["in_cons"]])
    with xen.map_resource(domid, "grant_table") as table:
        permit = xen.abi.constants["GTF_permit_access"]
        for ref, frame in ((0, console), (1, store)):
            flags, dom, got = struct.unpack_from("<HHI", table.view, 8 * ref)
            assert flags & permit and dom == 0 and got == frame, (ref, flags, dom, got, frame)


def test_a_restricted_handle_maps_its_domain_only(xen):
    domid = guest_domid()
    frame = int(xs_read(f"/local/domain/{domid}/console/ring-ref"))
    with xenprivcmd.open() as h:
        assert h.restrict(domid) is h
        with h.map_foreign(domid, [frame]) as m:
            assert u32(m.view, CONS["out_prod"]) > 0
        with pytest.raises(xenprivcmd.RestrictedError):
            h.map_foreign(0, [1])
        with pytest.raises(xenprivcmd.RestrictedError):
            h.domains()
    xen.domains()  # the other handle is not restricted


def test_event_channels_deliver_through_dev_xen_evtchn(xen):
    domid = guest_domid()
    with xenprivcmd.EventChannels() as a, xenprivcmd.EventChannels() as b:
        p = a.bind_unbound(0)
        q = b.bind_interdomain(0, p)
        assert a.wait(0) == []
        b.notify(q)
        assert a.wait(5.0) == [p]
        a.notify(p)
        assert b.wait(5.0) == [q]
        mine = a.bind_unbound(domid)  # a port guest1 could bind to
        a.unbind(mine)
        with pytest.raises(xenprivcmd.HypercallError):
            a.bind_interdomain(domid, 4000)  # no such unbound port of the guest for dom0
    with xen.event_channels() as ec:
        assert ec.bind_unbound(0) > 0


def test_a_port_from_evtchn_alloc_unbound_bound_through_event_channels_is_interdomain_to_dom0(xen):
    domid = guest_domid()
    port = xen.evtchn_alloc_unbound(domid, remote_domid=0)  # a port of guest1 that dom0 may bind
    st = xen.evtchn_status(domid, port)
    assert (st.domid, st.port, st.status, st.remote_domid, st.remote_port) == (domid, port, "unbound", 0, None), st
    with xenprivcmd.EventChannels() as ec:
        local = ec.bind_interdomain(domid, port)  # the kernel's evtchn driver gives dom0's port
        st = xen.evtchn_status(domid, port)
        assert (st.status, st.remote_domid, st.remote_port) == ("interdomain", 0, local), (st, local)
        back = xen.evtchn_status(0, local)
        assert (back.status, back.remote_domid, back.remote_port) == ("interdomain", domid, port), back
        ec.unbind(local)
    # dom0 closed its end: Xen leaves the guest's port waiting for dom0 again
    st = xen.evtchn_status(domid, port)
    assert (st.status, st.remote_domid, st.remote_port) == ("unbound", 0, None), st


def _state():
    gc.collect()
    with open("/proc/self/maps") as f:
        maps = sum(1 for _ in f)
    with open("/proc/self/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return len(os.listdir("/proc/self/fd")), maps, rss


def test_map_and_bind_cycles_leak_nothing(xen):
    """The fast suite's leak test (tests/test_guestmem.py) runs the issue's 100,000 cycles on the
    simulator, whose devices are memfds: the library's own mmap, munmap, fds and bookkeeping.  Here
    the real drivers (privcmd, gntdev, evtchn) and Xen answer, under TCG at ~3 ms a cycle: fewer
    cycles, and Xen's own books are read too (it hands out the lowest free port again)."""
    domid = guest_domid()
    frame = int(xs_read(f"/local/domain/{domid}/console/ring-ref"))
    ec = xenprivcmd.EventChannels()
    cycles = int(os.environ.get("REALXEN_CYCLES", "2000"))
    ports = []

    def run(n: int) -> None:
        for i in range(n):
            k = i % 4
            if k == 0:
                with xen.map_foreign(domid, [frame]) as m:
                    assert u32(m.view, CONS["out_prod"])
            elif k == 1:
                with xen.map_grants(domid, [0]) as g:
                    assert u32(g.view, CONS["out_prod"])
            elif k == 2:
                xen.map_resource(domid, "grant_table").close()
            else:
                port = ec.bind_unbound(0)
                ports.append(port)
                ec.unbind(port)

    run(cycles // 5)
    base = _state()
    first = ports[-1]
    run(cycles)
    end = _state()
    assert xen.transport.live_mappings() == [] and ec.ports == frozenset()
    ec.close()
    assert end[0] == base[0], ("fds", base, end)
    assert end[1] <= base[1] + 4, ("maps", base, end)
    assert end[2] <= base[2] + 1024, ("rss KiB", base, end)
    # a port Xen did not free would move every later one up: ~cycles/4 of them
    assert max(ports) <= first + 4, (first, max(ports), len(ports))


# -- xenstore: watches, transactions, mkdir, permissions, introduction ---------------------------------

def _xl_mem(name: str) -> int:
    return next(int(r["mem"]) for r in xl_list() if r["name"] == name)


def test_a_watch_on_memory_target_fires_on_xl_mem_set(xen):
    domid = guest_domid()
    node = f"/local/domain/{domid}/memory/target"
    # a change, within static-max (GUEST_MIB) and well above an arm64 guest's floor (~110 MiB);
    # test_zy_control sets it again
    mib = GUEST_MIB - 16 if _xl_mem("guest1") >= GUEST_MIB - 12 else GUEST_MIB - 12
    with xenprivcmd.Xenstore.open() as xs, xs.watch(node) as w:
        assert w.next(WAIT).path == node  # xenstored's own first event
        assert w.next(0.2) is None
        done = subprocess.run(["xl", "mem-set", "guest1", f"{mib}m"], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            # Debian trixie's xl on arm64 aborts in every mem-set (a libxl assertion, see test_zy_control):
            # then xl cannot be the writer; the toolstack's own tool writes the node instead
            assert "libxl_defbool_val" in done.stderr and "Assertion" in done.stderr, done.stderr
            xs_write(node, str(mib << 10))
        event = w.next(WAIT)
        assert event is not None and event.path == node and event.token == w.token
        assert xs.read(node) == str(mib << 10).encode()


def test_transactions_mkdir_and_permissions_on_xenstored():
    base = "/local/domain/0/xenprivcmd-test"
    with xenprivcmd.Xenstore.open() as xs, xenprivcmd.Xenstore.open() as other:
        try:
            xs.mkdir(base)
            assert xs.read(base) == b""
            xs.write(base + "/count", "1")
            attempts = 0
            for tx in xs.transaction():
                with tx:
                    attempts += 1
                    n = int(tx.read(base + "/count"))
                    if attempts == 1:
                        other.write(base + "/count", "10")  # another writer: xenstored answers EAGAIN
                    tx.write(base + "/count", str(n + 1))
            assert attempts == 2 and xs.read(base + "/count") == b"11"
            assert xs.transaction(lambda tx: tx.read(base + "/count")) == b"11"
            domid = guest_domid()
            xs.set_perms(base + "/count", ["n0", f"r{domid}"])
            perms = xs.get_perms(base + "/count")
            assert [str(p) for p in perms] == ["n0", f"r{domid}"]
            assert xs.is_domain_introduced(domid)
            with xs.watch("@releaseDomain") as rel:
                assert rel.next(WAIT).path == "@releaseDomain"
        finally:
            xs.rm(base)


# -- xpsh console ----------------------------------------------------------------------------------------

def test_xpsh_console_shows_xl_sysrq_output_and_detaches_on_ctrl_bracket():
    import pty
    import sys

    os.makedirs("/var/lock", exist_ok=True)  # xl console needs it; the minimal dom0 has none
    master, slave = pty.openpty()
    p = subprocess.Popen([sys.executable, "-m", "xenprivcmd", "console", "guest1"], stdin=slave, stdout=slave,
                         stderr=slave, start_new_session=True)
    os.close(slave)
    try:
        banner = read_until(master, b"Escape character", WAIT)
        assert b"Connected to domain 'guest1'" in banner
        subprocess.run(["xl", "sysrq", "guest1", "h"], check=True, capture_output=True, timeout=120)
        out = read_until(master, b"HELP", WAIT)
        assert b"sysrq" in out.lower()
        os.write(master, b"\x1d")
        assert p.wait(WAIT) == 0
    finally:
        if p.poll() is None:
            p.kill()
        os.close(master)
