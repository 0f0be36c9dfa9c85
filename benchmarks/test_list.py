"""Groups ``list N=<n>``: ``Handle.domains()`` on the simulator, per domain.

For each N (``--bench-sizes``, default 1, 100, 1000 and a full host: 32752
domains, as many as Xen allows: domids 0..0x7FEF; 32768 is clamped to it):

* floor: ``struct.Struct.iter_unpack`` (the library's own record reader, same
  format) over the same bytes the simulator writes, materialised as a list;
* library: ``Handle.domains()``: sysctl getdomaininfolist in chunks of 1024,
  each reply read in place into ``DomainInfo`` tuples;
* sim: the simulator alone answering the very hypercalls ``domains()``
  issues (captured once, replayed with the request bytes restored): its
  cost of building and writing the reply is inside ``domains()`` and is
  subtracted from it (``library - sim``) before the ratios are computed;
* construct: a ``construct`` Struct built from the same generated layout
  (every field of ``xen_domctl_getdomaininfo`` at its offset) parsing the
  same bytes (``Array(N, record)``), the slow path;
* construct-compiled: the same after ``.compile()`` (for reference).
"""

from __future__ import annotations

import ctypes
from typing import Any, Dict, Iterator, List, Tuple

import pytest

from xenprivcmd.abi.layout import fields
from xenprivcmd.ops.domains import info_reader

_CT_INTS = {1: "Int8", 2: "Int16", 4: "Int32", 8: "Int64"}


def construct_record(cls: type) -> Any:
    """A construct ``Struct`` for the ctypes structure ``cls`` (little endian),
    built from the generated layout: fields at their offsets, gaps padded."""
    import construct as cs

    members: List[Any] = []
    pos = 0
    for name, (offset, ctype) in sorted(fields(cls).items(), key=lambda kv: kv[1][0]):
        if offset < pos:  # union member overlaying the previous one: keep the first
            continue
        if offset > pos:
            members.append(cs.Padding(offset - pos))
        members.append(name / _construct_type(ctype))
        pos = offset + ctypes.sizeof(ctype)
    size = ctypes.sizeof(cls)
    if size > pos:
        members.append(cs.Padding(size - pos))
    rec = cs.Struct(*members)
    assert rec.sizeof() == size, (rec.sizeof(), size)
    return rec


def _construct_type(ctype: Any) -> Any:
    import construct as cs

    if hasattr(ctype, "_fields_"):
        return construct_record(ctype)
    length = getattr(ctype, "_length_", None)
    if length is not None:
        elem = ctype._type_
        if ctypes.sizeof(elem) == 1:
            return cs.Bytes(length)
        return cs.Array(length, _construct_type(elem))
    size = ctypes.sizeof(ctype)
    signed = ctype(-1).value == -1  # type: ignore[operator]
    return getattr(cs, _CT_INTS[size] + ("sl" if signed else "ul"))


class ListCase:
    """One simulated host of N domains, opened once per N."""

    def __init__(self, h: Any, n: int) -> None:
        self.h = h
        self.n = n
        self.t = h.transport
        self.records = info_reader(h.engine).records
        self.info_size = info_reader(h.engine).size
        self.sysctl_size = h.engine.families.wrapper("sysctl")[0]
        got = h.domains(names=False)  # maps the scratch buffer to its final size
        assert len(got) == n
        self.calls = self._capture()
        n_raw, raw = self.t.host.records(0, n)
        assert n_raw == n and len(raw) == n * self.info_size
        self.raw = raw
        self.view = memoryview(raw)

    def _capture(self) -> List[Tuple[int, Tuple[int, int, int, int, int], bytes]]:
        """The hypercalls one ``domains()`` issues, with each request's bytes."""
        t = self.t
        calls: List[Tuple[int, Tuple[int, int, int, int, int], bytes]] = []
        size = self.sysctl_size
        orig = t.hypercall

        def spy(op: int, a0: int = 0, a1: int = 0, a2: int = 0, a3: int = 0, a4: int = 0) -> int:
            calls.append((op, (a0, a1, a2, a3, a4), ctypes.string_at(a0, size)))
            return orig(op, a0, a1, a2, a3, a4)  # type: ignore[no-any-return]

        t.hypercall = spy
        try:
            self.h.domains(names=False)
        finally:
            del t.hypercall
        return calls

    def sim_only(self) -> int:
        """Replay the captured hypercalls: the simulator's cost alone."""
        hypercall = self.t.hypercall
        memmove = ctypes.memmove
        for op, args, req in self.calls:
            memmove(args[0], req, len(req))
            hypercall(op, *args)
        return len(self.calls)


@pytest.fixture(scope="module")
def case(n_domains: int, bench_xen: str) -> Iterator[ListCase]:
    import xenprivcmd

    uri = f"sim:///?domains={n_domains}&seed=1" + (f"&xen={bench_xen}" if bench_xen else "")
    h = xenprivcmd.open(uri)
    try:
        yield ListCase(h, n_domains)
    finally:
        h.close()


def _group(n: int) -> str:
    return f"list N={n}"


def _info(benchmark: Any, case: ListCase, role: str, **extra: Any) -> Dict[str, Any]:
    benchmark.group = _group(case.n)
    benchmark.extra_info.update({"role": role, "n": case.n, "release": case.h.abi.release,
                                 "record_size": case.info_size, "format": case.records.format, **extra})
    return benchmark.extra_info  # type: ignore[no-any-return]


def test_floor_iter_unpack(benchmark: Any, case: ListCase) -> None:
    it = case.records.iter_unpack
    view = case.view

    def floor() -> List[Tuple[Any, ...]]:
        return list(it(view))

    _info(benchmark, case, "floor")
    assert len(benchmark(floor)) == case.n


def test_library_domains(benchmark: Any, case: ListCase) -> None:
    _info(benchmark, case, "library", hypercalls=len(case.calls))
    got = benchmark(case.h.domains, names=False)
    assert len(got) == case.n and got[-1].domid == case.n - 1


def test_sim_reply_only(benchmark: Any, case: ListCase) -> None:
    _info(benchmark, case, "sim", hypercalls=len(case.calls))
    assert benchmark(case.sim_only) == len(case.calls)


def test_construct_parse(benchmark: Any, case: ListCase) -> None:
    import construct as cs

    arr = cs.Array(case.n, construct_record(case.w.variant.structs["xen_domctl_getdomaininfo"]))
    raw = case.raw
    _info(benchmark, case, "construct", construct_version=cs.version_string)
    got = benchmark(arr.parse, raw)
    assert len(got) == case.n and got[-1].domain == case.n - 1


def test_construct_compiled_parse(benchmark: Any, case: ListCase) -> None:
    import construct as cs

    arr = cs.Array(case.n, construct_record(case.w.variant.structs["xen_domctl_getdomaininfo"])).compile()
    raw = case.raw
    _info(benchmark, case, "construct-compiled", construct_version=cs.version_string)
    got = benchmark(arr.parse, raw)
    assert len(got) == case.n and got[-1].domain == case.n - 1
