"""Group ``issue``: the library's cost to issue one hypercall, on a fake device.

The fake device is a pipe, and the library's ioctl request number is set to
``FIONREAD`` for the duration of the group (``IOCTL_PRIVCMD_HYPERCALL`` is a
module global that ``PrivcmdTransport.hypercall`` reads on every call).  So
floor and library both make the *same real syscall that succeeds*: the
kernel copies nothing in, writes 4 bytes out, returns 0 (README.md explains
why this beats ENOTTY on /dev/null or a Python stub for ``_ioctl``).

* floor: ``fcntl.ioctl(fd, FIONREAD, req, True)`` on a prebuilt
  ``privcmd_hypercall`` (exactly the call the library ends in);
* library: ``Handle.xen_version()`` and ``Handle.domain_info(0)`` (the
  domctl is laid out, issued, and its all-zero reply decoded: domid 0);
* transport: ``PrivcmdTransport.hypercall`` alone (no ops layer);
* reference: getdomaininfo written by hand with ``struct`` into a prebuilt
  buffer, the least Python can do for that op (for the suggestions).
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import struct
import termios
from typing import Any, Iterator, Tuple

import pytest

from xenprivcmd import abi as _abi
from xenprivcmd.abi.layout import fields
from xenprivcmd.handle import Handle
from xenprivcmd.ops.domains import info_reader
from xenprivcmd.transport import privcmd as _privcmd

GROUP = "issue"
FAKE_REQUEST = termios.FIONREAD
#: The release whose layouts the fake handle uses (Debian bookworm's Xen).
FAKE_RELEASE = "4.17"


class FakeDeviceTransport(_privcmd.PrivcmdTransport):
    """A PrivcmdTransport on a pipe; only buffer mapping differs (no MAP_LOCKED,
    so no RLIMIT_MEMLOCK or root is needed).  ``hypercall`` is the real one."""

    kind = "privcmd"

    def _map(self, size: int) -> _privcmd.Buffer:
        return _privcmd._map_anonymous(size, locked=False)


@pytest.fixture(scope="module")
def fake_device() -> Iterator[Tuple[Handle, FakeDeviceTransport, int]]:
    mp = pytest.MonkeyPatch()
    mp.setattr(_privcmd, "IOCTL_PRIVCMD_HYPERCALL", FAKE_REQUEST)
    r, w = os.pipe()
    t = FakeDeviceTransport(os.dup(r), "pipe (FIONREAD)", None)
    variant = _abi.variant(FAKE_RELEASE)
    h = Handle(t, "fake:///pipe", abi=variant)
    h._abi = variant  # no detection: the fake device answers 0 to everything
    assert h.xen_version() == (0, 0)
    assert h.domain_info(0, name=False).domid == 0
    yield h, t, r
    h.close()
    os.close(r)
    os.close(w)
    mp.undo()


def _info(benchmark: Any, role: str, op: str, **extra: Any) -> None:
    benchmark.extra_info.update({"role": role, "op": op, "device": "pipe FIONREAD", **extra})


@pytest.mark.benchmark(group=GROUP)
def test_floor_bare_ioctl(benchmark: Any, fake_device: Any) -> None:
    _h, _t, fd = fake_device
    req = _privcmd.privcmd_hypercall()
    _info(benchmark, "floor", "ioctl")
    assert benchmark(fcntl.ioctl, fd, FAKE_REQUEST, req, True) == 0


@pytest.mark.benchmark(group=GROUP)
def test_library_xen_version(benchmark: Any, fake_device: Any) -> None:
    h, _t, _fd = fake_device
    _info(benchmark, "library", "xen_version")
    assert benchmark(h.xen_version) == (0, 0)


@pytest.mark.benchmark(group=GROUP)
def test_library_getdomaininfo(benchmark: Any, fake_device: Any) -> None:
    h, _t, _fd = fake_device
    _info(benchmark, "library", "getdomaininfo", release=h.abi.release)
    assert benchmark(h.domain_info, 0, name=False).domid == 0


@pytest.mark.benchmark(group=GROUP)
def test_transport_hypercall(benchmark: Any, fake_device: Any) -> None:
    _h, t, _fd = fake_device
    _info(benchmark, "transport", "hypercall")
    assert benchmark(t.hypercall, 17, 0, 0) == 0


@pytest.mark.benchmark(group=GROUP)
def test_reference_handwritten_getdomaininfo(benchmark: Any, fake_device: Any) -> None:
    """getdomaininfo with nothing but struct: the lower bound for Python."""
    h, _t, fd = fake_device
    v = h.abi
    dom = fields(v.structs["xen_domctl"])
    head = struct.Struct("<II" + ("H" if ctypes.sizeof(dom["domain"][1]) == 2 else "I"))
    assert dom["cmd"][0] == 0 and dom["interface_version"][0] == 4 and dom["domain"][0] == 8
    cmd = int(v.constants["XEN_DOMCTL_getdomaininfo"])
    iv = int(v.domctl_interface_version)
    size = ctypes.sizeof(v.structs["xen_domctl"])
    page = (ctypes.c_char * 4096)()
    addr = ctypes.addressof(page)
    req = _privcmd.privcmd_hypercall()
    pack_req = struct.Struct("=6Q").pack_into
    pack_head = head.pack_into
    unpack = info_reader(h.engine).records.unpack_from
    u = dom["u"][0]
    memset = ctypes.memset
    ioctl = fcntl.ioctl

    def getdomaininfo(domid: int) -> Tuple[Any, ...]:
        memset(addr, 0, size)
        pack_head(page, 0, cmd, iv, domid)
        pack_req(req, 0, 36, addr, 0, 0, 0, 0)
        ioctl(fd, FAKE_REQUEST, req, True)
        return unpack(page, u)  # type: ignore[no-any-return]

    _info(benchmark, "reference", "getdomaininfo")
    assert benchmark(getdomaininfo, 0)[0] == 0
