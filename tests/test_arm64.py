"""The simulator as an arm64 host (``sim:///?arch=aarch64``): the shared
scenario suite on every release with aarch64 tables, and what is Arm's own:

* every domain, dom0 included, is HVM with HAP (XEN_DOMINF_hvm_guest and,
  where the release has it, XEN_DOMINF_hap);
* physinfo's virt caps are hvm and hap (plus vpmu, gnttab-v1 where the release
  names them), never pv or shadow;
* capabilities ``xen-3.0-aarch64 xen-3.0-armv7l``;
* one NUMA node at distance 20 from itself, no cores/sockets, timer-rate cpu_khz;
* getdomaininfo records and createdomain laid out with the aarch64 tables
  (their arch_config tails differ from x86_64's), and createdomain asks for an
  HVM+HAP domain, which Xen on Arm requires (4.12+).

The same facts were seen on real arm64 Xen 4.17 and 4.20 (tools/xenvm
``--suite bookworm-arm64``/``trixie-arm64``; recordings in
tests/recordings/xen-4.17-arm64 and xen-4.20-arm64).
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import uuid

import pytest

import xenprivcmd
from xenprivcmd import abi
from xenprivcmd.ops.domains import info_reader
from xenprivcmd.ops.engine import HEADER_DOMAIN, Request
from xenprivcmd.sim import Host, SimTransport
from xenprivcmd.sim._layout import Tables

from . import scenarios


def _aarch64_releases():
    out = []
    for r in abi.releases():
        try:
            abi.variant(r, arch="aarch64")
        except abi.UnknownABIError:
            continue
        out.append(r)
    return out


ARM = _aarch64_releases()
LATEST = ARM[-1]


def arm(xen: str = LATEST, **kw: object) -> xenprivcmd.Handle:
    q = "&".join(["arch=aarch64", f"xen={xen}"] + [f"{k}={v}" for k, v in kw.items()])
    return xenprivcmd.open("sim:///?" + q)


def test_there_are_aarch64_tables_from_4_3():
    assert ARM[0].startswith("4.3") and "4.17.7" in ARM and "4.20.0" in ARM
    assert all(abi.variant(r, arch="aarch64").arch == "aarch64" for r in ARM)


# -- the shared scenario suite ------------------------------------------------------------

@pytest.mark.parametrize("release", ARM)
def test_scenarios(release):
    h = arm(release)
    assert h.arch == "aarch64" and h.abi.arch == "aarch64" and h.abi.release == release
    failures = {name: exc for name, exc in scenarios.run_all(h, guest=1).items() if exc is not None}
    assert not failures, {k: f"{type(v).__name__}: {v}" for k, v in failures.items()}


@pytest.mark.parametrize("name", sorted(scenarios.SCENARIOS))
@pytest.mark.parametrize("release", ["4.4.0", "4.17.7", "4.20.0"])
def test_scenario_each(release, name):
    scenarios.SCENARIOS[name](arm(release))


# -- Arm-specific ----------------------------------------------------------------------------

@pytest.mark.parametrize("release", ARM)
def test_every_domain_is_hvm_with_hap(release):
    h = arm(release)
    has_hap_flag = "XEN_DOMINF_hap" in h.abi.constants  # from 4.8 (bit 9 there, bit 8 after)
    doms = h.domains()
    assert doms[0].domid == 0 and len(doms) > 1
    for d in doms:
        assert d.hvm, d
        assert d.hap == has_hap_flag, d
    domid = h.create_domain(max_vcpus=1, handle=uuid.uuid4())
    try:
        new = h.domain_info(domid)
        assert new.hvm and new.hap == has_hap_flag and new.paused
    finally:
        h.destroy(domid)


@pytest.mark.parametrize("release", ARM)
def test_physinfo_virt_caps_and_topology(release):
    h = arm(release, pcpus=4)
    p = h.physinfo()
    consts = h.abi.constants
    if "XEN_SYSCTL_PHYSCAP_hap" in consts:
        assert {"hvm", "hap"} <= set(p.virt_caps)
    elif "XEN_SYSCTL_PHYSCAP_hvm" in consts:
        assert "hvm" in p.virt_caps
    assert "pv" not in p.virt_caps and "shadow" not in p.virt_caps
    if "XEN_SYSCTL_PHYSCAP_gnttab_v1" in consts:
        assert set(p.virt_caps) == {"hvm", "hap", "vpmu", "gnttab-v1"}
    assert p.hw_cap == (0,) * len(p.hw_cap)
    assert (p.nr_nodes, p.max_node_id, p.threads_per_core, p.cores_per_socket) == (1, 0, 1, 1)
    assert p.cpu_khz == 62_500
    nodes = h.numa_info()
    assert [n.distances for n in nodes] == [(20,)]
    topo = h.cpu_topology()
    assert [(t.core, t.socket, t.node) for t in topo] == [(0, 0, 0)] * 4


@pytest.mark.parametrize("release", ARM)
def test_capabilities(release):
    v = arm(release).version()
    assert v.capabilities == ("xen-3.0-aarch64", "xen-3.0-armv7l")


def test_no_numa_on_arm():
    with pytest.raises(ValueError, match="nodes must be 1 on aarch64"):
        arm(pcpus=4, nodes=2)


@pytest.mark.parametrize("release", ["4.10.0", "4.11.0", "4.14.0", "4.17.7", "4.20.0", LATEST])
def test_getdomaininfo_records_use_the_aarch64_layout(release):
    """The record size (arch_config tail included) is aarch64's, not x86_64's;
    a listing decodes every domain at that stride."""
    h = arm(release, domains=5)
    arm_info = abi.variant(release, arch="aarch64").structs["xen_domctl_getdomaininfo"]
    x86_info = abi.variant(release, arch="x86_64").structs["xen_domctl_getdomaininfo"]
    assert info_reader(h.engine).size == ctypes.sizeof(arm_info)
    if "arch_config" in {f[0] for f in arm_info._fields_}:
        # Arm's xen_arch_domainconfig tail (gic_version, nr_spis, clock_frequency, ...)
        # is 8 bytes longer than x86's: x86_64 strides would misread every later record
        assert ctypes.sizeof(arm_info) == ctypes.sizeof(x86_info) + 8
    doms = h.domains()
    assert [d.domid for d in doms] == list(range(5))
    assert all(h.domain_info(d.domid).handle == d.handle for d in doms)


@pytest.mark.parametrize("release", [r for r in ARM if abi.variant(r, arch="aarch64").xen >= (4, 12)])
def test_xen_on_arm_refuses_a_pv_createdomain(release):
    """What the library avoids: createdomain without HVM+HAP is EINVAL on Arm."""
    host = Host(release, arch="aarch64")
    t = SimTransport(host)
    h = xenprivcmd.Handle(t, "sim:", arch="aarch64")
    names = {f[0] for f in abi.variant(release, arch="aarch64").structs["xen_domctl_createdomain"]._fields_}
    values = [(n, v) for n, v in (("max_vcpus", 1), ("max_evtchn_port", 1023), ("max_grant_frames", 32),
                                  ("max_maptrack_frames", 1024), ("grant_opts", 1)) if n in names]
    pv = Request("domctl", "createdomain", struct="xen_domctl_createdomain", domain=False,
                 fixed=values + [("flags", 0)], read=(HEADER_DOMAIN,), reads=False)
    with pytest.raises(xenprivcmd.XenError) as exc:
        h.engine(pv)
    assert exc.value.errno == 22
    # and the library's own create_domain asks for HVM+HAP and succeeds
    domid = h.create_domain(max_vcpus=1)
    assert h.domain_info(domid).hvm
    h.destroy(domid)


def test_createdomain_carries_the_aarch64_arch_config():
    """createdomain's tail is xen_arch_domainconfig (gic_version, nr_spis, ...)."""
    t = Tables("aarch64", "4.17.7")
    arch = abi.variant("4.17.7", arch="aarch64").structs["xen_arch_domainconfig"]
    assert [f[0] for f in arch._fields_][:1] == ["gic_version"]
    assert "nr_spis" in {f[0] for f in arch._fields_}
    assert "xen_domctl" in t


def test_handle_over_privcmd_takes_the_machine_arch(monkeypatch):
    """A Handle built straight on a privcmd transport uses the machine's
    layouts (on an arm64 dom0: aarch64); other transports default to x86_64."""
    from xenprivcmd.transport.privcmd import Transport

    class FakePrivcmd(Transport):
        kind = "privcmd"

    real = os.uname()

    def machine(name):
        # os.uname() is what the package reads (platform.machine() is the same field)
        monkeypatch.setattr(os, "uname", lambda: os.uname_result(real[:4] + (name,)))

    machine("aarch64")
    assert xenprivcmd.Handle(FakePrivcmd(), "xen:///").arch == "aarch64"
    machine("arm64")
    assert xenprivcmd.Handle(FakePrivcmd(), "xen:///").arch == "aarch64"
    machine("x86_64")
    assert xenprivcmd.Handle(FakePrivcmd(), "xen:///").arch == "x86_64"
    machine("aarch64")
    assert xenprivcmd.Handle(Transport(), "x:").arch == "x86_64"


def test_shell_lists_an_arm_host():
    out = subprocess.run([sys.executable, "-m", "xenprivcmd", "-c", "sim:///?arch=aarch64", "list"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["Id", "Name", "State"]
    assert any(line.split()[:2] == ["0", "Domain-0"] for line in lines)
    js = subprocess.run([sys.executable, "-m", "xenprivcmd", "-c", "sim:///?arch=aarch64&xen=4.17.7",
                         "--json", "nodeinfo"], capture_output=True, text=True, timeout=120)
    assert js.returncode == 0, js.stderr
    assert json.loads(js.stdout)["cpus"] >= 1


@pytest.mark.parametrize("name,xen", [("xen-4.17-arm64", "4.17"), ("xen-4.20-arm64", "4.20")])
def test_the_real_arm64_recordings_match_what_the_sim_plays(name, xen):
    """The Arm facts the simulator plays were seen on real arm64 Xen: the same scenario on
    ``sim:///?arch=aarch64`` and in the recording made in a real arm64 dom0 agree."""
    import os

    from xenprivcmd import record

    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "recordings")
    with open(os.path.join(here, name, "scenario.json"), encoding="utf-8") as f:
        real = {s["step"]: s.get("result") for s in json.load(f)["steps"]}
    with arm(xen) as h:
        sim = {s["step"]: s.get("result") for s in record.run_scenario(h)}
    assert real["abi"]["arch"] == sim["abi"]["arch"] == "aarch64"
    assert real["abi"]["release"].startswith(xen + ".") and sim["abi"]["release"].startswith(xen + ".")
    for k in ("domctl_interface_version", "sysctl_interface_version"):
        assert sim["abi"][k] == real["abi"][k], k
    assert sim["version"]["capabilities"] == real["version"]["capabilities"] == ["xen-3.0-aarch64", "xen-3.0-armv7l"]
    assert set(sim["physinfo"]["virt_caps"]) == set(real["physinfo"]["virt_caps"])
    assert [n["distances"] for n in sim["numa_info"]] == [n["distances"] for n in real["numa_info"]]
    hvm_hap = 0x2 | 0x100  # XEN_DOMINF_hvm_guest | XEN_DOMINF_hap: every Arm domain
    for steps in (real, sim):
        assert steps["domains"] and all(d["flags"] & hvm_hap == hvm_hap for d in steps["domains"])
    assert sim["sched_id"] == real["sched_id"]


def test_hap_flag_of_xen_4_8_is_at_its_own_bit():
    # Xen 4.8 has XEN_DOMINF_hap at bit 9 (bit 8 is xs_domain there); DomainInfo reads 4.9+'s bits
    h = arm("4.8.5")
    assert h.abi.constants["XEN_DOMINF_hap"] == 1 << 9
    assert h.domain_info(0).hap  # every Arm domain uses HAP
