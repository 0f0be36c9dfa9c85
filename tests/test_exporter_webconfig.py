"""``--web.config.file``: the YAML subset, the checks of the file, bcrypt, and the exporter serving
TLS and basic auth (Python's ssl and http.client as the other side; a real Prometheus is in
tests/test_exporter_prometheus.py)."""

from __future__ import annotations

import base64
import http.client
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Iterator, Optional, Tuple

import pytest
import yaml

from xenprivcmd.exporter import webconfig
from xenprivcmd.exporter.webconfig import WebConfigError, load, parse_yaml

from .exporter_helpers import ROOT, bcrypt_hash, env, make_certs, one, parse, start_exporter, stop_exporter

SAMPLES = [
    # exporter-toolkit's documented shape, with comments, quotes and the forms people write
    """# web config
tls_server_config:
  cert_file: server.crt   # the certificate
  key_file: "server.key"
  client_auth_type: 'RequireAndVerifyClientCert'
  client_ca_file: ca.crt
  client_allowed_sans:
    - prometheus.test
    - "other # not a comment"
  min_version: TLS12
  prefer_server_cipher_suites: false
http_server_config:
  http2: true
  headers:
    X-Frame-Options: deny
    Content-Security-Policy: "default-src 'self'"
basic_auth_users:
  alice: $2y$10$mDwo.lAisC94iLAyP81MCesa29IzH37oigHC/42V2pdJlUprsJPze
  "bob smith": '$2b$12$hNf2lSsxfm0.i4a.1kVpSOVyBCfIB51VRjgBUyv6kdnyTlgWj81Ay'
""",
    "---\nbasic_auth_users:\nbasic_auth_users2: ~\nlist: [a, 'b c', 3]\nempty: []\nn: -12\nquote: 'it''s'\n",
    "tls_server_config:\n    cert_file: a\n    key_file: b\nlist:\n- x\n- y\nesc: \"a\\\"b\\\\c\\u00e9\"\n",
]


@pytest.mark.parametrize("source", SAMPLES)
def test_the_yaml_subset_reads_as_pyyaml_does(source: str) -> None:
    assert parse_yaml(source) == yaml.safe_load(source)


@pytest.mark.parametrize("source, line, words", [
    ("a: &x 1\n", 1, "anchors"),
    ("a: *x\n", 1, "aliases"),
    ("a: !!str 1\n", 1, "tags"),
    ("a: |\n  text\n", 1, "block scalars"),
    ("a: {b: 1}\n", 1, "flow mappings"),
    ("a:\n\tb: 1\n", 2, "tab"),
    ("a: 1\na: 2\n", 2, "twice"),
    ("a:\n  b: 1\n    c: 2\n", 3, "indentation"),
    ("a: 'open\n", 1, "unterminated"),
    ("a:\n  - b: 1\n", 2, "mappings inside lists"),
    ("a: [[1]]\n", 1, "flat list"),
    ("a: b: c\n", 1, "mapping in a value"),
    ("a:\n- x\nb: 1\n  c: 2\n", 4, "indentation"),
])
def test_outside_the_subset_is_an_error_naming_the_line(source: str, line: int, words: str) -> None:
    with pytest.raises(WebConfigError) as e:
        parse_yaml(source, "web.yml")
    assert f"web.yml:{line}:" in str(e.value) and words in str(e.value)


def test_bcrypt_known_answers() -> None:
    # the classic crypt_blowfish vectors, and Prometheus' basic-auth guide's hash of "test"
    for password, hashed in [
        (b"U*U", b"$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW"),
        (b"U*U*", b"$2a$05$CCCCCCCCCCCCCCCCCCCCC.VGOzA784oUp/Z0DY336zx7pLYAy0lwK"),
        (b"U*U*U", b"$2a$05$XXXXXXXXXXXXXXXXXXXXXOAcXxm9kjPGEMsLznoKqmqw7tc8WCx4a"),
        (b"test", b"$2b$12$hNf2lSsxfm0.i4a.1kVpSOVyBCfIB51VRjgBUyv6kdnyTlgWj81Ay"),
    ]:
        assert webconfig.bcrypt_verify(password, hashed)
        assert not webconfig.bcrypt_verify(password + b"x", hashed)
    assert not webconfig.bcrypt_verify(b"test", b"$1$saltsalt$notbcrypt")  # no other crypt scheme is accepted


def test_basic_auth_remembers_a_verified_password_per_user_only() -> None:
    h = bcrypt_hash("s3cret", cost=8)
    auth = webconfig.BasicAuth({"prom": h})

    def header(user: str, pw: str) -> str:
        return "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()

    t0 = time.perf_counter()
    assert auth.check(header("prom", "s3cret")) == "prom"
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(20):
        assert auth.check(header("prom", "s3cret")) == "prom"
    again = (time.perf_counter() - t0) / 20
    assert again < first / 10, (first, again)  # remembered: no bcrypt per scrape
    assert len(auth._ok) == 1 and b"s3cret" not in auth._ok["prom"][1]
    for bad in (header("prom", "wrong"), header("nobody", "s3cret"), "Basic !!!", "Bearer x", None, "",
                "Basic " + base64.b64encode(b"no-colon").decode()):
        assert auth.check(bad) is None
    assert list(auth._ok) == ["prom"]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, str]:
    return make_certs(tmp_path_factory.mktemp("certs"))


def _write(tmp: Path, text: str) -> str:
    p = tmp / "web.yml"
    p.write_text(text)
    return str(p)


@pytest.mark.parametrize("text, words", [
    ("tls_server_config:\n  cert_file: x\n", "key_file is required"),
    ("tls_server_config:\n  cert_file: {crt}\n  key_file: {key}\n  cipher_suites: [TLS_AES_128_GCM_SHA256]\n",
     "cipher_suites"),
    ("tls_server_config:\n  cert: inline\n  key_file: {key}\n", "inline certificates"),
    ("tls_server_config:\n  cert_file: {crt}\n  key_file: {key}\n  client_auth_type: RequireAnyClientCert\n",
     "not supported"),
    ("tls_server_config:\n  cert_file: {crt}\n  key_file: {key}\n  client_auth_type: Sometimes\n", "not one of"),
    ("tls_server_config:\n  cert_file: {crt}\n  key_file: {key}\n  client_ca_file: {ca}\n", "NoClientCert"),
    ("tls_server_config:\n  cert_file: {crt}\n  key_file: {key}\n  client_auth_type: RequireAndVerifyClientCert\n",
     "needs client_ca_file"),
    ("tls_server_config:\n  cert_file: {crt}\n  key_file: {key}\n  min_version: TLS13\n  max_version: TLS12\n",
     "above max_version"),
    ("tls_server_config:\n  cert_file: {crt}\n  key_file: {key}\n  min_version: SSL3\n", "not one of"),
    ("tls_server_config:\n  cert_file: {crt}\n  key_file: {ca}\n", "cannot load cert_file"),
    ("tls_server_config:\n  cert_file: /nonexistent.crt\n  key_file: {key}\n", "cannot load cert_file"),
    ("tls_server_confg:\n  cert_file: {crt}\n", "unknown key 'tls_server_confg'"),
    ("basic_auth_users:\n  prom: secret\n", "not a bcrypt hash"),
    ("basic_auth_users:\n  'a:b': $2b$12$hNf2lSsxfm0.i4a.1kVpSOVyBCfIB51VRjgBUyv6kdnyTlgWj81Ay\n", "no ':'"),
    ("basic_auth_users: [alice]\n", "expected a mapping"),
    ("http_server_config:\n  headers:\n    X-Powered-By: me\n", "unknown key"),
    ("rate_limit:\n  interval: 1s\n", "rate_limit is not supported"),
    ("- just a list\n", "expected a mapping"),
])
def test_a_file_it_cannot_use_is_refused_with_the_reason(tmp_path: Path, certs: Dict[str, str], text: str,
                                                          words: str) -> None:
    path = _write(tmp_path, text.format(crt=certs["server_crt"], key=certs["server_key"], ca=certs["ca"]))
    with pytest.raises(WebConfigError) as e:
        load(path)
    assert words in str(e.value) and path in str(e.value)


def test_relative_paths_are_from_the_files_directory(tmp_path: Path, certs: Dict[str, str]) -> None:
    for k in ("server_crt", "server_key"):
        (tmp_path / Path(certs[k]).name).write_bytes(Path(certs[k]).read_bytes())
    c = load(_write(tmp_path, "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"))
    assert c.tls is not None and c.tls.cert_file == str(tmp_path / "server.crt") and c.context is not None
    assert c.tls.min_version == "TLS12" and c.context.minimum_version == ssl.TLSVersion.TLSv1_2


def _exporter(*args: str) -> "subprocess.CompletedProcess[str]":
    return subprocess.run([sys.executable, "-m", "xenprivcmd.exporter", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=60, env=env())


def test_the_exporter_refuses_a_bad_file_with_one_error_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "basic_auth_users:\n  prom: &a x\n")
    r = _exporter("--uri", "sim:///default", "--listen", "127.0.0.1:0", "--web.config.file", path)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and r.stderr.startswith("error: --web.config.file ")
    assert f"{path}:2: anchors" in r.stderr
    r = _exporter("--uri", "sim:///default", "--once", f"--web.config.file={tmp_path / 'missing.yml'}")
    assert r.returncode == 1 and "cannot read it" in r.stderr and r.stdout == ""


# -- serving ---------------------------------------------------------------------------------------

USER, PASSWORD = "prometheus", "correct horse"


@pytest.fixture(scope="module")
def served(certs: Dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tuple[int, str]]:
    d = tmp_path_factory.mktemp("web")
    path = d / "web.yml"
    path.write_text(f"tls_server_config:\n  cert_file: {certs['server_crt']}\n  key_file: {certs['server_key']}\n"
                    f"http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n"
                    f"basic_auth_users:\n  {USER}: {bcrypt_hash(PASSWORD)}\n")
    p, port = start_exporter("sim:///default", "--min-interval", "0", "--web.config.file", str(path), scheme="https")
    yield port, str(path)
    assert stop_exporter(p) == 0
    assert p.stderr is not None and "Traceback" not in p.stderr.read()


def _client(certs: Dict[str, str], cert: Optional[Tuple[str, str]] = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=certs["ca"])
    if cert:
        ctx.load_cert_chain(*cert)
    return ctx


def _get(port: int, ctx: ssl.SSLContext, auth: Optional[Tuple[str, str]] = None,
         path: str = "/metrics") -> Tuple[int, Dict[str, str], bytes]:
    c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=30)
    headers = {}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    try:
        c.request("GET", path, headers=headers)
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def test_tls_with_the_right_password_answers(served: Tuple[int, str], certs: Dict[str, str]) -> None:
    code, headers, body = _get(served[0], _client(certs), (USER, PASSWORD))
    assert code == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    assert headers["x-content-type-options"] == "nosniff"
    s = parse(body)
    assert one(s, "xen_up") == 1 and len(s["xen_domain_vcpus"]) == 4


@pytest.mark.parametrize("auth", [None, (USER, "wrong"), ("nobody", PASSWORD), (USER, "")])
def test_a_missing_or_wrong_password_gets_401(served: Tuple[int, str], certs: Dict[str, str],
                                              auth: Optional[Tuple[str, str]]) -> None:
    for path in ("/metrics", "/", "/nothing"):
        code, headers, body = _get(served[0], _client(certs), auth, path)
        assert code == 401 and headers["www-authenticate"].startswith("Basic realm=")
        assert b"xen_" not in body and headers["x-content-type-options"] == "nosniff"


def test_plain_http_on_the_tls_port_gets_no_answer(served: Tuple[int, str]) -> None:
    with socket.create_connection(("127.0.0.1", served[0]), timeout=30) as s:
        s.sendall(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        got = b""
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
        except ConnectionResetError:
            pass
    assert b"HTTP/" not in got and b"xen_" not in got  # at most a TLS alert record, never an HTTP answer


def test_a_client_that_does_not_trust_the_certificate_fails(served: Tuple[int, str], certs: Dict[str, str]) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        _get(served[0], ssl.create_default_context(cafile=certs["other_ca"]), (USER, PASSWORD))


def test_client_certificates(tmp_path: Path, certs: Dict[str, str]) -> None:
    def serve(extra: str) -> Tuple["subprocess.Popen[str]", int]:
        path = _write(tmp_path, f"tls_server_config:\n  cert_file: {certs['server_crt']}\n"
                                f"  key_file: {certs['server_key']}\n  client_ca_file: {certs['ca']}\n{extra}")
        return start_exporter("sim:///default", "--web.config.file", path, scheme="https")

    mine, other = (certs["client_crt"], certs["client_key"]), (certs["other_crt"], certs["other_key"])
    p, port = serve("  client_auth_type: RequireAndVerifyClientCert\n")
    try:
        assert _get(port, _client(certs, mine))[0] == 200
        for cert in (None, other):  # none, or one of another CA: the handshake fails, no answer
            with pytest.raises((ssl.SSLError, ConnectionError)):
                _get(port, _client(certs, cert))
    finally:
        assert stop_exporter(p) == 0
    p, port = serve("  client_auth_type: RequireAndVerifyClientCert\n  client_allowed_sans: [someone.else]\n")
    try:  # a verified certificate without an allowed name: closed unanswered
        with pytest.raises((http.client.HTTPException, ConnectionError, ssl.SSLError)):
            _get(port, _client(certs, mine))
    finally:
        assert stop_exporter(p) == 0
    p, port = serve("  client_auth_type: VerifyClientCertIfGiven\n")
    try:
        assert _get(port, _client(certs))[0] == 200 and _get(port, _client(certs, mine))[0] == 200
        with pytest.raises((ssl.SSLError, ConnectionError)):
            _get(port, _client(certs, other))
    finally:
        assert stop_exporter(p) == 0


def test_a_changed_file_applies_to_the_next_connection(tmp_path: Path) -> None:
    path = _write(tmp_path, f"basic_auth_users:\n  a: {bcrypt_hash('one')}\n")
    p, port = start_exporter("sim:///default", "--web.config.file", path)
    try:
        def code(user: str, pw: str) -> int:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            tok = base64.b64encode(f"{user}:{pw}".encode()).decode()
            c.request("GET", "/metrics", headers={"Authorization": f"Basic {tok}"})
            status = c.getresponse().status
            c.close()
            return status

        assert (code("a", "one"), code("b", "two")) == (200, 401)
        time.sleep(0.01)
        _write(tmp_path, f"basic_auth_users:\n  b: {bcrypt_hash('two')}\n")
        assert (code("a", "one"), code("b", "two")) == (401, 200)
        _write(tmp_path, "basic_auth_users:\n  b: not-a-hash\n")  # broken: the last good settings stay
        assert code("b", "two") == 200
    finally:
        assert stop_exporter(p) == 0
    assert p.stderr is not None
    log = p.stderr.read()
    assert "reloaded --web.config.file" in log and "keeping the previous settings" in log
    assert log.count("keeping the previous settings") == 1
