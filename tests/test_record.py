"""Record/replay of hypercall traffic (xenprivcmd.record): no Xen needed.

The thing recorded is an in-process hypervisor (FakeDom0 below: fakexen's
xen_version plus a few read-only domctl/sysctl ops answered with the 4.17
layouts, or the simulator when it exists); the replay then serves the file
back through the production encode -> hypercall -> decode path.
"""

from __future__ import annotations

import ctypes
import errno
import glob
import importlib.util
import json
import os
import re
import subprocess
import sys
from typing import Tuple

import pytest

import xenprivcmd
from xenprivcmd import abi, record
from xenprivcmd.handle import Handle

from .fakexen import FakeXen

HERE = os.path.dirname(os.path.abspath(__file__))
RECORDINGS = os.path.join(HERE, "recordings")
HAVE_SIM = importlib.util.find_spec("xenprivcmd.sim") is not None and os.path.exists(
    os.path.join(os.path.dirname(xenprivcmd.__file__), "sim", "__init__.py"))


class FakeDom0(FakeXen):
    """fakexen plus getdomaininfo(list), vcpu info/affinity, scheduler,
    physinfo, getcpuinfo and readconsole of a 2-cpu host with dom0 only
    (4.17 layouts); everything else is ENOSYS."""

    kind = "fakedom0"

    def __init__(self) -> None:
        super().__init__()
        self.v = abi.variant("4.17.7")
        self.c = self.v.constants
        self.console = b"(XEN) Xen version 4.17.7\n(XEN) recorded by the tests\n"

    def _info(self, info) -> None:
        info.domain = 0
        info.flags = 1 << 5  # running
        info.tot_pages, info.max_pages = 262144, 262144
        info.cpu_time = 123456789
        info.nr_online_vcpus, info.max_vcpu_id = 1, 0
        ctypes.memmove(ctypes.addressof(info.handle), bytes(range(16)), 16)

    def handle(self, op: int, args: Tuple[int, int, int, int, int]) -> int:
        if op == 36:
            req = self.v.structs["xen_domctl"].from_address(args[0])
            cmd, u = req.cmd, req.u
            if req.interface_version != self.v.domctl_interface_version:
                raise OSError(errno.EACCES, "interface version")
            if req.domain != 0:
                raise OSError(errno.ESRCH, "no such domain")
            if cmd == self.c["XEN_DOMCTL_getdomaininfo"]:
                self._info(u.getdomaininfo)
            elif cmd == self.c["XEN_DOMCTL_getvcpuinfo"]:
                if u.getvcpuinfo.vcpu != 0:
                    raise OSError(errno.EINVAL, "vcpu")
                u.getvcpuinfo.online, u.getvcpuinfo.running, u.getvcpuinfo.cpu_time = 1, 1, 5555
            elif cmd == self.c["XEN_DOMCTL_getvcpuaffinity"]:
                a = u.vcpuaffinity
                self.write(a.cpumap_hard.bitmap, b"\x03")
                self.write(a.cpumap_soft.bitmap, b"\x02")
            elif cmd == self.c["XEN_DOMCTL_scheduler_op"]:
                u.scheduler_op.u.credit.weight, u.scheduler_op.u.credit.cap = 256, 0
            else:
                raise OSError(errno.ENOSYS, "fakedom0: no such domctl")
            return 0
        if op == 35:
            req = self.v.structs["xen_sysctl"].from_address(args[0])
            cmd, u = req.cmd, req.u
            if req.interface_version != self.v.sysctl_interface_version:
                raise OSError(errno.EACCES, "interface version")
            if cmd == self.c["XEN_SYSCTL_getdomaininfolist"]:
                g = u.getdomaininfolist
                g.num_domains = 0
                if g.first_domain == 0 and g.max_domains > 0:
                    self._info(self.v.structs["xen_domctl_getdomaininfo"].from_address(g.buffer))
                    g.num_domains = 1
            elif cmd == self.c["XEN_SYSCTL_physinfo"]:
                p = u.physinfo
                p.threads_per_core, p.cores_per_socket, p.nr_cpus, p.max_cpu_id = 1, 2, 2, 1
                p.nr_nodes, p.max_node_id, p.cpu_khz, p.capabilities = 1, 0, 2400000, 0b11
                p.total_pages, p.free_pages = 1 << 20, 1 << 19
            elif cmd == self.c["XEN_SYSCTL_sched_id"]:
                u.sched_id.sched_id = 5
            elif cmd == self.c["XEN_SYSCTL_getcpuinfo"]:
                g = u.getcpuinfo
                self.write(g.info, (1000).to_bytes(8, "little") + (2000).to_bytes(8, "little"))
                g.nr_cpus = 2
            elif cmd == self.c["XEN_SYSCTL_readconsole"]:
                rc = u.readconsole
                data = self.console[rc.index :][: rc.count]
                self.write(rc.buffer, data)
                rc.count, rc.index = len(data), rc.index + len(data)
            else:
                raise OSError(errno.ENOSYS, "fakedom0: no such sysctl")
            return 0
        return super().handle(op, args)


def record_scenario(path, inner=None, comment="test"):
    t = record.RecordingTransport(inner or FakeDom0(), str(path), comment=comment, inner_uri="fakedom0", arch="x86_64")
    h = Handle(t, "record:" + str(path))
    try:
        return record.run_scenario(h)
    finally:
        h.close()


def replay(path, **kw):
    return xenprivcmd.open("replay:" + str(path), **kw)


# -- round trip -----------------------------------------------------------------------

def test_scenario_round_trip(tmp_path):
    path = tmp_path / "s.rec"
    live = record_scenario(path)
    by = {s["step"]: s for s in live}
    # The scenario got real answers from the fake, and its typed errors.
    assert by["version"]["result"]["extraversion"] == ".7"
    assert by["abi"]["result"]["release"] == "4.17.7"
    assert [d["domid"] for d in by["domains"]["result"]] == [0]
    assert by["domain_info(0)"]["result"]["tot_pages"] == 262144
    assert by["domain_info(0x7fe0)"]["error"]["type"] == "NoSuchDomain"
    assert by["vcpu_affinity(0, 0)"]["result"] == {"vcpu": 0, "hard": [0, 1], "soft": [1]}
    assert by["sched_params(0)"]["result"]["weight"] == 256
    assert by["cpu_topology"]["error"]["type"] == "NotSupported"
    assert by["pcpu_info"]["result"] == [{"cpu": 0, "idletime": 1000}, {"cpu": 1, "idletime": 2000}]
    assert "recorded by the tests" in by["read_console"]["result"]

    with replay(path) as h:
        assert h.transport.kind == "replay"
        again = record.run_scenario(h)
        assert h.transport.remaining == 0
    assert again == live


def test_recording_transport_delegates_buffers_and_counts(tmp_path):
    inner = FakeDom0()
    inner.buffer_kind = "hypervisor-safe"
    t = record.RecordingTransport(inner, str(tmp_path / "b.rec"))
    assert t.buffer_kind == "hypervisor-safe"
    buf = t.scratch(100)
    assert buf is inner.scratch(100)
    h = Handle(t, "record")
    assert h.buffer_kind == "hypervisor-safe"
    h.xen_version()
    h.version()
    assert t.calls == inner.calls == t.records > 1
    h.close()
    assert inner.closed
    with pytest.raises(xenprivcmd.XenError):
        t.hypercall(17)


def test_record_uri_with_inner_fake_and_header(tmp_path, monkeypatch):
    path = tmp_path / "u.rec"
    # record:///PATH?inner=URI: the inner URI is opened with xenprivcmd.open.
    opened = []

    def fake_open(uri, abi=None):
        opened.append(uri)
        return Handle(FakeDom0(), uri)

    monkeypatch.setattr(xenprivcmd, "open", fake_open)
    h = record.open_record(f"record://{path}?inner=fake:///x&comment=hello%20world", abi=None)
    assert opened == ["fake:///x"] and h.uri.startswith("record:")
    assert h.xen_version() == (4, 17)
    h.version()
    h.close()
    text = path.read_text()
    header = record.load(str(path)).header
    assert header["library"] == f"xenprivcmd {xenprivcmd.__version__}"
    assert header["xen"] == "4.17.7"  # learnt from the traffic
    assert header["comment"] == "hello world"
    assert header["inner"].startswith("fake:///x")
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", header["date"])
    assert text.rstrip().endswith(f"# end: {record.load(str(path)).records[-1].number} records")


@pytest.mark.skipif(os.path.exists("/dev/xen/privcmd") or os.path.exists("/proc/xen/privcmd"), reason="this machine is a dom0")
def test_record_uri_default_inner_is_the_local_device(tmp_path):
    path = tmp_path / "none.rec"
    with pytest.raises(xenprivcmd.NotDom0Error):
        xenprivcmd.open(f"record:{path}")
    assert not path.exists()
    with pytest.raises(FileNotFoundError):
        xenprivcmd.open(f"replay:{path}")


def test_uri_parsing():
    assert record._split_uri("record:/a/b.rec", "record") == ("/a/b.rec", {})
    assert record._split_uri("record:rel.rec", "record") == ("rel.rec", {})
    assert record._split_uri("record:///a/b.rec?inner=sim:///default", "record") == ("/a/b.rec", {"inner": "sim:///default"})
    assert record._split_uri("replay:///a.rec?strict=0", "replay") == ("/a.rec", {"strict": "0"})
    with pytest.raises(ValueError, match="local file"):
        record._split_uri("replay://host/a.rec", "replay")
    with pytest.raises(ValueError, match="without a file"):
        record._split_uri("replay:", "replay")
    with pytest.raises(ValueError, match="unknown parameter"):
        xenprivcmd.open("replay:///nonexistent.rec?bogus=1")


# -- the file is for humans -------------------------------------------------------------

def test_file_is_annotated_hex(tmp_path):
    path = tmp_path / "h.rec"
    record_scenario(path, comment="readable")
    text = path.read_text()
    lines = text.splitlines()
    assert lines[0] == "# xenprivcmd hypercall recording, format 1"
    assert "# comment: readable" in lines
    # ops and sub-ops by name and number
    assert re.search(r"^call \d+: xen_version\(17\) XENVER_version\(0\)$", text, re.M)
    assert re.search(r"^call \d+: domctl\(36\) getdomaininfo\(5\)$", text, re.M)
    assert re.search(r"^call \d+: sysctl\(35\) getdomaininfolist\(6\)$", text, re.M)
    assert re.search(r"^call \d+: sysctl\(35\) readconsole\(1\)$", text, re.M)
    # buffer-relative args, rows of offset / hex / ascii
    assert re.search(r"^args: buf\+0x0 0x0 0x0 0x0 0x0$", text, re.M)
    assert re.search(r"^args: 0x2 buf\+0x0 0x0 0x0 0x0$", text, re.M)  # XENVER_compile_info
    assert re.search(r"^  0000  05 00 00 00 15 00 00 00  00 00 00 00 00 00 00 00  \|\.{16}\|$", text, re.M)
    assert re.search(r"^  [0-9a-f]{4}  .*\|gcc 12\.+\|$", text, re.M)
    assert "|(XEN) Xen versio|" in text  # console text in the payload at 4096+
    assert re.search(r"^  1000  ", text, re.M)
    # guest handles are shown relative to the buffer; errors by name
    assert re.search(r"^pointers: request 0x10->buf\+0x1000; reply 0x10->buf\+0x1000$", text, re.M)
    assert re.search(r"^error: ESRCH \(3\)$", text, re.M)
    assert re.search(r"^error: ENOSYS \(38\)$", text, re.M)
    assert re.search(r"^result: 0 \(0x0\)$", text, re.M)
    assert lines[-1].startswith("# end: ")


# -- replay fails loudly -------------------------------------------------------------------

def test_different_domid_is_a_mismatch(tmp_path):
    path = tmp_path / "d.rec"
    t = record.RecordingTransport(FakeDom0(), str(path))
    with Handle(t, "record") as h:
        h.domain_info(0)
    with replay(path) as h:
        with pytest.raises(record.ReplayMismatch) as exc:
            h.domain_info(1)
        e = exc.value
        assert isinstance(e, xenprivcmd.XenprivcmdError)
        assert e.field == "request @0x8" and e.record is not None
        msg = str(e)
        assert f"record {e.record}" in msg and "domctl(36) getdomaininfo(5)" in msg
        assert "(domain)" in msg and "recorded  0000  05 00 00 00 15 00 00 00  00 00" in msg
        assert "replayed  0000  05 00 00 00 15 00 00 00  01 00" in msg
        # The replay stays failed: nothing the library catches can hide it.
        with pytest.raises(record.ReplayMismatch, match="already failed"):
            h.xen_version()
    # no "unused records" error on top of the mismatch


def test_different_op_and_args_are_mismatches(tmp_path):
    path = tmp_path / "o.rec"
    with Handle(record.RecordingTransport(FakeXen(), str(path)), "record") as h:
        h.xen_version()
    with replay(path) as h, pytest.raises(record.ReplayMismatch) as exc:
        h.transport.hypercall(36, 0)
    assert exc.value.field == "op" and "recorded xen_version(17) XENVER_version(0)" in str(exc.value)
    with replay(path) as h, pytest.raises(record.ReplayMismatch) as exc:
        h.transport.hypercall(17, 0, 5)
    assert exc.value.field == "args[1]" and "recorded 0x0, replayed 0x5" in str(exc.value)


def test_exhausted_and_unused_records(tmp_path):
    path = tmp_path / "x.rec"
    with Handle(record.RecordingTransport(FakeXen(), str(path)), "record") as h:
        h.xen_version()
        h.xen_version()
    h = replay(path)
    assert h.xen_version() == (4, 17)
    with pytest.raises(record.ReplayMismatch, match="records unused") as exc:
        h.close()
    assert exc.value.field == "unused records" and exc.value.record == 2
    assert h.closed
    with replay(f"///{path}?strict=0") as h:  # replay:///PATH?strict=0
        assert h.xen_version() == (4, 17)
    with replay(path) as h:
        h.xen_version()
        h.xen_version()
        with pytest.raises(record.ReplayMismatch, match="beyond its end") as exc:
            h.xen_version()
        assert exc.value.field == "end of recording"


def test_errno_replay_typed_errors(tmp_path):
    path = tmp_path / "e.rec"
    inner = FakeDom0()
    inner.fail[0] = errno.EPERM
    live = []
    with Handle(record.RecordingTransport(inner, str(path)), "record", abi="4.17.7") as h:
        for call in (h.xen_version, lambda: h.domain_info(0x7FE0)):
            with pytest.raises(xenprivcmd.HypercallError) as exc:
                call()
            live.append(exc.value)
    assert [type(e) for e in live] == [xenprivcmd.HypervisorPermissionError, xenprivcmd.NoSuchDomain]
    assert "error: EPERM (1)" in path.read_text()
    with replay(path, abi="4.17.7") as h:
        for call, want in zip((h.xen_version, lambda: h.domain_info(0x7FE0)), live):
            with pytest.raises(type(want)) as exc:
                call()
            assert (exc.value.errno, str(exc.value)) == (want.errno, str(want))


def test_replay_restores_guest_handles_in_the_reply(tmp_path):
    # getdomaininfolist's reply carries the buffer pointer back: the replay must
    # hand back the caller's own address, not the recorded one.
    path = tmp_path / "p.rec"
    with Handle(record.RecordingTransport(FakeDom0(), str(path)), "record", abi="4.17.7") as h:
        live = h.domains()
    rec = record.load(str(path))
    r = next(r for r in rec.records if "getdomaininfolist" in r.label)
    assert record._pointers(r.reply, r.base, r.size) == {0x10: 0x1000}
    with replay(path, abi="4.17.7") as h:
        assert h.domains() == live
        buf = h.transport.scratch()
        assert int.from_bytes(bytes(buf.view[0x10:0x18]), "little") == buf.address + 0x1000


# -- malformed files ---------------------------------------------------------------------------

def _recorded(tmp_path):
    path = tmp_path / "t.rec"
    record_scenario(path)
    return path, path.read_text()


def test_truncated_file_is_refused(tmp_path):
    path, text = _recorded(tmp_path)
    cut = tmp_path / "cut.rec"
    # cut in the middle of a hex row, of a record, and at a record boundary
    row = re.search(r"^  1000  .*$", text, re.M)
    assert row is not None
    for n in (row.start() + 20, text.index("\nresult:", row.start()), text.rindex("\ncall ")):
        cut.write_text(text[:n])
        with pytest.raises(record.RecordingFormatError) as exc:
            replay(cut)
        assert isinstance(exc.value, xenprivcmd.XenprivcmdError)
        assert "truncated" in str(exc.value) or "malformed" in str(exc.value)
    # a wrong trailer count
    cut.write_text(re.sub(r"# end: \d+ records", "# end: 3 records", text))
    with pytest.raises(record.RecordingFormatError, match="trailer says 3 records"):
        replay(cut)
    cut.write_text("hello\n")
    with pytest.raises(record.RecordingFormatError, match="not a xenprivcmd recording"):
        replay(cut)


def test_hand_edited_reply_is_served(tmp_path):
    # The reply rows are the truth the replay serves: edit tot_pages in the file.
    path = tmp_path / "ed.rec"
    with Handle(record.RecordingTransport(FakeDom0(), str(path)), "record", abi="4.17.7") as h:
        assert h.domain_info(0).tot_pages == 262144
    text = path.read_text()
    # getdomaininfo at u (offset 16); tot_pages at +8 -> row 0x0010, bytes 8..15 of it
    new = re.sub(r"^(  0010  00 00 00 00 20 00 00 00)  00 00 04 00", r"\1  00 00 05 00", text, flags=re.M)
    assert new != text
    path.write_text(new)
    with replay(path, abi="4.17.7") as h:
        assert h.domain_info(0).tot_pages == 0x50000


# -- CLI and recorded fixtures ------------------------------------------------------------------

def test_cli_make_and_check_with_sim(tmp_path):
    assert HAVE_SIM, "xenprivcmd.sim is part of the package"
    out = tmp_path / "sim.rec"
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(xenprivcmd.__file__))}
    r = subprocess.run([sys.executable, "-m", "xenprivcmd.record", "make", str(out), "--inner", "sim:///default",
                        "--comment", "cli test"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    side = json.loads((tmp_path / "sim.json").read_text())
    assert side["comment"] == "cli test" and [s["step"] for s in side["steps"]][:2] == ["version", "abi"]
    r = subprocess.run([sys.executable, "-m", "xenprivcmd.record", "check", str(out)], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stdout + r.stderr


def test_make_and_check_functions(tmp_path, monkeypatch):
    # make() opens record:///OUT?inner=URI; point the inner URI at FakeDom0.
    real_open = xenprivcmd.open

    def fake_open(uri=None, abi=None):
        if uri == "fake:///dom0":
            return Handle(FakeDom0(), uri)
        return real_open(uri, abi=abi)

    monkeypatch.setattr(xenprivcmd, "open", fake_open)
    out = tmp_path / "m.rec"
    side = record.make(str(out), inner="fake:///dom0", comment="make()")
    assert side["xen"] == "4.17.7" and side["records"] > 10 and side["comment"] == "make()"
    assert record.sidecar_path(str(out)) == str(tmp_path / "m.json")
    assert record.check(str(out)) == []
    # a sidecar that disagrees with the replayed decoding is reported
    data = json.loads((tmp_path / "m.json").read_text())
    data["steps"][3]["result"]["tot_pages"] = 1
    (tmp_path / "m.json").write_text(json.dumps(data))
    diffs = record.check(str(out))
    assert len(diffs) == 1 and diffs[0].startswith("domain_info(0):")


def _fixtures():
    return sorted(glob.glob(os.path.join(RECORDINGS, "**", "*.rec"), recursive=True))


#: The committed recordings (tests/recordings/README.md): real Xen series and the simulator's.
EXPECTED_RECORDINGS = ("xen-4.14", "xen-4.17", "xen-4.17-arm64", "xen-4.20", "xen-4.20-arm64", "sim-default",
                       "fakedom0")


def test_the_recordings_are_all_there():
    """A missing recording is a failure, never a skipped replay."""
    have = {os.path.relpath(p, RECORDINGS).split(os.sep)[0] for p in _fixtures()}
    assert set(EXPECTED_RECORDINGS) <= have, sorted(set(EXPECTED_RECORDINGS) - have)


@pytest.mark.parametrize("recfile", _fixtures(), ids=lambda p: os.path.relpath(p, RECORDINGS))
def test_every_recording_replays_to_its_sidecar(recfile):
    """Every committed recording (real Xen ones from the lead, the sim one)
    replays through today's library to exactly what was decoded live."""
    sidecar = record.sidecar_path(recfile)
    assert os.path.exists(sidecar), f"{recfile} has no JSON sidecar"
    with open(sidecar, encoding="utf-8") as f:
        side = json.load(f)
    with xenprivcmd.open("replay:" + recfile) as h:
        steps = record.run_scenario(h)
    for want, got in zip(side["steps"], steps):
        assert got == want, f"{want['step']} decodes differently from what was decoded live"
    assert [s["step"] for s in steps] == [s["step"] for s in side["steps"]]


# -- regenerating the fixtures --------------------------------------------------------------------

def regenerate() -> None:
    """Re-record the in-repo fixtures (after a deliberate change of what the
    library sends): ``python -m tests.test_record``.  Real-Xen recordings
    (tests/recordings/xen-*/) are made in a dom0 with
    ``python -m xenprivcmd.record make`` and are never regenerated here."""
    os.makedirs(os.path.join(RECORDINGS, "fakedom0"), exist_ok=True)
    out = os.path.join(RECORDINGS, "fakedom0", "scenario.rec")
    side = record.make(out, inner=FakeDom0(), comment="tests/test_record.py FakeDom0 (fakexen + a 2-cpu dom0-only host)")
    print(f"{out}: {side['records']} records")
    os.makedirs(os.path.join(RECORDINGS, "sim-default"), exist_ok=True)
    out = os.path.join(RECORDINGS, "sim-default", "scenario.rec")
    side = record.make(out, inner="sim:///default", comment="xenprivcmd.sim sim:///default")
    print(f"{out}: {side['records']} records")


if __name__ == "__main__":
    regenerate()
