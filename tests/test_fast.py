"""The precomputed op plans (xenprivcmd/ops/_fast.py) against the general path.

A real ``PrivcmdTransport`` whose ioctl is answered by the simulator (the
privcmd driver's job: the ``privcmd_hypercall`` is read, the hypercall run)
takes the plans; a handle on the simulator itself takes the general path.
Both read the same simulated host, for every release with tables: a plan
that lays a request out or reads a reply differently from the general
path (whose layouts the simulator checks with its own reading of the
release's tables) answers differently here.
"""

from __future__ import annotations

import errno
import os

import pytest

import xenprivcmd
from xenprivcmd import _privcmd, abi, errors
from xenprivcmd.handle import Handle
from xenprivcmd.ops import _fast
from xenprivcmd.sim._transport import SimTransport
from xenprivcmd.trace import TimingTransport


class SimDevice:
    """``fcntl.ioctl`` of a privcmd fd, answered by a simulator."""

    def __init__(self, sim: SimTransport) -> None:
        self.sim = sim
        self.calls = 0

    def __call__(self, fd, request, arg, mutate=True):
        assert request == _privcmd.IOCTL_PRIVCMD_HYPERCALL and mutate
        self.calls += 1
        return self.sim.handle(int(arg.op), tuple(int(x) for x in arg.arg))


def _device_and_sim(uri):
    general = xenprivcmd.open(uri)
    sim = general.transport
    sim.host.clock.tick_ns = 0  # one instant for both paths
    fd = os.open(os.devnull, os.O_RDWR)
    t = _privcmd.PrivcmdTransport(fd, "/dev/xen/privcmd (simulated)", None)
    t.ioctl = SimDevice(SimTransport(sim.host))
    t._map = lambda size: _privcmd._map_anonymous(size, locked=False)  # no RLIMIT_MEMLOCK in tests
    planned = Handle(t, "xen:///", arch=sim.host.arch)
    return planned, general


def _releases():
    out = []
    for arch in ("x86_64", "aarch64"):
        for r in abi.releases():
            try:
                v = abi.variant(r, arch=arch)
            except abi.UnknownABIError:
                continue
            if v.domctl_interface_version is not None:
                out.append((arch, r))
    return out


@pytest.mark.parametrize("arch,release", _releases())
def test_plans_answer_what_the_general_path_answers(arch, release):
    h, g = _device_and_sim(f"sim:///?xen={release}&arch={arch}&domains=5&pcpus=4&seed=6")
    assert h.xen_version() == g.xen_version()
    assert h.abi == g.abi
    assert set(_fast.PLANNED) - {"physinfo", "sched_params"} <= set(vars(h)), "plans not installed"
    assert h.physinfo() == g.physinfo()
    assert h.sched_id() == g.sched_id()
    assert h.domains() == g.domains() and len(h.domains()) >= 5
    for d in g.domains():
        assert h.domain_info(d.domid) == g.domain_info(d.domid) == d
        assert h.domain_info(d.domid, name=True)._replace(name=None) == d  # (no xenstore here: no name)
        assert h.vcpu_info(d.domid) == g.vcpu_info(d.domid)
        if g.sched_id()[1] in ("credit", "credit2"):
            assert h.sched_params(d.domid) == g.sched_params(d.domid)
    with pytest.raises(errors.NoSuchDomain) as exc:
        h.domain_info(0x7FEE)
    assert exc.value.domid == 0x7FEE and exc.value.subop == "getdomaininfo"
    with pytest.raises(errors.NoSuchDomain):
        h.vcpu_info(0x7FEE)
    some = g.domains()[-1].domid
    h.pause(some)
    assert g.domain_info(some).paused
    h.unpause(some)
    assert not g.domain_info(some).paused
    h.set_max_mem(some, 123 * 1024)
    assert g.domain_info(some).max_memory_kib == 123 * 1024
    with pytest.raises(errors.NoSuchDomain):
        h.pause(0x7FEE)


def test_plans_check_arguments_before_any_hypercall():
    h, _g = _device_and_sim("sim:///default")
    h.domain_info(0)
    before = h.transport.calls
    device = h.transport.ioctl.calls
    for bad in (lambda: h.domain_info(-1), lambda: h.domain_info(0x7FF0), lambda: h.domain_info("0"),
                lambda: h.vcpu_info(True), lambda: h.pause(None), lambda: h.set_max_mem(1, -1),
                lambda: h.set_max_mem(1, 1.5), lambda: h.sched_params(70000)):
        with pytest.raises((TypeError, ValueError)):
            bad()
    assert h.transport.calls == before and h.transport.ioctl.calls == device


def test_counted_once_per_hypercall():
    h, _g = _device_and_sim("sim:///default")
    h.domain_info(0)
    t = h.transport
    before, device = t.calls, t.ioctl.calls
    h.domain_info(0)
    h.xen_version()
    h.physinfo()
    n = len(h.vcpu_info(1))
    assert t.calls - before == t.ioctl.calls - device == 3 + 1 + n


def test_errors_are_typed_and_eintr_is_retried():
    h, _g = _device_and_sim("sim:///default")
    h.domain_info(0)
    dev = h.transport.ioctl
    state = {"left": 3}

    def flaky(fd, request, arg, mutate=True):
        if state["left"]:
            state["left"] -= 1
            raise InterruptedError(errno.EINTR, "Interrupted system call")
        return dev(fd, request, arg, mutate)

    h.transport.ioctl = flaky
    h._install_plans()  # the plans bind the transport's ioctl when built
    assert h.domain_info(1).domid == 1 and state["left"] == 0
    state["left"] = 3
    assert h.xen_version() == _g.xen_version()

    def denied(fd, request, arg, mutate=True):
        raise PermissionError(errno.EPERM, "Operation not permitted")

    h.transport.ioctl = denied
    h._install_plans()
    with pytest.raises(errors.HypervisorPermissionError) as exc:
        h.pause(1)
    assert exc.value.subop == "pausedomain" and exc.value.domid == 1
    h.close()
    with pytest.raises(xenprivcmd.XenError) as exc2:
        h.domain_info(1)
    assert exc2.value.errno == errno.EBADF


def test_a_wrapper_takes_the_handle_off_the_plans_and_back():
    h, g = _device_and_sim("sim:///default")
    h.domain_info(0)
    assert "domain_info" in vars(h)
    device = h.transport
    timing = h.transport = TimingTransport(device, h.abi)
    assert "domain_info" not in vars(h)
    assert h.domain_info(1) == g.domain_info(1)
    assert [r.decoded.subop for r in timing.take()] == ["getdomaininfo"]
    h.transport = device
    assert "domain_info" in vars(h) and h.domain_info(1) == g.domain_info(1)


def test_threads_get_their_own_lanes():
    import threading

    h, g = _device_and_sim("sim:///?domains=20&seed=3")
    want = {d.domid: d for d in g.domains()}
    errs = []

    def work():
        try:
            for _ in range(50):
                for domid, info in want.items():
                    assert h.domain_info(domid) == info
        except Exception as exc:  # pragma: no cover - reported below
            errs.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errs, errs[:2]


def test_a_larger_buffer_gets_a_new_lane():
    h, g = _device_and_sim("sim:///?domains=3000&seed=3")
    h.domain_info(0)
    lane = h.transport.lane()
    assert h.domains() == g.domains() and len(g.domains()) == 3000  # three pages, in a grown buffer
    assert h.transport.lane() is not lane and not lane.buf.address
    assert h.domain_info(2999) == g.domain_info(2999)

