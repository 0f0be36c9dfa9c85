"""Pure-Python wheels for dom0's python, fetched with the host's pip."""

import gzip
import os
import re
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


# --- PEP 508 environment markers, evaluated for dom0's python -----------------
# pip download --python-version checks wheel tags and Requires-Python for the
# target, but evaluates markers (e.g. 'exceptiongroup; python_version < "3.11"')
# for the host's python; so the dependencies are completed here.

_TOK = re.compile(r"\s*(\(|\)|===|==|!=|<=|>=|~=|<|>|not\s+in\b|in\b|and\b|or\b|not\b|"
                  r"'[^']*'|\"[^\"]*\"|[A-Za-z_][A-Za-z0-9_.]*)")
_VERSION_VARS = ("python_version", "python_full_version", "implementation_version")


def _marker_env(pyv, machine="x86_64"):
    return {"python_version": pyv, "python_full_version": pyv + ".0",
            "implementation_version": pyv + ".0", "os_name": "posix",
            "sys_platform": "linux", "platform_system": "Linux", "platform_machine": machine,
            "platform_release": "", "platform_version": "", "implementation_name": "cpython",
            "platform_python_implementation": "CPython", "extra": ""}


def _vtuple(v):
    return tuple(int(x) if x.isdigit() else 0 for x in re.split(r"[.]", v.split("+")[0]) if x)


def _cmp(op, a, b, version):
    if op in ("in", "not in"):
        r = a in b
        return r if op == "in" else not r
    if version:
        try:
            a, b = _vtuple(a), _vtuple(b)
            if op == "~=":
                return a >= b and a[:len(b) - 1] == b[:len(b) - 1]
        except ValueError:
            pass
    return {"==": a == b, "===": a == b, "!=": a != b, "<": a < b, "<=": a <= b,
            ">": a > b, ">=": a >= b, "~=": a >= b}[op]


def eval_marker(text, env):
    toks = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOK.match(text, pos)
        if not m:
            raise ValueError("bad marker: %r" % text)
        toks.append(re.sub(r"\s+", " ", m.group(1)))
        pos = m.end()
    i = [0]

    def peek():
        return toks[i[0]] if i[0] < len(toks) else None

    def take():
        i[0] += 1
        return toks[i[0] - 1]

    def value():
        t = take()
        if t[0] in "'\"":
            return t[1:-1], False
        return env.get(t, ""), t in _VERSION_VARS

    def atom():
        if peek() == "(":
            take()
            r = expr()
            take()
            return r
        a, av = value()
        op = take()
        b, bv = value()
        return _cmp(op, a, b, av or bv)

    def conj():
        r = atom()
        while peek() == "and":
            take()
            r = atom() and r
        return r

    def expr():
        r = conj()
        while peek() == "or":
            take()
            r = conj() or r
        return r

    return expr()


def _norm_name(n):
    return re.sub(r"[-_.]+", "-", n).lower()


def _wheel_requirements(path, env):
    """(project name, [requirement strings that apply to env])."""
    name, reqs = None, []
    with zipfile.ZipFile(path) as z:
        meta = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
        text = z.read(meta[0]).decode("utf-8", "replace") if meta else ""
    for line in text.split("\n\n", 1)[0].splitlines():
        if line.startswith("Name:"):
            name = _norm_name(line.split(":", 1)[1].strip())
        elif line.startswith("Requires-Dist:"):
            req = line.split(":", 1)[1].strip()
            req, _, marker = req.partition(";")
            if marker.strip():
                try:
                    if not eval_marker(marker, env):
                        continue
                except (ValueError, IndexError, KeyError):
                    continue
            reqs.append(req.strip())
    return name, reqs


def pip_piece(cache, image, spec):
    """Returns the path of a gzipped cpio holding the wheels unpacked under
    /opt/xenvm/pip (byte-compiled for the suite's python), or None."""
    reqs = spec.split()
    if not reqs:
        return None
    pyv = image["python_version"]
    machine = image.get("arch", "x86_64")
    kparts = [TOOL_VERSION, pyv, reqs, image["packages"].get("python%s-minimal" % pyv)]
    key = key_of(kparts if machine == "x86_64" else kparts + [machine])
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
    env = _marker_env(pyv, machine)
    for _ in range(10):
        have, wanted = set(), {}
        for n in os.listdir(wheels):
            if n.endswith(".whl"):
                name, reqs = _wheel_requirements(os.path.join(wheels, n), env)
                have.add(name)
                for r in reqs:
                    m = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)", r)
                    if m:
                        wanted[_norm_name(m.group(1))] = re.sub(r"\[[^\]]*\]", "", r)
        todo = [r for n, r in sorted(wanted.items()) if n not in have]
        if not todo:
            break
        res = subprocess.run(cmd[:cmd.index("-d")] + ["-d", wheels] + todo,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             universal_newlines=True)
        if res.returncode != 0:
            raise XenvmError("pip download for python%s failed:\n%s" % (pyv, res.stdout[-2500:]))
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
    compile_pyc(image.get("pyc_root", image["root"]), pyv, [site], site, DOM0_DIR)
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
