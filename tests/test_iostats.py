"""Guests' network and disk counters (xenprivcmd.iostats, Handle.interface_stats / block_stats).

The reader against sysfs trees laid out as Linux's netback and blkback lay them
out (seen in the real dom0s of tests/realxen, where the same reader is compared
with sysfs and xentop), and the simulator's devices whose counters move.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict

import pytest

import xenprivcmd
from xenprivcmd import iostats
from xenprivcmd.errors import NoSuchDomain, NotSupported, XenstoreNoEntry
from xenprivcmd.types import BlockStats, InterfaceStats

VIF_KEYS = ("rx_bytes", "rx_packets", "rx_errors", "rx_dropped", "tx_bytes", "tx_packets", "tx_errors", "tx_dropped")


def _put(root: Path, rel: str, **values: int) -> None:
    d = root / rel
    d.mkdir(parents=True, exist_ok=True)
    for k, v in values.items():
        (d / k).write_text(f"{v}\n")


def _vif(root: Path, domid: int, devid: int, ifname: str, **dom0_side: int) -> None:
    (root / f"bus/xen-backend/devices/vif-{domid}-{devid}/net/{ifname}").mkdir(parents=True)
    _put(root, f"class/net/{ifname}/statistics", **{k: dom0_side.get(k, 0) for k in VIF_KEYS})


class _Store:
    """A xenstore holding the nodes xl writes (read-only)."""

    def __init__(self, nodes: Dict[str, str]) -> None:
        self.nodes = nodes

    def read(self, path: str) -> bytes:
        try:
            return self.nodes[path].encode()
        except KeyError:
            raise XenstoreNoEntry(2, f"no {path}", path=path, op="READ") from None


def test_vif_counters_are_turned_round_to_the_guests_view(tmp_path: Path) -> None:
    # dom0's vif1.0 sent 254330 bytes (to the guest) and received 8832 (from it), as seen in a real dom0
    _vif(tmp_path, 1, 0, "vif1.0", tx_bytes=254330, tx_packets=263, rx_bytes=8832, rx_packets=67,
         tx_dropped=3, rx_errors=2, tx_errors=5, rx_dropped=7)
    got, = iostats.interface_stats(iostats.Sysfs(str(tmp_path)))
    assert got == InterfaceStats(1, 0, "vif1.0", None, rx_bytes=254330, rx_packets=263, rx_errs=5, rx_drop=3,
                                 tx_bytes=8832, tx_packets=67, tx_errs=2, tx_drop=7)


def test_a_renamed_vif_is_read_under_its_own_name_and_the_emulated_nics_tap_is_left_out(tmp_path: Path) -> None:
    _vif(tmp_path, 4, 1, "web-eth1", tx_bytes=10, rx_bytes=20)
    _put(tmp_path, "class/net/vif4.0-emu/statistics", **dict.fromkeys(VIF_KEYS, 99))  # no xenbus device
    _put(tmp_path, "class/net/eth0/statistics", **dict.fromkeys(VIF_KEYS, 5))
    got = iostats.interface_stats(iostats.Sysfs(str(tmp_path)))
    assert [(i.domid, i.devid, i.name, i.rx_bytes, i.tx_bytes) for i in got] == [(4, 1, "web-eth1", 10, 20)]


def test_devices_going_away_while_read_are_left_out(tmp_path: Path) -> None:
    (tmp_path / "bus/xen-backend/devices/vif-2-0/net/vif2.0").mkdir(parents=True)  # no statistics any more
    (tmp_path / "bus/xen-backend/devices/vbd-2-51712").mkdir(parents=True)
    _put(tmp_path, "bus/xen-backend/devices/vbd-3-51712/statistics", rd_req=1)  # half gone: no rd_sect ...
    (tmp_path / "bus/xen-backend/devices/console-2-0").mkdir(parents=True)
    fs = iostats.Sysfs(str(tmp_path))
    assert iostats.interface_stats(fs) == [] == iostats.block_stats(fs)
    none = iostats.Sysfs(str(tmp_path / "absent"))
    assert iostats.interface_stats(none) == [] == iostats.block_stats(none)


def test_block_counters_and_names_from_xenstore_or_the_device_number(tmp_path: Path) -> None:
    stats = dict(rd_req=15, rd_sect=2552, wr_req=4, wr_sect=1024, oo_req=0, f_req=1, ds_req=0)
    _put(tmp_path, "bus/xen-backend/devices/vbd-1-51712/statistics", **stats)
    _put(tmp_path, "bus/xen-backend/devices/vbd-1-768/statistics", **stats)
    _vif(tmp_path, 1, 0, "vif1.0")
    fs = iostats.Sysfs(str(tmp_path))
    store = _Store({"/local/domain/1/device/vbd/51712/backend": "/local/domain/0/backend/vbd/1/51712",
                    "/local/domain/0/backend/vbd/1/51712/dev": "xvda",
                    "/local/domain/1/device/vif/0/backend": "/local/domain/7/backend/vif/1/0",  # a driver domain's
                    "/local/domain/7/backend/vif/1/0/mac": "00:16:3e:77:00:02"})
    a, b = iostats.block_stats(fs, store)
    assert (a.devid, a.name, b.devid, b.name) == (768, "hda", 51712, "xvda")
    assert b == BlockStats(1, 51712, "xvda", 15, 2552, 4, 1024, 0, 1, 0)
    assert (b.rd_bytes, b.wr_bytes) == (2552 * 512, 1024 * 512)
    assert iostats.interface_stats(fs, store)[0].mac == "00:16:3e:77:00:02"
    assert [x.name for x in iostats.block_stats(fs)] == ["hda", "xvda"]  # no xenstore: from the numbers
    assert iostats.block_stats(fs, domids={2}) == []


# Xen's vbd numbers (docs/misc/vbd-interface.txt): xl wrote 51712 for vdev=xvda in every real dom0 here
@pytest.mark.parametrize("name, devid", [("xvda", 51712), ("xvdb", 51728), ("xvda1", 51713), ("xvdp15", 51967),
                                         ("xvdq", (1 << 28) | (16 << 8)), ("xvdaa2", (1 << 28) | (26 << 8) | 2),
                                         ("hda", 768), ("hdb1", 833), ("hdc", 22 << 8), ("sda", 2048),
                                         ("sdb3", 2067), ("sdq", 65 << 8)])
def test_vbd_names_and_numbers(name: str, devid: int) -> None:
    assert iostats.vbd_devid(name) == devid
    assert iostats.vbd_name(devid) == name


def test_vbd_names_of_no_known_form() -> None:
    assert iostats.vbd_name(7 << 8) == "d1792" and iostats.vbd_devid("d1792") == 1792
    for bad in ("vda", "xvd", "xvdA", "sd", "hdz", "xvda99999"):
        assert iostats.vbd_devid(bad) is None, bad


# -- the simulator's devices, through the Handle -------------------------------------------------------

@pytest.fixture
def sim() -> xenprivcmd.Handle:
    return xenprivcmd.open("sim:///default")


def test_the_simulator_has_devices_named_in_its_xenstore(sim: xenprivcmd.Handle) -> None:
    nets = sim.interface_stats()
    assert [(i.domid, i.devid, i.name) for i in nets] == [(1, 0, "vif1.0"), (2, 0, "vif2.0"), (3, 0, "vif3.0")]
    disks = sim.block_stats()
    assert [(b.domid, b.name) for b in disks] == [(1, "xvda"), (2, "xvda"), (2, "xvdb"), (3, "xvda")]
    store = sim.transport.xenstore()
    for i in nets:
        assert i.mac == store.read(f"/local/domain/0/backend/vif/{i.domid}/{i.devid}/mac").decode()
    for b in disks:
        assert store.read(f"/local/domain/{b.domid}/device/vbd/{b.devid}/virtual-device").decode() == str(b.devid)
    assert sim.interface_stats(0) == [] == sim.block_stats("Domain-0")
    assert sim.block_stats("db1") == [b for b in sim.block_stats() if b.domid == 2]  # idle: no cpu time, no I/O


def test_counters_move_while_the_guest_runs_and_stand_still_while_paused(sim: xenprivcmd.Handle) -> None:
    host = sim.transport.host
    a, = sim.interface_stats("web1")
    host.clock.advance(5 * 10**9)
    b, = sim.interface_stats("web1")
    assert b.rx_bytes > a.rx_bytes and b.tx_bytes > a.tx_bytes and b.rx_packets >= a.rx_packets
    da, = sim.block_stats("web1")
    sim.pause("web1")
    p1, = sim.block_stats("web1")
    host.clock.advance(5 * 10**9)
    p2, = sim.block_stats("web1")
    assert p1 == p2 and p1.rd_req >= da.rd_req
    assert sim.interface_stats("web1")[0].rx_bytes == sim.interface_stats("web1")[0].rx_bytes


def test_a_destroyed_guests_devices_go(sim: xenprivcmd.Handle) -> None:
    sim.destroy("db1")
    assert all(i.domid != 2 for i in sim.interface_stats()) and all(b.domid != 2 for b in sim.block_stats())
    with pytest.raises(NoSuchDomain):
        sim.block_stats(2)
    with pytest.raises(NoSuchDomain):
        sim.interface_stats("db1")


def test_unknown_domains_are_errors_not_empty_lists(sim: xenprivcmd.Handle) -> None:
    with pytest.raises(NoSuchDomain):
        sim.interface_stats(42)
    with pytest.raises(NoSuchDomain):
        sim.block_stats("nosuch")
    with pytest.raises(ValueError):
        sim.block_stats(-1)


def test_host_description_devices(tmp_path: Path) -> None:
    import json

    desc = tmp_path / "host.json"
    desc.write_text(json.dumps({"domains": [{"name": "a", "vifs": 2, "disks": ["xvda", "xvdb", "hdc"]},
                                            {"name": "b", "pv": False},
                                            {"name": "c", "vifs": 0, "disks": []}]}))
    with xenprivcmd.open(f"sim://{desc}") as h:
        assert [(i.domid, i.name) for i in h.interface_stats()] == [(1, "vif1.0"), (1, "vif1.1")]
        assert [(b.name, b.devid) for b in h.block_stats()] == [("hdc", 5632), ("xvda", 51712), ("xvdb", 51728)]  # by number
    for bad in ({"disks": ["vda"]}, {"disks": "xvda"}, {"disks": ["xvda", "xvda"]}, {"vifs": 99}):
        desc.write_text(json.dumps({"domains": [dict(name="a", **bad)]}))
        with pytest.raises(ValueError, match="sim: "):
            xenprivcmd.open(f"sim://{desc}")


def test_no_dom0_sysfs_behind_a_replay(tmp_path: Path) -> None:
    rec = tmp_path / "r.rec"
    with xenprivcmd.open(f"record://{rec}?inner=sim:///default") as h:
        h.domain_info(1)
    with xenprivcmd.open(f"replay://{rec}?strict=0") as h:
        with pytest.raises(NotSupported, match="no backend counters"):
            h.interface_stats()
