"""The per-boot cache of the detected ABI variant never selects a wrong variant.

Every test detects on the simulator with ``detect="cache"`` (the cache on any
transport) in a private cache directory, and checks the variant against the
simulated host's own release, which the simulator knows independently of the
cache.  Real Xen: tests/realxen/test_realxen.py (the cache in /run/xenprivcmd).
"""

from __future__ import annotations

import os
import stat

import pytest

import xenprivcmd
from xenprivcmd.abi import cache as _abicache

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv(_abicache.ENV, str(d))
    return d


def _open(uri="sim:///?xen=4.17", detect="cache"):
    return xenprivcmd.open(uri, detect=detect)


def _detected(uri="sim:///?xen=4.17", detect="cache", as_device=False):
    """(release the simulator runs, release detected, detection report).

    ``as_device``: the simulator's transport calls itself the local privcmd
    device, as ``detect="auto"``/``"fresh"`` use the cache only there."""
    with _open(uri, detect) as h:
        if as_device:
            h.transport.kind = "privcmd"
        return h.transport.host.release, h.abi.release, dict(h.detection)


def _path(cache_dir, arch="x86_64", kind="sim"):
    return cache_dir / f"abi-{kind}-{arch}"


def test_a_warm_cache_is_used_after_one_probe(cache_dir):
    real, got, rep = _detected()
    assert got == real and rep["method"] == "series + probes"
    path = _path(cache_dir)
    st = os.stat(path)
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == os.geteuid()
    assert stat.S_IMODE(os.stat(cache_dir).st_mode) == 0o700
    assert f"release={real}\n" in path.read_text()
    with _open() as h:
        calls0 = h.transport.calls
        assert h.abi.release == real
        assert h.detection["method"] == "cache (series + probes)"
        # exactly one probe, and the hypervisor accepted it
        assert h.detection["probes"] == [("domctl", h.abi.domctl_interface_version, True)]
        assert h.transport.calls - calls0 <= 8  # version, extraversion, identity sub-ops, one probe
        assert [d.domid for d in h.domains()] == [0, 1, 2, 3]


def test_a_hypervisor_upgraded_under_the_same_cache_path(cache_dir):
    assert _detected("sim:///?xen=4.17")[1].startswith("4.17.")
    real, got, rep = _detected("sim:///?xen=4.20")
    assert got == real and real.startswith("4.20.") and not rep["method"].startswith("cache")
    assert f"release={real}\n" in _path(cache_dir).read_text()  # rewritten
    # and a point-release upgrade with the same interface versions (4.10.0 -> 4.10.1
    # differ in getdomaininfo's layout only): the extraversion is part of the key
    assert _detected("sim:///?xen=4.10.0")[1] == "4.10.0"
    real, got, rep = _detected("sim:///?xen=4.10.1")
    assert (real, got) == ("4.10.1", "4.10.1") and not rep["method"].startswith("cache")


def test_the_same_version_with_another_changeset_or_build_is_another_hypervisor(cache_dir):
    real, _, _ = _detected("sim:///?xen=4.17&seed=1")
    # another build of the same release (the simulator's changeset and build id
    # come from its seed): not the cached hypervisor
    _, got, rep = _detected("sim:///?xen=4.17&seed=2")
    assert got == real and not rep["method"].startswith("cache")


def _rewrite(path, old, new):
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    os.chmod(path, 0o600)


def test_a_file_copied_from_another_host_is_ignored(cache_dir):
    real, _, _ = _detected()
    path = _path(cache_dir)
    boot = [ln for ln in path.read_text().splitlines() if ln.startswith("key.boot=")][0]
    _rewrite(path, boot, "key.boot=00000000-1111-2222-3333-444444444444")
    _, got, rep = _detected()
    assert got == real and not rep["method"].startswith("cache")
    assert boot in path.read_text()  # rewritten with this boot's id


def test_a_cached_release_the_hypervisor_refuses_is_redetected(cache_dir):
    """Same key, another release in the file (edited, or written by a buggy
    version): the confirming probe gets EACCES and detection runs again."""
    real, _, _ = _detected("sim:///?xen=4.17")
    _rewrite(_path(cache_dir), f"release={real}\n", "release=4.14.0\n")
    _, got, rep = _detected("sim:///?xen=4.17")
    assert got == real
    assert rep.get("cache_rejected") == "4.14.0" and not rep["method"].startswith("cache")
    assert ("domctl", xenprivcmd.abi.variant("4.14.0").domctl_interface_version, False) in rep["probes"]


@pytest.mark.parametrize("content", [
    b"",
    b"garbage\x00\xff\xfe not a cache file\n",
    b"xenprivcmd-abi-cache 1\nrelease=4.17.0\n",          # no key at all
    b"xenprivcmd-abi-cache 2\n",                         # another format
    "xenprivcmd-abi-cache 1\nkey.xen=4.17\u00e9\n".encode(),
])
def test_garbage_is_ignored_and_rewritten(cache_dir, content):
    real, _, _ = _detected()
    path = _path(cache_dir)
    path.write_bytes(content)
    os.chmod(path, 0o600)
    _, got, rep = _detected()
    assert got == real and not rep["method"].startswith("cache")
    assert path.read_text().startswith(_abicache.MAGIC + "\n")


def test_a_truncated_file_is_ignored(cache_dir):
    real, _, _ = _detected()
    path = _path(cache_dir)
    data = path.read_bytes()
    for cut in (len(data) // 3, len(data) - 2, len(data) - 1):
        path.write_bytes(data[:cut])
        _, got, rep = _detected()
        assert got == real and not rep["method"].startswith("cache"), cut
    assert path.read_bytes() == data


def test_a_file_others_may_read_or_write_is_ignored(cache_dir):
    real, _, _ = _detected()
    path = _path(cache_dir)
    os.chmod(path, 0o644)
    assert not _detected()[2]["method"].startswith("cache")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600  # rewritten privately


def test_a_symlink_is_not_followed(cache_dir, tmp_path):
    real, _, _ = _detected()
    path = _path(cache_dir)
    elsewhere = tmp_path / "elsewhere"
    os.replace(path, elsewhere)
    os.symlink(elsewhere, path)
    assert not _detected()[2]["method"].startswith("cache")
    assert not os.path.islink(path)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_a_file_owned_by_another_user_is_ignored(cache_dir):
    real, _, _ = _detected()
    path = _path(cache_dir)
    os.chown(path, 65534, 65534)
    _, got, rep = _detected()
    assert got == real and not rep["method"].startswith("cache")
    assert os.stat(path).st_uid == os.geteuid()


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_a_directory_owned_by_another_user_is_not_used(cache_dir):
    _detected()
    os.chown(cache_dir, 65534, 65534)
    real, got, rep = _detected()
    assert got == real and not rep["method"].startswith("cache")
    assert rep["cache"] is None  # not written either


def test_an_unwritable_cache_dir_means_no_cache_and_no_error(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache directory would be\n")
    monkeypatch.setenv(_abicache.ENV, str(blocker / "xenprivcmd"))
    for _ in range(2):
        real, got, rep = _detected()
        assert got == real and rep["method"] == "series + probes" and rep["cache"] is None


@pytest.mark.parametrize("where", ["/proc/xenprivcmd-cache", "/proc/self/xenprivcmd"])
def test_a_cache_dir_the_kernel_refuses_means_no_cache_and_no_error(monkeypatch, where):
    """Directories nobody may create (not even root): mkdir fails, detection does not."""
    monkeypatch.setenv(_abicache.ENV, where)
    real, got, rep = _detected()
    assert got == real and rep["method"] == "series + probes" and rep["cache"] is None
    assert not os.path.exists(where)


def test_fresh_ignores_and_rewrites_the_cache(cache_dir):
    real, _, rep = _detected(detect="auto", as_device=True)
    assert rep["method"] == "series + probes"
    path = _path(cache_dir, kind="privcmd")
    _rewrite(path, "method=series + probes\n", "method=edited\n")
    assert _detected(detect="auto", as_device=True)[2]["method"] == "cache (edited)"  # the file is what was read
    _, got, rep = _detected(detect="fresh", as_device=True)
    assert got == real and rep["method"] == "series + probes"
    assert "method=series + probes\n" in path.read_text()  # rewritten


def test_nocache_and_other_transports_leave_the_cache_alone(cache_dir):
    _detected(detect="nocache")
    _detected(detect="auto")  # the default: the cache is for the local privcmd device
    assert not os.path.exists(cache_dir)
    with pytest.raises(ValueError, match="detect must be one of"):
        xenprivcmd.open("sim:///default", detect="sometimes")


def test_another_arch_has_its_own_entry(cache_dir):
    _detected("sim:///?xen=4.17&arch=aarch64")
    real, got, rep = _detected("sim:///?xen=4.17")
    assert got == real and not rep["method"].startswith("cache")
    assert _detected("sim:///?xen=4.17&arch=aarch64")[2]["method"].startswith("cache")
    assert os.path.exists(_path(cache_dir, "aarch64")) and os.path.exists(_path(cache_dir))


def test_where_the_cache_lives(monkeypatch):
    monkeypatch.setattr(_abicache.os, "geteuid", lambda: 0)
    assert _abicache.cache_dir({}) == "/run/xenprivcmd"
    monkeypatch.setattr(_abicache.os, "geteuid", lambda: 1000)
    assert _abicache.cache_dir({"XDG_CACHE_HOME": "/x/cache", "HOME": "/home/u"}) == "/x/cache/xenprivcmd"
    assert _abicache.cache_dir({"XDG_CACHE_HOME": "relative", "HOME": "/home/u"}) == "/home/u/.cache/xenprivcmd"
    assert _abicache.cache_dir({_abicache.ENV: ""}) is None
    assert _abicache.cache_path("privcmd", "x86_64", {_abicache.ENV: "/d"}) == "/d/abi-privcmd-x86_64"

