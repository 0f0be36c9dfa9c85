"""xenprivcmd.abi: release list, variant() lookups, known facts from Xen's headers."""

from __future__ import annotations

import ctypes
import os
import pickle
import subprocess
import sys

import pytest

from xenprivcmd import abi


def _key(r: str):
    head = r.endswith("-dev")
    nums = tuple(int(x) for x in r.split("-")[0].split("."))
    return (nums[:2], 1 if head else 0, nums)


def test_releases_ordered_and_complete() -> None:
    rels = abi.releases()
    assert rels == sorted(rels, key=_key)
    assert len(rels) == len(set(rels))
    assert rels[0] == "3.0.0"
    assert rels[-1] == abi.head_release() == "4.23-dev"
    for r in ("3.0.2", "3.0.3", "3.0.4", "3.1.0", "3.2.0", "3.3.0", "3.4.0", "4.0.0",
              "4.1.6.1", "4.10.0", "4.10.1", "4.14.0", "4.17.0", "4.20.0", "4.21.0", "4.22.0"):
        assert r in rels, r
    # every 4.x series is there
    for minor in range(0, 23):
        assert abi.candidates(4, minor), minor


def test_interface_version_ranges() -> None:
    iv = abi.interface_versions()
    doms = {d for d, _ in iv.values() if d is not None}
    syss = {s for _, s in iv.values() if s is not None}
    assert min(doms) == 0x3 and max(doms) == 0x18
    assert min(syss) == 0x2 and max(syss) == 0x16
    # each interface version on its own never goes back over releases in order (domctl
    # and sysctl are bumped independently)
    last_d = last_s = 0
    checked = 0
    for r in abi.releases():
        d, s = iv[r]
        if d is None:
            assert r in ("3.0.0", "3.0.1", "3.0.2") and s is None, r  # dom0_op era
            continue
        assert s is not None, r
        assert d >= last_d, (r, hex(d), hex(last_d))
        assert s >= last_s, (r, hex(s), hex(last_s))
        last_d, last_s = d, s
        checked += 1
    assert checked == len(abi.releases()) - 3


@pytest.mark.parametrize("release,domctl,sysctl", [
    ("3.0.3", 0x3, 0x2), ("3.0.4", 0x4, 0x2), ("3.1.0", 0x5, 0x3), ("3.2.0", 0x5, 0x6),
    ("4.0.0", 0x6, 0x7), ("4.1.0", 0x7, 0x8), ("4.2.0", 0x8, 0x9), ("4.4.0", 0x9, 0xa),
    ("4.10.0", 0xe, 0x10), ("4.10.1", 0xf, 0x10), ("4.11.0", 0x10, 0x11),
    ("4.14.0", 0x12, 0x13), ("4.14.6", 0x12, 0x13),  # Debian bullseye
    ("4.17.0", 0x15, 0x15), ("4.17.5", 0x15, 0x15),  # Debian bookworm
    ("4.20.0", 0x17, 0x15), ("4.20.1", 0x17, 0x15),  # Debian trixie
    ("4.21.0", 0x17, 0x16), ("4.22.0", 0x18, 0x16), ("4.23-dev", 0x18, 0x16),
])
def test_known_interface_versions(release: str, domctl: int, sysctl: int) -> None:
    v = abi.variant(release)
    assert (v.domctl_interface_version, v.sysctl_interface_version) == (domctl, sysctl)
    assert v.constants["XEN_DOMCTL_INTERFACE_VERSION"] == domctl
    assert v.constants["XEN_SYSCTL_INTERFACE_VERSION"] == sysctl
    assert v.dom0_op_interface_version is None
    assert v.constants["__HYPERVISOR_domctl"] == 36
    assert v.constants["__HYPERVISOR_sysctl"] == 35
    assert v.constants["__HYPERVISOR_xen_version"] == 17


def test_dom0_op_era() -> None:
    for r in ("3.0.0", "3.0.1", "3.0.2"):
        v = abi.variant(r)
        assert v.is_dom0_op
        assert v.domctl_interface_version is None and v.sysctl_interface_version is None
        assert v.dom0_op_interface_version == 0x03000000
        c = v.constants
        assert c["__HYPERVISOR_dom0_op"] == 7
        assert c["DOM0_GETDOMAININFO"] == 12
        assert c["DOM0_GETDOMAININFOLIST"] == 38
        s = v.structs
        op = s["dom0_op"]
        assert ctypes.sizeof(op) == 136
        assert op.u.offset == 8
        members = {f[0] for f in s["dom0_op__u"]._fields_}
        assert {"getdomaininfo", "getdomaininfolist", "pausedomain", "unpausedomain",
                "destroydomain", "setdomainmaxmem", "max_vcpus", "getvcpuinfo",
                "physinfo", "sched_id", "readconsole"} <= members, members
    assert "setvcpuaffinity" in {f[0] for f in abi.variant("3.0.2").structs["dom0_op__u"]._fields_}
    assert abi.variant((3, 0)).release == "3.0.4"
    assert abi.variant((3, 0), domctl=None, sysctl=None).release == "3.0.4"


def test_variant_by_tuple_string_and_series() -> None:
    assert abi.variant((4, 10)).release == "4.10.4"
    assert abi.variant((4, 10, 0)).release == "4.10.0"
    assert abi.variant("4.10.1").xen == (4, 10, 1)
    assert abi.variant((4, 10), domctl=0xe).release == "4.10.0"
    assert abi.variant((4, 10), domctl=0xf, sysctl=0x10).release == "4.10.4"
    assert abi.variant((4, 23)).release == "4.23-dev"
    assert abi.variant("4.23-unstable").release == "4.23-dev"
    assert abi.variant("4.23-dev").xen == (4, 23)
    assert abi.variant("4.1.6.1").xen == (4, 1, 6, 1)
    assert abi.variant([4, 17]).release.startswith("4.17.")


def test_getdomaininfo_4_10_0_vs_4_10_1() -> None:
    a = abi.variant("4.10.0").structs["xen_domctl_getdomaininfo"]
    b = abi.variant("4.10.1").structs["xen_domctl_getdomaininfo"]
    assert ctypes.sizeof(a) == 96 and ctypes.sizeof(b) == 104
    assert not hasattr(a, "arch_config") and b.arch_config.offset == 96
    assert a.cpu_time.offset == b.cpu_time.offset == 56
    assert abi.variant("4.10.0").layout_key != abi.variant("4.10.1").layout_key


@pytest.mark.parametrize("release,gdi,physinfo,createdomain", [
    ("4.10.0", 96, 104, 28), ("4.10.1", 104, 104, 28), ("4.14.0", 104, 104, 48),
    ("4.22.0", 112, 112, 68), ("4.23-dev", 112, 112, 68),
])
def test_sizes_checked_against_real_headers(release: str, gdi: int, physinfo: int,
                                            createdomain: int) -> None:
    # numbers from sizeof() in a C program compiled against each tag's headers
    s = abi.variant(release).structs
    assert ctypes.sizeof(s["xen_domctl_getdomaininfo"]) == gdi
    assert ctypes.sizeof(s["xen_sysctl_physinfo"]) == physinfo
    assert ctypes.sizeof(s["xen_domctl_createdomain"]) == createdomain
    assert ctypes.sizeof(s["xen_domctl"]) == 144
    assert ctypes.sizeof(s["xen_sysctl"]) == 136
    assert ctypes.sizeof(s["xen_domctl_scheduler_op"]) == 24


def test_wrapper_unions_contain_ops() -> None:
    v = abi.variant((4, 22))
    dom = v.structs["xen_domctl"]
    u = dict(dom._fields_)["u"]
    names = {f[0] for f in u._fields_}
    assert {"getdomaininfo", "max_mem", "max_vcpus", "getvcpuinfo", "vcpuaffinity",
            "scheduler_op", "createdomain", "get_domain_state"} <= names
    assert dom.u.offset == 16
    d = dom()
    d.u.getdomaininfo.domain = 7
    assert d.u.getdomaininfo.domain == 7
    sysu = {f[0] for f in dict(v.structs["xen_sysctl"]._fields_)["u"]._fields_}
    assert {"readconsole", "physinfo", "sched_id", "getdomaininfolist", "cputopoinfo",
            "numainfo", "getcpuinfo"} <= sysu
    st = v.structs["xen_domctl_get_domain_state"]
    assert ctypes.sizeof(st) == 16 and st.unique_id.offset == 8
    assert v.constants["XEN_DOMCTL_get_domain_state"] == 90
    assert "xen_domctl_get_domain_state" not in abi.variant("4.20.0").structs
    assert "xen_domctl_get_domain_state" in abi.variant("4.21.0").structs


def test_old_topologyinfo_and_cpumap_names() -> None:
    assert "xen_sysctl_topologyinfo" in abi.variant("4.2.0").structs
    assert "xen_sysctl_cputopoinfo" in abi.variant("4.6.0").structs
    assert "xenctl_cpumap" in abi.variant("4.1.0").structs
    assert "xenctl_bitmap" in abi.variant("4.3.0").structs
    assert "xen_sysctl_sched_id" in abi.variant("3.0.3").structs


def test_constants_for_flags() -> None:
    c = abi.variant((4, 17)).constants
    assert c["XEN_DOMINF_dying"] == 1 << c["_XEN_DOMINF_dying"]
    assert c["XEN_DOMINF_shutdownshift"] == 16
    assert c["XEN_SCHEDULER_CREDIT"] == 5 and c["XEN_SCHEDULER_CREDIT2"] == 6
    assert c["XEN_DOMCTL_SCHEDOP_getinfo"] == 1
    assert c["XEN_VCPUAFFINITY_HARD"] == 1
    assert c["XEN_SYSCTL_PHYSCAP_hvm"] == 1
    assert c["XEN_DOMCTL_CDF_hvm"] == 1
    assert c["XENVER_extraversion"] == 1 and c["XENVER_build_id"] == 10


def test_errors() -> None:
    with pytest.raises(abi.UnknownABIError):
        abi.variant((4, 99))
    with pytest.raises(abi.UnknownABIError):
        abi.variant((4, 17, 99))
    with pytest.raises(abi.UnknownABIError):
        abi.variant("not-a-version")
    with pytest.raises(abi.UnknownABIError, match="domctl"):
        abi.variant("4.17.0", domctl=0x12)
    with pytest.raises(abi.UnknownABIError):
        abi.variant((4, 17), domctl=0x15, sysctl=0x13)
    with pytest.raises(abi.UnknownABIError):
        abi.variant((4, 17), arch="mips")
    with pytest.raises(abi.UnknownABIError):
        abi.variant("3.0.2", domctl=3)
    assert issubclass(abi.UnknownABIError, LookupError)


def test_variant_immutable_hashable_repr() -> None:
    v = abi.variant("4.17.0")
    assert v == abi.variant((4, 17, 0)) and hash(v) == hash(abi.variant("4.17.0"))
    with pytest.raises(AttributeError):
        v.release = "x"  # type: ignore[misc]
    assert "4.17.0" in repr(v) and "0x15" in repr(v)
    assert pickle.loads(pickle.dumps(v)) == v
    assert {v, abi.variant("4.17.0")} == {v}
    assert v.arch == "x86_64" and v.exact
    assert not abi.variant("3.2.1").exact


def test_candidates_newest_first() -> None:
    c = abi.candidates(4, 17)
    assert [x.xen for x in c] == sorted((x.xen for x in c), reverse=True)
    assert c[-1].release == "4.17.0"
    assert abi.candidates(4, 23)[0].release == "4.23-dev"
    assert abi.candidates(5, 0) == []


def test_import_is_cheap_and_lazy() -> None:
    code = ("import sys, time; t=time.perf_counter(); import xenprivcmd.abi as a; "
            "dt=time.perf_counter()-t; "
            "bad=[m for m in sys.modules if m.startswith(('elftools','construct','pycparser')) "
            "or '_gen_' in m]; print(dt, bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    dt, bad = out.stdout.split(" ", 1)
    assert bad.strip() == "[]"
    assert float(dt) < 0.5


def test_domaininfo_bits_are_those_of_xen_4_9_on():
    """types.DOMINF_BITS are the headers' XEN_DOMINF_* of every release from 4.9; 4.7/4.8 differ
    (xs_domain and hap one bit up), which ops/domains.FlagMap translates."""
    from xenprivcmd.types import DOMINF_BITS

    newer = [r for r in abi.releases() if abi.variant(r).xen[:2] >= (4, 9)]
    assert len(newer) > 50
    for r in newer:
        c = abi.variant(r).constants
        assert {n: c["XEN_DOMINF_" + n] for n, _b in DOMINF_BITS} == {n: 1 << b for n, b in DOMINF_BITS}, r
    c = abi.variant("4.8.0").constants
    assert (c["XEN_DOMINF_xs_domain"], c["XEN_DOMINF_hap"]) == (1 << 8, 1 << 9)
