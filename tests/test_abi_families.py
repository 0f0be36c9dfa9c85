"""The table families and the Linux uapi tables through the public API.

The numbers are checked against gcc's facts in ``tests/test_layout_facts.py``;
this file checks the plumbing: a family's names are reached through
``variant.structs``/``variant.constants`` like the core ones, from the right
table, and only the family asked for is loaded (never by a listing).
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys

import pytest

from xenprivcmd import abi, structs
from xenprivcmd.abi.show import show

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAMILY_MODULES = tuple("xenprivcmd.structs._gen_%s_%s" % (a, f) for a in structs.arches()
                       for f in structs.families() + ("linux_uapi",))


def _fresh(code: str) -> list:
    """The family/Linux table modules a fresh interpreter loaded running ``code``."""
    body = code + "\nimport sys, json\nprint(json.dumps(sorted(m for m in sys.modules if m in %r)))\n" % (
        FAMILY_MODULES,)
    out = subprocess.run([sys.executable, "-S", "-c", body], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=ROOT), cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_listing_loads_no_family_module():
    code = ("import io, xenprivcmd, xenprivcmd.shell.cli\n"
            "for uri in ('sim:///default', 'sim:///default?xen=4.4', 'sim:///default?arch=aarch64&xen=4.17'):\n"
            "    h = xenprivcmd.open(uri, detect='nocache')\n"
            "    out = io.StringIO()\n"
            "    assert xenprivcmd.shell.cli.run(['list'], stdout=out, stderr=out, handle=h) == 0, out.getvalue()\n"
            "    h.domains()\n")
    assert _fresh(code) == []


def test_a_family_name_loads_its_module_only():
    base = "from xenprivcmd import abi\nv = abi.variant('4.17.0')\n"
    assert _fresh(base + "v.constants['XENMEM_populate_physmap']") == ["xenprivcmd.structs._gen_x86_64_memory"]
    assert _fresh(base + "v.structs['evtchn_status']") == ["xenprivcmd.structs._gen_x86_64_evtchn"]
    assert _fresh(base + "'XS_READ' in v.constants") == ["xenprivcmd.structs._gen_x86_64_rings"]
    # a core name, a miss outside every family's names, the vocabulary of commands: none
    assert _fresh(base + "v.constants['XEN_DOMCTL_getdomaininfo']\nassert 'DOMFLAGS_CPUMASK' not in v.constants\n"
                  "assert 'xen_no_such_struct' not in v.structs\n"
                  "from xenprivcmd.abi import hypercalls as hc\nhc.command_names(v, 'domctl')") == []


@pytest.mark.parametrize("arch", structs.arches())
def test_family_names_come_from_their_family_table(arch: str) -> None:
    v = abi.variant("4.17.0", arch=arch)
    for name, fam in (("xen_memory_reservation", "memory"), ("evtchn_alloc_unbound", "evtchn"),
                      ("grant_entry_v1", "gnttab"), ("xen_hvm_param", "hvm"), ("sched_shutdown", "sched"),
                      ("xencons_interface", "rings"), ("XENSTORE_RING_IDX", "rings"), ("shared_info_t", "build")):
        tid, spec = v.structs.where(name)
        assert tid == structs.table_id(arch, fam), (name, tid)
        cls = v.structs[name]
        assert ctypes.sizeof(cls) == structs.spec_sizeof(tid, spec) > 0
        if spec.startswith("#"):
            assert cls._xen_arch_ == arch and cls._xen_table_ == tid
    for name, fam in (("XENMEM_populate_physmap", "memory"), ("EVTCHNSTAT_interdomain", "evtchn"),
                      ("GTF_permit_access", "gnttab"), ("HVM_PARAM_STORE_EVTCHN", "hvm"),
                      ("SHUTDOWN_crash", "sched"), ("XEN_ELFNOTE_ENTRY", "build"), ("XS_WATCH_EVENT", "rings")):
        assert fam in structs.route(name)
        keys = structs.family_keys(arch, fam, "4.17.0")
        assert keys is not None
        assert v.constants[name] == structs.const_set(structs.table_id(arch, fam), keys[1])[name]
    # names the core tables have stay the core's (vcpu_guest_context is reached through xen_domctl)
    assert v.structs.where("vcpu_guest_context")[0] == arch
    assert v.structs.where("xen_domctl_vcpucontext")[0] == arch


def test_arch_specific_names():
    x86, arm = abi.variant("4.17.0"), abi.variant("4.17.0", arch="aarch64")
    assert "start_info" in x86.structs and "start_info" not in arm.structs
    assert "FLAT_KERNEL_CS" in x86.constants and "FLAT_KERNEL_CS" not in arm.constants
    assert "GUEST_MAGIC_BASE" in arm.constants and "GUEST_MAGIC_BASE" not in x86.constants
    assert "vcpu_guest_core_regs" in arm.structs and "cpu_user_regs" not in arm.structs
    regs = arm.structs["vcpu_guest_core_regs"]()
    regs.x0, regs.pc64 = 0x1234, 0x40080000  # members of anonymous unions
    assert (regs.x0, regs.r0_usr, regs.pc64) == (0x1234, 0x1234, 0x40080000)


def test_unknown_names_are_key_errors():
    v = abi.variant("4.17.0")
    with pytest.raises(KeyError):
        v.structs["xen_memory_no_such"]
    with pytest.raises(KeyError):
        v.constants["XENMEM_no_such"]
    assert v.constants.get("XENMEM_no_such") is None and "XENMEM_no_such" not in v.constants
    assert 3 not in v.constants and 3 not in v.structs  # type: ignore[comparison-overlap]
    # a release before the family's header: the name is absent, as it is from the release's headers
    rels = abi.releases()
    first = next(i for i, r in enumerate(rels) if "xen_hvm_param" in abi.variant(r).structs)
    assert rels[first] > "3.0" and "HVM_PARAM_STORE_PFN" in abi.variant(rels[first]).constants
    old = abi.variant(rels[first - 1])
    assert "xen_hvm_param" not in old.structs and "HVM_PARAM_STORE_PFN" not in old.constants


def test_iteration_lists_core_and_family_names():
    v = abi.variant("4.20.0")
    names = list(v.constants)
    assert names == sorted(names) and len(names) == len(v.constants) == len(set(names))
    assert {"XEN_DOMCTL_getdomaininfo", "XENMEM_populate_physmap", "XS_READ", "HVM_PARAM_CONSOLE_PFN"} <= set(names)
    snames = list(v.structs)
    assert {"xen_domctl", "xen_memory_reservation", "xenstore_domain_interface"} <= set(snames)
    assert len(snames) == len(v.structs)
    assert v.constants.with_prefix("XEN_DOMCTL_") == {n: v.constants[n] for n in names if n.startswith("XEN_DOMCTL_")}
    assert v.constants.with_prefix("XENMEM_") == {n: v.constants[n] for n in names if n.startswith("XENMEM_")}


def test_no_family_holds_a_core_prefix_and_every_name_is_routed():
    core = ("XEN_DOMCTL_", "XEN_SYSCTL_", "DOM0_", "__HYPERVISOR_", "XENVER_", "XEN_DOMINF_", "DOMID_")
    for arch in structs.arches():
        for fam in structs.families():
            tid = structs.table_id(arch, fam)
            for key, (_p, changed, _rm) in structs.set_rows(tid, "CONSTS").items():
                for name in changed:
                    assert not name.startswith(core), (tid, key, name)
                    assert fam in structs.route(name), (tid, name)
            for _key, (_p, changed, _rm) in structs.set_rows(tid, "LAYOUTS").items():
                for name in changed:
                    assert fam in structs.route(name), (tid, name)


def test_a_name_in_the_core_and_a_family_has_one_layout():
    """vcpu_guest_context, cpu_user_regs, trap_info ... are in both (through xen_domctl): the same."""
    both = 0
    for arch in structs.arches():
        for rel in abi.releases():
            v = abi.variant(rel, arch=arch) if structs.keys_for(arch, rel) else None
            if v is None:
                continue
            core = structs.layout_set(arch, v.layout_key.split("/", 1)[1])
            keys = structs.family_keys(arch, "build", rel)
            assert keys is not None
            tid = structs.table_id(arch, "build")
            fam = structs.layout_set(tid, keys[0])
            for name in sorted(set(core) & set(fam)):
                a, b = structs.ctype_for(arch, core[name]), structs.ctype_for(tid, fam[name])
                assert ctypes.sizeof(a) == ctypes.sizeof(b), (arch, rel, name)
                if hasattr(a, "_xen_fields_"):
                    assert [f[:2] for f in a._xen_fields_] == [f[:2] for f in b._xen_fields_], (arch, rel, name)
                both += 1
    assert both > 100


def test_abi_show_reads_family_structs():
    text = show("4.17", "evtchn_status", depth=2)
    assert "struct evtchn_status {" in text and "uint32_t status;" in text
    assert "size 24, align 4" in text
    assert "typedef uint64_t xen_pfn_t;" in show("4.17", "xen_pfn_t")


@pytest.mark.parametrize("arch", structs.arches())
def test_linux_uapi(arch: str) -> None:
    u = abi.linux_uapi(arch)
    assert u is abi.linux_uapi(arch) and u.arch == arch
    assert u.source == "Linux %s uapi headers (linux-libc-dev), %s" % (u.kernel, arch)
    assert ctypes.sizeof(u.structs["privcmd_mmapbatch_v2"]) == 32
    assert set(u.constants) >= {"IOCTL_PRIVCMD_HYPERCALL", "IOCTL_EVTCHN_BIND_INTERDOMAIN",
                                "IOCTL_GNTDEV_MAP_GRANT_REF"}
    assert "xen_domctl" not in u.structs and "XEN_DOMCTL_getdomaininfo" not in u.constants
    with pytest.raises(AttributeError):
        u.arch = "x"  # type: ignore[misc]
    with pytest.raises(abi.UnknownABIError):
        abi.linux_uapi("mips")
