"""One scenario suite for every hypervisor: the simulator (tests/test_sim.py,
every release) and a real Xen dom0 (the realxen tests).

Each scenario is a plain function taking a :class:`xenprivcmd.Handle` (and a
guest domid where it needs one).  Scenarios compare what the library reports
with the hypervisor's own state as read back through the library (never with
values only the simulator would have), put back what they change, and treat
an operation the release does not have (:class:`NotSupported`) as nothing to
check.  ``SCENARIOS`` lists them by name; ``GUEST_SCENARIOS`` need a guest
domid (an existing domain other than dom0, which they may pause and modify
but leave as they found it).
"""

from __future__ import annotations

import errno
import time
import uuid
from typing import Callable, Dict, List, Optional

from xenprivcmd import DecodeError, Handle, NoSuchDomain, NotSupported, XenError
from xenprivcmd.abi.hypercalls import DOMID_MAX

#: How many domids scenarios probe one by one (keeps real-Xen runs short).
PROBE_LIMIT = 64


def guest_domid(h: Handle) -> int:
    """An existing domain other than dom0 (the first one listed)."""
    for info in h.domains():
        if info.domid != 0 and not info.dying:
            return info.domid
    raise LookupError("no guest domain on this host")


# -- xen_version / ABI -------------------------------------------------------------

def scenario_version(h: Handle) -> None:
    v = h.version()
    assert (v.major, v.minor) == h.xen_version()
    assert v.release.startswith(f"{v.major}.{v.minor}")
    assert v.pagesize == 4096
    assert len(v.extraversion) < 16 or v.varbuf_ops
    assert all(c.isprintable() for c in v.extraversion + v.changeset + v.compiler)
    assert v.capabilities, "no capabilities reported"
    if h.arch == "aarch64":
        assert "xen-3.0-aarch64" in v.capabilities, v.capabilities
    else:
        assert not any("aarch64" in c or "arm" in c for c in v.capabilities), v.capabilities
    assert v.build_id is None or all(c in "0123456789abcdef" for c in v.build_id)


def scenario_detected_abi_matches_version(h: Handle) -> None:
    major, minor = h.xen_version()
    assert h.abi.xen[:2] == (major, minor), (h.abi, h.detection)
    # the detected interface versions are accepted by the hypervisor
    assert all(ok for kind, _v, ok in h.detection.get("probes", []) if (kind, _v) in (
        ("domctl", h.abi.domctl_interface_version), ("sysctl", h.abi.sysctl_interface_version)))


# -- domains -------------------------------------------------------------------------

def scenario_listing_is_sorted_and_complete(h: Handle) -> None:
    infos = h.domains()
    ids = [i.domid for i in infos]
    assert ids == sorted(set(ids)), "listing not in strict domid order"
    assert ids and ids[0] == 0, "dom0 missing from the listing"
    listed = set(ids)
    # every domain domain_info can see is listed, and agrees with the listing
    limit = min(DOMID_MAX, max(ids) + 2, PROBE_LIMIT)
    for domid in range(limit + 1):
        try:
            one = h.domain_info(domid)
        except NoSuchDomain:
            assert domid not in listed or _gone(h, domid), f"domain {domid} listed but domain_info says ESRCH"
            continue
        assert one.domid == domid
        assert domid in listed or _new(h, domid), f"domain {domid} seen by domain_info but not listed"
        row = infos[ids.index(domid)] if domid in listed else one
        assert row.handle_bytes == one.handle_bytes
        assert row.max_vcpu_id == one.max_vcpu_id
        assert row.max_pages == one.max_pages


def _gone(h: Handle, domid: int) -> bool:
    return domid not in {i.domid for i in h.domains()}


def _new(h: Handle, domid: int) -> bool:
    return domid in {i.domid for i in h.domains()}


def scenario_missing_domain_is_no_such_domain(h: Handle) -> None:
    ids = {i.domid for i in h.domains()}
    missing = next((d for d in range(1, DOMID_MAX + 1) if d not in ids), None)
    if missing is None:
        return  # a full host
    try:
        info = h.domain_info(missing)
    except NoSuchDomain as exc:
        assert exc.errno == errno.ESRCH and exc.domid == missing
    else:
        raise AssertionError(f"domain_info({missing}) of a missing domain returned {info}")
    # before Xen 4.18 the hypercall answers with the next domain: never surfaced
    for domid in sorted(ids)[:8]:
        assert h.domain_info(domid).domid == domid


def _has_hap_flag(h: Handle) -> bool:
    """Whether getdomaininfo reports HAP at all (XEN_DOMINF_hap: from 4.8, at
    bit 9 in 4.8 and bit 8 after; the library reads each release's bit)."""
    return "XEN_DOMINF_hap" in h.abi.constants


def scenario_dom0_is_running_and_has_vcpus(h: Handle) -> None:
    d0 = h.domain_info(0)
    assert d0.domid == 0 and not d0.dying and not d0.paused
    assert d0.nr_online_vcpus >= 1 and d0.max_vcpu_id + 1 >= d0.nr_online_vcpus
    assert d0.tot_pages > 0
    if h.arch == "aarch64":
        # Arm has one kind of domain, dom0 included: HVM with HAP (where the release reports HAP)
        assert d0.hvm and (d0.hap or not _has_hap_flag(h)), d0


def scenario_memory_is_consistent(h: Handle) -> None:
    p = h.physinfo()
    infos = h.domains()
    assert p.nr_cpus >= 1 and p.max_cpu_id + 1 >= p.nr_cpus
    assert 0 <= p.free_pages <= p.total_pages
    assert sum(i.tot_pages for i in infos) + p.free_pages <= p.total_pages
    assert p.nr_nodes >= 1 and p.max_node_id + 1 >= p.nr_nodes


def scenario_pause_unpause(h: Handle, domid: int) -> None:
    before = h.domain_info(domid).paused
    h.pause(domid)
    try:
        assert h.domain_info(domid).paused, "paused flag not set after pause"
        assert not h.domain_info(domid).running
        listed = {i.domid: i for i in h.domains()}
        assert listed[domid].paused
    finally:
        h.unpause(domid)
    assert h.domain_info(domid).paused == before


def scenario_max_mem(h: Handle, domid: int) -> None:
    orig = h.domain_info(domid).max_pages
    new_kib = (orig + 256) * 4
    h.set_max_mem(domid, new_kib)
    try:
        assert h.domain_info(domid).max_pages == new_kib // 4
        assert {i.domid: i for i in h.domains()}[domid].max_pages == new_kib // 4
    finally:
        h.set_max_mem(domid, orig * 4)
    assert h.domain_info(domid).max_pages == orig


def scenario_vcpus(h: Handle, domid: int) -> None:
    info = h.domain_info(domid)
    vcpus = h.vcpu_info(domid)
    assert [v.vcpu for v in vcpus] == list(range(info.max_vcpu_id + 1))
    assert sum(v.online for v in vcpus) == info.nr_online_vcpus
    nr = h.nr_cpus()
    for v in vcpus:
        if v.online:
            assert 0 <= v.cpu < nr
        assert not (v.running and v.blocked)
    again = h.vcpu_info(domid)
    for a, b in zip(vcpus, again):
        assert b.cpu_time >= a.cpu_time, "vcpu cpu_time went backwards"


#: How far back dom0's summed cpu_time may read (ns): Xen adds each running vcpu's time since
#: its state_entry_time with NOW() of the pcpu it asks from, and emulated pcpus' clocks differ by
#: microseconds (seen once on Xen 4.20 under QEMU TCG); a real regression is milliseconds or more.
CPU_TIME_SKEW_NS = 1_000_000


def scenario_cpu_time_advances(h: Handle) -> None:
    first = h.domain_info(0).cpu_time
    deadline = time.monotonic() + 2.0
    while True:
        later = h.domain_info(0).cpu_time
        assert later >= first - CPU_TIME_SKEW_NS, f"dom0 cpu_time went back {first - later} ns"
        if later > first:
            return
        if time.monotonic() > deadline:
            raise AssertionError("dom0 cpu_time does not advance")
        time.sleep(0.01)


def scenario_affinity(h: Handle, domid: int) -> None:
    nr = h.nr_cpus()
    orig = h.vcpu_affinity(domid, 0)
    assert orig.hard and orig.hard <= frozenset(range(nr))
    target = min(orig.hard)
    try:
        got = h.set_vcpu_affinity(domid, 0, hard=[target])
        assert got.hard == frozenset([target])
        assert h.vcpu_affinity(domid, 0).hard == frozenset([target])
        if orig.soft is not None:
            got = h.set_vcpu_affinity(domid, 0, soft=[target])
            assert got.soft == frozenset([target])
    finally:
        if orig.soft is not None:
            h.set_vcpu_affinity(domid, 0, hard=orig.hard, soft=orig.soft)
        else:
            h.set_vcpu_affinity(domid, 0, hard=orig.hard)
    assert h.vcpu_affinity(domid, 0).hard == orig.hard


def scenario_sched_params(h: Handle, domid: int) -> None:
    _sid, name = h.sched_id()
    if name not in ("credit", "credit2"):
        return
    orig = h.sched_params(domid)
    assert orig.scheduler == name and 1 <= orig.weight <= 65535
    weight = orig.weight + 1 if orig.weight < 65535 else orig.weight - 1
    try:
        assert h.set_sched_params(domid, weight=weight).weight == weight
        assert h.sched_params(domid).weight == weight
        if orig.cap is not None:
            assert h.set_sched_params(domid, cap=50).cap == 50
            assert h.sched_params(domid).weight == weight, "setting the cap changed the weight"
    finally:
        if orig.cap is not None:
            h.set_sched_params(domid, weight=orig.weight, cap=orig.cap)
        else:
            h.set_sched_params(domid, weight=orig.weight)
    assert h.sched_params(domid) == orig


def scenario_create_destroy(h: Handle) -> None:
    handle = uuid.uuid4()
    before = {i.domid for i in h.domains()}
    domid = h.create_domain(max_vcpus=1, handle=handle)
    try:
        assert domid not in before
        info = h.domain_info(domid)
        assert info.handle == handle
        assert info.paused, "a new domain is paused"
        # x86: create_domain makes a PV domain; Arm's only kind is HVM with HAP
        arm = h.arch == "aarch64"
        assert info.hvm == arm, info
        if _has_hap_flag(h):
            assert info.hap == arm, info
        assert not info.running and info.nr_online_vcpus == 0
        assert domid in {i.domid for i in h.domains()}
    finally:
        h.destroy(domid)
    try:
        gone = h.domain_info(domid)
    except NoSuchDomain:
        pass
    else:
        assert gone.dying, "destroyed domain neither gone nor dying"
    assert all(i.dying for i in h.domains() if i.domid == domid)


def scenario_destroy_dom0_is_refused(h: Handle) -> None:
    try:
        h.destroy(0)
    except XenError as exc:
        assert exc.errno in (errno.EINVAL, errno.EPERM), exc
    else:
        raise AssertionError("dom0 was destroyed")
    assert h.domain_info(0).domid == 0


# -- host -------------------------------------------------------------------------------

def scenario_topology(h: Handle) -> None:
    p = h.physinfo()
    try:
        topo = h.cpu_topology()
    except NotSupported:
        topo = None
    if topo is not None:
        assert [t.cpu for t in topo] == list(range(len(topo)))
        assert len(topo) == p.max_cpu_id + 1
        online = [t for t in topo if t.node is not None]
        assert len(online) >= p.nr_cpus
        assert all(t.node is None or t.node <= p.max_node_id for t in topo)
    try:
        nodes = h.numa_info()
    except NotSupported:
        return
    # numainfo answers up to the last online node; physinfo's max_node_id is
    # Xen's MAX_NUMNODES - 1, not the last online node.
    assert p.nr_nodes <= len(nodes) <= p.max_node_id + 1
    for n in nodes:
        if n.memsize_kib is not None and n.memfree_kib is not None:
            assert n.memfree_kib <= n.memsize_kib
        assert len(n.distances) == len(nodes)
        # x86: the local distance is 10; Xen on Arm (no NUMA) reports its one
        # fake node at distance 20 from itself
        assert n.distances[n.node] == (20 if h.arch == "aarch64" else 10)
    assert sum(n.memsize_kib or 0 for n in nodes) >= p.total_memory_kib // 2


def scenario_pcpu_idle_advances(h: Handle) -> None:
    try:
        first = h.pcpu_info()
    except NotSupported:
        return
    assert len(first) == h.nr_cpus()
    time.sleep(0.02)
    second = h.pcpu_info()
    assert all(b.idletime >= a.idletime for a, b in zip(first, second)), "idle time went backwards"
    assert any(b.idletime > a.idletime for a, b in zip(first, second)), "no pcpu idled"


def scenario_console(h: Handle) -> None:
    first = h.read_console(incremental=True)
    assert first, "empty console ring (the first incremental read returns the whole ring)"
    again = h.read_console(incremental=True)
    if again:
        # only what arrived since: it ends the ring, and was not in the first read's tail
        assert h.read_console().endswith(again)
    # something happens on the host; the next incremental read has only the new text
    try:
        domid = h.create_domain(max_vcpus=1)
        h.destroy(domid)
    except NotSupported:
        pass
    new = h.read_console(incremental=True)
    if new:
        assert h.read_console().endswith(new), "incremental read returned text not at the end of the ring"


def scenario_bad_arguments_issue_no_hypercall(h: Handle) -> None:
    h.nr_cpus()  # cached: set_vcpu_affinity sizes cpumaps from it
    h.domain_info(0)  # detection done
    calls = h.transport.calls
    bad: List[Callable[[], object]] = [
        lambda: h.set_max_mem(1, -5),
        lambda: h.set_max_mem(0, 1 << 60),
        lambda: h.domain_info(-1),
        lambda: h.domain_info(0x7FF0),
        lambda: h.pause(True),  # type: ignore[arg-type]
        lambda: h.unpause(1.5),  # type: ignore[arg-type]
        lambda: h.destroy(1 << 20),
        lambda: h.set_vcpu_affinity(0, 0, hard=[]),
        lambda: h.set_vcpu_affinity(0, 0, hard=[h.nr_cpus()]),
        lambda: h.set_vcpu_affinity(0, 0),
        lambda: h.create_domain(max_vcpus=0),
        lambda: h.vcpu_info(-3),
        lambda: h.set_max_vcpus(1, 0),
    ]
    for call in bad:
        try:
            call()
        except (ValueError, TypeError) as exc:
            assert not isinstance(exc, DecodeError), exc
        else:
            raise AssertionError("bad arguments accepted")
        assert h.transport.calls == calls, f"a hypercall was issued for bad arguments ({call})"


SCENARIOS: Dict[str, Callable[[Handle], None]] = {
    name[len("scenario_"):]: fn for name, fn in sorted(globals().items())
    if name.startswith("scenario_") and callable(fn) and fn.__code__.co_argcount == 1
}
GUEST_SCENARIOS: Dict[str, Callable[[Handle, int], None]] = {
    name[len("scenario_"):]: fn for name, fn in sorted(globals().items())
    if name.startswith("scenario_") and callable(fn) and fn.__code__.co_argcount == 2
}


def run_all(h: Handle, guest: Optional[int] = None) -> Dict[str, Optional[BaseException]]:
    """Run every scenario; name -> None (passed) or the exception."""
    out: Dict[str, Optional[BaseException]] = {}
    g = guest_domid(h) if guest is None else guest
    for name, fn in SCENARIOS.items():
        try:
            fn(h)
            out[name] = None
        except Exception as exc:  # noqa: BLE001 - a report
            out[name] = exc
    for name, gfn in GUEST_SCENARIOS.items():
        try:
            gfn(h, g)
            out[name] = None
        except Exception as exc:  # noqa: BLE001 - a report
            out[name] = exc
    return out
