"""gen_structs extraction on a tiny synthetic header tree (no Xen mirror needed).

Needs gcc and pyelftools (generation-time tools); skipped without them.
"""

from __future__ import annotations

import os
import shutil
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))

pytest.importorskip("elftools", reason="pyelftools is a generation-time dependency")
if shutil.which("gcc") is None:
    pytest.skip("gcc not available", allow_module_level=True)

from genstructs.dwarf import TARGETS, extract  # noqa: E402

XEN_H = """
#ifndef SYNTH_XEN_H
#define SYNTH_XEN_H
#define __XEN_LATEST_INTERFACE_VERSION__ 0x00040000
#define ___DEFINE_XEN_GUEST_HANDLE(name, type) typedef struct { type *p; } __guest_handle_ ## name
#define DEFINE_XEN_GUEST_HANDLE(name) ___DEFINE_XEN_GUEST_HANDLE(name, name)
#define XEN_GUEST_HANDLE(name) __guest_handle_ ## name
#define XEN_GUEST_HANDLE_64(name) XEN_GUEST_HANDLE(name)
typedef uint64_t uint64_aligned_t __attribute__((aligned(8)));
typedef uint16_t domid_t;
DEFINE_XEN_GUEST_HANDLE(uint8_t);
#define __HYPERVISOR_domctl 36
#define XEN_DOMINF_dying (1U << _XEN_DOMINF_dying)
#define _XEN_DOMINF_dying 0
#define XEN_INVALID_THING (~0U)
#define XEN_DOMCTL_NEG (-2)
#define XEN_DOMCTL_STRING "no"
#endif
"""

VERSION_H = """
#include "xen.h"
typedef char xen_extraversion_t[16];
struct xen_compile_info { char compiler[64]; char compile_by[16]; };
"""

DOMCTL_H = """
#include "xen.h"
#define XEN_DOMCTL_INTERFACE_VERSION 0x00000018
struct xen_domctl_getdomaininfo {
    domid_t domain;
    uint32_t flags;
    uint64_aligned_t tot_pages;
    uint8_t handle[16];
};
typedef struct xen_domctl_getdomaininfo xen_domctl_getdomaininfo_t;
DEFINE_XEN_GUEST_HANDLE(xen_domctl_getdomaininfo_t);
struct xen_bits { uint32_t a:1, b:3; uint16_t c; };
struct xen_domctl {
    uint32_t cmd;
    domid_t domain;
    union {
        struct xen_domctl_getdomaininfo getdomaininfo;
        struct { uint32_t x; uint64_t y; };
        XEN_GUEST_HANDLE_64(xen_domctl_getdomaininfo_t) list;
        struct xen_bits bits;
        uint8_t pad[128];
    } u;
};
typedef struct xen_domctl xen_domctl_t;
"""

SYSCTL_H = """
#include "xen.h"
#define XEN_SYSCTL_INTERFACE_VERSION 0x00000016
struct xen_sysctl_readconsole { uint8_t clear; uint32_t count; XEN_GUEST_HANDLE_64(uint8_t) buffer; };
"""


@pytest.fixture(scope="module")
def extracted(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    d = tmp_path_factory.mktemp("hdr")
    for name, text in (("xen.h", XEN_H), ("version.h", VERSION_H), ("domctl.h", DOMCTL_H),
                       ("sysctl.h", SYSCTL_H)):
        (d / name).write_text(text)
    return extract(str(d), TARGETS["x86_64"])


def test_structs_and_offsets(extracted) -> None:  # type: ignore[no-untyped-def]
    s = extracted.structs
    assert s["xen_domctl_getdomaininfo"] == (
        "s", 32, 8, (("domain", 0, "u16"), ("flags", 4, "u32"), ("tot_pages", 8, "u64"),
                     ("handle", 16, "u8[16]")))
    kind, size, align, fields = s["xen_domctl"]
    assert (kind, size, align) == ("s", 136, 8)
    assert fields[-1] == ("u", 8, "@xen_domctl__u")
    u = dict((f[0], f[1:]) for f in s["xen_domctl__u"][3])
    assert u["getdomaininfo"] == (0, "@xen_domctl_getdomaininfo")
    assert u["list"] == (0, "h")  # guest handle -> 8-byte integer, Xen's name kept
    assert u[""] == (0, "@xen_domctl__u__anon0")  # anonymous struct member
    assert u["pad"] == (0, "u8[128]")
    assert s["xen_bits"][3][0] == ("_bitfield0", 0, "u8[1]")
    assert s["xen_sysctl_readconsole"][3][2] == ("buffer", 8, "h")
    assert s["xen_compile_info"][3][0] == ("compiler", 0, "c[64]")


def test_typedefs_and_constants(extracted) -> None:  # type: ignore[no-untyped-def]
    assert extracted.typedefs["xen_extraversion_t"] == "c[16]"
    assert extracted.typedefs["xen_domctl_t"] == "@xen_domctl"
    c = extracted.constants
    assert c["__HYPERVISOR_domctl"] == 36
    assert c["XEN_DOMINF_dying"] == 1 and c["_XEN_DOMINF_dying"] == 0
    assert c["XEN_INVALID_THING"] == 0xFFFFFFFF
    assert c["XEN_DOMCTL_NEG"] == -2
    assert "XEN_DOMCTL_STRING" not in c
    assert c["XEN_DOMCTL_INTERFACE_VERSION"] == 0x18
