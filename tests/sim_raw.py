"""Requests laid out with the simulator's own reading of a release's tables
(:mod:`xenprivcmd.sim._layout`), not the library's: the raw ABI behaviour
tests of tests/test_sim.py (domctl) and tests/test_dom0op.py (dom0_op)."""

from __future__ import annotations

import ctypes

from xenprivcmd.sim._layout import Tables

# family -> (command prefix, interface version attribute of the variant, hypercall number)
FAMILIES = {
    "xen_domctl": ("XEN_DOMCTL_", "domctl_interface_version", 36),
    "dom0_op": ("DOM0_", "dom0_op_interface_version", 7),
}


def raw_call(h, family, cmd, domain_field, domid=None, iv=None, fill=None):
    """Issue one ``family`` request for ``cmd`` on the simulator behind ``h``;
    -> (rc or -errno, the layout, the reply bytes)."""
    prefix, iv_attr, number = FAMILIES[family]
    t = h.transport
    tab = Tables("x86_64", t.host.release)
    lay = tab.layout(family)
    op = bytearray(lay.size)
    lay.put(op, "cmd", tab.const(prefix + cmd))
    lay.put(op, "interface_version", getattr(t.host.variant, iv_attr) if iv is None else iv)
    if domid is not None:
        lay.put(op, domain_field, domid)
    if fill:
        fill(lay, op)
    buf = t.scratch(4096)
    ctypes.memmove(buf.address, bytes(op), len(op))
    try:
        rc = t.hypercall(number, buf.address)
    except OSError as exc:
        rc = -exc.errno
    return rc, lay, bytearray(buf.view[: lay.size])
