"""aarch64 C-layout conformance against Debian's arm64 libxen-dev, without arm64 hardware.

``tools/conformance/debian_libxen.py --arch aarch64`` downloads the arm64
``libxen-dev`` with a private apt state (``APT::Architecture=arm64``),
compiles a check program with ``aarch64-linux-gnu-gcc -c`` (installing
``gcc-aarch64-linux-gnu`` with apt-get when missing), reads sizeof/_Alignof,
offsetof+sizeof of every field and every constant back from the object's
ELF symbol table (nothing is run), compares them with
``abi.variant(release, arch="aarch64")`` and then runs
``gen_structs.py --check --headers <dir> --release <rel> --arch aarch64``.

Download or compile trouble is a FAILURE, never a skip.  Run:
``pytest -m conformance tests/test_conformance_arm64.py``.
"""

from __future__ import annotations

import ctypes
import os
import re
import subprocess
import sys
from typing import Dict

import pytest

from xenprivcmd import abi

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "tools", "conformance", "debian_libxen.py")

pytestmark = pytest.mark.conformance

# gcc's aarch64 numbers for the arch-specific items (x86_64 in the comments)
GCC_AARCH64: Dict[str, Dict[str, str]] = {
    "bullseye": {  # 4.14
        "sizeof(struct xen_arch_domainconfig)": "size 12 align 4",  # x86_64: size 8
        "xen_domctl_getdomaininfo_t.arch_config": "offset 96 size 12",
        "struct xen_domctl_createdomain.arch": "offset 44 size 12",
        "const XEN_LEGACY_MAX_VCPUS": "1",  # x86_64: 32
    },
    "bookworm": {  # 4.17
        "sizeof(struct xen_arch_domainconfig)": "size 12 align 4",
        "sizeof(xen_domctl_getdomaininfo_t)": "size 120 align 8",  # x86_64: 112
        "xen_domctl_getdomaininfo_t.arch_config": "offset 104 size 12",  # x86_64: size 8
        "sizeof(struct xen_domctl_createdomain)": "size 68 align 4",  # x86_64: 64
        "const XEN_LEGACY_MAX_VCPUS": "1",
    },
    "trixie": {  # 4.20
        "sizeof(struct xen_arch_domainconfig)": "size 12 align 4",
        "sizeof(xen_domctl_getdomaininfo_t)": "size 120 align 8",
        "xen_domctl_getdomaininfo_t.arch_config": "offset 104 size 12",
        "sizeof(struct xen_domctl_createdomain)": "size 72 align 4",  # x86_64: 68
        "const XEN_LEGACY_MAX_VCPUS": "1",
    },
}
GCC_AARCH64["sid"] = GCC_AARCH64["trixie"]


@pytest.mark.parametrize("suite", ["bullseye", "bookworm", "trixie", "sid"])
def test_arm64_libxen_dev_matches_aarch64_tables(suite: str) -> None:
    p = subprocess.run([sys.executable, SCRIPT, "--arch", "aarch64", "--suite", suite],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-8000:]
    assert "0 problem(s)" in out, out[-8000:]
    mo = re.search(r"^  gcc: (\d+) checks .*, 0 mismatches$", out, re.M)
    assert mo and int(mo.group(1)) > 1000, out[-8000:]
    # the gen_structs line: the tables match, or differ only in constants Debian carries ahead
    # of the release (tools/conformance/debian_libxen.py's DEBIAN_AHEAD, logged by name)
    assert re.search(r"^  gen_structs: .*(?:matches committed|as the development head: ).*", out, re.M), out[-8000:]
    assert "/aarch64 tables" in out, out[-8000:]
    got = dict(re.findall(r"^  gcc aarch64: (.*?) = (.*)$", out, re.M))
    for lab, want in GCC_AARCH64[suite].items():
        assert got.get(lab) == want, (lab, got.get(lab), want, out[-4000:])


# release -> ((x86_64, aarch64) sizeof of xen_arch_domainconfig,
#             xen_domctl_getdomaininfo, xen_domctl_createdomain)
SIZES = {
    "4.14.6": ((4, 12), (104, 112), (48, 56)),
    "4.17.7": ((8, 12), (112, 120), (64, 68)),
    "4.20.4": ((8, 12), (112, 120), (68, 72)),
}


@pytest.mark.parametrize("release", sorted(SIZES))
def test_aarch64_tables_differ_from_x86_64_where_they_should(release: str) -> None:
    """The package's aarch64 classes are not the x86_64 ones in disguise."""
    x, a = abi.variant(release), abi.variant(release, arch="aarch64")
    cfg_x = [f[0] for f in x.structs["xen_arch_domainconfig"]._xen_fields_]
    cfg_a = [f[0] for f in a.structs["xen_arch_domainconfig"]._xen_fields_]
    assert cfg_x[0] == "emulation_flags" and "gic_version" not in cfg_x
    assert cfg_a[0] == "gic_version" and {"tee_type", "nr_spis", "clock_frequency"} <= set(cfg_a)
    names = ("xen_arch_domainconfig", "xen_domctl_getdomaininfo", "xen_domctl_createdomain")
    got = tuple((ctypes.sizeof(x.structs[n]), ctypes.sizeof(a.structs[n])) for n in names)
    assert got == SIZES[release]
    gx, ga = x.structs["xen_domctl_getdomaininfo"], a.structs["xen_domctl_getdomaininfo"]
    # getdomaininfo's arch_config tail: same offset, the arch's own struct
    assert gx.arch_config.offset == ga.arch_config.offset
    assert (gx.arch_config.size, ga.arch_config.size) == SIZES[release][0]
    assert (x.constants["XEN_LEGACY_MAX_VCPUS"], a.constants["XEN_LEGACY_MAX_VCPUS"]) == (32, 1)
    assert "XEN_DOMCTL_CONFIG_GIC_V3" in a.constants and "XEN_DOMCTL_CONFIG_GIC_V3" not in x.constants
    assert "vcpu_guest_core_regs" in a.structs and "vcpu_guest_core_regs" not in x.structs
    assert "cpu_user_regs" in x.structs and "cpu_user_regs" not in a.structs
    # the hypercall wrappers keep their size on both
    for w in ("xen_domctl", "xen_sysctl"):
        assert ctypes.sizeof(x.structs[w]) == ctypes.sizeof(a.structs[w])
