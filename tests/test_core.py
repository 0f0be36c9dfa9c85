"""The core: the privcmd boundary, hypercall buffers, typed errors, xen_version."""

from __future__ import annotations

import ctypes
import errno
import os
import pickle
import subprocess
import sys
import threading

import pytest

import xenprivcmd
from xenprivcmd import errors
from xenprivcmd.abi import hypercalls as hc
from xenprivcmd.handle import Handle
from xenprivcmd.transport import privcmd as _privcmd

from .fakexen import FakeXen


def mapped(address: int) -> bool:
    with open("/proc/self/maps") as f:
        for line in f:
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            if lo <= address < hi:
                return True
    return False


# -- the ioctl ------------------------------------------------------------------

def test_ioctl_number_is_the_linux_one():
    # _IOC(_IOC_NONE, 'P', 0, sizeof(struct privcmd_hypercall) == 48)
    assert _privcmd.IOCTL_PRIVCMD_HYPERCALL == 0x305000
    assert ctypes.sizeof(_privcmd.privcmd_hypercall) == 48


def test_privcmd_transport_issues_the_ioctl_on_its_fd(tmp_path):
    # /dev/null answers every ioctl with ENOTTY: proves the ioctl is issued on
    # the fd with the request, and that the OSError comes back unchanged.
    fd = os.open("/dev/null", os.O_RDWR)
    t = _privcmd.PrivcmdTransport(fd, "/dev/null", None)
    with pytest.raises(OSError) as exc:
        t.hypercall(17, 0, 0)
    assert exc.value.errno == errno.ENOTTY
    assert t.calls == 1
    req = t._local.req
    assert (req.op, list(req.arg)) == (17, [0, 0, 0, 0, 0])
    with pytest.raises(OSError):
        t.hypercall(36, 1, 2, 3, 4, 5)
    assert t._local.req is req and (req.op, list(req.arg)) == (36, [1, 2, 3, 4, 5])
    t.close()
    with pytest.raises(xenprivcmd.XenError):
        t.hypercall(17)


# -- open -----------------------------------------------------------------------

def test_open_without_xen_says_not_a_dom0(tmp_path):
    with pytest.raises(xenprivcmd.NotDom0Error) as exc:
        _privcmd.open_privcmd(paths=(str(tmp_path / "privcmd"), str(tmp_path / "proc-privcmd")))
    e = exc.value
    assert isinstance(e, OSError) and isinstance(e, FileNotFoundError)
    assert e.errno == errno.ENOENT
    assert "not a Xen dom0" in str(e) and "\n" not in str(e)


def test_public_open_tells_a_dom0_from_other_machines():
    if os.path.exists("/dev/xen/privcmd") or os.path.exists("/proc/xen/privcmd"):
        with xenprivcmd.open() as h:  # a dom0 (the real-Xen runs): opens
            assert h.transport.kind == "privcmd"
    else:
        with pytest.raises(xenprivcmd.XenNotAvailable, match="not a Xen dom0"):
            xenprivcmd.open()


def test_open_falls_back_to_proc_path(tmp_path):
    second = tmp_path / "proc-privcmd"
    second.write_bytes(b"")
    t = _privcmd.open_privcmd(paths=(str(tmp_path / "none"), str(second)), hypercall_buf=str(tmp_path / "nobuf"))
    try:
        assert t.path == str(second)
        assert t.buffer_kind == "anonymous-locked"
    finally:
        t.close()


def test_open_permission_denied_says_run_as_root(tmp_path):
    dev = tmp_path / "privcmd"
    dev.write_bytes(b"")
    dev.chmod(0o600)
    code = (
        "import os,sys\n"
        "from xenprivcmd import PrivcmdPermissionError\n"
        "from xenprivcmd.transport import privcmd as _privcmd\n"
        "if os.geteuid() == 0: os.setgid(65534); os.setuid(65534)\n"
        "try:\n"
        f"    _privcmd.open_privcmd(paths=({str(dev)!r},))\n"
        "except PrivcmdPermissionError as e:\n"
        "    print(type(e).__name__, isinstance(e, PermissionError), e)\n"
    )
    if os.geteuid() != 0:
        dev.chmod(0)
    tmp_path.chmod(0o755)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(xenprivcmd.__file__))})
    assert out.stdout.strip() == f"PrivcmdPermissionError True permission denied opening {dev}: run as root", out.stderr


def test_unknown_uri():
    with pytest.raises(ValueError, match="unknown hypervisor URI"):
        xenprivcmd.open("qemu:///system")


# -- buffers --------------------------------------------------------------------

def test_locked_anonymous_buffers_are_locked_and_dontfork():
    buf = _privcmd._map_anonymous(2 * _privcmd.PAGE_SIZE, locked=True)
    try:
        with open("/proc/self/smaps") as f:
            text = f.read()
        start = f"{buf.address:x}-"
        block = text[text.index(start):].split("\n")
        fields = {}
        for line in block[1:]:  # as many lines as this kernel has (KSM, ProtectionKey, ...): up to VmFlags
            key, _, value = line.partition(":")
            fields[key] = value
            if key == "VmFlags":  # the last line of a mapping's block (proc(5))
                break
        assert int(fields["Locked"].split()[0]) == 2 * _privcmd.PAGE_SIZE // 1024
        assert "dc" in fields["VmFlags"].split()  # VM_DONTCOPY = MADV_DONTFORK
        assert int(fields["Rss"].split()[0]) == 2 * _privcmd.PAGE_SIZE // 1024  # every page touched
    finally:
        buf.release()
    assert not mapped(buf.address or 1)


def test_scratch_is_reused_and_grows():
    t = FakeXen()
    a = t.scratch(100)
    assert a.size == _privcmd.PAGE_SIZE and a.address % _privcmd.PAGE_SIZE == 0
    assert t.scratch(4000) is a
    old_addr = a.address
    b = t.scratch(3 * _privcmd.PAGE_SIZE)
    assert b is not a and b.size >= 3 * _privcmd.PAGE_SIZE
    assert not a.alive  # the smaller one was unmapped
    c = t.scratch(5 * _privcmd.PAGE_SIZE)
    assert c.size >= 2 * b.size  # geometric growth: no remap per size step
    assert t.stats()["buffers"] == 1 and t.stats()["mapped_bytes"] == c.size
    assert t.scratch(10) is c
    del old_addr
    t.close()
    assert not c.alive and t.stats()["buffers"] == 0


def test_buffer_views_are_zero_copy_and_bounded():
    t = FakeXen()
    buf = t.scratch(64)
    v = buf.at(ctypes.c_uint32, 8)
    v.value = 0xDEADBEEF
    assert bytes(buf.view[8:12]) == (0xDEADBEEF).to_bytes(4, sys.byteorder)
    assert buf.at(ctypes.c_uint32, 8) is v
    with pytest.raises(ValueError):
        buf.at(ctypes.c_uint64, buf.size - 4)
    t.close()


def test_buffer_clear_zeroes_exactly_the_range_asked():
    t = FakeXen()
    buf = t.scratch(64)
    buf.view[0:64] = b"\xff" * 64
    buf.clear(8, 16)
    assert bytes(buf.view[0:64]) == b"\xff" * 16 + b"\0" * 8 + b"\xff" * 40
    buf.clear(offset=60)
    assert bytes(buf.view[56:64]) == b"\xff" * 4 + b"\0" * 4
    for length, offset in ((1, buf.size), (buf.size + 1, 0), (-1, 0), (4, -4)):
        with pytest.raises(ValueError, match="cannot clear"):
            buf.clear(length, offset)
    buf.clear()
    assert bytes(buf.view) == bytes(buf.size)
    t.close()


def test_threads_get_their_own_buffers():
    t = FakeXen()
    seen = {}
    barrier = threading.Barrier(8)
    done = threading.Barrier(8)

    def work(i):
        barrier.wait()
        for _ in range(200):
            buf = t.scratch(64)
            buf.view[0] = i
            assert xenprivcmd.Handle(t, "fake").xen_version() == (4, 17)
            assert buf.view[0] == i
        seen[i] = t.scratch(1).address
        done.wait()  # all alive at once: their buffers must all differ

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(set(seen.values())) == 8
    assert t.calls == 8 * 200
    t.close()


def test_fork_child_maps_new_buffers_and_parent_keeps_its_own():
    t = FakeXen()
    parent = t.scratch(64)
    parent.view[0] = 42
    parent_addr = parent.address
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            ok = (not parent.alive) and not mapped(parent_addr) and t.stats()["buffers"] == 0
            child = t.scratch(64)
            child.view[0] = 7
            ok = ok and child is not parent and Handle(t, "fake").xen_version() == (4, 17) and child.view[0] == 7
            os.write(w, b"ok" if ok else b"no")
        finally:
            os._exit(0)
    os.close(w)
    got = os.read(r, 2)
    os.waitpid(pid, 0)
    assert got == b"ok"
    assert parent.alive and parent.view[0] == 42 and t.scratch(64) is parent
    t.close()


# -- errors ---------------------------------------------------------------------

@pytest.mark.parametrize(
    "err, hypercall, cls, builtin",
    [
        (errno.ESRCH, "domctl", errors.NoSuchDomain, ProcessLookupError),
        (errno.EPERM, "domctl", errors.HypervisorPermissionError, PermissionError),
        (errno.EACCES, "domctl", errors.InterfaceVersionMismatch, OSError),
        (errno.EACCES, "sysctl", errors.InterfaceVersionMismatch, OSError),
        (errno.EACCES, "xen_version", errors.HypervisorPermissionError, PermissionError),
        (errno.ENOSYS, "sysctl", errors.NotSupported, OSError),
        (errno.EOPNOTSUPP, "domctl", errors.NotSupported, OSError),
        (errno.EAGAIN, "domctl", errors.TryAgain, BlockingIOError),
        (errno.EINVAL, "domctl", errors.HypercallError, OSError),
    ],
)
def test_errno_maps_to_typed_error(err, hypercall, cls, builtin):
    e = errors.from_errno(err, hypercall=hypercall, subop="getdomaininfo", domid=5)
    assert type(e) is cls and isinstance(e, builtin) and isinstance(e, OSError)
    assert e.errno == err and e.hypercall == hypercall and e.subop == "getdomaininfo" and e.domid == 5
    assert str(e).startswith(f"{hypercall} getdomaininfo(domid=5): ")
    assert errno.errorcode[err] in str(e)
    back = pickle.loads(pickle.dumps(e))
    assert type(back) is cls and back.errno == err and str(back) == str(e)


def test_decode_error_is_not_an_oserror():
    assert issubclass(errors.DecodeError, ValueError) and not issubclass(errors.DecodeError, OSError)


def test_hypercall_errno_becomes_typed_error_with_subop():
    t = FakeXen()
    t.fail[hc.XENVER_compile_info] = errno.EPERM
    with pytest.raises(errors.HypervisorPermissionError) as exc:
        Handle(t, "fake").version()
    assert exc.value.hypercall == "xen_version" and exc.value.subop == "XENVER_compile_info"


# -- xen_version ----------------------------------------------------------------

def test_version_old_subops():
    t = FakeXen(major=4, minor=14, extra=".6")
    v = Handle(t, "fake").version()
    assert (v.major, v.minor, v.extraversion, v.release) == (4, 14, ".6", "4.14.6")
    assert v.capabilities == ("xen-3.0-x86_64", "hvm-3.0-x86_32", "hvm-3.0-x86_64")
    assert (v.compiler, v.compile_by, v.compile_domain, v.compile_date) == ("gcc 12", "builder", "debian.org", "Mon Jan 1")
    assert v.changeset == "abcdef0123, 2026-01-01"
    assert v.virt_start == 0xFFFF800000000000 and v.features == 0x2F and v.pagesize == 4096
    assert v.commandline == "console=com1 dom0_mem=1024M" and v.build_id == "1234abcd"
    assert v.varbuf_ops is False
    assert (hc.XENVER_extraversion2 and hc.XENVER_extraversion) in {s for (_, s, _) in t.log}


def test_version_varbuf_subops_are_not_truncated():
    long_cmdline = "x" * 3000
    t = FakeXen(major=4, minor=20, extra=".5-pre", varbuf=True, cmdline=long_cmdline, build_id=None)
    v = Handle(t, "fake").version()
    assert v.varbuf_ops and v.extraversion == ".5-pre" and v.commandline == long_cmdline and v.build_id is None
    assert hc.XENVER_commandline not in {s for (_, s, _) in t.log}


def test_unterminated_string_is_a_decode_error():
    t = FakeXen()
    t.garble[hc.XENVER_extraversion] = b"A" * 16
    with pytest.raises(errors.DecodeError, match="not NUL-terminated"):
        Handle(t, "fake").version()


def test_varbuf_reply_longer_than_buffer_is_a_decode_error():
    class Liar(FakeXen):
        def handle(self, op, args):
            n = super().handle(op, args)
            return n + 100 if args[0] == hc.XENVER_capabilities2 and args[1] else n

    with pytest.raises(errors.DecodeError, match="written into"):
        Handle(Liar(varbuf=True), "fake").version()


def test_import_does_not_load_construct():
    out = subprocess.run([sys.executable, "-c", "import sys, xenprivcmd; print('construct' in sys.modules)"],
                         capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(xenprivcmd.__file__))})
    assert out.stdout.strip() == "False"


def test_construct_is_loaded_only_by_a_slow_path_op():
    code = (
        "import sys, xenprivcmd\n"
        "h = xenprivcmd.open('sim:///default')\n"
        "h.domains(); h.domain_info(1); h.physinfo(); h.version(); h.vcpu_info(1)\n"
        "print('construct' in sys.modules)\n"
        "topo = h.cpu_topology(); nodes = h.numa_info(); pcpus = h.pcpu_info()\n"
        "print('construct' in sys.modules, len(topo) == h.nr_cpus(), len(pcpus) == h.nr_cpus(), len(nodes))\n"
    )
    path = os.pathsep.join(p for p in (os.path.dirname(os.path.dirname(xenprivcmd.__file__)),
                                       os.environ.get("PYTHONPATH")) if p)  # keep where construct lives
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": path})
    assert out.stdout.split() == ["False", "True", "True", "True", "1"], out.stderr
