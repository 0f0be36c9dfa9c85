"""``python3 -m xenprivcmd.abi``: the tables as C a reader can check against the headers."""

from __future__ import annotations

import ctypes
import re
import subprocess
import sys

import pytest

from xenprivcmd import abi
from xenprivcmd.abi.show import main, show

FIELD = re.compile(r"^\s+(?P<decl>.+?) (?P<name>\w+)(?P<dims>(\[\d+\])*);\s+/\*\s+(?P<off>\d+)\s+(?P<size>\d+) \*/$")


def fields_of(text: str):
    return [(m["name"], int(m["off"]), int(m["size"])) for m in map(FIELD.match, text.splitlines()) if m]


@pytest.mark.parametrize("release,arch,name", [
    ("4.17.0", "x86_64", "xen_domctl_getdomaininfo"), ("4.6.0", "x86_64", "xen_domctl_getdomaininfo"),
    ("4.20", "aarch64", "xen_sysctl_physinfo"), ("4.14", "x86_64", "xen_domctl_getvcpuinfo"),
    ("3.0.2", "x86_64", "dom0_getdomaininfo"),
])
def test_every_field_line_is_the_ctypes_layout(release, arch, name):
    text = show(release, name, arch)
    cls = abi.variant(release, arch=arch).structs[name]
    got = fields_of(text)
    assert [f[0] for f in got] == [f[0] for f in cls._fields_ if not f[0].startswith("_pad_")]  # ctypes fills holes
    for fname, off, size in got:
        assert off == getattr(cls, fname).offset and size == getattr(cls, fname).size, fname
    assert text.rstrip().endswith(f"/* size {ctypes.sizeof(cls)}, align {cls._xen_align_} */")


def test_getdomaininfo_of_4_17_reads_as_the_header_declares_it():
    # Xen 4.17's public/domctl.h: 112 bytes, cpu_time after the five page counts and the
    # shared_info frame, the uuid handle as 16 bytes, arch_config last (x86: emulation flags)
    text = show("4.17", "xen_domctl_getdomaininfo")
    assert text.startswith("/* Xen 4.17.")
    got = {n: (o, s) for n, o, s in fields_of(text)}
    assert got["domain"] == (0, 2) and got["flags"] == (4, 4) and got["tot_pages"] == (8, 8)
    assert got["cpu_time"] == (56, 8) and got["handle"] == (76, 16) and got["arch_config"] == (104, 8)
    assert "uint8_t handle[16];" in text and "struct xen_arch_domainconfig arch_config;" in text


def test_depth_expands_nested_unions_and_holes_are_shown():
    flat = show("4.17", "xen_domctl")
    deep = show("4.17", "xen_domctl", depth=2)
    assert "union xen_domctl__u u;" in flat and "union xen_domctl__u {" not in flat
    assert "union xen_domctl__u {" in deep and "} u;" in deep
    assert "struct xen_domctl_getdomaininfo getdomaininfo;" in deep
    # xen_domctl_getvcpuinfo: vcpu (u32), online/blocked/running (u8), a hole of 1 before
    # the u64 cpu_time, and after the u32 cpu 4 bytes of tail padding
    lines = show("4.17", "xen_domctl_getvcpuinfo").splitlines()
    assert lines[lines.index("    /* XXX 1 byte hole */") + 1].startswith("    uint64_t cpu_time;")
    assert lines[-2] == "    /* XXX 4 byte padding at the end */"
    assert "hole" not in show("4.17", "xen_domctl_vcpuaffinity")


def _cli(*args: str) -> "subprocess.CompletedProcess[str]":
    return subprocess.run([sys.executable, "-m", "xenprivcmd.abi", *args], capture_output=True, text=True)


def test_cli_show_structs_and_releases():
    p = _cli("show", "4.17", "xen_domctl_getdomaininfo")
    assert p.returncode == 0 and p.stdout == show("4.17", "xen_domctl_getdomaininfo"), p.stderr
    assert p.stderr == ""  # no runpy warning: the package does not import xenprivcmd.abi itself
    p = _cli("--arch", "aarch64", "structs", "4.20", "xen_sysctl_ph*")
    assert p.returncode == 0 and p.stdout == "xen_sysctl_physinfo\n", p.stderr
    p = _cli("releases")
    rows = p.stdout.splitlines()
    assert p.returncode == 0 and len(rows) == len(abi.releases())
    assert rows[0].startswith("3.0.0 ") and "dom0_op interface" in rows[0]
    assert any(r.startswith("4.17.0 ") and "domctl interface 0x15, sysctl interface 0x15" in r for r in rows)


@pytest.mark.parametrize("args,needle", [
    (["show", "4.17", "xen_domctl_getdomaininf"], "did you mean xen_domctl_getdomaininfo"),
    (["show", "9.9", "xen_domctl"], "unknown Xen series 9.9"),
    (["show", "four", "xen_domctl"], "cannot parse Xen version 'four'"),
    (["--arch", "mips", "releases"], "no ABI tables for arch 'mips'"),
    (["show", "4.17", "xen_domctl", "--depth", "0"], "--depth must be 1 or more"),
    (["structs", "4.17", "nothing_like_this*"], "no struct matching"),
])
def test_cli_errors_are_one_line(args, needle, capsys):
    assert main(args) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("error: ") and needle in err, err
