"""A real Prometheus server (Debian's ``prometheus`` package) scraping the exporter.

The test starts both on 127.0.0.1 (free ports, a temporary configuration and
data directory), waits until Prometheus says ``up == 1`` for the exporter,
asks Prometheus's HTTP API for each domain's ``xen_domain_memory_bytes`` and
``xen_domain_vcpus``, compares them with the simulated host itself, and
stops both.  Without the ``prometheus`` binary the test fails: ``.ci/run``
installs it.
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

from .exporter_helpers import start_exporter, stop_exporter

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
    assert exe, "no prometheus binary: apt-get install prometheus (.ci/run does)"
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
