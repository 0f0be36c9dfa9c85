#!/usr/bin/env python3
"""Measure candidate speed-ups of the library's hot paths (nothing is changed in
the library: each alternative is a stand-alone copy run next to the current
code, on the same fake device / bytes, interleaved, minima of many repeats).

    python benchmarks/alternatives.py [--repeat 15]

Prints ns per call (or per domain) and the ratio to the current code.
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import gc
import itertools
import operator
import os
import struct
import sys
import termios
import threading
import timeit
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from xenprivcmd import abi as _abi  # noqa: E402
from xenprivcmd.abi.hypercalls import HYPERVISOR_domctl  # noqa: E402
from xenprivcmd.handle import Handle  # noqa: E402
from xenprivcmd.ops.domains import GETDOMAININFO, info_reader  # noqa: E402
from xenprivcmd.transport import privcmd as _privcmd  # noqa: E402
from xenprivcmd.types import DomainInfo  # noqa: E402

FIONREAD = termios.FIONREAD


def measure(cases: Dict[str, Callable[[], Any]], number: int, repeat: int, per: int = 1) -> Dict[str, float]:
    """Minimum ns per call (divided by ``per``), cases interleaved round by round."""
    best = {k: float("inf") for k in cases}
    for _ in range(repeat):
        for k, fn in cases.items():
            t = timeit.timeit(fn, number=number) / number
            best[k] = min(best[k], t)
    return {k: v * 1e9 / per for k, v in best.items()}


def show(title: str, res: Dict[str, float], base: str, unit: str = "ns") -> None:
    print(f"\n{title}")
    b = res[base]
    for k, v in res.items():
        print(f"  {k:58} {v:8.1f} {unit}  {v / b:5.2f}x")


class Fake(_privcmd.PrivcmdTransport):
    def _map(self, size: int) -> _privcmd.Buffer:
        return _privcmd._map_anonymous(size, locked=False)


def issue(repeat: int) -> None:
    _privcmd.IOCTL_PRIVCMD_HYPERCALL = FIONREAD
    r, _w = os.pipe()
    t = Fake(r, "pipe", None)
    variant = _abi.variant("4.17")
    h = Handle(t, "fake:", abi=variant)
    h._abi = variant
    h.domain_info(0, name=False)

    req = _privcmd.privcmd_hypercall()
    ba = bytearray(48)
    pack = struct.Struct("=6Q").pack_into
    ioctl = fcntl.ioctl

    # Alternative transports: same semantics (per-thread request, calls counted, EINTR retried).
    class NoLocal:
        """One request per thread kept in a dict keyed by thread id instead of threading.local."""

        def __init__(self) -> None:
            self.fd, self.calls, self.reqs = r, 0, {}

        def hypercall(self, op: int, a0: int = 0, a1: int = 0, a2: int = 0, a3: int = 0, a4: int = 0) -> int:
            tid = threading.get_ident()
            try:
                req = self.reqs[tid]
            except KeyError:
                req = self.reqs[tid] = bytearray(48)
            pack(req, 0, op, a0, a1, a2, a3, a4)
            self.calls += 1
            return ioctl(self.fd, FIONREAD, req, True)  # type: ignore[no-any-return]

    class ByteArrayLocal(_privcmd.PrivcmdTransport):
        """threading.local as now, but the request is a bytearray, not a ctypes Structure."""

        def hypercall(self, op: int, a0: int = 0, a1: int = 0, a2: int = 0, a3: int = 0, a4: int = 0) -> int:
            local = self._local
            try:
                req = local.breq
            except AttributeError:
                req = local.breq = bytearray(48)
            pack(req, 0, op, a0, a1, a2, a3, a4)
            self.calls += 1
            try:
                return ioctl(self.fd, FIONREAD, req, True)  # type: ignore[no-any-return]
            except InterruptedError:
                return self._retry(req)  # type: ignore[arg-type]

    bt = ByteArrayLocal(r, "pipe", None)
    nl = NoLocal()
    res = measure({
        "floor: ioctl(fd, FIONREAD, ctypes req, True)": lambda: ioctl(r, FIONREAD, req, True),
        "floor: ioctl(fd, FIONREAD, bytearray, True)": lambda: ioctl(r, FIONREAD, ba, True),
        "pack_into(ctypes req) alone": lambda: pack(req, 0, 17, 0, 0, 0, 0, 0),
        "pack_into(bytearray) alone": lambda: pack(ba, 0, 17, 0, 0, 0, 0, 0),
        "current PrivcmdTransport.hypercall": lambda: t.hypercall(17, 0, 0),
        "bytearray request (threading.local kept)": lambda: bt.hypercall(17, 0, 0),
        "bytearray request in a dict by thread id": lambda: nl.hypercall(17, 0, 0),
        "current Handle.xen_version()": h.xen_version,
    }, 100000, repeat)
    show("issue: one hypercall on the fake device (pipe FIONREAD), ns per call", res,
         "floor: ioctl(fd, FIONREAD, ctypes req, True)")

    # getdomaininfo: where the time goes
    fam = h.engine.families
    size, u, iv = fam.wrapper("domctl")
    buf = t.scratch(size)
    view = buf.view
    head = struct.Struct("<IIH")
    cmd = fam.const("XEN_DOMCTL_getdomaininfo", "getdomaininfo")
    addr = buf.address
    unpack = info_reader(h.engine).records.unpack_from
    runner = h.engine.runner(GETDOMAININFO)
    memset = ctypes.memset
    new = tuple.__new__
    no_name = (None,)
    hc = t.hypercall

    def pack_header_domain_info(domid: int) -> DomainInfo:
        """domctl header written with one pack_into (bytes 0..size zeroed by a precomputed zero block)."""
        view[:size] = zeros
        head.pack_into(view, 0, cmd, iv, domid)
        hc(HYPERVISOR_domctl, addr)
        info = new(DomainInfo, unpack(view, u) + no_name)
        if info[0] != domid:
            raise LookupError(domid)
        return info  # type: ignore[no-any-return]

    zeros = bytes(size)

    def memset_header_domain_info(domid: int) -> DomainInfo:
        memset(addr, 0, size)
        head.pack_into(view, 0, cmd, iv, domid)
        hc(HYPERVISOR_domctl, addr)
        info = new(DomainInfo, unpack(view, u) + no_name)
        if info[0] != domid:
            raise LookupError(domid)
        return info  # type: ignore[no-any-return]

    res = measure({
        "floor: ioctl(fd, FIONREAD, ctypes req, True)": lambda: ioctl(r, FIONREAD, req, True),
        "current Handle.domain_info(0)": lambda: h.domain_info(0, name=False),
        "the engine's runner alone (fields read, no DomainInfo)": lambda: runner(0),
        "ctypes.memset(addr, 0, sizeof(xen_domctl)) alone": lambda: memset(addr, 0, size),
        "view[:size] = zeros alone": lambda: view.__setitem__(slice(0, size), zeros),
        "precomputed cmd; memset + one pack_into header": lambda: memset_header_domain_info(0),
        "precomputed cmd; zero block copy + one pack_into header": lambda: pack_header_domain_info(0),
    }, 30000, repeat)
    show("getdomaininfo on the fake device, ns per call", res, "floor: ioctl(fd, FIONREAD, ctypes req, True)")
    h.close()


def listing(repeat: int, sizes: List[int]) -> None:
    for n in sizes:
        _listing(repeat, n)


def _listing(repeat: int, n: int) -> None:
    import xenprivcmd

    if True:
        h = xenprivcmd.open(f"sim:///?domains={n}&seed=1")
        rd = info_reader(h.engine)
        raw = h.transport.host.records(0, n)[1]
        view = memoryview(bytearray(raw))
        it = rd.records.iter_unpack
        new = tuple.__new__
        no_name = (None,)
        add = operator.add
        repeat_ = itertools.repeat

        def floor() -> List[Tuple[Any, ...]]:
            return list(it(view))

        def current() -> List[DomainInfo]:
            return rd.many(view, 0, n)

        def map_chain() -> List[DomainInfo]:
            return list(map(new, repeat_(DomainInfo), map(add, it(view), repeat_(no_name))))

        def no_name_field() -> List[Any]:
            return list(map(new, repeat_(DomainInfo), it(view)))

        def gc_off(fn: Callable[[], Any]) -> Callable[[], Any]:
            def run() -> Any:
                was = gc.isenabled()
                gc.disable()
                try:
                    return fn()
                finally:
                    if was:
                        gc.enable()
            return run

        number = max(1, 20000 // n)
        res = measure({
            "floor: list(Struct.iter_unpack(view))": floor,
            "current InfoReader.many (comprehension, rec + (None,))": current,
            "map(tuple.__new__, repeat(DomainInfo), map(add, it, repeat((None,))))": map_chain,
            "(if DomainInfo had no name field) map(tuple.__new__, ...)": no_name_field,
            "floor with gc disabled": gc_off(floor),
            "current with gc disabled": gc_off(current),
            "map chain with gc disabled": gc_off(map_chain),
        }, number, repeat, per=n)
        show(f"list decode, N={n}: ns per domain (records already in the buffer)", res,
             "floor: list(Struct.iter_unpack(view))")
        res = measure({
            "domains() (incl. sim)": lambda: h.domains(names=False),
            "infos_from alone": current,
        }, max(1, 2000 // n), repeat, per=n)
        show(f"domains() vs its decode, N={n}: ns per domain", res, "infos_from alone")
        h.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--sizes", default="100,1000,32752")
    args = ap.parse_args()
    issue(args.repeat)
    listing(args.repeat, [int(s) for s in args.sizes.split(",")])
    return 0


if __name__ == "__main__":
    sys.exit(main())
