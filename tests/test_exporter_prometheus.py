"""A real Prometheus server (Debian's ``prometheus`` package) scraping the exporter.

The test starts both on 127.0.0.1 (free ports, a temporary configuration and
data directory), waits until Prometheus says ``up == 1`` for the exporter,
asks Prometheus's HTTP API for each domain's ``xen_domain_memory_bytes`` and
``xen_domain_vcpus``, compares them with the simulated host itself, and
stops both.  A second test scrapes over TLS with basic auth, and checks that
scrapes without them are refused.  Without the ``prometheus`` binary the
tests fail: ``tools/run-tests`` installs it.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Dict, List

import xenprivcmd

from .exporter_helpers import bcrypt_hash, make_certs, start_exporter, stop_exporter

URI = "sim:///default"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _query(base: str, expr: str) -> List[Dict[str, Any]]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as r:
        doc = json.load(r)
    assert doc["status"] == "success", doc
    return doc["data"]["result"]  # type: ignore[no-any-return]


def test_prometheus_scrapes_the_exporter_and_sees_the_simulated_host(tmp_path: Path) -> None:
    exe = shutil.which("prometheus") or ("/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None)
    assert exe, "no prometheus binary: apt-get install prometheus (tools/run-tests does)"
    exporter, eport = start_exporter(URI, "--min-interval", "0.5")
    pport = _free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n  - job_name: xen\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{eport}']\n")
    log = open(tmp_path / "prometheus.log", "w+")
    prom = subprocess.Popen([exe, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
                             f"--web.listen-address=127.0.0.1:{pport}", "--log.level=warn"],
                            stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{pport}"
    try:
        deadline = time.monotonic() + 90
        up: List[Dict[str, Any]] = []
        while time.monotonic() < deadline:
            assert prom.poll() is None, "prometheus exited: " + (tmp_path / "prometheus.log").read_text()
            try:
                up = _query(base, 'up{job="xen"}')
            except OSError:  # not listening yet
                up = []
            if up and up[0]["value"][1] == "1":
                break
            time.sleep(0.5)
        assert up and up[0]["value"][1] == "1", f"Prometheus never saw the exporter up: {up}"
        assert up[0]["metric"]["instance"] == f"127.0.0.1:{eport}"
        mem = {int(r["metric"]["domid"]): (r["metric"]["name"], float(r["value"][1]))
               for r in _query(base, 'xen_domain_memory_bytes{job="xen"}')}
        vcpus = {int(r["metric"]["domid"]): float(r["value"][1]) for r in _query(base, 'xen_domain_vcpus{job="xen"}')}
        assert _query(base, 'xen_up{job="xen"}')[0]["value"][1] == "1"
    finally:
        prom.terminate()
        try:
            prom.wait(timeout=30)
        finally:
            if prom.poll() is None:
                prom.kill()
            log.close()
            assert stop_exporter(exporter) == 0
    # the simulated host the exporter read, built again here from the same URI (deterministic)
    with xenprivcmd.open(URI) as h:
        host = h.transport.host
        expected_mem = {domid: (host.names.get(domid, ""), float(d.tot_pages * 4096)) for domid, d in host.domains.items()}
        expected_vcpus = {domid: float(len(d.vcpus)) for domid, d in host.domains.items()}
    assert mem == expected_mem
    assert vcpus == expected_vcpus
    assert len(mem) == 4 and mem[1] == ("web1", 1 << 30)


def _prometheus(tmp_path: Path, scrape_configs: str) -> "tuple[subprocess.Popen[bytes], str, Any]":
    exe = shutil.which("prometheus") or ("/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None)
    assert exe, "no prometheus binary: apt-get install prometheus (tools/run-tests does)"
    pport = _free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n" + scrape_configs)
    log = open(tmp_path / "prometheus.log", "w+")
    prom = subprocess.Popen([exe, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
                             f"--web.listen-address=127.0.0.1:{pport}", "--log.level=warn"],
                            stdout=log, stderr=subprocess.STDOUT)
    return prom, f"http://127.0.0.1:{pport}", log


def _targets(base: str) -> Dict[str, Dict[str, Any]]:
    with urllib.request.urlopen(f"{base}/api/v1/targets", timeout=10) as r:
        doc = json.load(r)
    return {t["labels"]["job"]: t for t in doc["data"]["activeTargets"]}


def test_prometheus_scrapes_over_tls_with_basic_auth_and_is_refused_without(tmp_path: Path) -> None:
    certs = make_certs(tmp_path)
    web = tmp_path / "web.yml"
    web.write_text(f"tls_server_config:\n  cert_file: {certs['server_crt']}\n  key_file: {certs['server_key']}\n"
                   f"basic_auth_users:\n  prometheus: {bcrypt_hash('s3cret pass', cost=6)}\n")
    exporter, eport = start_exporter(URI, "--min-interval", "0.5", "--web.config.file", str(web), scheme="https")
    target = f"    static_configs:\n      - targets: ['127.0.0.1:{eport}']\n"
    tls = f"    scheme: https\n    tls_config:\n      ca_file: {certs['ca']}\n"
    jobs = {  # job -> how it scrapes
        "tls_auth": tls + "    basic_auth:\n      username: prometheus\n      password: s3cret pass\n",
        "tls_no_auth": tls,
        "tls_wrong_password": tls + "    basic_auth:\n      username: prometheus\n      password: guess\n",
        "plain_http_auth": "    basic_auth:\n      username: prometheus\n      password: s3cret pass\n",
        "tls_untrusted": f"    scheme: https\n    tls_config:\n      ca_file: {certs['other_ca']}\n"
                         "    basic_auth:\n      username: prometheus\n      password: s3cret pass\n",
    }
    prom, base, log = _prometheus(tmp_path, "".join(f"  - job_name: {j}\n{how}{target}" for j, how in jobs.items()))
    try:
        deadline = time.monotonic() + 90
        targets: Dict[str, Dict[str, Any]] = {}
        while time.monotonic() < deadline:
            assert prom.poll() is None, "prometheus exited: " + (tmp_path / "prometheus.log").read_text()
            try:
                targets = _targets(base)
            except OSError:
                targets = {}
            if len(targets) == len(jobs) and all(t["health"] != "unknown" for t in targets.values()):
                break
            time.sleep(0.5)
        assert set(targets) == set(jobs), targets
        health = {j: (t["health"], t["lastError"]) for j, t in targets.items()}
        assert health["tls_auth"] == ("up", ""), health
        assert targets["tls_auth"]["scrapeUrl"] == f"https://127.0.0.1:{eport}/metrics"
        for j in ("tls_no_auth", "tls_wrong_password"):
            assert health[j][0] == "down" and "401 Unauthorized" in health[j][1], health
        assert health["plain_http_auth"][0] == "down" and health["plain_http_auth"][1], health
        assert "401" not in health["plain_http_auth"][1]  # no HTTP answer at all on the TLS port
        assert health["tls_untrusted"][0] == "down" and "certificate" in health["tls_untrusted"][1], health
        mem = {int(r["metric"]["domid"]): float(r["value"][1])
               for r in _query(base, 'xen_domain_memory_bytes{job="tls_auth"}')}
        assert _query(base, 'xen_domain_memory_bytes{job="tls_no_auth"}') == []
    finally:
        prom.terminate()
        try:
            prom.wait(timeout=30)
        finally:
            if prom.poll() is None:
                prom.kill()
            log.close()
            assert stop_exporter(exporter) == 0
    with xenprivcmd.open(URI) as h:
        assert mem == {domid: float(d.tot_pages * 4096) for domid, d in h.transport.host.domains.items()}
