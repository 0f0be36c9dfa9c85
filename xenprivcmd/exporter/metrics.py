"""The exporter proper: samples as Prometheus metric families.

:class:`Exporter` is a ``prometheus_client`` collector in a registry of its
own (no process or platform collectors: every series is ``xen_*``).
:meth:`Exporter.render` answers one HTTP scrape: a fresh read of the
hypervisor, or the last answer again when the previous read is younger than
``min_interval`` seconds (so many scrapers cost the hypervisor no more).

A failed read (any exception: a hypervisor error, a malformed reply, a
closed device) answers ``xen_up 0`` and only the scrape's own series, counts
``xen_scrape_errors_total`` and writes one line to the log; the next scrape
tries again.  Nothing here raises out of :meth:`render`.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Callable, Iterable, Iterator, List, Optional, TextIO

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from .scrape import Sample, Scraper, os_type

__all__ = ["Exporter", "families", "STATES", "state_label"]

#: ``xen_domain_state``'s values: the library's state words (DomainInfo.state), spaces as underscores.
STATES = ("running", "idle", "paused", "shut_off", "crashed", "dying", "no_state")

_DOM = ["domid", "name"]
_PAGE = 4096  # getdomaininfo and physinfo count 4 KiB pages on x86 and Arm alike


def state_label(state: str) -> str:
    return state.replace(" ", "_")


def families(s: Sample) -> List[Metric]:
    """Every domain and host family of one sample."""
    labels = {d.domid: [str(d.domid), d.name or ""] for d in s.domains}
    cpu = CounterMetricFamily("xen_domain_cpu_time_seconds", "CPU time the domain's vcpus have used", labels=_DOM)
    mem = GaugeMetricFamily("xen_domain_memory_bytes", "Memory the domain has now (tot_pages)", labels=_DOM)
    mem_max = GaugeMetricFamily("xen_domain_memory_max_bytes", "The domain's memory limit (max_pages)", labels=_DOM)
    target = GaugeMetricFamily("xen_domain_memory_target_bytes",
                               "Balloon target from xenstore (memory/target), where it has one", labels=_DOM)
    vcpus = GaugeMetricFamily("xen_domain_vcpus", "vcpus of the domain (max_vcpu_id + 1)", labels=_DOM)
    online = GaugeMetricFamily("xen_domain_vcpus_online", "vcpus online", labels=_DOM)
    state = GaugeMetricFamily("xen_domain_state", "1 on the domain's current state, 0 on the others",
                              labels=_DOM + ["state"])
    info = GaugeMetricFamily("xen_domain_info", "The domain's identity (value 1)", labels=_DOM + ["uuid", "os_type"])
    for d in s.domains:
        lab: List[str] = labels[d.domid]
        cpu.add_metric(lab, d.cpu_time / 1e9)
        mem.add_metric(lab, d.tot_pages * _PAGE)
        mem_max.add_metric(lab, d.max_pages * _PAGE)
        vcpus.add_metric(lab, d.vcpus)
        online.add_metric(lab, d.nr_online_vcpus)
        now = state_label(d.state)
        for st in STATES:
            state.add_metric(lab + [st], 1.0 if st == now else 0.0)
        info.add_metric(lab + [str(d.uuid), os_type(d)], 1.0)
        t = s.targets.get(d.domid)
        if t is not None:
            target.add_metric(lab, t)
    vcpu = CounterMetricFamily("xen_vcpu_cpu_time_seconds", "CPU time one vcpu has used", labels=_DOM + ["vcpu"])
    for v in s.vcpus:
        vlab = labels.get(v.domid)
        if vlab is not None:
            vcpu.add_metric(vlab + [str(v.vcpu)], v.cpu_time / 1e9)
    out: List[Metric] = [cpu, mem, mem_max] + ([target] if target.samples else []) + [vcpus, online, state, info, vcpu]
    out += _io(s, labels)
    p = s.phys
    out.append(GaugeMetricFamily("xen_host_memory_bytes", "Host memory Xen manages (total_pages)",
                                 value=p.total_pages * _PAGE))
    out.append(GaugeMetricFamily("xen_host_memory_free_bytes", "Host memory free (free_pages)",
                                 value=p.free_pages * _PAGE))
    out.append(GaugeMetricFamily("xen_host_cpus", "Physical cpus online (nr_cpus)", value=p.nr_cpus))
    idle = CounterMetricFamily("xen_host_cpu_idle_seconds", "Idle time of one physical cpu", labels=["cpu"])
    for c in s.pcpus:
        idle.add_metric([str(c.cpu)], c.idletime / 1e9)
    out.append(idle)
    i = s.info
    xi = GaugeMetricFamily("xen_info", "The hypervisor (value 1)",
                           labels=["version", "abi", "arch", "domctl_interface", "sysctl_interface", "scheduler"])
    xi.add_metric([i.version, i.abi, i.arch, i.domctl_interface, i.sysctl_interface, i.scheduler], 1.0)
    out.append(xi)
    return out


_NET_HELP = (("receive_bytes", "Bytes the guest received (netback vif)"),
             ("receive_packets", "Packets the guest received (netback vif)"),
             ("transmit_bytes", "Bytes the guest transmitted (netback vif)"),
             ("transmit_packets", "Packets the guest transmitted (netback vif)"))
_BLOCK_HELP = (("read_requests", "Read requests (blkback, xentop VBD_RD)"),
               ("write_requests", "Write requests (blkback, xentop VBD_WR)"),
               ("out_of_requests", "Times blkback ran out of requests (xentop VBD_OO)"),
               ("read_bytes", "Bytes read (blkback sectors x 512)"),
               ("write_bytes", "Bytes written (blkback sectors x 512)"))


def _io(s: Sample, labels: "dict[int, list[str]]") -> List[Metric]:
    """Backend counters of the domains in the sample; no family where there is no counter."""
    dev = _DOM + ["device"]
    net = [CounterMetricFamily(f"xen_domain_network_{k}", h, labels=dev) for k, h in _NET_HELP]
    for n in s.net:
        lab = labels.get(n.domid)
        if lab is not None:
            for fam, value in zip(net, (n.rx_bytes, n.rx_packets, n.tx_bytes, n.tx_packets)):
                fam.add_metric(lab + [str(n.device)], value)
    blk = [CounterMetricFamily(f"xen_domain_block_{k}", h, labels=dev) for k, h in _BLOCK_HELP]
    for b in s.block:
        lab = labels.get(b.domid)
        if lab is not None:
            for fam, value in zip(blk, (b.rd_req, b.wr_req, b.oo_req, b.rd_bytes, b.wr_bytes)):
                fam.add_metric(lab + [str(b.device)], value)
    return [f for f in net + blk if f.samples]


class Exporter:
    """Scrapes through ``scraper`` and renders the text exposition format.

    ``min_interval``: seconds during which :meth:`render` answers with the
    previous text instead of reading the hypervisor again (0: every scrape
    reads).  ``log``: where a failed read is reported, one line each.
    """

    def __init__(self, scraper: Scraper, min_interval: float = 1.0, log: Optional[TextIO] = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.scraper = scraper
        self.min_interval = min_interval
        self.log = log if log is not None else sys.stderr
        self.clock = clock
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)  # type: ignore[arg-type]
        self.errors = 0
        self.reads = 0
        self.up = False
        self.last_error: Optional[BaseException] = None
        self.last_duration = 0.0
        self.last_hypercalls = 0
        self._lock = threading.Lock()
        self._text: Optional[bytes] = None
        self._text_at = 0.0

    def render(self) -> bytes:
        """The body of one ``/metrics`` answer (text format 0.0.4)."""
        with self._lock:
            now = self.clock()
            if self._text is not None and now - self._text_at < self.min_interval:
                return self._text
            text = generate_latest(self.registry)  # type: ignore[arg-type]
            self._text, self._text_at = text, now
            return text

    def collect(self) -> Iterator[Metric]:
        """``prometheus_client``'s collector protocol: one read of the hypervisor."""
        sample = self._read()
        if sample is not None:
            yield from families(sample)
        yield from self._own()

    def _read(self) -> Optional[Sample]:
        t = self.scraper.handle.transport
        c0 = t.calls
        t0 = time.perf_counter()
        self.reads += 1
        try:
            sample: Optional[Sample] = self.scraper.scrape()
            self.up = True
        except Exception as exc:  # noqa: BLE001 - any failure is a down scrape, never a crash
            sample = None
            self.up = False
            self.errors += 1
            self.last_error = exc
            self._say(f"xenprivcmd-exporter: scrape failed: {type(exc).__name__}: {exc}")
        self.last_duration = time.perf_counter() - t0
        self.last_hypercalls = t.calls - c0
        return sample

    def _own(self) -> Iterable[Metric]:
        yield GaugeMetricFamily("xen_up", "1 when the last read of the hypervisor succeeded", value=1 if self.up else 0)
        yield GaugeMetricFamily("xen_scrape_duration_seconds", "Time the last read of the hypervisor took",
                                value=self.last_duration)
        yield GaugeMetricFamily("xen_scrape_hypercalls", "Hypercalls the last read of the hypervisor issued",
                                value=self.last_hypercalls)
        yield CounterMetricFamily("xen_scrape_errors", "Reads of the hypervisor that failed", value=self.errors)

    def _say(self, line: str) -> None:
        try:
            print(line, file=self.log, flush=True)
        except (OSError, ValueError):  # a closed or broken log must not stop the exporter
            pass
