"""The per-boot cache of the detected ABI variant.

Detection (:mod:`xenprivcmd.abi.detect`) probes the hypervisor and reads the
ABI tables of a whole release series; a one-shot ``xpsh list`` run every few
seconds should not redo that.  The result is kept in one small text file:

* where: ``$XENPRIVCMD_CACHE_DIR`` when set (empty: no cache), else
  ``/run/xenprivcmd/`` for root (a tmpfs: gone at the next boot), else
  ``$XDG_CACHE_HOME/xenprivcmd/`` (``~/.cache/xenprivcmd/``);
* keyed by everything that identifies the running hypervisor and this
  package: the transport kind and arch, the dom0 kernel's boot id (and boot
  time), Xen's version, extraversion, changeset, compile information and
  build id, xenprivcmd's version and the digest of its generated tables.
  Any difference, and the file is ignored (and rewritten after detection);
* trusted only when it is a regular file owned by the caller, mode 0600, in a
  directory owned by the caller that no one else may write, small, and in
  the exact format below; anything else is ignored, never an error;
* written atomically (a private temporary file renamed over the old one);
  an unwritable directory means no cache, silently.

The variant it names is still confirmed by one read-only probe before use
(:func:`xenprivcmd.abi.detect.detect`): a cache can make detection cheaper,
never make it pick a variant the hypervisor refuses.

Format (one ``key=value`` per line, values without newlines)::

    xenprivcmd-abi-cache 1
    key.<name>=<value>     (every identity field)
    release=4.17.3
    method=series + probes
"""

from __future__ import annotations

import os
import stat

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, Optional, Tuple

    from ..transport.privcmd import Transport

__all__ = ["cache_dir", "cache_path", "identity", "load", "store", "MAGIC"]

MAGIC = "xenprivcmd-abi-cache 1"
#: A cache file is a few hundred bytes; anything much larger is not ours.
MAX_SIZE = 8192
ENV = "XENPRIVCMD_CACHE_DIR"


def cache_dir(environ: Optional[Dict[str, str]] = None) -> Optional[str]:
    """The cache directory for this process, or None (cache off)."""
    env = os.environ if environ is None else environ
    if ENV in env:
        return env[ENV] or None
    if os.geteuid() == 0:
        return "/run/xenprivcmd"
    xdg = env.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(xdg):
        home = env.get("HOME") or os.path.expanduser("~")
        if not os.path.isabs(home):
            return None
        xdg = os.path.join(home, ".cache")
    return os.path.join(xdg, "xenprivcmd")


def cache_path(kind: str, arch: str, environ: Optional[Dict[str, str]] = None) -> Optional[str]:
    d = cache_dir(environ)
    if d is None:
        return None
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in f"{kind}-{arch}")
    return os.path.join(d, f"abi-{safe}")


def _read_small(path: str) -> str:
    with open(path, "rb") as f:
        return f.read(256).decode("ascii", "replace").strip()


def boot_identity() -> str:
    """The dom0 kernel's boot id (new at every boot); '' when unreadable."""
    try:
        return _read_small("/proc/sys/kernel/random/boot_id")
    except OSError:
        pass
    try:
        with open("/proc/stat", "rb") as f:
            for line in f:
                if line.startswith(b"btime "):
                    return "btime " + line.split()[1].decode("ascii", "replace")
    except OSError:
        pass
    return ""


def identity(t: Transport, arch: str, major: int, minor: int, extra: str) -> Dict[str, str]:
    """The key of the running hypervisor: what the file must match, field by field.

    Reads (read-only ``xen_version`` sub-ops): changeset, compile info, build id.
    """
    from .. import __version__
    from ..errors import XenprivcmdError
    from ..ops import version as _version
    from ..structs import tables_id

    key = {
        "package": f"{__version__} {tables_id()}",
        "transport": t.kind,
        "arch": arch,
        "boot": boot_identity(),
        "xen": f"{major}.{minor}{extra}",
    }
    xv = _version.boot(t, arch)
    for name in ("changeset", "compile", "build_id"):
        try:
            if name == "changeset":
                key[name] = xv.changeset(False)
            elif name == "compile":
                key[name] = " | ".join(xv.compile_info())
            else:
                key[name] = xv.build_id() or "none"
        except XenprivcmdError as exc:
            key[name] = f"error {getattr(exc, 'errno', '')}"
    return key


def _encode(value: str) -> Optional[str]:
    return None if ("\n" in value or "\r" in value or "\0" in value) else value


def _trusted_dir(path: str) -> bool:
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    return (stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid()
            and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def load(path: str, key: Dict[str, str]) -> Optional[Tuple[str, str]]:
    """(release, method) from the file at ``path`` when it is trustworthy and
    its key equals ``key``; else None (missing, foreign, corrupt, stale)."""
    if not _trusted_dir(os.path.dirname(path)):
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if (not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid()
                or stat.S_IMODE(st.st_mode) != 0o600 or st.st_size > MAX_SIZE):
            return None
        data = os.read(fd, MAX_SIZE + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    lines = text.split("\n")
    if len(lines) < 2 or lines[0] != MAGIC or lines[-1] != "":
        return None
    got: Dict[str, str] = {}
    for line in lines[1:-1]:
        name, sep, value = line.partition("=")
        if not sep or name in got:
            return None
        got[name] = value
    want = {"key." + k: v for k, v in key.items()}
    release, method = got.pop("release", ""), got.pop("method", "")
    if got != want or not release:
        return None
    return release, method


def store(path: str, key: Dict[str, str], release: str, method: str) -> bool:
    """Write the cache atomically (mode 0600); False, silently, when it cannot."""
    fields = [("key." + k, v) for k, v in key.items()] + [("release", release), ("method", method)]
    body = [MAGIC]
    for name, value in fields:
        v = _encode(value)
        if v is None:
            return False
        body.append(f"{name}={v}")
    data = ("\n".join(body) + "\n").encode("utf-8")
    d = os.path.dirname(path)
    tmp = None
    try:
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            pass
        except FileNotFoundError:
            os.makedirs(os.path.dirname(d), 0o700, exist_ok=True)
            os.mkdir(d, 0o700)
        if not _trusted_dir(d):
            return False
        tmp = f"{path}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            os.fchmod(fd, 0o600)  # whatever the umask
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.replace(tmp, path)
        tmp = None
        return True
    except OSError:
        return False
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
