"""Handle.create on real Xen (issue 25): an x86_64 PV or arm64 guest built by our own code boots.

The guest is the one the suite's xl guests boot (``/opt/xenvm/guest/vmlinuz`` and
``initrd.gz``, the same config keys).  Independent facts: xenconsoled's log of the guest's
console (its init prints "xenvm guest up"), ``xl list`` (name, memory, vcpus) against a
guest ``xl create`` made from the same config, ``xenstore-read`` and ``xenstore-ls``,
and after an injected failure, ``xl list`` and xenstore finding nothing left.  With the
on-shutdown monitor (a detached process, found in /proc): ``xl shutdown`` of the booted
guest destroys it; a guest from ``xpsh create`` comes back under a new domid after ``xl
reboot`` (its init prints again), goes after ``xpsh shutdown``, and ``xpsh destroy`` of
another leaves nothing under /local/domain/N or /vm/UUID.

Runs in all five suites: bullseye (Xen 4.14), bookworm (4.17), trixie (4.20), bookworm-arm64
(4.17) and trixie-arm64 (4.20).
"""

from __future__ import annotations

import os
import subprocess
import time
from typing import Iterator, List

import pytest

import xenprivcmd
from xenprivcmd.build.config import DomainConfig
from xenprivcmd.errors import ConfigError, ImageError

from ..terminal import read_until
from .conftest import xl_list

KERNEL, RAMDISK = "/opt/xenvm/guest/vmlinuz", "/opt/xenvm/guest/initrd.gz"
PROVEN = ("bullseye", "bookworm", "trixie", "bookworm-arm64", "trixie-arm64")
#: the suite's guest memory (MiB): 128 on x86_64, 192 on arm64
MEM = int(os.environ.get("XENVM_GUEST_MEM", "128"))
BOOT_SECONDS = 180


def _config(name: str, memory: int = MEM, vcpus: int = 2) -> str:
    return (f'name = "{name}"\nkernel = "{KERNEL}"\nramdisk = "{RAMDISK}"\nmemory = {memory}\n'
            f'vcpus = {vcpus}\non_crash = "preserve"\nextra = "console=hvc0 quiet"\n')


@pytest.fixture(scope="module", autouse=True)
def _proven(xen: xenprivcmd.Handle, suite: str) -> None:
    if suite not in PROVEN:
        pytest.skip(f"Handle.create is proven on {', '.join(PROVEN)} so far, not yet on {suite}")


def _row(name: str):  # type: ignore[no-untyped-def]
    for row in xl_list():
        if row["name"] == name:
            return row
    return None


def _xs(path: str) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    return subprocess.run(["xenstore-read", path], capture_output=True, text=True, timeout=60)


def _wait_console(name: str, after: int = 0) -> str:
    """xenconsoled's log of ``name`` once its init printed "xenvm guest up" (after byte ``after``)."""
    log = f"/var/log/xen/console/guest-{name}.log"
    deadline = time.monotonic() + BOOT_SECONDS
    text = ""
    while time.monotonic() < deadline:
        if os.path.exists(log):
            with open(log, "rb") as f:
                if os.fstat(f.fileno()).st_size >= after:
                    f.seek(after)
                text = f.read().decode(errors="replace")
            if "xenvm guest up" in text:
                return text
        time.sleep(1)
    raise AssertionError(f"{name} did not print 'xenvm guest up' within {BOOT_SECONDS} s; its console:\n"
                         + text[-3000:])


def _destroy(name: str) -> None:
    subprocess.run(["xl", "destroy", name], capture_output=True, timeout=120)


#: what ``xpsh console`` showed of the ``ours`` guest from its first instruction to its init
CONSOLE: List[bytes] = []


def _boot_on_xpsh_console(xen: xenprivcmd.Handle, name: str, domid: int) -> bytes:
    """Attach ``xpsh console`` to the paused guest, unpause it, and read the console until its
    init prints (then Ctrl-] detaches, status 0): what ``xpsh console`` showed.  The guest
    runs only once the console is attached, so what it shows cannot have come before."""
    import pty
    import sys

    _until(f"xenconsoled's pty for {name}", lambda: _xs(f"/local/domain/{domid}/console/tty").stdout.strip(), 60)
    master, slave = pty.openpty()
    p = subprocess.Popen([sys.executable, "-m", "xenprivcmd", "console", name], stdin=slave, stdout=slave,
                         stderr=slave, start_new_session=True)
    os.close(slave)
    try:
        banner = read_until(master, b"Escape character", 120)
        assert f"Connected to domain '{name}'".encode() in banner, banner
        xen.unpause(domid)
        out = read_until(master, b"xenvm guest up", BOOT_SECONDS)
        os.write(master, b"\x1d")
        assert p.wait(120) == 0
        return out
    finally:
        if p.poll() is None:
            p.kill()
        os.close(master)


@pytest.fixture(scope="module")
def ours(xen: xenprivcmd.Handle) -> Iterator[xenprivcmd.DomainInfo]:
    """The guest of most tests, built paused by Handle.create and started under ``xpsh console``."""
    name = "xpsh-create"
    _destroy(name)
    info = xen.create(DomainConfig.from_xl(_config(name), arch=xen.abi.arch), paused=True)
    vm = _xs(f"/local/domain/{info.domid}/vm").stdout.strip()
    try:
        assert info.state == "paused", info
        CONSOLE.append(_boot_on_xpsh_console(xen, name, info.domid))
        yield xen.domain_info(info.domid)
    finally:
        _destroy(name)
        # what xl's destroy leaves of a domain libxl did not make (it keeps no /libxl/N for it),
        # so that the later tests see the suite's own domains only
        for path in (f"/local/domain/{info.domid}", vm, f"/libxl/{info.domid}"):
            if path:
                subprocess.run(["xenstore-rm", path], capture_output=True, timeout=60)


def test_our_guest_boots_to_its_init(xen: xenprivcmd.Handle, ours: xenprivcmd.DomainInfo) -> None:
    assert ours.name == "xpsh-create" and ours.state != "paused"
    text = _wait_console("xpsh-create")
    assert "xenvm guest up" in text
    # xpsh console saw it too: attached while the guest was paused, it showed the guest's
    # console up to the init's line (the kernel is quiet)
    assert len(CONSOLE) == 1 and b"xenvm guest up" in CONSOLE[0], CONSOLE


def test_xl_lists_it_as_it_lists_the_same_config_built_by_xl(xen: xenprivcmd.Handle,
                                                            ours: xenprivcmd.DomainInfo, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _wait_console("xpsh-create")
    cfg = tmp_path / "xl.cfg"
    cfg.write_text(_config("xl-create"))
    _destroy("xl-create")
    out = subprocess.run(["xl", "create", str(cfg)], capture_output=True, text=True, timeout=600)
    try:
        assert out.returncode == 0, out.stderr[-3000:]
        _wait_console("xl-create")
        mine, theirs = _row("xpsh-create"), _row("xl-create")
        assert mine is not None and theirs is not None
        assert int(mine["id"]) == ours.domid
        assert mine["mem"] == theirs["mem"] == str(MEM), (mine, theirs)
        assert mine["vcpus"] == theirs["vcpus"] == "2", (mine, theirs)
        # the same xenstore shape where the two builders agree on the value
        d_ours, d_xl = f"/local/domain/{ours.domid}", f"/local/domain/{theirs['id']}"
        for leaf in ("memory/target", "memory/static-max", "console/type", "console/limit", "cpu/1/availability"):
            a, b = _xs(f"{d_ours}/{leaf}"), _xs(f"{d_xl}/{leaf}")
            assert a.returncode == b.returncode == 0 and a.stdout == b.stdout, (leaf, a, b)
        # libxl's record of the type, which `xl shutdown` reads for a guest Xen flags as HVM (Arm's)
        a, b = _xs(f"/libxl/{ours.domid}/type"), _xs(f"/libxl/{theirs['id']}/type")
        assert a.returncode == b.returncode == 0 and a.stdout == b.stdout, (a, b)
        if xen.abi.arch == "aarch64":
            # the P2M pool libxl sized for its guest, its magic pages and ring frames (guest frames on Arm)
            xl_id = int(theirs["id"])
            assert xen.paging_mempool_size(ours.domid) == xen.paging_mempool_size(xl_id) > 0
            for param in ("console_pfn", "store_pfn", "monitor_ring_pfn"):
                assert xen.hvm_param(ours.domid, param) == xen.hvm_param(xl_id, param), param
            for leaf in ("console/ring-ref", "store/ring-ref"):
                a, b = _xs(f"{d_ours}/{leaf}"), _xs(f"{d_xl}/{leaf}")
                assert a.returncode == b.returncode == 0 and a.stdout == b.stdout, (leaf, a, b)
        # xenconsoled connected to our console as to xl's: it wrote the pty
        assert _xs(f"{d_ours}/console/tty").stdout.strip().startswith("/dev/pts/")
    finally:
        _destroy("xl-create")


def test_the_domain_is_introduced_to_xenstored(xen: xenprivcmd.Handle, ours: xenprivcmd.DomainInfo) -> None:
    xs = xen.xenstore()
    try:
        assert xs.is_domain_introduced(ours.domid)
        assert xs.read(f"/local/domain/{ours.domid}/name") == b"xpsh-create"
    finally:
        xs.close()


def _console_size(name: str) -> int:
    try:
        return os.path.getsize(f"/var/log/xen/console/guest-{name}.log")
    except OSError:
        return 0


def _monitors(domid: int) -> List[int]:
    """The pids of the xenprivcmd monitors watching ``domid`` (from /proc/PID/cmdline)."""
    pids = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if b"xenprivcmd.build.monitor" in argv and argv[argv.index(b"--domid") + 1] == str(domid).encode():
            pids.append(int(pid))
    return pids


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _until(what: str, pred, seconds: float = BOOT_SECONDS):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.5)
    raise AssertionError(f"not within {seconds} s: {what}; xl list: {xl_list()}")


def _xpsh(*args: str) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    import sys

    return subprocess.run([sys.executable, "-m", "xenprivcmd", *args], capture_output=True, text=True, timeout=600)


def _gone_without_trace(name: str, domid: int, uuid: str, pids: List[int], before: set) -> None:  # type: ignore[type-arg]
    """``name`` (domain ``domid``) destroyed: no such domain, nothing of it in xenstore, its
    monitor ended."""
    _until(f"{name} ({domid}) gone", lambda: _row(name) is None, 120)
    _until(f"/local/domain/{domid} and /vm/{uuid} removed",
           lambda: _xs(f"/local/domain/{domid}/name").returncode != 0 and _xs(f"/vm/{uuid}/name").returncode != 0, 60)
    _until(f"the monitors {pids} ended", lambda: not any(_alive(p) for p in pids), 60)
    _nothing_left(name, before)


def test_xl_shutdown_of_our_guest_is_acted_on_by_its_monitor(xen: xenprivcmd.Handle,
                                                             ours: xenprivcmd.DomainInfo) -> None:
    """The booted guest gets a detached monitor (``build.monitor.spawn``); ``xl shutdown``
    makes it power off and the monitor destroys it (on_poweroff's default) with nothing left
    in xenstore.  The last test of ``ours``."""
    from xenprivcmd.build.monitor import spawn

    _wait_console("xpsh-create")
    before = {int(r["id"]) for r in xl_list()} - {ours.domid}
    uuid = str(ours.uuid)
    pid = spawn(xen, DomainConfig.from_xl(_config("xpsh-create"), arch=xen.abi.arch), ours.domid)
    try:
        assert _monitors(ours.domid) == [pid] and os.getsid(pid) != os.getsid(0)
        subprocess.run(["xl", "shutdown", "xpsh-create"], check=True, capture_output=True, timeout=120)
        _gone_without_trace("xpsh-create", ours.domid, uuid, [pid], before)
    finally:
        if _alive(pid):
            os.kill(pid, 15)


def _nothing_left(name: str, before: set) -> None:  # type: ignore[type-arg]
    assert _row(name) is None, xl_list()
    now = {int(r["id"]) for r in xl_list()}
    assert now <= before, (before, now)
    ls = subprocess.run(["xenstore-list", "/local/domain"], capture_output=True, text=True, timeout=60)
    assert {int(x) for x in ls.stdout.split()} <= before | {0}, ls.stdout


def test_a_failure_half_way_leaves_nothing(xen: xenprivcmd.Handle, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    name = "xpsh-broken"
    before = {int(r["id"]) for r in xl_list()}

    def refuse(*_a, **_k):  # type: ignore[no-untyped-def]
        raise OSError(5, "injected")

    for step in ("set_vcpu_context", "pin_table" if xen.abi.arch == "x86_64" else "cache_flush"):
        monkeypatch.setattr(xen, step, refuse)
        with pytest.raises(OSError, match="injected"):
            xen.create(DomainConfig.from_xl(_config(name), arch=xen.abi.arch))
        monkeypatch.undo()
        _nothing_left(name, before)


def test_bad_configs_are_refused_before_any_domain(xen: xenprivcmd.Handle, tmp_path) -> None:  # type: ignore[no-untyped-def]
    before = {int(r["id"]) for r in xl_list()}
    with pytest.raises(ConfigError, match="memory"):
        xen.create(DomainConfig.from_xl(_config("xpsh-huge", memory=1 << 20), arch=xen.abi.arch))
    notkernel = tmp_path / "notakernel"
    notkernel.write_bytes(b"hello" * 1000)
    with pytest.raises(ImageError):
        xen.create(DomainConfig.from_xl(_config("xpsh-bad").replace(KERNEL, str(notkernel)), arch=xen.abi.arch))
    with pytest.raises(ImageError, match="cannot read"):
        xen.create(DomainConfig.from_xl(_config("xpsh-bad").replace(KERNEL, "/nonexistent"), arch=xen.abi.arch))
    _nothing_left("xpsh-huge", before)
    _nothing_left("xpsh-bad", before)


def test_xpsh_create_and_the_guest_lifecycle(xen: xenprivcmd.Handle, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """One guest through its life with its monitor: ``xpsh create`` (on_poweroff destroy,
    on_reboot restart); ``xl reboot`` builds it again (a new domid, the same name, its init
    runs again); ``xpsh shutdown`` destroys it with nothing left; then ``xpsh create
    --paused`` and ``xpsh destroy``: nothing left either."""
    name = "xpsh-shell"
    _destroy(name)
    cfg = tmp_path / "shell.cfg"
    cfg.write_text(_config(name, vcpus=1) + 'on_poweroff = "destroy"\non_reboot = "restart"\n')
    before = {int(r["id"]) for r in xl_list()}
    seen: List[int] = []
    try:
        mark = _console_size(name)
        out = _xpsh("create", str(cfg))
        assert out.returncode == 0 and out.stderr == "", out
        row = _row(name)
        assert row is not None and out.stdout == f"Domain '{name}' created (id {row['id']})\n", (out.stdout, row)
        assert row["mem"] == str(MEM) and row["vcpus"] == "1", row
        first = int(row["id"])
        uuid = _xs(f"/local/domain/{first}/vm").stdout.strip().split("/")[-1]
        pids = _monitors(first)
        seen += pids
        assert len(pids) == 1 and os.getsid(pids[0]) != os.getsid(0), pids  # detached: a session of its own
        _wait_console(name, mark)
        # xl reboot: on_reboot = "restart"
        mark = _console_size(name)
        subprocess.run(["xl", "reboot", name], check=True, capture_output=True, timeout=120)
        second = _until("a new domid", lambda: (r := _row(name)) is not None and int(r["id"]) != first
                        and int(r["id"]))
        _wait_console(name, mark)  # its init ran again
        assert _row(name)["mem"] == str(MEM)  # type: ignore[index]
        assert _xs(f"/local/domain/{first}/name").returncode != 0
        assert _xs(f"/local/domain/{second}/vm").stdout.strip() == f"/vm/{uuid}"  # the same uuid, as xl
        assert [p for p in pids if _alive(p)] == pids  # the same monitor follows it
        # xpsh shutdown: on_poweroff = "destroy"
        out = _xpsh("shutdown", name)
        assert out.returncode == 0 and out.stderr == "", out
        _gone_without_trace(name, second, uuid, pids, before)
        with open(f"/var/log/xen/xpsh-{name}.log") as f:
            log = f.read()
        assert f"domain {first} ({name}) shut down (reboot): restart" in log, log
        assert f"domain {second} ({name}) shut down (poweroff): destroy" in log, log
        # xpsh destroy of a paused one (no boot needed)
        out = _xpsh("create", "--paused", str(cfg))
        assert out.returncode == 0, out
        third = int(_row(name)["id"])  # type: ignore[index]
        pids = _monitors(third)
        seen += pids
        uuid = _xs(f"/local/domain/{third}/vm").stdout.strip().split("/")[-1]
        assert len(pids) == 1 and _xs(f"/vm/{uuid}/name").stdout.strip() == name
        out = _xpsh("destroy", name)
        assert out.returncode == 0 and out.stdout == f"Domain '{name}' destroyed\n", out
        assert _xs(f"/local/domain/{third}/name").returncode != 0 and _xs(f"/vm/{uuid}/name").returncode != 0
        _gone_without_trace(name, third, uuid, pids, before)
    finally:
        domid = subprocess.run(["xl", "domid", name], capture_output=True, text=True, timeout=60).stdout.strip()
        _destroy(name)
        if domid:
            subprocess.run(["xenstore-rm", f"/local/domain/{domid}"], capture_output=True, timeout=60)
        for pid in seen:
            if _alive(pid):
                os.kill(pid, 15)


@pytest.mark.parametrize("what", ["zero memory", "more memory than the host", "missing kernel", "not a kernel",
                                  "unknown key", "syntax error"])
def test_xpsh_create_refuses_a_bad_config(what: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    before = {int(r["id"]) for r in xl_list()}
    notkernel = tmp_path / "notakernel"
    notkernel.write_bytes(b"hello" * 1000)
    text, says = {
        "zero memory": (_config("xpsh-bad", memory=0), "memory: 0 is out of range"),
        "more memory than the host": (_config("xpsh-bad", memory=1 << 20), "memory"),
        "missing kernel": (_config("xpsh-bad").replace(KERNEL, "/nonexistent/vmlinuz"), "cannot read"),
        "not a kernel": (_config("xpsh-bad").replace(KERNEL, str(notkernel)), "not a kernel"),
        "unknown key": (_config("xpsh-bad") + 'no_such_key = 1\n', "no_such_key"),
        "syntax error": (_config("xpsh-bad") + 'memory = = 5\n', "syntax error"),
    }[what]
    bad = tmp_path / "bad.cfg"
    bad.write_text(text)
    out = _xpsh("create", str(bad))
    assert out.returncode == 1 and out.stderr.startswith("error: ") and out.stderr.count("\n") == 1, out
    assert says in out.stderr, out.stderr
    _nothing_left("xpsh-bad", before)
