"""The Linux side: the kernel's uapi headers of /dev/xen/privcmd, evtchn and gntdev.

Not Xen's headers and not per Xen release: one table per arch, read from
Debian bookworm's ``linux-libc-dev`` of that arch (the kernel of the
bookworm dom0s this project boots), downloaded with a private apt state
(``tools/conformance/debian_libxen.py``), or from an unpacked package tree
given with ``--linux-root ARCH=DIR``.

``xen/privcmd.h`` includes ``<xen/interface/xen.h>``, a kernel-internal
header that is not exported, for ``domid_t`` and ``xen_pfn_t``; and
``xen/gntdev.h`` uses ``grant_ref_t`` without defining it (libxc and the
kernel supply both); none includes ``<linux/ioctl.h>`` for ``_IOC``.  The translation unit therefore includes Xen's own
public ``xen.h`` and ``grant_table.h`` first (the development head of the
xen.git mirror: these typedefs never changed), and an empty stand-in for
``<xen/interface/xen.h>``.  The compiler sees only the package's headers and
its own (``-nostdinc``), never the host's ``/usr/include``.

Generator and facts tool compile the same unit with the same flags.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from typing import List

from .dwarf import TARGETS, Extracted
from .families import Family

SUITE = "bookworm"

LINUX = Family(
    "linux_uapi",
    "ioctl arguments and request numbers of /dev/xen/privcmd, /dev/xen/evtchn and /dev/xen/gntdev "
    "(the kernel's uapi xen/privcmd.h, xen/evtchn.h, xen/gntdev.h)",
    ("xen/privcmd.h", "xen/evtchn.h", "xen/gntdev.h"),
    root_prefixes=("privcmd_", "ioctl_evtchn_", "ioctl_gntdev_", "gntdev_"),
    const_prefixes=("IOCTL_PRIVCMD_", "IOCTL_EVTCHN_", "IOCTL_GNTDEV_", "PRIVCMD_", "UNMAP_NOTIFY_",
                    "GNTDEV_"),
)

# our arch -> Debian's multiarch triplet (where the package puts <asm/...>)
TRIPLET = {"x86_64": "x86_64-linux-gnu", "aarch64": "aarch64-linux-gnu"}

SHIM = "/* empty: Xen's public xen.h, included first, defines domid_t and xen_pfn_t */\n"


class LinuxHeaderError(RuntimeError):
    pass


@dataclass(frozen=True)
class LinuxTree:
    """An unpacked linux-libc-dev of one arch."""

    arch: str
    root: str  # the package root (holds usr/include)

    @property
    def include(self) -> str:
        return os.path.join(self.root, "usr", "include")

    def source(self) -> str:
        """What the table says it comes from (no path, no package revision: stable across updates)."""
        return "Linux %s uapi headers (linux-libc-dev), %s" % (self.kernel(), self.arch)

    def kernel(self) -> str:
        """The kernel series of the headers (``"6.1"``), from linux/version.h."""
        with open(os.path.join(self.include, "linux", "version.h")) as fh:
            text = fh.read()
        mo = re.search(r"#define LINUX_VERSION_CODE (\d+)", text)
        if not mo:
            raise LinuxHeaderError("%s: no LINUX_VERSION_CODE" % self.include)
        code = int(mo.group(1))
        return "%d.%d" % (code >> 16, (code >> 8) & 0xFF)

    def flags(self, workdir: str) -> List[str]:
        """Compiler flags: the package's headers, the compiler's own, the stand-in (written to ``workdir``)."""
        shim = os.path.join(workdir, "linux-shim")
        os.makedirs(os.path.join(shim, "xen", "interface"), exist_ok=True)
        with open(os.path.join(shim, "xen", "interface", "xen.h"), "w") as fh:
            fh.write(SHIM)
        cc = TARGETS[self.arch].cc
        gccinc = subprocess.run([cc, "-print-file-name=include"], capture_output=True, text=True,
                                check=True).stdout.strip()
        multi = os.path.join(self.include, TRIPLET[self.arch])
        for d in (os.path.join(self.include, "xen"), multi):
            if not os.path.isdir(d):
                raise LinuxHeaderError("%s: no %s (not an unpacked linux-libc-dev of %s?)"
                                       % (self.root, d, self.arch))
        return ["-nostdinc", "-isystem", gccinc, "-isystem", shim, "-isystem", multi,
                "-isystem", self.include]


def linux_tu() -> str:
    lines = ["/* generated translation unit (Linux uapi) */", "#include <stdint.h>", "#include <stddef.h>",
             '#include "xen.h"', '#include "grant_table.h"',
             "#include <linux/ioctl.h>"]  # _IOC(): the headers leave it to <sys/ioctl.h>
    lines += ["#include <%s>" % h for h in LINUX.headers]
    return "\n".join(lines) + "\n"


def fetch(arch: str, scratch: str, suite: str = SUITE) -> LinuxTree:
    """Download and unpack ``linux-libc-dev`` of ``suite`` for ``arch`` below ``scratch``."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(0, os.path.join(here, "conformance"))
    try:
        import debian_libxen as deb  # the private-apt download of the conformance tests
    finally:
        sys.path.pop(0)
    path = deb.download(suite, scratch, arch, "linux-libc-dev")
    root = os.path.join(scratch, "linux-libc-dev-%s" % arch)
    p = subprocess.run(["dpkg-deb", "-x", path, root], capture_output=True, text=True)
    if p.returncode != 0:
        raise LinuxHeaderError("dpkg-deb -x %s: %s" % (path, p.stderr))
    return LinuxTree(arch, root)


def local(arch: str, root: str) -> LinuxTree:
    """An already unpacked linux-libc-dev (``dpkg-deb -x``) of ``arch`` at ``root``."""
    return LinuxTree(arch, os.path.abspath(root))


def extract_linux(tree: LinuxTree, xen_public: str) -> Extracted:
    """The Linux uapi table of ``tree``'s arch (Xen's public headers at ``xen_public``)."""
    import tempfile

    from .dwarf import extract_families

    with tempfile.TemporaryDirectory(prefix="genstructs-linux-") as wd:
        return extract_families(xen_public, TARGETS[tree.arch], [LINUX], tree.flags(wd), linux_tu())[LINUX.name]
