"""C programs that run in a suite's dom0, compiled on this host.

A sysroot of the Debian suite (``libxen-dev``, ``libc6-dev`` and what they
depend on, downloaded with xenvm's private apt state and unpacked with
``dpkg-deb -x``, cached by package set), then the host's gcc (the aarch64
cross compiler for the -arm64 suites) with ``--sysroot``: the programs link
against that suite's glibc and libxenctrl.so, and read Xen's public headers
as that suite ships them.  Used by tools/bench-realxen (the C floor and
libxenctrl benchmarks) and tools/run-tests (tests/realxen/c).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from typing import Dict, List, Sequence


class BuildError(Exception):
    pass


def sysroot(cache: str, suite: str) -> str:
    """The suite's libxen-dev + libc6-dev tree (cached by package set)."""
    from . import apt

    a = apt.AptState(cache, suite)
    a.update()
    pkgs = a.resolve_closure(["libxen-dev", "libc6-dev"])
    key = hashlib.sha256(json.dumps(sorted(pkgs.items())).encode()).hexdigest()[:16]
    root = os.path.join(cache, "bench-sysroot", f"{suite}-{key}")
    if os.path.exists(os.path.join(root, ".complete")):
        return root
    debs = a.download(pkgs)
    tmp = root + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    for deb in debs.values():
        subprocess.run(["dpkg-deb", "-x", deb, tmp], check=True)
    _fix_links(tmp, root)
    with open(os.path.join(tmp, ".packages.json"), "w") as f:
        json.dump(pkgs, f, indent=1, sort_keys=True)
    open(os.path.join(tmp, ".complete"), "w").close()
    shutil.rmtree(root, ignore_errors=True)
    os.rename(tmp, root)
    return root


def packages(root: str) -> Dict[str, str]:
    """Package -> version of the sysroot."""
    with open(os.path.join(root, ".packages.json")) as f:
        got: Dict[str, str] = json.load(f)
    return got


def _fix_links(tree: str, root: str) -> None:
    """Merged-/usr suites (trixie) ship /usr/lib64 only (/lib64 etc. come from
    base-files); absolute symlinks of the packages (bullseye's
    /lib64/ld-linux-x86-64.so.2, named by libc.so's linker script) would
    resolve on the host: point them inside ``root``, where ``tree`` will be."""
    for top in ("lib", "lib64", "bin", "sbin"):
        if not os.path.lexists(os.path.join(tree, top)) and os.path.isdir(os.path.join(tree, "usr", top)):
            os.symlink(os.path.join("usr", top), os.path.join(tree, top))
    for dirpath, dirnames, filenames in os.walk(tree):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                target = os.readlink(path)
                if target.startswith("/") and not target.startswith(root):
                    os.unlink(path)
                    os.symlink(root + target, path)


def compile_c(root: str, suite: str, src: str, out: str, includes: Sequence[str] = (),
              libs: Sequence[str] = ()) -> str:
    """``src`` compiled against the sysroot into the file ``out`` (``libs``: e.g. ``["xenctrl"]``)."""
    triplet = "aarch64-linux-gnu" if suite.endswith("-arm64") else "x86_64-linux-gnu"
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    libdirs = [d for d in (os.path.join(root, "usr", "lib", triplet), os.path.join(root, "lib", triplet))
               if os.path.isdir(d)]
    cc = "gcc" if triplet.startswith("x86_64") else f"{triplet}-gcc"
    cmd: List[str] = [cc, f"--sysroot={root}", "-O2", "-Wall"]
    for inc in includes:
        cmd += ["-I", inc]
    cmd += ["-o", out, src] + [f"-L{d}" for d in libdirs]
    if libs:
        cmd += [f"-l{lib}" for lib in libs] + [f"-Wl,-rpath-link,{':'.join(libdirs)}"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise BuildError(f"compiling {os.path.basename(src)} failed:\n{' '.join(cmd)}\n{res.stderr}")
    return out
