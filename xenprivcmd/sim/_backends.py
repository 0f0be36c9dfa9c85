"""The simulated guests' network interfaces and disks, as dom0's backends show them.

Each guest's vifs (``Domain.vifs``, device numbers) and disks
(``Domain.disks``, names such as ``xvda``) are served by a simulated
netback and blkback in dom0.  :class:`SimSysfs` is the part of dom0's sysfs
they fill, with the same paths and files as Linux's (what
:mod:`xenprivcmd.iostats` reads):

* ``bus/xen-backend/devices/vif-<domid>-<devid>/net/vif<domid>.<devid>`` and
  ``class/net/vif<domid>.<devid>/statistics/{rx,tx}_{bytes,packets,errors,dropped}``
  (dom0's side: the guest's sent traffic is the vif's ``rx``);
* ``bus/xen-backend/devices/vbd-<domid>-<devid>/statistics/{rd_req,wr_req,oo_req,
  f_req,ds_req,rd_sect,wr_sect}``.

The counters move as the guest runs: each is the domain's CPU time (so a
paused or idle guest's stand still) times a per-device rate, deterministic
given the domain and device.  The toolstack's xenstore nodes for the devices
(frontend ``device/vif|vbd/<devid>``, backend under dom0's ``backend/``) are
written by :mod:`~xenprivcmd.sim._store`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

from ..iostats import vbd_devid

if TYPE_CHECKING:
    from ._host import Domain, Host

__all__ = ["SimSysfs", "disk_devid", "mac_of", "vif_counters", "vbd_counters"]

_NS = 10**9


def disk_devid(name: str) -> int:
    """A disk name's vbd number as xl writes it (``xvda`` -> 51712; Xen's vbd encoding)."""
    devid = vbd_devid(name)
    if devid is None:
        raise ValueError(f"sim: {name!r} is no disk name")
    return devid


def mac_of(domid: int, devid: int) -> str:
    """The MAC the simulated toolstack gives a vif (Xen's OUI 00:16:3e)."""
    return f"00:16:3e:{(domid >> 8) & 0xFF:02x}:{domid & 0xFF:02x}:{devid & 0xFF:02x}"


def _cpu_ns(d: "Domain", now: int) -> int:
    return sum(d.vcpu_time(v, now) for v in d.vcpus)


def vif_counters(d: "Domain", devid: int, now: int) -> Dict[str, int]:
    """The vif's own counters (dom0's side: ``tx`` is what the guest received)."""
    cpu = _cpu_ns(d, now)
    seed = d.domid * 7919 + devid * 104729
    to_guest = cpu * (20_000 + seed % 50_000) // _NS      # bytes per second of guest CPU
    from_guest = cpu * (5_000 + seed % 17_000) // _NS
    size_in, size_out = 600 + seed % 700, 200 + seed % 300
    tx_packets, rx_packets = to_guest // size_in, from_guest // size_out
    return {"tx_bytes": to_guest, "tx_packets": tx_packets, "tx_errors": 0, "tx_dropped": tx_packets // 5000,
            "rx_bytes": from_guest, "rx_packets": rx_packets, "rx_errors": rx_packets // 100_000,
            "rx_dropped": 0}


def vbd_counters(d: "Domain", devid: int, now: int) -> Dict[str, int]:
    """blkback's counters of one disk (sectors of 512 bytes)."""
    cpu = _cpu_ns(d, now)
    seed = d.domid * 31 + (devid >> 4)
    rd_req = cpu * (3 + seed % 7) // _NS
    wr_req = cpu * (1 + seed % 5) // _NS
    return {"rd_req": rd_req, "rd_sect": rd_req * 16, "wr_req": wr_req, "wr_sect": wr_req * 8,
            "oo_req": rd_req // 1000, "f_req": wr_req // 10, "ds_req": wr_req // 50}


_DEVICES = "bus/xen-backend/devices"


class SimSysfs:
    """dom0's sysfs of a simulated host, as far as netback and blkback fill it (the
    interface of :class:`xenprivcmd.iostats.Sysfs`: ``listdir``, ``read``)."""

    def __init__(self, host: "Host") -> None:
        self.host = host

    def _devices(self) -> List[Tuple[str, int, int]]:
        out = []
        for domid in self.host.domids:
            d = self.host.domains[domid]
            out += [("vif", domid, devid) for devid in d.vifs]
            out += [("vbd", domid, disk_devid(name)) for name in d.disks]
        return out

    def _parse(self, path: str) -> Optional[Tuple[str, "Domain", int, List[str]]]:
        """``bus/xen-backend/devices/vif-1-0/...`` or ``class/net/vif1.0/...`` -> (kind, domain, devid, rest)."""
        parts = path.strip("/").split("/")
        if parts[:3] == _DEVICES.split("/") and len(parts) >= 4:
            kind, _, ids = parts[3].partition("-")
            domid, _, devid = ids.partition("-")
            rest = parts[4:]
        elif parts[:2] == ["class", "net"] and len(parts) >= 3 and parts[2].startswith("vif"):
            kind = "vif"
            domid, _, devid = parts[2][3:].partition(".")
            rest = ["class"] + parts[3:]
        else:
            return None
        if kind not in ("vif", "vbd") or not (domid.isdigit() and devid.isdigit()):
            return None
        d = self.host.domains.get(int(domid))
        if d is None:
            return None
        n = int(devid)
        if n not in (d.vifs if kind == "vif" else tuple(disk_devid(x) for x in d.disks)):
            return None
        return kind, d, n, rest

    def listdir(self, path: str) -> List[str]:
        if path.strip("/") == _DEVICES:
            return sorted(f"{k}-{domid}-{devid}" for k, domid, devid in self._devices())
        if path.strip("/") == "class/net":
            return sorted(f"vif{domid}.{devid}" for k, domid, devid in self._devices() if k == "vif")
        got = self._parse(path)
        if got is None:
            return []
        kind, d, devid, rest = got
        if kind == "vif" and rest == ["net"]:
            return [f"vif{d.domid}.{devid}"]
        if kind == "vif" and rest == ["class", "statistics"]:
            return sorted(vif_counters(d, devid, 0))
        if kind == "vbd" and rest == ["statistics"]:
            return sorted(vbd_counters(d, devid, 0))
        return []

    def read(self, path: str) -> Optional[bytes]:
        got = self._parse(path)
        if got is None:
            return None
        kind, d, devid, rest = got
        now = self.host.clock.now()
        if kind == "vif" and len(rest) == 3 and rest[:2] == ["class", "statistics"]:
            value = vif_counters(d, devid, now).get(rest[2])
        elif kind == "vbd" and len(rest) == 2 and rest[0] == "statistics":
            value = vbd_counters(d, devid, now).get(rest[1])
        elif rest == ["nodename"]:
            return f"backend/{kind}/{d.domid}/{devid}\n".encode()
        else:
            value = None
        return None if value is None else f"{value}\n".encode()
