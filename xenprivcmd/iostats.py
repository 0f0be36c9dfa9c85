"""Per-domain network and disk I/O: the counters of dom0's netback and blkback.

The hypervisor counts no guest I/O.  A PV guest's network interfaces and
disks are served by backend drivers in dom0 (or a driver domain), and these
count what they carry, in dom0's sysfs:

* netback: one xenbus device ``/sys/bus/xen-backend/devices/vif-<domid>-<devid>``
  per guest interface, whose ``net/`` directory names its network interface
  (``vif<domid>.<devid>`` unless the toolstack renamed it); the counters are
  that interface's, ``/sys/class/net/<name>/statistics/{rx,tx}_{bytes,packets,
  errors,dropped}``.  They count from dom0's side: what the guest sends is the
  vif's *received* traffic.  :class:`~xenprivcmd.types.InterfaceStats` turns
  them round to the guest's view, as ``virsh domifstat`` does (libvirt's
  bridge interfaces); xentop does not (its NETTX is the vif's transmit
  counter, what the guest received).  The ``vif<domid>.<devid>-emu`` tap of
  an HVM guest's emulated NIC is no xenbus device and is left out.
* blkback: ``/sys/bus/xen-backend/devices/vbd-<domid>-<devid>/statistics/
  {rd_req,wr_req,oo_req,f_req,ds_req,rd_sect,wr_sect}`` (sectors of 512
  bytes).  A disk QEMU serves (qdisk) has no such counters.

Names come from xenstore, as the toolstack wrote them: a disk's name in the
guest (``xvda``) from its backend's ``dev`` node, an interface's MAC from
its backend's ``mac``.  Without xenstore a disk is named from its device
number (Xen's vbd encoding: ``xvd``, ``hd``, ``sd``) and the MAC is unknown.

Where counters come from is a small interface, :class:`Sysfs` (``listdir``,
``read``): the real tree under ``/sys``, or the simulator's
(``transport.sysfs()``, :mod:`xenprivcmd.sim._backends`), so the same reading
and naming run for both.  :meth:`xenprivcmd.Handle.interface_stats` and
:meth:`~xenprivcmd.Handle.block_stats` call :func:`interface_stats` and
:func:`block_stats` with the handle's tree and xenstore; over ``xen+ssh://``
they run on the remote host, where its dom0's counters are.
"""

from __future__ import annotations

import errno
import os
import re

from .errors import DecodeError, XenstoreError
from .types import BlockStats, InterfaceStats

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Container, Dict, List, Optional, Tuple

__all__ = ["Sysfs", "backends", "interface_stats", "block_stats", "of_handle", "sysfs_of", "vbd_name",
           "vbd_devid", "NET_COUNTERS", "VBD_COUNTERS"]

DEVICES = "bus/xen-backend/devices"
#: The vif's own counters (dom0's side), in the order InterfaceStats turns them round:
#: its transmit counters are what the guest received.
NET_COUNTERS = ("tx_bytes", "tx_packets", "tx_errors", "tx_dropped", "rx_bytes", "rx_packets", "rx_errors",
                "rx_dropped")
#: blkback's counters, in InterfaceStats' field order.
VBD_COUNTERS = ("rd_req", "rd_sect", "wr_req", "wr_sect", "oo_req", "f_req", "ds_req")

_DEVICE = re.compile(r"^(vif|vbd)-(\d{1,5})-(\d{1,10})$")
_IFNAME = re.compile(r"^[^/\0]{1,15}$")


class Sysfs:
    """The sysfs tree under ``root`` (``/sys``): what :func:`interface_stats` and
    :func:`block_stats` read.  Paths are relative to the root; nothing raises."""

    def __init__(self, root: str = "/sys") -> None:
        self.root = root

    def listdir(self, path: str) -> List[str]:
        """The names in a directory, sorted; ``[]`` when it does not exist."""
        try:
            return sorted(os.listdir(os.path.join(self.root, path)))
        except OSError:
            return []

    def read(self, path: str) -> Optional[bytes]:
        """A small attribute file's bytes; ``None`` when it cannot be read (gone meanwhile)."""
        try:
            with open(os.path.join(self.root, path), "rb") as f:
                return f.read(4096)
        except OSError:
            return None


def backends(fs: Any, kind: str, domids: Optional[Container[int]] = None) -> List[Tuple[int, int]]:
    """``(domid, devid)`` of every ``kind`` (``"vif"`` or ``"vbd"``) backend device in ``fs``, sorted."""
    out = []
    for entry in fs.listdir(DEVICES):
        m = _DEVICE.match(entry)
        if m is None or m.group(1) != kind:
            continue
        domid, devid = int(m.group(2)), int(m.group(3))
        if domids is None or domid in domids:
            out.append((domid, devid))
    out.sort()
    return out


def _counters(fs: Any, base: str, names: Tuple[str, ...]) -> Optional[List[int]]:
    vals = []
    for name in names:
        raw = fs.read(f"{base}/{name}")
        if raw is None:
            return None  # the device went away while it was read
        try:
            vals.append(int(raw.strip()))
        except ValueError:
            return None
    return vals


def _ifname(fs: Any, domid: int, devid: int) -> str:
    """The vif's network interface: the one in its xenbus device's ``net/`` (the toolstack
    may have renamed it), else netback's own name."""
    names: List[str] = fs.listdir(f"{DEVICES}/vif-{domid}-{devid}/net")
    for name in names:
        if _IFNAME.match(name):
            return name
    return f"vif{domid}.{devid}"


def _store_read(store: Any, path: str) -> Optional[str]:
    if store is None:
        return None
    try:
        raw = bytes(store.read(path))
    except (XenstoreError, OSError, DecodeError):
        return None
    text = raw.rstrip(b"\0").decode("utf-8", "replace").strip()
    return text or None


def _backend_path(store: Any, kind: str, domid: int, devid: int) -> str:
    """The backend's xenstore directory: the frontend's ``backend`` node, else dom0's."""
    path = _store_read(store, f"/local/domain/{domid}/device/{kind}/{devid}/backend")
    return path or f"/local/domain/0/backend/{kind}/{domid}/{devid}"


def interface_stats(fs: Any, store: Any = None, domids: Optional[Container[int]] = None) -> List[InterfaceStats]:
    """Every netback vif's counters (of the domains in ``domids``, default all), guest's view,
    sorted by domid and devid.  ``store``: a xenstore to read MACs from (``None``: none)."""
    out: List[InterfaceStats] = []
    for domid, devid in backends(fs, "vif", domids):
        name = _ifname(fs, domid, devid)
        vals = _counters(fs, f"class/net/{name}/statistics", NET_COUNTERS)
        if vals is None:
            continue
        mac = _store_read(store, _backend_path(store, "vif", domid, devid) + "/mac") if store is not None else None
        out.append(InterfaceStats(domid, devid, name, mac, *vals))
    return out


def block_stats(fs: Any, store: Any = None, domids: Optional[Container[int]] = None) -> List[BlockStats]:
    """Every blkback vbd's counters (of the domains in ``domids``, default all), sorted by
    domid and devid.  ``store``: a xenstore to read the disks' names from (``None``: the
    names follow from the device numbers)."""
    out: List[BlockStats] = []
    for domid, devid in backends(fs, "vbd", domids):
        vals = _counters(fs, f"{DEVICES}/vbd-{domid}-{devid}/statistics", VBD_COUNTERS)
        if vals is None:
            continue
        name = None
        if store is not None:
            name = _store_read(store, _backend_path(store, "vbd", domid, devid) + "/dev")
        if name is not None and name.startswith("/dev/"):
            name = name[5:]
        out.append(BlockStats(domid, devid, name or vbd_name(devid), *vals))
    return out


# -- Xen's virtual block device numbers (docs/misc/vbd-interface.txt) -----------------------------

_XVD_MAJOR, _XVD_EXT = 202, 1 << 28
_HD_MAJORS = (3, 22, 33, 34, 56, 57, 88, 89, 90, 91)
_SD_MAJORS = (8, 65, 66, 67, 68, 69, 70, 71)


def _letters(n: int) -> str:
    """0 -> a, 25 -> z, 26 -> aa (Linux's disk naming)."""
    out = ""
    n += 1
    while n:
        n, r = divmod(n - 1, 26)
        out = chr(ord("a") + r) + out
    return out


def _number(letters: str) -> int:
    n = 0
    for ch in letters:
        n = n * 26 + (ord(ch) - ord("a") + 1)
    return n - 1


def vbd_name(devid: int) -> str:
    """The guest's name of a vbd device number: ``51712`` -> ``xvda``, ``51713`` -> ``xvda1``,
    ``768`` -> ``hda``, ``2048`` -> ``sda``; a number of no known form -> ``d<devid>``."""
    if devid & _XVD_EXT and devid < (1 << 29):
        disk, part = (devid >> 8) & 0xFFFFF, devid & 0xFF
        return f"xvd{_letters(disk)}" + (str(part) if part else "")
    major, minor = devid >> 8, devid & 0xFF
    if major == _XVD_MAJOR:
        disk, part = minor >> 4, minor & 15
        return f"xvd{_letters(disk)}" + (str(part) if part else "")
    if major in _HD_MAJORS:
        disk, part = _HD_MAJORS.index(major) * 2 + (minor >> 6), minor & 63
        return f"hd{_letters(disk)}" + (str(part) if part else "")
    if major in _SD_MAJORS:
        disk, part = _SD_MAJORS.index(major) * 16 + (minor >> 4), minor & 15
        return f"sd{_letters(disk)}" + (str(part) if part else "")
    return f"d{devid}"


_DISK = re.compile(r"^(xvd|hd|sd)([a-z]{1,4})(\d{0,3})$")


def vbd_devid(name: str) -> Optional[int]:
    """The vbd device number of a guest disk name (``xvda`` -> 51712), ``None`` for a name
    of no known form; the inverse of :func:`vbd_name`."""
    if name.startswith("d") and name[1:].isdigit() and name[1:].isascii():
        return int(name[1:])
    m = _DISK.match(name)
    if m is None:
        return None
    kind, disk, part = m.group(1), _number(m.group(2)), int(m.group(3) or 0)
    if kind == "xvd":
        if disk < 16 and part < 16:
            return (_XVD_MAJOR << 8) | (disk << 4) | part
        return _XVD_EXT | (disk << 8) | part if disk < (1 << 20) and part < 256 else None
    if kind == "hd":
        if disk >= 2 * len(_HD_MAJORS) or part >= 64:
            return None
        return (_HD_MAJORS[disk // 2] << 8) | ((disk & 1) << 6) | part
    if disk >= 16 * len(_SD_MAJORS) or part >= 16:
        return None
    return (_SD_MAJORS[disk // 16] << 8) | ((disk % 16) << 4) | part


def sysfs_of(h: Any) -> Any:
    """Where ``h``'s backend counters are: the transport's own tree (the simulator's), else
    this machine's ``/sys`` for the local privcmd device.  Raises
    :class:`~xenprivcmd.errors.NotSupported` for a transport without one (a replay)."""
    own = getattr(h.transport, "sysfs", None)
    if callable(own):
        return own()
    if h.transport.kind == "privcmd":
        return Sysfs()
    from .errors import NotSupported

    raise NotSupported(errno.EOPNOTSUPP, f"no backend counters behind {h.uri} (dom0's sysfs is not there)")


def of_handle(h: Any, kind: str, dom: Any = None) -> List[Any]:
    """:meth:`Handle.interface_stats` (``kind`` ``"vif"``) and :meth:`Handle.block_stats`
    (``"vbd"``): the devices of domain ``dom``, or of every domain when ``dom`` is None.

    A domain named by id is checked to exist (one getdomaininfo), so an unknown
    one raises :class:`~xenprivcmd.errors.NoSuchDomain` rather than giving ``[]``.
    """
    domids: Optional[Container[int]] = None
    if dom is not None:
        info = h.lookup(dom) if not (isinstance(dom, int) and not isinstance(dom, bool)) else h.domain_info(dom, name=False)
        domids = (info.domid,)
    fs = sysfs_of(h)
    try:
        store = h.xenstore()
    except (XenstoreError, OSError):
        store = None  # no xenstore: disks named from their numbers, no MACs
    try:
        return interface_stats(fs, store, domids) if kind == "vif" else block_stats(fs, store, domids)
    finally:
        if store is not None:
            store.close()


def counters_by_domain(items: List[Any]) -> Dict[int, List[Any]]:
    """``[InterfaceStats or BlockStats]`` grouped by domid, in order."""
    out: Dict[int, List[Any]] = {}
    for item in items:
        out.setdefault(item.domid, []).append(item)
    return out
