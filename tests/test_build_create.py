"""Handle.create and the builder's hypercalls on the simulator (issue 25).

A small PV kernel made with GNU as and ld (``build_helpers.make_kernel``) and a ramdisk
are built into a simulated x86_64 Xen: the guest's memory is read back through foreign
mappings (start_info's magic and fields against the layout, the page tables' L4 pinned,
the boot vcpu's cr3), its xenstore nodes against the skeleton, grant entries 0 and 1
against their frames.  Then a failure is injected at every hypercall the build issues,
in turn: each time the error is the one injected and nothing is left (no domain, no
xenstore node, nothing introduced).  Bad configs are refused before any hypercall.
``tests/realxen/test_create.py`` boots the suite's real guest on real Xen.
"""

from __future__ import annotations

import ctypes
import errno
import struct

import pytest

import xenprivcmd
from xenprivcmd.build.config import DomainConfig
from xenprivcmd.build.create import plan
from xenprivcmd.build.skeleton import domain_skeleton
from xenprivcmd.errors import ConfigError, HypercallError, ImageError

from .build_helpers import build_calls, fails_cleanly_at_each_step, make_kernel, refusing

HYPERCALL_PAGE = 0xFFFFFFFF81001000
NOTES = [(6, "linux"), (5, "xen-3.0"), (3, 0xFFFFFFFF80000000), (1, 0xFFFFFFFF81000000), (2, HYPERCALL_PAGE),
         (8, "generic")]


@pytest.fixture(scope="module")
def files(tmp_path_factory):  # type: ignore[no-untyped-def]
    d = tmp_path_factory.mktemp("create")
    kernel = make_kernel(d, NOTES, text_pages=4)
    ramdisk = d / "initrd"
    ramdisk.write_bytes(b"070701" + bytes(range(256)) * 40)
    return kernel, str(ramdisk)


def _config(files, name="small", memory=20, **more):  # type: ignore[no-untyped-def]
    kernel, ramdisk = files
    extra = "".join(f"{k} = {v!r}\n".replace("'", '"') for k, v in more.items())
    return DomainConfig.from_xl(f'name = "{name}"\nkernel = "{kernel}"\nramdisk = "{ramdisk}"\nmemory = {memory}\n'
                                f'vcpus = 2\nextra = "console=hvc0"\n' + extra)


def _sim(**q):  # type: ignore[no-untyped-def]
    query = "&".join(f"{k}={v}" for k, v in {"xen": "4.17.0", "domains": 1, **q}.items())
    return xenprivcmd.open(f"sim:///?{query}")



def test_a_small_guest_is_built_and_runs(files):  # type: ignore[no-untyped-def]
    xen = _sim()
    cfg = _config(files, uuid="5a3c1f2e-8b9d-4e6f-a1b2-c3d4e5f60718")
    p = plan(xen, cfg)
    info = xen.create(cfg)
    domid = info.domid
    assert (info.name, info.state, info.memory_kib) == ("small", "running", 20 * 1024)
    sim = xen.transport
    d = sim.host.domains[domid]
    lay = p.layout
    # the hypercall page: a stub per hypercall at 32-byte steps, mov $nr,%eax (b8) then syscall (0f 05)
    g = sim.host.memory.guest(d)
    mfns = [g.mfn(pfn) for pfn in range(lay.total_pages)]
    hpage = mfns[(HYPERCALL_PAGE - lay.virt_base) >> 12]
    assert d.boot["hypercall_page"] == hpage
    with xen.map_foreign(domid, [hpage]) as m:
        for nr in (0, 12, 36):
            stub = bytes(m.view[nr * 32:nr * 32 + 32])
            assert stub[3:10] == b"\xb8" + struct.pack("<I", nr) + b"\x0f\x05"
    # the L4 pinned, the boot vcpu's cr3 it, rip the entry, rsi start_info
    l4 = mfns[lay.pgtables.pfn]
    assert d.boot["pinned"] == {l4: 4} and d.boot["address_size"] == 64
    ctx = xen.abi.structs["vcpu_guest_context"].from_buffer_copy(d.boot["contexts"][0])
    assert ctx.ctrlreg[3] >> 12 == l4 and ctx.user_regs.rip == lay.virt_entry == 0xFFFFFFFF81000000
    assert ctx.user_regs.rsi == lay.virt_base + lay.start_info_pfn * 4096
    # start_info, read back from the guest's page
    with xen.map_foreign(domid, [mfns[lay.start_info_pfn]]) as m:
        si = xen.abi.structs["start_info"].from_buffer_copy(bytes(m.view[:ctypes.sizeof(xen.abi.structs["start_info"])]))
        assert si.magic == b"xen-3.0-x86_64" and si.nr_pages == lay.total_pages == 20 * 256
        assert si.store_mfn == mfns[lay.xenstore_pfn] and si.console.domU.mfn == mfns[lay.console_pfn]
        assert si.shared_info == xen.domain_info(domid).shared_info_frame << 12
        assert bytes(m.view[si.__class__.cmd_line.offset:][:13]) == b"console=hvc0\0"
    # the shared info page: every legacy vcpu's upcalls masked
    with xen.map_foreign(domid, [xen.domain_info(domid).shared_info_frame]) as m:
        shinfo = xen.abi.structs["shared_info"].from_buffer_copy(bytes(m.view[:ctypes.sizeof(xen.abi.structs["shared_info"])]))
        assert [v.evtchn_upcall_mask for v in shinfo.vcpu_info] == [1] * 32
    # the grant entries for dom0's daemons
    with xen.map_resource(domid, "grant_table") as m:
        e = xen.abi.structs["grant_entry_v1"]
        size = ctypes.sizeof(e)
        ents = [e.from_buffer_copy(bytes(m.view[i * size:(i + 1) * size])) for i in range(3)]
        assert [(x.flags, x.domid, x.frame) for x in ents] == [
            (1, 0, mfns[lay.console_pfn]), (1, 0, mfns[lay.xenstore_pfn]), (0, 0, 0)]
    # xenstore: the skeleton's nodes with their values and permissions; introduced
    xs = xen.xenstore()
    uuid = str(cfg.uuid)
    store_port = int(xs.read(f"/local/domain/{domid}/store/port"))
    console_port = int(xs.read(f"/local/domain/{domid}/console/port"))
    start = float(xs.read(f"/vm/{uuid}/start_time"))
    want = domain_skeleton(cfg, domid, uuid=uuid, arch="x86_64", store_mfn=mfns[lay.xenstore_pfn],
                           store_port=store_port, console_mfn=mfns[lay.console_pfn], console_port=console_port,
                           start_time=start)
    for node in want:
        assert xs.read(node.path).decode() == node.value, node.path
        assert [str(x) for x in xs.get_perms(node.path)] == list(node.perms), node.path
    assert xs.is_domain_introduced(domid)
    assert xen.evtchn_status(domid, store_port).status == "unbound"
    assert {store_port, console_port} == {si.store_evtchn, si.console.domU.evtchn}


def test_paused_stays_paused(files):  # type: ignore[no-untyped-def]
    xen = _sim()
    info = xen.create(_config(files), paused=True)
    assert info.state == "paused"
    xen.unpause(info.domid)
    assert xen.domain_info(info.domid).state == "running"


def test_a_failure_at_any_hypercall_leaves_nothing(files):  # type: ignore[no-untyped-def]
    calls = build_calls(_sim(), _config(files))
    assert ("domctl", "createdomain") in calls and ("mmuext_op", "pin_l4_table") in calls
    assert calls.index(("domctl", "set_address_size")) < calls.index(("memory_op", "populate_physmap"))
    assert calls.index(("mmuext_op", "pin_l4_table")) < calls.index(("domctl", "setvcpucontext"))
    assert fails_cleanly_at_each_step(_sim, _config(files), calls) >= 10


def test_bad_configs_are_refused_before_any_hypercall(files, tmp_path):  # type: ignore[no-untyped-def]
    xen = _sim()
    refused = refusing(xen)

    refused(_config(files, memory=1 << 20), ConfigError, "more than the host has free")
    refused(_config(files, memory=1), ImageError, "not enough memory")
    refused(_config(files, name="Domain-0"), ConfigError, "already called 'Domain-0'")
    notkernel = tmp_path / "nk"
    notkernel.write_bytes(b"\x7fELF" + bytes(60))
    refused(_config((str(notkernel), files[1])), ImageError, "nk")
    refused(_config((str(tmp_path / "missing"), files[1])), ImageError, "cannot read the kernel")
    refused(_config((files[0], str(tmp_path / "missing"))), ImageError, "cannot read the ramdisk")
    refused(_config(files, extra="x" * 2000), ConfigError, "command line")
    arm = _sim(arch="aarch64")
    with pytest.raises(ImageError, match="an arm64 guest needs an arm64 Image, not an x86_64 kernel"):
        arm.create(_config(files))
    assert xenprivcmd.open("sim:///?xen=4.17.0&domains=1", read_only=True) is not None


def test_builder_ops_check_their_arguments():  # type: ignore[no-untyped-def]
    xen = _sim()
    d = xen.create_domain()
    sim = xen.transport
    sim.log.clear()
    with pytest.raises(ValueError, match="32 or 64"):
        xen.set_address_size(d, 48)
    with pytest.raises(ValueError, match="vcpu_guest_context of Xen 4.17.0 is"):
        xen.set_vcpu_context(d, 0, b"short")
    with pytest.raises(TypeError):
        xen.set_vcpu_context(d, 0, "text")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="level"):
        xen.pin_table(d, 5, level=5)
    with pytest.raises(ValueError):
        xen.hypercall_init(d, -1)
    assert list(sim.log) == []
    # what Xen refuses
    xen.set_max_mem(d, 1024)
    frames = xen.populate_physmap(d, range(4))
    with pytest.raises(HypercallError) as ei:
        xen.set_address_size(d, 32)  # the domain has memory
    assert ei.value.errno == errno.EACCES
    xen.pin_table(d, frames[0])
    with pytest.raises(HypercallError) as ei:
        xen.pin_table(d, frames[0])  # already pinned
    assert ei.value.errno == errno.EINVAL and ei.value.subop == "pin_l4_table"
    with pytest.raises(HypercallError) as ei:
        xen.hypercall_init(d, frames[0])  # a pinned page table is no writable page
    assert ei.value.errno == errno.EPERM
    with pytest.raises(HypercallError) as ei:
        xen.pin_table(d, 0x123)  # not the domain's
    assert ei.value.errno == errno.EINVAL
    ctx = xen.abi.structs["vcpu_guest_context"]()
    ctx.ctrlreg[3] = 0x123 << 12
    with pytest.raises(HypercallError) as ei:
        xen.set_vcpu_context(d, 0, bytes(ctx))
    assert ei.value.errno == errno.EINVAL
    with pytest.raises(HypercallError):
        xen.set_vcpu_context(d, 7, bytes(ctx))  # no such vcpu
    ro = xenprivcmd.open("sim:///?xen=4.17.0&domains=1", read_only=True)
    with pytest.raises(xenprivcmd.errors.ReadOnlyError):
        ro.pin_table(1, 5)


# -- xpsh create ------------------------------------------------------------------------------

SIM = "sim:///?xen=4.17.0&domains=1"


def _xpsh(*args):  # type: ignore[no-untyped-def]
    from .test_shell import xpsh

    return xpsh(*args, uri=SIM)


def test_xpsh_create_starts_the_guest(files, tmp_path):  # type: ignore[no-untyped-def]
    kernel, ramdisk = files
    cfg = tmp_path / "small.cfg"
    cfg.write_text(f'name = "small"\nkernel = "{kernel}"\nramdisk = "{ramdisk}"\nmemory = 20\nvcpus = 2\n')
    rc, out, err = _xpsh(f"create {cfg}; list")
    assert (rc, err) == (0, ""), err
    assert "Domain 'small' created (id 1)\n" in out and " 1    small      running" in out
    rc, out, err = _xpsh(f"create --paused {cfg}; list")
    assert rc == 0 and "created (id 1), paused" in out and " 1    small      paused" in out
    rc, out, err = _xpsh("--json", f"create {cfg}")
    assert rc == 0 and '"action": "create"' in out and '"state": "running"' in out
    rc, out, err = _xpsh("-N", f"create {cfg}; list")
    assert rc == 0 and "dry run: 'create' would build domain 'small'" in out and "populate_physmap 5120 pages" in out
    assert "small" not in out.split("dry run")[-1].split("\n", 12)[-1]  # list: nothing was built


@pytest.mark.parametrize("text,message", [
    ('name = "z"\nkernel = "{k}"\nmemory = 0\n', "memory: 0 is out of range"),
    ('name = "z"\nkernel = "{k}"\nmemory = 9000000\n', "more than the host has free"),
    ('name = "z"\nkernel = "{k}"\nbogus = 1\n', "bogus: key not supported"),
    ('name = "z\nkernel = "{k}"\n', "lexical error"),
    ('name = "z"\nkernel = "/nonexistent/vmlinuz"\n', "cannot read the kernel"),
    ('name = "z"\nkernel = "{cfg}"\n', "not a kernel"),
])
def test_xpsh_create_refuses_bad_configs_in_one_line(files, tmp_path, text, message):  # type: ignore[no-untyped-def]
    cfg = tmp_path / "bad.cfg"
    cfg.write_text(text.format(k=files[0], cfg=cfg))
    rc, out, err = _xpsh(f"create {cfg}; list")
    assert rc == 1 and err.count("\n") == 1 and err.startswith("error: ") and message in err, err
    assert " z " not in out and "Domain-0" in out


def test_xpsh_create_without_a_file(tmp_path):  # type: ignore[no-untyped-def]
    rc, out, err = _xpsh(f"create {tmp_path}/none.cfg")
    assert rc == 1 and err == f"error: create: cannot read {tmp_path}/none.cfg: No such file or directory\n"
