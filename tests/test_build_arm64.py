"""Handle.create of arm64 guests on the simulator (issue 25).

A small arm64 Image (a 64-byte header as Linux's Documentation/arm64/booting.rst lays it
out, then a pattern) and a ramdisk are built into a simulated Xen on Arm.  What the guest
gets is read back through foreign mappings and compared with independent facts: the
device tree at x0 decompiled by dtc, the Image and ramdisk bytes where the tree and the
boot protocol say they are, the vcpu context at offsets of public/arch-arm.h (gcc facts,
``tests/test_build_boot.py``), the HVM params and grant entries at the frames xl gave its
guests (``/work/shared/notes/privcmd-surface.md``: console ring-ref 233472 = 0x39000).
Then a failure is injected at every hypercall the build issues: nothing is left.  Bad
configs are refused before any hypercall.  ``tests/realxen/test_create.py`` boots the
suite's real guest on real Xen on Arm.
"""

from __future__ import annotations

import ctypes
import errno
import re
import struct

import pytest

import xenprivcmd
from xenprivcmd.build.arm64 import paging_pool_bytes, ram_extents
from xenprivcmd.build.config import DomainConfig
from xenprivcmd.errors import ConfigError, HypercallError, ImageError, NotSupported

from .build_helpers import build_calls, fails_cleanly_at_each_step, refusing
from .test_build_boot import ARM_VGC
from .test_build_fdt import dts_of_dtb

TEXT_OFFSET = 0x80000
IMAGE_SIZE = 0x300000


@pytest.fixture(scope="module")
def files(tmp_path_factory):  # type: ignore[no-untyped-def]
    d = tmp_path_factory.mktemp("arm64")
    hdr = bytearray(64)
    hdr[0:4] = b"\x00\x00\x00\x14"          # code0: a branch (any code will do here)
    hdr[8:16] = TEXT_OFFSET.to_bytes(8, "little")
    hdr[16:24] = IMAGE_SIZE.to_bytes(8, "little")
    hdr[24:32] = (2 | 8).to_bytes(8, "little")  # little-endian, 4 KiB pages, placed anywhere
    hdr[0x38:0x3C] = b"ARMd"
    image = d / "Image"
    image.write_bytes(bytes(hdr) + bytes(range(256)) * 300)
    ramdisk = d / "initrd"
    ramdisk.write_bytes(b"070701" + bytes(range(255, -1, -1)) * 70)
    return str(image), str(ramdisk)


def _config(files, name="arm", memory=64, **more):  # type: ignore[no-untyped-def]
    kernel, ramdisk = files
    extra = "".join(f"{k} = {v!r}\n".replace("'", '"') for k, v in more.items())
    return DomainConfig.from_xl(f'name = "{name}"\nkernel = "{kernel}"\nramdisk = "{ramdisk}"\nmemory = {memory}\n'
                                f'vcpus = 2\nextra = "console=hvc0 quiet"\n' + extra, arch="aarch64")


def _sim(xen="4.17.0"):  # type: ignore[no-untyped-def]
    return xenprivcmd.open(f"sim:///?xen={xen}&arch=aarch64&domains=1&memory=4096")


def _read(xen, domid, addr, size):  # type: ignore[no-untyped-def]
    first, last = addr >> 12, (addr + size - 1) >> 12
    with xen.map_foreign(domid, range(first, last + 1)) as m:
        return bytes(m.view[addr & 0xFFF:(addr & 0xFFF) + size])


def _u64(buf, off):  # type: ignore[no-untyped-def]
    return int(struct.unpack_from("<Q", buf, off)[0])


def _cells(dts, node, prop):  # type: ignore[no-untyped-def]
    body = re.search(node + r" \{(.*?)\n\t\};", dts, re.S)
    assert body is not None, (node, dts)
    m = re.search(r"\t" + re.escape(prop) + r" = <([^>]*)>;", body.group(1))
    assert m is not None, (node, prop, body.group(1))
    return [int(x, 16) for x in m.group(1).split()]


@pytest.mark.parametrize("release", ["4.17.0", "4.20.0"])
def test_an_arm64_guest_is_built_and_runs(files, release):  # type: ignore[no-untyped-def]
    xen = _sim(release)
    cfg = _config(files, uuid="0b5e3c1a-7d2f-4e6b-9a81-c3d4e5f60718")
    info = xen.create(cfg)
    domid = info.domid
    # 64 MiB of RAM and the four magic pages
    assert (info.name, info.state, info.memory_kib, info.vcpus) == ("arm", "running", 64 * 1024 + 16, 2)
    d = xen.transport.host.domains[domid]
    g = xen.transport.host.memory.guest(d)
    ram = range(0x40000, 0x40000 + 64 * 256)
    assert all(g.mfn(pfn) is not None for pfn in ram) and g.mfn(ram[-1] + 1) is None
    assert [g.mfn(pfn) is not None for pfn in range(0x38FFF, 0x39005)] == [False] + [True] * 4 + [False]
    # libxl's P2M pool for 2 vcpus and 64 MiB, the guest 64-bit
    assert d.boot["paging_mempool"] == 4 * (256 * 2 + 64 + 128) * 1024 and d.boot["address_size"] == 64
    # the boot vcpu (offsets: public/arch-arm.h as gcc lays it out)
    ctx = d.boot["contexts"][0]
    pc, x0, cpsr = _u64(ctx, ARM_VGC["pc64"]), _u64(ctx, ARM_VGC["x0"]), _u64(ctx, ARM_VGC["cpsr"]) & 0xFFFFFFFF
    assert pc == 0x40000000 + TEXT_OFFSET and cpsr == 0x3C5 and [_u64(ctx, ARM_VGC[r]) for r in ("x1", "x2", "x3")] == [0] * 3
    # the Image where the boot protocol puts it
    with open(files[0], "rb") as f:
        image = f.read()
    assert _read(xen, domid, pc, len(image)) == image
    # the device tree at x0, as dtc reads it
    header = _read(xen, domid, x0, 8)
    assert header[:4] == b"\xd0\x0d\xfe\xed"
    dts = dts_of_dtb(_read(xen, domid, x0, struct.unpack(">I", header[4:8])[0]))
    assert 'bootargs = "console=hvc0 quiet";' in dts
    assert _cells(dts, "memory@40000000", "reg") == [0, 0x40000000, 0, 64 << 20]
    assert 'compatible = "arm,gic-v3";' in dts and "cpu@0 {" in dts and "cpu@1 {" in dts and "cpu@2 {" not in dts
    major, minor = release.split(".")[:2]
    assert re.search(rf'compatible = "xen,xen-{major}\.{minor}(", "|\\0)xen,xen";', dts), dts  # dtc's two spellings
    start = _cells(dts, "chosen", "linux,initrd-start")
    end = _cells(dts, "chosen", "linux,initrd-end")
    rd_start, rd_end = start[0] << 32 | start[1], end[0] << 32 | end[1]
    with open(files[1], "rb") as f:
        ramdisk = f.read()
    assert rd_start >= pc + IMAGE_SIZE  # past the kernel's bss (its image_size)
    assert _read(xen, domid, rd_start, len(ramdisk)) == ramdisk and rd_end >= rd_start + len(ramdisk)
    assert rd_start + len(ramdisk) <= x0 < 0x40000000 + (64 << 20)
    # every written page's cache flushed
    flushed = {pfn for first, n in d.boot["flushed"] for pfn in range(first, first + n)}
    for addr, size in ((pc, len(image)), (rd_start, len(ramdisk)), (x0, 4096)):
        assert set(range(addr >> 12, (addr + size + 4095) >> 12)) <= flushed
    # the magic pages' HVM params and the event channels
    xs = xen.xenstore()
    store_port = int(xs.read(f"/local/domain/{domid}/store/port"))
    console_port = int(xs.read(f"/local/domain/{domid}/console/port"))
    params = {p: xen.hvm_param(domid, p) for p in ("console_pfn", "store_pfn", "monitor_ring_pfn",
                                                  "console_evtchn", "store_evtchn")}
    assert params == {"console_pfn": 0x39000, "store_pfn": 0x39001, "monitor_ring_pfn": 0x39002,
                      "console_evtchn": console_port, "store_evtchn": store_port}
    assert xen.evtchn_status(domid, store_port).status == "unbound"
    # xenstore: the rings by guest frame, no /vm/UUID/image for an Arm guest; introduced
    assert xs.read(f"/local/domain/{domid}/store/ring-ref") == b"233473"
    assert xs.read(f"/local/domain/{domid}/console/ring-ref") == b"233472"
    assert "image" not in xs.directory(f"/vm/{cfg.uuid}")
    assert xs.is_domain_introduced(domid)
    # grant entries 0 and 1 for dom0's daemons: permit_access (1), domain 0, the ring's gfn
    with xen.map_resource(domid, "grant_table") as m:
        ents = [struct.unpack_from("<HHI", m.view, 8 * i) for i in range(3)]
    assert ents == [(1, 0, 0x39000), (1, 0, 0x39001), (0, 0, 0)]


def test_the_vcpu_context_matches_the_release_layout(files):  # type: ignore[no-untyped-def]
    xen = _sim()
    info = xen.create(_config(files), paused=True)
    assert info.state == "paused"
    ctx = xen.transport.host.domains[info.domid].boot["contexts"][0]
    assert len(ctx) == ctypes.sizeof(xen.abi.structs["vcpu_guest_context"]) == 352
    assert _u64(ctx, ARM_VGC["sctlr"]) == 0x00C50078 and _u64(ctx, ARM_VGC["flags"]) & 0xFFFFFFFF == 1


def test_ram_extents_as_libxenguest_makes_them():
    # 192 MiB at 1 GiB: 96 extents of 2 MiB (xl -vvv on bookworm-arm64: "populated 0x60/0x60 entries with shift 9")
    assert [(o, len(f)) for o, f in ram_extents(0x40000, 192 << 8)] == [(9, 96)]
    # 3 GiB at 1 GiB: three 1 GiB extents
    assert ram_extents(0x40000, 3 << 18) == [(18, [0x40000, 0x80000, 0xC0000])]
    # a misaligned start: 4 KiB pages up to the 2 MiB boundary, then 2 MiB ones, then the tail
    got = ram_extents(0x40001, 0x600)
    assert [(o, len(f)) for o, f in got] == [(0, 0x1FF), (9, 2), (0, 1)]
    covered = [pfn for order, firsts in got for first in firsts for pfn in range(first, first + (1 << order))]
    assert covered == list(range(0x40001, 0x40601))
    assert ram_extents(5, 0) == []
    with pytest.raises(ValueError):
        ram_extents(-1, 1)


def test_paging_pool_as_libxl_sizes_it():
    # libxl__get_required_paging_memory for a HAP guest: 4 KiB x (256 per vcpu + 1 per MiB + 128 on Arm);
    # tests/realxen/test_create.py compares the pool with the one libxl gave its own guest
    assert paging_pool_bytes(2, 192 << 10) == 3328 << 10
    assert paging_pool_bytes(1, 128 << 10) == 4 * (256 + 128 + 128) << 10


def test_a_failure_at_any_hypercall_leaves_nothing(files):  # type: ignore[no-untyped-def]
    calls = build_calls(_sim(), _config(files))
    order = [c for c in calls if c[0] == "domctl"]
    for a, b in (("createdomain", "set_paging_mempool_size"), ("set_paging_mempool_size", "max_mem"),
                 ("set_address_size", "cacheflush"), ("cacheflush", "setvcpucontext")):
        assert order.index(("domctl", a)) < order.index(("domctl", b)), (a, b)
    assert calls.index(("domctl", "set_address_size")) < calls.index(("memory_op", "populate_physmap"))
    assert ("mmuext_op", "pin_l4_table") not in calls and ("domctl", "hypercall_init") not in calls
    assert fails_cleanly_at_each_step(_sim, _config(files), calls) >= 10


def test_bad_arm64_configs_are_refused_before_any_hypercall(files, tmp_path):  # type: ignore[no-untyped-def]
    kernel, ramdisk = files
    assert _config(files, maxmem=128).maxmem == 128  # read as xl reads it (xl create -n takes it) ...
    xen = _sim()
    refused = refusing(xen)

    refused(_config(files, memory=1 << 20), ConfigError, "more than the host has free")
    # ... and refused when built
    refused(_config(files, maxmem=128), ConfigError, r"maxmem \(128 MiB\) must equal memory \(64 MiB\) on Arm")
    refused(_config(files, memory=2), ImageError, "image_size ends past the guest.s memory")
    refused(_config(files, name="Domain-0"), ConfigError, "already called 'Domain-0'")
    elf = tmp_path / "elf"
    elf.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(57))
    refused(_config((str(elf), ramdisk)), ImageError, "arm64 Image")
    refused(_config((str(tmp_path / "missing"), ramdisk)), ImageError, "cannot read the kernel")
    refused(_config((kernel, str(tmp_path / "missing"))), ImageError, "cannot read the ramdisk")
    with pytest.raises(NotSupported, match="lacks XEN_DOMCTL_set_paging_mempool_size"):
        _sim("4.16.0").create(_config(files))


def test_builder_ops_for_arm_check_their_arguments():  # type: ignore[no-untyped-def]
    xen = _sim()
    d = xen.create_domain(2)
    sim = xen.transport
    sim.log.clear()
    for bad in (0, 1 << 18 | 1):
        with pytest.raises(ValueError, match="frame count"):
            xen.cache_flush(d, 0x40000, bad)
    with pytest.raises(ValueError):
        xen.set_paging_mempool_size(d, -1)
    assert list(sim.log) == []
    with pytest.raises(HypercallError) as ei:
        xen.set_paging_mempool_size(d, 4097)  # no whole number of pages
    assert ei.value.errno == errno.EINVAL
    assert xen.gpaddr_bits(d) == 40
    xen.set_max_mem(d, 1024)
    xen.populate_physmap(d, [0x40000])
    with pytest.raises(HypercallError) as ei:
        xen.set_address_size(d, 64)  # the domain has memory
    assert ei.value.errno == errno.EBUSY
    x86 = xenprivcmd.open("sim:///?xen=4.17.0&domains=1")
    x = x86.create_domain()
    with pytest.raises(HypercallError):
        x86.cache_flush(x, 0, 1)


def test_xpsh_create_on_arm(files, tmp_path):  # type: ignore[no-untyped-def]
    from .test_shell import xpsh

    kernel, ramdisk = files
    cfg = tmp_path / "arm.cfg"
    cfg.write_text(f'name = "arm"\nkernel = "{kernel}"\nramdisk = "{ramdisk}"\nmemory = 64\nvcpus = 2\n')
    uri = "sim:///?xen=4.17.0&arch=aarch64&domains=1&memory=4096"
    rc, out, err = xpsh(f"create {cfg}; list", uri=uri)
    assert (rc, err) == (0, ""), err
    assert "Domain 'arm' created (id 1)\n" in out and re.search(r" 1 +arm +running", out), out
    rc, out, err = xpsh("-N", f"create {cfg}; list", uri=uri)
    assert rc == 0 and "dry run: 'create' would build domain 'arm'" in out, (out, err)
    assert "paging mempool 2816 KiB" in out and "64 MiB at 0x40000000" in out and "x0 0x" in out
    assert not re.search(r" 1 +arm ", out)
    cfg.write_text(f'name = "arm"\nkernel = "{kernel}"\nmemory = 64\nmaxmem = 96\n')
    rc, out, err = xpsh(f"create {cfg}", uri=uri)
    assert rc == 1 and err.startswith("error: ") and err.count("\n") == 1 and "maxmem" in err, err
