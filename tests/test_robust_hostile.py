"""Robustness: never trust a reply.

Every decoder is driven with garbled replies, two ways:

* the simulator's own fault injection (``faults.garble(kind)`` and
  ``faults.fail(errno)``), drawn by hypothesis;
* :class:`HostileXen`, a small hostile in-process hypervisor (a
  :class:`~xenprivcmd.transport.privcmd.MemoryTransport`, by way of the simulator it
  subclasses) that answers ``domctl``/``sysctl``/``xen_version`` with
  hypothesis-drawn counts, fields, return values and bytes written into the
  caller's buffer: num_domains beyond max_domains and the buffer, console
  counts beyond the buffer, more cpus/nodes than asked, unterminated and
  truncated strings, xen_varbuf lengths beyond the buffer, random bytes over
  the whole request.

The result must always be a value, a typed :class:`DecodeError`, or a typed
:class:`XenError` (when an errno was returned); never another exception,
never a hang (a watchdog and a hypercall budget turn one into a failure),
never a read or write outside the hypercall buffer (the hostile transport's
buffers have PROT_NONE guard pages on both sides, so such an access crashes,
and a subset runs in a subprocess to prove the interpreter survives).
"""

from __future__ import annotations

import ctypes
import errno as E
import os
import random
import re
import subprocess
import sys
import traceback
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

import xenprivcmd
from xenprivcmd import abi
from xenprivcmd.abi.detect import UnknownHypervisorError
from xenprivcmd.errors import DecodeError, XenError
from xenprivcmd.handle import Handle
from xenprivcmd.ops import host as _host
from xenprivcmd.sim import GARBLES, SimTransport, default_host
from xenprivcmd.transport.privcmd import Buffer

from .test_robust_common import COUNTS, Hang, count, map_guarded, report, robust_settings, watchdog

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LATEST = abi.releases()[-1]
#: topologyinfo + old numainfo + hard affinity only / fixed-size xen_version strings / varbuf sub-ops + get_domain_state
RELEASES = ["4.4.0", "4.17.7", LATEST]

#: Hypercalls one operation may issue before it counts as a hang (vcpu_info of a
#: domain with 8192 vcpus legitimately issues 8193).
CALL_BUDGET = 20000
#: Seconds one operation may run.
OP_SECONDS = 20.0
#: Largest mapping a garbled reply may make the library create (VARBUF_MAX is 1 MiB;
#: the scratch buffer grows geometrically).
MAX_MAPPED = 8 << 20

ERRNOS = [E.EPERM, E.ESRCH, E.EINTR, E.EIO, E.EAGAIN, E.ENOMEM, E.EACCES, E.EFAULT, E.EBUSY, E.EINVAL,
          E.ENOSPC, E.ENOSYS, E.ENODATA, E.EOPNOTSUPP, E.ENOBUFS, E.EOVERFLOW, E.E2BIG, 4095]

# ValueErrors the library raises about an *argument* once it knows the domain
# (a vcpu beyond a garbled max_vcpu_id is out of range for that domain).
_ARG_ERROR = re.compile(r"is out of range|has no vcpus")


class Hostile(BaseException):
    """The hostile hypervisor's budget ran out (an operation that never ends)."""


class Action:
    """What the hostile hypervisor does with one hypercall (drawn by hypothesis)."""

    __slots__ = ("errno", "honest_first", "rc", "fields", "scramble", "fill")

    def __init__(self, errno: Optional[int], honest_first: bool, rc: Optional[int],
                 fields: Dict[int, Tuple[str, int]], scramble: Optional[int],
                 fill: Optional[Tuple[str, str, int, int]]) -> None:
        self.errno = errno
        self.honest_first = honest_first
        self.rc = rc
        self.fields = fields
        self.scramble = scramble
        self.fill = fill

    def __repr__(self) -> str:
        parts = []
        if self.errno is not None:
            parts.append(f"errno={E.errorcode.get(self.errno, self.errno)}")
        else:
            parts.append("after-sim" if self.honest_first else "no-sim")
            if self.rc is not None:
                parts.append(f"rc={self.rc}")
            if self.fields:
                parts.append(f"fields={self.fields}")
            if self.scramble is not None:
                parts.append(f"scramble={self.scramble}")
            if self.fill is not None:
                parts.append(f"fill={self.fill}")
        return "Action(" + " ".join(parts) + ")"


_BOUNDARY = [0, 1, 2, 3, 4, 7, 8, 15, 16, 63, 64, 255, 256, 1023, 1024, 1025, 4095, 4096, 4097, 8191, 8192,
             16383, 16384, 16385, 32767, 0x7FEF, 0x7FF0, 65535, 65536, 1 << 20, (1 << 20) + 1,
             (1 << 31) - 1, 1 << 31, (1 << 32) - 1, 1 << 32, (1 << 63) - 1, (1 << 64) - 1]

_field_value = st.one_of(
    st.tuples(st.just("near"), st.integers(0, 1 << 16)),   # request/honest value +-1, x2, boundary
    st.tuples(st.just("raw"), st.integers(0, (1 << 64) - 1)),
    st.tuples(st.just("bound"), st.sampled_from(_BOUNDARY)),
)

_action = st.builds(
    Action,
    errno=st.one_of(st.none(), st.none(), st.none(), st.sampled_from(ERRNOS)),
    honest_first=st.booleans(),
    rc=st.one_of(st.none(), st.sampled_from(_BOUNDARY[:-4]), st.integers(0, (1 << 31) - 1)),
    fields=st.dictionaries(st.integers(0, 63), _field_value, max_size=6),
    scramble=st.one_of(st.none(), st.none(), st.integers(0, 1 << 32)),
    fill=st.one_of(
        st.none(),
        st.tuples(st.sampled_from(["arg", "payload", "struct"]),
                  st.sampled_from(["random", "zeros", "ff", "nonul", "ascii", "utf8"]),
                  st.integers(0, 1 << 32),
                  st.one_of(st.sampled_from([1, 4, 15, 16, 17, 64, 144, 1023, 1024, 1025, 4096, 16384, 16385]),
                            st.integers(0, 1 << 17))),
    ),
)


class HostileXen(SimTransport):
    """A hostile hypervisor: the simulator, but every hypercall answered by the next
    :class:`Action` of ``script`` (after the script: honest answers, so loops end).

    It only ever writes inside the caller's current hypercall buffer, whose
    mappings carry guard pages (see :func:`map_guarded`).
    """

    kind = "hostile"

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.script: List[Action] = []
        self.cycle = False
        self.hostile = False
        self.op_calls = 0
        self.applied = 0
        self.budget = CALL_BUDGET

    def _map(self, size: int) -> Buffer:
        return map_guarded(size)

    # -- the caller's buffer ---------------------------------------------------------------
    def _region(self) -> Tuple[int, int]:
        buf = getattr(self._local, "buf", None)
        if buf is None or not buf.address:
            return 0, 0
        return buf.address, buf.address + buf.size

    def _write_clamped(self, address: int, data: bytes) -> None:
        lo, hi = self._region()
        if not data or not lo or address < lo or address >= hi:
            return
        data = data[: hi - address]
        ctypes.memmove(address, data, len(data))

    @staticmethod
    def _bytes(kind: str, seed: int, n: int) -> bytes:
        rng = random.Random(seed)
        if kind == "random":
            return rng.randbytes(n)
        if kind == "zeros":
            return bytes(n)
        if kind == "ff":
            return b"\xff" * n
        if kind == "nonul":
            return bytes(rng.randrange(1, 256) for _ in range(min(n, 4096))) + b"A" * max(0, n - 4096)
        if kind == "ascii":
            return bytes(rng.randrange(32, 127) for _ in range(min(n, 4096))) + b"\0" * max(0, n - 4096)
        # utf8: invalid sequences, overlong forms, lone surrogates
        pool = [b"\xc0\x80", b"\xed\xa0\x80", b"\xff", b"\xe2\x82", b"\xf4\x90\x80\x80", "é".encode(), b"\0"]
        out = b"".join(pool[rng.randrange(len(pool))] for _ in range(n // 2 + 1))
        return out[:n]

    # -- dispatch --------------------------------------------------------------------------
    def counted(self) -> bool:
        """Whether this call is hostile; it counts against the operation's budget."""
        if not self.hostile:
            return False
        self.op_calls += 1
        if self.op_calls > self.budget:
            raise Hostile(f"{self.op_calls} hypercalls in one operation: it never ends")
        return True

    def handle(self, op: int, args: Tuple[int, int, int, int, int]) -> int:
        if not self.counted():
            return super().handle(op, args)
        if not self.script:
            return super().handle(op, args)
        act = self.script[0] if self.cycle else self.script.pop(0)
        if self.cycle:
            self.script.append(self.script.pop(0))
        self.applied += 1
        if act.errno is not None:
            raise OSError(act.errno, "hostile: refused")
        before: Dict[str, int] = {}
        lay = None
        if op in (35, 36) and args[0]:
            lay = self.sysctl if op == 35 else self.domctl
            before = self._ints(lay, args[0])
        rc = 0
        if act.honest_first:
            try:
                rc = super().handle(op, args)
            except OSError:
                rc = 0
        if act.rc is not None:
            rc = act.rc
        if lay is not None:
            self._patch(lay, args[0], act, before)
        if act.fill is not None:
            where, kind, seed, n = act.fill
            lo, _hi = self._region()
            start = {"arg": args[1] if op == 17 else args[0], "payload": lo + 4096, "struct": args[0]}[where]
            if start:
                self._write_clamped(start, self._bytes(kind, seed, n))
        return rc

    def _ints(self, lay: Any, addr: int) -> Dict[str, int]:
        lo, hi = self._region()
        if not lo or addr < lo or addr + lay.size > hi:
            return {}
        raw = ctypes.string_at(addr, lay.size)
        out = {}
        for path, f in lay.fields.items():
            if f.count == 1 and not f.is_bytes:
                out[path] = lay.get(raw, path)
        return out

    def _patch(self, lay: Any, addr: int, act: Action, before: Dict[str, int]) -> None:
        lo, hi = self._region()
        if not lo or addr < lo or addr + lay.size > hi:
            return
        raw = bytearray(ctypes.string_at(addr, lay.size))
        if act.scramble is not None:
            rng = random.Random(act.scramble)
            head = lay.offset("u") if "u" in lay.fields else 8
            raw[head:] = rng.randbytes(len(raw) - head)
        if act.fields:
            cmd = before.get("cmd", 0)
            names = (self._sysctl_names if lay is self.sysctl else self._domctl_names)
            sub = names.get(cmd, "")
            cands = [p for p, f in lay.fields.items()
                     if f.count == 1 and not f.is_bytes and (p.startswith(f"u.{sub}.") or p == "domain")]
            if not cands:
                cands = [p for p, f in lay.fields.items() if f.count == 1 and not f.is_bytes and p.startswith("u.")]
            if cands:
                honest = {p: lay.get(raw, p) for p in cands}
                pool = sorted({v for v in list(before.values()) + list(honest.values())})
                for i, (how, v) in act.fields.items():
                    path = cands[i % len(cands)]
                    if how == "near":
                        base = pool[v % len(pool)] if pool else 0
                        value = [base - 1, base, base + 1, 2 * base, base + 16384][(v >> 8) % 5]
                    else:
                        value = v
                    lay.put(raw, path, _fit(lay.fields[path], value))
        self._write_clamped(addr, bytes(raw))


def _fit(field: Any, value: int) -> int:
    """``value`` as the bit pattern of ``field`` (two's complement for a signed one)."""
    bits = 8 * field.size
    value &= (1 << bits) - 1
    if field.st.format[-1].islower() and value >> (bits - 1):
        value -= 1 << bits
    return value


def hostile_handle(release: str, nodes: int = 2) -> Tuple[Handle, HostileXen]:
    host = default_host(release=release, pcpus=4, nodes=nodes)
    t = HostileXen(host)
    h = Handle(t, "sim:///hostile", arch=host.arch)
    h.abi  # noqa: B018 - detection against honest answers
    return h, t


# -- the operations that decode replies --------------------------------------------------------

def _op_detect(h: Handle) -> Any:
    fresh = Handle(h.transport, "sim:///hostile")
    return fresh.abi


DECODERS: Dict[str, Callable[[Handle], Any]] = {
    "detect": _op_detect,
    "xen_version": lambda h: h.xen_version(),
    "version": lambda h: h.version(),
    "domains": lambda h: h.domains(),
    "domains_names": lambda h: h.domains(names=True),
    "domain_info": lambda h: h.domain_info(1),
    "domain_state": lambda h: h.domain_state(1),
    "lookup_name": lambda h: h.lookup("web1"),
    "vcpu_info": lambda h: h.vcpu_info(1),
    "vcpu_affinity": lambda h: h.vcpu_affinity(1, 0),
    "set_vcpu_affinity": lambda h: h.set_vcpu_affinity(1, 0, hard=[0, 1]),
    "sched_id": lambda h: h.sched_id(),
    "sched_params": lambda h: h.sched_params(1),
    "set_sched_params": lambda h: h.set_sched_params(1, weight=300),
    "create_domain": lambda h: h.create_domain(max_vcpus=2),
    "physinfo": lambda h: h.physinfo(),
    "nr_cpus": lambda h: h.nr_cpus(),
    "cpu_topology": lambda h: h.cpu_topology(),
    "numa_info": lambda h: h.numa_info(),
    "pcpu_info": lambda h: h.pcpu_info(),
    "read_console": lambda h: h.read_console(),
    "read_console_incremental": lambda h: (h.read_console(incremental=True), h.read_console(incremental=True)),
}


def run_checked(h: Handle, name: str) -> Optional[BaseException]:
    """Run one operation; return its typed exception (or None); fail on anything else."""
    h.state.nr_cpus = None  # re-read physinfo through the hostile hypervisor
    h.state.varbuf_ops = None
    h.state.console_index = None
    t = h.transport
    try:
        with watchdog(OP_SECONDS):
            DECODERS[name](h)
    except (DecodeError, XenError, UnknownHypervisorError) as exc:
        return exc
    except ValueError as exc:
        if type(exc) is ValueError and _ARG_ERROR.search(str(exc)):
            return exc
        raise AssertionError(f"{name}: untyped {type(exc).__name__}: {exc}\n{traceback.format_exc()}") from exc
    except (Hang, Hostile) as exc:
        raise AssertionError(f"{name}: never ends: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - that is the point
        raise AssertionError(f"{name}: untyped {type(exc).__name__}: {exc}\n{traceback.format_exc()}") from exc
    finally:
        st_ = t.stats()
        assert st_["buffers"] <= 1, st_
        assert st_["mapped_bytes"] <= MAX_MAPPED, f"{name}: a garbled reply made the library map {st_['mapped_bytes']} bytes"
    return None


def _record(name: str, t: HostileXen, exc: Optional[BaseException]) -> None:
    count(f"decoder/hostile/{name}")
    count("hostile/actions applied (garbled replies)", t.applied)
    count(f"outcome/hostile/{'ok' if exc is None else type(exc).__name__}")


@pytest.fixture(scope="module", autouse=True)
def _summary(request):
    yield
    report(request.config, "hostile replies (tests/test_robust_hostile.py)")


# -- 1. the hostile hypervisor ------------------------------------------------------------------

HANDLES: Dict[str, Tuple[Handle, HostileXen]] = {}


def _handle(release: str) -> Tuple[Handle, HostileXen]:
    # one handle per release, reset per example: the state a hostile reply can leave is the point too
    if release not in HANDLES:
        HANDLES[release] = hostile_handle(release)
    return HANDLES[release]


@pytest.mark.parametrize("release", RELEASES)
@robust_settings(400)
@given(name=st.sampled_from(sorted(DECODERS)), script=st.lists(_action, min_size=1, max_size=10))
def test_hostile_hypervisor_replies_are_typed(release, name, script):
    _run_hostile(release, name, script)


@pytest.mark.parametrize("name", sorted(DECODERS))
@robust_settings(30)
@given(script=st.lists(_action, min_size=1, max_size=6), release=st.sampled_from(RELEASES))
def test_hostile_replies_per_decoder(name, script, release):
    """Every decoder gets its own examples (the test above draws the decoder)."""
    _run_hostile(release, name, script)


def _run_hostile(release, name, script):
    """One decoder against a hostile hypervisor playing ``script``: typed outcome only
    (run_checked asserts it)."""
    h, t = _handle(release)
    t.script, t.cycle, t.op_calls, t.applied = list(script), False, 0, 0
    t.hostile = True
    try:
        exc = run_checked(h, name)
    finally:
        t.hostile = False
        t.script = []
    _record(name, t, exc)


# Targeted hostile replies the random ones rarely hit.

def _act(**kw: Any) -> Action:
    base = dict(errno=None, honest_first=True, rc=None, fields={}, scramble=None, fill=None)
    base.update(kw)
    return Action(**base)


class _Count(HostileXen):
    """Sets one field of every reply to a fixed value (a hostile hypervisor that repeats itself)."""

    def __init__(self, *a: Any, field: str, value: Callable[[Dict[str, int]], int], records: Any = None, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.field, self.value, self.records = field, value, records

    def handle(self, op: int, args: Tuple[int, int, int, int, int]) -> int:
        if not self.counted():
            return super().handle(op, args)
        lay = self.sysctl if op == 35 else self.domctl
        before = self._ints(lay, args[0])
        rc = SimTransport.handle(self, op, args)
        if self.field in lay.fields:
            raw = bytearray(ctypes.string_at(args[0], lay.size))
            lay.put(raw, self.field, _fit(lay.fields[self.field], self.value(before)))
            ctypes.memmove(args[0], bytes(raw), lay.size)
            if self.records is not None:
                self.records(self, before)
        return rc


def _count_handle(field: str, value: Callable[[Dict[str, int]], int], records: Any = None,
                  release: str = "4.17.7") -> Tuple[Handle, HostileXen]:
    host = default_host(release=release, pcpus=4, nodes=2)
    t = _Count(host, field=field, value=value, records=records)
    h = Handle(t, "sim:///hostile", arch=host.arch)
    h.abi  # noqa: B018
    return h, t


def _hostile_run(h: Handle, name: str) -> Optional[BaseException]:
    """``name`` run (checked) once with the handle's hypervisor hostile; its exception, if any."""
    t = h.transport
    assert isinstance(t, HostileXen)
    t.hostile, t.op_calls = True, 0
    try:
        exc = run_checked(h, name)
    finally:
        t.hostile = False
    count(f"decoder/hostile/{name}")
    return exc


def _expect_typed(h: Handle, name: str) -> None:
    exc = _hostile_run(h, name)
    count(f"outcome/hostile/{'ok' if exc is None else type(exc).__name__}")


@pytest.mark.parametrize("field,name,value", [
    ("u.getdomaininfolist.num_domains", "domains", lambda b: b["u.getdomaininfolist.max_domains"] + 1),
    ("u.getdomaininfolist.num_domains", "domains", lambda b: 0xFFFFFFFF),
    ("u.readconsole.count", "read_console", lambda b: b["u.readconsole.count"] + 1),
    ("u.readconsole.count", "read_console", lambda b: 0xFFFFFFFF),
    ("u.cputopoinfo.num_cpus", "cpu_topology", lambda b: b["u.cputopoinfo.num_cpus"] + 1),
    ("u.numainfo.num_nodes", "numa_info", lambda b: b["u.numainfo.num_nodes"] + 1),
    ("u.getcpuinfo.nr_cpus", "pcpu_info", lambda b: b["u.getcpuinfo.max_cpus"] + 1),
    ("u.physinfo.max_cpu_id", "physinfo", lambda b: 0xFFFFFFFF),
    ("u.physinfo.max_node_id", "numa_info", lambda b: 0xFFFFFFFF),
    ("u.physinfo.nr_cpus", "physinfo", lambda b: 0xFFFFFFFF),
    ("u.getdomaininfo.max_vcpu_id", "vcpu_info", lambda b: 0xFFFFFFFE),
])
def test_hostile_counts_beyond_the_buffer_are_decode_errors(field, name, value):
    h, _t = _count_handle(field, value)
    exc = _hostile_run(h, name)
    if name == "vcpu_info" or "max_cpu_id" in field or "nr_cpus" in field or "max_node_id" in field:
        assert isinstance(exc, DecodeError), exc
    else:
        assert isinstance(exc, DecodeError), (field, exc)


def _records_never_advancing(t: HostileXen, before: Dict[str, int]) -> None:
    """A full chunk whose first record is at first_domain and whose last goes back to 0."""
    if "u.getdomaininfolist.max_domains" not in before:
        return
    first = before["u.getdomaininfolist.first_domain"]
    n = before["u.getdomaininfolist.max_domains"]
    size = t.info_size
    lo, _hi = t._region()
    rec = bytearray(size)
    data = bytearray()
    for i in range(n):
        rec[0:2] = (first if i == 0 else 0).to_bytes(2, "little")
        data += rec
    t._write_clamped(lo + 4096, bytes(data))


def test_regression_hostile_listing_that_never_advances_hangs():
    """LIBRARY BUG (see the robustness report): getdomaininfolist answering a full chunk
    whose last record is not past ``first_domain`` makes ``domains()`` ask the same page
    forever (and grow its list without bound).  It must raise DecodeError."""
    h, t = _count_handle("u.getdomaininfolist.num_domains", lambda b: b["u.getdomaininfolist.max_domains"],
                         records=_records_never_advancing)
    t.budget = 200  # a full listing of 32k domains takes 32 calls of 1024
    _expect_typed(h, "domains")


def _console_full(t: HostileXen, before: Dict[str, int]) -> None:
    lo, _hi = t._region()
    lay = t.sysctl
    if lo and "u.readconsole.index" in lay.fields and "u.readconsole.count" in before:
        raw = bytearray(ctypes.string_at(lo, lay.size))
        lay.put(raw, "u.readconsole.index", (before.get("u.readconsole.index", 0) + 7) & 0xFFFFFFFF)
        ctypes.memmove(lo, bytes(raw), lay.size)


def test_regression_hostile_console_that_never_ends_hangs():
    """LIBRARY BUG (see the robustness report): readconsole answering a full buffer and
    a new index every time makes ``read_console()`` loop forever, its result growing
    by 16 KiB a call.  It must stop with DecodeError (or at a bound)."""
    h, t = _count_handle("u.readconsole.count", lambda b: b["u.readconsole.count"], records=_console_full)
    t.budget = 5000  # 80 MiB of console in 16 KiB reads: beyond any Xen console ring
    _expect_typed(h, "read_console")


class _Varbuf(HostileXen):
    """xen_varbuf sub-ops (build_id, and the *2 sub-ops of 4.20+) answer with a bad length."""

    def __init__(self, *a: Any, how: str, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.how = how

    def handle(self, op: int, args: Tuple[int, int, int, int, int]) -> int:
        rc = SimTransport.handle(self, op, args)
        if not self.hostile or op != 17 or args[0] not in (10, 11, 12, 13, 14):
            return rc
        self.applied += 1
        if args[1] == 0:  # the size query
            return {"beyond": (1 << 20) + 1, "huge": (1 << 31) - 1}.get(self.how, rc)
        return {"one_more": rc + 1, "page": rc + 4096}.get(self.how, rc)


@pytest.mark.parametrize("release", ["4.17.7", LATEST])
@pytest.mark.parametrize("how", ["beyond", "huge", "one_more", "page"])
def test_hostile_varbuf_lengths(release, how):
    """xen_varbuf: a size query beyond any reply, or more bytes 'written' than the buffer holds."""
    host = default_host(release=release, pcpus=4, nodes=2)
    t = _Varbuf(host, how=how)
    h = Handle(t, "sim:///hostile", arch=host.arch)
    h.abi  # noqa: B018
    t.hostile = True
    try:
        exc = run_checked(h, "version")
    finally:
        t.hostile = False
    count("decoder/hostile/version")
    assert t.applied, "no varbuf sub-op was issued"
    assert isinstance(exc, DecodeError), exc


@pytest.mark.parametrize("kind", ["nonul", "random", "utf8", "ff"])
def test_hostile_fixed_strings_unterminated_or_garbage(kind):
    h, t = hostile_handle("4.17.7")
    # every xen_version sub-op writes `kind` bytes over the whole buffer from its argument
    t.script, t.cycle = [_act(fill=("arg", kind, 7, 8192))], True
    t.hostile, t.op_calls = True, 0
    try:
        exc = run_checked(h, "version")
    finally:
        t.hostile, t.cycle, t.script = False, False, []
    count("decoder/hostile/version")
    if kind == "nonul":
        assert isinstance(exc, DecodeError), exc


# -- 1b. the simulator's fault injection -------------------------------------------------------

_SUBOPS = [
    (None, None), ("sysctl", None), ("domctl", None), ("xen_version", None),
    ("sysctl", "getdomaininfolist"), ("sysctl", "readconsole"), ("sysctl", "cputopoinfo"), ("sysctl", "numainfo"),
    ("sysctl", "getcpuinfo"), ("sysctl", "physinfo"), ("sysctl", "topologyinfo"), ("sysctl", "sched_id"),
    ("domctl", "getdomaininfo"), ("domctl", "getvcpuinfo"), ("domctl", "getvcpuaffinity"),
    ("domctl", "scheduler_op"), ("domctl", "createdomain"), ("domctl", "get_domain_state"),
    ("xen_version", "extraversion"), ("xen_version", "extraversion2"), ("xen_version", "capabilities2"),
    ("xen_version", "compile_info"), ("xen_version", "build_id"), ("xen_version", "changeset"),
]

_fault = st.tuples(
    st.one_of(st.sampled_from(sorted(GARBLES)), st.sampled_from(ERRNOS)),
    st.sampled_from(_SUBOPS),
    st.integers(1, 4),                       # nth
    st.one_of(st.none(), st.integers(1, 3)),  # times
)


@robust_settings(600)
@given(name=st.sampled_from(sorted(DECODERS)), faults=st.lists(_fault, min_size=1, max_size=4),
       release=st.sampled_from(RELEASES))
def test_sim_faults_are_typed(name, faults, release):
    h = xenprivcmd.open(f"sim:///?xen={release}&nodes=2")
    h.abi  # noqa: B018
    t = h.transport
    for what, (op, subop), nth, times in faults:
        if isinstance(what, str):
            t.faults.garble(what, op=op, subop=subop, nth=nth, times=times)
        else:
            t.faults.fail(what, op=op, subop=subop, nth=nth, times=times)
    try:
        with watchdog(OP_SECONDS):
            exc = run_checked(h, name)
    finally:
        fired = len(t.faults.fired)
        t.faults.clear()
    count(f"decoder/sim/{name}")
    count("sim/faults armed", len(faults))
    count("sim/faults fired", fired)
    count(f"outcome/sim/{'ok' if exc is None else type(exc).__name__}")


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize("kind", sorted(GARBLES))
@pytest.mark.parametrize("name", sorted(DECODERS))
def test_sim_every_garble_on_every_decoder(release, kind, name):
    h = xenprivcmd.open(f"sim:///?xen={release}&nodes=2")
    h.abi  # noqa: B018
    h.transport.faults.garble(kind, times=None)
    try:
        exc = run_checked(h, name)
    finally:
        fired = len(h.transport.faults.fired)
        h.transport.faults.clear()
    count(f"decoder/sim/{name}")
    count("sim/faults armed", 1)
    count("sim/faults fired", fired)
    count(f"outcome/sim/{'ok' if exc is None else type(exc).__name__}")


# -- 1c. a subset in a subprocess: no interpreter crash --------------------------------------

SUBPROCESS_SCRIPT = r"""
import random, sys
from tests import test_robust_hostile as m
rng = random.Random(int(sys.argv[1]))
n = int(sys.argv[2])
done = 0
for release in m.RELEASES:
    h, t = m.hostile_handle(release)
    for i in range(n):
        name = rng.choice(sorted(m.DECODERS))
        script = []
        for _ in range(rng.randint(1, 8)):
            script.append(m.Action(
                errno=rng.choice([None, None, None] + m.ERRNOS),
                honest_first=rng.random() < 0.5,
                rc=rng.choice([None, rng.choice(m._BOUNDARY[:-4]), rng.randrange(1 << 31)]),
                fields={rng.randrange(64): rng.choice([("near", rng.randrange(1 << 16)),
                                                       ("raw", rng.randrange(1 << 64)),
                                                       ("bound", rng.choice(m._BOUNDARY))])
                        for _ in range(rng.randint(0, 5))},
                scramble=rng.choice([None, rng.randrange(1 << 32)]),
                fill=rng.choice([None, (rng.choice(["arg", "payload", "struct"]),
                                        rng.choice(["random", "zeros", "ff", "nonul", "ascii", "utf8"]),
                                        rng.randrange(1 << 32), rng.randrange(1 << 17))]),
            ))
        t.script, t.op_calls, t.hostile = script, 0, True
        try:
            m.run_checked(h, name)
        except AssertionError as exc:
            if "never ends" not in str(exc):
                raise
        finally:
            t.hostile, t.script = False, []
        done += 1
print("hostile cases survived:", done)
"""


def test_hostile_subset_in_a_subprocess_never_crashes_the_interpreter():
    n = max(20, int(60 * float(os.environ.get("ROBUST_SCALE", "1"))))
    proc = subprocess.run([sys.executable, "-X", "faulthandler", "-c", SUBPROCESS_SCRIPT, "20260101", str(n)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"rc={proc.returncode}\n{proc.stdout}\n{proc.stderr[-4000:]}"
    assert "Fatal Python error" not in proc.stderr
    assert f"survived: {n * len(RELEASES)}" in proc.stdout
    count("subprocess/hostile cases", n * len(RELEASES))


def test_guard_pages_catch_an_access_outside_the_buffer():
    """The guard itself works: touching the byte after a hostile buffer kills the process."""
    code = ("from tests.test_robust_common import map_guarded\n"
            "import ctypes\n"
            "b = map_guarded(4096)\n"
            "ctypes.memset(b.address, 1, 4096)\n"
            "print('inside ok', flush=True)\n"
            "ctypes.string_at(b.address + 4096, 1)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert "inside ok" in proc.stdout
    assert proc.returncode < 0 or "Segmentation fault" in proc.stderr, (proc.returncode, proc.stderr)


def test_host_constants_bound_what_a_reply_can_size():
    assert _host.MAX_CPUS <= 1 << 16 and _host.MAX_NODES <= 1 << 12
    assert COUNTS is not None
