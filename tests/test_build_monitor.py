"""The on-shutdown monitor (xenprivcmd.build.monitor) and destroy's xenstore cleanup on the simulator (issue 25).

A small PV kernel (GNU as and ld, ``build_helpers.make_kernel``) is built into a simulated
x86_64 Xen with a monitor; the guest then shuts down for each reason (the simulator's
``SCHEDOP_shutdown``, or ``control/shutdown`` answered by its PV drivers) and the monitor
acts per the config: the domain destroyed with nothing left in xenstore, built again (a new
domid, the same name and uuid), or left.  xenstore is read back path by path, the domains
by getdomaininfo.  ``tests/realxen/test_create.py`` does the same with xl and a real guest.
"""

from __future__ import annotations

import os
import threading
import time

import pytest

import xenprivcmd
from xenprivcmd import control
from xenprivcmd.build import monitor as mon
from xenprivcmd.build.config import DomainConfig
from xenprivcmd.errors import ImageError, NoSuchDomain, NotSupported

from .build_helpers import make_kernel, store_paths
from .test_build_create import NOTES
from .test_shell import inproc

#: SHUTDOWN_* codes of public/sched.h (poweroff 0, reboot 1, suspend 2, crash 3, watchdog 4, soft_reset 5)
CODES = {"poweroff": 0, "reboot": 1, "suspend": 2, "crash": 3, "watchdog": 4, "soft_reset": 5}


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):  # type: ignore[no-untyped-def]
    return make_kernel(tmp_path_factory.mktemp("monitor"), NOTES, text_pages=4)


def _cfg(kernel, name="mon", **keys):  # type: ignore[no-untyped-def]
    extra = "".join(f'{k} = "{v}"\n' for k, v in keys.items())
    return DomainConfig.from_xl(f'name = "{name}"\nkernel = "{kernel}"\nmemory = 20\n' + extra)


@pytest.fixture
def xen():  # type: ignore[no-untyped-def]
    h = xenprivcmd.open("sim:///?xen=4.17.0&domains=1")
    yield h
    h.close()


def _guest_shuts_down(xen, domid, reason):  # type: ignore[no-untyped-def]
    """The guest's SCHEDOP_shutdown with ``reason`` (the simulator's)."""
    host = xen.transport.host
    host.shutdown(host.domains[domid], CODES[reason])


def _until(pred, seconds=10.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.02)
    raise AssertionError(f"not within {seconds} s")


def _ids(xen):  # type: ignore[no-untyped-def]
    return {i.domid: (i.name, i.state, i.shutdown_reason) for i in xen.domains() if i.domid}


def _store(xen, domid, uuid):  # type: ignore[no-untyped-def]
    xs = xen.xenstore()
    try:
        return store_paths(xs, f"/local/domain/{domid}") | store_paths(xs, f"/vm/{uuid}")
    finally:
        xs.close()


def test_action_for_each_reason(kernel):  # type: ignore[no-untyped-def]
    cfg = _cfg(kernel, on_poweroff="preserve", on_reboot="destroy", on_crash="restart")
    got = {r: mon.action_for(cfg, r) for r in ("poweroff", "reboot", "crash", "watchdog", "soft_reset", "suspend",
                                                "code 9", None)}
    assert got == {"poweroff": "preserve", "reboot": "destroy", "crash": "restart", "watchdog": "destroy",
                   "soft_reset": "preserve", "suspend": None, "code 9": "destroy", None: "destroy"}
    # xl's defaults when the config says nothing
    assert [mon.action_for(_cfg(kernel), r) for r in ("poweroff", "reboot", "crash")] == ["destroy", "restart",
                                                                                          "destroy"]


def test_poweroff_destroy_leaves_nothing(xen, kernel):  # type: ignore[no-untyped-def]
    info = xen.create(_cfg(kernel, on_poweroff="destroy"), monitor=True)
    uuid = info.uuid
    assert f"/vm/{uuid}/name" in _store(xen, info.domid, uuid)
    _guest_shuts_down(xen, info.domid, "poweroff")
    _until(lambda: info.domid not in _ids(xen))
    _until(lambda: not _store(xen, info.domid, uuid))
    assert _ids(xen) == {}


def test_reboot_restart_keeps_name_and_uuid_then_poweroff_ends_it(xen, kernel):  # type: ignore[no-untyped-def]
    cfg = _cfg(kernel, on_reboot="restart", on_poweroff="destroy")
    info = xen.create(cfg)
    m = mon.Monitor(xen, cfg, info.domid).start()
    first = info.domid
    _guest_shuts_down(xen, first, "reboot")
    new = _until(lambda: [d for d, row in _ids(xen).items() if d != first and row[1] == "running"])
    assert len(new) == 1 and new[0] != first
    again = xen.domain_info(new[0])
    assert (again.name, again.uuid, again.state) == ("mon", info.uuid, "running")
    assert first not in _ids(xen) and not _store(xen, first, "none")
    xs = xen.xenstore()
    assert xs.read(f"/local/domain/{new[0]}/vm") == f"/vm/{info.uuid}".encode()
    assert xs.read(f"/vm/{info.uuid}/name") == b"mon"
    xs.close()
    _until(lambda: m.domid == new[0])
    assert m.restarts == 1 and m.history == [(first, "reboot", "restart")]
    _guest_shuts_down(xen, new[0], "poweroff")
    m.thread.join(10)
    assert m.outcome == "destroyed" and m.history[-1] == (new[0], "poweroff", "destroy")
    assert _ids(xen) == {} and not _store(xen, new[0], info.uuid)


@pytest.mark.parametrize("reason,action,outcome", [("crash", "preserve", "preserved"),
                                                   ("suspend", None, "suspended"),
                                                   ("soft_reset", "preserve", "preserved")])
def test_what_is_left_as_it_is(xen, kernel, reason, action, outcome):  # type: ignore[no-untyped-def]
    cfg = _cfg(kernel, on_crash="preserve")
    info = xen.create(cfg)
    m = mon.Monitor(xen, cfg, info.domid).start()
    before = _store(xen, info.domid, info.uuid)
    _guest_shuts_down(xen, info.domid, reason)
    m.thread.join(10)
    assert (m.outcome, m.history) == (outcome, [(info.domid, reason, action)])
    assert _ids(xen) == {info.domid: ("mon", "shut off" if reason != "crash" else "crashed", reason)}
    assert _store(xen, info.domid, info.uuid) == before


def test_watchdog_destroys(xen, kernel):  # type: ignore[no-untyped-def]
    cfg = _cfg(kernel)
    info = xen.create(cfg)
    m = mon.Monitor(xen, cfg, info.domid).start()
    _guest_shuts_down(xen, info.domid, "watchdog")
    m.thread.join(10)
    assert m.outcome == "destroyed" and _ids(xen) == {} and not _store(xen, info.domid, info.uuid)


def test_destroyed_by_someone_else_ends_it_and_cleans_up(xen, kernel):  # type: ignore[no-untyped-def]
    cfg = _cfg(kernel)
    info = xen.create(cfg)
    m = mon.Monitor(xen, cfg, info.domid).start()
    xen.destroy(info.domid)  # the bare hypercall: /vm/UUID is left by it
    m.thread.join(10)
    assert m.outcome == "gone" and m.history == []
    assert not _store(xen, info.domid, info.uuid)


def test_a_restart_that_fails_leaves_nothing(xen, kernel, tmp_path):  # type: ignore[no-untyped-def]
    k = tmp_path / "vmlinux"
    k.write_bytes(open(kernel, "rb").read())
    cfg = _cfg(str(k))
    info = xen.create(cfg)
    m = mon.Monitor(xen, cfg, info.domid).start()
    os.unlink(k)
    _guest_shuts_down(xen, info.domid, "reboot")
    m.thread.join(10)
    assert m.outcome == "failed" and isinstance(m.error, ImageError) and "cannot read the kernel" in str(m.error)
    assert _ids(xen) == {} and not _store(xen, info.domid, info.uuid)


def test_restarts_are_limited(xen, kernel, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(mon, "RESTART_LIMIT", 2)
    cfg = _cfg(kernel, on_crash="restart")
    info = xen.create(cfg)
    lines = []
    m = mon.Monitor(xen, cfg, info.domid, log=lines.append).start()
    for _ in range(3):
        domid = m.domid
        _guest_shuts_down(xen, domid, "crash")
        _until(lambda d=domid: m.domid != d or m.outcome)
    m.thread.join(10)
    assert m.outcome == "destroyed" and m.restarts == 2 and len(m.history) == 3
    assert any("restarted 2 times" in ln for ln in lines) and _ids(xen) == {}


def test_stop_leaves_the_domain(xen, kernel):  # type: ignore[no-untyped-def]
    cfg = _cfg(kernel)
    info = xen.create(cfg)
    m = mon.Monitor(xen, cfg, info.domid, poll=0.05).start()
    m.stop(10)
    assert m.outcome == "stopped" and _ids(xen) == {info.domid: ("mon", "running", None)}


def test_bad_arguments(xen, kernel):  # type: ignore[no-untyped-def]
    cfg = _cfg(kernel)
    info = xen.create(cfg)
    with pytest.raises(TypeError, match="DomainConfig"):
        mon.Monitor(xen, "name = 'x'", info.domid)  # type: ignore[arg-type]
    for bad in (0, -1, True, 40000, "1"):
        with pytest.raises(ValueError, match="domid"):
            mon.Monitor(xen, cfg, bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="poll"):
        mon.Monitor(xen, cfg, info.domid, poll=0)
    with pytest.raises(NoSuchDomain):
        mon.Monitor(xen, cfg, 77)
    with pytest.raises(ValueError, match="uuid"):
        mon.Monitor(xen, cfg.replace(uuid="5a3c1f2e-8b9d-4e6f-a1b2-c3d4e5f60718"), info.domid)
    with pytest.raises(NotSupported, match="privcmd"):
        mon.spawn(xen, cfg, info.domid)
    with pytest.raises(ValueError, match="domain 0"):
        control.destroy(xen, 0)
    with pytest.raises(ValueError, match="domid"):
        control.forget(xen.xenstore(), 0)
    assert _ids(xen) == {info.domid: ("mon", "running", None)}  # nothing was touched


def test_destroy_removes_what_xl_would(xen, kernel):  # type: ignore[no-untyped-def]
    info = xen.create(_cfg(kernel))
    xs = xen.xenstore()
    for path in (f"/libxl/{info.domid}/type", f"/local/domain/0/backend/vkbd/{info.domid}/0/state",
                 "/local/domain/0/backend/vkbd/99/0/state"):
        xs.write(path, "pv")
    removed = control.destroy(xen, info.domid)
    assert set(removed) == {f"/vm/{info.uuid}", f"/libxl/{info.domid}", f"/local/domain/0/backend/vkbd/{info.domid}"}
    assert not _store(xen, info.domid, info.uuid) and not store_paths(xs, f"/libxl/{info.domid}")
    assert xs.read("/local/domain/0/backend/vkbd/99/0/state") == b"pv"  # another domain's: kept
    assert _ids(xen) == {}
    with pytest.raises(NoSuchDomain):
        control.destroy(xen, info.domid)


# -- xpsh create / shutdown / reboot / destroy --------------------------------------------------

def test_xpsh_shutdown_reboot_destroy_with_the_monitor(xen, kernel, tmp_path):  # type: ignore[no-untyped-def]
    cfg = tmp_path / "g.cfg"
    cfg.write_text(f'name = "g"\nkernel = "{kernel}"\nmemory = 20\non_reboot = "restart"\n')
    rc, out, err = inproc("create", str(cfg), handle=xen)
    assert (rc, err) == (0, "") and out == "Domain 'g' created (id 1)\n"
    host = xen.transport.host
    host.domains[1].pv = True  # its kernel's xenbus came up: it answers control/shutdown
    uuid = xen.domain_info(1).uuid
    rc, out, err = inproc("reboot", "--wait", "g", handle=xen)
    assert (rc, err) == (0, ""), err
    _until(lambda: _ids(xen) == {2: ("g", "running", None)})
    assert _ids(xen) == {2: ("g", "running", None)} and not _store(xen, 1, "none")
    host.domains[2].pv = True
    rc, out, err = inproc("shutdown", "--wait", "g", handle=xen)
    assert (rc, err) == (0, ""), err
    _until(lambda: not _ids(xen))
    _until(lambda: not _store(xen, 2, uuid))
    # destroy, with and without a monitor: nothing under /local/domain/N nor /vm/UUID
    for extra in ([], ["--no-monitor"]):
        rc, out, err = inproc("create", *extra, str(cfg), handle=xen)
        assert rc == 0, err
        domid = int(out.split("id ")[1].rstrip(")\n"))
        uuid = xen.domain_info(domid).uuid
        watching = [t for t in threading.enumerate() if t.name == "xenprivcmd-monitor-g"]
        assert len(watching) == (0 if extra else 1), watching
        assert _store(xen, domid, uuid)
        rc, out, err = inproc("-N", "destroy", "g", handle=xen)
        assert rc == 0 and f"xenstore rm /vm/{uuid}" in out and f"xenstore rm /local/domain/{domid}" in out, out
        assert _store(xen, domid, uuid) and domid in _ids(xen)
        rc, out, err = inproc("destroy", "g", handle=xen)
        assert (rc, err) == (0, "") and out == "Domain 'g' destroyed\n", out
        assert not _store(xen, domid, uuid) and _ids(xen) == {}
        _until(lambda: not [t for t in threading.enumerate() if t.name == "xenprivcmd-monitor-g"])  # it ended
