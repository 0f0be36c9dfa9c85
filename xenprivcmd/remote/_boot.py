"""How the package reaches a remote that only has ``python3``.

The client runs ``PYTHON -c STAGE0`` over ssh.  :data:`STAGE0` (one line,
no single quote, so it survives the remote shell) prints the magic line
``XENPRIVCMD-BOOT 1`` and executes the frame that follows on its stdin:
:data:`STAGE1`.  Stage 1 reads the client's parameters (its xenprivcmd
version, protocol and bundle hash) and then, in this order:

1. an installed ``xenprivcmd`` of the same version and protocol is used
   (``source`` ``"installed"``);
2. else a bundle already unpacked under ``$XDG_CACHE_HOME`` (or
   ``~/.cache``) ``/xenprivcmd-remote/VERSION-HASH`` (``"cached"``);
3. else it asks for the bundle (``{"status": "need"}``), checks its SHA-256,
   unpacks it there (a temporary directory renamed into place, so a half
   copy is never used; a private temporary directory when the cache is not
   writable) and uses it (``"shipped"``).

The bundle is a deterministic zip of this ``xenprivcmd`` package and of the
``construct`` package it uses for its slow paths, so its hash changes with
any byte of either: a cache entry is never reused across versions.  Then
:func:`xenprivcmd.remote._server.serve` takes over the same streams.

Stage 1 stays Python-3.0-compatible syntax so an old ``python3`` can say it is
too old (``{"status": "old"}``) instead of failing to parse.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
import zipfile
from typing import List, Optional, Tuple

__all__ = ["STAGE0", "STAGE1", "BOOT_MAGIC", "HELPER_MAGIC", "bundle", "build_bundle", "MIN_PYTHON"]

BOOT_MAGIC = b"XENPRIVCMD-BOOT 1"
HELPER_MAGIC = b"XENPRIVCMD-HELPER"
MIN_PYTHON = (3, 9)

STAGE0 = (
    "import sys,struct;o=sys.stdout.buffer;o.write(b\"\\nXENPRIVCMD-BOOT 1\\n\");o.flush();"
    "i=sys.stdin.buffer;n=struct.unpack(\">I\",i.read(4))[0];"
    "exec(compile(i.read(n),\"xenprivcmd-boot\",\"exec\"))"
)

STAGE1 = r'''
import hashlib, io, json, os, shutil, struct, sys, tempfile, zipfile

_in, _out = sys.stdin.buffer, sys.stdout.buffer


def _send(msg):
    data = json.dumps(msg).encode("utf-8")
    _out.write(struct.pack(">I", len(data)) + data)
    _out.flush()


def _recv():
    n = struct.unpack(">I", _in.read(4))[0]
    return _in.read(n)


def _forget():
    for name in list(sys.modules):
        if name == "xenprivcmd" or name.startswith("xenprivcmd."):
            del sys.modules[name]


def _installed(params):
    try:
        import xenprivcmd.remote as r
        if r.VERSION == params["version"] and r.PROTOCOL == params["protocol"]:
            return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(r.__file__))))
    except Exception:
        pass
    _forget()
    return None


def _cache_dir(params):
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "xenprivcmd-remote", "%s-%s" % (params["version"], params["hash"][:16]))


def _unpack(data, where):
    parent = os.path.dirname(where)
    try:
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".unpack-", dir=parent)
    except OSError:
        tmp = tempfile.mkdtemp(prefix="xenprivcmd-remote-")
        zipfile.ZipFile(io.BytesIO(data)).extractall(tmp)
        import atexit
        atexit.register(shutil.rmtree, tmp, True)
        return tmp, "shipped (temporary)"
    zipfile.ZipFile(io.BytesIO(data)).extractall(tmp)
    try:
        os.rename(tmp, where)
    except OSError:
        shutil.rmtree(tmp, True)
        if not os.path.isdir(where):
            raise
    return where, "shipped"


def _main():
    params = json.loads(_recv().decode("utf-8"))
    if sys.version_info[:2] < tuple(params["min_python"]):
        _send({"status": "old", "python": "%d.%d.%d" % sys.version_info[:3], "executable": sys.executable})
        return
    path = _installed(params)
    source = "installed"
    if path is None:
        path = _cache_dir(params)
        source = "cached"
        if not os.path.isfile(os.path.join(path, "xenprivcmd", "remote", "_server.py")):
            _send({"status": "need"})
            data = _recv()
            if hashlib.sha256(data).hexdigest() != params["hash"]:
                _send({"status": "corrupt"})
                return
            path, source = _unpack(data, path)
        sys.path.insert(0, path)
    from xenprivcmd.remote import _server
    _server.serve(_in, _out, source=source, path=path)


_main()
'''

_lock = threading.Lock()
_bundle: Optional[Tuple[bytes, str]] = None


def _package_files(root: str, prefix: str) -> List[Tuple[str, str]]:
    out = []
    for d, dirs, files in os.walk(root):
        dirs[:] = sorted(x for x in dirs if x != "__pycache__")
        for f in files:
            if f.endswith(".py") or f == "py.typed":
                full = os.path.join(d, f)
                out.append((prefix + "/" + os.path.relpath(full, root).replace(os.sep, "/"), full))
    return out


def _find_construct() -> Optional[str]:
    import importlib.util

    spec = importlib.util.find_spec("construct")
    if spec is None or not spec.submodule_search_locations:
        return None
    return list(spec.submodule_search_locations)[0]


def build_bundle(packages: List[Tuple[str, str]]) -> Tuple[bytes, str]:
    """(zip bytes, SHA-256) of the ``.py`` files of each (directory, name) package; deterministic."""
    files: List[Tuple[str, str]] = []
    for root, name in packages:
        files += _package_files(root, name)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, full in sorted(files):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            with open(full, "rb") as f:
                z.writestr(info, f.read())
    data = buf.getvalue()
    return data, hashlib.sha256(data).hexdigest()


def bundle() -> Tuple[bytes, str]:
    """(zip bytes, their SHA-256) of this xenprivcmd and construct (built once per process)."""
    global _bundle
    with _lock:
        if _bundle is None:
            packages = [(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "xenprivcmd")]
            construct = _find_construct()
            if construct is not None:
                packages.append((construct, "construct"))
            _bundle = build_bundle(packages)
        return _bundle
