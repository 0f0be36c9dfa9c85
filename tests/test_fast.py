"""The op engine (xenprivcmd/ops/engine.py): every request single, fast and batched.

Every request the operation modules declare is run three ways on the
simulator, for every release with tables (both arches): *single* (the
simulator's own transport, ``transport.hypercall``), *fast* (a real
``PrivcmdTransport`` whose ioctl the simulator answers, as the privcmd driver
would: its lane, one ioctl per call) and *batched* (one multicall entry).  The
request bytes each path hands the hypervisor must be the same (guest handles
compared as offsets into their payload), and so must what each reads back: the
simulator checks every request with its own reading of the release's tables,
so a path that lays a request out differently answers differently here.  Then
every operation of the handle runs fast and single and must answer and act
alike, and the fast path's own concerns (lanes per thread, EINTR, a closed
handle, arguments checked first, nothing compiled at run time) are checked.
"""

from __future__ import annotations

import ast
import ctypes
import errno
import os
import struct
import threading
from pathlib import Path

import pytest

import xenprivcmd
from xenprivcmd import abi, errors
from xenprivcmd.handle import Handle
from xenprivcmd.ops import batch as _batch
from xenprivcmd.ops import domains as dom
from xenprivcmd.ops import host, pools, version
from xenprivcmd.ops.engine import PAYLOAD_OFFSET, all_ops, declared_requests
from xenprivcmd.sim._transport import SimTransport
from xenprivcmd.transport import privcmd as _privcmd
from xenprivcmd.transport.wrappers import TimingTransport

ROOT = Path(__file__).resolve().parent.parent


class SimDevice:
    """``fcntl.ioctl`` of a privcmd fd, answered by a simulator; ``seen`` keeps the request
    bytes of each hypercall (as the hypervisor gets them)."""

    def __init__(self, sim: SimTransport) -> None:
        self.sim = sim
        self.calls = 0

    def __call__(self, fd, request, arg, mutate=True):
        assert request == _privcmd.IOCTL_PRIVCMD_HYPERCALL and mutate
        self.calls += 1
        return self.sim.handle(int(arg.op), tuple(int(x) for x in arg.arg))


def _device(uri):
    """A handle on the privcmd device whose ioctl a fresh simulator of ``uri`` answers."""
    sim = xenprivcmd.open(uri).transport
    sim.host.clock.tick_ns = 0
    fd = os.open(os.devnull, os.O_RDWR)
    t = _privcmd.PrivcmdTransport(fd, "/dev/xen/privcmd (simulated)", None)
    t.ioctl = SimDevice(SimTransport(sim.host))
    t._map = lambda size: _privcmd._map_anonymous(size, locked=False)  # no RLIMIT_MEMLOCK in tests
    h = Handle(t, "xen:///", arch=sim.host.arch)
    h.store_override = sim.host.store  # the simulated host's xenstore (names, the toolstack's nodes)
    return h


def _sim(uri):
    h = xenprivcmd.open(uri)
    h.transport.host.clock.tick_ns = 0  # one instant: three hosts of one URI answer alike
    return h


def _device_and_sim(uri):
    h, g = _device(uri), _sim(uri)
    return h, g


def _releases():
    out = []
    for arch in ("x86_64", "aarch64"):
        for r in abi.releases():
            try:
                abi.variant(r, arch=arch)
            except abi.UnknownABIError:
                continue
            out.append((arch, r))
    return out


# -- every request, three ways -------------------------------------------------------------------

def _example(req, e, domid):
    """(arguments, with pointers as offsets into the payload; the payload's size) to run ``req``
    with on a simulated host, or None when it cannot run there (checked by the caller)."""
    k = e.variant.constants
    nr = e.handle.nr_cpus()
    nb = (nr + 7) // 8
    name, send = req.name, req.send
    if name == "domctl getvcpuaffinity" or name == "domctl setvcpuaffinity":
        if send == ("vcpu", "cpumap"):  # the dom0_op era's 64-bit map
            return ((domid, 0) if req.reads else (domid, 0, 0b11)), 0
        args, size, _h, soft_at = dom.affinity_args("two" if "flags" in send else "one", e, 0, nr, not req.reads,
                                                    True, True)
        return (domid,) + args, size
    if name == "domctl scheduler_op":
        sid, _ = e.ops.sched_id()
        member = send[2].split(".")[1] if len(send) > 2 else req.read[0].split(".")[1]
        if sid != int(k.get("XEN_SCHEDULER_" + member.upper(), -1)):
            return None  # another scheduler's member: Xen (and the simulator) refuse it
        if req.reads:
            return (domid, sid, int(k["XEN_DOMCTL_SCHEDOP_getinfo"])), 0
        return (domid, sid, int(k["XEN_DOMCTL_SCHEDOP_putinfo"]), 300) + ((0,) if len(send) > 3 else ()), 0
    table = {
        "domctl getdomaininfo": ((domid,), 0),
        "sysctl getdomaininfolist": ((0, 16, 0), 16 * dom.info_reader(e).size),
        "domctl get_domain_state": ((domid,), 0),
        "domctl pausedomain": ((domid,), 0),
        "domctl unpausedomain": ((domid,), 0),
        "domctl destroydomain": ((domid,), 0),
        "domctl max_mem": ((domid, 3 << 20), 0),
        "domctl max_vcpus": ((domid, 2), 0),
        "domctl getvcpuinfo": ((domid, 0), 0),
        "domctl createdomain": ((bytes(range(16)), 1, 1023, 32, 1024), 0),
        "sysctl physinfo": ((), 0),
        "sysctl sched_id": ((), 0),
        "sysctl cputopoinfo": ((nr, 0), 64 * nr),
        "sysctl topologyinfo": ((nr - 1, 0, 4 * nr, 8 * nr), 12 * nr),
        "sysctl numainfo": ((1, 0, 64) if send[:1] == ("num_nodes",) else (0, 0, 8, 16), 128),
        "sysctl getcpuinfo": ((nr, 0), 8 * nr),
        "sysctl readconsole": (((0, 0, 0, 0, 512) if len(send) == 5 else (0, 0, 512)), 512),
        "sysctl cpupool_op": ((int(k.get("XEN_SYSCTL_CPUPOOL_OP_INFO", 0)), 0, 0, nr), nb + 8),
        "memory_op get_sharing_freed_pages": ((), 0),
        "memory_op get_sharing_shared_pages": ((), 0),
        "xen_version XENVER_get_features": ((0,), 0),
        # a list of one frame (0) at the payload's start
        "memory_op populate_physmap": ((domid, 0, 1, 0), 8),
        "memory_op decrease_reservation": ((domid, 0, 1, 0), 8),
        "memory_op claim_pages": ((domid, 16), 0),
        "memory_op maximum_gpfn": ((domid,), 0),
        "hvm_op get_param": ((domid, 1), 0),
        "hvm_op set_param": ((domid, 1, 5), 0),
        "event_channel_op alloc_unbound": ((domid, 0), 0),
        "event_channel_op status": ((domid, 1), 0),
        # a vcpu_guest_context of zeros at the payload's start (Xen refuses its cr3: the same on every path)
        "domctl setvcpucontext": ((domid, 0, 0), ctypes.sizeof(e.variant.structs["vcpu_guest_context"])),
        "domctl set_address_size": ((domid, 64), 0),
        "domctl hypercall_init": ((domid, 0x123), 0),
        "domctl set_paging_mempool_size": ((domid, 4 << 20), 0),
        "domctl get_paging_mempool_size": ((domid,), 0),
        "domctl cacheflush": ((domid, 0x40000, 1), 0),
    }
    if name.startswith("xen_version ") and not send:
        return (), 0
    return table.get(name)


_u64 = struct.Struct("<Q")


def _normalized(raw, lay, payload):
    """The request's bytes with each guest handle made an offset into its payload area."""
    b = bytearray(raw)
    for at, code in lay.pointer_fields:
        assert code == "Q"
        addr = _u64.unpack_from(b, at)[0]
        _u64.pack_into(b, at, addr - payload)
    return bytes(b)


def _capture(handle_fn, log):
    """Wrap a simulator's ``handle(op, args)``: log (op, args, the request's first 1024 bytes)
    of every hypercall (multicall entries included) before it is answered."""
    def handle(op, args):
        at = args[0] if op in (7, 35, 36) else args[1]
        log.append((op, tuple(args), ctypes.string_at(at, 1024) if at and op != 13 else b""))
        return handle_fn(op, args)

    return handle


def _run_three_ways(uri, req):
    """(single, fast, batched) outcomes of ``req``: each (request bytes normalized, fields read,
    payload bytes) or the error's type and errno; None when the release lacks ``req``."""
    outcomes = []
    for way in ("single", "fast", "batched"):
        with (_device(uri) if way == "fast" else _sim(uri)) as h:  # closed: thousands of handles run here
            got = _run_one(h, way, req)
        if got is None:
            return None
        outcomes.append(got)
    return outcomes


def _run_one(h, way, req):
    """One way of :func:`_run_three_ways`."""
    e = h.engine
    if not e.has(req):
        return None
    lay = e.layout(req)
    domid = h.domains()[-1].domid
    ex = _example(req, e, domid)
    if ex is None:
        return None
    args, size = ex
    sim = h.transport.ioctl.sim if way == "fast" else h.transport
    log = []
    sim.handle = _capture(sim.handle, log)
    try:
        if way == "batched":
            b = h.batch()
            call = b.add(req, *args, payload=size,
                         then=lambda f, v, at: (f, bytes(v[at:at + size])))
            b.run()
            fields, reply = call.result()
        else:
            view, base = e.payload(size)
            view[PAYLOAD_OFFSET:PAYLOAD_OFFSET + size] = bytes(size)  # as a batch's slot: zeros
            absolute = tuple(a + base if i in lay.pointer_at else a for i, a in enumerate(args))
            fields = e.runner(req)(*absolute)
            reply = bytes(view[PAYLOAD_OFFSET:PAYLOAD_OFFSET + size])
    except (errors.XenError, errors.DecodeError) as exc:
        fields, reply = (type(exc), getattr(exc, "errno", None)), b""
    mine = [(op, a, raw) for op, a, raw in log if op == lay.hypercall]
    # one call; a batched entry that answered ENOSYS is issued again alone (the multicall
    # table may lack the hypercall: one call tells), and that one is compared
    assert len(mine) == 1 or (way == "batched" and len(mine) == 2), (way, req, log)
    op, a, raw = mine[-1]
    address = a[0] if a[1] == 0 or req.family in ("domctl", "sysctl") else a[1]
    raw = raw[:lay.size]
    in_trap = any(o == 13 for o, _a, _r in log) and len(mine) == 1  # (not in the dom0_op era: one call each)
    assert in_trap == (way == "batched" and e.multicall and len(mine) == 1), (way, req)
    payload = address + (_batch._align8(lay.size) if in_trap else PAYLOAD_OFFSET)
    template = [None if x is None else x for x in lay.args]
    assert [address if t is None else t for t in template] == list(a), (way, req)
    return _normalized(raw, lay, payload), fields, reply


@pytest.mark.parametrize("arch,release", _releases())
def test_every_request_runs_single_fast_and_batched_alike(arch, release):
    uri = f"sim:///?xen={release}&arch={arch}&domains=3&pcpus=4&seed=6"
    ran = 0
    for req in declared_requests():
        got = _run_three_ways(uri, req)
        if got is None:
            continue
        single, fast, batched = got
        assert single[0] == fast[0] == batched[0], f"{req}: the request bytes differ between the paths"
        assert single[1:] == fast[1:] == batched[1:], f"{req}: {single[1:]} / {fast[1:]} / {batched[1:]}"
        ran += 1
    assert ran >= 12  # the release's requests ran (the dom0_op era has the fewest)


def test_every_declared_request_has_an_example_and_runs_somewhere():
    """A new request must come with a way to run it here (_example), and every request runs on
    at least one release of the tables (none is dead)."""
    h = _sim("sim:///?domains=2")
    e = h.engine
    missing = [r for r in declared_requests() if r.name != "domctl scheduler_op"
               and _example(r, e, 1) is None]
    assert not missing, missing
    somewhere = set()
    for arch, release in (("x86_64", "3.0.2"), ("x86_64", "3.4.0"), ("x86_64", "4.2.0"), ("x86_64", "4.4.0"),
                          ("x86_64", "4.17.0"),
                          ("x86_64", abi.head_release()), ("aarch64", "4.17.0")):
        g = _sim(f"sim:///?xen={release}&arch={arch}&sched=credit2" if release == abi.head_release() else
                 f"sim:///?xen={release}&arch={arch}")
        somewhere |= {id(r) for r in declared_requests() if g.engine.has(r)}
    assert {r.name for r in declared_requests() if id(r) not in somewhere} == set()


# -- every operation, fast and single ------------------------------------------------------------

def _outcome(fn):
    """What a call answers, or the type and message (and hypercall details) of what it raises."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - compared below, whatever it is
        return type(exc), str(exc), getattr(exc, "subop", None), getattr(exc, "domid", None)


def _same(h, g, fn):
    """``fn`` on the device (fast), then on the simulator (single): the same outcome (returned)."""
    got = _outcome(lambda: fn(h))
    assert got == _outcome(lambda: fn(g))
    return got


def test_every_operation_is_a_declared_op_of_the_handle():
    ops = all_ops()
    for name, o in ops.items():
        assert callable(getattr(Handle, name, None)), f"operation {name} has no Handle method"
        assert o.doc, f"operation {name} is not documented"
    from xenprivcmd.handle import read_only_methods

    ro = read_only_methods()
    assert {"domains", "domain_info", "physinfo", "version", "vcpu_list"} <= ro
    assert not {"pause", "destroy", "set_max_mem", "create_domain", "set_sched_params"} & ro


@pytest.mark.parametrize("arch,release", _releases())
def test_operations_answer_and_act_alike_fast_and_single(arch, release):
    uri = f"sim:///?xen={release}&arch={arch}&domains=5&pcpus=4&seed=6"
    h, g = _device_and_sim(uri)
    assert h.engine.device and not g.engine.device
    assert h.xen_version() == g.xen_version() and h.abi == g.abi
    assert h.version() == g.version()
    for fn in (lambda x: x.physinfo(), lambda x: x.sched_id(), lambda x: x.domains(), lambda x: x.pcpu_info(),
               lambda x: x.cpu_topology(), lambda x: x.numa_info(), lambda x: x.cpupools(), lambda x: x.free_cpus(),
               lambda x: x.sharing_pages(), lambda x: x.vcpu_list(), lambda x: x.domain_state(0)):
        _same(h, g, fn)
    doms = g.domains()
    assert len(doms) >= 5
    for d in doms:
        _same(h, g, lambda x, d=d: x.domain_info(d.domid))
        _same(h, g, lambda x, d=d: x.vcpu_info(d.domid))
        _same(h, g, lambda x, d=d: x.sched_params(d.domid))
        for v in range(d.vcpus):
            _same(h, g, lambda x, d=d, v=v: x.vcpu_affinity(d.domid, v))
    _same(h, g, lambda x: x.domain_info(0x7FEE))
    _same(h, g, lambda x: x.vcpu_info(0x7FEE))
    some = doms[-1].domid
    for fn in (lambda x: x.pause(some), lambda x: x.domain_info(some), lambda x: x.unpause(some),
               lambda x: x.set_max_mem(some, 123 * 1024), lambda x: x.set_max_mem(some, 123 * 1024, force=True),
               lambda x: x.domain_info(some), lambda x: x.set_vcpu_affinity(some, 0, hard={0, 2}),
               lambda x: x.set_vcpu_affinity(some, 0, hard=[1, 2], soft=iter([2, 3])),
               lambda x: x.set_vcpu_affinity(some, 0, soft={1}), lambda x: x.vcpu_affinity(some, 63),
               lambda x: x.set_sched_params(some, weight=300), lambda x: x.set_sched_params(some, cap=50),
               lambda x: x.set_sched_params(0x7FEE, weight=300), lambda x: x.sched_params(some),
               lambda x: x.read_console(incremental=True), lambda x: x.read_console(incremental=True),
               lambda x: x.set_max_vcpus(some, x.domain_info(some).vcpus), lambda x: x.destroy(0),
               lambda x: x.destroy(some), lambda x: x.domains(), lambda x: x.destroy(some),
               lambda x: x.pause(0x7FEE)):
        _same(h, g, fn)
    new = _same(h, g, lambda x: x.create_domain(max_vcpus=2))
    if isinstance(new, int):
        _same(h, g, lambda x: x.domain_info(new))
        for fn in (lambda x: x.populate_physmap(new, [5, 6]), lambda x: x.set_max_mem(new, 64),
                   lambda x: x.populate_physmap(new, [5, 6]), lambda x: x.populate_physmap(new, range(20)),
                   lambda x: x.maximum_gpfn(new), lambda x: x.domain_info(new),
                   lambda x: x.decrease_reservation(new, x.populate_physmap(new, [9])),
                   lambda x: x.decrease_reservation(new, [0x1234]), lambda x: x.claim_pages(new, 10),
                   lambda x: x.physinfo(), lambda x: x.claim_pages(new, 0), lambda x: x.hvm_param(new, "store_pfn"),
                   lambda x: x.set_hvm_param(new, "store_evtchn", 7), lambda x: x.hvm_param(new, 2),
                   lambda x: x.evtchn_alloc_unbound(new), lambda x: x.evtchn_status(new, 1),
                   lambda x: x.evtchn_status(new, 2), lambda x: x.evtchn_status(0x7FEE, 1)):
            _same(h, g, fn)
        _same(h, g, lambda x: x.destroy(new))
    # a domain named by UUID or DomainInfo goes through the handle's lookup, then the runner
    info = g.domain_info(doms[-2].domid)
    h.pause(str(info.uuid))
    assert g.domain_info(info.domid).paused is False  # another host: the device's own
    assert h.domain_info(info.domid).paused
    h.unpause(info)
    assert not h.domain_info(info.domid).paused
    h.close()
    g.close()


def _log_calls(t, log):
    """Log (hypercall, request bytes up to 64) of every hypercall ``t`` (a simulator) answers."""
    real = t.handle

    def handle(op, args):
        at = args[0] if op in (35, 36) else args[1]
        log.append((op, args[0] if op not in (35, 36) else None, ctypes.string_at(at, 64) if at else b""))
        return real(op, args)

    t.handle = handle


@pytest.mark.parametrize("release", ["4.4.0", "4.19.0"])
def test_fast_and_single_issue_the_same_hypercalls_in_the_same_order(release):
    h, g = _device_and_sim(f"sim:///?xen={release}&domains=6&seed=2")
    h.abi, g.abi  # noqa: B018 - detection's hypercalls are not compared
    fast_log, single_log = [], []
    _log_calls(h.transport.ioctl.sim, fast_log)
    _log_calls(g.transport, single_log)
    for x in (h, g):
        x.vcpu_affinity(1, 0)  # nr_cpus (physinfo, then cached), getdomaininfo, getvcpuaffinity
        x.vcpu_affinity(1, 1)
        x.set_vcpu_affinity(2, 0, hard={1})
        x.set_sched_params(2, weight=400)
        x.sched_params(2)
        x.vcpu_info(1)
        x.pcpu_info()
        x.read_console(incremental=True)
        x.read_console(incremental=True)
        x.set_max_vcpus(1, x.domain_info(1).vcpus)
        x.destroy(3)
        x.version()
    assert len(fast_log) > 25
    # the same hypercalls with the same bytes (guest handles aside: their buffers differ)
    strip = [(op, sub, raw[:16]) for op, sub, raw in fast_log]
    assert strip == [(op, sub, raw[:16]) for op, sub, raw in single_log]
    h.close()
    g.close()


# -- the fast path's own concerns ------------------------------------------------------------------

def test_a_read_only_handle_refuses_before_any_hypercall_even_on_the_device():
    h, g = _device_and_sim("sim:///default")
    h.domain_info(0)
    device = h.transport
    h.make_read_only()
    h.transport = device  # set back to the device: still refused before any hypercall
    assert h.read_only and h.engine.device
    before = device.ioctl.calls
    for op in (lambda: h.destroy(1), lambda: h.pause(1), lambda: h.set_max_vcpus(1, 2),
               lambda: h.set_vcpu_affinity(1, 0, hard={0}), lambda: h.set_sched_params(1, weight=300),
               lambda: h.read_console(clear=True), lambda: h.set_max_mem(1, 1 << 20),
               lambda: h.engine(dom.PAUSEDOMAIN, 1), lambda: h.engine.ops.destroy(1)):
        with pytest.raises(errors.ReadOnlyError):
            op()
    assert device.ioctl.calls == before
    assert h.vcpu_affinity(1, 0) == g.vcpu_affinity(1, 0)


def test_arguments_are_checked_before_any_hypercall():
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
                lambda: h.set_sched_params(1, cap=65535), lambda: h.set_sched_params(0x8000, weight=1),
                lambda: h.engine(dom.GETVCPUINFO, 1, -1), lambda: h.engine(dom.GETVCPUINFO, 1),
                lambda: h.engine(dom.MAX_MEM, 1, 1 << 60), lambda: h.batch().vcpu_info(1, 8192)):
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
    uri = "sim:///default"
    g = _sim(uri)
    state = {"left": 3}

    h = _device(uri)
    dev = h.transport.ioctl

    def flaky(fd, request, arg, mutate=True):
        if state["left"]:
            state["left"] -= 1
            raise InterruptedError(errno.EINTR, "Interrupted system call")
        return dev(fd, request, arg, mutate)

    h.transport.ioctl = flaky  # before the engine binds it
    assert h.domain_info(1) == g.domain_info(1) and state["left"] == 0
    state["left"] = 3
    assert h.xen_version() == g.xen_version() and state["left"] == 0

    h2 = _device(uri)

    def denied(fd, request, arg, mutate=True):
        raise PermissionError(errno.EPERM, "Operation not permitted")

    h2.abi  # noqa: B018 - detected through the simulator first
    h2.transport.ioctl = denied
    h2.transport = h2.transport  # a new engine binds the new ioctl
    with pytest.raises(errors.HypervisorPermissionError) as exc:
        h2.pause(1)
    assert exc.value.subop == "pausedomain" and exc.value.domid == 1
    h2.close()
    with pytest.raises(xenprivcmd.XenError) as exc2:
        h2.domain_info(1)
    assert exc2.value.errno == errno.EBADF


def test_a_wrapper_gives_the_handle_a_single_path_engine_and_back():
    h, g = _device_and_sim("sim:///default")
    h.domain_info(0)
    device = h.transport
    assert h.engine.device
    timing = h.transport = TimingTransport(device, h.abi)
    assert not h.engine.device
    assert h.domain_info(1) == g.domain_info(1)
    assert [r.decoded.subop for r in timing.take()] == ["getdomaininfo"]
    h.transport = device
    assert h.engine.device and h.domain_info(1) == g.domain_info(1)
    assert h.state.nr_cpus is None or h.state.nr_cpus == g.nr_cpus()  # what the handle learned stays


def test_operations_are_built_once_per_engine_on_first_use():
    h, g = _device_and_sim("sim:///?domains=5&seed=2")
    e = h.engine
    assert "domains" not in vars(e.ops)
    device = h.transport.ioctl.calls
    assert h.domains() == g.domains()
    assert h.transport.ioctl.calls - device == 1  # building the operation issues nothing
    built = vars(e.ops)["domains"]
    assert h.domains() == g.domains() and vars(e.ops)["domains"] is built
    h.vcpu_info(1)
    assert {"domains", "vcpu_info"} <= set(vars(e.ops))
    assert "domain_info" not in vars(e.ops)  # vcpu_info issues getdomaininfo itself (Engine.sized)


def test_threads_get_their_own_lanes():
    h, g = _device_and_sim("sim:///?domains=20&seed=3")
    want = {d.domid: d for d in g.domains()}
    errs = []

    vcpus = {domid: g.vcpu_info(domid) for domid in want}
    sched = {domid: g.sched_params(domid) for domid in want}

    def work():
        try:
            for _ in range(50):
                for domid, info in want.items():
                    assert h.domain_info(domid) == info
                    assert h.vcpu_info(domid) == vcpus[domid]  # two requests in one frame, on the lane
                    assert h.sched_params(domid) == sched[domid]
        except Exception as exc:  # pragma: no cover - reported below
            errs.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errs, errs[:2]


def test_an_answer_that_selects_the_next_request_is_asked_on_every_call():
    """sched_params (Engine.selected): sched_id's answer selects the scheduler's getinfo.  It is
    asked on every call, so another answer selects anew, and one that no request serves is
    refused every time (nothing kept for it), fast and single alike."""
    h, g = _device_and_sim("sim:///?xen=4.17.0&domains=3&seed=2")
    hosts = (h.transport.ioctl.sim.host, g.transport.host)
    assert _same(h, g, lambda x: x.sched_params(1)).scheduler == "credit"
    for sim_host in hosts:
        sim_host.sched, sim_host.sched_id = "credit2", 6
    assert _same(h, g, lambda x: x.sched_params(1)).scheduler == "credit2"
    for sim_host in hosts:
        sim_host.sched_id = 8  # rtds: no weight and cap here
    for x in (h, g):
        for _ in range(2):
            before = x.transport.calls
            with pytest.raises(errors.NotSupported, match="rtds"):
                x.sched_params(1)
            assert x.transport.calls - before == 1  # sched_id asked, nothing else
    for sim_host in hosts:
        sim_host.sched, sim_host.sched_id = "credit", 5
    assert _same(h, g, lambda x: x.sched_params(2)).scheduler == "credit"
    with pytest.raises(errors.NoSuchDomain):
        h.sched_params(0x7FEE)


def test_a_selected_request_of_another_shape_runs_on_its_own_runner():
    """Engine.selected: a chosen request that is not a domain request of two more arguments
    (here getvcpuinfo, one) is issued by its own runner after the first, alike fast and single."""
    h, g = _device_and_sim("sim:///?domains=3&seed=2")
    runs = [x.engine.selected(host.SCHED_ID, lambda vals: (dom.GETVCPUINFO, (1,), None, ())) for x in (h, g)]
    assert h.engine.device and not g.engine.device
    want = g.engine(dom.GETVCPUINFO, 2, 1)
    for x, run in zip((h, g), runs):
        before = x.transport.calls
        assert run(2) == run(2) == want
        assert x.transport.calls - before == 4  # sched_id, then getvcpuinfo, twice


def test_a_larger_buffer_gets_a_new_lane():
    h, g = _device_and_sim("sim:///?domains=3000&seed=3")
    h.domain_info(0)
    h.vcpu_info(1), h.sched_params(1)  # their lanes: over the first buffer
    lane = h.transport.lane()
    assert h.domains() == g.domains() and len(g.domains()) == 3000  # three pages, in a grown buffer
    assert h.transport.lane() is not lane and not lane.buf.address
    assert h.domain_info(2999) == g.domain_info(2999)
    assert h.vcpu_info(2) == g.vcpu_info(2) and h.sched_params(2) == g.sched_params(2)  # on the lane of now


def test_runners_kept_across_a_dead_buffer_acquire_again_or_refuse_typed():
    """A runner finds a dead buffer by its released view (the pack refuses it: TypeError): after
    the buffer grew, and in the child after fork(), it acquires its lane again; after close it
    refuses with the closed handle's error, never writing through a stale view."""
    h, g = _device_and_sim("sim:///default")
    calls = {  # one per device template that packs: domid_named, sized, selected, converted, listing
        "domain_info": lambda f: f(1, name=False),
        "vcpu_info": lambda f: f(1),
        "sched_params": lambda f: f(1),
        "physinfo": lambda f: f(),
        "domains": lambda f: f(names=False),
    }
    want = {k: call(getattr(g, k)) for k, call in calls.items()}
    kept = {k: getattr(h, k) for k in calls}
    pause = h._ops.pause  # domid
    lane = h.transport.lane()

    def same() -> bool:
        pause(1)
        h.unpause(1)
        return all(call(kept[k]) == want[k] for k, call in calls.items())

    assert same()
    h.transport.scratch(lane.size * 4)  # a larger buffer: the lanes' one is released
    assert not lane.buf.address
    with pytest.raises(ValueError):
        lane.view[0]  # released: the runners' pack refuses it
    assert same()
    pid = os.fork()
    if pid == 0:  # the child: every buffer forgotten, the runners acquire anew
        ok = False
        try:
            ok = same()
        finally:
            os._exit(0 if ok else 1)  # never back into pytest
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert same()  # the parent's lanes live on
    before = h.transport.calls
    h.close()
    for k, f in [("pause", pause)] + list(kept.items()):
        with pytest.raises(xenprivcmd.XenError) as exc:
            calls.get(k, lambda f: f(1))(f)
        assert exc.value.errno == errno.EBADF, k
    assert h.transport.calls == before  # refused before any ioctl
    g.close()


@pytest.mark.parametrize("release", ["3.0.2", "4.1.0", "4.19.0", abi.head_release()])
def test_version_reads_alike_fast_and_single_and_before_detection(release):
    h, g = _device_and_sim(f"sim:///?xen={release}")
    assert h._abi is None
    assert h.version() == g.version()
    assert h._abi is None and h.xen_version() == g.xen_version() and h._abi is None  # no detection for these
    h.abi  # noqa: B018
    assert h.version() == g.version()


def test_device_runners_are_the_templates_with_their_own_globals():
    """The hot operations on the device run ``ops/runners.py``'s functions: made by their own
    ``def`` (so the interpreter specialises calls to them), with no free variable (a closure
    copies each into its frame on every call) and the values the engine bound as their
    globals, never the module's."""
    from xenprivcmd.ops import runners

    made = runners._templates.__code__.co_consts
    templates = {c.co_name: c for c in made if hasattr(c, "co_name")}
    h, g = _device_and_sim("sim:///?domains=4&seed=7")
    seen = {}
    for name, call in (("xen_version", lambda: h.xen_version()), ("domain_info", lambda: h.domain_info(1)),
                       ("domains", lambda: h.domains()), ("physinfo", lambda: h.physinfo()),
                       ("vcpu_info", lambda: h.vcpu_info(1)), ("sched_params", lambda: h.sched_params(1))):
        call()
        runner = getattr(h, name)
        assert runner.__code__ in templates.values(), name
        assert runner.__code__.co_freevars == () and runner.__closure__ is None, name
        assert runner.__globals__ is not vars(runners) and runner.__globals__["t"] is h.transport, name
        seen[name] = runner.__code__.co_name
    assert seen == {"xen_version": "bare_halves", "domain_info": "domid_named", "domains": "listing_device",
                    "physinfo": "converted", "vcpu_info": "sized", "sched_params": "selected"}
    assert runners.pack is None and runners.t is None  # the module's own: placeholders only
    import builtins
    import types

    every = types.FunctionType(runners._templates.__code__, {"__builtins__": builtins})()
    assert set(seen.values()) < set(every) and all(f.__code__.co_freevars == () for f in every.values())
    assert h.domains() == g.domains() and h.sched_params(1) == g.sched_params(1)


def test_the_handle_keeps_its_operations_until_its_transport_changes():
    h, g = _device_and_sim("sim:///default")
    op = h.domain_info
    assert h.domain_info is op and vars(h)["domain_info"] is op  # an instance attribute from now on
    device = h.transport
    h.transport = TimingTransport(device, h.abi)
    assert "domain_info" not in vars(h) and h.domain_info is not op  # the new engine's
    assert h.domain_info(1) == g.domain_info(1)

    def stand_in(dom, name=True):
        return "stand-in"

    h.domain_info = stand_in  # a test's stand-in shadows the operation ...
    assert h.domain_info(1) == "stand-in"
    del h.domain_info  # ... until deleted
    assert h.domain_info(1) == g.domain_info(1)
    h.domain_info = stand_in
    h.transport = device  # ... or the transport changes
    assert h.domain_info(1) == g.domain_info(1) and h.engine.device
    assert Handle.domain_info(h, 1) == g.domain_info(1)  # called as a method of the class


def test_xen_version_before_detection_is_kept_then_the_engines():
    h, g = _device_and_sim("sim:///default")
    assert h._abi is None and h.xen_version() == g.xen_version() and h._abi is None
    boot = h.xen_version
    h.domain_info(0)  # builds the engine (detects): the boot engine's xen_version is forgotten
    assert h.xen_version is not boot and h.xen_version() == g.xen_version()


def test_no_code_is_compiled_at_run_time():
    """No ``exec``/``eval``/``compile`` of source anywhere in the package, but the remote
    bootstrap (its first stage is sent as source to a remote ``python3 -c``)."""
    found = []
    for path in (ROOT / "xenprivcmd").rglob("*.py"):
        rel = path.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
                    node.func.id in ("exec", "eval", "compile"):
                found.append(f"{rel}:{node.lineno}")
    assert found == []
    boot = (ROOT / "xenprivcmd" / "remote" / "_boot.py").read_text()
    assert "exec(compile(" in boot  # the one exception, in a string sent to the remote


def test_the_request_modules_declare_with_xens_names_only():
    """Declarations name fields as Xen's headers do: every sent, fixed and read path of every
    request exists in some release's struct (a typo would be a request no release has)."""
    seen = {}
    for arch, release in _releases()[::7] + [("x86_64", abi.head_release()), ("x86_64", "3.0.2")]:
        g = _sim(f"sim:///?xen={release}&arch={arch}")
        for r in declared_requests():
            if g.engine.has(r):
                seen[id(r)] = r
    assert len(seen) == len(declared_requests())
    assert {r.family for r in seen.values()} >= {"domctl", "sysctl", "xen_version", "memory_op"}
    assert host.PHYSINFO.reads and pools.SHARING["freed"].returns and version.VERSION.returns
