"""Building and starting a guest from a :class:`~xenprivcmd.build.config.DomainConfig`:
what :meth:`xenprivcmd.Handle.create` does, in libxl's order.

Everything that can be refused without the hypervisor is checked first -- the config's
guest type on this architecture, the kernel and ramdisk files (read, parsed, laid out),
the command line, the name (no domain may have it), the host's free memory -- so a bad
config leaves no trace.  Then, for an x86_64 PV guest (``libxl__domain_make``,
``libxl__build_pre``, ``libxl__build_dom``, ``libxl__build_post``; libxenguest's
``xc_dom_*`` for the image, Xen 4.14 to 4.21):

1. ``createdomain`` (with ``max_vcpus``), its memory limit (the target and libxl's 1 MiB of
   slack), the xenstore and console event channels (unbound, for dom0), the vcpus' hard
   affinity and scheduler parameters when the config sets them;
2. the guest's address size (64 bits), then its memory (``populate_physmap``, pfn order:
   the p2m is what Xen answers);
3. every page of the boot image (:func:`~xenprivcmd.build.image.pv_image`: the kernel,
   the ramdisk, the p2m list, start_info, the page tables, the zeroed rings and boot
   stack) written through foreign mappings; the hypercall page by Xen; the L4 pinned; the
   shared info page with every vcpu's event upcalls masked; the boot vcpu's context;
4. grant entries 0 and 1 seeded for the console and xenstore daemons (dom0);
5. the xenstore skeleton (:func:`~xenprivcmd.build.skeleton.domain_skeleton`) in one
   transaction, the domain introduced to xenstored (xenconsoled, watching
   ``@introduceDomain``, then maps the console), and the domain unpaused unless asked not to.

Any failure on the way undoes what was done, newest first: the xenstore nodes removed,
the domain released from xenstored and destroyed (which frees its memory and event
channels); mappings are closed as each step ends.  An arm64 guest differs in its
middle steps (its P2M pool, RAM banks, magic pages and HVM params, device tree, cache
flushes, boot vcpu): :mod:`xenprivcmd.build.arm64`; the rest is shared.

Seen to boot Debian's guest kernel and initrd on real Xen 4.14, 4.17 and 4.20 (x86_64,
``tests/realxen/test_create.py``); a release whose tables lack one of the builder's
hypercalls is refused before any hypercall.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import time
import uuid as _uuid

from ..errors import ConfigError, NotSupported
from .boot import grant_seed, pv_vcpu_context
from .image import placed_ramdisk, pv_image
from .kernel import pv_kernel, read_image
from .load import MAP_CHUNK
from .load import read_file as _read
from .load import write_pieces as _write
from .memory import PAGE_SHIFT
from .skeleton import domain_skeleton
from .x86pv import pv_layout

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Dict, List, Optional, Tuple, Union

    from ..handle import Handle
    from ..types import DomainInfo
    from .arm64 import Arm64Plan
    from .config import DomainConfig
    from .kernel import PvKernel
    from .x86pv import PvLayout

__all__ = ["create", "Plan", "plan", "MAXMEM_SLACK_KIB", "MAP_CHUNK"]

#: What libxl adds to a PV guest's memory limit (LIBXL_MAXMEM_CONSTANT, KiB)
MAXMEM_SLACK_KIB = 1024
class Plan:
    """What is known before any hypercall: the config, the kernel as parsed, the ramdisk as
    placed, the boot layout and the command line."""

    __slots__ = ("config", "kernel", "ramdisk", "layout", "cmdline", "uuid")

    def __init__(self, config: DomainConfig, kernel: PvKernel, ramdisk: bytes, layout: PvLayout,
                 cmdline: str, uuid: _uuid.UUID) -> None:
        self.config, self.kernel, self.ramdisk, self.layout = config, kernel, ramdisk, layout
        self.cmdline, self.uuid = cmdline, uuid


def plan(xen: Handle, config: DomainConfig) -> Union[Plan, Arm64Plan]:
    """Everything :func:`create` checks before its first hypercall that changes anything.

    Raises :class:`ConfigError` for a guest type this architecture cannot build, a command
    line Xen cannot pass, a name a domain already has or more memory than the host has
    free; :class:`ImageError` for a kernel or ramdisk file that cannot be read or used, or
    memory too small for them; :class:`NotSupported` for an architecture or release the
    builder does not cover.
    """
    from .boot import _cmdline

    variant = xen.abi
    arch = variant.arch
    config.domain_type(arch)
    uid = config.uuid if config.uuid is not None else _uuid.uuid4()
    if arch == "aarch64":
        from .arm64 import arm64_plan

        _check_host(xen, config)
        return arm64_plan(xen, config, uid)
    if arch != "x86_64":
        raise NotSupported(_errno.EOPNOTSUPP, f"create: building {arch} guests is not supported "
                           "(x86_64 PV and arm64 guests are)")
    for name in ("XEN_DOMCTL_setvcpucontext", "XEN_DOMCTL_hypercall_init", "XEN_DOMCTL_set_address_size",
                 "MMUEXT_PIN_L4_TABLE"):
        if name not in variant.constants or variant.domctl_interface_version is None:
            raise NotSupported(_errno.ENOSYS, f"create: Xen {variant.release} lacks {name}")
    if variant.structs.get("xen_domctl_createdomain") is None or variant.structs.get("start_info") is None:
        raise NotSupported(_errno.ENOSYS, f"create: Xen {variant.release}'s tables lack what a builder needs")
    cmdline = config.kernel_cmdline
    _cmdline(variant, cmdline)
    kernel = pv_kernel(read_image(_read(config.kernel, "kernel"), config.kernel), variant, config.kernel)
    ramdisk = b""
    if config.ramdisk:
        ramdisk = placed_ramdisk(variant, _read(config.ramdisk, "ramdisk"), config.ramdisk)
    total_pages = config.memory_kib >> 2
    layout = pv_layout(kernel, total_pages, len(ramdisk))
    _check_host(xen, config)
    return Plan(config, kernel, ramdisk, layout, cmdline, uid)


def _check_host(xen: Handle, config: DomainConfig) -> None:
    """No domain has the config's name; the host has its memory free (ConfigError)."""
    for domid, name in xen.domain_names().items():
        if name == config.name:
            raise ConfigError(f"name: domain {domid} is already called {config.name!r}", key="name")
    free = xen.physinfo().free_pages
    if config.memory_kib >> 2 > free:
        raise ConfigError(f"memory: {config.memory} MiB is more than the host has free "
                          f"({free >> 8} MiB)", key="memory")


def _shared_info(xen: Handle) -> bytes:
    """The shared info page as libxenguest leaves it: zero, every legacy vcpu_info's event
    upcalls masked (the guest unmasks them once it has set its callbacks)."""
    variant = xen.abi
    cls = variant.structs["shared_info"]
    si = cls()
    for i in range(len(si.vcpu_info)):
        si.vcpu_info[i].evtchn_upcall_mask = 1
    return bytes(si) + bytes(4096 - ctypes.sizeof(cls))


class _Undo:
    """What to undo, newest first, if the build fails."""

    def __init__(self) -> None:
        self.steps: List[Tuple[str, Callable[[], None]]] = []

    def add(self, what: str, fn: Callable[[], None]) -> None:
        self.steps.append((what, fn))

    def run(self) -> None:
        while self.steps:
            _what, fn = self.steps.pop()
            try:
                fn()
            except Exception:  # noqa: BLE001 - the original error is what the caller sees
                pass


def _remove(xs: object, path: str) -> Callable[[], None]:
    def rm() -> None:
        try:
            xs.rm(path)  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001 - absent already
            pass
    return rm


def _build_pv(xen: Handle, p: Plan, domid: int, *, store_port: int, console_port: int,
              say: Callable[[str], None]) -> Tuple[int, int]:
    """Step 2 and 3 of the module doc for an x86_64 PV guest: (xenstore, console) mfns."""
    variant = xen.abi
    layout = p.layout
    say("memory")
    xen.set_address_size(domid, 64)
    mfns = xen.populate_physmap(domid, range(layout.total_pages))
    shinfo = xen.domain_info(domid, name=False).shared_info_frame
    say("image")
    pieces = pv_image(variant, p.kernel, layout, mfns, ramdisk=p.ramdisk, shared_info_mfn=shinfo,
                      store_evtchn=store_port, console_evtchn=console_port, cmdline=p.cmdline)
    _write(xen, domid, mfns, pieces)
    k = p.kernel
    if k.virt_hypercall is not None:
        xen.hypercall_init(domid, mfns[(k.virt_hypercall - layout.virt_base) >> PAGE_SHIFT])
    xen.pin_table(domid, mfns[layout.pgtables.pfn], 4)
    with xen.map_foreign(domid, [shinfo], writable=True) as m:
        m.view[:] = _shared_info(xen)
    xen.set_vcpu_context(domid, 0, pv_vcpu_context(variant, layout, mfns))
    return mfns[layout.xenstore_pfn], mfns[layout.console_pfn]


def create(xen: Handle, config: DomainConfig, *, paused: bool = False,
           progress: Optional[Callable[[str], None]] = None) -> DomainInfo:
    """Build the guest ``config`` describes and start it (unless ``paused``); its
    :class:`~xenprivcmd.types.DomainInfo` (named).  ``progress(step)`` hears each step.

    Raises as :func:`plan` before anything is done; afterwards the hypercall's, the mapping's
    or xenstore's error (:class:`~xenprivcmd.errors.XenError` and its subclasses), with
    everything done so far undone (no domain, no xenstore nodes left).
    """
    p = plan(xen, config)
    say = progress or (lambda _step: None)
    variant = xen.abi
    undo = _Undo()
    xs = xen.xenstore()
    arch: Dict[str, int] = {}
    try:
        say("createdomain")
        if isinstance(p, Plan):
            domid = xen.create_domain(config.maxvcpus, p.uuid)
        else:
            from .arm64 import build_arm64, create_arm64_domain

            domid, arch = create_arm64_domain(xen, p)
        undo.add("destroy", lambda: xen.destroy(domid))
        if not isinstance(p, Plan):
            xen.set_paging_mempool_size(domid, p.paging_bytes)
        xen.set_max_mem(domid, config.memory_kib + MAXMEM_SLACK_KIB, force=True)
        store_port = xen.evtchn_alloc_unbound(domid, 0)
        console_port = xen.evtchn_alloc_unbound(domid, 0)
        hard = config.hard_affinity(xen.nr_cpus())
        if hard is not None:
            for vcpu, cpus in enumerate(hard):
                xen.set_vcpu_affinity(domid, vcpu, hard=sorted(cpus))
        if config.cpu_weight is not None or config.cap is not None:
            xen.set_sched_params(domid, weight=config.cpu_weight, cap=config.cap)
        if isinstance(p, Plan):
            store_mfn, console_mfn = _build_pv(xen, p, domid, store_port=store_port, console_port=console_port,
                                               say=say)
        else:
            store_mfn, console_mfn = build_arm64(xen, p, domid, arch, store_port=store_port,
                                                 console_port=console_port, say=say)
        say("grants")
        seed = grant_seed(variant, domid, console_frame=console_mfn, xenstore_frame=store_mfn)
        with xen.map_resource(domid, "grant_table", frame=0, count=1, writable=True) as m:
            m.view[:len(seed)] = seed
        say("xenstore")
        nodes = domain_skeleton(config, domid, uuid=str(p.uuid), arch=variant.arch, store_mfn=store_mfn,
                                store_port=store_port, console_mfn=console_mfn, console_port=console_port,
                                start_time=time.time(), cmdline=p.cmdline)
        undo.add("vm", _remove(xs, f"/vm/{p.uuid}"))
        undo.add("local", _remove(xs, f"/local/domain/{domid}"))
        undo.add("libxl", _remove(xs, f"/libxl/{domid}"))

        def write(tx: object) -> None:
            for node in nodes:
                tx.write(node.path, node.value)  # type: ignore[attr-defined]
                tx.set_perms(node.path, node.perms)  # type: ignore[attr-defined]

        xs.transaction(write)
        say("introduce")
        xs.introduce_domain(domid, store_mfn, store_port)
        undo.add("release", lambda: xs.release_domain(domid))
        if not paused:
            say("unpause")
            xen.unpause(domid)
        return xen.domain_info(domid, name=True)
    except BaseException:
        undo.run()
        raise
    finally:
        xs.close()

