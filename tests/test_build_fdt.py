"""Device trees and arm64 guests (issue 25): the DTB writer and reader and the tree an arm64
guest is given, against the Device Tree Compiler (Debian's device-tree-compiler: ``dtc``,
``fdtdump``); the arm64 memory layout against libxenguest's own figures.

- a blob of ours and the same tree written by hand as device tree source and compiled by
  dtc decompile (``dtc -I dtb -O dts``) to the same text;
- ``fdtdump`` reads our header as we wrote it;
- our reader reads what dtc compiles (memory reservations included), and skips the
  ``FDT_NOP`` tokens libxl's ``fdt_nop_node`` leaves for a node it drops (put in by hand
  here; dtc itself reads past them too);
- the guest tree, against a source written from libxl_arm.c and Linux's bindings for
  arm,gic, arm,armv8-timer, arm,psci and xen,xen (Documentation/devicetree/bindings).
  ``tests/realxen/test_build_layout.py`` compares it with the blob libxl itself makes in
  the arm64 suites.
"""

from __future__ import annotations

import re
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xenprivcmd.abi import variant
from xenprivcmd.build import arm, fdt
from xenprivcmd.build.kernel import arm64_kernel
from xenprivcmd.errors import DecodeError, ImageError

from .build_helpers import read, suite_files

ARM = variant("4.17.0", arch="aarch64")


def dts_of_dtb(blob: bytes) -> str:
    out = subprocess.run(["dtc", "-q", "-I", "dtb", "-O", "dts", "-"], input=blob, capture_output=True, check=True)
    return out.stdout.decode()


def dtb_of_dts(source: str) -> bytes:
    out = subprocess.run(["dtc", "-q", "-I", "dts", "-O", "dtb", "-"], input=source.encode(), capture_output=True,
                         check=True)
    return out.stdout


SAMPLE = """/dts-v1/;
/memreserve/ 0x10000000 0x4000;
/ {
    #address-cells = <2>;
    #size-cells = <2>;
    model = "sample";
    compatible = "acme,board", "acme,soc";
    flag;
    bytes = [01 02 03];
    chosen {
        bootargs = "console=hvc0 root=/dev/xvda1";
    };
    memory@80000000 {
        device_type = "memory";
        reg = <0x0 0x80000000 0x1 0x0>;
    };
    soc {
        serial@1000 {
            reg = <0x1000 0x100>;
        };
    };
};
"""


def sample_tree() -> fdt.Node:
    return fdt.Node("", [("#address-cells", fdt.u32(2)), ("#size-cells", fdt.u32(2)), ("model", fdt.string("sample")),
                         ("compatible", fdt.strings("acme,board", "acme,soc")), ("flag", b""), ("bytes", b"\1\2\3")],
                    [fdt.Node("chosen", [("bootargs", fdt.string("console=hvc0 root=/dev/xvda1"))]),
                     fdt.Node("memory@80000000", [("device_type", fdt.string("memory")),
                                                  ("reg", fdt.cells(2, 0x80000000) + fdt.cells(2, 1 << 32))]),
                     fdt.Node("soc", [], [fdt.Node("serial@1000", [("reg", fdt.u32(0x1000, 0x100))])])])


def test_a_blob_dtc_decompiles_to_the_source():
    ours = fdt.dtb(sample_tree(), reserve=[(0x10000000, 0x4000)])
    assert dts_of_dtb(ours) == dts_of_dtb(dtb_of_dts(SAMPLE))


def test_our_reader_reads_what_dtc_compiles():
    root, reserve = fdt.parse_dtb(dtb_of_dts(SAMPLE))
    assert root == sample_tree() and reserve == [(0x10000000, 0x4000)]
    assert root.find("/soc/serial@1000").prop("reg") == fdt.u32(0x1000, 0x100)
    assert root.find("/nothing") is None and root.prop("absent") is None


def test_fdtdump_reads_our_header():
    blob = fdt.dtb(sample_tree(), reserve=[(0x10000000, 0x4000)], boot_cpuid_phys=3)
    out = subprocess.run(["fdtdump", "-"], input=blob, capture_output=True, check=True).stdout.decode()
    head = dict(re.findall(r"^// (\w+):\s+(\S+)", out, re.M))
    magic, total, off_struct, off_strings, off_rsv, version, last, cpu, size_strings, size_struct = \
        fdt.HEADER.unpack_from(blob)
    assert int(head["magic"], 16) == fdt.FDT_MAGIC and int(head["totalsize"], 16) == len(blob) == total
    assert (int(head["off_dt_struct"], 16), int(head["off_dt_strings"], 16), int(head["off_mem_rsvmap"], 16)) == \
        (off_struct, off_strings, off_rsv)
    assert (int(head["version"]), int(head["last_comp_version"]), int(head["boot_cpuid_phys"], 16)) == (17, 16, 3)
    assert (int(head["size_dt_strings"], 16), int(head["size_dt_struct"], 16)) == (size_strings, size_struct)
    assert "/memreserve/ 0x10000000 0x4000;" in out and 'bootargs = "console=hvc0 root=/dev/xvda1";' in out


def test_nop_tokens_are_skipped():
    """libfdt's fdt_nop_node (libxl uses it for an unused /memory node) overwrites a node's
    tokens with FDT_NOP: put NOPs over the soc node by hand."""
    tree = sample_tree()
    blob = bytearray(fdt.dtb(tree))
    _, _, off_struct, _, _, _, _, _, _, size_struct = fdt.HEADER.unpack_from(blob)
    body = bytes(blob[off_struct:off_struct + size_struct])
    begin_soc = body.index(fdt.u32(fdt.FDT_BEGIN_NODE) + b"soc\0")
    end_root = len(body) - 8  # ... FDT_END_NODE (soc), FDT_END_NODE (root), FDT_END
    soc_len = end_root - begin_soc
    nopped = body[:begin_soc] + fdt.u32(fdt.FDT_NOP) * (soc_len // 4) + body[end_root:]
    blob[off_struct:off_struct + size_struct] = nopped
    root, _ = fdt.parse_dtb(bytes(blob))
    assert root == fdt.Node("", tree.props, tree.children[:2])
    assert "soc {" not in dts_of_dtb(bytes(blob)) and "serial@1000" not in dts_of_dtb(bytes(blob))


@pytest.mark.parametrize("mutate, message", [
    (lambda b: b"\0" * 4 + b[4:], "not a device tree blob"),
    (lambda b: b[:20], "shorter than its header|past its end|total size"),
    (lambda b: b[:8] + (len(b) + 400).to_bytes(4, "big") + b[12:], "block lies past|total size"),
    (lambda b: b.replace(fdt.u32(fdt.FDT_END), fdt.u32(7)), "token 0x7|unexpected token"),
])
def test_malformed_blobs_are_refused(mutate, message):
    blob = fdt.dtb(sample_tree())
    with pytest.raises(DecodeError, match=message):
        fdt.parse_dtb(mutate(blob))


def test_names_the_specification_refuses():
    with pytest.raises(ValueError, match="not a device tree node name"):
        fdt.Node("bad name")
    with pytest.raises(ValueError, match="not a property name"):
        fdt.Node("x", [("bad=prop", b"")])
    with pytest.raises(ValueError, match="given twice"):
        fdt.Node("x", [("a", b""), ("a", b"")])
    with pytest.raises(ValueError, match="same name"):
        fdt.Node("x", [], [fdt.Node("y"), fdt.Node("y")])
    with pytest.raises(ValueError, match="does not fit"):
        fdt.cells(1, 1 << 32)
    with pytest.raises(ValueError, match="root node has no name"):
        fdt.dtb(fdt.Node("x"))


_name = st.from_regex(r"[a-z][a-z0-9,._+-]{0,10}(@[0-9a-f]{1,8})?", fullmatch=True)
_prop = st.tuples(st.from_regex(r"[a-z#][a-z0-9,._+?#-]{0,12}", fullmatch=True), st.binary(max_size=24))


def _unique(items, key):  # type: ignore[no-untyped-def]
    seen, out = set(), []
    for i in items:
        if key(i) not in seen:
            seen.add(key(i))
            out.append(i)
    return out


trees = st.recursive(
    st.builds(lambda n, p: fdt.Node(n, _unique(p, lambda x: x[0])), _name, st.lists(_prop, max_size=4)),
    lambda kids: st.builds(lambda n, p, c: fdt.Node(n, _unique(p, lambda x: x[0]), _unique(c, lambda x: x.name)),
                           _name, st.lists(_prop, max_size=4), st.lists(kids, max_size=3)),
    max_leaves=12)


@settings(max_examples=60, deadline=None)
@given(st.lists(_prop, max_size=5), st.lists(trees, max_size=4), st.lists(st.tuples(st.integers(0, 2**40),
                                                                                     st.integers(1, 2**30)), max_size=3))
def test_trees_round_trip_through_dtc(props, kids, reserve):
    root = fdt.Node("", _unique(props, lambda x: x[0]), _unique(kids, lambda x: x.name))
    blob = fdt.dtb(root, reserve=reserve)
    assert fdt.parse_dtb(blob) == (root, reserve)
    # dtc recompiles our blob to one that reads back the same
    again = subprocess.run(["dtc", "-q", "-I", "dtb", "-O", "dtb", "-"], input=blob, capture_output=True,
                           check=True).stdout
    assert fdt.parse_dtb(again) == (root, reserve)


# -- the arm64 guest's tree ----------------------------------------------------------------------------

GUEST = """/dts-v1/;
/ {
    model = "XENVM-4.17";
    compatible = "xen,xenvm-4.17", "xen,xenvm";
    interrupt-parent = <65000>;
    #address-cells = <2>;
    #size-cells = <2>;
    chosen {
        bootargs = "console=hvc0 quiet";
        linux,initrd-start = <0x0 0x47f0d000>;
        linux,initrd-end = <0x0 0x47fff148>;
        rng-seed = [SEED];
    };
    cpus {
        #address-cells = <1>;
        #size-cells = <0>;
        cpu@0 { device_type = "cpu"; compatible = "arm,armv8"; enable-method = "psci"; reg = <0>; };
        cpu@1 { device_type = "cpu"; compatible = "arm,armv8"; enable-method = "psci"; reg = <1>; };
        cpu@2 { device_type = "cpu"; compatible = "arm,armv8"; enable-method = "psci"; reg = <2>; };
    };
    psci {
        compatible = "arm,psci-1.0", "arm,psci-0.2", "arm,psci";
        method = "hvc";
        cpu_off = <1>;
        cpu_on = <2>;
    };
    memory@40000000 {
        device_type = "memory";
        reg = <0x0 0x40000000 0x0 0x8000000>;
    };
    GIC
    timer {
        compatible = "arm,armv8-timer";
        /* secure phys 29, non-secure phys 30, virtual 27: PPIs 13, 14, 11, every cpu, level low */
        interrupts = <1 13 0xf08>, <1 14 0xf08>, <1 11 0xf08>;
        interrupt-parent = <65000>;
    };
    hypervisor {
        compatible = "xen,xen-4.17", "xen,xen";
        /* the grant table, then RAM0's unused rest from 0x48000000 and RAM1 up to 1 TiB */
        reg = <0x0 0x38000000 0x0 0x1000000>, <0x0 0x48000000 0x0 0xb8000000>, <0x2 0x0 0xfe 0x0>;
        interrupts = <1 15 0xf08>; /* the event channel PPI 31 */
        interrupt-parent = <65000>;
    };
};
"""

GICV2 = """interrupt-controller@3001000 {
        compatible = "arm,cortex-a15-gic", "arm,cortex-a9-gic";
        #interrupt-cells = <3>;
        #address-cells = <0>;
        interrupt-controller;
        reg = <0x0 0x3001000 0x0 0x1000>, <0x0 0x3002000 0x0 0x2000>;
        linux,phandle = <65000>;
        phandle = <65000>;
    };"""

GICV3 = """interrupt-controller@3001000 {
        compatible = "arm,gic-v3";
        #interrupt-cells = <3>;
        #address-cells = <0>;
        interrupt-controller;
        reg = <0x0 0x3001000 0x0 0x10000>, <0x0 0x3020000 0x0 0x1000000>;
        linux,phandle = <65000>;
        phandle = <65000>;
    };"""


@pytest.mark.parametrize("gic, source", [(2, GICV2), (3, GICV3)])
def test_the_guest_tree_as_its_source(gic, source):
    seed = bytes(range(128))
    tree = arm.guest_device_tree(ARM, xen_version=(4, 17), vcpus=3, banks=[(0x40000000, 128 << 20)], gic_version=gic,
                                 cmdline="console=hvc0 quiet", initrd=(0x47F0D000, 0x47FFF148), gpaddr_bits=40,
                                 rng_seed=seed)
    expected = GUEST.replace("GIC", source).replace("SEED", seed.hex())
    assert dts_of_dtb(fdt.dtb(tree)) == dts_of_dtb(dtb_of_dts(expected))


def test_guest_tree_options():
    base = dict(xen_version=(4, 20), vcpus=18, banks=[(0x40000000, 0xC0000000), (0x200000000, 1 << 30)],
                gic_version=3, gpaddr_bits=36)
    tree = arm.guest_device_tree(ARM, **base, clock_frequency=62500000)
    assert tree.find("/chosen").prop("bootargs") is None and tree.find("/chosen").prop("linux,initrd-start") is None
    assert len(tree.find("/chosen").prop("rng-seed")) == 128
    assert tree.find("/timer").prop("clock-frequency") == fdt.u32(62500000)
    # vcpu 17: Aff1 1, Aff0 1
    assert tree.find("/cpus/cpu@101").prop("reg") == fdt.u32(0x101)
    assert tree.find("/memory@200000000") is not None and tree.prop("model") == fdt.string("XENVM-4.20")
    # 36-bit guest addresses: RAM0 is full, RAM1 starts at 8 GiB, past 64 GiB no more: one region
    assert arm.extended_regions(ARM, base["banks"], 36) == [(0x240000000, (1 << 36) - 0x240000000)]
    for bad, message in ((dict(gic_version=4), "GIC version 4"), (dict(vcpus=0), "0 vcpus"),
                         (dict(banks=[]), "a RAM bank")):
        with pytest.raises(ValueError, match=message):
            arm.guest_device_tree(ARM, **{**base, **bad})


# -- the arm64 guest's memory ------------------------------------------------------------------------

def test_arm64_layout_as_libxenguest_placed_it():
    """xl -vvv create (Xen 4.17.7 arm64, bookworm): memory = 128, Debian's 6.1 Image, the
    987,464 byte initrd and libxl's 1,583 byte device tree:

    meminit: placing boot modules at 0x47f0d000
    meminit: ramdisk: 0x47f0d000 -> 0x47fff000
    meminit: devicetree: 0x47fff000 -> 0x48000000
    xc_dom_alloc_segment:   kernel       : 0x40000000 -> 0x41f6dfc0  (pfn 0x40000 + 0x1f6e pages)
    xc_dom_alloc_segment:   module0      : 0x47f0d000 -> 0x47ffe148  (pfn 0x47f0d + 0xf2 pages)
    xc_dom_alloc_segment:   devicetree   : 0x47fff000 -> 0x47fff62f  (pfn 0x47fff + 0x1 pages)
    Extended region 0: 0x48000000->0x100000000
    Extended region 1: 0x200000000->0x10000000000
    and /chosen/linux,initrd-end = 0x47fff000 in the device tree it dumped."""
    k = arm64_kernel(read(suite_files("bookworm-arm64")["vmlinuz"]), ARM)
    lay = arm.arm64_layout(k, 128 << 20, 987464, 1583, ARM)
    assert lay.modbase == 0x47F0D000 and lay.banks == ((0x40000000, 128 << 20),)
    assert [(s.name, s.vstart, s.vend, s.pfn, s.pages) for s in (lay.kernel, lay.ramdisk, lay.dtb)] == [
        ("kernel", 0x40000000, 0x41F6DFC0, 0x40000, 0x1F6E),
        ("module0", 0x47F0D000, 0x47FFE148, 0x47F0D, 0xF2),
        ("devicetree", 0x47FFF000, 0x47FFF62F, 0x47FFF, 1)]
    assert lay.initrd == (0x47F0D000, 0x47FFF000)
    assert [(a, a + s) for a, s in arm.extended_regions(ARM, lay.banks, 40)] == [
        (0x48000000, 0x100000000), (0x200000000, 0x10000000000)]
    # the magic pages from GUEST_MAGIC_BASE (0x39000000): console ring-ref 0x39000 is what
    # xenstore showed for an xl guest (the notes' privcmd-surface.md)
    assert (lay.console_pfn, lay.xenstore_pfn) == (0x39000, 0x39001)


def test_arm64_layout_limits():
    k = arm64_kernel(read(suite_files("bookworm-arm64")["vmlinuz"]), ARM)
    # more RAM than 128 MiB + the modules: they go at 128 MiB into RAM
    big = arm.arm64_layout(k, 2 << 30, 987464, 1583, ARM)
    assert big.modbase == 0x48000000 and big.banks == ((0x40000000, 2 << 30),)
    # past bank 0's 3 GiB, bank 1 at 8 GiB
    huge = arm.arm64_layout(k, 4 << 30, 0, 1583, ARM)
    assert huge.banks == ((0x40000000, 3 << 30), (0x200000000, 1 << 30)) and huge.ramdisk is None
    with pytest.raises(ImageError, match="no room for the device tree and initrd"):
        arm.arm64_layout(k, 34 << 20, 8 << 20, 1583, ARM)
    with pytest.raises(ImageError, match="kernel ends past"):
        arm.arm64_layout(k, 16 << 20, 0, 1583, ARM)
    with pytest.raises(ImageError, match="more than Arm's guest memory map"):
        arm.arm64_layout(k, 1 << 41, 0, 1583, ARM)
