"""The xenstore client, against an in-process xenstored (tests/fakexenstored.py)."""

from __future__ import annotations

import errno
import os
import pickle
import shutil
import socket
import struct
import tempfile
import threading
import time
import tty
from typing import Iterator, List

import pytest

from xenprivcmd.errors import (
    DecodeError,
    XenprivcmdError,
    XenstoreError,
    XenstoreNoEntry,
    XenstoreTimeout,
    XenstoreUnavailable,
)
from xenprivcmd.store import connection as xsconn
from xenprivcmd.store import wire as xsmod
from xenprivcmd.store.client import Xenstore, try_domain_names
from xenprivcmd.store.connection import DeviceConnection, SocketConnection

from .fakexenstored import HDR, UUID0, UUID1, UUID5, XS_READ, XS_WRITE, FakeXenstored

# -- fixtures --------------------------------------------------------------------


@pytest.fixture
def sockdir() -> Iterator[str]:
    # Not tmp_path: a unix socket path must fit in 108 bytes.
    d = tempfile.mkdtemp(prefix="xs", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(autouse=True)
def no_real_xenstore(monkeypatch: pytest.MonkeyPatch, sockdir: str) -> None:
    """Never reach a real xenstore from a test: default paths point into an empty dir."""
    monkeypatch.delenv("XENSTORED_PATH", raising=False)
    monkeypatch.setattr(xsconn, "SOCKET_PATHS", (os.path.join(sockdir, "no-socket"),))
    monkeypatch.setattr(xsconn, "DEVICE_PATHS", (os.path.join(sockdir, "no-xenbus"),))


@pytest.fixture
def fake(sockdir: str) -> Iterator[FakeXenstored]:
    with FakeXenstored(sockdir) as f:
        yield f


@pytest.fixture
def xs(fake: FakeXenstored) -> Iterator[Xenstore]:
    with Xenstore.open(fake.path, timeout=2.0) as x:
        yield x


@pytest.fixture
def pty_device(fake: FakeXenstored) -> Iterator[str]:
    """A raw pty whose master side the fake serves: a stand-in for /dev/xen/xenbus, opened by path."""
    master, slave = os.openpty()
    tty.setraw(slave)  # 8-bit clean, no echo; kept open so the setting stays
    fake.serve_fd(master)
    yield os.ttyname(slave)
    os.close(slave)
    os.close(master)


def stale_socket(path: str) -> None:
    """Leave a socket file nobody listens on, as a dead xenstored does."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.close()


# -- the basic operations ----------------------------------------------------------


def test_read_returns_the_value_as_bytes(xs: Xenstore, fake: FakeXenstored) -> None:
    assert xs.read("/local/domain/1/name") == b"web"
    assert xs.read("/local/domain/pool") == b""
    mtype, _, payload = fake.requests[-1]
    assert (mtype, payload) == (XS_READ, b"/local/domain/pool\0")


def test_read_of_a_missing_node_is_no_entry(xs: Xenstore) -> None:
    with pytest.raises(XenstoreNoEntry) as exc:
        xs.read("/local/domain/9/name")
    e = exc.value
    assert isinstance(e, FileNotFoundError) and isinstance(e, XenstoreError) and isinstance(e, XenprivcmdError)
    assert e.errno == errno.ENOENT
    assert e.path == e.filename == "/local/domain/9/name"
    assert e.op == "READ"
    assert "/local/domain/9/name" in str(e) and "ENOENT" in str(e)


def test_directory_lists_child_names(xs: Xenstore) -> None:
    assert sorted(xs.directory("/local/domain")) == ["0", "1", "5", "pool"]
    assert sorted(xs.directory("/local/domain/0")) == ["domid", "name", "vm"]
    assert xs.directory("/local/domain/pool") == []
    with pytest.raises(XenstoreNoEntry):
        xs.directory("/nowhere")


def test_write_creates_the_node_and_its_parents(xs: Xenstore, fake: FakeXenstored) -> None:
    xs.write("/tool/xp/a", "hé")
    xs.write("/tool/xp/b", b"\x00\xff")
    assert fake.requests[-2][2] == b"/tool/xp/a\0h\xc3\xa9"
    assert fake.requests[-2][0] == XS_WRITE
    assert xs.read("/tool/xp/a") == "hé".encode()
    assert xs.read("/tool/xp/b") == b"\x00\xff"
    assert sorted(xs.directory("/tool/xp")) == ["a", "b"]
    xs.write("/tool/xp/a", "")
    assert xs.read("/tool/xp/a") == b""


def test_rm_removes_the_subtree(xs: Xenstore) -> None:
    xs.rm("/local/domain/5")
    with pytest.raises(XenstoreNoEntry):
        xs.read("/local/domain/5/name")
    assert "5" not in xs.directory("/local/domain")
    xs.rm("/local/domain/5")  # gone, but its parent exists: fine, as in xenstored
    with pytest.raises(XenstoreNoEntry) as exc:
        xs.rm("/no/such/parent")
    assert exc.value.op == "RM" and exc.value.path == "/no/such/parent"


def test_get_domain_path(xs: Xenstore, fake: FakeXenstored) -> None:
    assert xs.get_domain_path(3) == "/local/domain/3"
    assert fake.requests[-1][2] == b"3\0"
    for bad in (-1, 0x7FF0, 70000):  # the package's one domid check: reserved ids too
        with pytest.raises(ValueError):
            xs.get_domain_path(bad)
    for bad in (True, "3"):
        with pytest.raises(TypeError):
            xs.get_domain_path(bad)  # type: ignore[arg-type]


def test_bad_paths_are_refused_before_sending(xs: Xenstore, fake: FakeXenstored) -> None:
    for bad in ("", "/a\0b"):
        with pytest.raises(ValueError):
            xs.read(bad)
    assert fake.requests == []


def test_request_beyond_payload_max_is_e2big_and_not_sent(xs: Xenstore, fake: FakeXenstored) -> None:
    with pytest.raises(XenstoreError) as exc:
        xs.write("/big", b"x" * 4096)
    assert exc.value.errno == errno.E2BIG and not isinstance(exc.value, XenstoreNoEntry)
    assert fake.requests == []
    xs.write("/big", b"x" * (4096 - len(b"/big\0")))  # exactly the maximum is fine
    assert len(xs.read("/big")) == 4091


def test_req_id_increments_and_tx_id_is_zero(xs: Xenstore, fake: FakeXenstored) -> None:
    xs.read("/local/domain/0/name")
    xs.directory("/")
    xs.get_domain_path(0)
    ids = [r[1] for r in fake.requests]
    assert ids == [1, 2, 3]


def test_tx_id_sent_is_zero(fake: FakeXenstored) -> None:
    # Look at the bytes on the wire with a raw socketpair.
    a, b = socket.socketpair()
    x = Xenstore(SocketConnection(a), timeout=2.0)
    t = threading.Thread(target=lambda: x.directory("/"), daemon=True)
    t.start()
    data = b.recv(4096)
    mtype, req_id, tx_id, length = HDR.unpack_from(data)
    assert (mtype, tx_id, length) == (1, 0, 2) and data[16:] == b"/\0"
    b.sendall(HDR.pack(1, req_id, 0, 6) + b"local\0")
    t.join(5)
    assert not t.is_alive()
    x.close()
    b.close()


# -- error replies ---------------------------------------------------------------


@pytest.mark.parametrize(
    "name,err", [("EACCES", errno.EACCES), ("EINVAL", errno.EINVAL), ("E2BIG", errno.E2BIG), ("EWHATEVER", errno.EIO)]
)
def test_error_reply_names_become_errnos(xs: Xenstore, fake: FakeXenstored, name: str, err: int) -> None:
    fake.faults.append("error:" + name)
    with pytest.raises(XenstoreError) as exc:
        xs.read("/local/domain/0/name")
    assert exc.value.errno == err
    assert not isinstance(exc.value, FileNotFoundError)
    assert name in str(exc.value)
    assert xs.read("/local/domain/0/name") == b"Domain-0"  # the connection is still good


def test_errno_from_name() -> None:
    assert xsmod.errno_from_name("ENOENT") == errno.ENOENT
    assert xsmod.errno_from_name("EISCONN") == errno.EISCONN
    assert xsmod.errno_from_name("ENOTDIR") == errno.ENOTDIR  # not in xsd_errors, still a known errno
    assert xsmod.errno_from_name("errorcode") == errno.EIO
    assert xsmod.errno_from_name("") == errno.EIO


def test_unknown_message_type_gets_einval(xs: Xenstore) -> None:
    with pytest.raises(XenstoreError) as exc:
        xs.request(xsmod.XS_MKDIR + 100, b"/x\0", path="/x")
    assert exc.value.errno == errno.EINVAL


def test_errors_pickle() -> None:
    e = XenstoreNoEntry(errno.ENOENT, "xenstore READ /a: gone", path="/a", op="READ")
    e2 = pickle.loads(pickle.dumps(e))
    assert type(e2) is XenstoreNoEntry
    assert (e2.errno, e2.path, e2.op, str(e2)) == (errno.ENOENT, "/a", "READ", "xenstore READ /a: gone")


# -- malformed replies -----------------------------------------------------------


@pytest.mark.parametrize("fault", ["wrong_req_id", "oversize", "truncate", "close", "wrong_type"])
def test_malformed_reply_is_decode_error_and_reconnects(xs: Xenstore, fake: FakeXenstored, fault: str) -> None:
    fake.faults.append(fault)
    start = time.monotonic()
    with pytest.raises(DecodeError) as exc:
        xs.read("/local/domain/1/name")
    assert time.monotonic() - start < 1.5  # detected, not timed out
    assert not isinstance(exc.value, OSError)
    assert xs.kind is None  # the suspect connection was dropped
    assert xs.read("/local/domain/1/name") == b"web"
    assert fake.connections == 2 and xs.reconnects == 1


def test_oversize_reply_is_refused_from_its_header(xs: Xenstore, fake: FakeXenstored) -> None:
    fake.faults.append("oversize")
    with pytest.raises(DecodeError, match="5000"):
        xs.read("/local/domain/1/name")


def test_wrong_req_id_message(xs: Xenstore, fake: FakeXenstored) -> None:
    fake.faults.append("wrong_req_id")
    with pytest.raises(DecodeError, match="expected"):
        xs.read("/")


def test_device_transport_without_reconnect_reports_not_connected(fake: FakeXenstored) -> None:
    a, b = socket.socketpair()
    fake.serve_socket(b)
    fd = os.dup(a.fileno())
    a.close()
    x = Xenstore(DeviceConnection(fd, "<socketpair>"), timeout=2.0)
    assert x.kind == "device" and x.read("/local/domain/5/name") == b"db"
    fake.faults.append("truncate")
    with pytest.raises(DecodeError, match="closed"):
        x.read("/local/domain/5/name")
    with pytest.raises(XenstoreError) as exc:
        x.read("/local/domain/5/name")
    assert exc.value.errno == errno.ENOTCONN
    x.close()


# -- the helpers the library uses ------------------------------------------------


def test_domain_names(xs: Xenstore) -> None:
    assert xs.domain_names() == {0: "Domain-0", 1: "web", 5: "db"}
    assert xs.domids() == [0, 1, 5]


def test_domain_names_skips_domains_without_name(xs: Xenstore) -> None:
    xs.write("/local/domain/7/vm", "/vm/x")  # being built: no name yet
    assert xs.domain_names() == {0: "Domain-0", 1: "web", 5: "db"}


def test_domain_names_ignores_entries_that_are_no_domid(xs: Xenstore) -> None:
    for odd in ("99999", "0x1", "\u00b2", "-3", "1a"):
        xs.write(f"/local/domain/{odd}/name", "odd")
    assert xs.domain_names() == {0: "Domain-0", 1: "web", 5: "db"}
    assert xs.domids() == [0, 1, 5]


def test_interrupt_mid_reply_drops_the_connection(
    xs: Xenstore, fake: FakeXenstored, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert xs.read("/") == b""
    transport = xs._transport
    assert transport is not None

    def interrupted(size: int, timeout: object) -> bytes:
        raise KeyboardInterrupt

    monkeypatch.setattr(transport, "recv", interrupted)
    with pytest.raises(KeyboardInterrupt):
        xs.read("/local/domain/1/name")
    assert xs.kind is None  # the unread reply must not answer the next request
    assert xs.read("/local/domain/0/name") == b"Domain-0"


def test_domain_names_of_an_empty_store(fake: FakeXenstored, xs: Xenstore) -> None:
    xs.rm("/local")
    assert xs.domain_names() == {}
    assert xs.domain_uuid_map() == {}


def test_name_of_and_domid_of(xs: Xenstore) -> None:
    assert xs.name_of(0) == "Domain-0"
    assert xs.name_of(5) == "db"
    assert xs.name_of(42) is None
    assert xs.domid_of("web") == 1
    assert xs.domid_of("Domain-0") == 0
    assert xs.domid_of("nope") is None
    xs.write("/local/domain/9/name", "web")  # duplicate name: the lowest domid wins
    assert xs.domid_of("web") == 1


def test_vm_uuid_from_vm_node(xs: Xenstore) -> None:
    assert xs.vm_uuid(1) == UUID1


def test_vm_uuid_prefers_the_uuid_node_over_the_path(xs: Xenstore) -> None:
    xs.write("/local/domain/8/vm", "/vm/not-a-uuid")
    xs.write("/vm/not-a-uuid/uuid", UUID5.upper())
    assert xs.vm_uuid(8) == UUID5  # canonical lowercase


def test_vm_uuid_from_the_path(xs: Xenstore) -> None:
    assert xs.vm_uuid(0) == UUID0  # /vm/<uuid0> has no uuid node
    assert xs.vm_uuid(5) == UUID5  # /vm/<uuid>-2 (renamed by an old toolstack)


def test_vm_uuid_unknown(xs: Xenstore) -> None:
    assert xs.vm_uuid(42) is None  # no such domain
    xs.write("/local/domain/8/name", "x")
    assert xs.vm_uuid(8) is None  # no vm node
    xs.write("/local/domain/8/vm", "/vm/garbage")
    assert xs.vm_uuid(8) is None  # neither the node nor the path is a uuid
    xs.write("/local/domain/8/vm", "relative")
    assert xs.vm_uuid(8) is None


def test_domain_uuid_map(xs: Xenstore) -> None:
    assert xs.domain_uuid_map() == {0: UUID0, 1: UUID1, 5: UUID5}


# -- transports and their choice ---------------------------------------------------


def test_xenstored_path_env_selects_the_socket(monkeypatch: pytest.MonkeyPatch, fake: FakeXenstored) -> None:
    monkeypatch.setenv("XENSTORED_PATH", fake.path)
    with Xenstore.open() as x:
        assert x.kind == "socket" and x.path == fake.path
        assert x.read("/local/domain/0/name") == b"Domain-0"
    assert fake.connections == 1


def test_xenstored_path_env_to_nothing_is_unavailable(monkeypatch: pytest.MonkeyPatch, sockdir: str) -> None:
    missing = os.path.join(sockdir, "gone")
    monkeypatch.setenv("XENSTORED_PATH", missing)
    with pytest.raises(XenstoreUnavailable) as exc:
        Xenstore.open()
    assert exc.value.errno == errno.ENOENT and missing in str(exc.value)


def test_xenstored_path_env_has_no_fallback(monkeypatch: pytest.MonkeyPatch, fake: FakeXenstored, sockdir: str) -> None:
    stale = os.path.join(sockdir, "stale")
    stale_socket(stale)
    monkeypatch.setattr(xsconn, "SOCKET_PATHS", (fake.path,))  # a working default is not used
    monkeypatch.setenv("XENSTORED_PATH", stale)
    with pytest.raises(XenstoreUnavailable) as exc:
        Xenstore.open()
    assert exc.value.errno == errno.ECONNREFUSED
    assert fake.connections == 0


def test_explicit_path_beats_the_env(monkeypatch: pytest.MonkeyPatch, fake: FakeXenstored, sockdir: str) -> None:
    monkeypatch.setenv("XENSTORED_PATH", os.path.join(sockdir, "gone"))
    with Xenstore.open(fake.path) as x:
        assert x.read("/local/domain/1/name") == b"web"


def test_socket_is_preferred_to_the_device(
    monkeypatch: pytest.MonkeyPatch, fake: FakeXenstored, pty_device: str
) -> None:
    monkeypatch.setattr(xsconn, "SOCKET_PATHS", (fake.path,))
    monkeypatch.setattr(xsconn, "DEVICE_PATHS", (pty_device,))
    with Xenstore.open() as x:
        assert (x.kind, x.path) == ("socket", fake.path)
        assert x.read("/local/domain/5/name") == b"db"


def test_dead_socket_falls_back_to_the_device(
    monkeypatch: pytest.MonkeyPatch, fake: FakeXenstored, pty_device: str, sockdir: str
) -> None:
    stale = os.path.join(sockdir, "stale")
    stale_socket(stale)
    monkeypatch.setattr(xsconn, "SOCKET_PATHS", (os.path.join(sockdir, "absent"), stale))
    monkeypatch.setattr(xsconn, "DEVICE_PATHS", (os.path.join(sockdir, "absent-dev"), pty_device))
    with Xenstore.open() as x:
        assert (x.kind, x.path) == ("device", pty_device)
        assert x.read("/local/domain/5/name") == b"db"
        assert x.domain_names() == {0: "Domain-0", 1: "web", 5: "db"}
        x.write("/dev-test", b"\x00\x01\xff\n\r")  # the pty is raw: binary survives
        assert x.read("/dev-test") == b"\x00\x01\xff\n\r"


def test_device_opened_by_path(fake: FakeXenstored, pty_device: str) -> None:
    with Xenstore.open(pty_device) as x:
        assert x.kind == "device"
        assert sorted(x.directory("/local/domain/1")) == ["name", "vm"]
        with pytest.raises(XenstoreNoEntry):
            x.read("/nothing")
        assert x.read("/local/domain/1/name") == b"web"


def test_neither_transport_is_unavailable_with_the_message() -> None:
    with pytest.raises(XenstoreUnavailable) as exc:
        Xenstore.open()
    e = exc.value
    assert isinstance(e, OSError) and isinstance(e, XenstoreError)
    assert str(e) == "no xenstore: xenstored is not running and /dev/xen/xenbus is absent"
    assert e.errno == errno.ENOENT


def test_stale_socket_and_no_device_is_unavailable(monkeypatch: pytest.MonkeyPatch, sockdir: str) -> None:
    stale = os.path.join(sockdir, "stale")
    stale_socket(stale)
    monkeypatch.setattr(xsconn, "SOCKET_PATHS", (stale,))
    with pytest.raises(XenstoreUnavailable, match="xenstored is not running"):
        Xenstore.open()


def test_permission_denied_says_run_as_root(monkeypatch: pytest.MonkeyPatch, sockdir: str) -> None:
    stale = os.path.join(sockdir, "sock")
    stale_socket(stale)
    monkeypatch.setattr(xsconn, "SOCKET_PATHS", (stale,))

    def denied(path: str, timeout: object = None) -> SocketConnection:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(SocketConnection, "connect", staticmethod(denied))
    with pytest.raises(XenstoreUnavailable) as exc:
        Xenstore.open()
    assert exc.value.errno == errno.EACCES and "run as root" in str(exc.value)


def test_reconnects_after_xenstored_restart(fake: FakeXenstored, xs: Xenstore, sockdir: str) -> None:
    assert xs.read("/local/domain/0/name") == b"Domain-0"
    fake.stop()
    with pytest.raises((DecodeError, XenstoreError)):
        xs.read("/local/domain/0/name")
    with FakeXenstored(sockdir) as again:
        assert xs.read("/local/domain/0/name") == b"Domain-0"
        assert again.connections == 1


def test_closed_handle_refuses_requests(fake: FakeXenstored) -> None:
    with Xenstore.open(fake.path) as x:
        assert x.read("/") == b""
        assert "socket" in repr(x)
    assert "closed" in repr(x)
    with pytest.raises(ValueError, match="closed"):
        x.read("/")
    x.close()  # idempotent


def test_needs_a_transport_or_connector() -> None:
    with pytest.raises(ValueError):
        Xenstore()


# -- threads -----------------------------------------------------------------------


def test_concurrent_readers_get_their_own_answers(xs: Xenstore, fake: FakeXenstored) -> None:
    for t in range(8):
        for i in range(25):
            fake.tree[f"/t{t}"] = b""
            fake.tree[f"/t{t}/{i}"] = f"{t}:{i}".encode()
    fake.reply_delay = 0.0005  # a window in which a pipelined request would be seen
    errors: List[BaseException] = []
    barrier = threading.Barrier(8)

    def reader(t: int) -> None:
        try:
            barrier.wait()
            for i in range(25):
                assert xs.read(f"/t{t}/{i}") == f"{t}:{i}".encode()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=reader, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    assert errors == []
    assert len(fake.requests) == 200
    assert len({r[1] for r in fake.requests}) == 200  # every req_id distinct
    assert fake.overlaps == 0  # one request at a time on the connection
    assert fake.connections == 1


def test_overlap_detector_sees_pipelined_requests(fake: FakeXenstored) -> None:
    # The check above could fail: two requests written back to back are counted.
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(fake.path)
    msg = b"/\0"
    s.sendall(HDR.pack(XS_READ, 1, 0, len(msg)) + msg + HDR.pack(XS_READ, 2, 0, len(msg)) + msg)
    got = b""
    while len(got) < 2 * HDR.size:
        got += s.recv(4096)
    s.close()
    assert fake.overlaps >= 1


# -- timeouts ----------------------------------------------------------------------


def test_silent_xenstored_times_out(fake: FakeXenstored) -> None:
    with Xenstore.open(fake.path, timeout=0.3) as x:
        fake.fault = "silent"
        start = time.monotonic()
        with pytest.raises(XenstoreTimeout) as exc:
            x.read("/local/domain/0/name")
        elapsed = time.monotonic() - start
        assert 0.25 <= elapsed < 10.0  # bounded: no hang (generous for a loaded machine)
        e = exc.value
        assert isinstance(e, TimeoutError) and isinstance(e, XenstoreError)
        assert e.errno == errno.ETIMEDOUT and e.path == "/local/domain/0/name"
        fake.fault = None
        assert x.read("/local/domain/0/name") == b"Domain-0"  # a new connection, no stale reply
        assert fake.connections == 2


def test_server_that_never_reads_times_out(sockdir: str) -> None:
    path = os.path.join(sockdir, "deaf")
    deaf = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    deaf.bind(path)
    deaf.listen(4)  # connect succeeds from the backlog; nobody ever accepts
    try:
        start = time.monotonic()
        with pytest.raises(XenstoreTimeout):
            with Xenstore.open(path, timeout=0.2) as x:
                x.read("/")
        assert time.monotonic() - start < 2.0
    finally:
        deaf.close()


def test_device_transport_times_out(sockdir: str) -> None:
    a, b = socket.socketpair()
    fd = os.dup(a.fileno())
    a.close()
    x = Xenstore(DeviceConnection(fd), timeout=0.2)
    start = time.monotonic()
    with pytest.raises(XenstoreTimeout):
        x.read("/")
    assert time.monotonic() - start < 2.0
    data = b.recv(100)
    assert HDR.unpack_from(data)[0] == XS_READ  # the request did go out whole
    x.close()
    b.close()


def test_default_timeout_is_five_seconds(xs: Xenstore, fake: FakeXenstored) -> None:
    assert xsmod.DEFAULT_TIMEOUT == 5.0
    with Xenstore.open(fake.path) as x:
        assert x.timeout == 5.0


# -- try_domain_names --------------------------------------------------------------


def test_try_domain_names_without_any_xenstore() -> None:
    assert try_domain_names() == {}


def test_try_domain_names_with_xenstore(monkeypatch: pytest.MonkeyPatch, fake: FakeXenstored) -> None:
    monkeypatch.setenv("XENSTORED_PATH", fake.path)
    assert try_domain_names() == {0: "Domain-0", 1: "web", 5: "db"}


def test_try_domain_names_with_a_stale_socket(monkeypatch: pytest.MonkeyPatch, sockdir: str) -> None:
    stale = os.path.join(sockdir, "stale")
    stale_socket(stale)
    monkeypatch.setattr(xsconn, "SOCKET_PATHS", (stale,))
    assert try_domain_names() == {}


@pytest.mark.parametrize("fault", ["silent", "truncate", "wrong_req_id", "error:EACCES"])
def test_try_domain_names_with_a_misbehaving_xenstore(fake: FakeXenstored, fault: str) -> None:
    fake.fault = fault
    start = time.monotonic()
    assert try_domain_names(fake.path, timeout=0.2) == {}
    assert time.monotonic() - start < 2.0
    assert fake.requests  # it did ask


def test_header_layout() -> None:
    assert xsmod.HEADER.size == 16
    assert xsmod.HEADER.pack(2, 7, 0, 5) == struct.pack("=IIII", 2, 7, 0, 5)
    assert (xsmod.XS_READ, xsmod.XS_GET_DOMAIN_PATH, xsmod.XS_WRITE, xsmod.XS_RM, xsmod.XS_ERROR) == (2, 10, 11, 13, 16)
    assert xsmod.XENSTORE_PAYLOAD_MAX == 4096
