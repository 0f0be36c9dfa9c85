"""Where a single op's Python time goes, without an emulator's noise: bytecodes and frames per call.

Under QEMU TCG every bytecode and every Python frame of a one-hypercall op costs
microseconds, so what the library executes per call, counted exactly, says more
than timings on a shared host.  This runs each hot op on a handle over the
privcmd transport whose ioctl a simulator answers (as ``tests/test_fast.py``
does), warms it up, then traces one call (``sys.settrace`` with opcode events)
and prints the library's frames and bytecodes, the simulated device's own
excluded (on a real device the ioctl is C)::

    PYTHONPATH=. python3 benchmarks/bytecodes.py               # this tree
    git archive 19ab255 xenprivcmd | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old python3 benchmarks/bytecodes.py         # another commit's package

Standard library and the package only (any commit that has ``xenprivcmd.sim``).
"""

import os
import sys

import xenprivcmd
from xenprivcmd.handle import Handle
from xenprivcmd.sim._transport import SimTransport
from xenprivcmd.transport import privcmd as _privcmd

#: What each op's call is (the name flags off, as in benchmarks/realxen_dom0.py).
CALLS = {
    "xen_version": lambda h: h.xen_version(),
    "domain_info": lambda h: h.domain_info(0, name=False),
    "domains": lambda h: h.domains(names=False),
    "physinfo": lambda h: h.physinfo(),
    "vcpu_info": lambda h: h.vcpu_info(0),
    "sched_params": lambda h: h.sched_params(0),
}


class Device:
    """``fcntl.ioctl`` of a privcmd fd, answered by the simulator (``busy`` while it answers:
    its frames are not the library's)."""

    busy = False

    def __init__(self, sim):
        self.sim = sim

    def __call__(self, fd, request, arg, mutate=True):
        Device.busy = True
        try:
            return self.sim.handle(int(arg.op), tuple(int(x) for x in arg.arg))
        finally:
            Device.busy = False


def handle(uri="sim:///default"):
    sim = xenprivcmd.open(uri).transport
    fd = os.open(os.devnull, os.O_RDWR)
    t = _privcmd.PrivcmdTransport(fd, "/dev/xen/privcmd (simulated)", None)
    t.ioctl = Device(SimTransport(sim.host))
    t._map = lambda size: _privcmd._map_anonymous(size, locked=False)
    return Handle(t, "xen:///", arch=sim.host.arch)


def count(fn):
    """{code name: bytecodes} of the package's frames in one call of ``fn``."""
    package = os.path.dirname(xenprivcmd.__file__)
    got = {}

    def trace(frame, event, arg):
        code = frame.f_code
        path = code.co_filename
        if Device.busy or not (path.startswith(package) or path.startswith("<xenprivcmd")):
            return None  # the benchmark's lambda, the simulated device
        frame.f_trace_opcodes = True
        if event == "opcode":
            key = f"{code.co_name} ({os.path.basename(path)})"
            got[key] = got.get(key, 0) + 1
        return trace

    sys.settrace(trace)
    try:
        fn()
    finally:
        sys.settrace(None)
    return got


def main():
    h = handle()
    print(f"xenprivcmd from {os.path.dirname(xenprivcmd.__file__)}")
    for name, call in CALLS.items():
        for _ in range(3):
            call(h)  # built, lanes acquired, choices made
        got = count(lambda call=call: call(h))
        frames = ", ".join(f"{k} {v}" for k, v in got.items())
        print(f"{name:13s} {sum(got.values()):4d} bytecodes in {len(got)} frame(s): {frames}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
