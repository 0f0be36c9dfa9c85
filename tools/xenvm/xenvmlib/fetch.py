"""Work out which Debian packages a suite's image needs and download them."""

import os
import re

from .apt import AptState
from .common import TOOL_VERSION, XenvmError, kernel_suite, log, read_json, write_json

# Of apt's install closure only these packages can hold files the image uses
# (shared libraries, python, xen tools, dpkg, bash and util-linux for xl's hotplug
# scripts); the rest (perl, systemd, ...) is skipped.
KEEP_RE = re.compile(r"^(lib|zlib1g|xen|python3|busybox|dpkg$|tar$|bash$|util-linux$)")


def _xen_version(apt):
    vers = []
    a = apt.arch.deb
    for name in apt.pkgnames("xen-hypervisor-"):
        m = re.match(r"^xen-hypervisor-(\d+)\.(\d+)-%s$" % a, name)
        if m and apt.candidate(name):
            vers.append((int(m.group(1)), int(m.group(2))))
    if not vers:
        raise XenvmError("suite %s has no xen-hypervisor-*-%s package" % (apt.suite, a))
    return "%d.%d" % max(vers)


def _python_version(apt):
    for d in apt.depends("python3-minimal"):
        m = re.match(r"^python(3\.\d+)-minimal$", d)
        if m:
            return m.group(1)
    raise XenvmError("cannot tell the python3 version of suite %s" % apt.suite)


def _kernel_package(apt):
    a = apt.arch.deb
    for d in apt.depends("linux-image-%s" % a):
        if re.match(r"^linux-image-\d.*-%s$" % a, d) and apt.candidate(d):
            return d
    names = [n for n in apt.pkgnames("linux-image-6.1")
             if re.match(r"^linux-image-6\.1\.\d+-\d+-%s$" % a, n)]
    if not names:
        raise XenvmError("no linux-image-6.1 kernel found in %s" % apt.suite)
    return sorted(names, key=lambda n: int(n.split("-")[3]))[-1]


def _stamp(apt):
    p = os.path.join(apt.root, "updated")
    return os.path.getmtime(p) if os.path.exists(p) else None


def fetch(cache, suite, refresh=False):
    """Returns a manifest: versions, package -> (version, deb path).
    Reuses the last manifest while the private apt lists are unchanged."""
    apt = AptState(cache, suite)
    apt.update(force=refresh)
    ksuite = kernel_suite(suite)
    kapt = apt if suite == ksuite else AptState(cache, ksuite)
    kapt.update(force=refresh)
    mpath = os.path.join(apt.root, "manifest.json")
    mkey = [TOOL_VERSION, _stamp(apt), _stamp(kapt), open(__file__).read()]
    if os.path.exists(mpath):
        old = read_json(mpath)
        m = old.get("manifest", {})
        if old.get("key") == mkey and all(os.path.exists(d) for _, d in m["packages"].values()) \
                and os.path.exists(m["kernel"]["deb"]):
            return m
    xv = _xen_version(apt)
    pyv = _python_version(apt)
    roots = {
        "hypervisor": "xen-hypervisor-%s-%s" % (xv, apt.arch.deb),
        "xen_utils": "xen-utils-%s" % xv,
        "python_minimal": "python%s-minimal" % pyv,
        "python_stdlib": "libpython%s-stdlib" % pyv,
        "python_libminimal": "libpython%s-minimal" % pyv,
        "busybox": "busybox-static",
        # Debian's own dpkg, so that .debs install in dom0 as on a Debian system
        "dpkg": "dpkg",
        "tar": "tar",            # dpkg-deb runs GNU tar
        "ldconfig": "libc-bin",  # dpkg wants ldconfig in PATH
        # xl's hotplug scripts (vif-bridge, block: run --devices) are bash and lock with flock
        "bash": "bash",
        "util_linux": "util-linux",
    }
    want = sorted(set(roots.values()) | {"xen-utils-common", "xenstore-utils"})
    closure = apt.resolve_closure(want)
    pkgs = {p: v for p, v in closure.items() if KEEP_RE.match(p)}
    debs = apt.download(pkgs)

    kpkg = _kernel_package(kapt)
    kver = kapt.candidate(kpkg)
    kdeb = kapt.download({kpkg: kver})[kpkg]
    log("%s: Xen %s, python%s, kernel %s %s, %d packages" % (
        suite, xv, pyv, kpkg, kver, len(pkgs)))
    manifest = {
        "suite": suite,
        "arch": apt.arch.name,
        "xen_version": xv,
        "python_version": pyv,
        "roots": roots,
        "packages": {p: [pkgs[p], debs[p]] for p in sorted(pkgs)},
        "kernel": {"package": kpkg, "version": kver, "deb": kdeb},
    }
    write_json(mpath, {"key": mkey, "manifest": manifest})
    return manifest
