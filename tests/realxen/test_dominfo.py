"""Every DomainInfo field of every domain against libxenctrl.

``tests/realxen/c/dominfo.c`` reads the same getdomaininfolist through the
suite's own libxenctrl, each field by its name in Xen's header as gcc lays
it out: no table of ours in between.  tools/run-tests compiles it against
the suite's libxen-dev and names it in ``XENPRIVCMD_DOMINFO``.  This is what
checks at run time the fields xl shows nowhere (``ssidref``,
``shared_info_frame``, ``outstanding_pages``, ``shr_pages``, ``paged_pages``).
"""

from __future__ import annotations

import json
import os
import subprocess

from xenprivcmd.types import DomainInfo

from .conftest import CHANGING_FLAGS

COMPARED = ("domid", "flags", "tot_pages", "max_pages", "outstanding_pages", "shr_pages", "paged_pages",
            "shared_info_frame", "cpu_time", "nr_online_vcpus", "max_vcpu_id", "ssidref", "handle_bytes",
            "cpupool")


def libxenctrl_domains():
    path = os.environ.get("XENPRIVCMD_DOMINFO", "")
    assert path and os.access(path, os.X_OK), (
        f"XENPRIVCMD_DOMINFO={path!r} is no program: tools/run-tests builds tests/realxen/c/dominfo.c for the suite")
    out = subprocess.run([path], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"{path}: {out.stderr}"
    got = {}
    for line in out.stdout.splitlines():
        rec = json.loads(line)
        rec["handle_bytes"] = bytes.fromhex(rec.pop("handle"))
        got[rec["domid"]] = rec
    return got


def test_every_field_is_compared():
    assert set(COMPARED) == set(DomainInfo._fields) - {"name"}


def test_every_domaininfo_field_is_what_libxenctrl_reads(xen, guest):
    xen.pause(guest)
    try:
        before = {d.domid: d for d in xen.domains()}
        theirs = libxenctrl_domains()
        after = {d.domid: d for d in xen.domains()}
        one_by_one = {d: xen.domain_info(d) for d in theirs}
    finally:
        xen.unpause(guest)
    assert set(theirs) == set(before) == set(after) and len(theirs) >= 2, (sorted(theirs), sorted(before))
    compared = 0
    for domid, c in sorted(theirs.items()):
        a, b = before[domid], after[domid]
        for field in COMPARED:
            mine = getattr(a, field), getattr(b, field)
            if field == "cpu_time":
                assert mine[0] <= c[field] <= mine[1], (domid, field, mine, c[field])
            elif field == "flags":
                assert mine[0] & ~CHANGING_FLAGS == c[field] & ~CHANGING_FLAGS == mine[1] & ~CHANGING_FLAGS, (
                    domid, field, mine, c[field])
            else:
                assert c[field] in mine, (domid, field, mine, c[field])
            compared += 1
    # the paused guest changes nothing but its blocked bit (a paused vcpu may still wake or block):
    # every other field equal, one by one too
    g = theirs[guest]
    for field in COMPARED:
        steady = [getattr(before[guest], field), getattr(one_by_one[guest], field), g[field]]
        if field == "flags":
            steady = [f & ~CHANGING_FLAGS for f in steady]
        assert steady[0] == steady[1] == steady[2], (field, steady)
    assert before[guest].paused and g["flags"] & (1 << 3)  # XEN_DOMINF_paused, bit 3
    assert compared == len(theirs) * len(COMPARED)
