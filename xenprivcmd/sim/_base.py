"""The simulator's shared ground: the reply helpers every hypercall family's handlers use.

:class:`SimBase` is the :class:`~xenprivcmd.transport.privcmd.MemoryTransport` the family mixins
(:mod:`._xenver`, :mod:`._domctl`, :mod:`._sysctl`, :mod:`._dom0op`) build on; it declares
the state :class:`~xenprivcmd.sim.SimTransport` sets up and they read.
"""

from __future__ import annotations

import errno as E
import struct
from typing import Callable, Dict, Optional, Tuple

from ..transport.privcmd import MemoryTransport
from ._host import Domain, Host
from ._layout import Layout, Tables

DOMID_SELF = 0x7FF0
M64 = (1 << 64) - 1
XEN_HYPERVISOR_VIRT_START = 0xFFFF800000000000
M32 = 0xFFFFFFFF

_u32 = struct.Struct("<I")
_u64 = struct.Struct("<Q")
_s64 = struct.Struct("<q")
#: multicall_entry {u64 op; s64 result; u64 args[6]}
_mc_entry = struct.Struct("<Qq6Q")
_cputopo = struct.Struct("<III")
_meminfo = struct.Struct("<QQ")

Handler = Callable[[bytearray, Optional[Domain]], bool]


#: Xen reports MAX_NUMNODES - 1 as physinfo's max_node_id (not the last online node).
MAX_NUMNODES = 64


#: The x86 CPUID words physinfo reports as hw_cap (a plausible x86_64 host).
_X86_HW_CAP = (0x178BFBFF, 0x7FFAF3BF, 0x2FD3FBFF, 0x00000121)


def _hw_cap(n: int) -> Tuple[int, ...]:
    """physinfo's ``hw_cap[n]``: the CPUID words, zero-padded."""
    return (_X86_HW_CAP + (0,) * n)[:n]

class HypercallFailed(Exception):
    """Internal: a handler's error, with whether the op struct is copied back first."""

    def __init__(self, err: int, copyback: bool = False) -> None:
        super().__init__(err)
        self.err = err
        self.copyback = copyback


class SimBase(MemoryTransport):
    """The state and helpers the family handlers share (see :class:`~xenprivcmd.sim.SimTransport`)."""

    host: Host
    tables: Tables
    privileged: bool
    dom0_op_era: bool
    #: The fault's garble kind for the hypercall now running (None: reply as Xen would).
    _garble: Optional[str]
    domctl: Layout
    sysctl: Layout
    dom0op: Layout
    info_size: int
    _domctl_names: Dict[int, str]
    _sysctl_names: Dict[int, str]
    _dom0_names: Dict[int, str]
    _domctl: Dict[int, Tuple[str, Handler]]
    _sysctl: Dict[int, Tuple[str, Callable[[bytearray], bool]]]
    _dom0: Dict[int, Tuple[str, Callable[[bytearray], bool]]]
    _modern_affinity: bool
    _pause_count: bool
    _destroy_eagain: bool
    _next_domain: bool
    _create_max_vcpus: bool

    @staticmethod
    def _fail(err: int, msg: str = "") -> OSError:
        return OSError(err, f"sim: {msg or E.errorcode.get(err, str(err))}")

    def _apply(self, addr: int, lay: Layout, name: str, op: bytearray, act: Callable[[], bool]) -> int:
        """Run command ``name``'s handler on the request ``op`` (laid out as ``lay``); copy
        the reply back to the caller where it says so (on failure too, where Xen does),
        garbled first when the fault plan says so."""
        garble = self._garble
        req = bytes(op) if garble else b""
        before = self._garble_request(lay, name, op) if garble else None
        try:
            copyback = act()
        except HypercallFailed as exc:
            if exc.copyback:
                if garble:
                    self._garble_reply(lay, name, req, op, before)
                self.write(addr, bytes(op))
            raise self._fail(exc.err) from None
        if copyback:
            if garble:
                self._garble_reply(lay, name, req, op, before)
            self.write(addr, bytes(op))
        return 0

    # the fault layer's garbling (:class:`._garbling.GarbleLayer` does it)
    def _garble_request(self, lay: Layout, name: str, op: bytearray) -> Optional[bytes]:
        return None

    def _garble_reply(self, lay: Layout, name: str, req: bytes, op: bytearray, before: Optional[bytes]) -> None:
        return None

    # cpumaps: xenctl_bitmap / xenctl_cpumap in the caller's memory
    def _map_at(self, lay: Layout, op: bytearray, path: str) -> Tuple[int, int, int, int]:
        """A cpumap's (handle, nr_bits, its bytes, the bytes the host's pcpus fill of them)."""
        handle = lay.get(op, path + ".bitmap")
        nbits = lay.get(op, path + (".nr_bits" if path + ".nr_bits" in lay else ".nr_cpus"))
        guest_bytes = (nbits + 7) // 8
        return handle, nbits, guest_bytes, min(guest_bytes, (self.host.pcpus + 7) // 8)

    def _map_in(self, lay: Layout, op: bytearray, path: str) -> frozenset[int]:
        handle, nbits, guest_bytes, copy = self._map_at(lay, op, path)
        nr = self.host.pcpus
        if copy and not handle:
            raise HypercallFailed(E.EFAULT)
        raw = bytearray(self.read(handle, copy)) if copy else bytearray()
        if (nbits & 7) and guest_bytes == copy:
            raw[-1] &= ~(0xFF << (nbits & 7)) & 0xFF
        bits = int.from_bytes(bytes(raw), "little")
        return frozenset(c for c in range(nr) if bits >> c & 1)

    def _map_out(self, lay: Layout, op: bytearray, path: str, cpus: frozenset[int]) -> None:
        handle, _nbits, guest_bytes, copy = self._map_at(lay, op, path)
        nr = self.host.pcpus
        if guest_bytes and not handle:
            raise HypercallFailed(E.EFAULT)
        bits = sum(1 << c for c in cpus if c < nr)
        data = bits.to_bytes((nr + 7) // 8, "little")[:copy] + bytes(guest_bytes - copy)
        if data:
            self.write(handle, data)

