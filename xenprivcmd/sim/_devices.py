"""dom0's devices on the simulated host: privcmd's mapping ioctls, gntdev, evtchn.

The privcmd ioctls are answered at the same boundary as the real driver's: the
library's own code (:mod:`xenprivcmd.transport.mapping`) reserves a range of the
"device" (here the host's RAM memfd, :mod:`._memory`), fills a
``privcmd_mmapbatch_v2`` / ``privcmd_mmap_resource`` and calls
:meth:`SimDevices.device_ioctl`, which does what the driver does: points each page
of the range at the frame's bytes (``MAP_FIXED``), writes the per-frame errnos
back, answers ``-ENOENT`` while a frame is paged out.  So the paged-out retries and
the error naming run here as on a dom0.  Per frame: ``ESRCH`` for a domain that
does not exist, ``EINVAL`` for a frame the domain does not have (an x86 PV domain
is mapped by mfn, a translated one by gfn), ``ENOENT`` while
``host.memory.paged_out[(domid, frame)]`` counts down.

Grants (``/dev/xen/gntdev``): each reference's ``grant_entry_v1`` is read from the
granting domain's grant-table frame (real bytes, seeded as xl seeds them); a
reference is mapped when it permits access to dom0 (and is not read-only, for a
writable mapping), else it fails with EINVAL.  While mapped its entry carries
``GTF_reading`` (and ``GTF_writing``), as Xen sets them.

Resources (``XENMEM_acquire_resource``): a domain's grant table (``id`` 0, the
shared frames; ``GNTTAB_FRAMES`` of them); ioreq servers and vmtrace buffers are
not simulated (EOPNOTSUPP).
"""

from __future__ import annotations

import errno as E
import struct
from typing import Any, Dict, List, Optional, Tuple

from .. import abi as _abi
from ..errors import MappingError
from ..transport import mapping as _mapping
from ._base import SimBase
from ._evtchn import SimEvtchnDevice
from ._memory import GNTTAB_FRAMES, PAGE

__all__ = ["SimDevices"]

_RESERVATIONS_KEPT = 256


class SimDevices(SimBase):
    """The device side of :class:`~xenprivcmd.sim.SimTransport` (see the module doc)."""

    path = "sim:/dev/xen/privcmd"
    #: Whether closing the transport closes the host (a host made for it by a sim: URI).
    owns_host = False

    def close(self) -> None:
        if self.closed:
            return
        super().close()  # its mappings first
        if self.owns_host:
            self.host.close()

    @property
    def arch(self) -> str:
        return self.host.arch

    @property
    def fd(self) -> int:
        return int(self.host.memory.ram.fd)

    def _reservations(self) -> Dict[int, Tuple[int, bool]]:
        r: Optional[Dict[int, Tuple[int, bool]]] = self.__dict__.get("_reserved")
        if r is None:
            r = self.__dict__["_reserved"] = {}
        return r

    # -- the privcmd device ------------------------------------------------------------------------------
    def device_mmap(self, size: int, writable: bool) -> int:
        address = _mapping.map_device(self.fd, size, writable)
        r = self._reservations()
        r.pop(address, None)
        r[address] = (size, writable)
        while len(r) > _RESERVATIONS_KEPT:
            del r[next(iter(r))]
        return address

    def _writable_at(self, address: int) -> bool:
        for start, (size, writable) in reversed(list(self._reservations().items())):
            if start <= address < start + size:
                return writable
        raise OSError(E.EINVAL, "not a range of this device")

    def device_ioctl(self, fd: int, request: int, arg: Any, mutate: bool = True) -> int:
        u = _abi.linux_uapi(self.host.arch).constants
        if request == u["IOCTL_PRIVCMD_MMAPBATCH_V2"]:
            return self._mmapbatch(arg)
        if request == u["IOCTL_PRIVCMD_MMAP_RESOURCE"]:
            return self._mmap_resource(arg)
        if request == u["IOCTL_PRIVCMD_RESTRICT"]:
            want = int(arg.value)
            if self.restricted is not None and self.restricted != want:
                raise OSError(E.EINVAL, "already restricted to another domain")
            return 0
        raise OSError(E.ENOTTY, "sim: no such ioctl")

    def _frame_offset(self, domid: int, frame: int) -> Tuple[int, int]:
        """(errno, byte offset in the RAM memfd) of a foreign frame; errno 0 when it maps."""
        mem = self.host.memory
        d = self.host.domains.get(domid)
        if d is None:
            return E.ESRCH, 0
        if self.restricted is not None and domid != self.restricted:
            return E.EPERM, 0
        left = mem.paged_out.get((domid, frame))
        if left:
            mem.paged_out[(domid, frame)] = left - 1
            return E.ENOENT, 0
        if not d.hvm and frame == d.shared_info_frame and not d.is_dom0:
            return 0, mem.ram.offset(("shinfo", domid))  # an x86 PV guest's shared info page, mapped by mfn
        mfn = mem.guest(d).frame(frame)
        if mfn is None:
            return E.EINVAL, 0
        return 0, mem.ram.offset(("mfn", mfn))

    def _mmapbatch(self, arg: Any) -> int:
        n, domid, address = int(arg.num), int(arg.dom), int(arg.addr)
        writable = self._writable_at(address)
        frames = struct.unpack(f"<{n}Q", self.read(int(arg.arr), 8 * n))
        errs: List[int] = []
        with self.host.memory.lock:
            for i, frame in enumerate(frames):
                err, offset = self._frame_offset(domid, frame)
                if not err:
                    _mapping.remap(address + i * PAGE, self.fd, offset, 1, writable)
                errs.append(-err)
        self.write(int(arg.err), struct.pack(f"<{n}i", *errs))
        if -E.ENOENT in errs:
            raise OSError(E.ENOENT, "sim: frames paged out")
        return 0

    def _mmap_resource(self, arg: Any) -> int:
        domid, type_, id_, idx, num, address = (int(arg.dom), int(arg.type), int(arg.id), int(arg.idx),
                                                 int(arg.num), int(arg.addr))
        c = self.host.variant.constants
        if self.restricted is not None and domid != self.restricted:
            raise OSError(E.EPERM, "restricted")
        if domid not in self.host.domains:
            raise OSError(E.ESRCH, "no such domain")
        if type_ != c.get("XENMEM_resource_grant_table"):
            raise OSError(E.EOPNOTSUPP, "sim: only grant tables are simulated")
        if id_ != c.get("XENMEM_resource_grant_table_id_shared"):
            raise OSError(E.EINVAL, "sim: grant table v1 has no status frames")
        if idx + num > GNTTAB_FRAMES:
            raise OSError(E.EINVAL, f"sim: the grant table has {GNTTAB_FRAMES} frames")
        writable = self._writable_at(address)
        for i in range(num):
            offset = self.host.memory.ram.offset(("gnttab", domid, idx + i))
            _mapping.remap(address + i * PAGE, self.fd, offset, 1, writable)
        return 0

    def map_foreign(self, domid: int, frames: Tuple[int, ...], writable: bool) -> Any:
        return self.track(_mapping.foreign(self, domid, frames, writable))  # type: ignore[arg-type]

    def map_resource(self, domid: int, type_: int, id_: int, frame: int, count: int, writable: bool) -> Any:
        return self.track(_mapping.resource(self, domid, type_, id_, frame, count, writable))  # type: ignore[arg-type]

    def restrict(self, domid: int) -> None:
        _mapping.restrict(self, domid)  # type: ignore[arg-type]
        self.restricted = domid

    # -- /dev/xen/gntdev -------------------------------------------------------------------------------
    def map_grants(self, domid: int, refs: Tuple[int, ...], writable: bool) -> Any:
        mem = self.host.memory
        c = self.host.variant.constants
        permit, readonly, reading, writing = (c[n] for n in ("GTF_permit_access", "GTF_readonly", "GTF_reading",
                                                              "GTF_writing"))
        failed: Dict[int, int] = {}
        offsets: List[int] = []
        entries = []
        with mem.lock:
            d = self.host.domains.get(domid)
            for ref in refs:
                got = mem.grant_entry(domid, ref) if d is not None else None
                if got is None:
                    failed.setdefault(ref, E.EINVAL)
                    continue
                flags, grantee, frame, key, at = got
                mfn = mem.guest(d).frame(frame) if d is not None else None
                if not flags & permit or grantee != 0 or (writable and flags & readonly) or mfn is None:
                    failed.setdefault(ref, E.EINVAL)
                    continue
                offsets.append(mem.ram.offset(("mfn", mfn)))
                entries.append((ref, key, at))
            if failed:
                first = next(iter(failed.values()))
                raise MappingError(first, f"map_grants(domid={domid}): "
                                   f"{_mapping.describe_failures(failed, f'of {len(refs)} refs failed')}",
                                   failed=failed, hypercall="gntdev", subop="map_grant_ref", domid=domid)
            address = _mapping.map_file_pages(self.fd, offsets, writable)
            for ref, key, at in entries:
                users = mem.grant_maps.setdefault((domid, ref), [])
                users.append(writable)
                self._grant_flags(key, at, users, reading, writing)

        def unmapped() -> None:
            with mem.lock:
                for ref, key, at in entries:
                    users = mem.grant_maps.get((domid, ref))
                    if users:
                        users.remove(writable)
                        if domid in self.host.domains:
                            self._grant_flags(key, at, users, reading, writing)
                        if not users:
                            del mem.grant_maps[(domid, ref)]

        m = _mapping.Mapping(address, len(refs) * PAGE, domid=domid, frames=refs, kind="grant", writable=writable,
                             on_close=unmapped)
        return self.track(m)

    def _grant_flags(self, key: Any, at: int, users: List[bool], reading: int, writing: int) -> None:
        mem = self.host.memory
        flags_at = mem.grant_layout().offset("flags")
        flags = struct.unpack("<H", mem.ram.read(key, at + flags_at, 2))[0] & ~(reading | writing)
        if users:
            flags |= reading
        if any(users):
            flags |= writing
        mem.set_grant_flags(key, at, flags)

    # -- /dev/xen/evtchn -----------------------------------------------------------------------------------
    def open_evtchn(self) -> SimEvtchnDevice:
        return SimEvtchnDevice(self.host.evtchn)
