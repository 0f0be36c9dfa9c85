"""The dom0_op era (Xen 3.0.0-3.0.2): the shared scenarios through
:class:`xenprivcmd.ops.dom0op.Dom0OpFamilies`, and what is particular to dom0_op
(hypercall 7, DOMFLAGS_* translation, the domid inside each member, the
next-domain answer of getdomaininfo, DOM0_INTERFACE_VERSION)."""

from __future__ import annotations

import errno
import struct
import uuid

import pytest

import xenprivcmd
from xenprivcmd import NoSuchDomain, NotSupported, abi, errors
from xenprivcmd.ops.dom0op import Dom0OpFamilies
from xenprivcmd.ops.domains import info_reader
from xenprivcmd.ops.engine import Families
from xenprivcmd.sim import Host, open_host
from xenprivcmd.sim._host import DomainSpec

from . import scenarios
from .sim_raw import raw_call

DOM0_OP = [r for r in abi.releases() if abi.variant(r).is_dom0_op]

#: Scenarios whose expectations are not the dom0_op era's (each has its own test below).
NOT_THIS_ERA = {
    # In 3.0.0-3.0.2 domain_create() allocates vcpu 0 online (only later vcpus start down),
    # so a new domain has nr_online_vcpus == 1; the scenario asserts 0.
    "create_destroy",
}


def sim(release: str, **kw: object) -> xenprivcmd.Handle:
    q = "&".join(f"{k}={v}" for k, v in {"xen": release, **kw}.items())
    return xenprivcmd.open("sim:///?" + q)


def test_the_era_is_3_0_0_to_3_0_2():
    assert DOM0_OP == ["3.0.0", "3.0.1", "3.0.2"]


# -- the shared scenario suite ----------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(set(scenarios.SCENARIOS) - NOT_THIS_ERA))
@pytest.mark.parametrize("release", DOM0_OP)
def test_scenario(release, name):
    scenarios.SCENARIOS[name](sim(release))


@pytest.mark.parametrize("name", sorted(set(scenarios.GUEST_SCENARIOS) - NOT_THIS_ERA))
@pytest.mark.parametrize("release", DOM0_OP)
def test_guest_scenario(release, name):
    h = sim(release)
    scenarios.GUEST_SCENARIOS[name](h, scenarios.guest_domid(h))


@pytest.mark.parametrize("release", DOM0_OP)
def test_scenarios_on_a_bigger_host(release):
    h = sim(release, pcpus=8, domains=40, seed=7)
    for name, fn in scenarios.SCENARIOS.items():
        if name not in NOT_THIS_ERA:
            fn(h)
    for gfn in scenarios.GUEST_SCENARIOS.values():
        gfn(h, scenarios.guest_domid(h))


# -- the layouts ---------------------------------------------------------------------------------

@pytest.mark.parametrize("release", DOM0_OP)
def test_the_handle_lays_requests_out_on_dom0op(release):
    h = sim(release)
    assert h.abi.release == release and h.abi.is_dom0_op
    assert isinstance(h.engine.families, Dom0OpFamilies)
    assert h.engine.families.variant == h.abi
    with pytest.raises(ValueError, match="not dom0_op"):
        Dom0OpFamilies(abi.variant("3.0.3"))
    # the domctl era's families have no wrapper here: every domctl request is NotSupported
    with pytest.raises(NotSupported, match="no domctl hypercall"):
        Families(abi.variant(release)).wrapper("domctl")


def test_every_op_is_dom0_op_hypercall_7():
    h = sim("3.0.2")
    assert isinstance(h.engine.families, Dom0OpFamilies)  # detection: its domctl probes answer ENOSYS in this era
    assert {op for op, _sub, rc in h.transport.log if op in ("domctl", "sysctl")} == {"domctl"}
    assert all(rc == -errno.ENOSYS for op, _sub, rc in h.transport.log if op == "domctl")
    h.transport.log.clear()
    h.domains()
    h.domain_info(1)
    h.pause(1)
    h.unpause(1)
    h.set_max_mem(1, 2 << 20)
    h.vcpu_info(1)
    h.set_vcpu_affinity(1, 0, hard=[1])
    h.physinfo()
    h.sched_id()
    h.read_console()
    domid = h.create_domain()
    h.destroy(domid)
    log = list(h.transport.log)
    ops = {op for op, _sub, _rc in log}
    assert ops <= {"dom0_op", "xen_version"}, ops
    subs = {sub for op, sub, rc in log if op == "dom0_op"}
    assert subs >= {"getdomaininfolist", "getdomaininfo", "pausedomain", "unpausedomain", "setdomainmaxmem",
                    "getvcpuinfo", "setvcpuaffinity", "physinfo", "sched_id", "readconsole", "createdomain",
                    "max_vcpus", "destroydomain"}, subs
    assert all(rc == 0 for op, _s, rc in log if op == "dom0_op")


def _raw(h, cmd, member, domid=None, iv=None, fill=None):
    """A dom0_op laid out with the simulator's own tables; -> (rc or -errno, layout, reply)."""
    return raw_call(h, "dom0_op", cmd, f"u.{member}.domain", domid, iv, fill)


@pytest.mark.parametrize("release", DOM0_OP)
def test_wrong_interface_version_is_eacces(release):
    h = sim(release)
    iv = abi.variant(release).dom0_op_interface_version
    assert iv == 0x03000000
    rc, _lay, _ = _raw(h, "GETDOMAININFO", "getdomaininfo", 0, iv=iv - 1)
    assert rc == -errno.EACCES
    rc, lay, reply = _raw(h, "GETDOMAININFO", "getdomaininfo", 0)
    assert rc == 0 and lay.get(reply, "u.getdomaininfo.domain") == 0
    assert h.transport.log[-2] == ("dom0_op", "getdomaininfo", -errno.EACCES)
    # the library's error for it
    h.transport.faults.fail(errno.EACCES, op=7)
    with pytest.raises(errors.InterfaceVersionMismatch) as exc:
        h.domain_info(0)
    assert exc.value.hypercall == "dom0_op"


def test_unprivileged_is_eperm_before_anything():
    h = sim("3.0.2", privileged=0)
    rc, _lay, _ = _raw(h, "GETDOMAININFO", "getdomaininfo", 0, iv=1)
    assert rc == -errno.EPERM
    with pytest.raises(errors.HypervisorPermissionError):
        h.domains()


def test_the_domid_is_in_the_member_not_the_wrapper():
    h = sim("3.0.2")
    # dom0_op has no wrapper domain field: the first u bytes are the member's domain
    op = abi.variant("3.0.2").structs["dom0_op"]
    assert [f[0] for f in op._fields_] == ["cmd", "interface_version", "u"]
    h.pause(3 if not h.domain_info(3).paused else 1)
    rc, lay, reply = _raw(h, "PAUSEDOMAIN", "pausedomain", 2)
    assert rc == 0 and h.domain_info(2).paused
    rc, _lay, _ = _raw(h, "PAUSEDOMAIN", "pausedomain", 77)
    assert rc == -errno.ESRCH


@pytest.mark.parametrize("release", DOM0_OP)
def test_getdomaininfo_answers_the_next_domain_and_the_library_hides_it(release):
    h = sim(release)
    rc, lay, reply = _raw(h, "GETDOMAININFO", "getdomaininfo", 4)  # 0..3 exist
    assert rc == -errno.ESRCH
    domid = h.create_domain()
    destroy_me = h.create_domain()
    h.destroy(domid)
    rc, lay, reply = _raw(h, "GETDOMAININFO", "getdomaininfo", domid)
    assert rc == 0 and lay.get(reply, "u.getdomaininfo.domain") == destroy_me  # the next one
    with pytest.raises(NoSuchDomain) as exc:
        h.domain_info(domid)
    assert exc.value.errno == errno.ESRCH and exc.value.domid == domid
    assert h.domain_info(destroy_me).domid == destroy_me
    h.destroy(destroy_me)


@pytest.mark.parametrize("release", DOM0_OP)
def test_domflags_are_translated(release):
    h = sim(release)
    c = abi.variant(release).constants
    rd = info_reader(h.engine)
    assert isinstance(h.engine.families, Dom0OpFamilies)
    # DOMFLAGS bit -> XEN_DOMINF bit; the cpu field (bits 8..15) is dropped, the shutdown code kept
    raw = (c["DOMFLAGS_DYING"] | c["DOMFLAGS_SHUTDOWN"] | c["DOMFLAGS_PAUSED"] | c["DOMFLAGS_BLOCKED"]
           | c["DOMFLAGS_RUNNING"] | (3 << c["DOMFLAGS_CPUSHIFT"]) | (2 << c["DOMFLAGS_SHUTDOWNSHIFT"]))
    assert rd.flags(raw) == 0b111101 | (2 << 16)
    assert rd.flags(3 << 8) == 0
    assert rd.flags(c["DOMFLAGS_PAUSED"]) == 1 << 3
    # a record as the simulator writes it: a cpu number and a shutdown code in it
    rec = bytearray(rd.size)
    struct.pack_into("<HxxI", rec, 0, 5, c["DOMFLAGS_RUNNING"] | (7 << 8) | (3 << 16) | c["DOMFLAGS_SHUTDOWN"])
    info = rd.many(memoryview(rec), 0, 1)[0]
    assert info.domid == 5 and info.running and info.shutdown and not info.hvm and not info.dying
    assert (info.shutdown_code, info.shutdown_reason) == (3, "crash")
    assert info.flags == (1 << 5) | (1 << 2) | (3 << 16)
    # and through the whole stack
    by = {i.domid: i for i in h.domains()}
    assert by[3].paused and not by[3].running
    assert by[0].running and not by[0].paused
    assert by[2].blocked and not by[2].running
    assert (by[0].outstanding_pages, by[0].cpupool) == (None, None)


def test_new_domain_has_vcpu0_online_and_cannot_be_unpaused_unbuilt():
    h = sim("3.0.2")
    u = uuid.uuid4()
    domid = h.create_domain(max_vcpus=1, handle=u)
    try:
        info = h.domain_info(domid)
        assert info.handle == u and info.paused and not info.running
        assert info.nr_online_vcpus == 1 and info.max_vcpu_id == 0  # domain_create() made vcpu 0
        with pytest.raises(errors.XenError) as exc:
            h.unpause(domid)  # vcpu 0 has no context yet
        assert exc.value.errno == errno.EINVAL
        h.set_max_vcpus(domid, 3)
        assert [v.online for v in h.vcpu_info(domid)] == [True, False, False]
        with pytest.raises(errors.XenError) as exc:
            h.set_max_vcpus(domid, 2)  # cannot reduce
        assert exc.value.errno == errno.EINVAL
    finally:
        h.destroy(domid)
    with pytest.raises(NoSuchDomain):
        h.domain_info(domid)
    with pytest.raises(errors.XenError) as exc:
        h.set_max_vcpus(1, 4)  # a built domain
    assert exc.value.errno == errno.EINVAL


def test_create_domain_with_more_vcpus():
    h = sim("3.0.1")
    domid = h.create_domain(max_vcpus=4)
    assert h.domain_info(domid).vcpus == 4
    assert len(h.vcpu_info(domid)) == 4
    h.destroy(domid)


@pytest.mark.parametrize("release", DOM0_OP)
def test_ops_the_era_lacks_raise_before_any_hypercall(release):
    h = sim(release)
    h.nr_cpus()
    h.transport.log.clear()
    for call in (lambda: h.domain_state(0), lambda: h.cpu_topology(), lambda: h.numa_info(), lambda: h.pcpu_info(),
                 lambda: h.set_vcpu_affinity(1, 0, soft=[0])):
        with pytest.raises(NotSupported):
            call()
    # numa_info asks physinfo first (for max_node_id); nothing else went out
    assert [sub for _op, sub, _rc in h.transport.log] == ["physinfo"]
    with pytest.raises(NotSupported, match="sedf"):
        h.sched_params(1)
    with pytest.raises(NotSupported):
        h.set_sched_params(1, weight=100)


def test_bvt_scheduler():
    host = Host("3.0.2", sched="bvt")
    h = open_host(host)
    assert h.sched_id() == (0, "bvt")
    assert "Borrowed Virtual Time" in h.read_console()
    with pytest.raises(NotSupported, match="bvt"):
        h.sched_params(0)
    with pytest.raises(ValueError):
        Host("3.0.2", sched="credit2")
    with pytest.raises(ValueError):
        Host("4.17.7", sched="sedf")
    assert sim("3.0.2").sched_id() == (4, "sedf")  # credit (the sim's default) did not exist yet


def test_affinity_is_a_64_bit_cpumap():
    h = sim("3.0.2", pcpus=72)
    assert h.nr_cpus() == 72
    got = h.set_vcpu_affinity(1, 0, hard=[63, 5])
    assert got.hard == frozenset([5, 63]) and got.soft is None
    calls = h.transport.calls
    with pytest.raises(NotSupported, match="64 bits"):
        h.set_vcpu_affinity(1, 0, hard=[64])
    assert h.transport.calls == calls  # a cpu past 63 is refused before any hypercall
    assert h.vcpu_affinity(1, 0).hard == frozenset([5, 63])


def test_3_0_0_pins_with_pincpudomain():
    h = sim("3.0.0")
    assert "pincpudomain" in {f[0] for f in abi.variant("3.0.0").structs["dom0_op__u"]._fields_}
    assert h.vcpu_affinity(1, 0).hard == frozenset(range(4))  # CPUMAP_RUNANYWHERE
    got = h.set_vcpu_affinity(1, 0, hard=[2, 3])
    assert got.hard == frozenset([2, 3])
    assert h.vcpu_info(1)[0].cpu == 2  # pinned to the first cpu of the map
    assert ("dom0_op", "pincpudomain", 0) in h.transport.log


def test_physinfo_and_console():
    h = sim("3.0.2", pcpus=8, nodes=2)
    p = h.physinfo()
    assert (p.nr_cpus, p.max_cpu_id, p.nr_nodes, p.max_node_id) == (8, 7, 1, 0)  # one node in this era
    assert p.scrub_pages == 0 and p.max_mfn is None and p.capabilities == 0 and len(p.hw_cap) == 8
    text = h.read_console()
    assert "Simple EDF Scheduler" in text
    assert h.read_console(incremental=True) == h.read_console()  # no index: every read is the whole ring
    h.read_console(clear=True)
    assert h.read_console() == ""


def test_garbled_replies_are_decode_errors():
    h = sim("3.0.2")
    h.transport.faults.garble("count", op=7, subop="getdomaininfolist")
    with pytest.raises(errors.DecodeError):
        h.domains()
    h.transport.faults.garble("domid", op=7, subop="getdomaininfo")
    with pytest.raises(NoSuchDomain):
        h.domain_info(1)


def test_json_host_description_works_for_the_era(tmp_path):
    desc = {"release": "3.0.2", "pcpus": 2, "domains": [{"name": "old", "memory": 256, "vcpus": 2}]}
    path = tmp_path / "host.json"
    path.write_text(__import__("json").dumps(desc))
    h = xenprivcmd.open(f"sim://{path}")
    assert [i.name for i in h.domains(names=True)] == ["Domain-0", "old"]
    assert h.domain_info(1).nr_online_vcpus == 2


def test_host_built_directly():
    host = Host("3.0.1", domains=[DomainSpec(None, "a", None, 1 << 20, None, 1, "paused")])
    h = open_host(host)
    assert h.domain_info(1).paused
    h.unpause(1)
    assert not h.domain_info(1).paused
