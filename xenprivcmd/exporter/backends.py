"""What the hypervisor does not know: balloon targets (and where guests' I/O counters are).

* The balloon target is the toolstack's wish for a domain's memory, written
  to xenstore as ``/local/domain/<domid>/memory/target`` (KiB); the guest's
  balloon driver follows it.  Read with :class:`xenprivcmd.store.Xenstore`.
* Network and block counters are netback's and blkback's in dom0's sysfs,
  read by the library's one reader, :mod:`xenprivcmd.iostats` (the same that
  ``Handle.interface_stats`` / ``block_stats`` and ``xpsh domifstat`` use).
  The exporter reports them from the guest's side: ``receive_bytes`` is what
  the guest received, the vif's *transmit* counter (``virsh domifstat``'s
  ``rx_bytes``).  xentop does not turn netback's counters round: its
  NETTX(k) is the vif's transmit counter, so it equals ``receive_bytes``
  (seen on Xen 4.17 and 4.20, tests/realxen).  Block counters are blkback's
  as they are (xentop's VBD_RD, VBD_WR, VBD_OO; sectors of 512 bytes as
  bytes).  A disk QEMU serves (qdisk) has no such counters.

Where a source is absent (no xenstore, no such sysfs tree, a domain without
a target) the answer is empty: the exporter then has no series for it,
rather than a made-up zero.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable

from ..errors import DecodeError, XenstoreError, XenstoreNoEntry

__all__ = ["xenstore_names_and_targets"]


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
