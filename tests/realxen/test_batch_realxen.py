"""Batches on a real hypervisor: multicall traps against single calls and xl."""

from __future__ import annotations

import pytest

import xenprivcmd
from xenprivcmd.transport.decode import format_cpulist

from .conftest import CHANGING_FLAGS, xl_list, xl_table


def _cpus(cpus, nr_cpus):
    return "all" if cpus == frozenset(range(nr_cpus)) else format_cpulist(cpus)


def test_vcpu_list_matches_xl_vcpu_list(xen, guest):
    before = xen.vcpu_list()
    rows = xl_table("vcpu-list")
    after = xen.vcpu_list()
    # the hypervisor ran them as multicalls, not one trap each
    assert xen.state.multicall is True
    nr = xen.nr_cpus()
    assert [(e.name, e.domid, e.vcpu) for e in before] == [(r[0], int(r[1]), int(r[2])) for r in rows]
    assert guest in {e.domid for e in before}
    for ours, row, later in zip(before, rows, after):
        # Name ID VCPU CPU State Time(s) Affinity (Hard / Soft)
        assert row[3] == ("-" if not ours.online else row[3])
        assert (row[3] != "-") == ours.online
        if ours.online:
            assert 0 <= int(row[3]) < nr
        assert _cpus(ours.hard, nr) == row[-3], (ours, row)
        assert _cpus(ours.soft, nr) == row[-1], (ours, row)
        # xl read its time between our two reads (it prints tenths of seconds)
        assert ours.cpu_time / 1e9 - 0.05 <= float(row[5]) <= later.cpu_time / 1e9 + 0.05, (ours, row, later)


def test_vcpu_list_costs_traps_not_vcpus(xen):
    xen.vcpu_list()
    t = xen.transport
    before = t.calls
    got = xen.vcpu_list()
    # one getdomaininfolist, then every getvcpuinfo + getvcpuaffinity pair in one multicall
    assert t.calls - before == 2 < len(got) * 2


def test_vcpu_list_of_named_domains_equals_single_calls(xen, guest):
    got = xen.vcpu_list([guest])
    single = xen.vcpu_info(guest)
    assert [e.vcpu for e in got] == [v.vcpu for v in single]
    for e, v in zip(got, single):
        a = xen.vcpu_affinity(guest, v.vcpu)
        assert (e.online, e.hard, e.soft) == (v.online, a.hard, a.soft)
        assert e.cpu_time <= v.cpu_time
    with pytest.raises(xenprivcmd.NoSuchDomain):
        xen.vcpu_list([guest, 0x7FEF])


def test_domain_infos_equal_single_calls_one_missing_in_ten(xen, guest):
    ids = [0, guest] * 4 + [0x7FEE, 0]
    got = xen.domain_infos(ids)
    assert len(got) == 10
    assert isinstance(got[8], xenprivcmd.NoSuchDomain) and got[8].domid == 0x7FEE
    for domid, info in zip(ids, got):
        if domid == 0x7FEE:
            continue
        single = xen.domain_info(domid)
        # cpu time and the vcpus' blocked and running bits move between the two reads (dom0's
        # flags read 0x...10 then 0x...20 on Xen 4.17); everything else is the same
        assert info._replace(cpu_time=0, flags=info.flags & ~CHANGING_FLAGS) == \
            single._replace(cpu_time=0, flags=single.flags & ~CHANGING_FLAGS)
        assert info.cpu_time <= single.cpu_time


def test_batched_pause_and_max_mem_are_seen_by_xl(xen, guest):
    limit = xen.domain_info(guest).max_memory_kib
    with xen.batch() as b:
        paused = b.pause(guest)
        missing = b.pause(0x7FEE)
        mem = b.set_max_mem(guest, limit + 4096)
    try:
        paused.result()
        mem.result()
        with pytest.raises(xenprivcmd.NoSuchDomain):
            missing.result()
        row = {r["id"]: r for r in xl_list()}[str(guest)]
        assert "p" in row["state"]
        assert xen.domain_info(guest).max_memory_kib == limit + 4096
    finally:
        with xen.batch() as b:
            undo = [b.unpause(guest), b.set_max_mem(guest, limit)]
        for c in undo:
            c.result()
    assert "p" not in {r["id"]: r for r in xl_list()}[str(guest)]["state"]
    assert xen.domain_info(guest).max_memory_kib == limit


def test_read_only_handle_batches_and_refuses_pause(guest):
    with xenprivcmd.open(read_only=True) as ro:
        assert len(ro.vcpu_list()) >= 2 and ro.state.multicall is True
        inner = ro.transport.inner
        before = inner.calls
        with pytest.raises(xenprivcmd.ReadOnlyError):
            ro.pause(guest)
        with pytest.raises(xenprivcmd.ReadOnlyError):
            ro.batch().pause(guest)
        assert inner.calls == before
    assert "p" not in {r["id"]: r for r in xl_list()}[str(guest)]["state"]
