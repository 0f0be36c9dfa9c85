"""Find out which ABI the running hypervisor speaks.

1. ``XENVER_version`` gives (major, minor); the extraversion (".7",
   ".5-pre", "-rc") gives the point release where it can be read.
2. The ABI tables (:mod:`xenprivcmd.abi`) give the releases of that series
   and their domctl/sysctl interface versions.
3. Probes confirm: domctl and sysctl check ``interface_version`` before
   anything else and answer ``EACCES`` when it is not theirs, so a read-only
   probe (``getdomaininfo`` of dom0, ``sched_id``) with a candidate version
   either passes or says "not mine" without side effects.
4. When no candidate of the series is accepted (a distro or development
   build), a bounded scan tries every interface version the tables know.

The interface version pair does not always decide a layout (e.g. 4.10.0 and
4.10.1 share domctl 0x0e but not getdomaininfo), so among the releases whose
versions the hypervisor accepts, the one the extraversion names wins, else the
newest not past it.
"""

from __future__ import annotations

import ctypes
import errno as _errno

from .. import abi
from ..errors import InterfaceVersionMismatch, XenError, XenprivcmdError
from ..ops import version as _version
from .hypercalls import HYPERVISOR_domctl, HYPERVISOR_sysctl, issue

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Sequence, Tuple

    from ..transport.privcmd import Transport

__all__ = ["UnknownHypervisorError", "detect", "probe_domctl", "probe_sysctl", "parse_micro"]

# Known interface versions are probed in this order when nothing in the
# series matched; the scan is bounded by the tables plus this margin.
SCAN_MARGIN = 2


class UnknownHypervisorError(XenprivcmdError, LookupError):
    """The running hypervisor speaks no ABI this package knows."""


def parse_micro(extraversion: str) -> Optional[Tuple[int, ...]]:
    """The point release from an extraversion: ".7" -> (7,), ".6.1" -> (6, 1),
    ".5-pre" -> (5,), "-rc" -> None."""
    nums = []
    rest = extraversion
    while rest[:1] == ".":
        n = 1
        while n < len(rest) and rest[n].isdigit() and rest[n].isascii():
            n += 1
        if n == 1:
            break
        nums.append(int(rest[1:n]))
        rest = rest[n:]
    return tuple(nums) if nums else None


def _probe(t: Transport, op: int, wrapper: Any, cmd: int, version: int, domain: Optional[int]) -> bool:
    """Issue a read-only domctl/sysctl with ``version``; True unless EACCES."""
    size = ctypes.sizeof(wrapper)
    buf = t.scratch(size + 64)
    buf.clear(size)
    req: Any = buf.at(wrapper)
    req.cmd = cmd
    req.interface_version = version
    if domain is not None:
        req.domain = domain
    try:
        issue(t, op, buf.address, subop="probe")
    except XenError as exc:
        if exc.errno == _errno.EACCES:
            return False
        if exc.errno == _errno.ENOSYS:
            return False  # no such hypercall (the dom0_op era has no domctl/sysctl)
        if exc.errno in (_errno.EFAULT, _errno.EINTR):
            raise
        # Any other answer means the version check passed.
    return True


def probe_domctl(t: Transport, variant: "abi.Variant", version: Optional[int] = None) -> bool:
    """Whether the hypervisor accepts ``version`` (default: the variant's) for domctl."""
    v = variant.domctl_interface_version if version is None else version
    if v is None:
        return False
    return _probe(
        t, HYPERVISOR_domctl, variant.structs.lean("xen_domctl"),
        variant.constants["XEN_DOMCTL_getdomaininfo"], v, 0,
    )


def probe_sysctl(t: Transport, variant: "abi.Variant", version: Optional[int] = None) -> bool:
    """Whether the hypervisor accepts ``version`` (default: the variant's) for sysctl."""
    v = variant.sysctl_interface_version if version is None else version
    if v is None:
        return False
    return _probe(
        t, HYPERVISOR_sysctl, variant.structs.lean("xen_sysctl"),
        variant.constants["XEN_SYSCTL_sched_id"], v, None,
    )


def _pick(cands: Sequence["abi.Variant"], micro: Optional[Tuple[int, ...]]) -> "abi.Variant":
    """Among releases of one series (newest first), the one ``micro`` names:
    the exact point release, else the newest not past it, else the newest."""
    if micro is not None:
        for v in cands:
            if tuple(v.xen[2:]) == micro:
                return v
        for v in cands:
            if tuple(v.xen[2:]) <= micro:
                return v
    return cands[0]


#: ``detect=`` modes of :func:`xenprivcmd.open` (see :func:`detect`).
MODES = ("auto", "fresh", "cache", "nocache")


def detect(t: Transport, arch: str = "x86_64", mode: str = "auto") -> Tuple["abi.Variant", Dict[str, object]]:
    """Detect the running hypervisor's ABI variant.

    Returns the variant and a small report (what was read, what was probed)
    for ``xpsh capabilities`` and for error messages.  Raises
    :class:`UnknownHypervisorError` when nothing known fits.

    ``mode``: ``"auto"`` uses the per-boot cache (:mod:`xenprivcmd.abi.cache`)
    on the local privcmd device only; ``"fresh"`` detects again and rewrites
    the cache; ``"cache"`` uses the cache whatever the transport (simulators,
    tests); ``"nocache"`` neither reads nor writes it.  A cached variant is
    used only after one read-only probe confirms it.
    """
    if mode not in MODES:
        raise ValueError(f"detect must be one of {', '.join(MODES)}, not {mode!r}")
    xv = _version.boot(t, arch)
    major, minor = xv.version()
    try:
        extra = xv.extraversion(False)
    except XenprivcmdError:
        extra = ""
    report: Dict[str, object] = {"xen": f"{major}.{minor}{extra}", "probes": []}
    probes: List[Tuple[str, int, bool]] = report["probes"]  # type: ignore[assignment]
    use_cache = mode == "cache" or (mode in ("auto", "fresh") and t.kind == "privcmd")
    path = key = None
    if use_cache:
        from . import cache as _abicache

        path = _abicache.cache_path(t.kind, arch)
    if path is not None:
        key = _abicache.identity(t, arch, major, minor, extra)
        hit = _abicache.load(path, key) if mode != "fresh" else None
        if hit is not None:
            cached = _confirm(t, hit[0], arch, probes)
            if cached is not None:
                report["method"] = f"cache ({hit[1]})"
                report["cache"] = path
                return cached, report
            report["cache_rejected"] = hit[0]
    variant = _detect(t, arch, major, minor, extra, report, probes)
    if path is not None and key is not None and not variant.is_dom0_op:
        report["cache"] = path if _abicache.store(path, key, variant.release, str(report["method"])) else None
    return variant, report


def _confirm(t: Transport, release: str, arch: str, probes: List[Tuple[str, int, bool]]) -> Optional["abi.Variant"]:
    """The cached release, when the tables know it and one read-only probe accepts it."""
    try:
        variant = abi.variant(release, arch=arch)
    except abi.UnknownABIError:
        return None
    version = variant.domctl_interface_version
    if version is None:
        return None
    ok = probe_domctl(t, variant, version)
    probes.append(("domctl", version, ok))
    return variant if ok else None


def _detect(t: Transport, arch: str, major: int, minor: int, extra: str, report: Dict[str, object],
            probes: List[Tuple[str, int, bool]]) -> "abi.Variant":
    micro = parse_micro(extra)

    def ok_domctl(var: "abi.Variant", version: int) -> bool:
        r = probe_domctl(t, var, version)
        probes.append(("domctl", version, r))
        return r

    def ok_sysctl(var: "abi.Variant", version: int) -> bool:
        r = probe_sysctl(t, var, version)
        probes.append(("sysctl", version, r))
        return r

    all_cands = abi.candidates(major, minor, arch=arch)
    cands = [v for v in all_cands if v.domctl_interface_version is not None]
    dom0_op_era = [v for v in all_cands if v.domctl_interface_version is None]
    # Candidates of this series whose interface versions the hypervisor accepts.
    accepted = []
    tried: Dict[Tuple[int, int], bool] = {}
    for var in cands:
        key = (var.domctl_interface_version or -1, var.sysctl_interface_version or -1)
        if key not in tried:
            tried[key] = ok_domctl(var, key[0]) and ok_sysctl(var, key[1])
        if tried[key]:
            accepted.append(var)
    if accepted:
        report["method"] = "series + probes"
        return _pick(accepted, micro)
    if dom0_op_era:
        # Xen 3.0.0-3.0.2: the dom0_op interface, no domctl/sysctl (ENOSYS above).
        report["method"] = "dom0_op era: by version"
        return _pick(dom0_op_era, micro)
    # Bounded scan: every interface version any known release uses.
    known: List[Tuple[int, int]] = sorted(
        {
            (v.domctl_interface_version, v.sysctl_interface_version)
            for v in _all_variants(arch)
            if v.domctl_interface_version is not None and v.sysctl_interface_version is not None
        },
        reverse=True,
    )
    newest = known[0]
    scan_domctl = list(range(newest[0] + SCAN_MARGIN, newest[0], -1)) + sorted({d for d, _ in known}, reverse=True)
    ref = _all_variants(arch)[-1]
    dom_ok = next((d for d in scan_domctl if ok_domctl(ref, d)), None)
    scan_sysctl = list(range(newest[1] + SCAN_MARGIN, newest[1], -1)) + sorted({s for _, s in known}, reverse=True)
    sys_ok = next((s for s in scan_sysctl if ok_sysctl(ref, s)), None)
    report["scan"] = {"domctl": dom_ok, "sysctl": sys_ok}
    matches = [
        v for v in _all_variants(arch)
        if dom_ok is not None and (v.domctl_interface_version, v.sysctl_interface_version) == (dom_ok, sys_ok)
    ]
    if matches:
        # Prefer the release nearest to what XENVER_version said.
        matches.sort(key=lambda v: (abs((v.xen[0] * 100 + v.xen[1]) - (major * 100 + minor)), [-x for x in v.xen]))
        report["method"] = "scan"
        return matches[0]
    newest_known = abi.releases()[-1]
    def said(name: str, v: Optional[int]) -> str:
        return f"{name} interface {v:#x}" if v is not None else f"no known {name} interface version"

    raise UnknownHypervisorError(
        f"Xen {major}.{minor}{extra} accepts {said('domctl', dom_ok)} and {said('sysctl', sys_ok)}: "
        f"no release this xenprivcmd knows (up to {newest_known}) matches; "
        "upgrade xenprivcmd or pass abi= explicitly"
    )


_variants_cache: Dict[str, List["abi.Variant"]] = {}


def _all_variants(arch: str) -> List["abi.Variant"]:
    vs = _variants_cache.get(arch)
    if vs is None:
        vs = _variants_cache[arch] = [abi.variant(r, arch=arch) for r in abi.releases()]
    return vs


def check_override(t: Transport, variant: "abi.Variant") -> None:
    """An explicit ABI still has to be accepted by the hypervisor."""
    if variant.domctl_interface_version is None:
        return
    if not probe_domctl(t, variant):
        raise InterfaceVersionMismatch(
            _errno.EACCES,
            f"domctl: the hypervisor rejects interface version {variant.domctl_interface_version:#x} of {variant.release}",
            hypercall="domctl",
        )
