"""Groups ``exporter N=<n>``: one Prometheus scrape on the simulator.

For each N (``--bench-sizes``: 1, 100, 1000 and a full host of 32752
domains; the simulator's generated hosts give domains 1 vcpu above 1000
domains, 1-4 below):

* floor: ``Handle.domains()``, the one listing a scrape cannot do without;
* scrape: :meth:`Scraper.scrape` (domains, names, every vcpu, physinfo,
  pcpus): the hypervisor's part of a scrape;
* render: :meth:`Exporter.render` with ``min_interval=0``: the scrape and
  the text exposition ``prometheus_client`` makes of it (one HTTP answer).

``extra_info`` records the hypercalls one scrape issues (the transport's
counter), the listing's own, and the total number of vcpus: the report
checks the scrape's count against ``listing + ceil(vcpus / entries per
trap) + 2`` (physinfo, getcpuinfo): one scrape's hypercalls must grow with
vcpus per trap, not with calls.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Iterator

import pytest


class ScrapeCase:
    def __init__(self, h: Any, n: int) -> None:
        from xenprivcmd.exporter.metrics import Exporter
        from xenprivcmd.exporter.scrape import Scraper

        self.h = h
        self.n = n
        self.scraper = Scraper(h)
        self.exporter = Exporter(self.scraper, min_interval=0)
        self.scraper.scrape()  # detection, version, scheduler: once per handle
        t = h.transport
        c0 = t.calls
        h.domains(names=False)
        self.listing_calls = t.calls - c0
        c0 = t.calls
        sample = self.scraper.scrape()
        self.scrape_calls = t.calls - c0
        self.vcpus = len(sample.vcpus)
        assert len(sample.domains) == n
        from xenprivcmd.ops import batch
        from xenprivcmd.ops.domains import GETDOMAININFO

        #: getvcpuinfo entries one multicall trap holds (the batch module's limits)
        self.per_trap = min(batch.TRAP_MAX_ENTRIES,
                            batch.TRAP_MAX_BYTES // (batch.MULTICALL_ENTRY_SIZE + batch.slot(h.engine, GETDOMAININFO)))


@pytest.fixture(scope="module")
def case(n_domains: int, bench_xen: str) -> Iterator[ScrapeCase]:
    import xenprivcmd

    xen = f"&xen={bench_xen}" if bench_xen else ""
    with xenprivcmd.open(f"sim:///?domains={n_domains}&seed=1{xen}", read_only=True) as h:
        yield ScrapeCase(h, n_domains)


def _info(benchmark: Any, case: ScrapeCase, role: str) -> Dict[str, Any]:
    benchmark.group = f"exporter N={case.n}"
    benchmark.extra_info.update({
        "role": role, "n": case.n, "vcpus": case.vcpus, "release": case.h.abi.release,
        "listing_hypercalls": case.listing_calls, "scrape_hypercalls": case.scrape_calls,
        "entries_per_trap": case.per_trap,
        "hypercall_bound": case.listing_calls + math.ceil(case.vcpus / case.per_trap) + 2,
    })
    return benchmark.extra_info  # type: ignore[no-any-return]


def _rounds(n: int) -> Dict[str, int]:
    return {"rounds": 3, "iterations": 1} if n > 1000 else {"rounds": 20, "iterations": 1}


def test_floor_listing(benchmark: Any, case: ScrapeCase) -> None:
    _info(benchmark, case, "floor")
    got = benchmark.pedantic(lambda: case.h.domains(names=False), **_rounds(case.n))
    assert len(got) == case.n


def test_scrape(benchmark: Any, case: ScrapeCase) -> None:
    _info(benchmark, case, "scrape")
    t = case.h.transport

    def scrape() -> int:
        c0 = t.calls
        case.scraper.scrape()
        return t.calls - c0

    assert benchmark.pedantic(scrape, **_rounds(case.n)) == case.scrape_calls


def test_render(benchmark: Any, case: ScrapeCase) -> None:
    _info(benchmark, case, "render")
    body = benchmark.pedantic(case.exporter.render, **_rounds(case.n))
    assert body.count(b"\nxen_domain_memory_bytes{") == case.n and case.exporter.up
    benchmark.extra_info["body_bytes"] = len(body)
