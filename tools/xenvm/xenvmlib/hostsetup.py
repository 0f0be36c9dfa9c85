"""Host packages xenvm needs (Debian/Ubuntu host, via apt-get)."""

import os
import shutil
import subprocess

from .common import XenvmError, log

# program -> Debian package providing it
NEEDED = {
    "qemu-system-x86_64": "qemu-system-x86",
    "dpkg-deb": "dpkg",
    "apt-get": "apt",
    "cpio": "cpio",
    "modinfo": "kmod",
    "xz": "xz-utils",
    "readelf": "binutils",
    "gpgv": "gpgv",
}
KEYRING_PKG = ("/usr/share/keyrings/debian-archive-keyring.gpg", "debian-archive-keyring")


# per target arch: the QEMU that runs it
QEMU = {"x86_64": ("qemu-system-x86_64", "qemu-system-x86"),
        "aarch64": ("qemu-system-aarch64", "qemu-system-arm")}


def missing_packages(pip_needed=False, arches=("x86_64",)):
    pkgs = []
    needed = dict(QEMU[a] for a in arches)
    needed.update((k, v) for k, v in NEEDED.items() if not k.startswith("qemu-"))
    for prog, pkg in needed.items():
        if not shutil.which(prog) and pkg not in pkgs:
            pkgs.append(pkg)
    if not os.path.exists(KEYRING_PKG[0]):
        pkgs.append(KEYRING_PKG[1])
    if pip_needed:
        from .pipdeps import host_pip
        try:
            host_pip()
        except XenvmError:
            pkgs.append("python3-pip")
    return pkgs


def setup(pip_needed=True, quiet_if_ok=True, arches=("x86_64",)):
    pkgs = missing_packages(pip_needed, arches)
    if not pkgs:
        if not quiet_if_ok:
            log("host setup: everything needed is installed")
        return False
    if not shutil.which("apt-get"):
        raise XenvmError("missing host tools (%s) and no apt-get to install them"
                         % ", ".join(pkgs))
    if os.geteuid() != 0:
        raise XenvmError("missing host packages %s: run 'xenvm.py setup' as root or "
                         "apt-get install them" % " ".join(pkgs))
    log("host setup: apt-get install %s" % " ".join(pkgs))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for args in (["apt-get", "update", "-q"],
                 ["apt-get", "install", "-y", "-q", "--no-install-recommends"] + pkgs):
        res = subprocess.run(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             universal_newlines=True)
        if res.returncode != 0:
            raise XenvmError("%s failed:\n%s" % (" ".join(args), res.stdout[-2500:]))
    still = missing_packages(pip_needed, arches)
    if still:
        raise XenvmError("host setup: still missing after apt-get: %s" % " ".join(still))
    return True
