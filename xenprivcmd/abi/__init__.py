"""Xen ABI introspection: which struct layouts and constants each Xen release uses.

The tables come from Xen's public headers (``tools/gen_structs.py``), one
entry per Xen release, x86_64 first.  Releases with identical layouts share
one set of ctypes classes; classes are built lazily, on first use.

>>> import ctypes
>>> from xenprivcmd.abi import variant
>>> v = variant("4.17.0")
>>> v.release, hex(v.domctl_interface_version), hex(v.sysctl_interface_version)
('4.17.0', '0x15', '0x15')
>>> ctypes.sizeof(v.structs["xen_domctl_getdomaininfo"]), v.constants["XEN_DOMCTL_getdomaininfo"]
(112, 5)
>>> variant((4, 17), domctl=0x14)
Traceback (most recent call last):
...
xenprivcmd.abi.UnknownABIError: no known Xen 4.17 release has domctl=0x14 sysctl=None (known pairs: 0x15/0x15)

This module only knows the tables; it does not talk to a hypervisor.
"""

from __future__ import annotations

from _collections_abc import Mapping as _MappingBase

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time: ``import xenprivcmd`` stays cheap
    from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

    from ..structs import StructMap

    XenVersion = Union[str, Tuple[int, ...], Sequence[int]]
    _ConstsBase = Mapping[str, int]
else:
    _ConstsBase = _MappingBase

__all__ = [
    "UnknownABIError", "Variant", "releases", "variant", "candidates", "interface_versions",
    "arches", "head_release", "LinuxUAPI", "linux_uapi",
]

DEFAULT_ARCH = "x86_64"


class UnknownABIError(LookupError):
    """No known Xen release/arch matches the request."""


def _tables() -> Any:
    from .. import structs  # imported lazily: keeps ``import xenprivcmd.abi`` cheap

    return structs


class _Consts(_ConstsBase):
    """Macro name -> value: the core constant set ``key`` of ``arch`` and, for a name
    it lacks, the constant sets of ``release`` in the families ``structs.route``
    names (a family's module is loaded on first need)."""

    __slots__ = ("_arch", "_key", "_d", "_one", "_release", "_fams")

    def __init__(self, arch: str, key: str, release: Optional[str] = None) -> None:
        self._arch = arch
        self._key = key
        self._d: Optional[Dict[str, int]] = None
        self._one: Dict[str, Optional[int]] = {}  # names looked up one by one (``_d`` not built)
        self._release = release
        self._fams: Dict[str, Dict[str, int]] = {}

    def _get(self) -> Dict[str, int]:
        if self._d is None:
            self._d = _tables().const_set(self._arch, self._key)
        return self._d

    def _core(self, name: str) -> Optional[int]:
        """``name`` in the core set, without resolving the whole set until something needs it."""
        d = self._d
        if d is not None:
            return d.get(name)
        one = self._one
        if name in one:
            return one[name]
        try:
            v: Optional[int] = _tables().set_value(self._arch, "CONSTS", self._key, name)
        except KeyError:
            v = None
        one[name] = v
        return v

    def _family(self, family: str) -> Dict[str, int]:
        got = self._fams.get(family)
        if got is None:
            t = _tables()
            keys = None if self._release is None else t.family_keys(self._arch, family, self._release)
            got = {} if keys is None else t.const_set(t.table_id(self._arch, family), keys[1])
            self._fams[family] = got
        return got

    def __getitem__(self, name: str) -> int:
        v = self._core(name)
        if v is not None:
            return v
        if self._release is not None:
            for fam in _tables().route(name):
                v = self._family(fam).get(name)
                if v is not None:
                    return v
        raise KeyError(name)

    def _names(self) -> Any:
        if self._release is None:
            return self._get()
        names = set(self._get())
        for fam in _tables().families():
            names.update(self._family(fam))
        return names

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._names()))

    def __len__(self) -> int:
        return len(self._names())

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        try:
            self[name]
        except KeyError:
            return False
        return True

    def with_prefix(self, prefix: str) -> Dict[str, int]:
        """The names starting with ``prefix`` and their values; only the families
        whose constant prefixes can produce such a name are read."""
        out = {n: v for n, v in self._get().items() if n.startswith(prefix)}
        if self._release is not None:
            t = _tables()
            for fam in t.families():
                if any(p.startswith(prefix) or prefix.startswith(p) for p in t.family_prefixes(fam)):
                    for n, v in self._family(fam).items():
                        if n.startswith(prefix):
                            out.setdefault(n, v)
        return out

    def __repr__(self) -> str:
        return "<constants %s/%s: %d names>" % (self._arch, self._key, len(self))


_maps: Dict[Tuple[str, str, str], Any] = {}


class Variant:
    """The ABI of one Xen release on one architecture (immutable, hashable)."""

    __slots__ = ("release", "xen", "arch", "domctl_interface_version",
                 "sysctl_interface_version", "dom0_op_interface_version",
                 "layout_key", "constants_key", "exact", "source")

    release: str
    xen: Tuple[int, ...]
    arch: str
    domctl_interface_version: Optional[int]
    sysctl_interface_version: Optional[int]
    dom0_op_interface_version: Optional[int]
    layout_key: str
    constants_key: str
    exact: bool
    source: str

    def __init__(self, release: str, xen: Tuple[int, ...], arch: str,
                 domctl: Optional[int], sysctl: Optional[int], dom0_op: Optional[int],
                 layout_key: str, constants_key: str, exact: bool, source: str) -> None:
        for k, v in (("release", release), ("xen", tuple(xen)), ("arch", arch),
                     ("domctl_interface_version", domctl),
                     ("sysctl_interface_version", sysctl),
                     ("dom0_op_interface_version", dom0_op),
                     ("layout_key", layout_key), ("constants_key", constants_key),
                     ("exact", exact), ("source", source)):
            object.__setattr__(self, k, v)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Variant is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Variant is immutable")

    def _ident(self) -> Tuple[str, str]:
        return (self.release, self.arch)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Variant):
            return NotImplemented
        return self._ident() == other._ident()

    def __hash__(self) -> int:
        return hash(self._ident())

    def __reduce__(self) -> Tuple[Any, Tuple[str, str]]:
        return (_by_release, (self.release, self.arch))

    @property
    def structs(self) -> StructMap:
        """Xen C type name (``xen_domctl``, ``xen_domctl_getdomaininfo``,
        ``xen_extraversion_t``, ``xen_memory_reservation``, ``evtchn_status``,
        ``start_info`` ...) -> ctypes type, built lazily and cached.
        ``*_t`` typedef names of structs map to the same class.  The names of
        the table families (``xenprivcmd.structs.families()``) are reached the
        same way as the core ones; their modules load on first use."""
        k = (self.arch, "L", self.release)
        m = _maps.get(k)
        if m is None:
            m = _maps.setdefault(k, _tables().StructMap(self.arch, self.layout_key.split("/", 1)[1],
                                                        self.release))
        return m  # type: ignore[no-any-return]

    @property
    def constants(self) -> Mapping[str, int]:
        """Macro name -> integer value (``XEN_DOMCTL_*``, ``__HYPERVISOR_*``,
        ``XENMEM_*``, ``EVTCHNOP_*``, ``HVM_PARAM_*``, ``XS_*`` ...)."""
        k = (self.arch, "C", self.release)
        m = _maps.get(k)
        if m is None:
            m = _maps.setdefault(k, _Consts(self.arch, self.constants_key.split("/", 1)[1], self.release))
        return m  # type: ignore[no-any-return]

    @property
    def is_dom0_op(self) -> bool:
        """True for Xen 3.0.0-3.0.2, which use ``dom0_op`` (hypercall 7)."""
        return self.domctl_interface_version is None

    def __repr__(self) -> str:
        if self.domctl_interface_version is None:
            iface = "dom0_op=%s" % _h(self.dom0_op_interface_version)
        else:
            iface = "domctl=%s sysctl=%s" % (_h(self.domctl_interface_version),
                                             _h(self.sysctl_interface_version))
        return "<xenprivcmd.abi.Variant %s %s %s layout=%s%s>" % (
            self.release, self.arch, iface, self.layout_key, "" if self.exact else " approx")


def _h(v: Optional[int]) -> str:
    return "None" if v is None else "0x%x" % v


# --------------------------------------------------------------------------

_variants: Dict[Tuple[str, str], Variant] = {}
_rows: Optional[Dict[str, Tuple[Any, ...]]] = None


def _release_rows() -> Dict[str, Tuple[Any, ...]]:
    global _rows
    if _rows is None:
        _rows = {r[0]: r for r in _tables().release_table()}
    return _rows


def _by_release(release: str, arch: str) -> Variant:
    v = _variants.get((release, arch))
    if v is not None:
        return v
    row = _release_rows().get(release)
    if row is None:
        raise UnknownABIError("unknown Xen release %r (known: %s .. %s)"
                              % (release, releases()[0], releases()[-1]))
    if arch not in _tables().arches():
        raise UnknownABIError("no ABI tables for arch %r (known: %s)"
                              % (arch, ", ".join(_tables().arches())))
    keys = _tables().keys_for(arch, release)
    if keys is None:
        raise UnknownABIError("no %s ABI tables for Xen %s" % (arch, release))
    name, xen, dv, sv, ov, exact, source = row
    v = Variant(name, xen, arch, dv, sv, ov, "%s/%s" % (arch, keys[0]),
                "%s/%s" % (arch, keys[1]), exact, source)
    return _variants.setdefault((release, arch), v)


def releases() -> List[str]:
    """Every known release, oldest first; the development head is last."""
    return [r[0] for r in _tables().release_table()]


def head_release() -> str:
    """Name of the development head, e.g. ``"4.23-dev"``."""
    return str(_tables().head_release())


def arches() -> List[str]:
    return list(_tables().arches())


def interface_versions() -> Dict[str, Tuple[Optional[int], Optional[int]]]:
    """release -> (XEN_DOMCTL_INTERFACE_VERSION, XEN_SYSCTL_INTERFACE_VERSION);
    ``(None, None)`` for the dom0_op releases 3.0.0-3.0.2."""
    return {r[0]: (r[2], r[3]) for r in _tables().release_table()}


def candidates(major: int, minor: int, arch: str = DEFAULT_ARCH) -> List[Variant]:
    """All known releases of the ``major.minor`` series, newest first."""
    out = [_by_release(r[0], arch) for r in _tables().release_table()
           if tuple(r[1][:2]) == (major, minor)]
    out.reverse()
    return out


_VER_RE: Any = None


def _parse(xen: XenVersion) -> Tuple[Optional[str], Tuple[int, ...]]:
    """-> (exact release name or None, version tuple)."""
    if isinstance(xen, str):
        s = xen.strip()
        if s in _release_rows():
            return s, tuple(_release_rows()[s][1])
        global _VER_RE
        if _VER_RE is None:
            import re

            _VER_RE = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+)(?:\.(\d+))?)?(.*)$")
        mo = _VER_RE.match(s)
        if not mo:
            raise UnknownABIError("cannot parse Xen version %r" % (xen,))
        nums = tuple(int(g) for g in mo.groups()[:4] if g is not None)
        if mo.group(5) and len(nums) == 2:
            # "4.23-unstable", "4.23-rc", "4.23-dev": the series' newest entry
            return None, nums
        if mo.group(5) and len(nums) >= 3:
            raise UnknownABIError("unknown Xen release %r" % (xen,))
        return None, nums
    try:
        nums = tuple(int(x) for x in xen)
    except (TypeError, ValueError):
        raise UnknownABIError("cannot parse Xen version %r" % (xen,)) from None
    if not 2 <= len(nums) <= 4:
        raise UnknownABIError("Xen version must be (major, minor[, micro]), got %r" % (xen,))
    return None, nums


def _matches(v: Variant, domctl: Optional[int], sysctl: Optional[int]) -> bool:
    if domctl is not None and v.domctl_interface_version != domctl:
        return False
    if sysctl is not None and v.sysctl_interface_version != sysctl:
        return False
    return True


def variant(xen: XenVersion, domctl: Optional[int] = None, sysctl: Optional[int] = None,
            arch: str = DEFAULT_ARCH) -> Variant:
    """The ABI variant of a Xen release.

    ``xen`` is ``(major, minor)`` (-> the newest known point release of that
    series whose interface versions match ``domctl``/``sysctl`` when given),
    ``(major, minor, micro)`` or a release string such as ``"4.10.1"``.
    Raises :class:`UnknownABIError` for unknown releases or arches, and when
    ``domctl``/``sysctl`` do not match the release's interface versions.
    """
    if arch not in _tables().arches():
        raise UnknownABIError("no ABI tables for arch %r (known: %s)"
                              % (arch, ", ".join(_tables().arches())))
    name, nums = _parse(xen)
    if name is None and len(nums) >= 3:
        want = ".".join(str(n) for n in nums)
        if want not in _release_rows():
            raise UnknownABIError("unknown Xen release %s (known %d.%d releases: %s)" % (
                want, nums[0], nums[1],
                ", ".join(c.release for c in candidates(nums[0], nums[1], arch)) or "none"))
        name = want
    if name is not None:
        v = _by_release(name, arch)
        if not _matches(v, domctl, sysctl):
            raise UnknownABIError(
                "Xen %s has domctl interface %s and sysctl interface %s, not domctl=%s sysctl=%s"
                % (name, _h(v.domctl_interface_version), _h(v.sysctl_interface_version),
                   _h(domctl), _h(sysctl)))
        return v
    cands = candidates(nums[0], nums[1], arch)
    if not cands:
        raise UnknownABIError("unknown Xen series %d.%d (known: %s .. %s)"
                              % (nums[0], nums[1], releases()[0], releases()[-1]))
    for v in cands:
        if _matches(v, domctl, sysctl):
            return v
    seen = sorted({(c.domctl_interface_version, c.sysctl_interface_version) for c in cands},
                  key=lambda p: (p[0] or 0, p[1] or 0))
    raise UnknownABIError(
        "no known Xen %d.%d release has domctl=%s sysctl=%s (known pairs: %s)"
        % (nums[0], nums[1], _h(domctl), _h(sysctl),
           ", ".join("%s/%s" % (_h(a), _h(b)) for a, b in seen)))


class LinuxUAPI:
    """The Linux side of one arch: the kernel's uapi ``xen/privcmd.h``, ``xen/evtchn.h`` and
    ``xen/gntdev.h`` (ioctl argument structs and ``IOCTL_*`` request numbers of
    /dev/xen/privcmd, /dev/xen/evtchn, /dev/xen/gntdev).  Not per Xen release.

    >>> import ctypes
    >>> from xenprivcmd.abi import linux_uapi
    >>> u = linux_uapi("x86_64")
    >>> hex(u.constants["IOCTL_PRIVCMD_MMAPBATCH_V2"]), ctypes.sizeof(u.structs["privcmd_mmapbatch_v2"])
    ('0x205004', 32)
    """

    __slots__ = ("arch", "kernel", "source", "title", "structs", "constants")

    arch: str
    kernel: str
    source: str
    title: str
    structs: StructMap
    constants: Mapping[str, int]

    def __init__(self, arch: str) -> None:
        info = _tables().linux_uapi_info(arch)
        if info is None:
            raise UnknownABIError("no Linux uapi tables for arch %r" % (arch,))
        tid, key, title, source = info
        for k, v in (("arch", arch), ("kernel", key), ("source", source), ("title", title),
                     ("structs", _tables().StructMap(tid, key)), ("constants", _Consts(tid, key))):
            object.__setattr__(self, k, v)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("LinuxUAPI is immutable")

    def __repr__(self) -> str:
        return "<xenprivcmd.abi.LinuxUAPI %s: %s>" % (self.arch, self.source)


_linux: Dict[str, LinuxUAPI] = {}


def linux_uapi(arch: str = DEFAULT_ARCH) -> LinuxUAPI:
    """The Linux uapi tables of ``arch`` (``.structs``, ``.constants``, ``.source``).

    Raises :class:`UnknownABIError` for an arch without tables.
    """
    got = _linux.get(arch)
    if got is None:
        if arch not in _tables().arches():
            raise UnknownABIError("no ABI tables for arch %r (known: %s)"
                                  % (arch, ", ".join(_tables().arches())))
        got = _linux.setdefault(arch, LinuxUAPI(arch))
    return got

