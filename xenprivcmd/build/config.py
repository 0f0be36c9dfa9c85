"""A guest's configuration, read from xl's config files (xl.cfg(5)).

:class:`DomainConfig` holds the keys a guest built by xenprivcmd uses, each under its xl
name and in xl's unit (``memory`` and ``maxmem`` in MiB), with xl's defaults.  It is
immutable and checked when made: ``DomainConfig.from_xl(text)`` reads a config file,
``DomainConfig(name=..., kernel=..., ...)`` builds one in Python, ``to_xl()`` writes it
back (``from_xl(c.to_xl()) == c``).

A key xenprivcmd does not support is refused by name, never ignored (xl itself ignores
keys it does not know, and keys of the wrong kind, with a warning); a bad value names
the key and the rule; a syntax error names the line.  The keys:

==================  ==========================================================================
name                required
uuid                ``xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`` (default: a new one at creation)
type, builder       ``pv`` (x86_64), ``pvh`` (arm64's only kind; ``pv`` there means ``pvh``,
                    as libxl converts it); xl's abbreviations (``type="p"``) are read as xl
                    reads them; ``hvm`` is refused
memory, maxmem      MiB; each defaults to the other, both to 32 (libxl's default)
vcpus, maxvcpus     vcpus online at boot (default 1), and the most it may have (default vcpus)
cpus                hard affinity: ``"0-3,^1"``, ``"all"``, ``"nodes:0-1,^node:1"`` for every
                    vcpu, or a list with one such string per vcpu (``["2", "3-5"]``)
cpu_weight, cap     credit/credit2 scheduler weight (1..65535) and cap (percent of a cpu)
kernel, ramdisk     paths, read when the guest is built
cmdline             the kernel's command line; else ``root`` and ``extra`` make it, as xl:
root, extra         ``root=ROOT EXTRA``
on_poweroff         destroy (default), restart or preserve
on_reboot           restart (default), destroy or preserve
on_crash            destroy (default), restart or preserve
==================  ==========================================================================

>>> c = DomainConfig.from_xl('name = "web1"\\nkernel = "/boot/vmlinuz"\\nmemory = 512\\n'
...                          'vcpus = 2\\nroot = "/dev/xvda1 ro"\\nextra = "console=hvc0"\\n')
>>> c.name, c.memory, c.maxmem, c.vcpus, c.maxvcpus, c.kernel_cmdline, c.on_reboot
('web1', 512, 512, 2, 2, 'root=/dev/xvda1 ro console=hvc0', 'restart')
>>> DomainConfig.from_xl('name = "x"\\nkernel = "/k"\\nvif = ["bridge=xenbr0"]\\n')
Traceback (most recent call last):
...
xenprivcmd.errors.ConfigError: line 3: vif: key not supported by xenprivcmd (supported: name, uuid, type, builder, memory, maxmem, vcpus, maxvcpus, cpus, cpu_weight, cap, kernel, ramdisk, cmdline, root, extra, on_poweroff, on_reboot, on_crash)
"""

from __future__ import annotations

from ..errors import ConfigError
from . import xlcfg

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, FrozenSet, Iterable, List, Mapping, Optional, Sequence, Tuple, Union
    from uuid import UUID

    CpusValue = Union[None, str, Tuple[str, ...]]

__all__ = ["DomainConfig", "CpuTerm", "parse_cpus", "resolve_cpus", "SUPPORTED_KEYS", "ACTIONS"]

#: The keys :meth:`DomainConfig.from_xl` reads, in the order :meth:`DomainConfig.to_xl` writes them.
SUPPORTED_KEYS = ("name", "uuid", "type", "builder", "memory", "maxmem", "vcpus", "maxvcpus", "cpus",
                  "cpu_weight", "cap", "kernel", "ramdisk", "cmdline", "root", "extra",
                  "on_poweroff", "on_reboot", "on_crash")

#: on_poweroff / on_reboot / on_crash actions supported.
ACTIONS = ("destroy", "restart", "preserve")
#: Actions xl has that xenprivcmd refuses by name.
XL_ONLY_ACTIONS = ("rename-restart", "coredump-destroy", "coredump-restart", "soft-reset")

#: Guest types by architecture: what a config's type becomes (None: not given).
_TYPES = {"x86_64": {None: "pv", "pv": "pv"},
          "aarch64": {None: "pvh", "pv": "pvh", "pvh": "pvh"}}

#: libxl's default memory (MiB) when neither memory nor maxmem is given.
DEFAULT_MEMORY_MIB = 32
#: The most memory a config may ask for (MiB): 16 TiB, beyond any host Xen runs on.
MAX_MEMORY_MIB = 16 << 20
#: The most vcpus a guest may have (Xen's MAX_VIRT_CPUS for a PV guest).
MAX_VCPUS = 8192
WEIGHT_MIN, WEIGHT_MAX = 1, 65535
CAP_MAX = 65534  # Xen's field is 16 bits; libxl also bounds it by 100 per vcpu

#: Defaults of the keys that have one of their own (memory, maxmem and maxvcpus follow others).
_DEFAULTS: Dict[str, Any] = {"vcpus": 1, "on_poweroff": "destroy", "on_reboot": "restart", "on_crash": "destroy"}


class _Bad(Exception):
    """A bad value (the message names the rule, not the key)."""


# -- cpu lists (xl's update_cpumap_range / parse_cpurange) ---------------------------------

class CpuTerm:
    """One comma-separated term of an xl cpu list: ``remove`` for ``^``; ``kind`` ``"cpu"``,
    ``"node"`` or ``"all"``; ``first``..``last`` the range (``None`` for all)."""

    __slots__ = ("remove", "kind", "first", "last")

    def __init__(self, remove: bool, kind: str, first: Optional[int], last: Optional[int]) -> None:
        self.remove = remove
        self.kind = kind
        self.first = first
        self.last = last

    def __repr__(self) -> str:
        return f"CpuTerm({self.remove!r}, {self.kind!r}, {self.first!r}, {self.last!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CpuTerm):
            return NotImplemented
        return (self.remove, self.kind, self.first, self.last) == (other.remove, other.kind, other.first, other.last)

    def __hash__(self) -> int:
        return hash((self.remove, self.kind, self.first, self.last))


def _strtoul10(s: str) -> Tuple[Optional[int], str]:
    """C's strtoul(s, &end, 10) for what xl accepts: (value or None, the rest)."""
    i = 0
    while i < len(s) and s[i] in " \t\n\v\f\r":
        i += 1
    if i < len(s) and s[i] == "+":
        i += 1
    j = i
    while j < len(s) and s[j].isdigit() and s[j].isascii():
        j += 1
    if j == i:
        return None, s
    return int(s[i:j]), s[j:]


def parse_cpus(spec: str) -> Tuple[CpuTerm, ...]:
    """The terms of one xl cpu list (``"0-3,^1"``, ``"all,^node:1"``, ``"nodes:0-1"``).

    Raises ``ValueError`` naming the term, as xl refuses it (``"Invalid pcpu range"``,
    ``^all``), or for an empty list (xl would give a vcpu no cpu at all).

    >>> parse_cpus("0-2,^1")
    (CpuTerm(False, 'cpu', 0, 2), CpuTerm(True, 'cpu', 1, 1))
    """
    terms: List[CpuTerm] = []
    for tok in spec.split(","):
        if not tok:
            continue  # strtok skips empty fields
        t = tok
        remove = t.startswith("^")
        if remove:
            t = t[1:]
        kind = "cpu"
        for prefix in ("node:", "nodes:"):
            if t.startswith(prefix):
                kind, t = "node", t[len(prefix):]
                break
        if t == "all":
            if remove:
                raise ValueError(f"{tok!r}: can't combine \"^\" and \"all\"")
            terms.append(CpuTerm(False, "all" if kind == "cpu" else "node", None, None))
            continue
        first, rest = _strtoul10(t)
        last = first
        if first is not None and rest.startswith("-"):
            last, rest = _strtoul10(rest[1:])
        if first is None or last is None or rest or last < first:
            raise ValueError(f"invalid pcpu range {tok!r} (a cpu N, a range N-M with M >= N, node:N, all; "
                             "^ to remove)")
        terms.append(CpuTerm(remove, kind, first, last))
    if not terms:
        raise ValueError(f"{spec!r} names no cpu")
    return tuple(terms)


def resolve_cpus(terms: Iterable[CpuTerm], nr_cpus: int,
                 node_cpus: Optional[Mapping[int, Iterable[int]]] = None) -> FrozenSet[int]:
    """The host cpus a parsed cpu list means on a host of ``nr_cpus`` cpus whose NUMA
    node ``n`` has the cpus ``node_cpus[n]`` (terms apply in order: ``"all,^7"`` is every
    cpu but 7).

    Raises ``ValueError`` for a cpu or node the host does not have (xl would silently
    drop such a cpu), or when no cpu is left.

    >>> sorted(resolve_cpus(parse_cpus("all,^node:1,6"), 8, {0: [0, 1, 2, 3], 1: [4, 5, 6, 7]}))
    [0, 1, 2, 3, 6]
    """
    cpus: set[int] = set()
    for t in terms:
        if t.kind == "all" or (t.kind == "node" and t.first is None):
            cpus.update(range(nr_cpus))
            continue
        assert t.first is not None and t.last is not None
        if t.kind == "node":
            if node_cpus is None:
                raise ValueError("node: terms need the host's NUMA topology")
            chosen: set[int] = set()
            for n in range(t.first, t.last + 1):
                if n not in node_cpus:
                    raise ValueError(f"the host has no NUMA node {n} (nodes: {sorted(node_cpus)})")
                chosen.update(node_cpus[n])
        else:
            if t.last >= nr_cpus:
                raise ValueError(f"the host has no cpu {max(t.first, nr_cpus)} (cpus 0..{nr_cpus - 1})")
            chosen = set(range(t.first, t.last + 1))
        if t.remove:
            cpus -= chosen
        else:
            cpus |= chosen
    if not cpus:
        raise ValueError("no cpu left")
    return frozenset(cpus)


# -- value checks (each raises _Bad with the rule) -------------------------------------------

def _int(value: Any, lo: int, hi: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Bad(f"must be an integer ({what}), not {value!r}")
    if not lo <= value <= hi:
        raise _Bad(f"{value} is out of range {lo}..{hi} ({what})")
    return value


def _text(value: Any, empty_ok: bool = True) -> str:
    if not isinstance(value, str):
        raise _Bad(f"must be a string, not {type(value).__name__}")
    if not empty_ok and not value:
        raise _Bad("must not be empty")
    if "\0" in value:
        raise _Bad("must not contain a NUL character")
    return value


def _uuid(value: Any) -> Optional[UUID]:
    if value is None:
        return None
    from uuid import UUID

    if isinstance(value, UUID):
        return value
    s = _text(value)
    hexes = s.replace("-", "")
    if (len(s) != 36 or [i for i, ch in enumerate(s) if ch == "-"] != [8, 13, 18, 23]
            or not all(ch in "0123456789abcdefABCDEF" for ch in hexes)):
        raise _Bad(f"{s!r} is not a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx, 32 hex digits)")
    return UUID(s)


def _xl_type(value: str, builder: bool = False) -> str:
    """xl's reading of type= / builder= (``strncmp(buf, "hvm", strlen(buf))``: any
    prefix, the empty string included, of the first name that has it)."""
    names = (("hvm", "hvm"), ("generic", "pv")) if builder else (("hvm", "hvm"), ("pv", "pv"), ("pvh", "pvh"))
    for name, kind in names:
        if name.startswith(value):
            return kind
    choices = "hvm or generic" if builder else "pv, pvh or hvm"
    raise _Bad(f"{value!r} is not a domain type ({choices})")


def _type(value: Any) -> Optional[str]:
    if value is None:
        return None
    s = _text(value)
    if s not in ("pv", "pvh", "hvm"):
        s = _xl_type(s)
    if s == "hvm":
        raise _Bad("'hvm' guests are not supported by xenprivcmd (pv on x86_64, pvh on arm64)")
    return s


def _action(value: Any) -> str:
    s = _text(value)
    if s in ACTIONS:
        return s
    if s in XL_ONLY_ACTIONS:
        raise _Bad(f"action {s!r} is not supported by xenprivcmd (supported: {', '.join(ACTIONS)})")
    raise _Bad(f"unknown action {s!r} (xenprivcmd supports {', '.join(ACTIONS)}; xl also has "
               f"{', '.join(XL_ONLY_ACTIONS)})")


def _cpus(value: Any) -> CpusValue:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            parse_cpus(value)
        except ValueError as e:
            raise _Bad(str(e)) from None
        return value
    if isinstance(value, (list, tuple)):
        if not value:
            raise _Bad("an empty list gives no vcpu an affinity: leave cpus out instead")
        for i, v in enumerate(value):
            if not isinstance(v, str):
                raise _Bad(f"entry {i} (for vcpu {i}) must be a string, not {type(v).__name__}")
            try:
                parse_cpus(v)
            except ValueError as e:
                raise _Bad(f"entry {i} (for vcpu {i}): {e}") from None
        return tuple(value)
    raise _Bad(f"must be a cpu list string or a list of them, not {type(value).__name__}")


# -- the config ---------------------------------------------------------------------------

_FIELDS = ("name", "kernel", "uuid", "type", "memory", "maxmem", "vcpus", "maxvcpus", "cpus",
           "cpu_weight", "cap", "ramdisk", "cmdline", "root", "extra", "on_poweroff", "on_reboot", "on_crash")


class DomainConfig:
    """A guest's configuration (immutable, hashable; see the module's table of keys).

    Every argument is keyword-only and named as xl's key.  Raises :class:`ConfigError`
    (``key`` the argument, ``line`` ``None``) for a bad or contradictory value,
    ``TypeError`` for an unknown argument.

    >>> DomainConfig(name="db", kernel="/boot/vmlinuz", maxmem=1024, vcpus=2)
    DomainConfig(name='db', kernel='/boot/vmlinuz', memory=1024, maxmem=1024, vcpus=2, maxvcpus=2)
    >>> DomainConfig(name="db", kernel="/k", memory=0)
    Traceback (most recent call last):
    ...
    xenprivcmd.errors.ConfigError: memory: 0 is out of range 1..16777216 (MiB)
    """

    __slots__ = _FIELDS

    name: str
    kernel: str
    uuid: Optional[UUID]
    type: Optional[str]
    memory: int
    maxmem: int
    vcpus: int
    maxvcpus: int
    cpus: CpusValue
    cpu_weight: Optional[int]
    cap: Optional[int]
    ramdisk: Optional[str]
    cmdline: Optional[str]
    root: Optional[str]
    extra: Optional[str]
    on_poweroff: str
    on_reboot: str
    on_crash: str

    def __init__(self, *, name: str, kernel: str, uuid: Union[None, str, UUID] = None,
                 type: Optional[str] = None,  # noqa: A002 - xl's key
                 memory: Optional[int] = None, maxmem: Optional[int] = None, vcpus: int = 1,
                 maxvcpus: Optional[int] = None, cpus: Union[None, str, Sequence[str]] = None,
                 cpu_weight: Optional[int] = None, cap: Optional[int] = None, ramdisk: Optional[str] = None,
                 cmdline: Optional[str] = None, root: Optional[str] = None, extra: Optional[str] = None,
                 on_poweroff: str = "destroy", on_reboot: str = "restart", on_crash: str = "destroy") -> None:
        self._init(dict(name=name, kernel=kernel, uuid=uuid, type=type, memory=memory, maxmem=maxmem,
                        vcpus=vcpus, maxvcpus=maxvcpus, cpus=cpus, cpu_weight=cpu_weight, cap=cap,
                        ramdisk=ramdisk, cmdline=cmdline, root=root, extra=extra, on_poweroff=on_poweroff,
                        on_reboot=on_reboot, on_crash=on_crash), {}, None)

    def _init(self, v: Dict[str, Any], lines: Mapping[str, int], source: Optional[str]) -> None:
        def check(key: str, fn: Any, *args: Any) -> Any:
            try:
                return fn(v[key], *args)
            except _Bad as e:
                raise ConfigError(f"{key}: {e}", key=key, line=lines.get(key), source=source) from None

        def bad(key: str, message: str) -> ConfigError:
            return ConfigError(f"{key}: {message}", key=key, line=lines.get(key), source=source)

        out: Dict[str, Any] = {}
        out["name"] = check("name", _text, False)
        if any(ord(ch) < 32 for ch in out["name"]):
            raise bad("name", f"{out['name']!r} has a control character")
        out["kernel"] = check("kernel", _text, False)
        out["uuid"] = check("uuid", _uuid)
        out["type"] = check("type", _type)
        mem, maxmem = v["memory"], v["maxmem"]
        for key, val in (("memory", mem), ("maxmem", maxmem)):
            if val is not None:
                check(key, _int, 1, MAX_MEMORY_MIB, "MiB")
        if mem is None and maxmem is None:
            mem = maxmem = DEFAULT_MEMORY_MIB
        elif mem is None:
            mem = maxmem
        elif maxmem is None:
            maxmem = mem
        if maxmem < mem:
            raise bad("maxmem", f"maxmem ({maxmem} MiB) must be at least memory ({mem} MiB)")
        out["memory"], out["maxmem"] = mem, maxmem
        out["vcpus"] = check("vcpus", _int, 1, MAX_VCPUS, "vcpus online at boot")
        if v["maxvcpus"] is None:
            out["maxvcpus"] = out["vcpus"]
        else:
            out["maxvcpus"] = check("maxvcpus", _int, 1, MAX_VCPUS, "the most vcpus the guest may have")
            if out["maxvcpus"] < out["vcpus"]:
                raise bad("maxvcpus", f"maxvcpus ({out['maxvcpus']}) < vcpus ({out['vcpus']})")
        out["cpus"] = check("cpus", _cpus)
        if isinstance(out["cpus"], tuple) and len(out["cpus"]) > out["maxvcpus"]:
            raise bad("cpus", f"{len(out['cpus'])} entries for {out['maxvcpus']} vcpus (one entry per vcpu; "
                      "xl ignores the extra ones)")
        out["cpu_weight"] = None if v["cpu_weight"] is None else check(
            "cpu_weight", _int, WEIGHT_MIN, WEIGHT_MAX, "scheduler weight")
        if v["cap"] is None:
            out["cap"] = None
        else:
            out["cap"] = check("cap", _int, 0, CAP_MAX, "percent of one cpu, 0 for no cap")
            if out["cap"] > 100 * out["maxvcpus"]:
                raise bad("cap", f"{out['cap']} is more than 100 per vcpu ({out['maxvcpus']} vcpus: at most "
                          f"{100 * out['maxvcpus']})")
        for key in ("ramdisk", "cmdline", "root", "extra"):
            out[key] = None if v[key] is None else check(key, _text, key != "ramdisk")
        if out["cmdline"] is not None and (out["root"] is not None or out["extra"] is not None):
            both = "root and extra" if out["root"] is not None and out["extra"] is not None else (
                "root" if out["root"] is not None else "extra")
            raise bad("cmdline", f"cmdline and {both} are both set (xl then ignores {both}): give one")
        for key in ("on_poweroff", "on_reboot", "on_crash"):
            out[key] = check(key, _action)
        for k in _FIELDS:
            object.__setattr__(self, k, out[k])

    # -- reading xl ---------------------------------------------------------------------

    @classmethod
    def from_xl(cls, text: str, *, arch: Optional[str] = None, source: Optional[str] = None) -> DomainConfig:
        """Read an xl config (xl.cfg(5) syntax, :mod:`xenprivcmd.build.xlcfg`).

        ``arch`` (``"x86_64"``, ``"aarch64"``), when given, also checks that the guest
        type can be built there (an Arm guest's ``maxmem`` above ``memory`` is read, as xl
        reads it, and refused when it is built).  ``source`` names the file in error messages.
        Raises :class:`ConfigError` (``key``, ``line`` and ``source`` set where known):
        a syntax error; a key not supported (xl's other keys too); a list where one value
        is wanted or the reverse; a value that is not a number where one is wanted (xl
        reads numbers as C's ``strtol(s, 0)``: ``0x100`` is hex, ``010`` octal); a value
        out of range; values that contradict each other; no ``name`` or no ``kernel``.
        """
        settings = xlcfg.parse(text, source)
        lines = {k: s.line for k, s in settings.items()}

        def bad(key: str, message: str) -> ConfigError:
            return ConfigError(f"{key}: {message}", key=key, line=lines.get(key), source=source)

        unknown = [k for k in settings if k not in SUPPORTED_KEYS]
        if unknown:
            k = min(unknown, key=lambda u: lines[u])
            raise bad(k, f"key not supported by xenprivcmd (supported: {', '.join(SUPPORTED_KEYS)})")
        values: Dict[str, Any] = {}
        for key, s in settings.items():
            if key == "cpus":
                if isinstance(s.value, list):
                    for i, item in enumerate(s.value):
                        if not isinstance(item, str):
                            raise bad(key, f"entry {i} (for vcpu {i}) is a list; each entry is a cpu list string")
                    values[key] = tuple(s.value)
                else:
                    values[key] = s.value
                continue
            if not isinstance(s.value, str):
                raise bad(key, "is a list but should be a single value")
            if key in ("memory", "maxmem", "vcpus", "maxvcpus", "cpu_weight", "cap"):
                if s.op == "+=":
                    raise bad(key, "can't use += with numbers")
                n = xlcfg.parse_long(s.value)
                if n is None:
                    raise bad(key, f"{s.value!r} is not a valid number (decimal, 0x hex, or 0 octal as C's strtol)")
                values[key] = n
            else:
                values[key] = s.value
        for key in ("name", "kernel"):
            if key not in values:
                raise ConfigError(f"{key}: missing (a guest needs a {key})", key=key, line=None, source=source)
        builder = values.pop("builder", None)
        if builder is not None:
            try:
                kind = _xl_type(builder, builder=True)
            except _Bad as e:
                raise bad("builder", str(e)) from None
            if "type" in values:
                try:
                    given = _type(values["type"])
                except _Bad as e:
                    raise bad("type", str(e)) from None
                if given != kind:
                    raise bad("builder", "contradicting \"builder\" and \"type\" options specified")
            else:
                values["type"] = kind
                lines["type"] = lines["builder"]
        full: Dict[str, Any] = {f: values.get(f, _DEFAULTS.get(f)) for f in _FIELDS}
        cfg = cls.__new__(cls)
        cfg._init(full, lines, source)
        if "cpus" in values and "vcpus" not in values and "maxvcpus" not in values:
            # xl sizes the affinity array by max_vcpus, which is still 0 then: it drops cpus
            raise bad("cpus", "xl ignores cpus unless vcpus or maxvcpus is set: set vcpus")
        if arch is not None:
            try:
                cfg.domain_type(arch)
            except ConfigError as e:
                raise ConfigError(e.message, key="type", line=lines.get("type"), source=source) from None
        return cfg

    @classmethod
    def from_xl_file(cls, path: str, *, arch: Optional[str] = None) -> DomainConfig:
        """:meth:`from_xl` on a file's text (UTF-8; errors name the file).  Raises
        ``OSError`` when it cannot be read, :class:`ConfigError` as :meth:`from_xl`."""
        with open(path, "rb") as f:
            data = f.read()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            line = data[: e.start].count(b"\n") + 1
            raise ConfigError("not UTF-8 text", line=line, source=path) from None
        return cls.from_xl(text, arch=arch, source=path)

    # -- writing xl ---------------------------------------------------------------------

    def to_xl(self) -> str:
        """The config as xl config text, every key given (defaults spelled out), which
        :meth:`from_xl` reads back equal and xl reads the same."""
        lines = []
        for key in SUPPORTED_KEYS:
            if key == "builder":
                continue
            val = getattr(self, key)
            if val is None:
                continue
            if isinstance(val, tuple):
                text = "[" + ", ".join(xlcfg.quote(x) for x in val) + "]"
            elif isinstance(val, int):
                text = str(val)
            else:
                text = xlcfg.quote(str(val))
            lines.append(f"{key} = {text}\n")
        return "".join(lines)

    # -- what the builder uses ------------------------------------------------------------

    @property
    def memory_kib(self) -> int:
        """``memory`` in KiB (the balloon target at boot)."""
        return self.memory * 1024

    @property
    def maxmem_kib(self) -> int:
        """``maxmem`` in KiB (the domain's memory limit)."""
        return self.maxmem * 1024

    @property
    def kernel_cmdline(self) -> str:
        """The kernel's command line by xl's rule: ``cmdline``; else ``root=ROOT EXTRA``,
        ``root=ROOT`` or ``EXTRA``; else empty."""
        if self.cmdline is not None:
            return self.cmdline
        if self.root is not None and self.extra is not None:
            return f"root={self.root} {self.extra}"
        if self.root is not None:
            return f"root={self.root}"
        return self.extra or ""

    def domain_type(self, arch: str) -> str:
        """The kind of guest built on ``arch``: ``"pv"`` on x86_64, ``"pvh"`` on aarch64.
        Raises :class:`ConfigError` when the config's type cannot be built there."""
        table = _TYPES.get(arch)
        if table is None:
            raise ConfigError(f"type: xenprivcmd builds no guests on {arch!r} (x86_64, aarch64)", key="type")
        kind = table.get(self.type)
        if kind is None:
            raise ConfigError(f"type: {self.type!r} guests are not supported on {arch} by xenprivcmd "
                              f"(supported: {', '.join(sorted(k for k in table if k))})", key="type")
        return kind

    def hard_affinity(self, nr_cpus: int, node_cpus: Optional[Mapping[int, Iterable[int]]] = None,
                      ) -> Optional[Tuple[FrozenSet[int], ...]]:
        """Each vcpu's hard affinity on a host of ``nr_cpus`` cpus (``node_cpus``: NUMA
        node -> its cpus, for ``node:`` terms), or ``None`` when ``cpus`` is not set (no
        pinning).  A string gives every vcpu (``maxvcpus`` of them) the same set; a list
        gives vcpu ``i`` its entry ``i`` and the vcpus past its end every cpu.  Raises
        :class:`ConfigError` (key ``cpus``) for a cpu or node the host lacks."""
        if self.cpus is None:
            return None
        try:
            if isinstance(self.cpus, str):
                one = resolve_cpus(parse_cpus(self.cpus), nr_cpus, node_cpus)
                return (one,) * self.maxvcpus
            given = [resolve_cpus(parse_cpus(s), nr_cpus, node_cpus) for s in self.cpus]
        except ValueError as e:
            raise ConfigError(f"cpus: {e}", key="cpus") from None
        return tuple(given) + (frozenset(range(nr_cpus)),) * (self.maxvcpus - len(given))

    # -- value semantics ------------------------------------------------------------------

    def _values(self) -> Tuple[Any, ...]:
        return tuple(getattr(self, f) for f in _FIELDS)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DomainConfig):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("DomainConfig is immutable (make a new one with replace())")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("DomainConfig is immutable")

    def __reduce__(self) -> Tuple[Any, ...]:
        return (_rebuild, (self._kwargs(),))

    def _kwargs(self) -> Dict[str, Any]:
        kw = {f: getattr(self, f) for f in _FIELDS}
        if kw["uuid"] is not None:
            kw["uuid"] = str(kw["uuid"])
        return kw

    def replace(self, **changes: Any) -> DomainConfig:
        """A copy with some keys changed (checked as the constructor checks them).  A
        ``maxmem`` equal to ``memory`` follows a new ``memory`` (as it would have by
        default), a ``maxvcpus`` equal to ``vcpus`` a new ``vcpus``."""
        kw = self._kwargs()
        for k in changes:
            if k not in kw:
                raise TypeError(f"DomainConfig has no key {k!r}")
        for key, follower in (("memory", "maxmem"), ("vcpus", "maxvcpus")):
            if key in changes and follower not in changes and kw[follower] == kw[key]:
                kw[follower] = None
        kw.update(changes)
        return DomainConfig(**kw)

    def __repr__(self) -> str:
        parts = []
        for f in _FIELDS:
            val = getattr(self, f)
            if f in ("name", "kernel", "memory", "maxmem", "vcpus", "maxvcpus"):
                pass
            elif val is None or val == _DEFAULTS.get(f):
                continue
            if f == "uuid":
                val = str(val)
            parts.append(f"{f}={val!r}")
        return "DomainConfig(" + ", ".join(parts) + ")"


def _rebuild(kw: Dict[str, Any]) -> DomainConfig:
    return DomainConfig(**kw)
