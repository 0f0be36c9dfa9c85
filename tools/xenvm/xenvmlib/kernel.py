"""The dom0/domU kernel: unpack Debian's linux-image, extract a plain vmlinux
from the bzImage and pick the modules the initramfs loads."""

import glob
import gzip
import lzma
import os
import shutil
import struct

from .common import XenvmError, key_of, log, read_json, run, write_json
from .elf import Elf

# Load order from the trial runs: Xen devices first, then the 9p share
# (plus virtio_console: the command's output goes to the host on a virtio port).
# Each module's own dependencies (from .modinfo) are loaded before it.
WANTED_MODULES = [
    "xen-evtchn", "xen-privcmd", "xenfs", "xen-gntdev", "xen-gntalloc",
    "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_ring", "virtio", "virtio_pci",
    "virtio_console", "9pnet", "9pnet_virtio", "netfs", "fscache", "9p",
    "virtio_net",  # run --ssh-port: the user-mode NIC sshd listens on
]
# arm64 (QEMU virt machine): the devices sit on virtio-mmio.
WANTED_MODULES_ARM64 = [
    "xen-evtchn", "xen-privcmd", "xenfs", "xen-gntdev", "xen-gntalloc",
    "virtio_ring", "virtio", "virtio_mmio",
    "virtio_console", "9pnet", "9pnet_virtio", "netfs", "fscache", "9p",
    "virtio_net",
]


# run --devices: dom0's backends (netback, blkback over a loop device, a bridge), loaded
# by init only then, and the guest's frontends, loaded by the guest's init only when
# the toolstack gave it such devices.  The same on both architectures.
DEVICE_MODULES = ["loop", "xen-netback", "xen-blkback", "bridge"]
GUEST_MODULES = ["xen-netfront", "xen-blkfront"]


def wanted_modules(kinfo):
    return WANTED_MODULES_ARM64 if kinfo["package"].endswith("-arm64") else WANTED_MODULES


def _norm(name):
    return name.replace("-", "_")


def extract_vmlinux(bzimage, out):
    """bzImage -> ELF vmlinux (boot protocol >= 2.08 gives the payload location)."""
    with open(bzimage, "rb") as f:
        d = f.read()
    if d[0x202:0x206] != b"HdrS":
        raise XenvmError("%s is not a bzImage" % bzimage)
    setup_sects = d[0x1f1] or 4
    poff, plen = struct.unpack_from("<II", d, 0x248)
    start = (setup_sects + 1) * 512 + poff
    payload = d[start:start + plen]
    if payload[:6] == b"\xfd7zXZ\x00":
        data = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(payload)
    elif payload[:2] == b"\x1f\x8b":
        import zlib
        data = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(payload)
    else:
        raise XenvmError("unsupported bzImage payload compression in %s" % bzimage)
    if data[:4] != b"\x7fELF":
        raise XenvmError("bzImage payload of %s is not ELF" % bzimage)
    with open(out + ".tmp", "wb") as f:
        f.write(data)
    os.replace(out + ".tmp", out)


def prepare(cache, kinfo):
    """Returns dict with vmlinuz, vmlinux, kver, modules (ordered list of .ko paths)."""
    base = kernel_dir(cache, kinfo)
    meta = os.path.join(base, "kernel.json")
    if os.path.exists(meta):
        return read_json(meta)
    log("unpacking kernel %s %s" % (kinfo["package"], kinfo["version"]))
    tmp = base + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    x = os.path.join(tmp, "x")
    run(["dpkg-deb", "-x", kinfo["deb"], x])
    vmlinuz = glob.glob(os.path.join(x, "boot", "vmlinuz-*"))
    if len(vmlinuz) != 1:
        raise XenvmError("expected one /boot/vmlinuz-* in %s" % kinfo["deb"])
    kver = os.path.basename(vmlinuz[0])[len("vmlinuz-"):]
    shutil.move(vmlinuz[0], os.path.join(tmp, "vmlinuz"))
    if kinfo["package"].endswith("-arm64"):
        # arm64: /boot/vmlinuz-* is the Image itself (gunzip it if a build compressed it);
        # both Xen (dom0, via QEMU's guest-loader) and xl (domU) take it as it is
        with open(os.path.join(tmp, "vmlinuz"), "rb") as f:
            magic = f.read(2)
        if magic == b"\x1f\x8b":
            with gzip.open(os.path.join(tmp, "vmlinuz")) as fi, \
                    open(os.path.join(tmp, "vmlinuz.tmp"), "wb") as fo:
                shutil.copyfileobj(fi, fo)
            os.replace(os.path.join(tmp, "vmlinuz.tmp"), os.path.join(tmp, "vmlinuz"))
        os.link(os.path.join(tmp, "vmlinuz"), os.path.join(tmp, "vmlinux"))
    else:
        extract_vmlinux(os.path.join(tmp, "vmlinuz"), os.path.join(tmp, "vmlinux"))
    mdir = glob.glob(os.path.join(x, "lib", "modules", kver)) + \
        glob.glob(os.path.join(x, "usr", "lib", "modules", kver))
    mdir = mdir[0]
    kos = {}
    for dp, _, fns in os.walk(mdir):
        for fn in fns:
            if fn.endswith(".ko"):
                kos[_norm(fn[:-3])] = os.path.join(dp, fn)
            elif fn.endswith(".ko.xz"):
                kos[_norm(fn[:-6])] = os.path.join(dp, fn)
    builtin = set()
    bfile = os.path.join(mdir, "modules.builtin")
    if os.path.exists(bfile):
        for line in open(bfile):
            builtin.add(_norm(os.path.basename(line.strip()).split(".ko")[0]))
    os.makedirs(os.path.join(tmp, "modules"))
    order = []

    def load(name, chain=()):
        n = _norm(name)
        if n in order or n in chain:
            return
        if n not in kos:
            if n in builtin:
                return
            raise XenvmError("kernel module %s not found in %s" % (name, kinfo["deb"]))
        src = kos[n]
        dst = os.path.join(tmp, "modules", n + ".ko")
        if src.endswith(".xz"):
            with lzma.open(src) as fi, open(dst, "wb") as fo:
                shutil.copyfileobj(fi, fo)
        else:
            shutil.copyfile(src, dst)
        deps = Elf(dst).modinfo().get("depends", "")
        for dep in filter(None, deps.split(",")):
            load(dep, chain + (n,))
        order.append(n)

    for m in wanted_modules(kinfo):
        load(m)
    extra = {}
    for key, names in (("device_modules", DEVICE_MODULES), ("guest_modules", GUEST_MODULES)):
        base_order = list(order)
        for m in names:
            load(m)
        extra[key] = [n for n in order if n not in base_order]
        del order[len(base_order):]
    shutil.rmtree(x)
    info = {"kver": kver, "package": kinfo["package"], "version": kinfo["version"],
            "modules": order}
    info.update(extra)
    write_json(os.path.join(tmp, "kernel.json"), info)
    shutil.rmtree(base, ignore_errors=True)
    os.replace(tmp, base)
    return read_json(meta)


def kernel_dir(cache, kinfo):
    return os.path.join(cache, "kernel", "%s_%s-%s" % (
        kinfo["package"], kinfo["version"],
        key_of(wanted_modules(kinfo) + DEVICE_MODULES + GUEST_MODULES)[:8]))
