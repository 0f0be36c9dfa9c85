"""A simulated Xen hypervisor behind the privcmd boundary (``sim://`` URIs).

    import xenprivcmd
    with xenprivcmd.open("sim:///default") as xen:
        print(xen.version().release, [d.name for d in xen.domains()])

The library encodes every request into real hypercall buffers exactly as it
does for ``/dev/xen/privcmd``; :class:`SimTransport` (a
:class:`~xenprivcmd.transport.privcmd.MemoryTransport`) reads the raw request bytes by
address, acts on a simulated :class:`Host`, and writes the raw reply the way
Xen would.  It decodes with its *own* reading of the generated layout rows
(:mod:`xenprivcmd.sim._layout`: ``struct`` formats built from
``xenprivcmd.structs.layout_data``), never with the library's ctypes classes.
:mod:`xenprivcmd.sim._transport` dispatches (the fault plan, the log, multicall);
each hypercall family's handlers are a mixin of their own (``_xenver``,
``_domctl``, ``_sysctl``, ``_dom0op``, on the shared helpers of ``_base``), the
domain actions domctl and dom0_op both have are one method each (``_actions``),
and a garble is applied to the reply after the handler ran (``_garbling``).

Hypercalls
----------
``xen_version`` (every ``XENVER_*`` sub-op the release has; the ``*2``
``xen_varbuf`` sub-ops from 4.20), ``domctl`` (getdomaininfo, pausedomain,
unpausedomain, destroydomain, max_mem, max_vcpus, getvcpuinfo,
get/setvcpuaffinity, scheduler_op, createdomain) and ``sysctl``
(getdomaininfolist, physinfo, sched_id, readconsole, cputopoinfo /
topologyinfo, numainfo (both layouts), getcpuinfo).  A wrong
``interface_version`` answers ``EACCES`` before anything else; an unknown
command ``ENOSYS``; a missing domain ``ESRCH``; ``privileged=0`` ``EPERM``;
any other hypercall ``ENOSYS``.  The dom0_op era (3.0.0-3.0.2) answers
``xen_version`` and ``dom0_op`` (hypercall 7: the same operations through
its ``DOM0_*`` commands; the era's default scheduler is sedf).  Release-dependent behaviour follows Xen: before 4.18
``getdomaininfo`` of a missing domid answers with the next domain; before
4.5 pause is a flag (not a count) and affinity is hard only; up to 4.5
``destroydomain`` answers ``EAGAIN`` once or twice first; from 4.12
``createdomain`` takes ``max_vcpus`` and ``max_vcpus`` must repeat it.

URIs
----
``sim:///default``
    4 pcpus, 1 node, credit, the newest release; dom0 plus ``web1``
    (running), ``db1`` (idle), ``build1`` (paused).
``sim:///?opt=value&...`` (also ``sim:///default?...``)
    ``xen=`` release (``4.10.1``) or series (``4.17``: newest of it);
    ``domains=`` total domains including dom0, 1..32752 or ``max``
    (domids stop at 0x7FEF); ``seed=``; ``pcpus=``; ``nodes=`` (divides
    pcpus); ``sched=credit|credit2``; ``arch=x86_64|aarch64`` (an Arm host:
    every domain HVM with HAP, virt caps hvm+hap, one NUMA node); ``privileged=0|1``;
    ``extra=`` the extraversion string (``.5-pre``, ``-rc``); ``memory=``
    host MiB; ``clock=sim|real``; ``tick=`` ns of simulated time per
    hypercall.
``sim:///path/to/host.json``
    A host description: ``{"release": "4.17.7", "pcpus": 8, "nodes": 2,
    "sched": "credit", "seed": 1, "memory": 65536, "extra": ".7",
    "domains": [{"domid": 0, "name": "Domain-0", "memory": 2048,
    "vcpus": 4, "state": "running"}, {"name": "web1", "uuid": "...",
    "memory": 1024, "max_memory": 2048, "vcpus": 2, "state": "paused",
    "pv": false, "vifs": 2, "disks": ["xvda", "xvdb"]}]}`` (memory in MiB; state
    running|blocked|idle|paused; ``pv`` false: a guest without PV drivers, which
    never answers ``control/shutdown`` nor ``memory/target``, and has no devices
    unless given; ``vifs`` network interfaces and ``disks`` by name, default one
    vif and ``xvda`` for a guest with PV drivers; dom0 is added when the first
    entry is not domid 0).
    URI options override the file.

Bad options raise ``ValueError`` saying what is wrong.

Fault injection
---------------
``transport.faults`` (:class:`~xenprivcmd.sim._faults.Faults`)::

    t = h.transport
    t.faults.fail(errno.EFAULT, nth=3)                        # the 3rd hypercall from now
    t.faults.fail(errno.EAGAIN, op="domctl", subop="pausedomain")   # the next pausedomain
    t.faults.fail(errno.EINTR, op="sysctl", times=None)      # every sysctl until clear()
    t.faults.garble("count", op="sysctl", subop="getdomaininfolist")
    t.faults.clear(); t.faults.pending; t.faults.fired

``fail(err, nth=1, op=None, subop=None, times=1)`` makes the ``nth``
matching call fail with ``err`` before the simulator acts (nothing changes),
then ``times - 1`` more matching calls (``None``: forever).  ``op`` is
``"xen_version"``, ``"domctl"``, ``"sysctl"`` or a number; ``subop`` a name
(``"getdomaininfo"``, ``"readconsole"``, ``"extraversion"``; an
``XEN_DOMCTL_``/``XEN_SYSCTL_``/``XENVER_`` prefix is accepted) or a number.
``garble(kind, ...)`` matches the same way but lets the call succeed with a
malformed reply: ``count`` (num_domains > max_domains, readconsole count
beyond the buffer, more cpus/nodes than asked), ``record_size`` (records of
the wrong size), ``unterminated`` (xen_version strings without NUL),
``varbuf`` (a xen_varbuf length beyond the buffer), ``domid``
(getdomaininfo of another domain), ``zeros`` (nothing written).

Host and time
-------------
``transport.host`` is the :class:`Host`: ``host.domains`` (domid ->
:class:`~xenprivcmd.sim._host.Domain`), ``host.names`` (domain names),
``host.store`` (the simulated xenstore and the guests' PV drivers:
:mod:`xenprivcmd.sim._store`), ``host.sysfs()`` (dom0's netback and blkback
counters of the guests' vifs and disks, which move as the guests run:
:mod:`xenprivcmd.sim._backends`), ``host.console`` (the ring; ``host.console.line(text)`` adds a
line), ``host.clock.advance(ns)``.  With the default simulated clock, time
advances ``tick`` ns per hypercall, so runs are deterministic given the seed.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import parse_qsl, unquote, urlsplit

from .. import abi as _abi
from ._faults import GARBLES, Fault, Faults
from ._host import MAX_DOMAINS, Domain, DomainSpec, Host, parse_state
from ._transport import SimTransport

__all__ = ["open_uri", "SimTransport", "Host", "Domain", "DomainSpec", "Faults", "Fault", "GARBLES",
           "make_host", "default_host", "MAX_DOMAINS", "OPTIONS"]

#: URI options and what they take.
OPTIONS = {
    "xen": "release (4.10.1) or series (4.17)", "domains": f"1..{MAX_DOMAINS} or max", "seed": "an int",
    "pcpus": "1..4096", "nodes": "1..64, dividing pcpus", "sched": "credit or credit2",
    "arch": "x86_64 or aarch64 (an Arm host: HVM+HAP domains, one node)",
    "privileged": "0 or 1", "extra": "extraversion string", "memory": "host memory in MiB",
    "clock": "sim or real", "tick": "ns per hypercall (simulated clock)",
}

_PREFIXES = ("web", "db", "build", "cache", "mail", "app", "ci", "vpn", "dns", "log")


def _latest() -> str:
    rels = _abi.releases()
    return rels[-1]


def _release(value: str, arch: str) -> str:
    try:
        return _abi.variant(value, arch=arch).release
    except _abi.UnknownABIError as exc:
        raise ValueError(f"sim: xen={value!r}: {exc}") from None


def _int(name: str, value: Any, lo: int, hi: int) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"sim: {name}={value!r} is not an integer") from None
    if not lo <= n <= hi:
        raise ValueError(f"sim: {name}={n} is out of range {lo}..{hi}")
    return n


def _bool(name: str, value: Any) -> bool:
    s = str(value).lower()
    if s in ("1", "true", "yes", "on"):
        return True
    if s in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"sim: {name}={value!r} must be 0 or 1")


def default_specs() -> List[DomainSpec]:
    u = uuid.UUID
    return [
        DomainSpec(0, "Domain-0", None, 2 << 20, None, 4, "running"),
        DomainSpec(1, "web1", u("6f1c2a52-0d5e-4c1b-9f3a-2b7d8e9a0c11"), 1 << 20, 2 << 20, 2, "running"),
        DomainSpec(2, "db1", u("0b8e7f3c-5a1d-4e6f-8c2b-9d0a1e2f3c22"), 2 << 20, None, 2, "blocked",
                   disks=("xvda", "xvdb")),
        DomainSpec(3, "build1", u("c3d4e5f6-a7b8-4c9d-8e0f-1a2b3c4d5e33"), 512 << 10, None, 1, "paused"),
    ]


def generated_specs(n: int, seed: int) -> List[DomainSpec]:
    """``n`` domains (dom0 included), deterministic given ``seed``."""
    import random

    rng = random.Random(seed ^ 0x5EED)
    specs = [DomainSpec(0, "Domain-0", None, 2 << 20, None, 4, "running")]
    big = n > 1000
    sizes = (256 << 10,) if big else (512 << 10, 1 << 20, 2 << 20, 4 << 20)
    counts: Dict[str, int] = {}
    for domid in range(1, n):
        prefix = _PREFIXES[rng.randrange(len(_PREFIXES))]
        counts[prefix] = counts.get(prefix, 0) + 1
        r = rng.random()
        state = "paused" if r < 0.05 else ("running" if r < 0.35 else "blocked")
        vcpus = 1 if big else 1 + rng.randrange(4)
        specs.append(DomainSpec(domid, f"{prefix}{counts[prefix]}", uuid.UUID(int=rng.getrandbits(128), version=4),
                                sizes[rng.randrange(len(sizes))], None, vcpus, state))
    return specs


def default_host(**overrides: Any) -> Host:
    kw: Dict[str, Any] = {"pcpus": 4, "nodes": 1}
    kw.update(overrides)
    release = kw.pop("release", None) or _latest()
    return Host(release, domains=default_specs(), **kw)


def make_host(options: Dict[str, str], base: Optional[Dict[str, Any]] = None) -> Tuple[Host, bool, int]:
    """Build a host from URI options over a JSON description; -> (host, privileged, tick_ns)."""
    desc: Dict[str, Any] = dict(base or {})
    for k in options:
        if k not in OPTIONS:
            raise ValueError(f"sim: unknown option {k!r} (known: {', '.join(sorted(OPTIONS))})")
    arch = options.get("arch", desc.get("arch", "x86_64"))
    if arch not in _abi.arches():
        raise ValueError(f"sim: arch={arch!r}: no tables (known: {', '.join(_abi.arches())})")
    release = _release(str(options.get("xen", desc.get("release", _latest()))), arch)
    seed = _int("seed", options.get("seed", desc.get("seed", 0)), -(1 << 63), (1 << 63) - 1)
    pcpus = _int("pcpus", options.get("pcpus", desc.get("pcpus", 4)), 1, 4096)
    nodes = _int("nodes", options.get("nodes", desc.get("nodes", 1)), 1, 64)
    if pcpus % nodes:
        raise ValueError(f"sim: nodes={nodes} must divide pcpus={pcpus}")
    sched = str(options.get("sched", desc.get("sched", "credit")))
    if sched not in ("credit", "credit2"):
        raise ValueError(f"sim: sched={sched!r} must be credit or credit2")
    privileged = _bool("privileged", options.get("privileged", desc.get("privileged", 1)))
    extra = options.get("extra", desc.get("extra"))
    memory = options.get("memory", desc.get("memory"))
    memory_mib = None if memory is None else _int("memory", memory, 64, 1 << 30)
    clock = str(options.get("clock", desc.get("clock", "sim")))
    if clock not in ("sim", "real"):
        raise ValueError(f"sim: clock={clock!r} must be sim or real")
    tick = _int("tick", options.get("tick", desc.get("tick", 1_000_000)), 0, 10**12)
    specs: List[DomainSpec]
    if "domains" in options:
        raw = options["domains"]
        n = MAX_DOMAINS if raw == "max" else None
        if n is None:
            try:
                n = int(raw)
            except ValueError:
                raise ValueError(f"sim: domains={raw!r} must be 1..{MAX_DOMAINS} or max") from None
        if not 1 <= n <= MAX_DOMAINS:
            raise ValueError(f"sim: domains={n}: a host holds 1..{MAX_DOMAINS} domains "
                             f"(domids 0..{MAX_DOMAINS - 1:#x}); use domains=max for a full host")
        specs = generated_specs(n, seed)
    elif "domains" in desc:
        specs = _specs_from_json(desc["domains"])
    else:
        specs = default_specs()
    if sched == "credit2" and _abi.variant(release, arch=arch).constants.get("XEN_SCHEDULER_CREDIT2") is None:
        raise ValueError(f"sim: sched=credit2: Xen {release} has no credit2 (4.1 and later have)")
    if extra is not None and len(str(extra).encode()) > 15:
        raise ValueError(f"sim: extra={extra!r} is longer than Xen's 15-character extraversion")
    try:
        host = Host(release, arch=arch, pcpus=pcpus, nodes=nodes, sched=sched, memory_mib=memory_mib, seed=seed,
                    extraversion=None if extra is None else str(extra), clock=clock, domains=specs)
    except ValueError as exc:
        msg = str(exc)
        raise ValueError(msg if msg.startswith("sim:") else f"sim: {msg}") from None
    host.clock.tick_ns = tick
    return host, privileged, tick


def _specs_from_json(items: Any) -> List[DomainSpec]:
    if not isinstance(items, list):
        raise ValueError("sim: host description: 'domains' must be a list")
    out: List[DomainSpec] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ValueError(f"sim: host description: domains[{i}] must be an object")
        unknown = set(item) - {"domid", "name", "uuid", "memory", "max_memory", "vcpus", "state", "pv", "vifs", "disks"}
        if unknown:
            raise ValueError(f"sim: host description: domains[{i}]: unknown keys {sorted(unknown)}")
        try:
            u = uuid.UUID(str(item["uuid"])) if item.get("uuid") else None
        except ValueError:
            raise ValueError(f"sim: host description: domains[{i}]: bad uuid {item['uuid']!r}") from None
        domid = item.get("domid")
        if domid is not None:
            domid = _int(f"domains[{i}].domid", domid, 0, MAX_DOMAINS - 1)
        mem = _int(f"domains[{i}].memory", item.get("memory", 1024), 1, 1 << 24)
        maxm = item.get("max_memory")
        out.append(DomainSpec(
            domid, item.get("name"), u, mem << 10,
            None if maxm is None else _int(f"domains[{i}].max_memory", maxm, 1, 1 << 24) << 10,
            _int(f"domains[{i}].vcpus", item.get("vcpus", 1), 1, 8192),
            parse_state(item.get("state", "running")),
            _bool(f"domains[{i}].pv", item.get("pv", 1)),
            None if item.get("vifs") is None else _int(f"domains[{i}].vifs", item["vifs"], 0, 64),
            None if item.get("disks") is None else _disks(f"domains[{i}].disks", item["disks"]),
        ))
    return out


def _disks(name: str, value: Any) -> Tuple[str, ...]:
    from ..iostats import vbd_devid

    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"sim: host description: {name} must be a list of disk names (xvda, ...)")
    for v in value:
        if vbd_devid(v) is None or v.startswith("d"):
            raise ValueError(f"sim: host description: {name}: {v!r} is no disk name (xvda, hdb, sdc1, ...)")
    if len(set(value)) != len(value):
        raise ValueError(f"sim: host description: {name}: a disk is named twice")
    return tuple(value)


def parse_uri(uri: str) -> Tuple[Optional[str], Dict[str, str]]:
    """``sim:...`` -> (JSON path or None for the default host, options)."""
    if not uri.startswith("sim:"):
        raise ValueError(f"not a sim URI: {uri!r}")
    parts = urlsplit(uri)
    if parts.netloc not in ("", "localhost"):
        raise ValueError(f"sim: {uri!r}: a sim URI names no host (use sim:///default or sim:///path.json)")
    options: Dict[str, str] = {}
    for k, v in parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False):
        if k in options:
            raise ValueError(f"sim: option {k!r} given twice")
        options[k] = v
    path = unquote(parts.path)
    if path in ("", "/", "/default", "default"):
        return None, options
    return path, options


def open_transport(uri: str) -> SimTransport:
    path, options = parse_uri(uri)
    base: Optional[Dict[str, Any]] = None
    if path is not None:
        if not os.path.isfile(path):
            raise ValueError(f"sim: {uri!r}: no host description at {path} (sim:///default is the built-in host)")
        try:
            with open(path, encoding="utf-8") as f:
                base = json.load(f)
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"sim: cannot read host description {path}: {exc}") from None
        if not isinstance(base, dict):
            raise ValueError(f"sim: host description {path} must be a JSON object")
        unknown = set(base) - {"release", "arch", "seed", "pcpus", "nodes", "sched", "privileged", "extra",
                               "memory", "clock", "tick", "domains"}
        if unknown:
            raise ValueError(f"sim: host description {path}: unknown keys {sorted(unknown)}")
    host, privileged, _tick = make_host(options, base)
    t = SimTransport(host, privileged=privileged)
    t.owns_host = True  # the host goes with the transport (its memfd, console ptys)
    return t


def open_uri(uri: str, abi: Optional[str] = None) -> Any:
    """``xenprivcmd.open("sim:...")``: a :class:`~xenprivcmd.handle.Handle` on a new simulated host."""
    from ..handle import Handle

    t = open_transport(uri)
    return Handle(t, uri, abi=abi, arch=t.host.arch)


def open_host(host: Host, privileged: bool = True, abi: Optional[str] = None, uri: str = "sim:///custom") -> Any:
    """A handle on an already built :class:`Host`."""
    from ..handle import Handle

    return Handle(SimTransport(host, privileged=privileged), uri, abi=abi, arch=host.arch)
