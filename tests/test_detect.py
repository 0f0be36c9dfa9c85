"""Detection beyond the known releases: a development build, and a hypervisor
newer than anything the tables know."""

from __future__ import annotations

import errno
import struct

import pytest

from xenprivcmd import abi
from xenprivcmd.abi.detect import UnknownHypervisorError, parse_micro
from xenprivcmd.handle import Handle
from xenprivcmd.transport.privcmd import MemoryTransport


class ProbeOnlyXen(MemoryTransport):
    """Answers xen_version with ``major.minor`` and accepts exactly one
    domctl and one sysctl interface version (EACCES otherwise), as Xen does."""

    kind = "probe-only"

    def __init__(self, major: int, minor: int, extra: str, domctl: int, sysctl: int) -> None:
        super().__init__()
        self.major, self.minor, self.extra = major, minor, extra
        self.domctl, self.sysctl = domctl, sysctl
        self.probed: list[tuple[int, int]] = []

    def handle(self, op, args):
        if op == 17:
            if args[0] == 0:
                return self.major << 16 | self.minor
            if args[0] == 1:
                self.write(args[1], self.extra.encode().ljust(16, b"\0"))
                return 0
            raise OSError(errno.ENOSYS, "no such sub-op")
        if op in (35, 36):
            _cmd, iv = struct.unpack("<II", self.read(args[0], 8))
            self.probed.append((op, iv))
            if iv != (self.domctl if op == 36 else self.sysctl):
                raise OSError(errno.EACCES, "wrong interface version")
            return 0
        raise OSError(errno.ENOSYS, "no such hypercall")


def test_a_development_build_is_found_by_the_bounded_scan():
    head = abi.variant(abi.releases()[-1])
    # A 4.24 build that still speaks head's interface versions
    t = ProbeOnlyXen(4, 24, "-unstable", head.domctl_interface_version, head.sysctl_interface_version)
    h = Handle(t, "probe-only")
    assert h.abi == head
    assert h.detection["method"] == "scan"
    assert len(t.probed) <= 2 * 40  # bounded


def test_a_hypervisor_newer_than_anything_known_gets_a_clear_error():
    head = abi.variant(abi.releases()[-1])
    t = ProbeOnlyXen(4, 30, ".0", head.domctl_interface_version + 7, head.sysctl_interface_version + 7)
    with pytest.raises(UnknownHypervisorError) as exc:
        Handle(t, "probe-only").abi  # noqa: B018
    msg = str(exc.value)
    assert "Xen 4.30.0" in msg and abi.releases()[-1] in msg and "abi=" in msg
    assert isinstance(exc.value, LookupError)
    assert len(t.probed) <= 2 * 40


def test_a_known_series_with_an_unexpected_build_is_matched_by_versions():
    # A 4.17 distro build whose versions are 4.17's: the release the extraversion names wins
    v = abi.variant("4.17.3")
    t = ProbeOnlyXen(4, 17, ".3-dist", v.domctl_interface_version, v.sysctl_interface_version)
    assert Handle(t, "probe-only").abi.release == "4.17.3"


@pytest.mark.parametrize("extra, micro", [(".7", (7,)), (".6.1", (6, 1)), (".5-pre", (5,)), ("-rc", None), ("", None)])
def test_parse_micro(extra, micro):
    assert parse_micro(extra) == micro


@pytest.mark.parametrize("release, raw, expect", [
    # 4.8: xs_domain at bit 8, hap at bit 9 -> DomainInfo's bits 7 and 8
    ("4.8.5", (1 << 9) | (1 << 8) | (1 << 5), {"hap": True, "running": True, "xs_domain": True}),
    # 3.4: the pcpu number in bits 8..15 is not a flag
    ("3.4.0", (3 << 8) | (1 << 3), {"hap": False, "paused": True}),
    # 4.17: the same bits as DomainInfo's (nothing to translate)
    ("4.17.7", (1 << 8) | (1 << 4), {"hap": True, "blocked": True}),
])
def test_flags_are_read_with_each_releases_bits(release, raw, expect):
    from xenprivcmd.ops.domains import FlagMap

    fm = FlagMap(abi.variant(release).constants)
    assert fm.identity == (release == "4.17.7")
    flags = fm(raw)
    from xenprivcmd.types import DomainInfo

    info = DomainInfo(1, flags, 0, 0, None, None, None, 0, 0, 1, 0, 0, bytes(16), None)
    for attr, value in expect.items():
        if attr == "xs_domain":
            assert bool(flags & (1 << 7)) is value
        else:
            assert getattr(info, attr) is value
