"""Batches (``Handle.batch``, ``domain_infos``, ``vcpu_list``) on the simulator.

The simulator runs a multicall as Xen's do_multicall does (entries in order,
one result each, a nested multicall refused), and reads every domctl of it
with its own layout of the release, so a batch laid out wrongly answers
wrongly here.  What each batched operation must give is what the one-call
path gives on the same host; the real hypervisors (tests/realxen) compare
both with ``xl``.
"""

from __future__ import annotations

import errno
import math

import pytest

import xenprivcmd
from xenprivcmd import abi, errors
from xenprivcmd.abi.hypercalls import HYPERVISOR_memory_op
from xenprivcmd.ops import batch as _batch
from xenprivcmd.ops.domains import GETDOMAININFO
from xenprivcmd.ops.engine import Request
from xenprivcmd.record import open_record, open_replay
from xenprivcmd.sim._transport import SimTransport
from xenprivcmd.transport.decode import multicall_entries
from xenprivcmd.transport.wrappers import DryRunTransport, TimingTransport

MULTICALL = 13


def _releases(arch):
    out = []
    for r in abi.releases():
        try:
            abi.variant(r, arch=arch)
        except abi.UnknownABIError:
            continue
        out.append(r)
    return out


X86 = _releases("x86_64")
ARM = _releases("aarch64")


def _single_vcpu_list(h):
    rows = []
    for d in h.domains(names=True):
        for v in h.vcpu_info(d.domid):
            a = h.vcpu_affinity(d.domid, v.vcpu)
            rows.append(xenprivcmd.types.VcpuListEntry(d.domid, d.name, v.vcpu, v.online, v.blocked, v.running,
                                                       v.cpu_time, v.cpu, a.hard, a.soft))
    return rows


def _frozen(h):
    """The simulator's clock only moves per hypercall: stop it so two paths see one instant."""
    h.transport.host.clock.tick_ns = 0
    return h


@pytest.mark.parametrize("arch,release", [("x86_64", r) for r in X86] + [("aarch64", r) for r in ARM])
def test_batched_results_equal_single_calls_on_every_release(arch, release):
    h = _frozen(xenprivcmd.open(f"sim:///?xen={release}&domains=6&pcpus=6&arch={arch}&seed=3"))
    single = _single_vcpu_list(h)
    batched = h.vcpu_list()
    assert batched == single and len(batched) >= 7
    ids = [d.domid for d in h.domains()]
    assert h.domain_infos(ids) == [h.domain_info(d) for d in ids]
    assert h.vcpu_list([ids[2], ids[0]]) == [e for e in single if e.domid in (ids[0], ids[2])]
    # the hypervisor really ran them as one multicall (not one call each), but in the dom0_op era
    assert h.state.multicall is (None if h.abi.domctl_interface_version is None else True)


def test_vcpu_list_counts_traps_not_vcpus():
    h = xenprivcmd.open("sim:///?domains=100&pcpus=8&seed=5")
    h.vcpu_list()  # detection, physinfo (cached per handle)
    vcpus = sum(d.vcpus for d in h.domains())
    assert vcpus >= 100
    t = h.transport
    before = t.calls
    got = h.vcpu_list()
    assert len(got) == vcpus
    per_trap = _entries_per_trap(h, 2 * vcpus)
    # one getdomaininfolist page + the getvcpuinfo/getvcpuaffinity pairs, per trap
    assert t.calls - before == 1 + math.ceil(2 * vcpus / per_trap)
    assert t.calls - before < vcpus / 50


def _entries_per_trap(h, n):
    slot = _batch.slot(h.engine, GETDOMAININFO)
    aff_extra = 2 * ((h.nr_cpus() + 7) // 8 + 7 & ~7)
    per_entry = _batch.MULTICALL_ENTRY_SIZE + slot + aff_extra / 2
    return min(_batch.TRAP_MAX_ENTRIES, int(_batch.TRAP_MAX_BYTES // per_entry), n)


def test_many_traps_when_the_buffer_is_full():
    h = _frozen(xenprivcmd.open("sim:///?domains=2500&pcpus=4&seed=2"))
    infos = h.domains()
    t = h.transport
    before = t.calls
    got = h.domain_infos([d.domid for d in infos])
    per_trap = min(_batch.TRAP_MAX_ENTRIES,
                   _batch.TRAP_MAX_BYTES // (_batch.MULTICALL_ENTRY_SIZE + _batch.slot(h.engine, GETDOMAININFO)))
    assert t.calls - before == math.ceil(len(infos) / per_trap) >= 3
    assert got == infos


def test_one_missing_domid_in_ten_gives_nine_results_and_one_error():
    h = _frozen(xenprivcmd.open("sim:///?domains=12&seed=1"))
    ids = [d.domid for d in h.domains()][:9]
    asked = ids[:4] + [4242] + ids[4:]
    got = h.domain_infos(asked)
    assert len(got) == 10
    assert isinstance(got[4], errors.NoSuchDomain) and got[4].domid == 4242
    assert [g for i, g in enumerate(got) if i != 4] == [h.domain_info(d) for d in ids]
    with pytest.raises(errors.NoSuchDomain):
        h.vcpu_list([ids[0], 4242])


def test_a_batch_is_not_atomic_each_entry_fails_alone():
    h = xenprivcmd.open("sim:///?domains=4&seed=1")
    with h.batch() as b:
        a, missing, c, mem = b.pause(1), b.pause(4000), b.pause(2), b.set_max_mem(3, 300 * 1024)
    assert a.result() is None and c.result() is None and mem.result() is None
    with pytest.raises(errors.NoSuchDomain):
        missing.result()
    assert h.domain_info(1).paused and h.domain_info(2).paused
    assert h.domain_info(3).max_pages * 4 == 300 * 1024
    with h.batch() as b:
        b.unpause(1)
    assert not h.domain_info(1).paused


def test_bad_arguments_issue_nothing():
    h = xenprivcmd.open("sim:///default")
    h.domains()
    t = h.transport
    before = t.calls
    b = h.batch()
    for bad in (-1, 0x7FF0, "1", True, None):
        with pytest.raises((TypeError, ValueError)):
            b.pause(bad)
    with pytest.raises(ValueError):
        b.vcpu_info(0, -1)
    with pytest.raises(ValueError):
        b.set_max_mem(1, -5)
    with pytest.raises(TypeError):
        h.domain_infos([0, "x"])
    assert len(b) == 0 and t.calls == before
    with pytest.raises(RuntimeError):
        b.domain_info(0).result()  # queued, not run


class _NoMulticall(SimTransport):
    """A hypervisor that refuses the multicall hypercall itself."""

    def handle(self, op, args):
        if op == MULTICALL:
            raise OSError(errno.ENOSYS, "no multicall")
        return super().handle(op, args)


class _NoDomctlInMulticall(SimTransport):
    """A hypervisor whose multicall table lacks domctl (each entry -ENOSYS)."""

    def handle(self, op, args):
        if op == 36 and self._in_multicall:
            raise OSError(errno.ENOSYS, "not in a multicall")
        return super().handle(op, args)


class _IgnoresEntries(SimTransport):
    """A hypervisor that answers 0 to a multicall and runs nothing: results stay untouched."""

    def handle(self, op, args):
        if op == MULTICALL:
            return 0
        return super().handle(op, args)


@pytest.mark.parametrize("cls", [_NoMulticall, _NoDomctlInMulticall, _IgnoresEntries])
def test_refused_multicall_falls_back_to_single_calls_and_is_remembered(cls):
    ref = _frozen(xenprivcmd.open("sim:///?domains=5&seed=4"))
    want = ref.vcpu_list()
    h = xenprivcmd.open("sim:///?domains=5&seed=4")
    t = cls(h.transport.host)
    h.transport = t
    _frozen(h)
    assert h.vcpu_list() == want
    assert h.state.multicall is False
    seen = []
    real = t.handle
    t.handle = lambda op, args: seen.append(op) or real(op, args)  # type: ignore[method-assign]
    assert h.vcpu_list() == want
    assert MULTICALL not in seen and seen.count(36) == 2 * len(want)


def test_entries_that_ran_are_never_issued_again():
    """A pause inside a trap that then fails is not paused a second time."""
    h = xenprivcmd.open("sim:///?domains=3&seed=1&xen=4.17.0")
    sim = h.transport

    class _FailsAfterFirst(SimTransport):
        def handle(self, op, args):
            if op == MULTICALL:
                # run only the first entry, then fail the trap as a whole
                entry = multicall_entries(args[0], 1)[0]
                rc = super().handle(entry[0], entry[1])
                self.write(args[0] + 8, rc.to_bytes(8, "little", signed=True))
                raise OSError(errno.EFAULT, "bad second entry")
            return super().handle(op, args)

    t = _FailsAfterFirst(sim.host)
    h.transport = t
    with h.batch() as b:
        p1, p2 = b.pause(1), b.pause(2)
    p1.result()
    p2.result()
    # Xen >= 4.5 counts pauses: one unpause each undoes exactly one pause
    h.unpause(1)
    h.unpause(2)
    assert not h.domain_info(1).paused and not h.domain_info(2).paused


def test_a_debug_xen_scribbling_over_entries_changes_nothing():
    ref = _frozen(xenprivcmd.open("sim:///?domains=8&seed=9"))
    h = _frozen(xenprivcmd.open("sim:///?domains=8&seed=9"))
    h.transport.debug_multicall = True
    assert h.vcpu_list() == ref.vcpu_list()
    assert h.state.multicall is True


def test_the_simulator_refuses_a_nested_multicall():
    h = xenprivcmd.open("sim:///default")
    buf = h.transport.scratch(4096)
    # entry 0: a multicall of one entry (itself); Xen answers EINVAL for it
    import struct

    struct.pack_into("<Qq6Q", buf.view, 0, MULTICALL, 99, buf.address, 1, 0, 0, 0, 0)
    assert h.transport.hypercall(MULTICALL, buf.address, 1) == 0
    assert struct.unpack_from("<q", buf.view, 8)[0] == -errno.EINVAL


def test_read_only_handle_batches_reads_and_refuses_writes_before_any_hypercall():
    h = xenprivcmd.open("sim:///?domains=6&seed=2", read_only=True)
    got = h.vcpu_list()
    assert len(got) >= 6 and h.state.multicall is True
    inner = h.transport.inner
    before = inner.calls
    for op in (lambda: h.pause(1), lambda: h.destroy(1), lambda: h.set_max_mem(1, 1024),
               lambda: h.set_sched_params(1, weight=5), lambda: h.create_domain(),
               lambda: h.read_console(clear=True), lambda: h.batch().unpause(1)):
        with pytest.raises(errors.ReadOnlyError):
            op()
    # a multicall laid out by hand with a pause among reads is refused whole at the transport
    v = h.abi
    buf = h.transport.scratch(8192)
    import struct

    for i, (subop, dom) in enumerate((("getdomaininfo", 1), ("pausedomain", 1))):
        at = 1024 + i * 512
        struct.pack_into("<IIH", buf.view, at, int(v.constants["XEN_DOMCTL_" + subop]), v.domctl_interface_version, dom)
        struct.pack_into("<Qq6Q", buf.view, i * 64, 36, 0, buf.address + at, 0, 0, 0, 0, 0)
    with pytest.raises(errors.ReadOnlyError):
        h.transport.hypercall(MULTICALL, buf.address, 2)
    assert inner.calls == before
    assert not h.domain_info(1).paused


def test_read_only_handle_lets_cpupool_info_through_and_refuses_pool_changes():
    h = xenprivcmd.open("sim:///?domains=3&seed=2", read_only=True)
    # xl cpupool-list and xl info only read: cpupool_op INFO / FREEINFO, the sharing counters
    assert [p.name for p in h.cpupools()] == ["Pool-0"] and h.free_cpus() == frozenset()
    assert h.sharing_pages() == {"freed": 0, "shared": 0}

    inner = h.transport.inner
    before = inner.calls
    # declared as reading (it is not): the engine lets it through, the transport's guard refuses it
    lying = Request("sysctl", "cpupool_op", struct="xen_sysctl_cpupool_op", send=("op",), reads=True)
    for op in ("CREATE", "DESTROY", "ADDCPU", "RMCPU", "MOVEDOMAIN"):
        with pytest.raises(errors.ReadOnlyError, match="cpupool_op"):
            h.engine(lying, h.abi.constants["XEN_SYSCTL_CPUPOOL_OP_" + op])
    with pytest.raises(errors.ReadOnlyError):
        h.transport.hypercall(HYPERVISOR_memory_op, 1, 0)  # XENMEM_decrease_reservation
    assert inner.calls == before


def test_dry_run_holds_back_batched_changes_and_lets_reads_through():
    h = _frozen(xenprivcmd.open("sim:///?domains=4&seed=1"))
    want = h.vcpu_list()
    dry = h.transport = DryRunTransport(h.transport, h.abi)
    assert h.vcpu_list() == want
    assert dry.take() == []
    with h.batch() as b:
        b.pause(1)
        b.pause(2)
    held = dry.take()
    assert [r.decoded.subop for r in held] == ["pausedomain", "pausedomain"]
    assert not h.domain_info(1).paused


def test_tracing_shows_every_entry():
    h = xenprivcmd.open("sim:///?domains=3&seed=1")
    h.vcpu_list()
    timing = h.transport = TimingTransport(h.transport, h.abi)
    got = h.vcpu_list()
    recs = timing.take()
    traps = [r for r in recs if r.op == MULTICALL]
    entries = [r for r in recs if r.decoded.hypercall.startswith("multicall[")]
    assert len(traps) == 1
    assert len(entries) == 2 * len(got)
    assert {r.decoded.subop for r in entries} == {"getvcpuinfo", "getvcpuaffinity"}
    assert all(r.result == 0 for r in entries)
    assert entries[0].describe().startswith("multicall[0] domctl getvcpuinfo(domid=0)")


def test_record_and_replay_of_a_batch(tmp_path):
    path = str(tmp_path / "batch.rec")
    h = open_record(f"record:///{path}?inner=sim:///%3Fdomains%3D4%26seed%3D8")
    want = h.vcpu_list()
    infos = h.domain_infos([0, 1, 77])
    h.close()
    text = open(path).read()
    assert "multicall(13)" in text and "getvcpuaffinity" in text
    r = open_replay(f"replay:///{path}")
    assert r.vcpu_list() == want
    again = r.domain_infos([0, 1, 77])
    assert again[:2] == infos[:2] and isinstance(again[2], errors.NoSuchDomain)
    r.close()


def test_repeated_batches_reuse_one_image_and_stay_right():
    """vcpu_list / domain_infos keep their laid-out trap per shape: the second
    call copies it, and what it reads is still the host's current state."""
    h = _frozen(xenprivcmd.open("sim:///?domains=6&seed=12"))
    first = h.vcpu_list()
    assert any(k[0] == "vcpus" for k in h.engine.shapes)
    images = dict(h.engine.shapes)
    h.set_vcpu_affinity(1, 0, hard={1})
    h.pause(2)
    again = h.vcpu_list()
    assert h.engine.shapes == images  # the same images, no new layout
    assert again == _single_vcpu_list(h) != first
    assert next(e for e in again if e.domid == 1 and e.vcpu == 0).hard == frozenset({1})
    ids = [d.domid for d in h.domains()]
    assert h.domain_infos(ids) == [h.domain_info(d) for d in ids]
    assert h.domain_infos(ids)[2].paused


def test_a_domain_gone_between_listing_and_vcpus_is_left_out():
    h = xenprivcmd.open("sim:///?domains=4&seed=2")
    real = h.domains
    destroyed = []

    def stale(names=False):
        infos = real(names=names)
        if not destroyed:
            destroyed.append(infos[-1].domid)
            h.destroy(infos[-1].domid)  # after the listing, before the vcpus are read
        return infos

    h.domains = stale  # type: ignore[method-assign]
    rows = h.vcpu_list()
    assert destroyed and all(e.domid != destroyed[0] for e in rows)
    assert {e.domid for e in rows} == {d.domid for d in real()}


def test_shaped_getvcpuinfo_alone_equals_vcpu_info():
    from xenprivcmd.ops.batch import vcpus_shaped

    h = _frozen(xenprivcmd.open("sim:///?domains=5&seed=4"))
    infos = h.domains()
    got = vcpus_shaped(h.engine, infos, affinity=False)
    assert got == [v for d in infos for v in h.vcpu_info(d.domid)] and len(got) >= 5
