"""Every generated layout: ctypes sizeof/offsets equal the recorded gcc numbers."""

from __future__ import annotations

import ctypes
from typing import Any, Dict, List, Tuple

import pytest

from xenprivcmd import abi, structs

ARCHES = structs.arches()


def _rows(arch: str) -> List[Tuple[int, Any]]:
    return list(enumerate(structs.struct_rows(arch)))


@pytest.mark.parametrize("arch", ARCHES)
def test_every_ctypes_class_is_its_table_row(arch: str) -> None:
    """The classes built at run time have exactly the rows' sizes and offsets (the builder's
    check; the rows themselves are compared with gcc's numbers in tests/test_layout_facts.py)."""
    rows = structs.struct_rows(arch)
    assert rows, "no struct layouts for %s" % arch
    for sid, (cname, kind, size, align, fields) in enumerate(rows):
        cls = structs.struct_class(arch, sid)
        assert ctypes.sizeof(cls) == size, (sid, cname)
        assert cls._xen_align_ == align
        assert align >= 1 and size % align == 0, (cname, size, align)
        if kind == "u":
            assert issubclass(cls, ctypes.Union)
        else:
            assert issubclass(cls, ctypes.Structure)
        anon = 0
        for i, (fname, off, spec) in enumerate(fields):
            name = fname or "_anon%d" % i
            desc = getattr(cls, name)
            assert desc.offset == off, (cname, name, desc.offset, off)
            ft = structs.ctype_for(arch, spec)
            assert desc.size == ctypes.sizeof(ft), (cname, name)
            assert off + desc.size <= size, (cname, name)
            if not fname:
                anon += 1
        # explicit padding: consecutive struct fields are contiguous
        if kind == "s":
            pos = 0
            for fn, ft in cls._fields_:
                assert getattr(cls, fn).offset == pos, (cname, fn)
                pos += ctypes.sizeof(ft)
            assert pos == size


@pytest.mark.parametrize("arch", ARCHES)
def test_every_release_layout_set_resolves(arch: str) -> None:
    seen: Dict[str, int] = {}
    for rel in abi.releases():
        if structs.keys_for(arch, rel) is None:
            assert arch != "x86_64", rel  # x86_64 covers every release
            continue
        v = abi.variant(rel, arch=arch)
        # the core set and every family's set (releases sharing a core set may differ in a family)
        sets = (v.layout_key,) + tuple(structs.family_keys(arch, f, rel) or ("",) for f in structs.families())
        if repr(sets) in seen:
            continue
        m = v.structs
        seen[repr(sets)] = len(m)
        for name in m:
            t = m[name]
            # an empty struct (Arm's arch_shared_info) is 0 bytes, as gcc has it
            assert ctypes.sizeof(t) > 0 or name.endswith("_t") or t._xen_fields_ == (), (rel, name)
    assert len(seen) >= 10


def test_classes_shared_between_releases_with_same_layout() -> None:
    a = abi.variant("4.17.3").structs["xen_domctl_getdomaininfo"]
    b = abi.variant("4.17.4").structs["xen_domctl_getdomaininfo"]
    assert a is b


def test_typedef_aliases_and_char_arrays() -> None:
    s = abi.variant((4, 17)).structs
    assert s["xen_domctl_t"] is s["xen_domctl"]
    ev = s["xen_extraversion_t"]
    assert ctypes.sizeof(ev) == 16 and ev._type_ is ctypes.c_char
    assert ctypes.sizeof(s["xen_capabilities_info_t"]) == 1024
    assert ctypes.sizeof(s["xen_changeset_info_t"]) == 64
    ci = s["xen_compile_info"]
    assert ctypes.sizeof(ci) == 64 + 16 + 32 + 32


def test_guest_handles_are_uint64_with_xen_names() -> None:
    s = abi.variant((4, 22)).structs
    ro = s["xen_sysctl_readconsole"]
    fields = dict(ro._fields_)
    assert fields["buffer"] is ctypes.c_uint64
    gl = s["xen_sysctl_getdomaininfolist"]
    assert dict(gl._fields_)["buffer"] is ctypes.c_uint64
    assert dict(s["xenctl_bitmap"]._fields_)["bitmap"] is ctypes.c_uint64


def test_aarch64_starts_with_4_3() -> None:
    if "aarch64" not in structs.arches():
        pytest.skip("no aarch64 tables generated")
    assert structs.keys_for("aarch64", "4.2.5") is None
    v = abi.variant("4.3.0", arch="aarch64")
    assert v.domctl_interface_version == abi.variant("4.3.0").domctl_interface_version
    cfg = abi.variant((4, 22), arch="aarch64").structs["xen_arch_domainconfig"]
    assert "gic_version" in dict(cfg._fields_)
    with pytest.raises(abi.UnknownABIError):
        abi.variant("3.4.0", arch="aarch64")
