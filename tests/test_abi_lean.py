"""The lean domctl/sysctl wrappers (lazy unions) against the full ctypes classes.

``variant.structs.lean("xen_domctl")`` builds a union member's class only when
a request touches it; these tests hold it to the full class of every layout
set of every arch: same size, same offsets, the same member classes, and the
same bytes when a request is written through either.
"""

from __future__ import annotations

import ctypes
import subprocess
import sys

import pytest

from xenprivcmd import abi, structs

WRAPPERS = ("xen_domctl", "xen_sysctl")


def _layout_keys():
    seen = {}
    for arch in structs.arches():
        for rel in abi.releases():
            keys = structs.keys_for(arch, rel)
            if keys is not None:
                seen.setdefault((arch, keys[0]), rel)
    return sorted(seen.items())


@pytest.mark.parametrize("arch_key,release", _layout_keys(), ids=lambda v: "/".join(v) if isinstance(v, tuple) else v)
def test_lean_wrappers_match_the_full_classes(arch_key, release):
    arch, _key = arch_key
    s = abi.variant(release, arch=arch).structs
    for name in WRAPPERS:
        if name not in s:
            continue
        full, lean = s[name], s.lean(name)
        assert ctypes.sizeof(lean) == ctypes.sizeof(full), name
        assert [f[0] for f in lean._fields_] == [f[0] for f in full._fields_], name
        for fname, _t in full._fields_:
            assert getattr(lean, fname).offset == getattr(full, fname).offset, (name, fname)
        full_u = dict(full._fields_)["u"]
        lean_u = dict(lean._fields_)["u"]
        assert issubclass(lean_u, structs.LazyUnion)
        assert ctypes.sizeof(lean_u) == ctypes.sizeof(full_u)
        members = {f[0]: f[1] for f in full_u._fields_ if not f[0].startswith("_pad")}
        assert set(lean_u._xen_members_) == set(members), name
        for m, t in members.items():
            assert lean_u.member_type(m) is t, (name, m)  # the very class the full union holds


def test_a_request_written_through_the_lean_class_has_the_same_bytes():
    v = abi.variant("4.17.0")
    full, lean = v.structs["xen_sysctl"], v.structs.lean("xen_sysctl")
    a, b = full(), lean()
    for req in (a, b):
        req.cmd = 6
        req.interface_version = 0x15
        g = req.u.getdomaininfolist
        g.first_domain = 7
        g.max_domains = 1024
        g.buffer = 0x1234_5678_9ABC
    assert bytes(a) == bytes(b) and any(bytes(b))
    assert b.u.getdomaininfolist.max_domains == 1024  # read back through a fresh view
    # a whole member assigned, as ctypes allows for the full class
    p = full_p = v.structs["xen_sysctl_physinfo"]()
    p.nr_cpus = 4
    a.u.physinfo = full_p
    b.u.physinfo = p
    assert bytes(a) == bytes(b)
    with pytest.raises(AttributeError):
        b.u.no_such_member  # noqa: B018
    with pytest.raises(TypeError):
        b.u.physinfo = v.structs["xen_sysctl_sched_id"]()


def test_a_listing_builds_few_classes():
    """domains() on the simulator builds a handful of classes, not every sub-op's."""
    code = ("import xenprivcmd\nfrom xenprivcmd import structs\n"
            "h = xenprivcmd.open('sim:///default')\nh.domains()\n"
            "print(len(structs._class_cache), len(structs.struct_rows('x86_64')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    built, total = map(int, out.stdout.split())
    assert built <= 12 < total, (built, total)


def test_the_generator_renders_exactly_the_committed_tables():
    """tools/genstructs/emit.py's render() of the committed tables gives the
    committed files byte for byte: the loader's row format is the generator's
    (``gen_structs.py --check`` compares the same render() of the headers)."""
    import os

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(0, os.path.join(root, "tools"))
    try:
        from genstructs.emit import render, tables_from_committed
    finally:
        sys.path.pop(0)
    files = render(tables_from_committed())
    gen_dir = os.path.join(root, "xenprivcmd", "structs")
    assert sorted(files) == sorted(f for f in os.listdir(gen_dir) if f.startswith("_gen_") and f.endswith(".py"))
    for name, text in files.items():
        with open(os.path.join(gen_dir, name), encoding="utf-8") as f:
            assert f.read() == text, name
    # the rows a process reads are those strings, parsed as the generator wrote them
    assert structs.parse_struct(structs._texts("x86_64")[0]) == structs.struct_rows("x86_64")[0]


def test_spec_parsing_refuses_what_the_generator_never_writes():
    for bad in ("", "u9", "#", "#x", "u8[", "u8[]", "u8[3", "#1[2]x", "u8[-1]"):
        with pytest.raises(ValueError):
            structs.parse_spec(bad)
    assert structs.parse_spec("#12[4][2]") == ("#12", [4, 2])
