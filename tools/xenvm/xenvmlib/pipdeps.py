"""Pure-Python wheels for dom0's python, fetched with the host's pip."""

import gzip
import os
import shutil
import subprocess
import sys
import zipfile

from .common import TOOL_VERSION, XenvmError, key_of, log, write_json
from .cpio import CpioWriter
from .image import compile_pyc

DOM0_DIR = "/opt/xenvm/pip"


def host_pip():
    for cand in ([sys.executable, "-m", "pip"], ["/usr/bin/python3", "-m", "pip"]):
        try:
            if subprocess.run(cand + ["--version"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL).returncode == 0:
                return cand
        except OSError:
            pass
    for name in ("pip3", "pip"):
        p = shutil.which(name)
        if p:
            return [p]
    raise XenvmError("no pip on the host: install python3-pip (xenvm.py setup does)")


def pip_piece(cache, image, spec):
    """Returns the path of a gzipped cpio holding the wheels unpacked under
    /opt/xenvm/pip (byte-compiled for the suite's python), or None."""
    reqs = spec.split()
    if not reqs:
        return None
    pyv = image["python_version"]
    key = key_of([TOOL_VERSION, pyv, reqs, image["packages"].get("python%s-minimal" % pyv)])
    base = os.path.join(cache, "pip", "py%s-%s" % (pyv, key))
    piece = os.path.join(base, "pip.cpio.gz")
    if os.path.exists(piece):
        return piece
    log("python%s: fetching wheels with the host's pip: %s" % (pyv, " ".join(reqs)))
    tmp = base + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    wheels = os.path.join(tmp, "wheels")
    site = os.path.join(tmp, "site")
    os.makedirs(wheels)
    os.makedirs(site)
    cmd = host_pip() + ["download", "--disable-pip-version-check", "--quiet",
                        "--only-binary=:all:", "--platform", "any", "--python-version", pyv,
                        "--implementation", "py", "-d", wheels] + reqs
    res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         universal_newlines=True)
    if res.returncode != 0:
        raise XenvmError("pip download for python%s failed (only pure-Python wheels can be "
                         "used in dom0):\n%s" % (pyv, res.stdout[-2500:]))
    names = sorted(n for n in os.listdir(wheels) if n.endswith(".whl"))
    for n in names:
        with zipfile.ZipFile(os.path.join(wheels, n)) as z:
            z.extractall(site)
    # wheels' .data/purelib|platlib go to site-packages proper
    for n in os.listdir(site):
        if n.endswith(".data"):
            for sub in ("purelib", "platlib"):
                d = os.path.join(site, n, sub)
                if os.path.isdir(d):
                    for x in os.listdir(d):
                        shutil.move(os.path.join(d, x), os.path.join(site, x))
            shutil.rmtree(os.path.join(site, n))
    compile_pyc(image["root"], pyv, [site], site, DOM0_DIR)
    with open(os.path.join(tmp, "pip.cpio.gz"), "wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as gz:
            w = CpioWriter(gz)
            w.dir("opt")
            w.dir("opt/xenvm")
            w.add_tree(site, DOM0_DIR.lstrip("/"))
            w.dir(DOM0_DIR.lstrip("/"))
            w.close()
    write_json(os.path.join(tmp, "wheels.json"), {"python": pyv, "requirements": reqs,
                                                  "wheels": names})
    shutil.rmtree(base, ignore_errors=True)
    os.replace(tmp, base)
    log("python%s: %d wheels: %s" % (pyv, len(names), ", ".join(names)))
    return piece
