"""One scrape: everything the exporter reports, read into a plain :class:`Sample`.

Hypercalls per scrape (the transport's counter says how many were issued):
one ``getdomaininfolist`` sysctl per 1024 domains, one multicall trap per
1024 vcpus (a ``getvcpuinfo`` domctl per vcpu, batched by
:meth:`xenprivcmd.Handle.batch`; one call each where the hypervisor refuses
domctls in a multicall), ``physinfo`` and ``getcpuinfo`` (one sysctl each).  The
version, ABI and scheduler are read once per handle (they cannot change
under a running hypervisor) and reused.

Names and balloon targets come from xenstore when the handle is the local
privcmd device (or ``xenstore`` names a socket or device); otherwise the
names are the transport's (the simulator's) and there are no targets.
Network and block counters are netback's and blkback's
(:mod:`xenprivcmd.iostats`): from the sysfs tree ``sysfs`` names, else the
handle's own (``/sys`` for the local device, the simulator's, the remote
dom0's over ``xen+ssh://``); none where there is no such tree (a replay).
"""

from __future__ import annotations

from typing import Any, Dict, List, NamedTuple, Optional, Tuple

from .. import iostats
from ..errors import DecodeError, NoSuchDomain, NotSupported
from ..ops.domains import MAX_VCPUS
from ..types import BlockStats, DomainInfo, InterfaceStats, PcpuInfo, PhysInfo
from . import backends

__all__ = ["Sample", "HostInfo", "Scraper", "VcpuTime", "os_type"]


class HostInfo(NamedTuple):
    """What ``xen_info`` says: read once per handle."""

    version: str
    abi: str
    arch: str
    domctl_interface: str
    sysctl_interface: str
    scheduler: str


class VcpuTime(NamedTuple):
    domid: int
    vcpu: int
    online: bool
    cpu_time: int  # ns


class Sample(NamedTuple):
    """One scrape's figures, as the hypervisor (and dom0) gave them."""

    domains: List[DomainInfo]
    vcpus: List[VcpuTime]
    phys: PhysInfo
    pcpus: List[PcpuInfo]
    info: HostInfo
    targets: Dict[int, int]  # domid -> bytes
    net: List[InterfaceStats]
    block: List[BlockStats]


def os_type(d: DomainInfo) -> str:
    """``hvm`` or ``linux`` (a PV guest), as xpsh's ``dominfo`` says."""
    return "hvm" if d.hvm else "linux"


def _hex(v: Optional[int]) -> str:
    return "" if v is None else f"{v:#x}"


class Scraper:
    """Reads one :class:`Sample` per :meth:`scrape` from an open handle.

    ``xenstore``: a socket or device path to read names and targets from
    (``None``: the local xenstore when the handle is ``xen:///``, none
    otherwise).  ``sysfs``: the sysfs root for backend counters (``None``:
    the handle's, see the module doc).
    """

    def __init__(self, handle: Any, xenstore: Optional[str] = None, sysfs: Optional[str] = None) -> None:
        self.handle = handle
        local = handle.transport.kind == "privcmd"
        self.use_xenstore = local or xenstore is not None
        self.xenstore = xenstore
        self.sysfs = sysfs
        self._info: Optional[HostInfo] = None

    def host_info(self) -> HostInfo:
        info = self._info
        if info is None:
            h = self.handle
            v = h.abi
            info = self._info = HostInfo(h.version().release, v.release, v.arch, _hex(v.domctl_interface_version),
                                         _hex(v.sysctl_interface_version), h.sched_id()[1])
        return info

    def _store(self) -> Any:
        """The xenstore to read: the one at the path given, else the handle's."""
        if self.xenstore is None:
            return self.handle.xenstore()
        from ..store import Xenstore

        return Xenstore.open(self.xenstore)

    def scrape(self) -> Sample:
        """One read of everything; raises what the library raises (the caller counts it)."""
        h = self.handle
        info = self.host_info()
        domains: List[DomainInfo] = h.domains(names=False)  # named below, from one read
        if self.use_xenstore:
            names, targets = backends.xenstore_names_and_targets([d.domid for d in domains], self._store)
        else:
            names, targets = h.domain_names(), {}
        if names:
            domains = [d._replace(name=names.get(d.domid)) for d in domains]
        vcpus = self._vcpus(domains)
        phys = h.physinfo()
        pcpus = h.pcpu_info()
        net, block = self._io()
        return Sample(domains, vcpus, phys, pcpus, info, targets, net, block)

    def _io(self) -> Tuple[List[InterfaceStats], List[BlockStats]]:
        """Every guest's vif and vbd counters (MACs and disk names are not read: no labels use them)."""
        h = self.handle
        try:
            fs = iostats.Sysfs(self.sysfs) if self.sysfs is not None else iostats.sysfs_of(h)
            return iostats.interface_stats(fs), iostats.block_stats(fs)
        except NotSupported:
            pass
        try:  # a remote handle: the counters of its dom0
            return h.interface_stats(), h.block_stats()
        except NotSupported:  # no dom0 behind the handle (a replay)
            return [], []

    def _vcpus(self, domains: List[DomainInfo]) -> List[VcpuTime]:
        """Every vcpu of ``domains`` in one batch: getvcpuinfo entries in multicall traps."""
        for d in domains:
            if d.vcpus > MAX_VCPUS:
                raise DecodeError(f"getdomaininfo: max_vcpu_id {d.max_vcpu_id} of domain {d.domid} is beyond any Xen")
        with self.handle.batch() as b:
            calls = [(d.domid, v, b.vcpu_info(d.domid, v)) for d in domains for v in range(d.vcpus)]
        out: List[VcpuTime] = []
        for domid, vcpu, call in calls:
            err = call.error
            if err is not None:
                if isinstance(err, NoSuchDomain):  # went away since the listing
                    continue
                raise err
            v = call.result()
            out.append(VcpuTime(domid, vcpu, v.online, v.cpu_time))
        return out
