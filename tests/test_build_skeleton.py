"""The xenstore skeleton of a new guest (issue 25).

Checked here against Xen's docs/misc/xenstore-paths.pandoc (which nodes a guest may
write: tagged ``[w]``; the values' forms) and against the config; ``tests/realxen/
test_build_store.py`` compares every node, value and permission with what libxl wrote
for the same config in each suite.
"""

from __future__ import annotations

import os
import re

import pytest

from xenprivcmd.build.config import DomainConfig
from xenprivcmd.build.skeleton import StoreNode, domain_skeleton

UUID = "5a3c1f2e-8b9d-4e6f-a1b2-c3d4e5f60718"
CFG = DomainConfig.from_xl('name = "web1"\nkernel = "/boot/vmlinuz"\nramdisk = "/boot/initrd"\nmemory = 512\n'
                           'maxmem = 1024\nvcpus = 2\nmaxvcpus = 4\nextra = "console=hvc0"\n')
#: the guest-writable nodes of xenstore-paths.pandoc ("[w]") that libxl creates
WRITABLE = {"control/shutdown", "control/feature-poweroff", "control/feature-reboot", "control/feature-suspend",
            "control/sysrq", "device/suspend/event-channel", "data", "drivers", "feature", "attr", "error"}


def _skel(**kw):  # type: ignore[no-untyped-def]
    args = dict(uuid=UUID, arch="x86_64", store_mfn=0x1234, store_port=1, console_mfn=0x1235, console_port=2,
                start_time=1733560000.257)
    args.update(kw)
    return domain_skeleton(CFG, 7, **args)  # type: ignore[arg-type]


def test_nodes_values_and_who_may_write():
    nodes = _skel()
    by = {n.path: n for n in nodes}
    assert len(by) == len(nodes)
    d = "/local/domain/7"
    rel = {p[len(d) + 1:]: n for p, n in by.items() if p.startswith(d + "/")}
    # the guest owns exactly the [w] nodes (and its console frontend's backend-id, which
    # libxl__device_generic_add gives the frontend, readable by the backend)
    owned = {k for k, n in rel.items() if n.perms[0] == "n7"}
    assert owned == WRITABLE | {"console/backend-id"}
    # everything else: dom0's, readable by the guest
    assert all(n.perms == ("n0", "r7") for k, n in rel.items() if k not in owned)
    assert by[d].perms == by[f"/vm/{UUID}"].perms == ("n0", "r7")
    assert by[f"{d}/console/backend-id"].perms == ("n7", "r0")  # the backend (dom0's xenconsoled) reads it
    assert by[f"{d}/console/backend"].value == "/local/domain/0/backend/console/7/0"
    v = {k: n.value for k, n in rel.items()}
    assert (v["name"], v["domid"], v["vm"]) == ("web1", "7", f"/vm/{UUID}")
    assert (v["memory/static-max"], v["memory/target"], v["memory/videoram"]) == ("1048576", "524288", "0")
    assert [v[f"cpu/{i}/availability"] for i in range(4)] == ["online", "online", "offline", "offline"]
    assert "cpu/4" not in v
    assert (v["store/ring-ref"], v["store/port"], v["console/ring-ref"], v["console/port"]) == (
        str(0x1234), "1", str(0x1235), "2")
    assert (v["console/type"], v["console/limit"], v["console/backend-id"]) == ("xenconsoled", "1048576", "0")
    vm = {n.path[len(f"/vm/{UUID}/"):]: n.value for n in nodes if n.path.startswith(f"/vm/{UUID}/")}
    assert vm == {"uuid": UUID, "name": "web1", "image": "", "image/ostype": "linux", "image/kernel": "/boot/vmlinuz",
                  "image/ramdisk": "/boot/initrd", "image/cmdline": "console=hvc0", "start_time": "1733560000.25"}


def test_arm_guests_have_no_image_entries():
    """libxl writes /vm/UUID/image/* for PV guests only (an Arm guest is PVH to it): seen in
    bookworm-arm64's and trixie-arm64's xenstore (tests/realxen/test_build_store.py)."""
    vm = {n.path[len(f"/vm/{UUID}/"):] for n in _skel(arch="aarch64") if n.path.startswith(f"/vm/{UUID}/")}
    assert vm == {"uuid", "name", "start_time"}
    x86 = {n.path for n in _skel()} - {f"/vm/{UUID}/{k}" for k in ("image", "image/ostype", "image/kernel",
                                                                     "image/ramdisk", "image/cmdline")}
    assert x86 == {n.path for n in _skel(arch="aarch64")}


def test_parents_come_first():
    seen = set()
    for n in _skel():
        parent = os.path.dirname(n.path)
        assert parent in seen or parent in ("/local/domain", "/vm", "/libxl"), n.path
        seen.add(n.path)


def test_without_ramdisk_and_with_a_given_cmdline():
    nodes = domain_skeleton(CFG.replace(ramdisk=None), 9, uuid=UUID, arch="x86_64", store_mfn=1, store_port=1,
                            console_mfn=2, console_port=2, start_time=5.0, cmdline="quiet")
    by = {n.path: n.value for n in nodes}
    assert f"/vm/{UUID}/image/ramdisk" not in by and by[f"/vm/{UUID}/image/cmdline"] == "quiet"
    assert by[f"/vm/{UUID}/start_time"] == "5.00"
    assert isinstance(nodes[0], StoreNode)


@pytest.mark.parametrize("kw, match", [
    (dict(store_port=-1), "store_port"),
    (dict(console_mfn=-3), "console_mfn"),
])
def test_bad_numbers(kw, match):  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        _skel(**kw)
    with pytest.raises(ValueError, match="domid 0"):
        domain_skeleton(CFG, 0, uuid=UUID, arch="x86_64", store_mfn=1, store_port=1, console_mfn=2,
                        console_port=2, start_time=5.0)


RECORDED = DomainConfig.from_xl(
    'name = "xpsh-xs"\nuuid = "5a3c1f2e-8b9d-4e6f-a1b2-c3d4e5f60718"\nkernel = "/opt/xenvm/guest/vmlinuz"\n'
    'ramdisk = "/opt/xenvm/guest/initrd.gz"\nextra = "console=hvc0 quiet"\nmemory = 128\nmaxmem = 192\nvcpus = 2\n'
    'maxvcpus = 3\non_reboot = "restart"\non_poweroff = "destroy"\non_crash = "preserve"\n')


def _xenstore_ls(path: str) -> dict:  # type: ignore[type-arg]
    line = re.compile(r'^(/\S*) = "(.*)"\s+\(([^)]*)\)$')
    out = {}
    with open(path) as f:
        for text in f:
            if text.startswith("#"):
                continue
            m = line.match(text.rstrip("\n"))
            assert m, text
            out[m.group(1)] = (m.group(2), tuple(m.group(3).split(",")))
    return out


def test_as_libxl_wrote_it_in_bookworm():
    """The same config as the recording; libxl's numbers (rings, ports, start time) given."""
    theirs = _xenstore_ls(os.path.join(os.path.dirname(__file__), "data", "build", "xenstore-bookworm.txt"))
    d, vm = "/local/domain/3", f"/vm/{UUID}"
    ours = domain_skeleton(RECORDED, 3, uuid=UUID, arch="x86_64", store_mfn=218625, store_port=1, console_mfn=218626,
                           console_port=2, start_time=1796628071.58)
    # the recording is of /local/domain/3 and /vm/UUID; /libxl/3/type is compared with xl's
    # guest in tests/realxen/test_create.py
    mine = {n.path: (n.value, n.perms) for n in ours if n.path not in (d, vm) and not n.path.startswith("/libxl/")}
    mine[f"{d}/console/tty"] = ("/dev/pts/1", mine[f"{d}/console/tty"][1])  # xenconsoled's
    assert mine == theirs
