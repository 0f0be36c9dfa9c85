"""Guest memory (issue 24): map_foreign, map_resource, map_grants, restrict, the Mapping type.

On the simulator, whose privcmd device answers the same ioctls as the driver
(xenprivcmd/sim/_devices.py), so the library's own mapping code runs: the
frames are real bytes, two mappings of one frame see each other's writes, the
console ring holds the guest's boot messages that the simulated xenconsoled logged.
A fake privcmd device (a memfd, an ioctl that answers as told) checks how the
driver's errors become typed ones.  The leak test maps and unmaps 100,000 times.
"""

from __future__ import annotations

import errno
import gc
import os
import struct

import pytest

import xenprivcmd
from xenprivcmd import abi
from xenprivcmd.transport import mapping as _mapping
from xenprivcmd.transport.privcmd import PrivcmdTransport


def offsets(name: str, release: str = "4.17.0"):
    """member -> offset of a Xen struct, from the generated tables (checked against gcc facts)."""
    cls = abi.variant(release).structs[name]
    return {f[0]: getattr(cls, f[0]).offset for f in cls._fields_ if not f[0].startswith("_pad")}


CONS = offsets("xencons_interface")


def ring_ref(xen, domid: int) -> int:
    return int(xen.transport.xenstore().read(f"/local/domain/{domid}/console/ring-ref"))


@pytest.fixture
def xen():
    with xenprivcmd.open("sim:///default") as h:
        yield h


@pytest.fixture(params=["x86_64", "aarch64"])
def any_xen(request):
    with xenprivcmd.open(f"sim:///default?arch={request.param}") as h:
        yield h


def console_text(view) -> bytes:
    prod = struct.unpack_from("<I", view, CONS["out_prod"])[0]
    n = min(prod, CONS["in_cons"] - CONS["out"])
    return bytes(view[CONS["out"] + (prod - n + i) % (CONS["in_cons"] - CONS["out"])] for i in range(n))


def test_the_console_ring_holds_what_xenconsoled_logged(any_xen):
    frame = ring_ref(any_xen, 1)
    with any_xen.map_foreign(1, [frame]) as m:
        assert len(m.view) == 4096 and m.frames == (frame,) and not m.writable
        text = console_text(m.view)
        assert b"Welcome to web1" in text
        assert text in any_xen.transport.host.consoles.log(1)
        # the guest prints: the ring fills, the mapping sees it at once (no copy)
        any_xen.transport.host.consoles.write(any_xen.transport.host.domains[1], "hello from web1\r\n")
        assert console_text(m.view).endswith(b"hello from web1\r\n")
        with pytest.raises(TypeError):
            m.view[0] = 1  # read-only


def test_arm_maps_by_gfn_x86_pv_by_mfn():
    with xenprivcmd.open("sim:///default?arch=aarch64") as arm, xenprivcmd.open("sim:///default") as x86:
        assert ring_ref(arm, 1) == 0x39000  # GUEST_MAGIC_BASE, as seen on real Arm guests
        assert ring_ref(x86, 1) >= 1 << 24  # a machine frame
        with pytest.raises(xenprivcmd.MappingError) as got:
            x86.map_foreign(1, [5])  # a gfn means nothing for a PV guest
        assert got.value.failed == {5: errno.EINVAL}
        arm.map_foreign(1, [5]).close()  # its gfn 5 is RAM


def test_two_writable_mappings_see_the_same_frames(xen):
    base = ring_ref(xen, 2) - 100
    frames = [base + i for i in range(16)]
    with xen.map_foreign(2, frames, writable=True) as a, xen.map_foreign(2, list(reversed(frames))) as b:
        for i in range(16):
            a.view[i * 4096:i * 4096 + 8] = struct.pack("<Q", 0xC0DE0000 + i)
        for i in range(16):
            assert struct.unpack_from("<Q", b.view, (15 - i) * 4096)[0] == 0xC0DE0000 + i
        assert a.view.nbytes == 16 * 4096 and a.frames == tuple(frames)


def test_failed_frames_are_named_and_nothing_stays_mapped(xen):
    good = ring_ref(xen, 1)
    before = _maps()
    with pytest.raises(xenprivcmd.MappingError) as got:
        xen.map_foreign(1, [good, 7, good, 9])
    e = got.value
    assert e.failed == {7: errno.EINVAL, 9: errno.EINVAL} and e.errno == errno.EINVAL and e.domid == 1
    assert "0x7 (EINVAL)" in str(e) and "0x9 (EINVAL)" in str(e) and "2 of 4 frames" in str(e)
    assert isinstance(e, xenprivcmd.HypercallError)
    assert _maps() == before
    with pytest.raises(xenprivcmd.MappingError) as gone:
        xen.map_foreign(42, [good])
    assert gone.value.failed == {good: errno.ESRCH}


def test_paged_out_frames_are_retried(xen):
    frame = ring_ref(xen, 1)
    mem = xen.transport.host.memory
    mem.paged_out[(1, frame)] = 5
    with xen.map_foreign(1, [frame, frame + 1]) as m:
        assert b"Welcome" in console_text(m.view)
    assert mem.paged_out[(1, frame)] == 0
    mem.paged_out[(1, frame)] = 10 ** 9  # never comes back
    with pytest.raises(xenprivcmd.MappingError) as got:
        _mapping.foreign(xen.transport, 1, (frame,), False, retry_seconds=0.05)
    assert got.value.failed == {frame: errno.ENOENT} and "paged out" in str(got.value)


def test_bad_frames_issue_no_ioctl(xen):
    calls = []
    real = xen.transport.device_ioctl
    xen.transport.device_ioctl = lambda *a: calls.append(a) or real(*a)
    for frames, exc in (([], ValueError), ([-1], ValueError), ([1 << 52], ValueError), ([True], TypeError),
                        (["1"], TypeError), ("12", TypeError), (5, TypeError), ([1.0], TypeError)):
        with pytest.raises(exc):
            xen.map_foreign(1, frames)
    for dom in (-1, 0x7FF0, 1 << 16):
        with pytest.raises(ValueError):
            xen.map_foreign(dom, [1])
    with pytest.raises(ValueError):
        xen.map_foreign(1, range(_mapping.MAX_FRAMES + 1))
    assert calls == []


def test_a_read_only_handle_maps_only_for_reading():
    with xenprivcmd.open("sim:///default", read_only=True) as ro:
        frame = ring_ref(ro, 1)
        ro.map_foreign(1, [frame]).close()
        with pytest.raises(xenprivcmd.ReadOnlyError):
            ro.map_foreign(1, [frame], writable=True)
        with pytest.raises(xenprivcmd.ReadOnlyError):
            ro.map_grants(1, [0], writable=True)


def test_grants_map_the_rings_xl_granted(any_xen):
    h = any_xen
    with h.map_grants(1, [0, 1]) as g, h.map_resource(1, "grant_table") as table:
        assert g.kind == "grant" and g.frames == (0, 1)
        assert b"Welcome to web1" in console_text(g.view[:4096])
        flags, dom, frame = struct.unpack_from("<HHI", table.view, 0)
        permit = h.abi.constants["GTF_permit_access"]
        reading = h.abi.constants["GTF_reading"]
        assert (flags, dom, frame) == (permit | reading, 0, ring_ref(h, 1))  # dom0 reads it now
        with h.map_foreign(1, [ring_ref(h, 1)]) as same:
            assert bytes(same.view) == bytes(g.view[:4096])
    with h.map_resource(1, "grant_table") as table:
        assert struct.unpack_from("<H", table.view, 8)[0] == permit  # no mapping left: no reading bit
    with pytest.raises(xenprivcmd.MappingError) as got:
        h.map_grants(1, [0, 7, 1, 900])
    assert got.value.failed == {7: errno.EINVAL, 900: errno.EINVAL}
    with pytest.raises(ValueError):
        h.map_grants(1, [1 << 32])


def test_writable_grants_set_the_writing_bit(xen):
    writing = xen.abi.constants["GTF_writing"]
    with xen.map_grants(1, [1], writable=True) as g, xen.map_resource(1, "grant_table") as t:
        assert struct.unpack_from("<H", t.view, 8)[0] & writing
        g.view[2048 + 4:2048 + 8] = b"\x01\x00\x00\x00"  # req_prod, through the grant


def test_map_resource_refuses_what_the_release_lacks():
    with xenprivcmd.open("sim:///default?xen=4.10") as old:
        with pytest.raises(xenprivcmd.NotSupported):
            old.map_resource(1, "grant_table")
    with xenprivcmd.open("sim:///default?xen=4.14") as h:
        with pytest.raises(xenprivcmd.NotSupported):
            h.map_resource(1, "vmtrace_buf")
        with pytest.raises(ValueError):
            h.map_resource(1, "grant_table", id=5)
        with pytest.raises(ValueError):
            h.map_resource(1, "nosuch")
        with pytest.raises(ValueError):
            h.map_resource(1, "grant_table", count=0)
        with pytest.raises(xenprivcmd.NotSupported):  # the simulator has no ioreq servers
            h.map_resource(1, "ioreq_server")
        with pytest.raises(xenprivcmd.HypercallError) as got:
            h.map_resource(1, "grant_table", frame=3, count=2)
        assert got.value.errno == errno.EINVAL


def test_restrict_limits_the_handle_to_one_domain(xen):
    frame = ring_ref(xen, 1)
    assert xen.restrict(1) is xen and xen.restrict(1) is xen
    xen.map_foreign(1, [frame]).close()
    calls = xen.transport.calls
    with pytest.raises(xenprivcmd.RestrictedError):
        xen.map_foreign(2, [frame])
    with pytest.raises(xenprivcmd.RestrictedError):
        xen.domains()
    with pytest.raises(xenprivcmd.RestrictedError):
        xen.map_resource(2, "grant_table")
    assert xen.transport.calls == calls  # nothing reached the hypervisor
    with pytest.raises(ValueError):
        xen.restrict(2)


def test_closing_the_handle_closes_its_mappings():
    h = xenprivcmd.open("sim:///default")
    m = h.map_foreign(1, [ring_ref(h, 1)])
    view = m.view
    kept = m.view[1024:1040]  # a slice outlives the mapping safely: it reads zeros
    g = h.map_grants(1, [0])
    assert [x.closed for x in (m, g)] == [False, False] and len(h.transport.live_mappings()) == 2
    h.close()
    assert m.closed and g.closed and m.address == 0
    with pytest.raises(ValueError):
        m.view  # noqa: B018
    with pytest.raises(ValueError):
        view[0]  # noqa: B018
    assert bytes(kept) == bytes(16)
    del kept
    gc.collect()
    with pytest.raises(xenprivcmd.XenError):
        h.map_foreign(1, [1])


def test_a_dropped_mapping_is_unmapped(xen):
    frame = ring_ref(xen, 1)
    before = _maps()
    for _ in range(50):
        xen.map_foreign(1, [frame])
    gc.collect()
    assert _maps() <= before + 1


def test_a_forked_child_drops_its_parents_mappings(xen):
    m = xen.map_foreign(1, [ring_ref(xen, 1)])
    pid = os.fork()
    if pid == 0:
        ok = m.closed and m.address == 0
        m.close()
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    assert b"Welcome" in console_text(m.view)  # the parent's is untouched
    m.close()


def test_remote_and_replay_handles_map_nothing():
    from xenprivcmd.transport.privcmd import MemoryTransport

    class Bare(MemoryTransport):
        kind = "bare"

    h = xenprivcmd.Handle(Bare(), "bare:", arch="x86_64")
    with pytest.raises(xenprivcmd.NotSupported):
        h.map_foreign(1, [1])
    with pytest.raises(xenprivcmd.NotSupported):
        h.event_channels()


# -- the privcmd device's errors, through a fake device ------------------------------------------------

class FakeDevice:
    """A privcmd transport over a memfd whose mapping ioctl answers as told."""

    def __init__(self, answer):
        fd = os.memfd_create("fake-privcmd")
        os.ftruncate(fd, 1 << 20)
        self.t = PrivcmdTransport(fd, "/dev/xen/privcmd", None)
        self.t.device_ioctl = self.ioctl
        self.answer = answer
        self.requests = []

    def ioctl(self, fd, request, arg, mutate=True):
        self.requests.append((request, arg))
        return self.answer(request, arg)


def test_the_drivers_errors_become_typed_ones():
    def enotty(request, arg):
        raise OSError(errno.ENOTTY, "no")

    def esrch(request, arg):
        raise OSError(errno.ESRCH, "no")

    devs = [FakeDevice(enotty), FakeDevice(enotty), FakeDevice(esrch)]
    before = _maps()
    with pytest.raises(xenprivcmd.NotSupported):
        _mapping.foreign(devs[0].t, 1, (5,), False)
    with pytest.raises(xenprivcmd.NotSupported):
        _mapping.restrict(devs[1].t, 1)
    with pytest.raises(xenprivcmd.NoSuchDomain):
        _mapping.resource(devs[2].t, 7, 1, 0, 0, 1, False)
    assert _maps() == before  # the reserved ranges went with the errors
    for d in devs:
        d.t.close()

    interrupted = iter([InterruptedError(errno.EINTR, "sig"), 0])

    def eintr(request, arg):
        got = next(interrupted)
        if isinstance(got, BaseException):
            raise got
        return got

    dev = FakeDevice(eintr)
    m = _mapping.foreign(dev.t, 1, (5, 6), True)
    assert len(dev.requests) == 2 and dev.requests[0][0] == abi.linux_uapi("x86_64").constants[
        "IOCTL_PRIVCMD_MMAPBATCH_V2"]
    req = dev.requests[1][1]
    assert (req.num, req.dom, req.addr) == (2, 1, m.address)
    m.close()
    dev.t.close()


def test_the_fake_driver_sees_the_request_the_kernel_would():
    seen = {}

    def answer(request, arg):
        n = arg.num
        seen["frames"] = struct.unpack(f"<{n}Q", _read(arg.arr, 8 * n))
        _write(arg.err, struct.pack(f"<{n}i", 0, -errno.EPERM, 0))
        return 0

    dev = FakeDevice(answer)
    with pytest.raises(xenprivcmd.MappingError) as got:
        _mapping.foreign(dev.t, 3, (10, 11, 12), False)
    assert seen["frames"] == (10, 11, 12) and got.value.failed == {11: errno.EPERM}
    dev.t.close()


def _read(address, size):
    from xenprivcmd.transport.privcmd import MemoryTransport

    return MemoryTransport.read(address, size)


def _write(address, data):
    from xenprivcmd.transport.privcmd import MemoryTransport

    MemoryTransport.write(address, data)


# -- no leaks ----------------------------------------------------------------------------------------------

def _maps() -> int:
    with open("/proc/self/maps", encoding="ascii", errors="replace") as f:
        return sum(1 for _ in f)


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


CYCLES = int(os.environ.get("GUESTMEM_CYCLES", "100000"))


def test_100k_map_unmap_and_bind_unbind_cycles_leak_nothing(xen):
    frame = ring_ref(xen, 1)
    ec = xen.event_channels()

    def cycle(i: int) -> None:
        kind = i % 4
        if kind == 0:
            with xen.map_foreign(1, [frame, frame + 1]) as m:
                assert m.view[CONS["out"]] == ord("[")
        elif kind == 1:
            with xen.map_grants(1, [0]) as g:
                assert g.view[CONS["out"]] == ord("[")
        elif kind == 2:
            xen.map_resource(1, "grant_table").close()
        else:
            ec.unbind(ec.bind_unbound(0))

    warm = CYCLES // 10
    for i in range(warm):
        cycle(i)
    gc.collect()
    base = (_fds(), _maps(), _rss_kib())
    for i in range(warm, CYCLES):
        cycle(i)
    gc.collect()
    end = (_fds(), _maps(), _rss_kib())
    assert end[0] == base[0], ("fds", base, end)
    assert end[1] <= base[1] + 4, ("maps", base, end)
    assert end[2] <= base[2] + 1024, ("rss KiB", base, end)
    assert xen.transport.live_mappings() == [] and ec.ports == frozenset()
    ec.close()
