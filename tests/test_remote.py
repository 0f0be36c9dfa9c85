"""xen+ssh:// and sim+ssh:// through a real OpenSSH server on 127.0.0.1 (tests/sshd.py).

The remote interpreter is Debian's ``/usr/bin/python3 -S``: no site-packages,
so no xenprivcmd and no construct; the package ships itself.  Errors come
from the real ssh client and server (a wrong key, a changed host key, a
closed port, a missing interpreter, a killed or stopped helper).
"""

from __future__ import annotations

import errno
import os
import re
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from typing import Any, Dict, Iterator, Optional

import pytest

import xenprivcmd
import xenprivcmd.types
from xenprivcmd import errors
from xenprivcmd.remote import _boot, _codec, _link

from . import scenarios
from .sshd import ROOT, Sshd, free_port, keygen

HELPER = f"env PYTHONPATH={ROOT} /usr/bin/python3 -S -m xenprivcmd.remote"


@pytest.fixture(scope="module")
def sshd() -> Iterator[Sshd]:
    s = Sshd(forced={"readonly": f"{HELPER} --read-only", "helper": HELPER}).start()
    yield s
    s.stop()


@pytest.fixture
def remote(sshd: Sshd) -> Iterator[Any]:
    h = xenprivcmd.open(sshd.uri())
    yield h
    h.close()


def xpsh(uri: str, *args: str, timeout: float = 120) -> "subprocess.CompletedProcess[str]":
    env = {k: v for k, v in os.environ.items() if not k.startswith("XPSH_")}
    env["PYTHONPATH"] = ROOT
    return subprocess.run([sys.executable, "-m", "xenprivcmd", "-c", uri, *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=ROOT)


def one_error_line(p: "subprocess.CompletedProcess[str]") -> str:
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in p.stderr, p.stderr
    return lines[0]


# -- the remote has only python3 ----------------------------------------------------------------

def test_remote_interpreter_has_no_xenprivcmd(sshd: Sshd):
    """What the tests' URIs run on the remote (through this sshd) cannot import either package."""
    for mod in ("xenprivcmd", "construct"):
        p = subprocess.run(["ssh", "-T", "-i", sshd.client_key, "-o", f"UserKnownHostsFile={sshd.known_hosts}",
                            "-o", "BatchMode=yes", "-p", str(sshd.port), "root@127.0.0.1",
                            f"cd / && /usr/bin/python3 -S -c 'import {mod}'"], capture_output=True, text=True)
        assert p.returncode == 1 and "ModuleNotFoundError" in p.stderr, (mod, p.stderr)


def test_ships_once_then_uses_the_cache(sshd: Sshd):
    cache = os.path.join(sshd.dir, "cache-ship")
    uri = sshd.uri(python=f"env XDG_CACHE_HOME={cache} /usr/bin/python3 -S")
    data, digest = _boot.bundle()
    with xenprivcmd.open(uri) as h:
        hello = h.transport.hello
        assert hello["source"] == "shipped" and hello["executable"] == "/usr/bin/python3"
        assert hello["path"] == os.path.join(cache, "xenprivcmd-remote", f"{xenprivcmd.__version__}-{digest[:16]}")
        assert h.transport.link.bytes_sent > len(data)  # the bundle went over the link
        assert h.domains()[0].domid == 0
    # the cached copy is byte for byte the bundle
    with open(os.path.join(hello["path"], "xenprivcmd", "handle.py"), "rb") as f, \
            open(os.path.join(ROOT, "xenprivcmd", "handle.py"), "rb") as g:
        assert f.read() == g.read()
    with xenprivcmd.open(uri) as h:
        assert h.transport.hello["source"] == "cached"
        assert h.transport.link.bytes_sent < len(data) // 4  # nothing shipped
        assert h.version().major >= 3


def test_bundle_hash_follows_the_content(tmp_path):
    data, digest = _boot.bundle()
    import hashlib
    import io
    import zipfile

    assert hashlib.sha256(data).hexdigest() == digest
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert "xenprivcmd/remote/_server.py" in names and "construct/__init__.py" in names
    assert not any("__pycache__" in n for n in names)
    # one byte more in one file gives another bundle, so another cache entry
    copy = tmp_path / "xenprivcmd"
    import shutil

    shutil.copytree(os.path.join(ROOT, "xenprivcmd"), copy, ignore=shutil.ignore_patterns("__pycache__"))
    a = _boot.build_bundle([(str(copy), "xenprivcmd")])[1]
    with open(copy / "types.py", "a", encoding="utf-8") as f:
        f.write("\n")
    b = _boot.build_bundle([(str(copy), "xenprivcmd")])[1]
    assert a != b and len(a) == len(b) == 64


def test_installed_same_version_is_used(sshd: Sshd):
    uri = sshd.uri(python=f"env PYTHONPATH={ROOT} XDG_CACHE_HOME={sshd.dir}/cache-installed /usr/bin/python3 -S")
    with xenprivcmd.open(uri) as h:
        assert h.transport.hello["source"] == "installed"
        assert h.transport.hello["path"] == ROOT
        assert not os.path.exists(f"{sshd.dir}/cache-installed")


# -- the same results as locally ------------------------------------------------------------------

def _outcomes(results: Dict[str, Optional[BaseException]]) -> Dict[str, Optional[str]]:
    return {name: None if exc is None else type(exc).__name__ for name, exc in results.items()}


@pytest.mark.parametrize("query", ["", "?xen=4.17", "?xen=4.4&sched=credit", "?xen=3.0.2"])
def test_scenarios_same_as_local(sshd: Sshd, query: str):
    local = xenprivcmd.open("sim:///default" + query)
    try:
        expected = _outcomes(scenarios.run_all(local))
    finally:
        local.close()
    with xenprivcmd.open(sshd.uri(path="/default" + query)) as h:
        assert h.transport.kind == "ssh"
        got = _outcomes(scenarios.run_all(h))
        assert h.round_trips > len(got)
    assert got == expected
    assert set(got) == set(scenarios.SCENARIOS) | set(scenarios.GUEST_SCENARIOS)


def test_shell_tests_same_as_local(sshd: Sshd, tmp_path):
    """tests/test_shell.py again, every xpsh and the ``sim`` fixture on sim+ssh://."""
    report = tmp_path / "shell.xml"
    env = {k: v for k, v in os.environ.items() if not k.startswith("XPSH_")}
    env.update(PYTHONPATH=ROOT, XENPRIVCMD_TEST_URI=sshd.uri())
    collected = subprocess.run([sys.executable, "-m", "pytest", "-q", "--collect-only", "-p", "no:cacheprovider",
                                "tests/test_shell.py"], capture_output=True, text=True, cwd=ROOT, env=env)
    ids = [ln for ln in collected.stdout.splitlines() if ln.startswith("tests/test_shell.py::")]
    assert len(ids) > 80, collected.stdout[-2000:]
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}",
                        "tests/test_shell.py"],
                       capture_output=True, text=True, cwd=ROOT, env=env, timeout=1500)
    cases = ET.parse(report).getroot().iter("testcase")
    outcome = {c.get("name"): [x.tag for x in c if x.tag in ("failure", "error", "skipped")] for c in cases}
    bad = {k: v for k, v in outcome.items() if v}
    assert not bad and p.returncode == 0, (bad, p.stdout[-4000:])
    assert len(outcome) == len(ids)


#: Commands that go through the remote's xenstore (the balloon target, control/shutdown,
#: start_time) and the hypervisor, read back afterwards.
XENSTORE_SESSION = ("uptime; setmem web1 150M; dominfo web1; setmaxmem build1 600M; shutdown --wait db1;"
                    " reboot web1; list; cpupool-list")


def _no_clock(text: str) -> str:
    """Uptimes move between two runs: keep the rows, drop the times."""
    return re.sub(r"\d+:\d\d:\d\d", "H:MM:SS", text)


def test_xenstore_commands_same_as_local(sshd: Sshd):
    local = xpsh("sim:///default", XENSTORE_SESSION)
    assert local.returncode == 0, local.stderr
    assert "Max memory:     154624 KiB" in local.stdout and "Domain 'db1' is shut off (poweroff)" in local.stdout
    p = xpsh(sshd.uri(), XENSTORE_SESSION)
    assert p.returncode == 0, p.stderr
    assert _no_clock(p.stdout) == _no_clock(local.stdout)
    assert p.stderr == ""


def test_dry_run_holds_back_the_remotes_xenstore_writes(sshd: Sshd):
    cmds = "setmem web1 150M; reboot web1; shutdown db1; dominfo web1; domstate db1"
    local = xpsh("sim:///default", "-N", cmds)
    assert local.returncode == 0, local.stderr
    p = xpsh(sshd.uri(), "-N", cmds)
    assert p.returncode == 0, p.stderr
    assert p.stdout == local.stdout
    for held in ("domctl max_mem(domid=1) max_memkb=154624", "xenstore write /local/domain/1/memory/target = '153600'",
                 "xenstore write /local/domain/1/control/shutdown = 'reboot'",
                 "xenstore write /local/domain/2/control/shutdown = 'poweroff'"):
        assert held in p.stdout, p.stdout
    assert "Max memory:     2097152 KiB" in p.stdout and p.stdout.endswith("idle\n")  # nothing changed on the remote


def test_shell_timing_and_dry_run_come_from_the_remote(sshd: Sshd):
    uri = sshd.uri()
    p = xpsh(uri, "-t", "dominfo web1")
    assert p.returncode == 0 and "Name:           web1" in p.stdout, p.stderr
    assert "domctl getdomaininfo(domid=0)" in p.stderr and "sysctl getdomaininfolist" in p.stderr
    p = xpsh(uri, "-N", "suspend web1; destroy db1; domstate web1; domstate db1")
    assert p.returncode == 0, p.stderr
    assert "domctl pausedomain(domid=1)" in p.stdout and "domctl destroydomain(domid=2)" in p.stdout
    assert "running\nidle\n" in p.stdout  # nothing was changed on the remote
    p = xpsh(uri, "suspend web1; domstate web1; capabilities")
    assert p.returncode == 0 and "paused\n" in p.stdout and "Hypercall buffers:   remote" in p.stdout, p.stderr


def test_round_trips_per_op(remote: Any):
    remote.domain_info(0)  # detection done
    for op in (lambda: remote.domains(names=True), lambda: remote.lookup("db1"), lambda: remote.pause(1),
               lambda: remote.unpause(1), lambda: remote.vcpu_affinity(1, 0), lambda: remote.cpu_topology(),
               lambda: remote.set_vcpu_affinity(1, 0, hard=iter([0, 1]))):
        before = remote.round_trips
        op()
        assert remote.round_trips == before + 1
    assert remote.transport.stats()["round_trips"] == remote.round_trips


def test_a_forked_child_never_uses_the_parents_connection(remote: Any):
    pid = os.fork()
    if pid == 0:  # the child: the handle is closed for it, nothing is written to the shared pipe
        try:
            remote.domains()
            os._exit(1)
        except errors.ConnectionLost:
            os._exit(0)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    assert remote.domains()[0].domid == 0  # the parent's connection is intact


def test_results_are_the_local_types(remote: Any):
    local = xenprivcmd.open("sim:///default")
    try:
        def timeless(infos: Any) -> Any:  # cpu time runs with each host's own hypercall count
            return [i._replace(cpu_time=0) for i in infos]

        assert timeless(remote.domains(names=True)) == timeless(local.domains(names=True))
        assert remote.domains()[1].name == "web1" == remote.domain_info(1).name
        assert remote.domains(names=False)[1].name is None and remote.domain_info(1, name=False).name is None
        for name in ("physinfo", "sched_id", "numa_info", "pcpu_info", "cpu_topology", "domain_names", "version"):
            got, want = getattr(remote, name)(), getattr(local, name)()
            assert type(got) is type(want), name
            if name != "pcpu_info":  # idle time runs too
                assert got == want, name
        assert remote.vcpu_affinity(1, 0) == local.vcpu_affinity(1, 0)
        assert isinstance(remote.vcpu_affinity(1, 0).hard, frozenset)
        assert remote.lookup(str(local.domain_info(2).uuid)).name == "db1"
        assert remote.abi == local.abi and remote.detection["method"] == local.detection["method"]
        assert remote.arch == local.arch
    finally:
        local.close()


def test_io_counters_are_the_remote_dom0s(sshd: Sshd):
    """interface_stats / block_stats run on the remote (its sysfs and xenstore), in one round trip each,
    and a read-only helper allows them."""
    local = xenprivcmd.open("sim:///default")
    try:
        for uri in (sshd.uri(), sshd.uri(key=sshd.forced_keys["readonly"])):
            with xenprivcmd.open(uri) as h:
                h.domain_info(0)
                before = h.round_trips
                nets, disks = h.interface_stats(), h.block_stats("db1")
                assert h.round_trips == before + 2
                assert [type(i) for i in nets] == [type(i) for i in local.interface_stats()]
                assert [(i.domid, i.name, i.mac) for i in nets] == [(i.domid, i.name, i.mac)
                                                                    for i in local.interface_stats()]
                assert [(b.name, b.devid) for b in disks] == [("xvda", 51712), ("xvdb", 51728)]
                with pytest.raises(errors.NoSuchDomain):
                    h.block_stats(42)
    finally:
        local.close()


def test_remote_hypercall_errors_keep_their_type(sshd: Sshd):
    with xenprivcmd.open(sshd.uri(path="/default?privileged=0")) as h:
        with pytest.raises(errors.HypervisorPermissionError) as info:
            h.pause(1)
        assert info.value.errno == errno.EPERM and info.value.hypercall == "domctl"
        assert info.value.subop == "pausedomain" and info.value.domid == 1
    with xenprivcmd.open(sshd.uri()) as h:
        with pytest.raises(errors.NoSuchDomain):
            h.domain_info(77)
        with pytest.raises(ValueError):
            h.set_max_mem(1, -5)
        calls = h.transport.calls
        with pytest.raises(TypeError):
            h.pause(True)
        assert h.transport.calls == calls  # checked on the remote: no hypercall
        with pytest.raises(TypeError):
            h.pause(object())  # not even sent


# -- errors ------------------------------------------------------------------------------------------

def test_wrong_key_is_an_authentication_error(sshd: Sshd):
    wrong = os.path.join(sshd.dir, "wrong_key")
    if not os.path.exists(wrong):
        keygen(wrong)
    with pytest.raises(errors.AuthenticationFailed) as info:
        xenprivcmd.open(sshd.uri(key=wrong))
    assert "Permission denied" in str(info.value) and isinstance(info.value, PermissionError)
    assert "authentication failed" in one_error_line(xpsh(sshd.uri(key=wrong), "list"))


def test_changed_host_key_is_refused(sshd: Sshd, tmp_path):
    fake = tmp_path / "other_host"
    pub = keygen(str(fake), "impostor")
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{sshd.port} {pub}\n")
    with pytest.raises(errors.HostKeyMismatch) as info:
        xenprivcmd.open(sshd.uri(known_hosts=str(known)))
    assert "host key mismatch" in str(info.value)
    # no_verify=1 is libvirt's StrictHostKeyChecking=no: an unknown key is accepted
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    with pytest.raises(errors.HostKeyMismatch):
        xenprivcmd.open(sshd.uri(known_hosts=str(empty)))
    with xenprivcmd.open(sshd.uri(known_hosts=str(empty), extra="&no_verify=1")) as h:
        assert h.xen_version()[0] >= 3
    assert "host key" in one_error_line(xpsh(sshd.uri(known_hosts=str(known)), "list"))


def test_closed_port_is_unreachable(sshd: Sshd):
    uri = sshd.uri().replace(f":{sshd.port}/", f":{free_port()}/")
    with pytest.raises(errors.HostUnreachable) as info:
        xenprivcmd.open(uri)
    assert "Connection refused" in str(info.value) and isinstance(info.value, ConnectionError)
    assert "host unreachable" in one_error_line(xpsh(uri, "list"))


def test_no_python3_on_the_remote(sshd: Sshd):
    uri = sshd.uri(python="/nonexistent/python3")
    with pytest.raises(errors.NoRemotePython) as info:
        xenprivcmd.open(uri)
    assert "/nonexistent/python3" in str(info.value)
    assert "no python3" in one_error_line(xpsh(uri, "list"))


def test_too_old_python3_on_the_remote(sshd: Sshd, monkeypatch):
    """The remote's version check, made to fail by asking for a Python newer than Debian's."""
    monkeypatch.setattr(_boot, "MIN_PYTHON", (3, 99))
    with pytest.raises(errors.NoRemotePython) as info:
        xenprivcmd.open(sshd.uri())
    assert "/usr/bin/python3 is Python 3." in str(info.value) and "needs python3 >= 3.99" in str(info.value)


def test_remote_that_is_not_a_dom0(sshd: Sshd):
    assert not os.path.exists("/dev/xen/privcmd") and not os.path.exists("/proc/xen/privcmd")
    uri = sshd.uri(scheme="xen+ssh", path="/")
    with pytest.raises(errors.RemoteNotDom0) as info:
        xenprivcmd.open(uri)
    assert isinstance(info.value, errors.NotDom0Error) and "127.0.0.1" in str(info.value)
    assert "not a Xen dom0" in one_error_line(xpsh(uri, "list"))


def test_protocol_mismatch(sshd: Sshd, monkeypatch):
    monkeypatch.setattr(_codec, "PROTOCOL", _codec.PROTOCOL + 1)
    with pytest.raises(errors.ProtocolMismatch) as info:
        xenprivcmd.open(sshd.uri(key=sshd.forced_keys["helper"]))
    assert f"speaks protocol {_codec.PROTOCOL - 1}" in str(info.value)


def test_helper_killed_mid_operation_is_a_typed_error(sshd: Sshd):
    h = xenprivcmd.open(sshd.uri(path="/default?domains=max"))
    pid = h.transport.hello["pid"]
    failures: list = []
    started = threading.Event()

    def loop() -> None:
        try:
            for _ in range(100000):
                started.set()
                h.domains()  # ~32752 records a call: most of the time is spent inside one
        except Exception as exc:  # noqa: BLE001
            failures.append((exc, time.monotonic()))

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    assert started.wait(60)
    time.sleep(0.5)
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    t.join(30)
    assert not t.is_alive(), "the operation hangs after the remote was killed"
    exc, when = failures[0]
    assert isinstance(exc, errors.ConnectionLost), repr(exc)
    assert exc.applied is False and "nothing was changed" in str(exc)
    assert when - killed < 10
    assert h.closed
    trips = h.round_trips
    with pytest.raises(errors.ConnectionLost):
        h.domains()
    assert h.round_trips == trips  # a closed handle sends nothing


def test_silent_remote_times_out_and_is_not_retried(sshd: Sshd):
    h = xenprivcmd.open(sshd.uri(extra="&timeout=2"))
    assert h.domain_info(1).paused is False
    pid = h.transport.hello["pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        start = time.monotonic()
        trips = h.round_trips
        with pytest.raises(errors.ConnectionLost) as info:
            h.pause(1)
        elapsed = time.monotonic() - start
        assert 1.9 < elapsed < 10, elapsed
        assert info.value.applied is None and "may or may not have been applied (not retried)" in str(info.value)
        assert h.round_trips == trips + 1 and h.closed
    finally:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
    assert "timeout" in _link.SSH_PARAMS


# -- the forced read-only helper ---------------------------------------------------------------------------

def test_forced_read_only_helper_refuses_pause_and_destroy(sshd: Sshd):
    uri = sshd.uri(key=sshd.forced_keys["readonly"])
    with xenprivcmd.open(uri) as h:
        assert h.transport.hello["source"] == "helper" and h.transport.hello["read_only"] is True
        assert [d.name for d in h.domains(names=True)] == ["Domain-0", "web1", "db1", "build1"]
        h.read_only = False  # make the client send them: the refusal must come from the remote
        for call in (lambda: h.pause(1), lambda: h.destroy(2), lambda: h.set_max_mem(1, 1 << 20),
                     lambda: h.read_console(clear=True), lambda: h.create_domain(),
                     lambda: h.shutdown("web1"), lambda: h.reboot("web1"),
                     lambda: h.set_memory_target("web1", 100 << 10)):
            calls = h.transport.calls
            with pytest.raises(errors.XenprivcmdError) as info:
                call()
            assert "refused: this connection is read-only" in str(info.value)
            assert h.transport.calls == calls  # refused before any hypercall
        assert h.domain_info(1).paused is False and h.domain_info(2).domid == 2
        assert "(XEN)" in h.read_console()
        # what only reads (xenstore included) is served
        assert [i.name for i, _up in h.uptimes()] == ["Domain-0", "web1", "db1", "build1"]
        assert h.cpupools()[0].name == "Pool-0" and isinstance(h.free_cpus(), frozenset)
    for cmd in ("suspend web1", "destroy db1", "setmem web1 100M", "shutdown web1", "reboot web1"):
        assert "read-only" in one_error_line(xpsh(uri, cmd))
    p = xpsh(uri, "list")
    assert p.returncode == 0 and "web1       running" in p.stdout, p.stderr


def test_forced_helper_can_be_limited_to_one_uri(sshd: Sshd, tmp_path):
    s = Sshd(forced={"xenonly": f"{HELPER} --uri xen:///"}).start()
    try:
        with pytest.raises(PermissionError) as info:
            xenprivcmd.open(s.uri(key=s.forced_keys["xenonly"]))
        assert "serves xen:/// only" in str(info.value)
    finally:
        s.stop()


# -- URIs -------------------------------------------------------------------------------------------------

def test_uri_parsing():
    t = _link.parse_uri("xen+ssh://admin@dom0.example:2222/?keyfile=/k&no_verify=1&no_tty=1&known_hosts=/kh"
                        "&python=/opt/py/bin/python3")
    assert (t.user, t.host, t.port, t.remote_uri) == ("admin", "dom0.example", 2222, "xen:///")
    argv = _link.ssh_argv(t)
    assert argv[:2] == ["ssh", "-T"] and ["-p", "2222"] == argv[argv.index("-p"):argv.index("-p") + 2]
    for opt in ("StrictHostKeyChecking=no", "BatchMode=yes", "UserKnownHostsFile=/kh"):
        assert opt in argv
    assert argv[argv.index("-i") + 1] == "/k" and argv[-2] == "dom0.example"
    assert argv[-1].startswith("/opt/py/bin/python3 -c '")
    t = _link.parse_uri("sim+ssh://h/default?xen=4.17&domains=10&no_tty=1")
    assert t.remote_uri == "sim:///default?xen=4.17&domains=10" and t.user is None and t.port is None
    assert "-l" not in _link.ssh_argv(t) and "StrictHostKeyChecking=no" not in _link.ssh_argv(t)
    for bad, words in (("xen+ssh:///", "names no host"), ("xen+ssh://h/other", "has the path /"),
                       ("xen+ssh://h/?bogus=1", "unknown parameter"), ("xen+ssh://h/?socket=/x", "libvirt's"),
                       ("xen+ssh://u:pw@h/", "no password"), ("xen+ssh://h/?no_tty=2", "must be 0 or 1"),
                       ("xen+ssh://h/?timeout=-1", "timeout"), ("xen+ssh://h:99999/", "out of range")):
        with pytest.raises(ValueError, match=words):
            xenprivcmd.open(bad)


def test_codec_round_trips_every_result_type():
    import uuid

    from xenprivcmd import types

    h = xenprivcmd.open("sim:///default")
    try:
        values = [h.version(), h.domains(names=True), h.domain_info(1), h.vcpu_info(1), h.vcpu_affinity(1, 0),
                  h.sched_params(1), h.physinfo(), h.cpu_topology(), h.numa_info(), h.pcpu_info(), h.sched_id(),
                  h.domain_names(), uuid.uuid4(), {1, 2}, frozenset(), b"\x00\xff", None, 1 << 70, -1.5,
                  {"$t": 1}, [(), ["x"]]]
    finally:
        h.close()
    import json

    for v in values:
        back = _codec.decode(json.loads(json.dumps(_codec.encode(v))))
        assert back == v and type(back) is type(v), v
    assert type(_codec.decode(_codec.encode(values[2]))) is types.DomainInfo
    for bad in ({"$nt": "os:stat_result", "v": []}, {"x": 1}, {"$nt": "xenprivcmd.types:nothing", "v": []}):
        with pytest.raises(_codec.FrameError):
            _codec.decode(bad)
    with pytest.raises(TypeError):
        _codec.encode(object())


# -- batches and read-only handles (the lead's Handle API, over the link) -------------------------------

def test_batch_is_one_round_trip_with_the_local_results(remote: Any):
    local = xenprivcmd.open("sim:///default")
    try:
        results = []
        for h in (local, remote):
            before = getattr(h, "round_trips", 0)
            with h.batch() as b:
                calls = [b.pause(1), b.domain_info(2), b.vcpu_affinity(1, 0), b.pause(99), b.set_max_mem(1, 1 << 20),
                         b.vcpu_info(3, 0)]
            if h is remote:
                assert h.round_trips == before + 1
            outcome = [type(c.error).__name__ if c.error else c.result() for c in calls]
            outcome[1] = outcome[1]._replace(cpu_time=0)
            outcome[5] = outcome[5]._replace(cpu_time=0)
            results.append(outcome)
            assert h.domain_info(1).paused and h.domain_info(1).max_pages == (1 << 20) // 4
        assert results[0] == results[1] and results[0][3] == "NoSuchDomain"
        for h in (local, remote):
            got = h.domain_infos([0, 1, 77])
            assert isinstance(got[2], errors.NoSuchDomain) and got[1].domid == 1
        assert [e._replace(cpu_time=0) for e in remote.vcpu_list()] == \
            [e._replace(cpu_time=0) for e in local.vcpu_list()]
        with pytest.raises(ValueError):
            with remote.batch() as b:
                b.set_max_mem(1, -5)
        assert remote.domain_info(1).max_pages == (1 << 20) // 4  # nothing of that batch ran
    finally:
        local.close()


def test_open_read_only_refuses_here_and_there(sshd: Sshd):
    with xenprivcmd.open(sshd.uri(), read_only=True) as h:
        assert h.read_only and h.domains()[0].domid == 0
        trips = h.round_trips
        with pytest.raises(errors.ReadOnlyError):
            h.pause(1)
        assert h.round_trips == trips  # refused here: nothing sent
        h.read_only = False  # the client sends them now: the remote session refuses
        with pytest.raises(errors.ReadOnlyError, match="read-only"):
            h.pause(1)
        with pytest.raises(errors.ReadOnlyError, match="batch unpause"):
            with h.batch() as b:
                b.domain_info(1)
                b.unpause(3)
        assert h.round_trips == trips + 2
        assert h.domain_info(1).paused is False and h.domain_info(3).paused is True


def test_domain_events_stream_from_the_remote(remote: Any, sshd: Sshd):
    """Handle.events runs on the remote (its xenstore watches, its polls) and comes back a batch of
    events per round trip; a read-only session may stream too."""
    with remote.events(domains=["db1"], timeout=30) as stream:
        remote.pause("db1")
        e = stream.next(10.0)
        assert (e.event, e.domid, e.name, e.detail) == ("paused", 2, "db1", None)
        assert isinstance(e, xenprivcmd.types.DomainEvent)
        remote.pause("web1")  # not db1: not reported
        remote.unpause("db1")
        assert stream.next(10.0)[:2] == ("unpaused", 2)
        assert stream.next(0.5) is None
    with pytest.raises(ValueError):
        stream.next(0)
    with remote.events(timeout=1.0) as stream:
        assert list(stream) == []
    for op in (lambda: remote.map_foreign(1, [1]), lambda: remote.map_grants(1, [0]), remote.event_channels,
               lambda: remote.restrict(1), lambda: remote.map_resource(1, "grant_table")):
        with pytest.raises(errors.NotSupported):
            op()
    with xenprivcmd.open(sshd.uri(), read_only=True) as ro, ro.events(timeout=0.5) as stream:
        assert stream.next() is None
    p = xpsh(sshd.uri(), "event", "--timeout", "1", "--json")
    assert p.returncode == 0 and p.stdout == "", p.stderr
