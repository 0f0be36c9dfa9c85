"""Compile Xen public headers for one target and extract layouts + constants.

Generation-time only (needs gcc and pyelftools); never imported at run time.

The result of :func:`extract` is a plain-data description of one header tree:

* ``structs``: C name -> ``(kind, size, align, fields)`` where ``kind`` is
  ``"s"`` (struct) or ``"u"`` (union) and ``fields`` is a tuple of
  ``(field_name, byte_offset, spec)``.  ``spec`` is a type spec string:
  ``u8 u16 u32 u64 i8 i16 i32 i64 c f32 f64`` (scalars; ``c`` is plain
  ``char``), ``h`` (a Xen guest handle, 8-byte integer on 64-bit targets),
  ``p`` (a raw pointer), ``@NAME`` (a nested struct/union by C name),
  followed by zero or more ``[N]`` array dimensions.  An empty field name
  marks an anonymous struct/union member.
* ``typedefs``: typedef name -> spec (only for the typedefs we keep).
* ``constants``: macro name -> int.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set, Tuple

Field = Tuple[str, int, str]
StructRec = Tuple[str, int, int, Tuple[Field, ...]]


@dataclass(frozen=True)
class Target:
    """A compiler target. Keep everything target-specific here."""

    arch: str
    cc: str
    cflags: Tuple[str, ...] = ()
    #: oldest Xen release whose public headers support this target
    min_xen: Tuple[int, ...] = (3, 0, 0)

    @property
    def pointer_size(self) -> int:
        return 4 if self.arch in ("x86_32", "arm32") else 8


TARGETS: Dict[str, Target] = {
    "x86_64": Target("x86_64", os.environ.get("XENPRIVCMD_CC_X86_64", "gcc"), ("-m64",)),
    # arm64 support in the public headers starts with Xen 4.3
    "aarch64": Target("aarch64", os.environ.get("XENPRIVCMD_CC_AARCH64", "aarch64-linux-gnu-gcc"),
                      (), (4, 3, 0)),
}

# Headers included (when present) in the translation unit, in this order.
HEADERS_DOMCTL_ERA = ("xen.h", "version.h", "domctl.h", "sysctl.h")
HEADERS_DOM0OP_ERA = ("xen.h", "version.h", "dom0_ops.h", "sched_ctl.h")

# Struct/union/typedef names that are roots of the emitted closure.
ROOT_NAMES = (
    # wrappers
    "xen_domctl", "xen_sysctl", "dom0_op",
    # operation payloads (also reached through the wrappers)
    "xen_domctl_getdomaininfo", "xen_sysctl_getdomaininfolist",
    "xen_domctl_max_mem", "xen_domctl_max_vcpus", "xen_domctl_getvcpuinfo",
    "xen_domctl_vcpuaffinity", "xen_domctl_scheduler_op",
    "xen_domctl_sched_credit", "xen_domctl_sched_credit2",
    "xen_domctl_createdomain", "xen_arch_domainconfig",
    "xen_sysctl_physinfo", "xen_sysctl_sched_id", "xen_sysctl_readconsole",
    "xen_sysctl_cputopoinfo", "xen_sysctl_topologyinfo", "xen_sysctl_numainfo",
    "xen_sysctl_getcpuinfo", "xen_sysctl_cpuinfo", "xen_sysctl_cputopo",
    "xen_sysctl_meminfo", "xen_domctl_get_domain_state",
    "xen_cpumap", "xenctl_cpumap", "xenctl_bitmap",
    # xen_version payloads
    "xen_extraversion_t", "xen_compile_info", "xen_capabilities_info_t",
    "xen_changeset_info_t", "xen_platform_parameters", "xen_feature_info",
    "xen_build_id", "xen_varbuf", "xen_commandline_t", "xen_domain_handle_t",
)

# Macro name prefixes (or exact names) whose integer values are emitted.
CONST_PREFIXES = (
    "__HYPERVISOR_", "XEN_DOMCTL_", "XEN_SYSCTL_", "XENVER_", "XEN_DOMINF_",
    "_XEN_DOMINF_", "XEN_SCHEDULER_", "XEN_VCPUAFFINITY_", "XEN_X86_",
    "XEN_INVALID_", "DOMID_", "XENFEAT_", "DOM0_", "DOMFLAGS_", "SCHED_",
    "XEN_CPUPOOL_", "XEN_ARM_", "XEN_DOMCTL_CDF_",
)
CONST_EXACT = (
    "__XEN_LATEST_INTERFACE_VERSION__", "XEN_LEGACY_MAX_VCPUS", "MAX_VIRT_CPUS",
    "XEN_PAGE_SHIFT", "XEN_PAGE_SIZE",
)


class ExtractError(RuntimeError):
    pass


@dataclass
class Extracted:
    structs: Dict[str, Tuple[str, int, int, Tuple[Field, ...]]] = field(default_factory=dict)
    typedefs: Dict[str, str] = field(default_factory=dict)
    constants: Dict[str, int] = field(default_factory=dict)
    headers: Tuple[str, ...] = ()


def _run(cmd: Sequence[str], cwd: Optional[str] = None) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True)


def _tu(headers: Iterable[str], extra: str = "") -> str:
    lines = ["/* generated translation unit */", "#include <stdint.h>"]
    lines += ['#include "%s"' % h for h in headers]
    return "\n".join(lines) + "\n" + extra


def _base_flags(target: Target, incdir: str, extra_defines: Sequence[str]) -> List[str]:
    return [
        target.cc, *target.cflags, "-ffreestanding", "-std=gnu99", "-w",
        "-D__XEN_TOOLS__",
        "-D__XEN_INTERFACE_VERSION__=__XEN_LATEST_INTERFACE_VERSION__",
        *extra_defines,
        "-iquote", incdir,
    ]


def pick_headers(incdir: str) -> Tuple[str, ...]:
    if os.path.exists(os.path.join(incdir, "domctl.h")):
        cand = HEADERS_DOMCTL_ERA
    else:
        cand = HEADERS_DOM0OP_ERA
    return tuple(h for h in cand if os.path.exists(os.path.join(incdir, h)))


# --------------------------------------------------------------------------
# DWARF walking


class _Dwarf:
    def __init__(self, objpath: str, target: Target) -> None:
        from elftools.elf.elffile import ELFFile  # generation-time dependency

        self._fh = open(objpath, "rb")
        self.elf = ELFFile(self._fh)
        self.target = target
        dw = self.elf.get_dwarf_info()
        self.tags: Dict[str, object] = {}  # struct/union tag -> DIE
        self.typedefs: Dict[str, object] = {}  # typedef name -> DIE
        for cu in dw.iter_CUs():
            for die in cu.get_top_DIE().iter_children():
                if die.attributes.get("DW_AT_declaration"):
                    continue
                name = die.attributes.get("DW_AT_name")
                if name is None:
                    continue
                n = name.value.decode()
                if die.tag in ("DW_TAG_structure_type", "DW_TAG_union_type"):
                    self.tags.setdefault(n, die)
                elif die.tag == "DW_TAG_typedef":
                    self.typedefs.setdefault(n, die)
        # anonymous struct -> typedef name (typedef struct {...} foo_t;)
        self.anon_typedef: Dict[int, str] = {}
        for n, td in sorted(self.typedefs.items()):
            t = self._type(td)
            if t is not None and t.tag in ("DW_TAG_structure_type", "DW_TAG_union_type") \
                    and "DW_AT_name" not in t.attributes:
                self.anon_typedef.setdefault(t.offset, n)
        self.out: Dict[str, Tuple[str, int, int, Tuple[Field, ...]]] = {}
        self.names_by_off: Dict[int, str] = {}
        self.queue: List[object] = []

    def close(self) -> None:
        self._fh.close()

    def reset(self) -> None:
        """Forget what was emitted (the parsed DIEs stay): the next closure starts afresh."""
        self.out = {}
        self.names_by_off = {}
        self.queue = []

    def enumerators(self) -> Dict[str, int]:
        """Every enumerator of every enum type: name -> value (DW_AT_const_value)."""
        out: Dict[str, int] = {}

        def walk(die) -> None:  # type: ignore[no-untyped-def]
            for ch in die.iter_children():
                if ch.tag == "DW_TAG_enumeration_type":
                    for en in ch.iter_children():
                        if en.tag == "DW_TAG_enumerator":
                            n = en.attributes["DW_AT_name"].value.decode()
                            v = int(en.attributes["DW_AT_const_value"].value)
                            if out.setdefault(n, v) != v:
                                raise ExtractError("enumerator %s: %d and %d" % (n, out[n], v))
                elif ch.has_children:
                    walk(ch)

        for cu in self.elf.get_dwarf_info().iter_CUs():
            walk(cu.get_top_DIE())
        return out

    @staticmethod
    def _type(die):  # type: ignore[no-untyped-def]
        if "DW_AT_type" not in die.attributes:
            return None
        return die.get_DIE_from_attribute("DW_AT_type")

    def struct_name(self, die, hint: Optional[str] = None) -> str:  # type: ignore[no-untyped-def]
        if die.offset in self.names_by_off:
            return self.names_by_off[die.offset]
        name = die.attributes.get("DW_AT_name")
        if name is not None:
            n = name.value.decode()
        elif die.offset in self.anon_typedef:
            n = self.anon_typedef[die.offset]
            if n.endswith("_t") and n[:-2] not in self.tags:
                n = n[:-2]
        elif hint is not None:
            n = hint
        else:
            raise ExtractError("anonymous struct without a name hint at %#x" % die.offset)
        self.names_by_off[die.offset] = n
        return n

    def spec(self, die, hint: str) -> str:  # type: ignore[no-untyped-def]
        """Type spec for a type DIE (see module doc)."""
        dims: List[int] = []
        while True:
            tag = die.tag
            if tag in ("DW_TAG_const_type", "DW_TAG_volatile_type", "DW_TAG_restrict_type",
                       "DW_TAG_atomic_type"):
                t = self._type(die)
                if t is None:
                    raise ExtractError("qualified void")
                die = t
                continue
            if tag == "DW_TAG_typedef":
                n = die.attributes["DW_AT_name"].value.decode()
                if n.startswith("__guest_handle"):
                    tgt = self._handle_target(die)
                    if tgt is not None:
                        self._follow(tgt)
                    base = "h"
                    break
                die = self._type(die)
                continue
            if tag == "DW_TAG_array_type":
                adims = []
                for sub in die.iter_children():
                    if sub.tag != "DW_TAG_subrange_type":
                        continue
                    if "DW_AT_count" in sub.attributes:
                        adims.append(int(sub.attributes["DW_AT_count"].value))
                    elif "DW_AT_upper_bound" in sub.attributes:
                        adims.append(int(sub.attributes["DW_AT_upper_bound"].value) + 1)
                    else:
                        adims.append(0)
                dims.extend(adims)
                die = self._type(die)
                continue
            if tag == "DW_TAG_pointer_type":
                tgt = self._type(die)
                if tgt is not None:
                    self._follow(tgt)
                base = "p"
                break
            if tag == "DW_TAG_base_type":
                base = self._base(die)
                break
            if tag == "DW_TAG_enumeration_type":
                size = int(die.attributes["DW_AT_byte_size"].value)
                signed = False
                ut = self._type(die)
                if ut is not None and ut.tag == "DW_TAG_base_type":
                    signed = self._base(ut).startswith("i")
                base = ("i" if signed else "u") + str(size * 8)
                break
            if tag in ("DW_TAG_structure_type", "DW_TAG_union_type"):
                n = self.struct_name(die, hint)
                self.queue.append(die)
                base = "@" + n
                break
            raise ExtractError("unsupported type DIE %s" % tag)
        return base + "".join("[%d]" % d for d in dims)

    def _handle_target(self, td):  # type: ignore[no-untyped-def]
        st = self._type(td)
        while st is not None and st.tag == "DW_TAG_typedef":
            st = self._type(st)
        if st is None:
            return None
        for m in st.iter_children():
            if m.tag == "DW_TAG_member":
                p = self._type(m)
                if p is not None and p.tag == "DW_TAG_pointer_type":
                    return self._type(p)
        return None

    def _follow(self, die) -> None:  # type: ignore[no-untyped-def]
        """Pointer / guest handle target: emit it too if it is a struct."""
        while die is not None and die.tag in ("DW_TAG_const_type", "DW_TAG_volatile_type",
                                              "DW_TAG_typedef"):
            die = self._type(die)
        if die is None or die.tag not in ("DW_TAG_structure_type", "DW_TAG_union_type"):
            return
        if "DW_AT_name" not in die.attributes and die.offset not in self.anon_typedef:
            return
        self.struct_name(die)
        self.queue.append(die)

    @staticmethod
    def _base(die) -> str:  # type: ignore[no-untyped-def]
        enc = int(die.attributes["DW_AT_encoding"].value)
        size = int(die.attributes["DW_AT_byte_size"].value)
        name = die.attributes["DW_AT_name"].value.decode()
        if name == "char":
            return "c"
        if enc == 0x04:  # float
            return "f%d" % (size * 8)
        if enc in (0x05, 0x06):  # signed, signed_char
            return "i%d" % (size * 8)
        if enc in (0x02, 0x07, 0x08, 0x10):  # boolean, unsigned, unsigned_char, UTF
            return "u%d" % (size * 8)
        raise ExtractError("unsupported base type %s (encoding %d)" % (name, enc))

    def emit_struct(self, die) -> None:  # type: ignore[no-untyped-def]
        name = self.struct_name(die)
        if name in self.out:
            return
        kind = "u" if die.tag == "DW_TAG_union_type" else "s"
        size = int(die.attributes["DW_AT_byte_size"].value)
        self.out[name] = (kind, size, 0, ())  # placeholder against recursion
        fields: List[Field] = []
        anon = 0
        for m in die.iter_children():
            if m.tag != "DW_TAG_member":
                continue
            if "DW_AT_bit_size" in m.attributes:
                # Bit-fields: keep the layout, not the bits. The storage
                # bytes of a run of bit-fields become one opaque u8 array.
                bits = int(m.attributes["DW_AT_bit_size"].value)
                if "DW_AT_data_bit_offset" in m.attributes:
                    bit0 = int(m.attributes["DW_AT_data_bit_offset"].value)
                else:
                    loc = m.attributes.get("DW_AT_data_member_location")
                    base_off = loc.value if loc is not None else 0
                    if "DW_AT_byte_size" in m.attributes:
                        bsz = int(m.attributes["DW_AT_byte_size"].value)
                    else:
                        t = self._type(m)
                        while "DW_AT_byte_size" not in t.attributes:
                            t = self._type(t)
                        bsz = int(t.attributes["DW_AT_byte_size"].value)
                    bo = int(m.attributes["DW_AT_bit_offset"].value)
                    bit0 = base_off * 8 + bsz * 8 - bo - bits
                lo, hi = bit0 // 8, (bit0 + bits + 7) // 8
                if fields and fields[-1][0].startswith("_bitfield"):
                    plo = fields[-1][1]
                    phi = plo + int(fields[-1][2][3:-1])
                    if lo < phi or kind == "u":
                        lo2, hi2 = min(lo, plo), max(hi, phi)
                        fields[-1] = (fields[-1][0], lo2, "u8[%d]" % (hi2 - lo2))
                        continue
                fields.append(("_bitfield%d" % lo, lo, "u8[%d]" % (hi - lo)))
                continue
            off = 0
            loc = m.attributes.get("DW_AT_data_member_location")
            if loc is not None:
                if not isinstance(loc.value, int):
                    raise ExtractError("non-constant member location in %s" % name)
                off = loc.value
            mname_a = m.attributes.get("DW_AT_name")
            if mname_a is None:
                mname = ""
                hint = "%s__anon%d" % (name, anon)
                anon += 1
            else:
                mname = mname_a.value.decode()
                hint = "%s__%s" % (name, mname)
            fields.append((mname, off, self.spec(self._type(m), hint)))
        align = int(die.attributes["DW_AT_alignment"].value) if "DW_AT_alignment" in die.attributes else 0
        self.out[name] = (kind, size, align, tuple(fields))

    def drain(self) -> None:
        while self.queue:
            self.emit_struct(self.queue.pop(0))


def _compile(target: Target, incdir: str, tu: str, extra_defines: Sequence[str],
             workdir: str, stem: str, debug: bool) -> "subprocess.CompletedProcess[str]":
    src = os.path.join(workdir, stem + ".c")
    with open(src, "w") as fh:
        fh.write(tu)
    cmd = _base_flags(target, incdir, extra_defines)
    if debug:
        cmd += ["-g", "-gdwarf-4", "-fno-eliminate-unused-debug-types"]
    cmd += ["-O0", "-c", "-o", os.path.join(workdir, stem + ".o"), src]
    return _run(cmd)


_DEFINE_RE = re.compile(r"^#define ([A-Za-z_][A-Za-z0-9_]*) (.*)$")


def _macros(target: Target, incdir: str, headers: Sequence[str], extra_defines: Sequence[str],
            workdir: str, tu: Optional[str] = None) -> Dict[str, str]:
    src = os.path.join(workdir, "macros.c")
    with open(src, "w") as fh:
        fh.write(_tu(headers) if tu is None else tu)
    p = _run(_base_flags(target, incdir, extra_defines) + ["-dM", "-E", src])
    if p.returncode != 0:
        raise ExtractError("preprocessing failed:\n" + p.stderr[-4000:])
    out: Dict[str, str] = {}
    for line in p.stdout.splitlines():
        mo = _DEFINE_RE.match(line)
        if mo:
            out[mo.group(1)] = mo.group(2).strip()
    return out


def _wanted_macro(name: str, body: str) -> bool:
    if not body or '"' in body or "'" in body:
        return False
    return name in CONST_EXACT or name.startswith(CONST_PREFIXES)


def _read_symbols(objpath: str, prefix: str) -> Dict[str, bytes]:
    from elftools.elf.elffile import ELFFile
    from elftools.elf.sections import SymbolTableSection

    res: Dict[str, bytes] = {}
    with open(objpath, "rb") as fh:
        elf = ELFFile(fh)
        datas: Dict[int, bytes] = {}
        for sec in elf.iter_sections():
            if not isinstance(sec, SymbolTableSection):
                continue
            for sym in sec.iter_symbols():
                if not sym.name.startswith(prefix):
                    continue
                shndx = sym["st_shndx"]
                if not isinstance(shndx, int):
                    continue
                if shndx not in datas:
                    datas[shndx] = elf.get_section(shndx).data()
                v = sym["st_value"]
                res[sym.name] = datas[shndx][v:v + sym["st_size"]]
        little = elf.little_endian
    return {k: (v if little else v[::-1]) for k, v in res.items()}


def _eval_constants(target: Target, incdir: str, headers: Sequence[str],
                    extra_defines: Sequence[str], workdir: str,
                    names: Sequence[str], tags: Dict[str, str],
                    tdefs: Sequence[str], tu: Optional[str] = None,
                    ) -> Tuple[Dict[str, int], Dict[str, Tuple[int, int]]]:
    """Let the compiler evaluate integer macros, sizeof and _Alignof."""
    items: List[Tuple[str, str]] = []
    for n in names:
        items.append(("__xpcv_" + n, "(unsigned long long)(%s)" % n))
        items.append(("__xpcn_" + n, "(unsigned long long)((%s) < 0)" % n))
    for n, kw in sorted(tags.items()):
        items.append(("__xpcs_" + n, "sizeof(%s %s)" % (kw, n)))
        items.append(("__xpca_" + n, "_Alignof(%s %s)" % (kw, n)))
    for n in tdefs:
        items.append(("__xpcs_" + n, "sizeof(%s)" % n))
        items.append(("__xpca_" + n, "_Alignof(%s)" % n))
    dropped: Set[str] = set()
    for _attempt in range(8):
        body = []
        index: Dict[int, str] = {}
        head = _tu(headers) if tu is None else tu
        lineno = head.count("\n") + 1
        for sym, expr in items:
            if sym in dropped:
                continue
            body.append("const unsigned long long %s = %s;" % (sym, expr))
            index[lineno] = sym
            lineno += 1
        p = _compile(target, incdir, head + "\n".join(body) + "\n", extra_defines, workdir,
                     "consts", debug=False)
        if p.returncode == 0:
            break
        bad = set()
        for mo in re.finditer(r"consts\.c:(\d+):\d+: error", p.stderr):
            ln = int(mo.group(1))
            if ln in index:
                bad.add(index[ln])
        if not bad:
            raise ExtractError("constant evaluation failed:\n" + p.stderr[-4000:])
        # drop the macro entirely (both value and sign probes)
        for b in list(bad):
            if b.startswith(("__xpcv_", "__xpcn_")):
                dropped.add("__xpcv_" + b[7:])
                dropped.add("__xpcn_" + b[7:])
            else:
                dropped.add(b)
    else:
        raise ExtractError("constant evaluation did not converge")
    syms = _read_symbols(os.path.join(workdir, "consts.o"), "__xpc")
    consts: Dict[str, int] = {}
    for n in names:
        v = syms.get("__xpcv_" + n)
        neg = syms.get("__xpcn_" + n)
        if v is None or neg is None:
            continue
        val = int.from_bytes(v, "little")
        if int.from_bytes(neg, "little"):
            val -= 1 << 64
        consts[n] = val
    sizes: Dict[str, Tuple[int, int]] = {}
    for n in list(tags) + list(tdefs):
        s, a = syms.get("__xpcs_" + n), syms.get("__xpca_" + n)
        if s is not None and a is not None:
            sizes[n] = (int.from_bytes(s, "little"), int.from_bytes(a, "little"))
    return consts, sizes


def _natural_align(spec: str, structs: Dict[str, Tuple[str, int, int, Tuple[Field, ...]]],
                   ptr: int) -> int:
    base = spec.split("[", 1)[0]
    if base.startswith("@"):
        return structs[base[1:]][2]
    if base in ("h", "p"):
        return ptr
    if base == "c":
        return 1
    return int(base[1:]) // 8


def _closure(dw: _Dwarf, roots: Sequence[str], root_prefixes: Sequence[str] = ()
             ) -> Tuple[Dict[str, StructRec], Dict[str, str], Dict[str, str]]:
    """The structs reached from ``roots`` (and every tag/typedef starting with one of
    ``root_prefixes``): (structs, typedef specs, tag name -> "struct"/"union")."""
    names = list(roots)
    if root_prefixes:
        extra = sorted({n for n in list(dw.tags) + list(dw.typedefs)
                        if n.startswith(tuple(root_prefixes))} - set(names))
        names += extra
    typedef_specs: Dict[str, str] = {}
    for r in names:
        if r in dw.tags:
            dw.struct_name(dw.tags[r])
            dw.queue.append(dw.tags[r])
        elif r in dw.typedefs:
            typedef_specs[r] = dw.spec(dw.typedefs[r], r)
        elif r.endswith("_t") is False and (r + "_t") in dw.typedefs:
            typedef_specs[r + "_t"] = dw.spec(dw.typedefs[r + "_t"], r)
    dw.drain()
    structs = dict(dw.out)
    # typedef aliases of emitted structs (foo_t -> @foo)
    emitted_offsets = {off: n for off, n in dw.names_by_off.items() if n in structs}
    for tn, td in dw.typedefs.items():
        if tn in structs or tn.startswith("__"):
            continue
        t = dw._type(td)
        while t is not None and t.tag == "DW_TAG_typedef":
            t = dw._type(t)
        if t is not None and t.offset in emitted_offsets:
            typedef_specs.setdefault(tn, "@" + emitted_offsets[t.offset])
    tags = {}
    for n, die in dw.tags.items():
        if n in structs and dw.names_by_off.get(die.offset) == n:
            tags[n] = "union" if die.tag == "DW_TAG_union_type" else "struct"
    return structs, typedef_specs, tags


def _fix_aligns(structs: Dict[str, StructRec], sizes: Dict[str, Tuple[int, int]], ptr: int) -> None:
    """Fill in alignment: compiler-reported for tagged types, computed otherwise."""

    def fix(n: str) -> int:
        kind, size, align, fields = structs[n]
        if align:
            return align
        if n in sizes:
            csize, align = sizes[n]
            if csize != size:
                raise ExtractError("sizeof(%s): DWARF %d, compiler %d" % (n, size, csize))
        else:
            align = 1
            for _f, _o, sp in fields:
                b = sp.split("[", 1)[0]
                if b.startswith("@"):
                    fix(b[1:])
                align = max(align, _natural_align(sp, structs, ptr))
        for _f, _o, sp in fields:
            b = sp.split("[", 1)[0]
            if b.startswith("@"):
                fix(b[1:])
        structs[n] = (kind, size, align, fields)
        return align

    for n in sorted(structs):
        fix(n)


def extract(incdir: str, target: Target, extra_defines: Sequence[str] = (),
            roots: Sequence[str] = ROOT_NAMES) -> Extracted:
    """Extract struct layouts and constants from the header tree ``incdir``."""
    incdir = os.path.abspath(incdir)
    headers = pick_headers(incdir)
    if "xen.h" not in headers:
        raise ExtractError("%s does not look like a Xen public header tree" % incdir)
    with tempfile.TemporaryDirectory(prefix="genstructs-") as wd:
        p = _compile(target, incdir, _tu(headers), extra_defines, wd, "types", debug=True)
        if p.returncode != 0:
            raise ExtractError("compiling headers in %s failed:\n%s" % (incdir, p.stderr[-4000:]))
        dw = _Dwarf(os.path.join(wd, "types.o"), target)
        try:
            structs, typedef_specs, tags = _closure(dw, roots)
        finally:
            dw.close()
        macros = _macros(target, incdir, headers, extra_defines, wd)
        cnames = sorted(n for n, b in macros.items() if _wanted_macro(n, b))
        tdef_probe = sorted(typedef_specs)
        consts, sizes = _eval_constants(target, incdir, headers, extra_defines, wd, cnames,
                                        tags, tdef_probe)
    _fix_aligns(structs, sizes, target.pointer_size)
    return Extracted(structs=structs, typedefs=typedef_specs, constants=consts,
                     headers=headers)


def _usable_macro(body: str) -> bool:
    # a string is no integer; a character constant is ('P' in _IOC(_IOC_NONE, 'P', 0, ...))
    return bool(body) and '"' not in body


def extract_families(incdir: str, target: Target, families: Sequence[Any],
                     extra_defines: Sequence[str] = (), tu: Optional[str] = None) -> Dict[str, Extracted]:
    """Extract every family (``genstructs.families.Family``) from the header tree ``incdir``.

    One translation unit (``tu``; by default ``xen.h`` and the families'
    headers present here) is compiled once; each family gets the closure of
    its roots and the macros (and enum constants, read from the DWARF)
    matching its prefixes.  A name the core tables take
    (``CONST_PREFIXES``/``CONST_EXACT``) is never a family's.
    """
    from .families import ext_headers, ext_tu

    incdir = os.path.abspath(incdir)
    headers = ext_headers(incdir)
    if "xen.h" not in headers:
        raise ExtractError("%s does not look like a Xen public header tree" % incdir)
    if tu is None:
        tu = ext_tu(incdir, headers)
    per: Dict[str, Tuple[Dict[str, StructRec], Dict[str, str], Dict[str, str]]] = {}
    with tempfile.TemporaryDirectory(prefix="genstructs-") as wd:
        p = _compile(target, incdir, tu, extra_defines, wd, "types", debug=True)
        if p.returncode != 0:
            raise ExtractError("compiling headers in %s failed:\n%s" % (incdir, p.stderr[-4000:]))
        dw = _Dwarf(os.path.join(wd, "types.o"), target)
        try:
            enums = dw.enumerators()
            for fam in families:
                dw.reset()
                per[fam.name] = _closure(dw, fam.roots, fam.root_prefixes)
        finally:
            dw.close()
        macros = _macros(target, incdir, headers, extra_defines, wd, tu=tu)
        core = set(n for n, b in macros.items() if _wanted_macro(n, b))
        wanted: Dict[str, List[str]] = {}
        for fam in families:
            wanted[fam.name] = sorted(n for n, b in macros.items()
                                      if fam.wants_const(n) and _usable_macro(b) and n not in core)
        all_names = sorted({n for v in wanted.values() for n in v})
        all_tags: Dict[str, str] = {}
        all_tdefs: Set[str] = set()
        for _s, tdefs, tags in per.values():
            all_tags.update(tags)
            all_tdefs.update(tdefs)
        consts, sizes = _eval_constants(target, incdir, headers, extra_defines, wd, all_names,
                                        all_tags, sorted(all_tdefs), tu=tu)
    out: Dict[str, Extracted] = {}
    for fam in families:
        structs, tdefs, _tags = per[fam.name]
        _fix_aligns(structs, sizes, target.pointer_size)
        c = {n: consts[n] for n in wanted[fam.name] if n in consts}
        for n, v in enums.items():  # enum constants (XS_*): a macro of the same name wins
            if fam.wants_const(n) and n not in macros and not _wanted_macro(n, "0"):
                c[n] = v
        out[fam.name] = Extracted(structs=structs, typedefs=tdefs, constants=dict(sorted(c.items())),
                                  headers=headers)
    return out
