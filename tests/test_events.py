"""Domain events (issue 24): Handle.events on the simulator, xpsh event, xpsh console.

The simulator's xenstore fires @releaseDomain/@introduceDomain as xenstored does;
pause and unpause are seen by the stream's poll.  xpsh console runs in a
subprocess on a pseudo-terminal, attached to a simulated guest's console pty.
"""

from __future__ import annotations

import io
import json
import os
import pty
import subprocess
import sys
import threading
import time
import uuid

import pytest

import xenprivcmd
from xenprivcmd import events as _events
from xenprivcmd.shell import run

from .terminal import read_until

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def xen():
    with xenprivcmd.open("sim:///default?clock=real") as h:
        yield h


def later(delay: float, *steps) -> threading.Thread:
    def go() -> None:
        time.sleep(delay)
        for step in steps:
            if isinstance(step, (int, float)):
                time.sleep(step)
            else:
                step()

    t = threading.Thread(target=go)
    t.start()
    return t


def test_a_guests_life_in_order_each_within_two_seconds(xen):
    with xen.events(timeout=10) as stream:
        marks = {}

        def mark(name, fn):
            def step():
                marks[name] = time.time()
                fn()
            return step

        t = later(0.2, mark("paused", lambda: xen.pause("web1")), 0.3,
                  mark("unpaused", lambda: xen.unpause("web1")), 0.3,
                  mark("shutdown", lambda: xen.shutdown("web1")), 0.3,
                  mark("destroyed", lambda: xen.destroy("web1")))
        got = [stream.next(5.0) for _ in range(4)]
        t.join()
    assert [(e.event, e.domid, e.name, e.detail) for e in got] == [
        ("paused", 1, "web1", None), ("unpaused", 1, "web1", None), ("shutdown", 1, "web1", "poweroff"),
        ("destroyed", 1, "web1", None)]
    for e in got:
        assert 0 <= e.time - marks[e.event] < 2.0, (e, marks[e.event])


def test_a_new_domain_is_started_and_named(xen):
    with xen.events(domains=["new1"], timeout=10) as stream:
        domid = xen.create_domain()  # paused, as a toolstack builds it
        xen.transport.xenstore().write(f"/local/domain/{domid}/name", "new1")
        e = stream.next(5.0)
        assert (e.event, e.domid, e.name) == ("started", domid, "new1")
        xen.unpause(domid)
        e = stream.next(5.0)
        assert (e.event, e.domid) == ("unpaused", domid)
        xen.destroy(domid)
        assert stream.next(5.0)[:3] == ("destroyed", domid, "new1")


def test_a_nameless_domain_is_started_after_the_grace(xen):
    with xen.events(timeout=10) as stream:
        t0 = time.monotonic()
        domid = xen.create_domain()
        e = stream.next(5.0)
        assert (e.event, e.domid, e.name) == ("started", domid, None)
        assert _events.NAME_GRACE_SECONDS <= time.monotonic() - t0 < 2.0 + _events.NAME_GRACE_SECONDS


def test_filters_by_name_id_and_uuid(xen):
    u = xen.lookup("db1").uuid
    for domains in (["db1"], [2], ["2"], [u], [str(u)], "db1"):
        with xen.events(domains=domains, timeout=5) as stream:
            xen.pause("web1")
            xen.pause("db1")
            e = stream.next(3.0)
            assert (e.event, e.domid) == ("paused", 2), domains
            xen.unpause("web1")
            xen.unpause("db1")
            assert stream.next(3.0).domid == 2
    with pytest.raises(TypeError):
        xen.events(domains=[1.5])
    with pytest.raises(ValueError):
        xen.events(timeout=-1)


def test_the_streams_timeout_ends_iteration(xen):
    t0 = time.monotonic()
    with xen.events(timeout=0.6) as stream:
        assert list(stream) == []
    assert 0.5 < time.monotonic() - t0 < 3.0
    with pytest.raises(ValueError):
        stream.next(0)
    with xen.events() as stream:
        assert stream.next(0.2) is None


def test_a_reused_domid_is_destroyed_then_started(xen):
    with xen.events(timeout=10) as stream:
        host = xen.transport.host
        old = host.domains[3]
        xen.destroy(3)
        new = xen.create_domain()
        if new != 3:  # the rover moved on: make the simulator hand out 3 again
            xen.destroy(new)
            host.rover = 2
            new = xen.create_domain()
        assert new == 3 and host.domains[3] is not old
        seen = [stream.next(5.0) for _ in range(2)]
        assert [(e.event, e.domid) for e in seen] == [("destroyed", 3), ("started", 3)]
        assert seen[0].name == "build1"


# -- xpsh event -----------------------------------------------------------------------------------

def test_xpsh_event_json_one_object_a_line(xen):
    out, err = io.StringIO(), io.StringIO()
    later(0.5, lambda: xen.pause("db1"), 1.0, lambda: xen.shutdown("web1"))
    rc = run(["event", "--loop", "--timeout", "3", "--json"], stdout=out, stderr=err, handle=xen, env={})
    assert rc == 0, err.getvalue()
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(d["event"], d["domid"], d["name"], d["detail"]) for d in lines] == [
        ("paused", 2, "db1", None), ("shutdown", 1, "web1", "poweroff")]
    assert all(set(d) == {"event", "domid", "name", "detail", "time"} for d in lines)
    assert all(abs(d["time"] - time.time()) < 10 for d in lines)


def test_xpsh_event_text_waits_for_one(xen):
    out, err = io.StringIO(), io.StringIO()
    later(0.3, lambda: xen.pause("db1"))
    rc = run(["event", "--domain", "db1", "--timeout", "5"], stdout=out, stderr=err, handle=xen, env={})
    assert rc == 0, err.getvalue()
    assert out.getvalue() == "event 'paused' for domain 'db1' (2)\nevents received: 1\n"
    rc = run(["event", "--domain", "nosuch"], stdout=out, stderr=err, handle=xen, env={})
    assert rc == 1 and "nosuch" in err.getvalue()
    out = io.StringIO()
    assert run(["event", "--timeout", "0.3"], stdout=out, stderr=err, handle=xen, env={}) == 0
    assert out.getvalue() == "event loop timed out\nevents received: 0\n"


# -- xpsh console -------------------------------------------------------------------------------------

def test_xpsh_console_on_a_terminal_echoes_and_detaches_on_ctrl_bracket():
    master, slave = pty.openpty()
    env = dict(os.environ, PYTHONPATH=ROOT)
    p = subprocess.Popen([sys.executable, "-m", "xenprivcmd", "-c", "sim:///default", "console", "web1"],
                         stdin=slave, stdout=slave, stderr=slave, env=env, cwd=ROOT, start_new_session=True)
    os.close(slave)
    try:
        banner = read_until(master, b"Escape character", 20.0)
        assert b"Connected to domain 'web1'" in banner
        os.write(master, b"uname\r")
        got = read_until(master, b"~ # ", 20.0)
        assert b"uname" in got
        os.write(master, b"\x1d")
        assert p.wait(20) == 0
    finally:
        if p.poll() is None:
            p.kill()
        os.close(master)


def test_xpsh_console_needs_a_terminal_and_a_console():
    env = dict(os.environ, PYTHONPATH=ROOT)
    p = subprocess.run([sys.executable, "-m", "xenprivcmd", "-c", "sim:///default", "console", "web1"],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert p.returncode == 1 and p.stderr == "error: console: stdin is not a terminal (run it from one)\n"
    master, slave = pty.openpty()
    try:
        for dom, words in (("0", "domain 0"), ("nosuch", "nosuch")):
            p = subprocess.run([sys.executable, "-m", "xenprivcmd", "-c", "sim:///default", "console", dom],
                               stdin=slave, capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
            assert p.returncode == 1 and words in p.stderr and p.stderr.startswith("error: "), p.stderr
    finally:
        os.close(master)
        os.close(slave)


def test_no_console_for_a_domain_without_one(xen):
    from xenprivcmd.shell.console import console_tty
    from xenprivcmd.shell.parse import UsageError
    from xenprivcmd.shell.session import Options, Session

    domid = xen.create_domain()
    s = Session(Options(), io.StringIO(), io.StringIO(), handle=xen, env={})
    with pytest.raises(UsageError, match="has no console"):
        console_tty(s, xen.domain_info(domid))
    assert console_tty(s, xen.lookup("web1")).startswith("/dev/pts/")


def test_domain_event_values(xen):
    from xenprivcmd.types import DomainEvent

    e = DomainEvent("shutdown", 1, "web1", "poweroff", 1.5)
    assert e._asdict() == {"event": "shutdown", "domid": 1, "name": "web1", "detail": "poweroff", "time": 1.5}
    assert set(_events.EVENTS) == {"started", "paused", "unpaused", "shutdown", "dying", "destroyed"}
    assert uuid.UUID(str(xen.lookup("web1").uuid))
