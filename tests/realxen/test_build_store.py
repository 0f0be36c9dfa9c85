"""xenprivcmd.build.skeleton against the xenstore entries libxl wrote (issue 25).

``xl create -p`` makes a paused guest from a config using every key the skeleton reads
(maxmem above memory, maxvcpus above vcpus, a ramdisk, a command line); ``xenstore-ls
-fp`` (the suite's own xenstore tools) then lists what it has under ``/local/domain/N`` and
``/vm/UUID``, values and permissions.  :func:`domain_skeleton` for the same config, given
the numbers libxl chose (the rings' frames and event channels, the start time), must be
exactly that.
"""

from __future__ import annotations

import os
import re
import subprocess
from typing import Dict, Iterator, Tuple

import pytest

import xenprivcmd
from xenprivcmd.build.config import DomainConfig
from xenprivcmd.build.skeleton import domain_skeleton

NAME = "xpsh-store"
UUID = "5a3c1f2e-8b9d-4e6f-a1b2-c3d4e5f60718"
CONFIG = (f'name = "{NAME}"\nuuid = "{UUID}"\nkernel = "/opt/xenvm/guest/vmlinuz"\n'
          'ramdisk = "/opt/xenvm/guest/initrd.gz"\nextra = "console=hvc0 quiet"\nmemory = 128\n'
          'vcpus = 2\nmaxvcpus = 3\n')
#: maxmem above memory: x86 PV only (libxl fails to create an Arm guest with it: Arm has no
#: populate-on-demand to start it below its maximum)
X86_MAXMEM = "maxmem = 192\n"


def _config(xen: xenprivcmd.Handle) -> str:
    return CONFIG + (X86_MAXMEM if xen.abi.arch == "x86_64" else "")
LINE = re.compile(r'^(/\S*) = "(.*)"\s+\(([^)]*)\)$')


def xenstore_ls(path: str) -> Dict[str, Tuple[str, Tuple[str, ...]]]:
    """``xenstore-ls -fp PATH``: path -> (value, perms), ``path`` itself included."""
    out = subprocess.run(["xenstore-ls", "-fp", path], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    top = subprocess.run(["xenstore-ls", "-fp", os.path.dirname(path)], capture_output=True, text=True, timeout=60)
    nodes = {}
    for line in top.stdout.splitlines() + out.stdout.splitlines():
        m = LINE.match(line)
        assert m, line
        p, value, perms = m.groups()
        if p == path or p.startswith(path + "/"):
            nodes[p] = (value.encode().decode("unicode_escape"), tuple(perms.split(",")))
    return nodes


@pytest.fixture(scope="module")
def created(tmp_path_factory, xen) -> Iterator[int]:  # type: ignore[no-untyped-def]
    cfg = tmp_path_factory.mktemp("store") / "store.cfg"
    cfg.write_text(_config(xen))
    out = subprocess.run(["xl", "create", "-p", str(cfg)], capture_output=True, text=True, timeout=600)
    try:
        assert out.returncode == 0, out.stderr[-3000:]
        yield int(subprocess.run(["xl", "domid", NAME], capture_output=True, text=True, check=True).stdout)
    finally:
        subprocess.run(["xl", "destroy", NAME], capture_output=True, timeout=120)


def test_skeleton_as_libxl_wrote_it(xen: xenprivcmd.Handle, created: int) -> None:
    domid = created
    theirs = {**xenstore_ls(f"/local/domain/{domid}"), **xenstore_ls(f"/vm/{UUID}")}
    # of libxl's own records, the one the skeleton writes too: the domain's type
    records = xenstore_ls(f"/libxl/{domid}")
    theirs.update((p, records[p]) for p in (f"/libxl/{domid}", f"/libxl/{domid}/type"))
    d = f"/local/domain/{domid}"
    ours = domain_skeleton(DomainConfig.from_xl(_config(xen), arch=xen.abi.arch), domid, uuid=UUID, arch=xen.abi.arch,
                           store_mfn=int(theirs[f"{d}/store/ring-ref"][0]),
                           store_port=int(theirs[f"{d}/store/port"][0]),
                           console_mfn=int(theirs[f"{d}/console/ring-ref"][0]),
                           console_port=int(theirs[f"{d}/console/port"][0]),
                           start_time=float(theirs[f"/vm/{UUID}/start_time"][0]))
    mine = {n.path: (n.value, n.perms) for n in ours}
    assert len(mine) == len(ours), "a path listed twice"
    # xenconsoled writes the console's pty once it has connected to the ring
    if f"{d}/console/tty" in theirs:
        mine[f"{d}/console/tty"] = (theirs[f"{d}/console/tty"][0], mine[f"{d}/console/tty"][1])
    missing = sorted(set(theirs) - set(mine))
    extra = sorted(set(mine) - set(theirs))
    differ = sorted(p for p in set(mine) & set(theirs) if mine[p] != theirs[p])
    assert (missing, extra, [(p, mine[p], theirs[p]) for p in differ]) == ([], [], [])
    # parents before children, as a writer needs them
    seen = set()
    for n in ours:
        parent = os.path.dirname(n.path)
        assert parent in seen or parent in ("/local/domain", "/vm", "/libxl"), n.path
        seen.add(n.path)
