"""The library against a real hypervisor, cross-checked with Xen's own xl."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

import xenprivcmd
from xenprivcmd import abi

from .conftest import SUITE_ABI, SUITE_ARCH, xl, xl_info, xl_list, xl_table


def test_version_is_the_hypervisors(xen):
    v = xen.version()
    info = xl_info()
    assert (v.major, v.minor) == (int(info["xen_major"]), int(info["xen_minor"]))
    assert v.extraversion == info["xen_extra"]
    assert " ".join(v.capabilities) == info["xen_caps"]
    assert v.changeset == info["xen_changeset"]
    assert v.commandline == info["xen_commandline"]
    assert v.compiler == info["cc_compiler"]
    assert v.pagesize == int(info["xen_pagesize"])
    if "build_id" in info:
        assert v.build_id == info["build_id"]
    print(f"Xen {v.release} buffers from {xen.buffer_kind}")


def test_the_architecture_is_the_machines(xen, suite):
    """x86_64 or aarch64: the handle's layouts, Xen's capabilities, xl's machine."""
    info = xl_info()
    assert xen.arch == SUITE_ARCH[suite] == info["machine"]
    assert xen.abi.arch == xen.arch
    caps = xen.version().capabilities
    if xen.arch == "aarch64":
        assert caps == ("xen-3.0-aarch64", "xen-3.0-armv7l")
    else:
        assert "xen-3.0-x86_64" in caps


def test_virt_caps_and_domain_flags_per_arch(xen, guest):
    """Arm: every domain, dom0 included, is HVM with HAP, and Xen offers no PV
    and no shadow paging.  x86 (PV dom0 and guest1 under QEMU TCG): neither."""
    p = xen.physinfo()
    xl_caps = xl_info()["virt_caps"].split()
    doms = {d.domid: d for d in xen.domains()}
    if xen.arch == "aarch64":
        assert {"hvm", "hap"} <= set(p.virt_caps) and {"hvm", "hap"} <= set(xl_caps)
        assert "pv" not in p.virt_caps and "shadow" not in p.virt_caps
        for d in (doms[0], doms[guest]):
            assert d.hvm and d.hap, d
        # whatever xl names, physinfo names the same, and nothing more
        for cap in ("hvm", "pv", "hap", "shadow"):
            assert (cap in xl_caps) == (cap in p.virt_caps), cap
    else:
        for d in (doms[0], doms[guest]):
            assert not d.hvm and not d.hap, d


def test_buffers_come_from_the_hypercall_device(xen):
    expected = "/dev/xen/hypercall" if os.path.exists("/dev/xen/hypercall") else "anonymous-locked"
    assert xen.buffer_kind == expected
    xen.version()
    stats = xen.transport.stats()
    assert stats["buffers"] >= 1 and stats["calls"] > 0


def test_locked_anonymous_buffers_work_on_real_xen(xen):
    # The fallback for kernels without /dev/xen/hypercall: MAP_LOCKED memory.
    from xenprivcmd.handle import Handle
    from xenprivcmd.transport import privcmd as _privcmd

    with Handle(_privcmd.open_privcmd(hypercall_buf=None), "xen:///") as h:
        assert h.buffer_kind == "anonymous-locked"
        assert h.version() == xen.version()
        assert [d.domid for d in h.domains()] == [d.domid for d in xen.domains()]
        assert h.physinfo().nr_cpus == xen.physinfo().nr_cpus


def test_abi_is_detected_without_being_told(suite):
    series, domctl, sysctl = SUITE_ABI[suite]
    with xenprivcmd.open(detect="fresh") as fresh:
        v = fresh.abi
        assert v.xen[:2] == series
        assert (v.domctl_interface_version, v.sysctl_interface_version) == (domctl, sysctl)
        assert fresh.detection["method"] in ("series + probes", "scan")
        # the probes did ask the hypervisor, and it accepted the chosen versions
        assert ("domctl", domctl, True) in fresh.detection["probes"]
        assert ("sysctl", sysctl, True) in fresh.detection["probes"]


def test_the_detected_variant_is_cached_for_this_boot(suite):
    """/run/xenprivcmd holds the variant (root's runtime dir); the next open
    uses it after one accepted probe, and a damaged file is never trusted."""
    import stat

    with xenprivcmd.open(detect="fresh") as fresh:
        release, path = fresh.abi.release, fresh.detection["cache"]
    assert path == f"/run/xenprivcmd/abi-privcmd-{xenprivcmd._machine_arch()}"
    st = os.stat(path)
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0
    boot = open("/proc/sys/kernel/random/boot_id").read().strip()
    assert f"key.boot={boot}\n" in open(path).read()
    with xenprivcmd.open() as warm:
        assert warm.abi.release == release
        assert warm.detection["method"].startswith("cache")
        assert warm.detection["probes"] == [("domctl", warm.abi.domctl_interface_version, True)]
    # another release in the file: Xen refuses the probe, detection runs again
    text = open(path).read()
    other = "4.14.0" if not release.startswith("4.14") else "4.17.0"
    with open(path, "w") as f:
        f.write(text.replace(f"release={release}\n", f"release={other}\n"))
    with xenprivcmd.open() as h:
        assert h.abi.release == release and h.detection.get("cache_rejected") == other
    assert f"release={release}\n" in open(path).read()


def test_a_wrong_interface_version_is_refused_by_xen(xen):
    from xenprivcmd.abi import detect as _detect

    assert _detect.probe_domctl(xen.transport, xen.abi) is True
    assert _detect.probe_domctl(xen.transport, xen.abi, xen.abi.domctl_interface_version + 1) is False
    assert _detect.probe_sysctl(xen.transport, xen.abi, 0x1) is False


def _has_tables(release, arch):
    try:
        abi.variant(release, arch=arch)
    except abi.UnknownABIError:
        return False
    return True


def test_abi_override_of_another_release_is_rejected(xen):
    # a release with tables for this machine's architecture (Arm's start at 4.4)
    other = next(
        r for r in abi.releases()
        if _has_tables(r, xen.arch)
        and abi.variant(r, arch=xen.arch).domctl_interface_version not in (None, xen.abi.domctl_interface_version)
    )
    with xenprivcmd.open(abi=other) as h:
        with pytest.raises(xenprivcmd.InterfaceVersionMismatch):
            h.abi  # noqa: B018


def test_domains_match_xl_list(xen, guest):
    xen.pause(guest)  # its cpu time stands still: ours and xl's must be the same number
    try:
        t0 = time.monotonic()
        infos = {d.domid: d for d in xen.domains(names=True)}
        rows = {int(r["id"]): r for r in xl_list()}
        apart = time.monotonic() - t0
    finally:
        xen.unpause(guest)
    assert set(infos) == set(rows)
    for domid, row in rows.items():
        d = infos[domid]
        assert d.name == row["name"]
        assert d.memory_kib // 1024 == int(row["mem"])
        assert d.nr_online_vcpus == int(row["vcpus"])
        # xl read later: its time is ours plus at most what the running vcpus used meanwhile
        assert d.cpu_time / 1e9 - 0.1 <= float(row["time"]) <= d.cpu_time / 1e9 + apart * d.nr_online_vcpus + 0.1
    assert f"{infos[guest].cpu_time / 1e9:.1f}" == rows[guest]["time"]  # xl prints %.1f of the same ns
    assert infos[0].name == "Domain-0" and not infos[0].paused


def test_domain_info_agrees_with_listing_and_missing_domain_raises(xen, guest):
    listed = {d.domid: d for d in xen.domains()}
    one = xen.domain_info(guest)
    assert one.handle == listed[guest].handle and one.max_pages == listed[guest].max_pages
    missing = max(listed) + 5
    with pytest.raises(xenprivcmd.NoSuchDomain) as exc:
        xen.domain_info(missing)
    assert isinstance(exc.value, ProcessLookupError)


def test_physinfo_matches_xl_info(xen):
    p = xen.physinfo()
    info = xl_info()
    assert p.nr_cpus == int(info["nr_cpus"])
    assert p.max_cpu_id == int(info["max_cpu_id"])
    assert p.nr_nodes == int(info["nr_nodes"])
    assert p.threads_per_core == int(info["threads_per_core"])
    assert p.cores_per_socket == int(info["cores_per_socket"])
    assert p.cpu_khz // 1000 == int(info["cpu_mhz"].split(".")[0])
    assert p.total_memory_kib // 1024 == int(info["total_memory"])
    assert abs(p.free_memory_kib // 1024 - int(info["free_memory"])) <= 64
    xl_caps = info["virt_caps"].split()
    for cap in ("hvm", "pv", "hap", "shadow"):
        if cap in xl_caps:
            assert cap in p.virt_caps


def test_scheduler_matches_xl_info(xen, suite):
    name = xen.sched_id()[1]
    assert name == xl_info()["xen_scheduler"]
    # tools/run-tests boots trixie with Xen's default (credit2), the others with credit
    assert name == ("credit2" if suite == "trixie" else "credit")


def test_topology_numa_and_pcpus(xen):
    p = xen.physinfo()
    topo = xen.cpu_topology()
    assert len(topo) == p.max_cpu_id + 1
    online = [t for t in topo if t.core is not None]
    assert len(online) == p.nr_cpus
    xl_topo = xl("info", "-n").split("cpu_topology", 1)[1].split("numa_info", 1)[0]
    # xl info -n: "cpu:    core    socket     node", then one "N:  core socket node" row per online cpu
    theirs = {int(m[1]): (int(m[2]), int(m[3]), int(m[4]))
              for m in re.finditer(r"^\s*(\d+):\s+(\d+)\s+(\d+)\s+(\d+)\s*$", xl_topo, re.M)}
    assert theirs == {t.cpu: (t.core, t.socket, t.node) for t in online}, (xl_topo, online)
    nodes = xen.numa_info()
    # Xen on Arm has no NUMA support here: one fake node whose distance to
    # itself is 20 (asm/numa.h's __node_distance); x86's SLIT-less local distance is 10
    local = 20 if xen.arch == "aarch64" else 10
    assert len(nodes) == p.nr_nodes and (nodes[0].memsize_kib or 0) > 0 and nodes[0].distances[0] == local
    xl_numa = xl("info", "-n").split("numa_info", 1)[1]
    assert re.search(r"^\s*0:\s+\d+\s+\d+\s+%d\s*$" % local, xl_numa, re.M), xl_numa
    idle1 = xen.pcpu_info()
    time.sleep(0.2)
    idle2 = xen.pcpu_info()
    assert len(idle1) == p.nr_cpus and sum(b.idletime for b in idle2) > sum(a.idletime for a in idle1)


def test_vcpu_info_matches_xl_vcpu_list(xen, guest):
    xen.pause(guest)  # paused, its vcpus neither move nor use time: the same pcpu and time as xl's
    try:
        vcpus = xen.vcpu_info(guest)
        rows = [r for r in xl_table("vcpu-list") if r[1] == str(guest)]
    finally:
        xen.unpause(guest)
    assert len(vcpus) == len(rows) >= 1
    for v, row in zip(vcpus, rows):
        assert v.vcpu == int(row[2])
        assert (str(v.cpu) if v.online else "-") == row[3], (v, row)
        assert f"{v.cpu_time / 1e9:.1f}" == row[5], (v, row)


def test_console_matches_xl_dmesg(xen):
    ours = xen.read_console()
    theirs = xl("dmesg")
    tail = [line for line in theirs.splitlines() if line.strip()][-3:]
    for line in tail:
        assert line in ours
    first = xen.read_console(incremental=True)
    assert first  # everything the first time
    again = xen.read_console(incremental=True)
    assert again == ""  # nothing new since


# -- state-changing operations on guest1 -------------------------------------------

def test_pause_and_unpause(xen, guest):
    xen.pause(guest)
    try:
        assert xen.domain_info(guest).paused
        state = {r["id"]: r["state"] for r in xl_list()}[str(guest)]
        assert "p" in state
    finally:
        xen.unpause(guest)
    assert not xen.domain_info(guest).paused
    assert "p" not in {r["id"]: r["state"] for r in xl_list()}[str(guest)]


def test_set_max_mem(xen, guest):
    before = xen.domain_info(guest).max_pages
    xen.set_max_mem(guest, 200 * 1024, force=True)
    assert xen.domain_info(guest).max_memory_kib == 200 * 1024
    xen.set_max_mem(guest, before * 4)
    assert xen.domain_info(guest).max_pages == before


def test_vcpu_affinity_matches_xl(xen, guest):
    nr = xen.physinfo().nr_cpus
    a = xen.set_vcpu_affinity(guest, 0, hard=[0])
    assert a.hard == frozenset({0})
    row = next(r for r in xl_table("vcpu-list") if r[1] == str(guest) and r[2] == "0")
    assert row[-3] == "0"  # Affinity (Hard / Soft): "0 / all"
    a = xen.set_vcpu_affinity(guest, 0, hard=range(nr))
    assert a.hard == frozenset(range(nr))
    assert xen.vcpu_affinity(guest, 0).hard == frozenset(range(nr))


def test_sched_params_match_xl(xen, guest):
    name = xen.sched_id()[1]
    cmd = {"credit": "sched-credit", "credit2": "sched-credit2"}[name]
    before = xen.sched_params(guest)
    row = next(r for r in xl_table(cmd) if r[1] == str(guest))
    assert before.weight == int(row[2])
    after = xen.set_sched_params(guest, weight=512)
    assert after.weight == 512
    row = next(r for r in xl_table(cmd, "-d", str(guest)) if r[1] == str(guest))
    assert int(row[2]) == 512
    xen.set_sched_params(guest, weight=before.weight)


def test_create_and_destroy_an_empty_domain(xen):
    domid = xen.create_domain(max_vcpus=1)
    try:
        info = xen.domain_info(domid)
        # x86: an empty PV domain; Arm has only HVM+HAP guests
        assert info.paused and info.hvm == info.hap == (xen.arch == "aarch64")
        assert str(domid) in {r["id"] for r in xl_list()}
    finally:
        xen.destroy(domid)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            xen.domain_info(domid)
        except xenprivcmd.NoSuchDomain:
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"domain {domid} still exists 30 s after destroy")


def test_bad_arguments_issue_no_hypercall(xen, guest):
    before = xen.transport.calls
    for call in (
        lambda: xen.set_max_mem(guest, -1),
        lambda: xen.domain_info(0x7FF0),
        lambda: xen.pause(-1),
        lambda: xen.set_sched_params(guest, weight=0),
        lambda: xen.set_sched_params(guest, cap=70000),
    ):
        with pytest.raises(ValueError):
            call()
    assert xen.transport.calls == before


def test_non_root_is_told_to_run_as_root():
    code = (
        "import os, xenprivcmd\n"
        "os.setgid(65534); os.setuid(65534)\n"
        "try:\n    xenprivcmd.open()\n"
        "except xenprivcmd.PrivcmdPermissionError as e:\n    print('DENIED', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.startswith("DENIED permission denied opening /dev/xen/privcmd: run as root"), out.stderr
