"""Helpers of the exporter tests: parse its text, run it as a process, GET from it.

Used by tests/test_exporter*.py and, inside each real dom0, by
tests/realxen/test_exporter.py.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Dict, List, Tuple

from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
Samples = Dict[str, List[Tuple[Dict[str, str], float]]]


def parse(text: bytes) -> Samples:
    """name -> [(labels, value)] of every sample (prometheus_client's parser)."""
    out: Samples = {}
    for fam in text_string_to_metric_families(text.decode()):
        for s in fam.samples:
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    return out


def by_domid(samples: Samples, name: str) -> Dict[int, float]:
    return {int(lab["domid"]): v for lab, v in samples.get(name, [])}


def one(samples: Samples, name: str) -> float:
    got = samples[name]
    assert len(got) == 1, got
    return got[0][1]


def env() -> Dict[str, str]:
    """This environment with the checkout first on PYTHONPATH (the dom0's wheels dir stays on it)."""
    rest = os.environ.get("PYTHONPATH")
    return dict(os.environ, PYTHONPATH=str(ROOT) + (os.pathsep + rest if rest else ""))


def start_exporter(uri: str, *extra: str, scheme: str = "http") -> Tuple["subprocess.Popen[str]", int]:
    """The exporter as a process on a free port of 127.0.0.1; -> (process, port)."""
    p = subprocess.Popen([sys.executable, "-m", "xenprivcmd.exporter", "--uri", uri, "--listen", "127.0.0.1:0", *extra],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env())
    assert p.stderr is not None
    line = p.stderr.readline()
    m = re.search(f"serving {scheme}://127\\.0\\.0\\.1:(\\d+)/metrics", line)
    assert m, line + (p.stderr.read() if p.poll() is not None else "")
    return p, int(m.group(1))


def stop_exporter(p: "subprocess.Popen[str]") -> int:
    p.send_signal(signal.SIGTERM)
    try:
        return p.wait(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()


def get(url: str) -> Tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.headers["Content-Type"], r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read()




def make_certs(d: Path) -> Dict[str, str]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate it signed (openssl CLI,
    EC P-256, valid two days) -> name -> path: ca, server_crt, server_key, client_crt, client_key,
    other_ca, other_crt, other_key (a client of another CA)."""
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, cwd=d, capture_output=True)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca in ("ca", "other_ca"):
        run("req", "-x509", *ec, "-keyout", f"{ca}.key", "-out", f"{ca}.crt", "-days", "2", "-subj", f"/CN=test {ca}")
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    (d / "client.ext").write_text("subjectAltName=DNS:prometheus.test\nextendedKeyUsage=clientAuth\n")
    for name, ca, ext in (("server", "ca", "server.ext"), ("client", "ca", "client.ext"),
                          ("other", "other_ca", "client.ext")):
        run("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN=test {name}")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial",
            "-out", f"{name}.crt", "-days", "2", "-extfile", ext)
    return {"ca": str(d / "ca.crt"), "server_crt": str(d / "server.crt"), "server_key": str(d / "server.key"),
            "client_crt": str(d / "client.crt"), "client_key": str(d / "client.key"),
            "other_ca": str(d / "other_ca.crt"), "other_crt": str(d / "other.crt"), "other_key": str(d / "other.key")}


_BCRYPT64 = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def bcrypt_hash(password: str, cost: int = 4) -> str:
    """A ``$2b$`` hash of ``password`` by libcrypt's crypt_r (a cheap cost for tests)."""
    import ctypes
    import random

    lib = ctypes.CDLL("libcrypt.so.1")
    lib.crypt_r.restype = ctypes.c_char_p
    lib.crypt_r.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p]
    salt = "".join(random.choice(_BCRYPT64) for _ in range(21)) + "."
    out = lib.crypt_r(password.encode(), f"$2b${cost:02d}${salt}".encode(), ctypes.create_string_buffer(32768))
    assert out and len(out) == 60, out
    return out.decode()
