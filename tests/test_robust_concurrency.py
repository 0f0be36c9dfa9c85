"""Robustness: threads, fork and signals.

* 16 threads issue mixed operations on one handle, and on several handles,
  against the simulator: every ``domain_info`` agrees with the listing's
  stable fields, every thread has its own hypercall buffer, and the buffers
  of finished threads are unmapped.
* A child after ``fork()`` issues hypercalls correctly (on fresh buffers: the
  parent's are ``MADV_DONTFORK`` and absent in the child, so touching one
  would crash it) while the parent keeps going in other threads.
* A signal arriving mid-call: ``EINTR`` from the privcmd driver is retried by
  :class:`~xenprivcmd.transport.privcmd.PrivcmdTransport` (tested through the real
  ``PrivcmdTransport.hypercall`` with the ioctl answered by the simulator) and
  applies the operation exactly once; when it persists, or on the simulator
  (a ``MemoryTransport`` does not retry), it surfaces and nothing was applied.
  A Python signal handler running between the hypercalls of an operation
  never leaves a half-applied state.
"""

from __future__ import annotations

import ctypes
import errno as E
import gc
import os
import signal
import threading
import time
from typing import Any, Dict, List, Set, Tuple

import pytest

import xenprivcmd
from xenprivcmd import errors
from xenprivcmd.handle import Handle
from xenprivcmd.sim import SimTransport, default_host
from xenprivcmd.transport import privcmd as _privcmd

from .test_robust_common import count, report

THREADS = 16
URI = "sim:///?domains=40&seed=7&pcpus=8"
STABLE = ("domid", "handle_bytes", "max_vcpu_id", "ssidref", "cpupool", "shared_info_frame")


@pytest.fixture(scope="module", autouse=True)
def _summary(request):
    yield
    report(request.config, "concurrency (tests/test_robust_concurrency.py)", prefix="concurrency/")


def stable(info: Any) -> Tuple[Any, ...]:
    return tuple(getattr(info, f) for f in STABLE)


class LockedSim(SimTransport):
    """The simulator with one lock around each hypercall, as Xen's domctl lock makes each atomic
    (the plain simulator's Python state is not meant to be mutated from many threads at once)."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self._hv_lock = threading.Lock()

    def handle(self, op: int, args: Tuple[int, int, int, int, int]) -> int:
        with self._hv_lock:
            return super().handle(op, args)


def _mixed_worker(h: Handle, reference: Dict[int, Tuple[Any, ...]], n: int, seed: int,
                  errors_out: List[BaseException], addresses: Set[int], lock: threading.Lock,
                  barrier: threading.Barrier) -> None:
    import random

    rng = random.Random(seed)
    ids = sorted(reference)
    try:
        for _ in range(n):
            k = rng.randrange(8)
            if k == 0:
                listed = h.domains()
                assert {i.domid: stable(i) for i in listed} == reference
            elif k in (1, 2):
                d = rng.choice(ids)
                assert stable(h.domain_info(d)) == reference[d]
            elif k == 3:
                assert h.xen_version() == (h.abi.xen[0], h.abi.xen[1])
            elif k == 4:
                assert h.physinfo().nr_cpus == 8
            elif k == 5:
                d = rng.choice(ids)
                vs = h.vcpu_info(d)
                assert len(vs) == h.domain_info(d).vcpus and [v.vcpu for v in vs] == list(range(len(vs)))
            elif k == 6:
                d = rng.choice(ids)
                aff = h.vcpu_affinity(d, 0)
                assert aff.vcpu == 0 and aff.hard and max(aff.hard) < 8
            else:
                assert h.sched_params(rng.choice(ids)).weight > 0
        buf = h.transport.scratch()
        with lock:
            addresses.add(buf.address)
        barrier.wait()  # every thread alive (and its buffer mapped) while the addresses are compared
    except BaseException as exc:  # noqa: BLE001 - reported to the main thread
        barrier.abort()
        errors_out.append(exc)


def _run_threads(handles: List[Handle], per_thread: int) -> Tuple[List[BaseException], Set[int], int]:
    refs = {id(h): {i.domid: stable(i) for i in h.domains()} for h in handles}
    errs: List[BaseException] = []
    addresses: Set[int] = set()
    lock = threading.Lock()
    barrier = threading.Barrier(THREADS, timeout=300)
    threads = [threading.Thread(target=_mixed_worker,
                                args=(handles[i % len(handles)], refs[id(handles[i % len(handles)])], per_thread, i,
                                      errs, addresses, lock, barrier))
               for i in range(THREADS)]
    for t in threads:
        t.start()
    peak = 0
    while any(t.is_alive() for t in threads):
        peak = max(peak, sum(h.transport.stats()["buffers"] for h in handles))
        time.sleep(0.005)
    for t in threads:
        t.join()
    return errs, addresses, peak


@pytest.mark.parametrize("n_handles", [1, 4])
def test_threads_on_shared_and_separate_handles_stay_consistent(n_handles):
    handles = [xenprivcmd.open(URI) for _ in range(n_handles)]
    for h in handles:
        h.abi  # noqa: B018
    errs, addresses, peak = _run_threads(handles, 300)
    assert not errs, errs[:3]
    assert len(addresses) == THREADS, "two threads shared a hypercall buffer"
    assert peak <= THREADS + n_handles
    gc.collect()
    # the buffers of finished threads are gone (thread-locals die with their thread)
    for h in handles:
        assert h.transport.stats()["buffers"] <= 1, h.transport.stats()
        h.close()
        assert h.transport.stats()["buffers"] == 0
    count("concurrency/threads", THREADS)
    count("concurrency/mixed ops", THREADS * 300)


def test_many_short_lived_threads_leave_no_buffers():
    h = xenprivcmd.open(URI)
    h.abi  # noqa: B018
    for _round in range(20):
        ts = [threading.Thread(target=h.domain_info, args=(1,)) for _ in range(THREADS)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    gc.collect()
    assert h.transport.stats()["buffers"] <= 1
    count("concurrency/short-lived threads", 20 * THREADS)


def test_concurrent_pause_unpause_pairs_apply_exactly_once():
    host = default_host(pcpus=4)
    h = Handle(LockedSim(host), "sim:///locked", arch=host.arch)
    h.abi  # noqa: B018
    before = {d: host.domains[d].pause_count for d in (1, 2)}
    errs: List[BaseException] = []

    def worker(domid: int) -> None:
        try:
            for _ in range(200):
                h.pause(domid)
                assert h.domain_info(domid).paused
                h.unpause(domid)
        except BaseException as exc:  # noqa: BLE001
            errs.append(exc)

    ts = [threading.Thread(target=worker, args=(1 + i % 2,)) for i in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errs, errs[:3]
    assert {d: host.domains[d].pause_count for d in (1, 2)} == before
    count("concurrency/pause+unpause pairs", 8 * 200)


# -- fork ---------------------------------------------------------------------------------------

def test_child_after_fork_issues_hypercalls_while_the_parent_keeps_going():
    h = xenprivcmd.open(URI)
    h.abi  # noqa: B018
    reference = {i.domid: stable(i) for i in h.domains()}
    parent_addr = h.transport.scratch().address
    stop = threading.Event()
    errs: List[BaseException] = []
    done = [0]

    def parent_worker() -> None:
        try:
            while not stop.is_set():
                assert stable(h.domain_info(1)) == reference[1]
                done[0] += 1
        except BaseException as exc:  # noqa: BLE001
            errs.append(exc)

    workers = [threading.Thread(target=parent_worker) for _ in range(3)]
    for t in workers:
        t.start()
    time.sleep(0.05)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no pytest machinery from here on
        code = 1
        try:
            os.close(r)
            assert h.transport.stats()["buffers"] == 0, "the child still holds the parent's buffers"
            for _ in range(500):
                assert {i.domid: stable(i) for i in h.domains()} == reference
                assert stable(h.domain_info(2)) == reference[2]
                assert h.physinfo().nr_cpus == 8
            buf = h.transport.scratch()
            assert buf.address != 0
            h.pause(1)  # the child's copy of the simulated host
            assert h.domain_info(1).paused
            os.write(w, f"ok {buf.address:#x} {h.transport.stats()['buffers']}".encode())
            code = 0
        except BaseException as exc:  # noqa: BLE001
            os.write(w, f"fail {type(exc).__name__}: {exc}".encode())
        finally:
            os._exit(code)
    os.close(w)
    _, status = os.waitpid(pid, 0)
    msg = os.read(r, 4096).decode()
    os.close(r)
    stop.set()
    for t in workers:
        t.join()
    assert os.WIFEXITED(status), f"child killed by signal {os.WTERMSIG(status)} (touched a parent buffer?)"
    assert os.WEXITSTATUS(status) == 0 and msg.startswith("ok"), msg
    assert msg.split()[2] == "1", msg  # exactly one buffer in the child
    assert not errs, errs[:3]
    assert done[0] > 0
    # the parent is untouched: its buffer is still mapped and used, its host not paused by the child
    assert h.transport.scratch().address == parent_addr
    assert not h.domain_info(1).paused
    count("concurrency/fork children", 1)


# -- signals and EINTR ------------------------------------------------------------------------

class FakeIoctl:
    """Stands in for ``fcntl.ioctl`` on a privcmd fd: EINTR for the first ``eintr``
    attempts of each chosen hypercall (before the hypervisor acts, as the privcmd driver
    does), then the simulator answers."""

    def __init__(self, sim: SimTransport, eintr: int, subops: Tuple[Any, ...]) -> None:
        self.sim, self.eintr, self.subops = sim, eintr, subops
        self.attempts: Dict[int, int] = {}
        self.interrupted = 0

    def __call__(self, fd: int, request: int, arg: Any, mutate: bool = True) -> int:
        assert request == _privcmd.IOCTL_PRIVCMD_HYPERCALL
        op, args = int(arg.op), tuple(int(x) for x in arg.arg)
        subop, _num = self.sim._subop_of(op, args)
        if subop in self.subops:
            key = id(arg)
            n = self.attempts.get(key, 0)
            if n < self.eintr:
                self.attempts[key] = n + 1
                self.interrupted += 1
                raise InterruptedError(E.EINTR, "Interrupted system call")
            self.attempts.pop(key, None)
        try:
            return self.sim.handle(op, args)  # type: ignore[arg-type]
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror) from None


def privcmd_on_sim(monkeypatch: Any, eintr: int, subops: Tuple[str, ...]) -> Tuple[Handle, SimTransport, FakeIoctl]:
    host = default_host(pcpus=4)
    sim = SimTransport(host)
    fake = FakeIoctl(sim, eintr, ())
    monkeypatch.setattr(_privcmd, "_ioctl", fake)
    monkeypatch.setattr(_privcmd, "_map_anonymous", lambda size, locked: _map_unlocked(size))
    fd = os.open(os.devnull, os.O_RDWR)
    t = _privcmd.PrivcmdTransport(fd, "/dev/xen/privcmd (simulated)", None)
    h = Handle(t, "privcmd-on-sim", arch=host.arch)
    h.abi  # noqa: B018
    h.nr_cpus()  # noqa: B018
    fake.subops = subops  # armed after detection
    return h, sim, fake


_real_map_anonymous = _privcmd._map_anonymous


def _map_unlocked(size: int) -> Any:
    return _real_map_anonymous(size, locked=False)  # no RLIMIT_MEMLOCK needed in tests


@pytest.mark.parametrize("eintr", [1, 5, _privcmd.EINTR_RETRIES])
@pytest.mark.parametrize("op", ["pausedomain", "max_mem", "setvcpuaffinity", "scheduler_op", "getdomaininfolist"])
def test_privcmd_retries_eintr_and_applies_exactly_once(monkeypatch, eintr, op):
    h, sim, fake = privcmd_on_sim(monkeypatch, eintr, (op,))
    d = sim.host.domains[1]
    if op == "pausedomain":
        before = d.pause_count
        h.pause(1)
        assert d.pause_count == before + 1, "a retried pause was applied twice (or not at all)"
    elif op == "max_mem":
        h.set_max_mem(1, 3 << 20)
        assert d.max_pages == (3 << 20) >> 2
    elif op == "setvcpuaffinity":
        assert h.set_vcpu_affinity(1, 0, hard=[1, 2]).hard == frozenset({1, 2})
    elif op == "scheduler_op":
        assert h.set_sched_params(1, weight=700).weight == 700
    else:
        assert [i.domid for i in h.domains()] == sorted(sim.host.domains)
    assert fake.interrupted >= eintr
    count("concurrency/EINTR injected (privcmd retry)", fake.interrupted)


@pytest.mark.parametrize("op", ["pausedomain", "getdomaininfo"])
def test_regression_privcmd_eintr_beyond_the_retries_is_not_an_interrupted_error(monkeypatch, op):
    """The retries run out: the caller gets an InterruptedError (``except InterruptedError``
    works, as for any interrupted system call) and nothing was applied."""
    h, sim, fake = privcmd_on_sim(monkeypatch, _privcmd.EINTR_RETRIES + 1, (op,))
    d = sim.host.domains[1]
    before = d.pause_count
    with pytest.raises(OSError) as exc:
        h.pause(1) if op == "pausedomain" else h.domain_info(1)
    assert exc.value.errno == E.EINTR
    assert d.pause_count == before
    count("concurrency/EINTR injected (privcmd exhausted)", fake.interrupted)
    assert isinstance(exc.value, errors.XenError), type(exc.value)
    assert isinstance(exc.value, InterruptedError), (
        f"EINTR surfaced as {type(exc.value).__mro__[:3]}, which `except InterruptedError` does not catch")


@pytest.mark.parametrize("op,call,state", [
    ("pausedomain", lambda h: h.pause(1), lambda host: host.domains[1].pause_count),
    ("unpausedomain", lambda h: h.unpause(3), lambda host: host.domains[3].pause_count),
    ("max_mem", lambda h: h.set_max_mem(1, 3 << 20), lambda host: host.domains[1].max_pages),
    ("setvcpuaffinity", lambda h: h.set_vcpu_affinity(1, 0, hard=[1]), lambda host: host.domains[1].vcpus[0].hard),
    ("scheduler_op", lambda h: h.set_sched_params(1, weight=999), lambda host: host.domains[1].weight),
    ("destroydomain", lambda h: h.destroy(2), lambda host: sorted(host.domains)),
    ("createdomain", lambda h: h.create_domain(), lambda host: sorted(host.domains)),
])
def test_sim_eintr_surfaces_and_nothing_is_half_applied(op, call, state):
    """The simulator (a MemoryTransport) does not retry: EINTR surfaces, the state is unchanged,
    and the same call then applies exactly once."""
    h = xenprivcmd.open("sim:///default")
    h.abi  # noqa: B018
    host = h.transport.host
    before = state(host)
    h.transport.faults.fail(E.EINTR, op="domctl", subop=op)
    with pytest.raises(errors.XenError) as exc:
        call(h)
    assert exc.value.errno == E.EINTR
    assert state(host) == before, "an interrupted call left part of its change"
    call(h)
    after = state(host)
    assert after != before or op == "unpausedomain"
    count("concurrency/EINTR injected (sim)", 1)


class _SignalAfter(SimTransport):
    """A signal whose Python handler raises arrives just after the ``subop`` hypercall returned
    (the handler runs at the next bytecode boundary, i.e. between two hypercalls of one op)."""

    def __init__(self, *a: Any, subop: str, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.subop = subop
        self.armed = False

    def handle(self, op: int, args: Tuple[int, int, int, int, int]) -> int:
        rc = super().handle(op, args)
        if self.armed and self.log and self.log[-1][1] == self.subop:
            self.armed = False
            raise KeyboardInterrupt("SIGINT between two hypercalls")
        return rc


def test_regression_interrupt_between_createdomain_and_max_vcpus_half_creates():
    """create_domain is two hypercalls (createdomain, then max_vcpus allocating the vcpus).
    A Ctrl-C (KeyboardInterrupt) between them must not leave a domain without vcpus:
    either it is destroyed or it is complete."""
    host = default_host(pcpus=4)
    t = _SignalAfter(host, subop="createdomain")
    h = Handle(t, "sim:///interrupted", arch=host.arch)
    h.abi  # noqa: B018
    before = set(host.domains)
    t.armed = True
    with pytest.raises(KeyboardInterrupt):
        h.create_domain(max_vcpus=2)
    new = set(host.domains) - before
    half = [d for d in new if len(host.domains[d].vcpus) == 0]
    assert not half, f"domain(s) {half} left created but without vcpus (half-applied create_domain)"
    count("concurrency/signals between hypercalls", 1)


def test_python_signal_handlers_running_mid_operation_change_nothing():
    """A SIGALRM every millisecond with a (non-raising) Python handler while operations run:
    results stay right and every pause/unpause pair is applied exactly once."""
    h = xenprivcmd.open(URI)
    h.abi  # noqa: B018
    host = h.transport.host
    reference = {i.domid: stable(i) for i in h.domains()}
    fired = [0]

    def handler(_s: int, _f: Any) -> None:
        fired[0] += 1

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, 0.001, 0.001)
    try:
        deadline = time.monotonic() + 1.5
        n = 0
        while time.monotonic() < deadline:
            assert {i.domid: stable(i) for i in h.domains()} == reference
            h.pause(5)
            h.unpause(5)
            assert stable(h.domain_info(5)) == reference[5]
            n += 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert host.domains[5].pause_count == 0
    assert fired[0] > 10
    count("concurrency/SIGALRM delivered mid-operation", fired[0])
    count("concurrency/ops under signals", 4 * n)


def test_scratch_buffers_are_per_thread_and_sized_apart():
    h = xenprivcmd.open(URI)
    h.abi  # noqa: B018
    seen: Dict[str, Tuple[int, int]] = {}
    barrier = threading.Barrier(THREADS)

    def worker(i: int) -> None:
        buf = h.transport.scratch(4096 * (1 + i % 3))
        ctypes.memset(buf.address, i, buf.size)
        barrier.wait()
        time.sleep(0.01)
        assert bytes(buf.view[:16]) == bytes([i]) * 16, "another thread wrote into this thread's buffer"
        seen[threading.current_thread().name] = (buf.address, buf.size)
        barrier.wait()

    ts = [threading.Thread(target=worker, args=(i,), name=f"w{i}") for i in range(THREADS)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    spans = sorted(seen.values())
    assert len(spans) == THREADS
    for (a0, s0), (a1, _s1) in zip(spans, spans[1:]):
        assert a0 + s0 <= a1, "two threads' buffers overlap"
