"""The interim numbers of xenprivcmd/_interim.py against independent facts, until the generated
tables replace them: the sizes and ioctl numbers seen to work on real Xen (the probe of
/work/shared/notes/privcmd-surface.md), the kernel's own uapi headers compiled by gcc where
this machine has them."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess

import pytest

from xenprivcmd import _interim

U = _interim.linux_uapi("x86_64")

#: name -> (type, nr, size) as privcmd-surface.md writes them (_IOC(NONE, type, nr, size)).
SEEN_IOCTLS = {
    "IOCTL_PRIVCMD_MMAPBATCH_V2": ("P", 4, 32),
    "IOCTL_PRIVCMD_MMAP_RESOURCE": ("P", 7, 32),
    "IOCTL_PRIVCMD_RESTRICT": ("P", 6, 2),
    "IOCTL_EVTCHN_BIND_INTERDOMAIN": ("E", 1, 8),
    "IOCTL_EVTCHN_NOTIFY": ("E", 4, 4),
    "IOCTL_EVTCHN_UNBIND": ("E", 3, 4),
    "IOCTL_GNTDEV_MAP_GRANT_REF": ("G", 0, 24),
    "IOCTL_GNTDEV_UNMAP_GRANT_REF": ("G", 1, 16),
}
#: struct -> {member: offset} as the probe laid them out.
SEEN_LAYOUTS = {
    "privcmd_mmapbatch_v2": (32, {"num": 0, "dom": 4, "addr": 8, "arr": 16, "err": 24}),
    "privcmd_mmap_resource": (32, {"dom": 0, "type": 4, "id": 8, "idx": 12, "num": 16, "addr": 24}),
    "ioctl_evtchn_bind_interdomain": (8, {"remote_domain": 0, "remote_port": 4}),
    "ioctl_gntdev_map_grant_ref": (24, {"count": 0, "pad": 4, "index": 8, "refs": 16}),
    "ioctl_gntdev_unmap_grant_ref": (16, {"index": 0, "count": 8, "pad": 12}),
}


def test_the_ioctls_the_probe_used():
    for name, (kind, nr, size) in SEEN_IOCTLS.items():
        assert U.constants[name] == (size << 16) | (ord(kind) << 8) | nr, name
    assert U.constants["IOCTL_PRIVCMD_MMAPBATCH_V2"] == 0x205004  # as the generated tables' doc says


def test_the_layouts_the_probe_used():
    for name, (size, members) in SEEN_LAYOUTS.items():
        cls = U.structs[name]
        assert ctypes.sizeof(cls) == size, name
        assert {m: getattr(cls, m).offset for m in members} == members, name
    size, off = _interim.XEN_LAYOUTS["xencons_interface"]
    assert (off["in_cons"], off["in_prod"], off["out_cons"], off["out_prod"]) == (3072, 3076, 3080, 3084)
    size, off = _interim.XEN_LAYOUTS["xenstore_domain_interface"]
    assert (off["req_cons"], off["req_prod"], off["rsp_cons"], off["rsp_prod"]) == (2048, 2052, 2056, 2060)
    assert _interim.XEN_LAYOUTS["grant_entry_v1"] == (8, {"flags": 0, "domid": 2, "frame": 4})


def test_the_constants_the_probe_used():
    x = (4, 17)
    assert _interim.xen_constant(x, "XENMEM_resource_grant_table") == 1
    assert _interim.xen_constant(x, "EVTCHNSTAT_interdomain") == 2
    # grant entry flags read back as 25 = permit_access | reading | writing while dom0 mapped it
    assert sum(_interim.xen_constant(x, n) or 0 for n in ("GTF_permit_access", "GTF_reading", "GTF_writing")) == 25
    assert _interim.xen_constant((4, 10), "XENMEM_resource_grant_table") is None
    assert _interim.xen_constant((4, 14), "XENMEM_resource_vmtrace_buf") is None


HEADERS = "/usr/include/xen/privcmd.h"


@pytest.mark.skipif(not (os.path.exists(HEADERS) and shutil.which("gcc")),
                    reason="this machine has no Linux uapi headers (linux-libc-dev) or gcc")
def test_against_the_kernels_headers_compiled_by_gcc(tmp_path):
    names = sorted(U.constants)
    lines = [f'printf("{n} %lu\\n", (unsigned long){n});' for n in names]
    for s in sorted(U.structs):
        cls = U.structs[s]
        lines.append(f'printf("sizeof {s} %zu\\n", sizeof(struct {s}));')
        for f, *_ in cls._fields_:
            lines.append(f'printf("{s}.{f} %zu\\n", offsetof(struct {s}, {f}));')
    # the uapi privcmd.h includes the kernel's xen/interface/xen.h, which the uapi package lacks:
    # its types, as Xen's public xen.h defines them on x86_64
    (tmp_path / "xen" / "interface").mkdir(parents=True)
    (tmp_path / "xen" / "interface" / "xen.h").write_text("typedef unsigned short domid_t;\n"
                                                           "typedef unsigned long xen_pfn_t;\n"
                                                           "typedef unsigned int grant_ref_t;\n")
    src = tmp_path / "facts.c"
    src.write_text("#include <stdio.h>\n#include <stddef.h>\n#include <stdint.h>\n#include <sys/ioctl.h>\n"
                   "#include <xen/privcmd.h>\n#include <xen/evtchn.h>\n#include <xen/gntdev.h>\n"
                   "int main(void) {\n" + "\n".join(lines) + "\nreturn 0; }\n")
    exe = tmp_path / "facts"
    subprocess.run(["gcc", "-I", str(tmp_path), "-o", str(exe), str(src)], check=True, capture_output=True)
    facts = dict(line.rsplit(" ", 1) for line in subprocess.run([str(exe)], capture_output=True, text=True,
                                                                   check=True).stdout.splitlines())
    for n in names:
        assert int(facts[n]) == U.constants[n], n
    for s in U.structs:
        cls = U.structs[s]
        assert int(facts[f"sizeof {s}"]) == ctypes.sizeof(cls), s
        for f, *_ in cls._fields_:
            assert int(facts[f"{s}.{f}"]) == getattr(cls, f).offset, (s, f)
