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

import gzip
import sys
import threading
import time
from typing import Callable, Collection, Dict, Iterator, List, NamedTuple, Optional, TextIO, Tuple

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.utils import floatToGoString as _float_to_go

from .scrape import Sample, Scraper, os_type

__all__ = ["Exporter", "Family", "families", "to_metrics", "text", "restrict", "sample_name", "STATES", "state_label"]

#: ``xen_domain_state``'s values: the library's state words (DomainInfo.state), spaces as underscores.
STATES = ("running", "idle", "paused", "shut_off", "crashed", "dying", "no_state")

#: prometheus_client's own number formatting (Go's), so both expositions agree to the byte
_go: Callable[[float], str] = _float_to_go
_PAGE = 4096  # getdomaininfo and physinfo count 4 KiB pages on x86 and Arm alike


def state_label(state: str) -> str:
    return state.replace(" ", "_")


class Family(NamedTuple):
    """One metric family of a sample, before any exposition.

    ``labels``: the label names after ``domid`` and ``name`` (a domain
    family, ``domain`` True) or all of them (a host family).  ``rows``:
    ``(domid or None, extra label values, value)``.
    """

    name: str  # without ``_total``: prometheus_client's counter family name
    kind: str  # "gauge" or "counter"
    doc: str
    domain: bool
    labels: Tuple[str, ...]
    rows: List[Tuple[Optional[int], Tuple[str, ...], float]]


_NO: Tuple[str, ...] = ()


def _fam(name: str, kind: str, doc: str, labels: Tuple[str, ...] = _NO, domain: bool = True) -> Family:
    return Family(name, kind, doc, domain, labels, [])


def families(s: Sample) -> List[Family]:
    """Every family of one sample; optional ones (targets, backend counters) only where there is a row."""
    cpu = _fam("xen_domain_cpu_time_seconds", "counter", "CPU time the domain's vcpus have used")
    mem = _fam("xen_domain_memory_bytes", "gauge", "Memory the domain has now (tot_pages)")
    mem_max = _fam("xen_domain_memory_max_bytes", "gauge", "The domain's memory limit (max_pages)")
    target = _fam("xen_domain_memory_target_bytes", "gauge",
                  "Balloon target from xenstore (memory/target), where it has one")
    vcpus = _fam("xen_domain_vcpus", "gauge", "vcpus of the domain (max_vcpu_id + 1)")
    online = _fam("xen_domain_vcpus_online", "gauge", "vcpus online")
    state = _fam("xen_domain_state", "gauge", "1 on the domain's current state, 0 on the others", ("state",))
    info = _fam("xen_domain_info", "gauge", "The domain's identity (value 1)", ("os_type", "uuid"))
    for d in s.domains:
        i = d.domid
        cpu.rows.append((i, _NO, d.cpu_time / 1e9))
        mem.rows.append((i, _NO, d.tot_pages * _PAGE))
        mem_max.rows.append((i, _NO, d.max_pages * _PAGE))
        vcpus.rows.append((i, _NO, d.vcpus))
        online.rows.append((i, _NO, d.nr_online_vcpus))
        now = state_label(d.state)
        state.rows.extend((i, (st,), 1.0 if st == now else 0.0) for st in STATES)
        info.rows.append((i, (os_type(d), str(d.uuid)), 1.0))
        t = s.targets.get(i)
        if t is not None:
            target.rows.append((i, _NO, t))
    vcpu = _fam("xen_vcpu_cpu_time_seconds", "counter", "CPU time one vcpu has used", ("vcpu",))
    vcpu.rows.extend((v.domid, (str(v.vcpu),), v.cpu_time / 1e9) for v in s.vcpus)
    out = [cpu, mem, mem_max, target, vcpus, online, state, info, vcpu] + _io(s)
    p = s.phys
    host = [("xen_host_memory_bytes", "Host memory Xen manages (total_pages)", p.total_pages * _PAGE),
            ("xen_host_memory_free_bytes", "Host memory free (free_pages)", p.free_pages * _PAGE),
            ("xen_host_cpus", "Physical cpus online (nr_cpus)", p.nr_cpus)]
    out += [Family(name, "gauge", doc, False, _NO, [(None, _NO, value)]) for name, doc, value in host]
    idle = _fam("xen_host_cpu_idle_seconds", "counter", "Idle time of one physical cpu", ("cpu",), domain=False)
    idle.rows.extend((None, (str(c.cpu),), c.idletime / 1e9) for c in s.pcpus)
    hi = s.info
    xi = _fam("xen_info", "gauge", "The hypervisor (value 1)",
              ("version", "abi", "arch", "domctl_interface", "sysctl_interface", "scheduler"), domain=False)
    xi.rows.append((None, (hi.version, hi.abi, hi.arch, hi.domctl_interface, hi.sysctl_interface, hi.scheduler), 1.0))
    out += [idle, xi]
    # no family at all for what has no source here: balloon targets, backend counters
    return [f for f in out if f.rows or (f is not target and not f.name.startswith(_OPTIONAL))]


_OPTIONAL = ("xen_domain_network_", "xen_domain_block_")
#: (metric, InterfaceStats field, help): the guest's side, as virsh domifstat (receive: what the
#: guest received, netback's transmit counter; xentop's NETTX is receive_bytes)
_NET = (("receive_bytes", "rx_bytes", "Bytes the guest received (netback vif's transmit counter; xentop NETTX)"),
        ("receive_packets", "rx_packets", "Packets the guest received (netback vif)"),
        ("receive_errs", "rx_errs", "Packets to the guest that failed (netback vif's tx_errors)"),
        ("receive_drop", "rx_drop", "Packets to the guest dropped (netback vif's tx_dropped)"),
        ("transmit_bytes", "tx_bytes", "Bytes the guest transmitted (netback vif's receive counter; xentop NETRX)"),
        ("transmit_packets", "tx_packets", "Packets the guest transmitted (netback vif)"),
        ("transmit_errs", "tx_errs", "Packets from the guest that failed (netback vif's rx_errors)"),
        ("transmit_drop", "tx_drop", "Packets from the guest dropped (netback vif's rx_dropped)"))
#: (metric, BlockStats field, help)
_BLOCK = (("read_requests", "rd_req", "Read requests (blkback, xentop VBD_RD)"),
          ("write_requests", "wr_req", "Write requests (blkback, xentop VBD_WR)"),
          ("out_of_requests", "oo_req", "Times blkback ran out of requests (xentop VBD_OO)"),
          ("flush_requests", "f_req", "Flush and barrier requests (blkback f_req)"),
          ("discard_requests", "ds_req", "Discard requests (blkback ds_req)"),
          ("read_bytes", "rd_bytes", "Bytes read (blkback sectors x 512)"),
          ("write_bytes", "wr_bytes", "Bytes written (blkback sectors x 512)"))


def _io(s: Sample) -> List[Family]:
    """Backend counters (label ``device``: the vif's or the vbd's device number)."""
    net = [_fam(f"xen_domain_network_{k}", "counter", doc, ("device",)) for k, _f, doc in _NET]
    for n in s.net:
        for fam, (_k, field, _d) in zip(net, _NET):
            fam.rows.append((n.domid, (str(n.devid),), getattr(n, field)))
    blk = [_fam(f"xen_domain_block_{k}", "counter", doc, ("device",)) for k, _f, doc in _BLOCK]
    for b in s.block:
        for fam, (_k, field, _d) in zip(blk, _BLOCK):
            fam.rows.append((b.domid, (str(b.devid),), getattr(b, field)))
    return net + blk


Known = Dict[int, Tuple[str, str]]


def sample_name(f: Family) -> str:
    """The name of a family's samples in the text format (a counter's end in ``_total``)."""
    return f.name + "_total" if f.kind == "counter" else f.name


def restrict(fams: List[Family], names: Collection[str]) -> List[Family]:
    """The families with samples named in ``names`` (as prometheus_client's restricted registry)."""
    wanted = set(names)
    return [f for f in fams if sample_name(f) in wanted]


def domain_labels(s: Optional[Sample]) -> Known:
    """domid -> (domid, name) label values of the sample's domains."""
    return {} if s is None else {d.domid: (str(d.domid), d.name or "") for d in s.domains}


def to_metrics(fams: List[Family], known: Known) -> List[Metric]:
    """The families as ``prometheus_client`` metric families (rows of domains not in ``known`` left out)."""
    out: List[Metric] = []
    for f in fams:
        cls = CounterMetricFamily if f.kind == "counter" else GaugeMetricFamily
        m = cls(f.name, f.doc, labels=(["domid", "name"] if f.domain else []) + list(f.labels))
        for domid, extra, value in f.rows:
            if domid is None:
                m.add_metric(list(extra), value)
            elif domid in known:
                m.add_metric(list(known[domid]) + list(extra), value)
        out.append(m)
    return out


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def text(fams: List[Family], known: Known) -> bytes:
    """The text exposition (format 0.0.4) of the families.

    The same bytes as prometheus_client's ``generate_latest`` over
    :func:`to_metrics` of them (the tests compare the two), with each
    domain's labels formatted once per scrape instead of once per series:
    at 32752 domains that is most of a scrape's time.
    """
    prefix = {domid: f'domid="{_esc(i)}",name="{_esc(n)}"' for domid, (i, n) in known.items()}
    out: List[str] = []
    put = out.append
    for f in fams:
        name = sample_name(f)
        doc = f.doc.replace("\\", "\\\\").replace("\n", "\\n")
        put(f"# HELP {name} {doc}\n# TYPE {name} {f.kind}\n")
        keys = (("domid", "name") if f.domain else ()) + f.labels
        ordered = list(keys) == sorted(keys)  # then: the domain's prefix, then the rest as they come
        for domid, extra, value in f.rows:
            if domid is not None and domid not in known:
                continue
            if ordered:
                parts = [prefix[domid]] if domid is not None else []
                parts += [f'{k}="{_esc(x)}"' for k, x in zip(f.labels, extra)]
            else:
                pairs = list(zip(f.labels, extra)) + (list(zip(("domid", "name"), known[domid])) if domid is not None else [])
                parts = [f'{k}="{_esc(x)}"' for k, x in sorted(pairs)]
            body = ",".join(parts)
            put(f"{name}{{{body}}} {_go(value)}\n" if body else f"{name} {_go(value)}\n")
    return "".join(out).encode("utf-8")


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
        self._fams: List[Family] = []
        self._known: Known = {}
        self._gzip: Optional[bytes] = None

    def _fresh(self) -> None:
        """Read the hypervisor unless the last read is younger than ``min_interval`` (lock held)."""
        now = self.clock()
        if self._text is not None and now - self._text_at < self.min_interval:
            return
        fams, known = self.read()
        self._fams, self._known, self._text, self._text_at, self._gzip = fams, known, text(fams, known), now, None

    def render(self, names: Optional[Collection[str]] = None) -> bytes:
        """The body of one ``/metrics`` answer (text format 0.0.4, see :func:`text`).

        ``names``: only the families with a sample of one of these names (prometheus_client's
        ``name[]`` convention: ``xen_up``, ``xen_domain_cpu_time_seconds_total``); none or
        empty: every family."""
        with self._lock:
            self._fresh()
            assert self._text is not None
            if names:
                return text(restrict(self._fams, names), self._known)
            return self._text

    def render_gzip(self) -> bytes:
        """:meth:`render`'s whole body gzip-compressed, compressed once per read of the hypervisor."""
        with self._lock:
            self._fresh()
            if self._gzip is None:
                assert self._text is not None
                self._gzip = gzip.compress(self._text, compresslevel=6, mtime=0)
            return self._gzip

    def collect(self) -> Iterator[Metric]:
        """``prometheus_client``'s collector protocol: one read of the hypervisor
        (for ``generate_latest(exporter.registry)``, OpenMetrics, a push gateway)."""
        yield from to_metrics(*self.read())

    def read(self) -> Tuple[List[Family], Known]:
        """One read of the hypervisor: its families (none when it failed) and the scrape's own."""
        sample = self._read()
        fams = families(sample) if sample is not None else []
        return fams + self._own(), domain_labels(sample)

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

    def _own(self) -> List[Family]:
        own = [("xen_up", "gauge", "1 when the last read of the hypervisor succeeded", 1 if self.up else 0),
               ("xen_scrape_duration_seconds", "gauge", "Time the last read of the hypervisor took",
                self.last_duration),
               ("xen_scrape_hypercalls", "gauge", "Hypercalls the last read of the hypervisor issued",
                self.last_hypercalls),
               ("xen_scrape_errors", "counter", "Reads of the hypervisor that failed", self.errors)]
        return [Family(name, kind, doc, False, _NO, [(None, _NO, float(value))]) for name, kind, doc, value in own]

    def _say(self, line: str) -> None:
        try:
            print(line, file=self.log, flush=True)
        except (OSError, ValueError):  # a closed or broken log must not stop the exporter
            pass
