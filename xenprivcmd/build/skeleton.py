"""The xenstore entries a new guest starts with, as libxl writes them.

Before a guest runs, libxl gives it a directory ``/local/domain/N`` (its name, memory,
vcpus, the xenstore ring and the console, and the empty nodes the guest's drivers write
to: ``control/shutdown``, ``device``, ``data`` ...) and a ``/vm/UUID`` directory (its
uuid, name, kernel, start time), each node with the permissions that let the guest read
what it must and write only where it may.  :func:`domain_skeleton` lists them -- path,
value and permissions, parents first -- for a :class:`~xenprivcmd.build.config.DomainConfig`
(an x86_64 PV guest's ``/vm/UUID`` also names its kernel image; an Arm guest's does not),
as libxl does (``tools/libs/light/libxl_create.c`` ``libxl__domain_make`` and
``libxl__domain_build``, ``libxl_dom.c`` ``libxl__build_post``, ``libxl_console.c``
``libxl__device_console_add``; the same from Xen 4.14 to 4.21).  ``console/tty`` starts
empty: xenconsoled writes the pty it gives the console once it has mapped the ring.
Of libxl's own records (``/libxl/N``) only the domain's type is: libxl reads it.

Permissions are written as ``xenstore-ls -p`` prints them: ``"n0"`` (owner dom0, no
access for others), ``"r5"`` (domain 5 may read), ``"b0"`` (read and write).  A node
libxl only writes, without setting permissions, has its parent's (xenstored's rule for a
node dom0 creates); they are spelled out here for each node.  Pure data; nothing here
touches xenstore.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import List, NamedTuple, Optional, Sequence, Tuple

    from .config import DomainConfig
else:  # the same classes, without importing typing (see _ntuple)
    from .._ntuple import NamedTuple

__all__ = ["StoreNode", "domain_skeleton", "CONSOLE_LIMIT", "XenbusStateInitialising"]

#: Bytes of console output xenconsoled keeps for a guest (libxl's LIBXL_XENCONSOLE_LIMIT)
CONSOLE_LIMIT = 1048576
#: The xenbus state a device starts in (public/io/xenbus.h)
XenbusStateInitialising = 1


class StoreNode(NamedTuple):
    """One xenstore node: ``path``, ``value`` (text) and ``perms`` (``("n0", "r5")``: the
    owner and its default first, then one entry per domain given other rights)."""

    path: str
    value: str
    perms: Tuple[str, ...]


def domain_skeleton(config: DomainConfig, domid: int, *, uuid: str, arch: str, store_mfn: int, store_port: int,
                    console_mfn: int, console_port: int, start_time: float,
                    cmdline: Optional[str] = None) -> Tuple[StoreNode, ...]:
    """The nodes of a new guest ``domid`` built from ``config`` (``uuid``: its uuid as
    text; ``arch``: ``"x86_64"`` or ``"aarch64"``), with its xenstore ring at frame
    ``store_mfn`` (the guest frame on Arm) signalled on ``store_port``, its console ring at
    ``console_mfn`` on ``console_port``, created at ``start_time`` (seconds since the
    epoch), ``cmdline`` the command line it was given (default: the config's).

    Raises ``ValueError`` for a domid outside 1..32751 (the toolstack's range for guests)
    or a negative frame or port, :class:`~xenprivcmd.errors.ConfigError` when the config's
    type cannot be built on ``arch``.
    """
    if not 1 <= domid < 0x7FF0:
        raise ValueError(f"domid {domid} is not a guest's (1..32751)")
    for what, n in (("store_mfn", store_mfn), ("store_port", store_port), ("console_mfn", console_mfn),
                    ("console_port", console_port)):
        if n < 0:
            raise ValueError(f"{what} must be >= 0, not {n}")
    dom = f"/local/domain/{domid}"
    vm = f"/vm/{uuid}"
    ro: Tuple[str, ...] = ("n0", f"r{domid}")      # dom0 owns; the guest reads
    rw: Tuple[str, ...] = (f"n{domid}",)           # the guest owns
    nodes: List[StoreNode] = []

    def add(path: str, value: str = "", perms: Sequence[str] = ro) -> None:
        nodes.append(StoreNode(path, value, tuple(perms)))

    # libxl__domain_make
    add(dom)
    add(vm)
    add(f"{dom}/vm", vm)
    add(f"{dom}/name", config.name)
    add(f"{dom}/cpu")
    add(f"{dom}/memory")
    add(f"{dom}/device")
    add(f"{dom}/device/suspend", "")
    add(f"{dom}/device/suspend/event-channel", "", rw)
    add(f"{dom}/control")
    for name in ("shutdown", "feature-poweroff", "feature-reboot", "feature-suspend", "sysrq"):
        add(f"{dom}/control/{name}", "", rw)
    for name in ("data", "drivers", "feature", "attr", "error"):
        add(f"{dom}/{name}", "", rw)
    add(f"{vm}/uuid", uuid)
    add(f"{vm}/name", config.name)
    add(f"{dom}/control/platform-feature-multiprocessor-suspend", "1")
    add(f"{dom}/control/platform-feature-xs_reset_watches", "1")
    # libxl's record of the domain's type: libxl takes a domain Xen flags as HVM (every Arm
    # guest) with no record for a real HVM guest, and `xl shutdown` then wants its callback
    # IRQ; dom0's alone
    add(f"/libxl/{domid}", "", ("n0",))
    add(f"/libxl/{domid}/type", config.domain_type(arch), ("n0",))
    # libxl__build_post
    add(f"{dom}/memory/static-max", str(config.maxmem_kib))
    add(f"{dom}/memory/target", str(config.memory_kib))
    add(f"{dom}/memory/videoram", "0")
    add(f"{dom}/domid", str(domid))
    add(f"{dom}/store")
    add(f"{dom}/store/port", str(store_port))
    add(f"{dom}/store/ring-ref", str(store_mfn))
    for i in range(config.maxvcpus):
        add(f"{dom}/cpu/{i}")
        add(f"{dom}/cpu/{i}/availability", "online" if i < config.vcpus else "offline")
    # libxl__domain_build: the start time; a PV guest's image too (an Arm guest, PVH to
    # libxl, gets none)
    pv = config.domain_type(arch) == "pv"
    if pv:
        add(f"{vm}/image")
        add(f"{vm}/image/ostype", "linux")
        add(f"{vm}/image/kernel", config.kernel)
    centis = int(start_time * 100 + 1e-3)  # libxl: seconds "." hundredths, cut short (not rounded)
    add(f"{vm}/start_time", f"{centis // 100}.{centis % 100:02d}")
    if pv:
        if config.ramdisk:
            add(f"{vm}/image/ramdisk", config.ramdisk)
        add(f"{vm}/image/cmdline", config.kernel_cmdline if cmdline is None else cmdline)
    # libxl__device_console_add: the primary console, handed to xenconsoled in dom0; the
    # frontend's own entry (backend-id) is the guest's, readable by the backend
    add(f"{dom}/console")
    add(f"{dom}/console/backend", f"/local/domain/0/backend/console/{domid}/0")
    add(f"{dom}/console/backend-id", "0", (f"n{domid}", "r0"))
    for name, value in (("limit", str(CONSOLE_LIMIT)), ("type", "xenconsoled"), ("output", "pty"), ("tty", ""),
                        ("port", str(console_port)), ("ring-ref", str(console_mfn))):
        add(f"{dom}/console/{name}", value)
    return tuple(nodes)
