"""A real OpenSSH server on 127.0.0.1 for the remote tests and the benchmark.

:class:`Sshd` makes a host key and client keys in a temporary directory,
starts Debian's ``/usr/sbin/sshd -D -e -f CONFIG`` on a free port (root login
by key only) and stops it.  ``uri()`` builds a ``sim+ssh://`` /
``xen+ssh://`` URI that uses its keys and known_hosts, with a remote
``python3`` that has no xenprivcmd (``/usr/bin/python3 -S``: no
site-packages) and a private bundle cache.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Dict, List, Optional
from urllib.parse import quote

SSHD = "/usr/sbin/sshd"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: The remote interpreter of the tests: Debian's python3 without site-packages.
REMOTE_PYTHON = "/usr/bin/python3 -S"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def keygen(path: str, comment: str = "xenprivcmd-test") -> str:
    """An ed25519 key pair at ``path``; returns the public key line."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path], check=True)
    with open(path + ".pub", encoding="ascii") as f:
        return f.read().strip()


class Sshd:
    """One sshd: ``start()``, ``uri(...)``, ``stop()`` (also a context manager)."""

    def __init__(self, forced: Optional[Dict[str, str]] = None) -> None:
        if not os.path.exists(SSHD):
            raise RuntimeError(f"{SSHD} is missing: .ci/run installs openssh-server")
        self.dir = tempfile.mkdtemp(prefix="xenprivcmd-sshd-")
        self.port = free_port()
        self.host_key = os.path.join(self.dir, "host_ed25519")
        self.host_pub = keygen(self.host_key, "host")
        self.client_key = os.path.join(self.dir, "client_ed25519")
        lines: List[str] = [keygen(self.client_key)]
        #: name -> private key whose authorized_keys line forces ``command``
        self.forced_keys: Dict[str, str] = {}
        for name, command in (forced or {}).items():
            key = os.path.join(self.dir, f"forced_{name}")
            lines.append(f'command="{command}",restrict ' + keygen(key, name))
            self.forced_keys[name] = key
        self.authorized = os.path.join(self.dir, "authorized_keys")
        with open(self.authorized, "w", encoding="ascii") as f:
            f.write("\n".join(lines) + "\n")
        self.known_hosts = os.path.join(self.dir, "known_hosts")
        with open(self.known_hosts, "w", encoding="ascii") as f:
            f.write(f"[127.0.0.1]:{self.port} {self.host_pub}\n")
        self.cache = os.path.join(self.dir, "cache")
        self.config = os.path.join(self.dir, "sshd_config")
        with open(self.config, "w", encoding="ascii") as f:
            f.write("\n".join([
                f"Port {self.port}", "ListenAddress 127.0.0.1", f"HostKey {self.host_key}",
                f"PidFile {self.dir}/sshd.pid", f"AuthorizedKeysFile {self.authorized}",
                "PermitRootLogin prohibit-password", "PubkeyAuthentication yes", "PasswordAuthentication no",
                "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no", "PrintMotd no",
                "MaxStartups 100:30:200", "MaxSessions 50", "LogLevel INFO", "",
            ]))
        self.log = os.path.join(self.dir, "sshd.log")
        self.proc: Optional[subprocess.Popen[bytes]] = None

    def start(self) -> "Sshd":
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # its privilege separation directory
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", self.config], stdout=log, stderr=log,
                                         stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited with {self.proc.returncode}: {self.log_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(4).startswith(b"SSH-"):
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"sshd did not answer on 127.0.0.1:{self.port}: {self.log_text()}")

    def log_text(self) -> str:
        with open(self.log, encoding="utf-8", errors="replace") as f:
            return f.read()[-4000:]

    def uri(self, scheme: str = "sim+ssh", path: str = "/default", key: Optional[str] = None,
            known_hosts: Optional[str] = None, python: Optional[str] = None, extra: str = "",
            user: str = "root") -> str:
        """A URI for this server (``extra``: more ``&k=v`` parameters)."""
        py = python if python is not None else f"env XDG_CACHE_HOME={self.cache} {REMOTE_PYTHON}"
        q = (f"keyfile={quote(key or self.client_key)}&known_hosts={quote(known_hosts or self.known_hosts)}"
             f"&no_tty=1&python={quote(py)}")
        sep = "&" if "?" in path else "?"
        return f"{scheme}://{user}@127.0.0.1:{self.port}{path}{sep}{q}{extra}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "Sshd":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
