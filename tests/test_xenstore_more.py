"""xenstore watches, transactions, mkdir, permissions, domain introduction (issue 24).

Each test runs twice: against the client over an in-process xenstored speaking the
wire protocol (tests/fakexenstored.py), and against the simulator's store (which
answers the same messages through the same operations).  The real xenstored's turn
is tests/realxen/test_surface.py.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import threading
import time
from typing import Iterator

import pytest

import xenprivcmd
from xenprivcmd.errors import XenstoreError, XenstoreNoEntry
from xenprivcmd.store import connection as xsconn
from xenprivcmd.store.client import Xenstore
from xenprivcmd.types import WatchEvent, XenstorePermission

from .fakexenstored import XS_WATCH, FakeXenstored


@pytest.fixture
def sockdir() -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="xs", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(autouse=True)
def no_real_xenstore(monkeypatch: pytest.MonkeyPatch, sockdir: str) -> None:
    monkeypatch.delenv("XENSTORED_PATH", raising=False)
    monkeypatch.setattr(xsconn, "SOCKET_PATHS", (os.path.join(sockdir, "no-socket"),))
    monkeypatch.setattr(xsconn, "DEVICE_PATHS", (os.path.join(sockdir, "no-xenbus"),))


@pytest.fixture
def fake(sockdir: str) -> Iterator[FakeXenstored]:
    with FakeXenstored(sockdir) as f:
        yield f


class SimSide:
    """The simulator's store and its knobs, in the fake's shape."""

    def __init__(self) -> None:
        self.h = xenprivcmd.open("sim:///default")
        self.store = self.h.transport.xenstore()

    @property
    def conflicts(self) -> int:
        return int(self.store.conflicts)

    @conflicts.setter
    def conflicts(self, n: int) -> None:
        self.store.conflicts = n


@pytest.fixture(params=["client", "sim"])
def side(request, fake):
    if request.param == "client":
        with Xenstore.open(fake.path, timeout=2.0) as xs:
            yield xs, fake
    else:
        s = SimSide()
        yield s.store, s
        s.h.close()


def test_a_watch_fires_once_when_set_then_on_changes_below_it(side):
    xs, _ = side
    with xs.watch("/local/domain/1/memory", "tok") as w:
        assert w.next(2.0) == WatchEvent("/local/domain/1/memory", "tok")
        assert w.next(0.05) is None
        xs.write("/local/domain/1/memory/target", "1000")
        assert w.next(2.0) == WatchEvent("/local/domain/1/memory/target", "tok")
        xs.write("/local/domain/1/other", "x")  # not below the watch
        xs.write("/local/domain/1/memory/target", "2000")
        assert w.next(2.0) == WatchEvent("/local/domain/1/memory/target", "tok")
        assert w.next(0.05) is None
    with pytest.raises(ValueError):
        w.next(0)
    xs.write("/local/domain/1/memory/target", "3000")  # unwatched: nothing queued anywhere
    assert list(w) == []


def test_removing_a_node_fires_the_watches_below_it(side):
    xs, _ = side
    xs.write("/test/a/b", "1")
    with xs.watch("/test/a/b") as w:
        assert w.next(2.0).path == "/test/a/b"
        xs.rm("/test/a")
        assert w.next(2.0).path == "/test/a/b"


def test_iteration_and_default_tokens(side):
    xs, _ = side
    with xs.watch("/test") as w1, xs.watch("/test") as w2:
        assert w1.token != w2.token and w1.token.startswith("xenprivcmd:")
        got = []

        def writer() -> None:
            time.sleep(0.1)
            for i in range(3):
                xs.write(f"/test/n{i}", str(i))

        threading.Thread(target=writer).start()
        for event in w1:
            got.append(event.path)
            if len(got) == 4:
                break
        assert got == ["/test", "/test/n0", "/test/n1", "/test/n2"]
        assert [w2.next(2.0).path for _ in range(4)] == got
        with pytest.raises(ValueError):
            xs.watch("/other", w1.token)
    with pytest.raises(ValueError):
        xs.watch("/x", "")
    with pytest.raises(ValueError):
        w1.next(-1)


def test_a_waiting_watch_lets_other_requests_through(side):
    xs, _ = side
    with xs.watch("/test/slow") as w:
        w.next(2.0)
        out = {}

        def waiter() -> None:
            out["event"] = w.next(5.0)

        t = threading.Thread(target=waiter)
        t.start()
        time.sleep(0.1)
        t0 = time.monotonic()
        assert xs.read("/local/domain/1/name")  # not held up by the waiting watch
        assert time.monotonic() - t0 < 1.0
        xs.write("/test/slow", "now")
        t.join(5.0)
        assert out["event"].path == "/test/slow"


def test_an_event_before_a_reply_is_kept_for_its_watch(fake):
    with Xenstore.open(fake.path, timeout=2.0) as xs, xs.watch("/stray", "stray") as w:
        assert w.next(2.0).path == "/stray"
        fake.faults.append("event_first")
        assert xs.read("/local/domain/1/name") == b"web"
        assert w.next(0) == WatchEvent("/stray", "stray")


def test_watches_are_set_again_after_a_reconnect(fake, sockdir):
    xs = Xenstore.open(fake.path, timeout=2.0)
    w = xs.watch("/test", "t")
    assert w.next(2.0).path == "/test"
    fake.stop()
    with pytest.raises(OSError):
        xs.read("/")
    with FakeXenstored(sockdir) as again:
        assert xs.read("/local/domain/0/name") == b"Domain-0"  # reconnects, watches again
        assert [r[0] for r in again.requests[:1]] == [XS_WATCH]
        assert w.next(2.0).path == "/test"  # fired once more when set
        xs.write("/test/x", "1")
        assert w.next(2.0).path == "/test/x"
    xs.close()


# -- transactions ---------------------------------------------------------------------------------

def test_a_transaction_commits_at_once(side):
    xs, _ = side
    xs.write("/test/count", "1")
    with xs.watch("/test/count") as w:
        w.next(2.0)
        for tx in xs.transaction():
            with tx:
                n = int(tx.read("/test/count"))
                tx.write("/test/count", str(n + 1))
                tx.write("/test/other", "x")
                assert xs.read("/test/count") == b"1"  # not yet, outside it
                assert tx.read("/test/count") == b"2"
        assert tx.state == "committed"
        assert xs.read("/test/count") == b"2" and xs.read("/test/other") == b"x"
        assert w.next(2.0).path == "/test/count"  # fired at the commit


def test_the_function_form_retries_conflicts(side):
    xs, knobs = side
    xs.write("/test/count", "10")
    runs = []

    def bump(tx):
        runs.append(1)
        n = int(tx.read("/test/count"))
        tx.write("/test/count", str(n + 1))
        return n + 1

    knobs.conflicts = 2
    assert xs.transaction(bump) == 11
    assert len(runs) == 3 and xs.read("/test/count") == b"11"


def test_a_real_conflict_retries_with_the_new_value(side):
    xs, _ = side
    xs.write("/test/count", "1")
    attempts = 0
    for tx in xs.transaction():
        with tx:
            attempts += 1
            n = int(tx.read("/test/count"))
            if attempts == 1:
                xs.write("/test/count", "5")  # another writer, mid-transaction
            tx.write("/test/count", str(n + 1))
    assert attempts == 2 and xs.read("/test/count") == b"6"


def test_the_loop_form_without_with_commits_too(side):
    xs, knobs = side
    knobs.conflicts = 1
    seen = 0
    for tx in xs.transaction():
        seen += 1
        tx.write("/test/bare", str(seen))
    assert seen == 2 and xs.read("/test/bare") == b"2"


def test_an_exception_aborts_and_too_many_conflicts_give_up(side):
    xs, knobs = side
    with pytest.raises(RuntimeError):
        for tx in xs.transaction():
            with tx:
                tx.write("/test/never", "1")
                raise RuntimeError("no")
    with pytest.raises(XenstoreNoEntry):
        xs.read("/test/never")
    knobs.conflicts = 5
    with pytest.raises(XenstoreError) as got:
        xs.transaction(lambda tx: tx.write("/test/x", "1"), attempts=3)
    assert got.value.errno == errno.EAGAIN and "3 times" in str(got.value)
    with pytest.raises(ValueError):
        xs.transaction(attempts=0)


# -- mkdir, permissions ------------------------------------------------------------------------------

def test_mkdir_and_permissions(side):
    xs, _ = side
    xs.mkdir("/test/dir")
    assert xs.read("/test/dir") == b"" and xs.directory("/test") == ["dir"]
    xs.write("/test/dir", "v")
    xs.mkdir("/test/dir")  # exists: unchanged
    assert xs.read("/test/dir") == b"v"
    xs.set_perms("/test/dir", ["b0", XenstorePermission(5, "read"), (7, "write")])
    assert xs.get_perms("/test/dir") == [XenstorePermission(0, "both"), XenstorePermission(5, "read"),
                                         XenstorePermission(7, "write")]
    assert [str(p) for p in xs.get_perms("/test/dir")] == ["b0", "r5", "w7"]
    for bad in ([], ["x0"], ["b"], [(1, "all")], [object()]):
        with pytest.raises((ValueError, TypeError)):
            xs.set_perms("/test/dir", bad)
    with pytest.raises(XenstoreNoEntry):
        xs.get_perms("/test/nosuch")


# -- domains -------------------------------------------------------------------------------------------

def test_introduce_and_release_fire_the_special_watches(side):
    xs, _ = side
    with xs.watch("@introduceDomain") as intro, xs.watch("@releaseDomain") as rel:
        assert intro.next(2.0).path == "@introduceDomain" and rel.next(2.0).path == "@releaseDomain"
        if xs.is_domain_introduced(3):
            xs.release_domain(3)
            assert rel.next(2.0).path == "@releaseDomain"
        assert not xs.is_domain_introduced(3)
        xs.introduce_domain(3, 0x1234, 5)
        assert intro.next(2.0) == WatchEvent("@introduceDomain", intro.token)
        assert xs.is_domain_introduced(3)
        with pytest.raises(XenstoreError) as twice:
            xs.introduce_domain(3, 0x1234, 5)
        assert twice.value.errno == errno.EEXIST
        xs.release_domain(3)
        assert rel.next(2.0).path == "@releaseDomain"
        assert not xs.is_domain_introduced(3)
    for call in (lambda: xs.introduce_domain(-1, 1, 1), lambda: xs.introduce_domain(3, -1, 1),
                 lambda: xs.introduce_domain(3, 1, 0), lambda: xs.release_domain(1 << 16),
                 lambda: xs.is_domain_introduced("3")):
        with pytest.raises((ValueError, TypeError)):  # a str domid: TypeError (abi.hypercalls.check_domid)
            call()


def test_bad_arguments_send_nothing(fake):
    with Xenstore.open(fake.path, timeout=2.0) as xs:
        before = len(fake.requests)
        for call in (lambda: xs.mkdir(""), lambda: xs.get_perms("a\0b"), lambda: xs.set_perms("/x", []),
                     lambda: xs.watch(""), lambda: xs.introduce_domain(1, 1 << 52, 1)):
            with pytest.raises(ValueError):
                call()
        assert len(fake.requests) == before


def test_the_simulator_fires_release_domain_when_a_guest_goes():
    with xenprivcmd.open("sim:///default") as h:
        xs = h.transport.xenstore()
        with xs.watch("@releaseDomain") as rel, xs.watch("/local/domain/3") as mine:
            rel.next(0)
            mine.next(0)
            h.shutdown("web1")
            assert rel.next(1.0).path == "@releaseDomain"
            h.destroy(3)
            assert rel.next(1.0).path == "@releaseDomain"
            assert mine.next(1.0).path == "/local/domain/3"  # its nodes removed
            assert not xs.is_domain_introduced(3) and xs.is_domain_introduced(2)
