"""A pytest plugin that breaks one layout on purpose: tot_pages and max_pages
of xen_domctl_getdomaininfo trade places in every release of the running
machine's architecture (x86_64 or aarch64; a layout that looks sound, only
wrong).

Used by test_broken_layout.py to show that the real-Xen tests catch a wrong
layout (``python3 -m pytest -p tests.realxen.break_layout ...``).
"""

import importlib

from xenprivcmd import _machine_arch

layouts = importlib.import_module("xenprivcmd.structs._gen_%s_layouts" % _machine_arch())

GOOD = "tot_pages:8:u64 max_pages:16:u64"
BROKEN = "max_pages:8:u64 tot_pages:16:u64"

rows = [r for r in layouts.STRUCTS if r.startswith("xen_domctl_getdomaininfo ")]
assert rows and all(GOOD in r for r in rows), "the getdomaininfo layout to break is not where expected"
layouts.STRUCTS = tuple(r.replace(GOOD, BROKEN) if r.startswith("xen_domctl_getdomaininfo ") else r
                        for r in layouts.STRUCTS)
