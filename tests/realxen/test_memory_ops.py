"""Guest memory, HVM parameters and event-channel status (issue 24's hypercalls) on real Xen.

Independent facts: ``xl list`` and ``xl info`` (what the hypervisor says of a domain's pages and
of the host's claims), Xen's own libxenctrl called through ctypes (``xc_domain_maximum_gpfn``,
``xc_hvm_param_get``: the same questions answered by Xen's C library), the xenstore nodes xl
wrote for guest1 (its rings' frames and ports), and the bytes of the populated frames read back
through a second foreign mapping.  The domain these tests populate is their own (created empty,
destroyed at the end); guest1 is only read.
"""

from __future__ import annotations

import ctypes
import errno
import glob
import subprocess

import pytest

import xenprivcmd
from xenprivcmd.errors import HypercallError

from .conftest import xl_info, xl_list

PAGES = 1024  # 4 MiB: xl list's memory column shows it


def xs_read(path: str) -> str:
    return subprocess.run(["xenstore-read", path], capture_output=True, text=True, check=True).stdout.strip()


class LibXenctrl:
    """Xen's libxenctrl through ctypes: the C toolstack's answers to compare with."""

    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/*-linux-gnu/libxenctrl.so.*") + glob.glob("/usr/lib/libxenctrl.so.*"))
        assert found, "libxenctrl is not installed in this dom0 (xl needs it)"
        self.lib = ctypes.CDLL(found[0], use_errno=True)
        self.lib.xc_interface_open.restype = ctypes.c_void_p
        self.lib.xc_interface_open.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint]
        self.xch = self.lib.xc_interface_open(None, None, 0)
        assert self.xch, "xc_interface_open failed"

    def maximum_gpfn(self, domid: int) -> int:
        out = ctypes.c_uint64()
        fn = self.lib.xc_domain_maximum_gpfn
        fn.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.POINTER(ctypes.c_uint64)]
        rc = fn(self.xch, domid, ctypes.byref(out))
        assert rc >= 0, f"xc_domain_maximum_gpfn: errno {ctypes.get_errno()}"
        return out.value

    def hvm_param(self, domid: int, index: int):
        """(value, None) or (None, errno)."""
        out = ctypes.c_uint64()
        fn = self.lib.xc_hvm_param_get
        fn.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint32, ctypes.POINTER(ctypes.c_uint64)]
        ctypes.set_errno(0)
        rc = fn(self.xch, domid, index, ctypes.byref(out))
        return (out.value, None) if rc == 0 else (None, ctypes.get_errno())

    def set_paging_mempool_size(self, domid: int, size: int) -> None:
        """What libxl gives every Arm guest before its memory (the P2M's page pool: empty for a
        new domain on Xen 4.20, and populate_physmap then gets no page table: ENOMEM)."""
        fn = self.lib.xc_set_paging_mempool_size
        fn.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint64]
        rc = fn(self.xch, domid, size)
        assert rc == 0, f"xc_set_paging_mempool_size: errno {ctypes.get_errno()}"

    def close(self) -> None:
        self.lib.xc_interface_close.argtypes = [ctypes.c_void_p]
        self.lib.xc_interface_close(self.xch)


@pytest.fixture(scope="module")
def xc():
    got = LibXenctrl()
    yield got
    got.close()


def xl_mem(domid: int) -> int:
    for row in xl_list():
        if int(row["id"]) == domid:
            return int(row["mem"])
    raise AssertionError(f"xl list has no domain {domid}")


def test_populate_decrease_claim_and_maximum_gpfn_as_xl_and_libxenctrl_see_them(xen, xc):
    new = xen.create_domain()
    try:
        xen.set_max_mem(new, 2 * PAGES * 4)
        if xen.abi.arch == "aarch64":
            xc.set_paging_mempool_size(new, 4 << 20)  # as libxl does for an Arm guest
        gfns = list(range(0x100, 0x100 + PAGES))
        frames = xen.populate_physmap(new, gfns)
        assert len(frames) == PAGES and len(set(frames)) == PAGES
        if xen.abi.arch == "aarch64":  # translated: the list stays as it was
            assert frames == gfns
        else:  # x86 PV: machine frames written back, none of them the gfns asked
            assert frames != gfns
        assert xl_mem(new) == PAGES * 4 // 1024
        assert xen.domain_info(new).tot_pages == PAGES
        assert xen.maximum_gpfn(new) == xc.maximum_gpfn(new)
        if xen.abi.arch == "aarch64":
            assert xen.maximum_gpfn(new) == gfns[-1]
        # the frames are the domain's memory: written through one mapping, read through another
        with xen.map_foreign(new, frames[:2], writable=True) as m:
            m.view[:8] = b"xenpriv!"
            m.view[4096:4104] = b"cmd-page"
        with xen.map_foreign(new, frames[:2]) as m:
            assert bytes(m.view[:8]) == b"xenpriv!" and bytes(m.view[4096:4104]) == b"cmd-page"
        # a claim above what the domain has: xl info counts the pages still to come (MiB)
        xen.claim_pages(new, 2 * PAGES)
        assert int(xl_info()["outstanding_claims"]) == PAGES * 4 // 1024
        assert xen.physinfo().outstanding_pages == PAGES
        xen.claim_pages(new, 0)
        assert int(xl_info()["outstanding_claims"]) == 0
        assert xen.decrease_reservation(new, frames[PAGES // 2:]) == PAGES // 2
        assert xl_mem(new) == PAGES * 2 // 1024
        assert xen.domain_info(new).tot_pages == PAGES // 2
        assert xen.maximum_gpfn(new) == xc.maximum_gpfn(new)
        # a frame the domain no longer has: Xen stops there, the error says so
        with pytest.raises(HypercallError, match="released 0 of 1"):
            xen.decrease_reservation(new, frames[-1:])
        # beyond max_mem: nothing half-done (what Xen populated is released again)
        with pytest.raises(HypercallError, match=r"populated \d+ of"):
            xen.populate_physmap(new, range(0x10000, 0x10000 + 2 * PAGES))
        assert xen.domain_info(new).tot_pages == PAGES // 2
    finally:
        xen.destroy(new)
    assert all(int(r["id"]) != new for r in xl_list())


def test_hvm_params_as_libxenctrl_and_xenstore_give_them(xen, xc, guest):
    k = xen.abi.constants
    for name in ("STORE_PFN", "STORE_EVTCHN", "CONSOLE_PFN", "CONSOLE_EVTCHN"):
        index = int(k["HVM_PARAM_" + name])
        want, err = xc.hvm_param(guest, index)
        if err is not None:  # an x86 PV guest has no HVM parameters: the same refusal
            with pytest.raises(HypercallError) as exc:
                xen.hvm_param(guest, name)
            assert exc.value.errno == err == errno.EINVAL
            continue
        assert xen.hvm_param(guest, name.lower()) == want == xen.hvm_param(guest, index)
    if xen.abi.arch == "aarch64":  # what xl wrote of guest1's rings: the params Xen holds
        assert xen.hvm_param(guest, "store_pfn") == int(xs_read(f"/local/domain/{guest}/store/ring-ref"))
        assert xen.hvm_param(guest, "store_evtchn") == int(xs_read(f"/local/domain/{guest}/store/port"))
        assert xen.hvm_param(guest, "console_evtchn") == int(xs_read(f"/local/domain/{guest}/console/port"))
    with pytest.raises(ValueError):
        xen.hvm_param(guest, "no_such_param")


def test_a_guests_ring_ports_are_interdomain_bound_to_dom0(xen, guest):
    for ring in ("store", "console"):
        port = int(xs_read(f"/local/domain/{guest}/{ring}/port"))
        st = xen.evtchn_status(guest, port)
        assert (st.domid, st.port, st.status, st.remote_domid) == (guest, port, "interdomain", 0), st
        back = xen.evtchn_status(0, st.remote_port)  # dom0's end names the guest's
        assert (back.status, back.remote_domid, back.remote_port) == ("interdomain", guest, port), back


def test_bad_arguments_are_refused_before_any_hypercall(xen, guest):
    with pytest.raises(ValueError):
        xen.populate_physmap(guest, [])
    with pytest.raises(ValueError):
        xen.populate_physmap(guest, [-1])
    with pytest.raises(TypeError):
        xen.decrease_reservation(guest, ["1"])
    with pytest.raises(ValueError):
        xen.evtchn_status(guest, 0)
    with pytest.raises(ValueError):
        xen.claim_pages(guest, -1)
    with pytest.raises(xenprivcmd.errors.NoSuchDomain):
        xen.evtchn_status(0x7FEE, 1)
