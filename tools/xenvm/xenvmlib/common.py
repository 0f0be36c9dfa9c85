"""Shared helpers: cache location, logging, subprocess wrappers."""

import contextlib
import fcntl
import hashlib
import json
import os
import shlex
import subprocess
import sys
import time

# Bump when the image layout / init script changes so cached images rebuild.
TOOL_VERSION = "2"

SUITES = ("bullseye", "bookworm", "trixie", "sid")
KERNEL_SUITE = "bookworm"  # its 6.1 kernel works as PV dom0 under every Xen here
# arm64 Xen under qemu-system-aarch64: "<dist>-arm64" (bullseye's arm64 userland
# had .debs missing on the mirror in trials, so it is not offered)
ARM64_SUITES = ("bookworm-arm64", "trixie-arm64", "sid-arm64")
ALL_SUITES = SUITES + ARM64_SUITES


class Arch:
    """What differs between the x86_64 and the aarch64 images."""

    def __init__(self, name, deb, triplet, ld_so, qemu, qemu_pkg):
        self.name = name          # uname -m
        self.deb = deb            # Debian architecture
        self.triplet = triplet    # multiarch directory
        self.ld_so = ld_so
        self.qemu = qemu
        self.qemu_pkg = qemu_pkg


ARCHES = {
    "x86_64": Arch("x86_64", "amd64", "x86_64-linux-gnu", "usr/lib64/ld-linux-x86-64.so.2",
                   "qemu-system-x86_64", "qemu-system-x86"),
    "aarch64": Arch("aarch64", "arm64", "aarch64-linux-gnu", "usr/lib/ld-linux-aarch64.so.1",
                    "qemu-system-aarch64", "qemu-system-arm"),
}


def suite_arch(suite):
    """'bookworm' -> ('bookworm', ARCHES['x86_64']); 'bookworm-arm64' -> aarch64."""
    if suite.endswith("-arm64"):
        return suite[:-len("-arm64")], ARCHES["aarch64"]
    return suite, ARCHES["x86_64"]


def kernel_suite(suite):
    """The suite whose Linux 6.1 is used as dom0/domU kernel for this suite."""
    return KERNEL_SUITE + ("-arm64" if suite.endswith("-arm64") else "")

_quiet = False


class XenvmError(Exception):
    """A failure with a message meant for the user."""

    def __init__(self, msg, code=125):
        super().__init__(msg)
        self.code = code


def set_quiet(q):
    global _quiet
    _quiet = q


def log(msg):
    if not _quiet:
        sys.stderr.write("xenvm: %s\n" % msg)
        sys.stderr.flush()


def cache_root(override=None):
    d = override or os.environ.get("XENVM_CACHE")
    if not d:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(
            os.path.expanduser("~"), ".cache")
        d = os.path.join(base, "xenprivcmd-xenvm")
    d = os.path.abspath(d)
    os.makedirs(d, exist_ok=True)
    return d


def run(cmd, check=True, capture=False, env=None, cwd=None, quiet_ok=False):
    """Run a command; on failure raise XenvmError with its output."""
    res = subprocess.run(cmd, stdout=subprocess.PIPE if capture or quiet_ok else None,
                         stderr=subprocess.PIPE if capture or quiet_ok else None,
                         env=env, cwd=cwd, universal_newlines=True)
    if check and res.returncode != 0:
        out = ((res.stdout or "") + (res.stderr or "")).strip()
        raise XenvmError("command failed (exit %d): %s\n%s" % (
            res.returncode, " ".join(shlex.quote(c) for c in cmd), out[-3000:]))
    return res


def key_of(obj):
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def read_json(path):
    with open(path) as f:
        return json.load(f)


class Timer:
    def __init__(self):
        self.t0 = time.monotonic()

    def __call__(self):
        return time.monotonic() - self.t0


@contextlib.contextmanager
def cache_lock(cache, name, what):
    """Exclusive lock on the cache (several users may share one cache dir)."""
    f = open(os.path.join(cache, name + ".lock"), "w")
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            log("waiting for another xenvm process (%s)" % what)
            fcntl.flock(f, fcntl.LOCK_EX)
        yield
    finally:
        f.close()
