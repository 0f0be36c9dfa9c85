"""Toolstack control through xenstore: shutdown, reboot, the balloon target, uptime.

The hypervisor does not shut a guest down or balloon it: the toolstack asks
the guest's PV drivers through xenstore, as xl/libxl do, and the hypervisor
only sees the result (the guest's ``SCHEDOP_shutdown``, its freed pages):

* ``/local/domain/<id>/control/shutdown``: the toolstack writes
  ``poweroff``/``reboot``/...; the guest's driver acknowledges by writing the
  node back empty, then shuts down with that reason;
* ``/local/domain/<id>/memory/target``: the balloon target in KiB; the
  guest's balloon driver gives pages back (or takes them) to reach it.
  libxl also moves the hypervisor limit (``max_mem``) to the target, so a
  guest cannot balloon past it, and refuses a target above
  ``memory/static-max``, the most the guest was built for;
* ``/local/domain/<id>/cpu/<n>/availability``: ``online`` or ``offline``, the
  vcpus the toolstack wants the guest to run (``xl vcpu-set``); the guest's PV
  drivers bring vcpus up and down to match;
* ``/vm/<uuid>/start_time``: seconds since the epoch when libxl built the
  domain (``xl uptime``);
* destroying a domain is a hypercall, but its xenstore nodes are the toolstack's to
  remove (xenstored keeps them): :func:`destroy` removes what libxl's destroy removes
  (``/local/domain/<id>``, the ``/vm/<uuid>`` its ``vm`` node names, ``/libxl/<id>``)
  and the backend directories of its devices in dom0.

The store is the transport's own (the simulator's) or, on a dom0, the
pure-Python client of :mod:`xenprivcmd.store`.  xenstore is polled (this
client registers no watches) every :data:`POLL_SECONDS`.
"""

from __future__ import annotations

import time

from .errors import GuestTimeout, NoSuchDomain, XenstoreNoEntry, XenstoreUnavailable
from .types import DomainInfo

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Tuple

if TYPE_CHECKING:
    from .handle import DomainRef, Handle

__all__ = ["DryStore", "shutdown", "destroy", "forget", "set_memory_target", "set_online_vcpus", "uptime", "uptimes",
           "SHUTDOWN_WORDS", "POLL_SECONDS",
           "ACK_SECONDS", "MAXMEM_SLACK_KIB"]

#: What control/shutdown may be asked to do (Linux's manage driver words).
SHUTDOWN_WORDS = ("poweroff", "reboot", "halt", "suspend", "crash")
POLL_SECONDS = 0.1
#: How long a guest's PV drivers get to acknowledge control/shutdown.
ACK_SECONDS = 10.0
#: libxl's LIBXL_MAXMEM_CONSTANT: the KiB of limit it keeps above every guest's target (its
#: "arch extra memory", the same on x86 and Arm, PV and HVM alike).
MAXMEM_SLACK_KIB = 1024


def _read(store: Any, path: str) -> Optional[bytes]:
    try:
        return bytes(store.read(path))
    except XenstoreNoEntry:
        return None


def _read_int(store: Any, path: str) -> Optional[int]:
    raw = _read(store, path)
    try:
        return None if raw is None else int(raw.decode("ascii").strip())
    except ValueError:
        return None


def _info_or_none(h: "Handle", domid: int) -> Optional[DomainInfo]:
    try:
        return h.domain_info(domid, name=False)
    except NoSuchDomain:
        return None


def _poll(until: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        if until():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_SECONDS)


def shutdown(h: "Handle", dom: "DomainRef", word: str = "poweroff", wait: bool = False, timeout: float = 60.0,
             ack_timeout: float = ACK_SECONDS) -> Optional[DomainInfo]:
    """Ask a guest to ``poweroff``/``reboot``/... through ``control/shutdown``, as xl does.

    Returns the domain as it is afterwards (with ``wait``: shut down, its
    ``shutdown_reason`` set), or ``None`` once it is gone (destroyed by its
    toolstack).  Raises ``ValueError`` for domain 0, a domain already shut
    down or dying, a paused one (it cannot run to answer) or an unknown
    word; :class:`~xenprivcmd.errors.GuestTimeout` when no PV driver
    acknowledged within ``ack_timeout`` seconds (the request is withdrawn) or,
    with ``wait``, the guest did not shut down within ``timeout``.
    """
    if word not in SHUTDOWN_WORDS:
        raise ValueError(f"shutdown: {word!r} is not one of {', '.join(SHUTDOWN_WORDS)}")
    for name, value in (("timeout", timeout), ("ack_timeout", ack_timeout)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise ValueError(f"shutdown: {name} must be a number of seconds >= 0, not {value!r}")
    info = h.lookup(dom)
    domid = info.domid
    who = f"domain {domid}" + (f" ({info.name})" if info.name else "")
    if domid == 0:
        raise ValueError("domain 0 is shut down from inside it, not through xenstore")
    if info.shutdown or info.dying:
        raise ValueError(f"{who} is already {info.state}")
    if info.paused:
        raise ValueError(f"{who} is paused and cannot answer a shutdown request: resume it first")
    store = h.xenstore()
    node = f"/local/domain/{domid}/control/shutdown"
    try:
        store.write(node, word)

        def acked() -> bool:
            now = _info_or_none(h, domid)
            return now is None or now.shutdown or now.dying or not _read(store, node)

        if not _poll(acked, ack_timeout):
            try:
                store.write(node, "")  # withdraw it: a driver loaded later must not act on it
            except OSError:
                pass
            raise GuestTimeout(f"{who} did not acknowledge control/shutdown={word} within {ack_timeout:g} s"
                               " (no PV drivers answering?)", domid)
        if wait:
            def down() -> bool:
                now = _info_or_none(h, domid)
                return now is None or now.shutdown or now.dying

            if not _poll(down, timeout):
                raise GuestTimeout(f"{who} acknowledged {word} but did not shut down within {timeout:g} s", domid)
    finally:
        store.close()
    try:
        return h.domain_info(domid, name=True)
    except NoSuchDomain:
        return None


def forget(store: Any, domid: int, vm: Optional[str] = None) -> List[str]:
    """Remove what toolstacks keep in xenstore of domain ``domid``, gone or going: ``vm``
    (its ``/vm/<uuid>``, default: what ``/local/domain/<id>/vm`` names), ``/local/domain/<id>``,
    ``/libxl/<id>`` and ``/local/domain/0/backend/<kind>/<id>`` for every kind (libxl's
    ``devices_destroy_cb`` and device removal).  The paths removed (those that were there).
    Raises ``ValueError`` for domid 0 or one out of range; a ``vm`` that is not
    ``/vm/<one name>`` is left alone."""
    if isinstance(domid, bool) or not isinstance(domid, int) or not 1 <= domid < 0x7FF0:
        raise ValueError(f"forget: domid must be a guest's (1..32751), not {domid!r}")
    dom = f"/local/domain/{domid}"
    if vm is None:
        raw = _read(store, dom + "/vm")
        vm = None if raw is None else raw.decode("utf-8", "replace")
    paths: List[str] = []
    try:
        kinds = list(store.directory("/local/domain/0/backend"))
    except (XenstoreNoEntry, OSError):
        kinds = []
    paths += [f"/local/domain/0/backend/{k}/{domid}" for k in kinds]
    if vm is not None and vm.startswith("/vm/") and len(vm) > 4 and "/" not in vm[4:]:
        paths.append(vm)
    paths += [dom, f"/libxl/{domid}"]
    removed = []
    for path in paths:
        try:
            store.directory(path)
        except (XenstoreNoEntry, OSError):
            continue
        try:
            store.rm(path)
        except XenstoreNoEntry:
            continue
        removed.append(path)
    return removed


def destroy(h: "Handle", dom: "DomainRef") -> List[str]:
    """Destroy a domain (``XEN_DOMCTL_destroydomain``) and remove its xenstore nodes as
    libxl's destroy does (:func:`forget`); the paths removed.  Without a xenstore only the
    domain is destroyed.

    Raises ``ValueError`` for domain 0, :class:`~xenprivcmd.errors.NoSuchDomain` for a
    domain that does not exist, the hypercall's error otherwise (then nothing is removed).
    """
    info = h.lookup(dom)
    domid = info.domid
    if domid == 0:
        raise ValueError("domain 0 cannot be destroyed")
    try:
        store = h.xenstore()
    except (XenstoreUnavailable, OSError):
        store = None
    try:
        vm = None
        if store is not None:
            raw = _read(store, f"/local/domain/{domid}/vm")
            vm = None if raw is None else raw.decode("utf-8", "replace")
        h.destroy(domid)
        return [] if store is None else forget(store, domid, vm)
    finally:
        if store is not None:
            store.close()


def set_memory_target(h: "Handle", dom: "DomainRef", kib: int, force: bool = False) -> Tuple[int, int]:
    """Set the balloon target (``memory/target``, KiB) the way libxl does; returns (target, max_mem) in KiB.

    The limit is ``memory/static-max`` (what the toolstack built the guest
    for), else the current ``max_mem``.  A target of 0 or above the limit
    raises ``ValueError`` (no change) unless ``force``.  The hypervisor limit
    follows: ``max_mem`` = target + ``memory/videoram`` + 1 MiB, as xl mem-set
    leaves it (seen on real PV x86 and Arm guests), so the guest cannot balloon
    above its target.
    """
    if isinstance(kib, bool) or not isinstance(kib, int):
        raise TypeError(f"memory (KiB) must be an int, not {type(kib).__name__}")
    if kib < 0:
        raise ValueError(f"memory (KiB) {kib} is negative")
    info = h.lookup(dom)
    domid = info.domid
    if kib == 0 and not force:
        raise ValueError(f"a balloon target of 0 KiB would take every page from domain {domid} (force=True to set it)")
    store = h.xenstore()
    try:
        base = f"/local/domain/{domid}/memory"
        static_max = _read_int(store, base + "/static-max")
        videoram = _read_int(store, base + "/videoram") or 0
        limit = static_max if static_max is not None else info.max_memory_kib
        if kib > limit and not force:
            where = "memory/static-max" if static_max is not None else "max_mem"
            raise ValueError(f"a balloon target of {kib} KiB is above domain {domid}'s limit of {limit} KiB ({where});"
                             " raise the limit with set_max_mem, or force=True")
        target = max(0, kib - videoram)
        max_kib = kib + MAXMEM_SLACK_KIB
        h.set_max_mem(domid, max_kib, force=True)
        store.write(base + "/target", str(target))
    finally:
        store.close()
    return target, max_kib


def set_online_vcpus(h: "Handle", dom: "DomainRef", count: int) -> int:
    """Ask the guest to run ``count`` vcpus, as ``xl vcpu-set`` (and ``virsh setvcpus --live``
    on libxl) do: ``cpu/<n>/availability`` = ``online`` for vcpus 0..count-1 and ``offline``
    for the others up to the domain's maximum; the guest's PV drivers bring them up and
    down (its ``nr_online_vcpus`` follows).  Returns ``count``.

    Raises ``ValueError`` for a count below 1 or above the domain's vcpus (max_vcpus, fixed
    at creation from Xen 4.12), :class:`~xenprivcmd.store.XenstoreUnavailable` without a
    xenstore.
    """
    if isinstance(count, bool) or not isinstance(count, int):
        raise TypeError(f"vcpu count must be an int, not {type(count).__name__}")
    info = h.lookup(dom)
    who = f"domain {info.domid}" + (f" ({info.name})" if info.name else "")
    if not 1 <= count <= info.vcpus:
        raise ValueError(f"{who} can run 1..{info.vcpus} vcpus (its maximum), not {count}")
    store = h.xenstore()
    try:
        for n in range(info.vcpus):
            store.write(f"/local/domain/{info.domid}/cpu/{n}/availability", "online" if n < count else "offline")
    finally:
        store.close()
    return count


def _start_time(store: Any, domid: int) -> Optional[float]:
    raw = _read(store, f"/local/domain/{domid}/vm")
    if not raw:
        return None
    st = _read(store, raw.decode("utf-8", "replace").rstrip("/") + "/start_time")
    try:
        return None if st is None else float(st.decode("ascii"))
    except ValueError:
        return None


def _host_uptime() -> Optional[float]:
    try:
        with open("/proc/uptime", encoding="ascii") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def uptimes(h: "Handle", doms: Optional[List["DomainRef"]] = None) -> List[Tuple[DomainInfo, Optional[float]]]:
    """(domain, seconds up or None when unknown) for ``doms`` (default: every domain).

    A guest's uptime is now minus the ``start_time`` the toolstack wrote; dom0
    (which no toolstack starts) is up as long as this machine on a local
    dom0 (``/proc/uptime``), else by its ``start_time`` if any.
    """
    infos = h.domains(names=True) if doms is None else [h.lookup(d) for d in doms]
    try:
        store = h.xenstore()
    except (XenstoreUnavailable, OSError):
        return [(i, None) for i in infos]
    out: List[Tuple[DomainInfo, Optional[float]]] = []
    try:
        now = time.time()
        for i in infos:
            up: Optional[float] = None
            start = _start_time(store, i.domid)
            if i.domid == 0 and h.transport.kind == "privcmd":
                up = _host_uptime()
            elif start is not None:
                up = max(0.0, now - start)
            out.append((i, up))
    finally:
        store.close()
    return out


def uptime(h: "Handle", dom: "DomainRef") -> Optional[float]:
    """Seconds ``dom`` has been up, ``None`` when no toolstack recorded its start."""
    return uptimes(h, [dom])[0][1]


class DryStore:
    """A xenstore for a dry run (``xpsh -N``, locally or on a remote's side): reads go to
    the real store (opened on first read), writes are recorded in :attr:`writes` and not made."""

    def __init__(self, h: Any) -> None:
        self._h = h
        self._inner: Any = None
        self.writes: List[str] = []

    def _store(self) -> Any:
        if self._inner is None:
            self._inner = self._h.transport.xenstore()  # the real one: never an override (this)
        return self._inner

    def read(self, path: str) -> bytes:
        return bytes(self._store().read(path))

    def directory(self, path: str) -> List[str]:
        return list(self._store().directory(path))

    def domain_names(self) -> Dict[int, str]:
        return dict(self._store().domain_names())

    def write(self, path: str, value: Any) -> None:
        shown = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        self.writes.append(f"xenstore write {path} = {shown!r}")

    def rm(self, path: str) -> None:
        self.writes.append(f"xenstore rm {path}")

    def close(self) -> None:
        if self._inner is not None:
            self._inner.close()
        self._inner = None
