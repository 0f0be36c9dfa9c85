"""xenprivcmd.transport.decode: the timing and dry-run transport wrappers, on the simulator."""

from __future__ import annotations

import errno

import pytest

import xenprivcmd
from xenprivcmd.transport.wrappers import DRY_RUN_DOMID, DryRunTransport, TimingTransport, innermost

RELEASES = ["4.1", "4.4", "4.10.1", "4.12", "4.17", "4.23-dev"]


def wrapped(uri: str = "sim:///default"):
    h = xenprivcmd.open(uri)
    sim = h.transport
    timing = TimingTransport(sim)
    dry = DryRunTransport(timing)
    h.transport = dry
    return h, sim, timing, dry


@pytest.mark.parametrize("xen", RELEASES)
def test_dry_run_holds_back_every_changing_domctl(xen):
    h, sim, timing, dry = wrapped(f"sim:///?xen={xen}")
    try:
        before = [(d.domid, d.flags, d.max_pages) for d in h.domains()]
        aff = h.vcpu_affinity(1, 0)
        dry.variant = h.abi
        timing.take()
        h.pause(1)
        h.unpause(3)
        h.set_max_mem(1, 4096, force=True)
        h.set_vcpu_affinity(1, 0, hard=[1])
        h.set_sched_params(1, weight=7)
        h.destroy(2)
        held = dry.take()
        names = [r.decoded.subop for r in held]
        assert names == ["pausedomain", "unpausedomain", "max_mem", "setvcpuaffinity", "scheduler_op",
                         "destroydomain"]
        assert all(not r.issued for r in held)
        assert held[2].decoded.fields == {"max_memkb": 4096}
        pin = held[3].decoded.fields
        assert pin["vcpu"] == 0
        cpumap = pin.get("cpumap_hard", pin.get("cpumap"))
        assert cpumap["bitmap"] == "1"
        sched = held[4].decoded.fields
        assert sched["cmd"] == "putinfo" and sched["credit"]["weight"] == 7
        assert [r.decoded.domid for r in held] == [1, 3, 1, 1, 1, 2]
        # what really went to the hypervisor: reads only
        issued = {r.decoded.subop for r in timing.take()}
        assert not issued & {"pausedomain", "unpausedomain", "max_mem", "setvcpuaffinity", "destroydomain"}
        assert [(d.domid, d.flags, d.max_pages) for d in h.domains()] == before
        assert h.vcpu_affinity(1, 0) == aff
    finally:
        h.close()


def test_dry_run_createdomain_reports_a_placeholder():
    h, sim, timing, dry = wrapped()
    try:
        n = len(h.domains())
        dry.variant = h.abi
        assert h.create_domain(max_vcpus=2) == DRY_RUN_DOMID
        rec, *rest = dry.take()
        assert rec.decoded.subop == "createdomain" and rec.decoded.fields.get("max_vcpus", 2) == 2
        # releases that set vcpus after creation follow with max_vcpus on the placeholder
        assert all(r.decoded.subop == "max_vcpus" and r.decoded.domid == DRY_RUN_DOMID for r in rest)
        assert len(h.domains()) == n
    finally:
        h.close()


def test_dry_run_before_the_variant_is_known_still_classifies():
    h, sim, timing, dry = wrapped()
    try:
        h.pause(1)  # detection happens inside; no variant set on the wrapper
        (rec,) = dry.take()
        assert rec.describe() == "domctl pausedomain(domid=1)"
        assert h.domain_info(1).state == "running"
    finally:
        h.close()


def test_readconsole_clear_is_issued_without_clear():
    h, sim, timing, dry = wrapped()
    try:
        text = h.read_console(clear=True)
        assert "(XEN)" in text
        (rec,) = dry.take()
        assert rec.decoded.subop == "readconsole" and rec.decoded.fields["clear"] == 1
        assert h.read_console() == text
    finally:
        h.close()


def test_timing_records_latency_and_errors():
    h = xenprivcmd.open("sim:///default")
    t = TimingTransport(h.transport)
    h.transport = t
    try:
        h.domains()
        t.take()
        with pytest.raises(xenprivcmd.NoSuchDomain):
            h.domain_info(999)
        recs = t.take()
        assert recs[-1].decoded.subop == "getdomaininfo" and recs[-1].decoded.domid == 999
        h.transport.inner.faults.fail(errno.EPERM, op="domctl", subop="pausedomain")
        with pytest.raises(xenprivcmd.HypervisorPermissionError):
            h.pause(1)
        (rec,) = t.take()
        assert rec.error == "EPERM" and rec.result is None and rec.seconds >= 0
        h.version()
        assert {r.decoded.hypercall for r in t.take()} == {"xen_version"}
        assert t.calls == innermost(h.transport).calls
    finally:
        h.close()


def test_wrappers_forward_and_close():
    h, sim, timing, dry = wrapped()
    assert innermost(h.transport) is sim
    assert dry.kind == sim.kind == "sim"
    assert dict(dry.domain_names()) == dict(sim.domain_names())
    assert [d.name for d in h.domains(names=True)][:2] == ["Domain-0", "web1"]
    h.close()
    assert sim.closed and dry.closed
