"""Argument checks for guest memory: frames, grant references, resources (no OS access).

What :meth:`~xenprivcmd.Handle.map_foreign`, :meth:`~xenprivcmd.Handle.map_resource` and
:meth:`~xenprivcmd.Handle.map_grants` refuse before any ioctl, with a ``TypeError`` or a
``ValueError`` that says why:

* frames: ints (not bools) from 0 to 2**52 - 1 (a frame number at or above 2**52
  would address beyond 2**64 bytes), at least one, at most
  :data:`~xenprivcmd.transport.mapping.MAX_FRAMES`;
* grant references: ints from 0 to 2**32 - 1 (``grant_ref_t``), at least one, at most
  :data:`~xenprivcmd.transport.mapping.MAX_FRAMES`;
* resources: a kind of :data:`RESOURCE_KINDS` the running release has
  (:class:`~xenprivcmd.errors.NotSupported` otherwise), ``id`` and ``frame`` u32,
  ``count`` from 1 to MAX_FRAMES; a grant table's ``id`` is 0 (shared frames) or 1
  (status frames).

Which frames to give: a guest that Xen translates (every Arm guest, x86 HVM and PVH)
is mapped by its own frame numbers (gfns); an x86 PV guest by machine frames (mfns),
which is what its xenstore nodes (``console/ring-ref``, ``store/ring-ref``) and
``populate_physmap`` give for it.
"""

from __future__ import annotations

from .errors import NotSupported

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterable, Tuple

    from . import abi as _abi

__all__ = ["check_frames", "check_refs", "check_u32", "check_count", "resource_type", "RESOURCE_KINDS",
           "FRAME_LIMIT"]

#: A frame number at or above this addresses beyond 2**64 bytes.
FRAME_LIMIT = 1 << 52
#: What :meth:`~xenprivcmd.Handle.map_resource` maps, as Xen names them (``XENMEM_resource_<kind>``).
RESOURCE_KINDS = ("ioreq_server", "grant_table", "vmtrace_buf")


def _max_frames() -> int:
    from .transport.mapping import MAX_FRAMES

    return MAX_FRAMES


def _ints(values: Iterable[int], what: str, limit: int, label: str) -> Tuple[int, ...]:
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise TypeError(f"{label}: {what} must be an iterable of ints, not {type(values).__name__}")
    out = tuple(values)
    if not out:
        raise ValueError(f"{label}: no {what} given")
    if len(out) > _max_frames():
        raise ValueError(f"{label}: {len(out)} {what} is more than {_max_frames()} at once")
    for v in out:
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{label}: {what} must be ints, not {type(v).__name__} ({v!r})")
        if not 0 <= v < limit:
            raise ValueError(f"{label}: {what[:-1]} {v:#x} is out of range 0..{limit - 1:#x}")
    return out


def check_frames(frames: Iterable[int], label: str = "map_foreign") -> Tuple[int, ...]:
    """``frames`` as a tuple, or ``TypeError``/``ValueError`` (see the module doc)."""
    return _ints(frames, "frames", FRAME_LIMIT, label)


def check_refs(refs: Iterable[int], label: str = "map_grants") -> Tuple[int, ...]:
    """Grant references as a tuple, or ``TypeError``/``ValueError``."""
    return _ints(refs, "refs", 1 << 32, label)


def check_u32(value: int, what: str, label: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{label}: {what} must be an int, not {type(value).__name__}")
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"{label}: {what} {value} is out of range 0..0xffffffff")
    return value


def check_count(count: int, label: str) -> int:
    if isinstance(count, bool) or not isinstance(count, int):
        raise TypeError(f"{label}: count must be an int, not {type(count).__name__}")
    if not 1 <= count <= _max_frames():
        raise ValueError(f"{label}: count {count} is out of range 1..{_max_frames()}")
    return count


def resource_type(variant: "_abi.Variant", kind: str, id_: int) -> int:
    """``XENMEM_resource_<kind>`` of ``variant``'s release; ``ValueError`` for an unknown kind or a
    grant table id other than 0/1, :class:`NotSupported` when the release has no such resource."""
    if kind not in RESOURCE_KINDS:
        raise ValueError(f"map_resource: kind {kind!r} is not one of {', '.join(RESOURCE_KINDS)}")
    value = variant.constants.get("XENMEM_resource_" + kind)
    if value is None:
        import errno

        raise NotSupported(errno.EOPNOTSUPP, f"map_resource: Xen {variant.release} has no {kind} resource"
                           " (XENMEM_acquire_resource: 4.11; vmtrace_buf: 4.15)", hypercall="memory_op",
                           subop="acquire_resource")
    if kind == "grant_table":
        shared = variant.constants.get("XENMEM_resource_grant_table_id_shared")
        status = variant.constants.get("XENMEM_resource_grant_table_id_status")
        if id_ not in (shared, status):
            raise ValueError(f"map_resource: a grant table's id is {shared} (shared frames) or {status}"
                             f" (status frames), not {id_}")
    return value
