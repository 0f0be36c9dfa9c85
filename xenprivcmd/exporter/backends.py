"""What the hypervisor does not know: balloon targets and guests' I/O counters.

* The balloon target is the toolstack's wish for a domain's memory, written
  to xenstore as ``/local/domain/<domid>/memory/target`` (KiB); the guest's
  balloon driver follows it.  Read with :class:`xenprivcmd.store.Xenstore`.
* Network counters are those of the netback interfaces in dom0,
  ``/sys/class/net/vif<domid>.<devid>/statistics/*``.  They count from
  dom0's side, so a guest's transmitted bytes are the vif's received bytes;
  :func:`network_stats` turns them round to the guest's view, like xentop's
  NETTX/NETRX.  ``vif<domid>.<devid>-emu`` (the emulated NIC's tap of an HVM
  guest) is left out: its traffic is the same guest's, counted by QEMU.
* Block counters are blkback's, ``/sys/bus/xen-backend/devices/
  vbd-<domid>-<devid>/statistics/{rd_req,wr_req,oo_req,rd_sect,wr_sect}``
  (xentop's VBD_RD, VBD_WR, VBD_OO, VBD_RSECT, VBD_WSECT; sectors are 512
  bytes).  A disk served by QEMU (qdisk) has no such counters.

Where a source is absent (no xenstore, no such sysfs tree, a domain without
a target) the answer is empty: the exporter then has no series for it,
rather than a made-up zero.
"""

from __future__ import annotations

import os
import re
from typing import Any, Callable, Dict, Iterable, List, NamedTuple, Optional

from ..errors import DecodeError, XenstoreError, XenstoreNoEntry

__all__ = ["NetStats", "BlockStats", "network_stats", "block_stats", "xenstore_names_and_targets", "SECTOR"]

#: blkback counts sectors of 512 bytes, whatever the disk's own sector size.
SECTOR = 512

_VIF = re.compile(r"^vif(\d{1,5})\.(\d{1,9})$")
_VBD = re.compile(r"^vbd-(\d{1,5})-(\d{1,9})$")


class NetStats(NamedTuple):
    """One vif, from the guest's side: what it received and transmitted."""

    domid: int
    device: int
    rx_bytes: int
    rx_packets: int
    tx_bytes: int
    tx_packets: int


class BlockStats(NamedTuple):
    """One blkback device: requests and bytes."""

    domid: int
    device: int
    rd_req: int
    wr_req: int
    oo_req: int
    rd_bytes: int
    wr_bytes: int


def _read_int(path: str) -> Optional[int]:
    try:
        with open(path, "rb") as f:
            text = f.read(64)
    except OSError:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None


def _listdir(path: str) -> List[str]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def network_stats(sysfs: str = "/sys") -> List[NetStats]:
    """Every netback vif's counters, guest's view; ``[]`` without any."""
    out: List[NetStats] = []
    base = os.path.join(sysfs, "class", "net")
    for name in _listdir(base):
        m = _VIF.match(name)
        if m is None:
            continue
        stats = os.path.join(base, name, "statistics")
        vals = [_read_int(os.path.join(stats, k)) for k in ("tx_bytes", "tx_packets", "rx_bytes", "rx_packets")]
        if any(v is None for v in vals):  # the vif went away while we read it
            continue
        rx_b, rx_p, tx_b, tx_p = (int(v) for v in vals)  # type: ignore[arg-type]
        out.append(NetStats(int(m.group(1)), int(m.group(2)), rx_b, rx_p, tx_b, tx_p))
    return out


def block_stats(sysfs: str = "/sys") -> List[BlockStats]:
    """Every blkback device's counters; ``[]`` without any."""
    out: List[BlockStats] = []
    base = os.path.join(sysfs, "bus", "xen-backend", "devices")
    for name in _listdir(base):
        m = _VBD.match(name)
        if m is None:
            continue
        stats = os.path.join(base, name, "statistics")
        vals = [_read_int(os.path.join(stats, k)) for k in ("rd_req", "wr_req", "oo_req", "rd_sect", "wr_sect")]
        if any(v is None for v in vals):
            continue
        rd, wr, oo, rs, ws = (int(v) for v in vals)  # type: ignore[arg-type]
        out.append(BlockStats(int(m.group(1)), int(m.group(2)), rd, wr, oo, rs * SECTOR, ws * SECTOR))
    return out


def xenstore_names_and_targets(domids: Iterable[int], open_store: Callable[[], Any],
                               ) -> "tuple[Dict[int, str], Dict[int, int]]":
    """``({domid: name}, {domid: balloon target in bytes})`` over one xenstore connection
    (``open_store()``: the handle's, or the one at a path the exporter was given).

    Only the ``domids`` given are read (the hypervisor's list, not the
    store's).  A missing node leaves the domain out; no xenstore at all gives
    two empty dicts.  Raises nothing for a missing, dead or misbehaving
    xenstore: these are extras, the hypervisor's figures stand without them.
    """
    names: Dict[int, str] = {}
    targets: Dict[int, int] = {}
    try:
        with open_store() as xs:
            for domid in domids:
                name = xs.name_of(domid)
                if name is not None:
                    names[domid] = name
                try:
                    raw = xs.read(f"/local/domain/{domid}/memory/target")
                except XenstoreNoEntry:
                    continue
                try:
                    targets[domid] = int(raw.rstrip(b"\0").strip()) * 1024
                except ValueError:
                    continue
    except (XenstoreError, OSError, DecodeError):
        pass
    return names, targets
