"""The ssh process that carries one remote handle, and what its failures mean."""

from __future__ import annotations

import errno
import os
import select
import shlex
import subprocess
import threading
import time
from typing import Any, Dict, List, NamedTuple, Optional, Tuple
from urllib.parse import parse_qsl, unquote, urlsplit

from .. import errors
from . import _boot, _codec

__all__ = ["Target", "parse_uri", "ssh_argv", "Link", "SSH_PARAMS"]

#: libvirt's ssh query parameters that apply here, plus python= and timeout=.
SSH_PARAMS = ("keyfile", "no_verify", "no_tty", "known_hosts", "python", "command", "timeout")
#: libvirt parameters that name something xenprivcmd does not have.
_LIBVIRT_ONLY = ("socket", "netcat", "mode", "proxy", "name", "pkipath", "no_check_host", "sshauth",
                 "known_hosts_verify", "tls_priority")
#: Seconds allowed for ssh to connect (its ConnectTimeout) and for the handshake.
CONNECT_TIMEOUT = 15
HANDSHAKE_TIMEOUT = 120.0
#: Default seconds an operation may take before the connection is given up.
OP_TIMEOUT = 60.0
#: Lines of stray output (a login banner, a noisy shell rc) skipped before the magic line.
_MAX_JUNK = 64 << 10


class Target(NamedTuple):
    """What a ``xen+ssh://`` / ``sim+ssh://`` URI says."""

    scheme: str
    user: Optional[str]
    host: str
    port: Optional[int]
    remote_uri: str
    keyfile: Optional[str]
    known_hosts: Optional[str]
    no_verify: bool
    no_tty: bool
    python: str
    command: str
    timeout: float

    @property
    def where(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return (f"{self.user}@" if self.user else "") + host + (f":{self.port}" if self.port else "")


def _flag(name: str, value: str) -> bool:
    if value in ("1", "true", "yes"):
        return True
    if value in ("0", "false", "no", ""):
        return False
    raise ValueError(f"{name}={value!r} must be 0 or 1")


def parse_uri(uri: str) -> Target:
    """Split a remote URI; ``ValueError`` says what is wrong with it."""
    parts = urlsplit(uri)
    scheme = parts.scheme
    if scheme not in ("xen+ssh", "sim+ssh"):
        raise ValueError(f"not a remote URI: {uri!r} (xen+ssh://[user@]host[:port]/, sim+ssh://host/default)")
    try:
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise ValueError(f"{uri!r}: {exc}") from None
    if not host:
        raise ValueError(f"{uri!r} names no host (xen+ssh://[user@]host[:port]/)")
    if parts.password is not None:
        raise ValueError(f"{uri!r}: no password in a URI: ssh asks for it, or use a key (keyfile=)")
    params: Dict[str, str] = {}
    rest: List[Tuple[str, str]] = []
    for k, v in parse_qsl(parts.query, keep_blank_values=True):
        if k in SSH_PARAMS:
            if k in params:
                raise ValueError(f"{uri!r}: {k}= given twice")
            params[k] = v
        elif k in _LIBVIRT_ONLY:
            raise ValueError(f"{uri!r}: libvirt's {k}= has no meaning for xenprivcmd")
        else:
            rest.append((k, v))
    path = unquote(parts.path)
    if scheme == "xen+ssh":
        if path not in ("", "/", "/system"):
            raise ValueError(f"{uri!r}: a xen+ssh URI has the path / (not {path!r})")
        if rest:
            raise ValueError(f"{uri!r}: unknown parameter {rest[0][0]!r} (known: {', '.join(SSH_PARAMS)})")
        remote = "xen:///"
    else:
        query = "&".join(f"{k}={v}" for k, v in rest)
        remote = "sim://" + (path if path.startswith("/") else "/" + path) + (f"?{query}" if query else "")
    timeout = OP_TIMEOUT
    if "timeout" in params:
        try:
            timeout = float(params["timeout"])
        except ValueError:
            raise ValueError(f"timeout={params['timeout']!r} is not a number of seconds") from None
        if not 0 < timeout <= 86400:
            raise ValueError(f"timeout={timeout} must be 0 < seconds <= 86400")
    python = params.get("python", "python3")
    if not python.strip():
        raise ValueError("python= names no interpreter")
    return Target(scheme, unquote(parts.username) if parts.username else None, host, port, remote,
                  params.get("keyfile"), params.get("known_hosts"), _flag("no_verify", params.get("no_verify", "0")),
                  _flag("no_tty", params.get("no_tty", "0")), python, params.get("command", "ssh") or "ssh", timeout)


def ssh_argv(t: Target) -> List[str]:
    """The ssh command line for ``t`` (its remote command is stage 0 of the boot)."""
    argv = [t.command, "-T", "-o", f"ConnectTimeout={CONNECT_TIMEOUT}", "-o", "ServerAliveInterval=5",
            "-o", "ServerAliveCountMax=3"]
    if t.port is not None:
        argv += ["-p", str(t.port)]
    if t.user:
        argv += ["-l", t.user]
    if t.keyfile:
        argv += ["-i", t.keyfile]
    if t.known_hosts:
        argv += ["-o", f"UserKnownHostsFile={t.known_hosts}"]
    if t.no_verify:
        argv += ["-o", "StrictHostKeyChecking=no"]
    if t.no_tty:
        argv += ["-o", "BatchMode=yes"]
    return argv + ["--", t.host, f"{t.python} -c {shlex.quote(_boot.STAGE0)}"]


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def classify(t: Target, status: Optional[int], stderr: str) -> errors.RemoteError:
    """The typed error for an ssh that ended before the remote helper spoke."""
    where = t.where
    low = stderr.lower()
    err: errors.RemoteError
    if "remote host identification has changed" in low:
        err = errors.HostKeyMismatch(errno.EKEYREJECTED, f"{where}: host key mismatch: the server's key is not the "
                                     "one in known_hosts (refused; if the host was reinstalled, fix known_hosts)")
    elif "host key verification failed" in low or "no matching host key" in low:
        err = errors.HostKeyMismatch(errno.EKEYREJECTED, f"{where}: host key verification failed: the server's key "
                                     "is not known (add it to known_hosts, known_hosts=FILE, or no_verify=1)")
    elif any(s in low for s in ("permission denied (", "permission denied, please", "too many authentication")):
        err = errors.AuthenticationFailed(errno.EACCES, f"{where}: authentication failed: "
                                          f"{_last_line(stderr)} (keyfile=, or the key in ssh-agent)")
    elif any(s in low for s in ("connection refused", "no route to host", "timed out", "could not resolve",
                                "name or service not known", "network is unreachable", "connection reset",
                                "connection closed by", "kex_exchange_identification")):
        err = errors.HostUnreachable(errno.EHOSTUNREACH, f"{where}: host unreachable: {_last_line(stderr)}")
    elif status == 127 or "not found" in low or "no such file" in low:
        err = errors.NoRemotePython(errno.ENOENT, f"{where}: no python3 on the remote ({t.python!r}: "
                                    f"{_last_line(stderr) or 'not found'}); python=PATH names another")
    elif status is not None and status < 0:
        err = errors.ConnectionLost(errno.ECONNRESET, f"{where}: ssh was killed (signal {-status})")
    else:
        err = errors.ProtocolMismatch(errno.EPROTO, f"{where}: the remote did not start xenprivcmd's helper "
                                      f"(ssh status {status}): {_last_line(stderr) or 'no output'}")
    err.host = where
    return err


class Link:
    """One ``ssh`` child and the framed stream over its stdin/stdout.

    ``send``/``recv`` take a deadline; a read that meets end of stream or
    the deadline kills ssh and raises :class:`~xenprivcmd.errors.ConnectionLost`.
    stderr is kept (the last 64 KiB) to tell why ssh failed.
    """

    def __init__(self, target: Target, argv: Optional[List[str]] = None) -> None:
        self.target = target
        self.argv = argv or ssh_argv(target)
        self.bytes_sent = 0
        self.bytes_received = 0
        self._buf = bytearray()
        self._err = bytearray()
        try:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, bufsize=0, close_fds=True)
        except FileNotFoundError:
            raise errors.HostUnreachable(errno.ENOENT, f"no ssh client: {target.command!r} not found "
                                         "(install openssh-client, or command=PATH)") from None
        assert self.proc.stdin and self.proc.stdout and self.proc.stderr
        self._in = self.proc.stdin
        self._out = self.proc.stdout.fileno()
        self._stderr_thread = threading.Thread(target=self._drain, args=(self.proc.stderr,), daemon=True)
        self._stderr_thread.start()

    def _drain(self, f: Any) -> None:
        while True:
            chunk = f.read(4096)
            if not chunk:
                return
            self._err += chunk
            del self._err[:-65536]

    @property
    def stderr(self) -> str:
        return bytes(self._err).decode("utf-8", "replace")

    # -- raw bytes ------------------------------------------------------------------------------------
    def _fill(self, deadline: float) -> bool:
        """Read what is there into the buffer; False at end of stream."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        ready, _, _ = select.select([self._out], [], [], left)
        if not ready:
            raise TimeoutError
        chunk = os.read(self._out, 1 << 16)
        if not chunk:
            return False
        self.bytes_received += len(chunk)
        self._buf += chunk
        return True

    def read_exact(self, n: int, deadline: float) -> Optional[bytes]:
        while len(self._buf) < n:
            if not self._fill(deadline):
                return None
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def read_magic(self, deadline: float) -> Optional[bytes]:
        """The first line starting with ``XENPRIVCMD-`` (stray output before it is skipped)."""
        while True:
            while b"\n" in self._buf:
                line, _, rest = bytes(self._buf).partition(b"\n")
                self._buf = bytearray(rest)
                if line.startswith(b"XENPRIVCMD-"):
                    return line
            if len(self._buf) > _MAX_JUNK:
                return b""
            if not self._fill(deadline):
                return None

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = self._in.write(view)
            view = view[n or 0:]
        self.bytes_sent += len(data)

    # -- frames ------------------------------------------------------------------------------------------
    def send(self, msg: Dict[str, Any]) -> None:
        import json

        data = json.dumps(msg, separators=(",", ":")).encode("utf-8")
        self.write(len(data).to_bytes(4, "big") + data)

    def recv(self, deadline: float) -> Optional[Dict[str, Any]]:
        header = self.read_exact(4, deadline)
        if header is None:
            return None
        data = self.read_exact(_codec.frame_length(header), deadline)
        if data is None:
            return None
        return _codec.parse_frame(data)

    # -- end ----------------------------------------------------------------------------------------------
    def wait(self, seconds: float) -> Optional[int]:
        try:
            return self.proc.wait(seconds)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._stderr_thread.join(1.0)

    def close(self, grace: float = 5.0) -> None:
        """Close our end of the stream; give ssh ``grace`` seconds to end, then kill it."""
        try:
            self._in.close()
        except OSError:
            pass
        if self.wait(grace) is None:
            self.kill()
        self._stderr_thread.join(1.0)
        if self.proc.stdout:
            self.proc.stdout.close()
