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
from xenprivcmd import abi, errors
from xenprivcmd.handle import Handle
from xenprivcmd.ops import _fast, host
from xenprivcmd.sim._transport import SimTransport
from xenprivcmd.transport import privcmd as _privcmd
from xenprivcmd.transport.wrappers import TimingTransport
from xenprivcmd.types import PhysInfo


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
    missing = [n for n in _fast.PLANNED if n not in vars(h) and not _lacks(h, n)]
    assert not missing, f"plans not installed: {missing}"
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
    with pytest.raises(ValueError, match="below the"):
        h.set_max_mem(some, 123 * 1024)  # below its use: refused without force, as the general path
    h.set_max_mem(some, 123 * 1024, force=True)
    assert g.domain_info(some).max_memory_kib == 123 * 1024
    # a domain named by UUID or DomainInfo goes through the handle's resolver, then the plan
    info = g.domain_info(some)
    h.pause(str(info.uuid))
    assert g.domain_info(some).paused
    h.unpause(info)
    assert not g.domain_info(some).paused
    assert h.vcpu_info(info.uuid) == g.vcpu_info(some)
    with pytest.raises(errors.NoSuchDomain):
        h.pause(0x7FEE)


def _lacks(h, name):
    """Whether the handle's release has no plan for ``name`` (its general method answers)."""
    k, s = h.abi.constants, h.abi.structs
    if name == "physinfo":  # only where physinfo has every scalar field of PhysInfo
        index = host._physinfo_reader(s["xen_sysctl_physinfo"])[1]
        return any(index.get(n) is None for n in PhysInfo._fields[:13])
    if name in ("sched_params", "set_sched_params"):
        return "xen_domctl_scheduler_op" not in s or "XEN_DOMCTL_SCHEDOP_getinfo" not in k
    if name == "pcpu_info":
        return "XEN_SYSCTL_getcpuinfo" not in k or "xen_sysctl_cpuinfo" not in s
    return False


def _outcome(fn):
    """What a call answers, or the type and message (and hypercall details) of what it raises."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - compared below, whatever it is
        return type(exc), str(exc), getattr(exc, "subop", None), getattr(exc, "domid", None)


def _same(h, g, fn):
    """``fn`` through the plan, then through the general path: the same outcome (returned)."""
    got = _outcome(lambda: fn(h))
    assert got == _outcome(lambda: fn(g))
    return got


@pytest.mark.parametrize("arch,release", _releases())
def test_the_other_plans_answer_and_act_as_the_general_path(arch, release):
    h, g = _device_and_sim(f"sim:///?xen={release}&arch={arch}&domains=5&pcpus=4&seed=6")
    assert h.abi == g.abi
    modern = h.abi.xen >= (4, 5)
    doms = g.domains()
    some = doms[-1].domid
    # vcpu affinity, read and set: the general handle then reads what the plan set
    for d in doms:
        for v in range(d.vcpus):
            assert h.vcpu_affinity(d.domid, v) == g.vcpu_affinity(d.domid, v)
    got = h.set_vcpu_affinity(some, 0, hard={0, 2})
    assert got == g.vcpu_affinity(some, 0) and got.hard == {0, 2}
    if modern:
        got = h.set_vcpu_affinity(some, 0, hard=[1, 2], soft=iter([2, 3]))
        assert got == g.vcpu_affinity(some, 0) and got.hard == {1, 2}
        got = h.set_vcpu_affinity(some, 0, soft={1})
        assert got == g.vcpu_affinity(some, 0) and got.hard == {1, 2}
    _same(h, g, lambda x: x.set_vcpu_affinity(some, 0, hard={3}, soft={3}))  # NotSupported before 4.5
    _same(h, g, lambda x: x.set_vcpu_affinity(0x7FEE, 0, hard={0}))
    _same(h, g, lambda x: x.vcpu_affinity(some, 63))  # beyond the domain's vcpus: ValueError
    assert h.vcpu_affinity(some, 0) == g.vcpu_affinity(some, 0)
    # scheduler parameters
    _same(h, g, lambda x: x.set_sched_params(some, weight=300))
    _same(h, g, lambda x: x.set_sched_params(some, cap=50))  # NotSupported where the scheduler has no cap
    _same(h, g, lambda x: x.set_sched_params(some, weight=700, cap=0))
    _same(h, g, lambda x: x.set_sched_params(0x7FEE, weight=300))
    assert h.sched_params(some) == g.sched_params(some)
    # pcpus and the console ring, incremental reads twice and a clear
    pcpus = _same(h, g, lambda x: x.pcpu_info())  # NotSupported before 3.2
    assert _lacks(h, "pcpu_info") or [p.cpu for p in pcpus] == [0, 1, 2, 3]
    _same(h, g, lambda x: x.read_console(incremental=True))
    g.transport.host.console.line("(XEN) something new")
    assert "something new" in _same(h, g, lambda x: x.read_console(incremental=True))
    _same(h, g, lambda x: x.read_console(incremental=True))
    _same(h, g, lambda x: x.read_console())
    h.read_console(clear=True)
    assert g.read_console() == h.read_console() == ""
    # max_vcpus (from 4.12 it must repeat createdomain's count) and destroy
    _same(h, g, lambda x: x.set_max_vcpus(some, g.domain_info(some).vcpus))
    _same(h, g, lambda x: x.set_max_vcpus(some, g.domain_info(some).vcpus + 1))
    assert g.domain_info(some).vcpus == h.domain_info(some).vcpus
    _same(h, g, lambda x: x.destroy(0))  # dom0: EINVAL, typed the same
    h.destroy(some)  # EAGAIN once or twice first on Xen <= 4.5: retried
    assert some not in [d.domid for d in g.domains()]
    _same(h, g, lambda x: x.destroy(some))
    other = doms[-2].domid
    h.destroy(str(g.domain_info(other).uuid))  # named by UUID: the handle's resolver, then the plan
    assert [d.domid for d in g.domains()] == [d.domid for d in doms[:-2]]


def _log_calls(t, log):
    """Log (hypercall, cmd or sub-op) of every hypercall ``t`` (a simulator) answers."""
    import ctypes

    real = t.handle

    def handle(op, args):
        log.append((op, ctypes.c_uint32.from_address(args[0]).value if op in (35, 36) else args[0]))
        return real(op, args)

    t.handle = handle


@pytest.mark.parametrize("release", ["4.4.0", "4.19.0"])
def test_plans_issue_the_general_paths_hypercalls_in_its_order(release):
    h, g = _device_and_sim(f"sim:///?xen={release}&domains=6&seed=2")
    h.abi, g.abi  # noqa: B018 - detection's hypercalls are not compared
    plan_log, general_log = [], []
    _log_calls(h.transport.ioctl.sim, plan_log)
    _log_calls(g.transport, general_log)
    for x in (h, g):
        x.vcpu_affinity(1, 0)  # nr_cpus (physinfo, then cached), getdomaininfo, getvcpuaffinity
        x.vcpu_affinity(1, 1)
        x.set_vcpu_affinity(2, 0, hard={1})
        x.set_sched_params(2, weight=400)
        x.pcpu_info()
        x.read_console(incremental=True)
        x.read_console(incremental=True)
        x.set_max_vcpus(1, x.domain_info(1).vcpus)
        x.destroy(3 if x is h else 5)  # both odd: as many EAGAINs first on 4.4
    assert plan_log == general_log and len(plan_log) > 15


def test_a_read_only_handle_has_no_plans():
    h, _g = _device_and_sim("sim:///default")
    h.domain_info(0)
    device = h.transport
    assert "destroy" in vars(h)
    h.make_read_only()
    assert not set(_fast.PLANNED) & set(vars(h))
    h.transport = device  # set back to the device: still refused before any hypercall
    assert not set(_fast.PLANNED) & set(vars(h))
    before = device.ioctl.calls
    for op in (lambda: h.destroy(1), lambda: h.pause(1), lambda: h.set_max_vcpus(1, 2),
               lambda: h.set_vcpu_affinity(1, 0, hard={0}), lambda: h.set_sched_params(1, weight=300),
               lambda: h.read_console(clear=True), lambda: h.set_max_mem(1, 1 << 20)):
        with pytest.raises(errors.ReadOnlyError):
            op()
    assert device.ioctl.calls == before
    assert h.vcpu_affinity(1, 0) == _g.vcpu_affinity(1, 0)


def test_plans_check_arguments_before_any_hypercall():
    h, _g = _device_and_sim("sim:///default")
    h.domain_info(0)
    h.nr_cpus()  # cached: the cpu maps are checked against it without a hypercall
    before = h.transport.calls
    device = h.transport.ioctl.calls
    for bad in (lambda: h.domain_info(-1), lambda: h.domain_info(0x7FF0), lambda: h.domain_info(1.5),
                lambda: h.vcpu_info(True), lambda: h.pause(None), lambda: h.set_max_mem(1, -1),
                lambda: h.set_max_mem(1, 1.5), lambda: h.sched_params(70000),
                lambda: h.destroy(-1), lambda: h.destroy(0x7FF0), lambda: h.set_max_vcpus(1, 0),
                lambda: h.set_max_vcpus(1, 8193), lambda: h.set_max_vcpus(1, 2.0), lambda: h.set_max_vcpus(-1, 2),
                lambda: h.vcpu_affinity(1, -1), lambda: h.vcpu_affinity(1, "0"), lambda: h.vcpu_affinity(True, 0),
                lambda: h.set_vcpu_affinity(1, 0), lambda: h.set_vcpu_affinity(1, 8192, hard={0}),
                lambda: h.set_vcpu_affinity(1, 0, hard={99}), lambda: h.set_vcpu_affinity(1, 0, hard=set()),
                lambda: h.set_vcpu_affinity(1, 0, hard={0}, soft={-1}),
                lambda: h.set_vcpu_affinity(1, 0, hard=["0"]), lambda: h.set_sched_params(1),
                lambda: h.set_sched_params(1, weight=0), lambda: h.set_sched_params(1, weight=True),
                lambda: h.set_sched_params(1, cap=65535), lambda: h.set_sched_params(0x8000, weight=1)):
        with pytest.raises((TypeError, ValueError)):
            bad()
    assert h.transport.calls == before and h.transport.ioctl.calls == device
    with pytest.raises(ValueError, match="give a hard or a soft cpu map"):
        h.set_vcpu_affinity(1, 0)
    with pytest.raises(ValueError, match="give a weight or a cap"):
        h.set_sched_params(1)
    with pytest.raises(ValueError, match="cpu 99 is out of range"):
        h.set_vcpu_affinity(1, 0, hard={99})


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
    h.nr_cpus()
    for op, calls in ((lambda: h.vcpu_affinity(1, 0), 2),  # getdomaininfo, getvcpuaffinity
                      (lambda: h.set_vcpu_affinity(1, 0, hard={0, 1}), 3),  # ... setvcpuaffinity, getvcpuaffinity
                      (lambda: h.set_sched_params(1, weight=300), 4),  # sched_id, getinfo, putinfo, getinfo
                      (lambda: h.pcpu_info(), 1), (lambda: h.set_max_vcpus(1, 2), 1), (lambda: h.destroy(2), 1)):
        before, device = t.calls, t.ioctl.calls
        op()
        assert t.calls - before == t.ioctl.calls - device == calls


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


def _is_plan(fn, name):
    return (fn.__doc__ or "").startswith(f"{name}: precomputed plan")


def test_a_plan_is_built_on_its_first_call_only():
    h, g = _device_and_sim("sim:///?domains=5&seed=2")
    h.abi  # noqa: B018 - detection; every op has its stand-in now
    assert set(_fast.PLANNED) <= set(vars(h))
    assert not any(_is_plan(vars(h)[n], n) for n in _fast.PLANNED)
    device = h.transport.ioctl.calls
    assert h.domains() == g.domains()
    assert h.transport.ioctl.calls - device == 1  # building the plan issues nothing
    built = {n for n in _fast.PLANNED if _is_plan(vars(h)[n], n)}
    assert built == {"domains"}, built  # a one-shot listing compiles one plan
    first = vars(h)["domains"]
    assert h.domains() == g.domains() and vars(h)["domains"] is first  # then it is the plan itself
    h.vcpu_info(1)
    assert {n for n in _fast.PLANNED if _is_plan(vars(h)[n], n)} == {"domains", "domain_info", "vcpu_info"}


def test_a_listing_loads_no_plan_module_it_does_not_use():
    """version() and the host sysctls' plans live in ops/_fast_host.py, loaded by their first call."""
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = ("import sys\nfrom tests.test_fast import _device_and_sim\n"
            "h, g = _device_and_sim('sim:///default')\nassert h.domains() == g.domains()\n"
            "print('xenprivcmd.ops._fast_host' in sys.modules)\nh.physinfo()\n"
            "print('xenprivcmd.ops._fast_host' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=root,
                         env=dict(os.environ, PYTHONPATH=root))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True"]


def test_a_stand_in_of_an_earlier_transport_installs_nothing():
    h, g = _device_and_sim("sim:///default")
    h.abi  # noqa: B018
    old = vars(h)["domain_info"]
    device = h.transport
    h.transport = TimingTransport(device, h.abi)  # off the plans: the stand-in is no longer the handle's
    assert old(1) == g.domain_info(1)  # runs what the handle has now (the general method)
    assert "domain_info" not in vars(h)
    h.transport = device
    assert not _is_plan(vars(h)["domain_info"], "domain_info") and h.domain_info(1) == g.domain_info(1)
    assert _is_plan(vars(h)["domain_info"], "domain_info")


def test_an_op_without_a_plan_on_a_release_falls_back_for_good():
    h, g = _device_and_sim("sim:///?xen=3.1.4")  # no getcpuinfo sysctl before 3.2
    h.abi  # noqa: B018
    assert "pcpu_info" in vars(h)
    with pytest.raises(errors.NotSupported):
        g.pcpu_info()
    with pytest.raises(errors.NotSupported):
        h.pcpu_info()
    assert "pcpu_info" not in vars(h)  # the general method from now on


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



# -- version(): ops/version.info's sub-ops, in its order ----------------------------------------

def _xenver_log(h, g):
    """(sub-op, whether it points at a buffer) of every xen_version hypercall of each handle."""
    logs = [], []
    for x, log in zip((h.transport.ioctl.sim, g.transport), logs):
        real = x.handle

        def handle(op, args, real=real, log=log):
            if op == 17:
                log.append((args[0], args[1] != 0))
            return real(op, args)

        x.handle = handle
    return logs


@pytest.mark.parametrize("arch,release", _releases())
def test_the_version_plan_answers_what_the_general_path_answers(arch, release):
    h, g = _device_and_sim(f"sim:///?xen={release}&arch={arch}&seed=6")
    assert "version" in vars(h)  # before the ABI is known, as xen_version's
    h.abi, g.abi  # noqa: B018 - detection's hypercalls are not compared
    plan_log, general_log = _xenver_log(h, g)
    got = h.version()
    assert got == g.version() and got.varbuf_ops == (h.abi.xen >= (4, 20))
    assert "version" in vars(h) and h._varbuf_ops is got.varbuf_ops
    assert h.version() == g.version()  # the probe once per handle (then extraversion2's size, twice)
    assert plan_log == general_log and plan_log.count((11, False)) == (3 if got.varbuf_ops else 1)
    assert len(plan_log) >= 1 + 2 * (15 if got.varbuf_ops else 10)


@pytest.mark.parametrize("release", ["4.19.0", "4.20.0"])
def test_the_version_plan_grows_the_lane_for_a_long_reply(release):
    h, g = _device_and_sim(f"sim:///?xen={release}")
    long_line = "console=com1 " + "x" * 9000  # past one page: the varbuf path maps a larger buffer
    h.transport.ioctl.sim.host.commandline = long_line
    lane = h.transport.lane()
    got = h.version()
    assert got == g.version()._replace(commandline=got.commandline)
    if got.varbuf_ops:
        assert got.commandline == long_line and h.transport.lane() is not lane and not lane.buf.address
    else:
        assert got.commandline == long_line[:1023]
    assert h.version() == got


def _refusing(h, subop, err=None, fill=None):
    """The device refuses xen_version ``subop`` with ``err`` (or fills its buffer with ``fill``)."""
    import ctypes

    for x in (h.transport.ioctl.sim, h.general.transport):
        real = x.handle

        def handle(op, args, real=real):
            if op == 17 and args[0] == subop:
                if err is not None:
                    raise OSError(err, os.strerror(err))
                rc = real(op, args)
                ctypes.memset(args[1], fill, 16)
                return rc
            return real(op, args)

        x.handle = handle


@pytest.mark.parametrize("release", ["4.19.0", "4.20.0"])
@pytest.mark.parametrize("subop,err,field", [
    ("commandline", errno.EPERM, "commandline"), ("commandline", errno.ENOSYS, "commandline"),
    ("build_id", errno.ENOSYS, "build_id"), ("build_id", errno.ENODATA, "build_id"),
    ("build_id", errno.EPERM, "build_id"), ("build_id", errno.EINVAL, "build_id"),
    ("commandline", errno.EFAULT, None), ("build_id", errno.EFAULT, None), ("compile_info", errno.EFAULT, None),
    ("pagesize", errno.EPERM, None), ("version", errno.EACCES, None), ("get_features", errno.EINVAL, None),
    ("extraversion", errno.EFAULT, None), ("capabilities", errno.ENOSYS, None),
])
def test_the_version_plan_fails_and_falls_back_as_the_general_path(release, subop, err, field):
    from xenprivcmd.abi import hypercalls as hc

    h, g = _device_and_sim(f"sim:///?xen={release}")
    h.general = g
    modern = h.abi.xen >= (4, 20)
    name = subop + ("2" if modern and subop in ("commandline", "extraversion", "capabilities") else "")
    _refusing(h, getattr(hc, "XENVER_" + name), err)
    got = _same(h, g, lambda x: x.version())
    if field is not None:
        assert getattr(got, field) is None
    else:
        assert issubclass(got[0], errors.HypercallError) and got[2] == "XENVER_" + name, got


def test_the_version_probe_fails_as_the_general_path():
    h, g = _device_and_sim("sim:///?xen=4.20.0")
    h.general = g
    from xenprivcmd.abi import hypercalls as hc

    _refusing(h, hc.XENVER_extraversion2, errno.EPERM)  # not "no such sub-op": raised, nothing cached
    got = _same(h, g, lambda x: x.version())
    assert got[0] is errors.HypervisorPermissionError and got[2] == "XENVER_extraversion2"
    assert h._varbuf_ops is g._varbuf_ops is None
    h2, g2 = _device_and_sim("sim:///?xen=4.20.0")
    h2.general = g2
    _refusing(h2, hc.XENVER_extraversion2, errno.EOPNOTSUPP)  # the fixed-size sub-ops then
    got = _same(h2, g2, lambda x: x.version())
    assert got.varbuf_ops is False and h2._varbuf_ops is False and got.extraversion == ".0"


@pytest.mark.parametrize("release", ["4.19.0", "4.20.0"])
def test_an_unterminated_extraversion_is_a_decode_error_on_both_paths(release):
    from xenprivcmd.abi import hypercalls as hc

    h, g = _device_and_sim(f"sim:///?xen={release}")
    h.version()
    g.version()
    h._varbuf_ops = g._varbuf_ops = False  # the fixed-size sub-op, whatever the release
    h.general = g
    _refusing(h, hc.XENVER_extraversion, fill=0x41)
    got = _same(h, g, lambda x: x.version())
    assert got[0] is errors.DecodeError and "XENVER_extraversion" in got[1], got


@pytest.mark.parametrize("kind", ["varbuf", "unterminated"])
def test_a_garbled_version_reply_is_the_same_decode_error(kind):
    h, g = _device_and_sim("sim:///?xen=4.20.0")
    h.version()
    g.version()
    for x in (h.transport.ioctl.sim, g.transport):
        x.faults.garble(kind, op="xen_version", subop="capabilities2" if kind == "varbuf" else "compile_info")
    got = _same(h, g, lambda x: x.version())
    assert got[0] is errors.DecodeError, got


@pytest.mark.parametrize("release", ["4.19.0", "4.20.0"])
def test_a_short_reply_is_not_read_as_stale_text(release):
    """A device writing less than the field (or than the size it returns): the plan cleared
    the buffer first, as the general path."""
    import ctypes

    from xenprivcmd.abi import hypercalls as hc

    h, g = _device_and_sim(f"sim:///?xen={release}")
    first = h.version()
    assert first == g.version()
    h.general = g
    for x in (h.transport.ioctl.sim, g.transport):
        real = x.handle

        def handle(op, args, real=real):
            if op == 17 and args[0] == hc.XENVER_changeset:
                ctypes.memmove(args[1], b"abc", 3)  # no terminator: the rest of the field is the caller's
                return 0
            if op == 17 and args[0] == hc.XENVER_changeset2 and args[1]:
                need = real(op, (args[0], 0) + tuple(args[2:]))
                ctypes.memmove(args[1] + 4, b"abc", 3)  # the size says more: the rest is what was there
                return need
            return real(op, args)

        x.handle = handle
    got = _same(h, g, lambda x: x.version())
    assert got.changeset == "abc" and got._replace(changeset=first.changeset) == first
