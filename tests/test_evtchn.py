"""Event channels (issue 24): xenprivcmd.EventChannels over the simulator's /dev/xen/evtchn.

The simulated host keeps every domain's ports as Xen does (sim/_evtchn.py); its
guests answer a ping on a port they made for dom0; VIRQ_DOM_EXC fires when a
domain shuts down or goes.  The real device's code (transport/evtchn.py) runs in
tests/realxen/test_surface.py.
"""

from __future__ import annotations

import selectors
import threading
import time

import pytest

import xenprivcmd
from xenprivcmd.evtchn import MAX_PORT


@pytest.fixture
def xen():
    with xenprivcmd.open("sim:///default") as h:
        yield h


def test_a_loopback_channel_delivers_and_masks_until_waited(xen):
    with xen.event_channels() as a, xen.event_channels() as b:
        p = a.bind_unbound(0)
        q = b.bind_interdomain(0, p)
        assert a.ports == {p} and b.ports == {q} and a.wait(0) == []
        b.notify(q)
        b.notify(q)  # while masked: remembered, one more report after the unmask
        b.notify(q)
        assert a.wait(1.0) == [p]
        assert a.wait(0) == [p]
        assert a.wait(0) == []
        a.notify(p)
        assert b.wait(1.0) == [q]
        b.notify(q)
        assert a.wait(0) == [p]  # unmasked by the previous wait


def test_an_event_while_masked_is_delivered_at_the_unmask(xen):
    with xen.event_channels() as a, xen.event_channels() as b:
        p = a.bind_unbound(0)
        q = b.bind_interdomain(0, p)
        dev = a._dev
        b.notify(q)
        assert dev.read_pending() == [p]  # delivered, masked, not unmasked yet
        b.notify(q)
        assert dev.read_pending() == []
        dev.unmask([p])
        assert dev.read_pending() == [p]


def test_fileno_works_with_selectors_and_wait_blocks_until_an_event(xen):
    with xen.event_channels() as a, xen.event_channels() as b:
        p = a.bind_unbound(0)
        q = b.bind_interdomain(0, p)
        sel = selectors.DefaultSelector()
        sel.register(a, selectors.EVENT_READ)
        assert sel.select(0) == []
        timer = threading.Timer(0.2, b.notify, (q,))
        t0 = time.monotonic()
        timer.start()
        assert a.wait(5.0) == [p]
        assert 0.1 < time.monotonic() - t0 < 4.0
        b.notify(q)
        assert [k.fileobj for k, _ in sel.select(1.0)] == [a]
        sel.close()
        t0 = time.monotonic()
        assert a.wait(0.3) == [p] and a.wait(0.3) == []
        assert time.monotonic() - t0 >= 0.25


def test_a_guest_port_for_dom0_binds_interdomain_and_answers(xen):
    host = xen.transport.host
    remote = host.evtchn.alloc_unbound(1, 0)  # what evtchn_alloc_unbound(1, 0) does
    assert host.evtchn.status(1, remote)[:3] == ("unbound", 0, 0)
    with xen.event_channels() as ec:
        local = ec.bind_interdomain(1, remote)
        assert host.evtchn.status(1, remote) == ("interdomain", 0, 0, local)
        ec.notify(local)
        assert ec.wait(1.0) == [local]  # the guest's drivers pinged back
        xen.pause(1)
        ec.notify(local)
        assert ec.wait(0.2) == []  # a paused guest answers nothing
        xen.unpause(1)
        ec.unbind(local)
        assert ec.ports == frozenset()
    assert host.evtchn.status(1, remote)[0] == "unbound"  # Xen leaves the guest's end unbound
    with xen.event_channels() as ec, pytest.raises(xenprivcmd.HypercallError):
        ec.bind_interdomain(2, remote)  # not a port of domain 2 for dom0


def test_virq_dom_exc_fires_on_shutdown_and_destroy(xen):
    with xen.event_channels() as ec:
        port = ec.bind_virq("dom_exc")
        assert ec.wait(0) == []
        xen.shutdown("web1")
        assert ec.wait(1.0) == [port]
        xen.destroy(3)
        assert ec.wait(1.0) == [port]
        with xen.event_channels() as other, pytest.raises(xenprivcmd.HypercallError) as twice:
            other.bind_virq(3)
        assert twice.value.errno == 17  # EEXIST: one binder per domain


def test_closing_unbinds_every_port(xen):
    host = xen.transport.host
    ec = xen.event_channels()
    p = ec.bind_unbound(0)
    ec.close()
    assert host.evtchn.status(0, p)[0] == "closed"
    ec.close()  # idempotent
    with pytest.raises(ValueError):
        ec.bind_unbound(0)
    with pytest.raises(ValueError):
        ec.wait(0)
    assert "closed" in repr(ec)


def test_bad_arguments_reach_no_device(xen):
    ec = xen.event_channels()
    calls = []
    for name in ("bind_interdomain", "bind_unbound", "bind_virq", "notify", "unbind"):
        real = getattr(ec._dev, name)
        setattr(ec._dev, name, lambda *a, _n=name, _r=real: calls.append(_n) or _r(*a))
    for call, exc in ((lambda: ec.bind_interdomain(-1, 5), ValueError),
                      (lambda: ec.bind_interdomain(0x7FF0, 5), ValueError),
                      (lambda: ec.bind_interdomain(1, 0), ValueError),
                      (lambda: ec.bind_interdomain(1, MAX_PORT + 1), ValueError),
                      (lambda: ec.bind_interdomain(1, True), TypeError),
                      (lambda: ec.bind_unbound("1"), TypeError),
                      (lambda: ec.bind_virq(99), ValueError),
                      (lambda: ec.bind_virq("nosuch"), ValueError),
                      (lambda: ec.bind_virq(1.5), TypeError),
                      (lambda: ec.notify(5), ValueError),  # not bound here
                      (lambda: ec.unbind(5), ValueError),
                      (lambda: ec.notify(-1), ValueError),
                      (lambda: ec.wait(-1), ValueError)):
        with pytest.raises(exc):
            call()
    assert calls == []
    ec.close()


def test_no_evtchn_device_is_a_clear_error(tmp_path):
    with pytest.raises(xenprivcmd.NotDom0Error) as got:
        xenprivcmd.EventChannels(str(tmp_path / "evtchn"))
    assert "evtchn" in str(got.value)
