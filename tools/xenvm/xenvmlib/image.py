"""Build a suite's boot image: Xen ELF, dom0 vmlinux, dom0 initramfs (busybox,
the suite's python3 and Xen userland), and the domU kernel + initrd piece."""

import gzip
import os
import re
import shutil
import subprocess
import time

from . import initscripts, kernel
from .common import TOOL_VERSION, XenvmError, key_of, log, read_json, run, suite_arch, write_json
from .cpio import CpioWriter
from .elf import Elf, is_elf

# Top-level directories that merged-/usr folds into /usr.
MERGED = ("bin", "sbin", "lib", "lib64", "lib32", "libx32")
SKIP_RE = re.compile(r"^usr/share/(doc|man|info|lintian|locale|bash-completion|doc-base|bug|"
                     r"initramfs-tools|binfmts|pixmaps|applications|python3/debian_defaults)/|"
                     r"^etc/(init\.d|default|systemd|logrotate\.d)/|^usr/lib/systemd/|^usr/share/doc$|"
                     r"^usr/lib/xen-[^/]+/lib/[^/]+-linux-gnu/xenfsimage/")
PY_SKIP_RE = re.compile(r"^usr/lib/python3\.\d+/(idlelib|tkinter|turtledemo|ensurepip|lib2to3/tests|"
                        r"test|unittest/test|distutils/tests|sqlite3/test|ctypes/test|"
                        r"__phello__|config-[^/]*)(/|$)")
LIB_DIRS = ("usr/lib/x86_64-linux-gnu", "usr/lib64", "usr/lib")


def lib_dirs(arch):
    return ("usr/lib/%s" % arch.triplet, "usr/lib64", "usr/lib")


def canon(rel):
    rel = rel.lstrip("./").lstrip("/")
    top = rel.split("/", 1)[0]
    if top in MERGED:
        return "usr/" + rel
    return rel


def image_key(manifest):
    return key_of({
        "tool": TOOL_VERSION,
        "suite": manifest["suite"],
        "packages": {p: v[0] for p, v in manifest["packages"].items()},
        "kernel": [manifest["kernel"]["package"], manifest["kernel"]["version"]],
        "init": initscripts.digest(),
    })


def image_dir(cache, manifest):
    return os.path.join(cache, "images", "%s-%s" % (manifest["suite"], image_key(manifest)))


def extract_deb(cache, deb):
    d = os.path.join(cache, "extract", os.path.basename(deb)[:-4])
    if not os.path.isdir(d):
        tmp = d + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        run(["dpkg-deb", "-x", deb, tmp])
        os.replace(tmp, d)
    return d


class FileSet:
    """Files of the unpacked packages, indexed by merged-/usr path."""

    def __init__(self):
        self.files = {}   # canon path -> (host path, pkg)
        self.by_pkg = {}

    def add_pkg(self, pkg, root):
        lst = self.by_pkg.setdefault(pkg, [])
        for dp, dns, fns in os.walk(root):
            for n in fns + [d for d in dns if os.path.islink(os.path.join(dp, d))]:
                hp = os.path.join(dp, n)
                c = canon(os.path.relpath(hp, root))
                self.files.setdefault(c, (hp, pkg))
                lst.append(c)

    def resolve(self, path, depth=0):
        """Follow symlinks inside the image namespace; returns the list of
        paths visited (links and final file), or None."""
        path = canon(os.path.normpath(path))
        if depth > 20 or path not in self.files:
            return None
        hp = self.files[path][0]
        if os.path.islink(hp):
            t = os.readlink(hp)
            nxt = t if t.startswith("/") else os.path.join(os.path.dirname(path), t)
            rest = self.resolve(nxt, depth + 1)
            return None if rest is None else [path] + rest
        return [path]


def _resolve_in_root(root, rel, depth=0):
    p = os.path.join(root, rel.lstrip("/"))
    if depth < 20 and os.path.islink(p):
        t = os.readlink(p)
        nxt = t if t.startswith("/") else os.path.join(os.path.dirname(rel.lstrip("/")), t)
        return _resolve_in_root(root, os.path.normpath(nxt), depth + 1)
    return p


def suite_python_cmd(root, pyver):
    """Command running the suite's python3 on the host via the suite's own ld.so."""
    ld = _resolve_in_root(root, "usr/lib64/ld-linux-x86-64.so.2")
    libpath = ":".join(os.path.join(root, d) for d in LIB_DIRS)
    return [ld, "--library-path", libpath, os.path.join(root, "usr/bin/python" + pyver)]


def compile_pyc(root, pyver, dirs, strip_root, prepend="/"):
    """Byte-compile with the suite's interpreter (unchecked-hash pycs, so they
    stay valid whatever the mtimes): saves a lot of time under TCG."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONHOME": os.path.join(root, "usr"),
           "PYTHONNOUSERSITE": "1", "LC_ALL": "C.UTF-8"}
    cmd = suite_python_cmd(root, pyver) + [
        "-m", "compileall", "-q", "-j", "1", "--invalidation-mode", "unchecked-hash",
        "-s", strip_root, "-p", prepend] + dirs
    res = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         universal_newlines=True)
    if res.returncode != 0:
        log("warning: byte-compiling with the suite's python reported errors:\n%s"
            % res.stdout[-1500:])


class _Checked:
    def __init__(self, returncode, stdout):
        self.returncode, self.stdout = returncode, stdout


def _check_foreign_python(root, pyv, arch):
    """The foreign python cannot run here: check that it and its loader are
    there and are ELF files for the image's machine."""
    want = {"aarch64": 183, "x86_64": 62}[arch.name]
    for rel in ("usr/bin/python" + pyv, arch.ld_so):
        p = _resolve_in_root(root, rel)
        try:
            with open(p, "rb") as f:
                head = f.read(20)
        except OSError:
            return _Checked(1, "/%s is missing" % rel)
        if head[:4] != b"\x7fELF" or int.from_bytes(head[18:20], "little") != want:
            return _Checked(1, "/%s is not an ELF file for %s" % (rel, arch.name))
    return _Checked(0, "")


def write_dpkg_db(root, manifest, fs, pkgs, selected):
    """/var/lib/dpkg for dom0: `pkgs` installed (their control stanzas from
    the .debs, their file lists as far as the image has them), so that
    Debian's dpkg installs packages depending on them (python3, ...)."""
    db = os.path.join(root, "var/lib/dpkg")
    for d in ("info", "updates", "triggers", "alternatives", "parts"):
        os.makedirs(os.path.join(db, d), exist_ok=True)
    stanzas = []
    for pkg in sorted(pkgs):
        ctrl = run(["dpkg-deb", "-f", manifest["packages"][pkg][1]], capture=True).stdout.rstrip("\n")
        lines = ctrl.splitlines()
        stanzas.append("\n".join(lines[:1] + ["Status: install ok installed"] + lines[1:]) + "\n")
        files = sorted(c for c in fs.by_pkg[pkg] if c in selected)
        dirs = set()
        for c in files:
            while "/" in c:
                c = os.path.dirname(c)
                dirs.add(c)
        dirs = sorted(dirs)
        with open(os.path.join(db, "info", pkg + ".list"), "w") as f:
            f.write("/.\n" + "".join("/%s\n" % p for p in dirs + files))
    with open(os.path.join(db, "status"), "w") as f:
        f.write("\n".join(stanzas))
    for n in ("available", "diversions", "statoverride"):
        open(os.path.join(db, n), "w").close()


def _gzip_cpio(path, fill, level=6):
    tmp = path + ".tmp"
    with open(tmp, "wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=level, mtime=0) as gz:
            w = CpioWriter(gz)
            fill(w)
            w.close()
    os.replace(tmp, path)


def library_closure(fs, selected, libdirs):
    """Add to ``selected`` (image paths) the ELF interpreter and the DT_NEEDED
    libraries of every ELF file in it, transitively; returns what was not found."""
    missing = set()
    todo = [c for c in selected]
    seen = set()
    while todo:
        c = todo.pop()
        if c in seen:
            continue
        seen.add(c)
        hp = fs.files.get(c, (None,))[0]
        if not hp or os.path.islink(hp) or not is_elf(hp):
            continue
        try:
            e = Elf(hp)
            needed, runpath = e.dynamic()
            interp = e.interp()
        except (ValueError, IndexError, UnicodeDecodeError):
            continue
        if interp:
            r = fs.resolve(interp)
            if r:
                for x in r:
                    if x not in selected:
                        selected.add(x)
                        todo.append(x)
        dirs = [p.replace("$ORIGIN", "/" + os.path.dirname(c)) for p in runpath] + list(libdirs)
        for so in needed:
            for d in dirs:
                r = fs.resolve(os.path.join(d, so))
                if r:
                    for x in r:
                        if x not in selected:
                            selected.add(x)
                            todo.append(x)
                    break
            else:
                missing.add("%s (needed by /%s)" % (so, c))
    return missing


def build(cache, manifest, force=False):
    """Builds (or reuses) the image; returns its info dict."""
    out = image_dir(cache, manifest)
    info_path = os.path.join(out, "image.json")
    if os.path.exists(info_path) and not force:
        os.utime(info_path)
        return read_json(info_path)
    suite = manifest["suite"]
    dist, arch = suite_arch(suite)
    native = arch.name == "x86_64"
    libdirs = lib_dirs(arch)
    xv, pyv = manifest["xen_version"], manifest["python_version"]
    roots = manifest["roots"]
    pyc_root = None
    if not native:
        # Nothing arm64 runs on the host: the same Debian suite's amd64 image lends its
        # python (same version, same bytecode) for byte-compiling and its busybox for
        # the applet list.
        from . import fetch
        cinfo = build(cache, fetch.fetch(cache, dist))
        if cinfo["python_version"] != pyv:
            raise XenvmError("%s: python%s, but the amd64 %s has python%s" % (
                suite, pyv, dist, cinfo["python_version"]))
        pyc_root = cinfo["root"]
    log("%s: building image (Xen %s, python%s)" % (suite, xv, pyv))
    kinfo = kernel.prepare(cache, manifest["kernel"])
    kdir = kernel.kernel_dir(cache, manifest["kernel"])

    tmp = out + ".tmp"
    idir = os.path.dirname(out)
    os.makedirs(idir, exist_ok=True)
    for n in os.listdir(idir):
        if n.endswith(".tmp"):
            shutil.rmtree(os.path.join(idir, n), ignore_errors=True)
    os.makedirs(tmp)
    fs = FileSet()
    for pkg, (_ver, deb) in sorted(manifest["packages"].items()):
        fs.add_pkg(pkg, extract_deb(cache, deb))

    # --- Xen hypervisor image
    hv = [c for c in fs.by_pkg[roots["hypervisor"]] if re.match(r"^boot/xen-.*\.gz$", c)]
    if not native and not hv:
        # arm64: /boot/xen-4.x-arm64 is an Image that QEMU's -kernel starts at EL2
        hv = [c for c in fs.by_pkg[roots["hypervisor"]]
              if re.match(r"^boot/xen-[0-9.]+-%s$" % arch.deb, c)]
    if not hv:
        raise XenvmError("no /boot/xen-*.gz in %s" % roots["hypervisor"])
    opener = gzip.open if hv[0].endswith(".gz") else open
    with opener(fs.files[sorted(hv)[-1]][0], "rb") as fi, \
            open(os.path.join(tmp, "xen"), "wb") as fo:
        shutil.copyfileobj(fi, fo)

    # --- select dom0 rootfs files
    selected = set()
    py_pkgs = {roots["python_minimal"], roots["python_stdlib"], roots["python_libminimal"]} | {
        p for p in ("python3", "python3-minimal", "libpython3-stdlib", "python" + pyv) if p in fs.by_pkg}
    xen_pkgs = {roots["xen_utils"], "xen-utils-common", "xenstore-utils"} | {
        p for p in fs.by_pkg if re.match(r"^lib(xen|yajl)", p)}
    # packages installed whole (less docs): dpkg's database in dom0 lists them
    whole = py_pkgs | xen_pkgs | {roots["dpkg"], roots["tar"]}
    for pkg in whole:
        for c in fs.by_pkg.get(pkg, []):
            if SKIP_RE.search(c) or PY_SKIP_RE.search(c):
                continue
            selected.add(c)
    selected.update(fs.resolve("sbin/ldconfig") or [])
    # xl's hotplug scripts (/etc/xen/scripts, run --devices) need bash and flock; of
    # their packages only these two programs (busybox has the rest the scripts call)
    for prog in ("bin/bash", "usr/bin/flock"):
        found = fs.resolve(prog)
        if not found:
            raise XenvmError("%s: no /%s in the image's packages" % (suite, prog))
        selected.update(found)
    bb = fs.resolve("bin/busybox")
    if not bb:
        raise XenvmError("busybox-static has no /bin/busybox")
    selected.update(bb)
    # dlopen()ed by glibc: NSS 'files' (separate before glibc 2.34), and
    # libgcc_s for pthread_cancel (xl's threads need it)
    for c in list(fs.files):
        if re.match(r"^usr/lib/%s/(libnss_(files|dns)\.so\.2|libgcc_s\.so\.1)$" % arch.triplet, c):
            selected.update(fs.resolve(c) or [])

    # --- shared library closure over DT_NEEDED
    missing = library_closure(fs, selected, libdirs)
    if missing:
        log("%s: warning: shared libraries not found: %s" % (suite, ", ".join(sorted(missing))))

    # --- materialize the rootfs tree
    root = os.path.join(tmp, "root")
    for c in sorted(selected):
        hp = fs.files[c][0]
        dst = os.path.join(root, c)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if os.path.islink(hp):
            os.symlink(os.readlink(hp), dst)
        else:
            shutil.copy2(hp, dst)
    for top in MERGED[:4]:
        os.symlink("usr/" + top, os.path.join(root, top))
    write_dpkg_db(root, manifest, fs, whole, selected)
    os.makedirs(os.path.join(root, "usr/bin"), exist_ok=True)
    if not os.path.lexists(os.path.join(root, "usr/bin/python3")):
        os.symlink("python" + pyv, os.path.join(root, "usr/bin/python3"))
    bbhost = os.path.join(pyc_root or root, "usr/bin/busybox" if pyc_root else bb[-1])
    applets = run([bbhost, "--list-full"], capture=True).stdout.split()
    for a in applets:
        dst = os.path.join(root, canon(a))
        if not os.path.lexists(dst):
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            os.symlink("/" + bb[-1], dst)
    xbin = "usr/lib/xen-%s/bin" % xv
    # Debian's wrapper symlinks -> the real binaries of this Xen version
    for d in ("usr/bin", "usr/sbin"):
        dd = os.path.join(root, d)
        for n in os.listdir(dd) if os.path.isdir(dd) else []:
            p = os.path.join(dd, n)
            if os.path.islink(p) and os.readlink(p).endswith("xen-utils-wrapper"):
                os.unlink(p)
                if os.path.exists(os.path.join(root, xbin, n)):
                    os.symlink("/" + xbin + "/" + n, p)
    xenstored = "xenstored" if os.path.exists(os.path.join(root, xbin, "xenstored")) else "oxenstored"
    # kernel modules
    mdir = os.path.join(root, "usr/lib/modules", kinfo["kver"])
    os.makedirs(mdir)
    for m in kinfo["modules"] + kinfo["device_modules"]:
        shutil.copyfile(os.path.join(kdir, "modules", m + ".ko"), os.path.join(mdir, m + ".ko"))
    # /etc, init and friends
    for d in ("proc", "sys", "dev", "run", "tmp", "host", "root", "mnt", "var/lib/xen",
              "var/lib/xenstored", "var/log/xen/console", "etc/xenvm", "opt/xenvm"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    os.chmod(os.path.join(root, "tmp"), 0o1777)
    os.symlink("../run", os.path.join(root, "var/run"))
    os.symlink("../run/lock", os.path.join(root, "var/lock"))
    files = initscripts.dom0_files(xv=xv, pyv=pyv, suite=suite, kver=kinfo["kver"],
                                   modules=kinfo["modules"], xenstored=xenstored,
                                   arch=arch.name, device_modules=kinfo["device_modules"])
    for rel, (data, mode) in files.items():
        p = os.path.join(root, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        if os.path.lexists(p):
            os.unlink(p)
        with open(p, "w") as f:
            f.write(data)
        os.chmod(p, mode)

    # byte-compile the stdlib and Xen's python bits with the suite's interpreter
    pydirs = [os.path.join(root, "usr/lib/python" + pyv)]
    compile_pyc(pyc_root or root, pyv, pydirs, root)
    if native:
        check = subprocess.run(
            suite_python_cmd(root, pyv) + ["-c", "import sys; print(sys.version)"],
            env={"PYTHONHOME": os.path.join(root, "usr"), "PATH": "/usr/bin:/bin"},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    else:
        check = _check_foreign_python(root, pyv, arch)
    if check.returncode != 0:
        raise XenvmError("%s: the suite's python%s does not run from the image tree:\n%s"
                         % (suite, pyv, check.stdout[-1500:]))

    _gzip_cpio(os.path.join(tmp, "rootfs.cpio.gz"), lambda w: w.add_tree(root))

    # --- domU piece: kernel + tiny busybox initrd, unpacked in dom0 under /opt/xenvm/guest
    def guest_initrd(w):
        for d in ("bin", "sbin", "proc", "sys", "dev", "tmp", "lib", "lib/modules"):
            w.dir(d)
        # the frontends, loaded by init only when the toolstack gave the guest a vif / vbd
        for m in kinfo["guest_modules"]:
            with open(os.path.join(kdir, "modules", m + ".ko"), "rb") as f:
                w.file("lib/modules/%s.ko" % m, f.read(), 0o644)
        with open(fs.files[bb[-1]][0], "rb") as f:
            w.file("bin/busybox", f.read(), 0o755)
        w.symlink("bin/sh", "busybox")
        for path, text in sorted(initscripts.GUEST_SBIN.items()):
            w.file(path, text.encode(), 0o755)
        w.file("init", initscripts.GUEST_INIT.encode(), 0o755)
    _gzip_cpio(os.path.join(tmp, "guest-initrd.gz"), guest_initrd, 9)

    def guest_piece(w):
        for d in ("opt", "opt/xenvm", "opt/xenvm/guest"):
            w.dir(d)
        with open(os.path.join(kdir, "vmlinuz"), "rb") as f:
            w.file("opt/xenvm/guest/vmlinuz", f.read())
        with open(os.path.join(tmp, "guest-initrd.gz"), "rb") as f:
            w.file("opt/xenvm/guest/initrd.gz", f.read())
    with open(os.path.join(tmp, "guest.cpio"), "wb") as f:
        w = CpioWriter(f)
        guest_piece(w)
        w.close()

    info = {
        "suite": suite, "arch": arch.name, "xen_version": xv, "python_version": pyv,
        "key": image_key(manifest),
        "xen": os.path.join(out, "xen"),
        "vmlinux": os.path.join(kdir, "vmlinux"),
        "rootfs": os.path.join(out, "rootfs.cpio.gz"),
        "guest_piece": os.path.join(out, "guest.cpio"),
        "kernel": kinfo, "packages": {p: v[0] for p, v in manifest["packages"].items()},
        "root": os.path.join(out, "root"),
        # the tree whose python byte-compiles for this image (the amd64 twin for arm64)
        "pyc_root": pyc_root or os.path.join(out, "root"),
    }
    write_json(os.path.join(tmp, "image.json"), info)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    prune_images(cache, suite, keep=out)
    return read_json(info_path)


def prune_images(cache, suite, keep, min_age=3600):
    """Drop this suite's older images (not touched for an hour: a concurrent
    run may still be booting one)."""
    idir = os.path.join(cache, "images")
    for n in os.listdir(idir):
        p = os.path.join(idir, n)
        if re.match(r"^%s-[0-9a-f]{16}$" % re.escape(suite), n) and p != keep:
            try:
                if time.time() - os.path.getmtime(os.path.join(p, "image.json")) > min_age:
                    shutil.rmtree(p)
            except OSError:
                pass
