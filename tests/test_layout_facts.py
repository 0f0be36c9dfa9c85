"""The layout tables against independently measured facts (offsetof, not DWARF).

``tests/data/layout_facts/<arch>.json.gz`` is written by
``tools/layout_facts.py``: for every release and arch, gcc evaluated
``sizeof``/``offsetof`` of every struct and field the tables name, and the
value of every constant they name, and the values were read from the
object's data section.  That covers the core tables, every table family
(memory, event channels, grants, HVM, sched, domain building, rings) and the
Linux uapi table of each arch.  Nothing here needs a compiler or the
network.  Any difference names release, table, struct and field.
"""

from __future__ import annotations

import functools
import gzip
import json
import os
import random
from typing import Any, Dict, List, Optional, Sequence, Tuple

import pytest

from xenprivcmd import abi, structs

FACTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "layout_facts")
ARCHES = structs.arches()

# (size, sign, {field key: (offset, size, sign)}); None where the facts skip a value
FactRow = Tuple[Optional[int], Optional[str], Dict[str, Tuple[Optional[int], Optional[int], Optional[str]]]]
Row = Tuple[str, str, int, int, Tuple[Tuple[str, int, str], ...]]

_SCALAR_SIZE = {"u8": 1, "u16": 2, "u32": 4, "u64": 8, "i8": 1, "i16": 2, "i32": 4, "i64": 8,
                "c": 1, "f32": 4, "f64": 8, "h": 8, "p": 8}
_SIGN = {"u8": "u", "u16": "u", "u32": "u", "u64": "u", "i8": "s", "i16": "s", "i32": "s", "i64": "s",
         "c": "c"}

#: releases known to have no facts (none: every claimed release compiled)
NO_FACTS: Dict[str, Tuple[str, ...]] = {}


@functools.cache
def load(arch: str) -> Dict[str, Any]:
    path = os.path.join(FACTS_DIR, "%s.json.gz" % arch)
    with open(path, "rb") as fh:
        doc: Dict[str, Any] = json.loads(gzip.decompress(fh.read()))
    assert doc["format"] == 2 and doc["arch"] == arch
    return doc


def _num(s: str) -> Optional[int]:
    return None if s == "-" else int(s)


def _val_sign(s: str) -> Tuple[Optional[int], Optional[str]]:
    v, _, sg = s.partition(":")
    return _num(v), sg or None


def parse_fact(text: str) -> Tuple[str, FactRow]:
    words = text.split(" ")
    size, sign = _val_sign(words[1])
    fields: Dict[str, Tuple[Optional[int], Optional[int], Optional[str]]] = {}
    for w in words[2:]:
        parts = w.split(":")
        fields[parts[0]] = (_num(parts[1]), _num(parts[2]), parts[3] if len(parts) > 3 else None)
    return words[0], (size, sign, fields)


@functools.cache
def tree_facts(arch: str, tree: str, family: Optional[str] = None) -> Dict[str, FactRow]:
    """Layout facts of one header tree: the core tables', or ``family``'s."""
    doc = load(arch)
    rows = doc["rows"]
    t = doc["trees"][tree] if family is None else doc["trees"][tree]["families"][family]
    return dict(parse_fact(rows[i]) for i in t["rows"])


def parse_const(text: str) -> Tuple[str, Optional[int]]:
    name, _, value = text.partition(" ")
    return name, _num(value)


@functools.cache
def tree_consts(arch: str, tree: str, family: Optional[str] = None) -> Dict[str, Optional[int]]:
    """Constant facts of one header tree: the core tables', or ``family``'s."""
    doc = load(arch)
    t = doc["trees"][tree] if family is None else doc["trees"][tree]["families"][family]
    return dict(parse_const(doc["consts"][i]) for i in t["consts"])


def facts_for(arch: str, release: str) -> Dict[str, FactRow]:
    return tree_facts(arch, load(arch)["releases"][release])


def _split(spec: str) -> Tuple[str, List[int]]:
    base, _, rest = spec.partition("[")
    dims = [int(d) for d in rest[:-1].split("][")] if rest else []
    return base, dims


def spec_size(rows: Sequence[Row], spec: str) -> int:
    """sizeof a type spec from the (possibly mutated) rows alone."""
    base, dims = _split(spec)
    n = rows[int(base[1:])][2] if base.startswith("#") else _SCALAR_SIZE[base]
    for d in dims:
        n *= d
    return n


class Result:
    def __init__(self) -> None:
        self.problems: List[str] = []
        self.compared = 0
        self.skipped: List[str] = []

    def check(self, what: str, table: Optional[object], fact: Optional[object]) -> None:
        if fact is None:
            self.skipped.append(what)
            return
        self.compared += 1
        if table != fact:
            self.problems.append("%s: table %s, facts %s" % (what, table, fact))


def compare_row(res: Result, where: str, rows: Sequence[Row], row: Row, fact: FactRow) -> None:
    """One struct/union row against its facts (size, every field's offset/size/signedness)."""
    cname, _kind, size, _align, fields = row
    fsize, _fsign, ffields = fact
    res.check("%s %s: sizeof" % (where, cname), size, fsize)
    keys = set()
    for i, (fname, off, spec) in enumerate(fields):
        key = fname or "_anon%d" % i
        keys.add(key)
        ff = ffields.get(key)
        if ff is None:
            res.problems.append("%s %s.%s: no facts for this field" % (where, cname, key))
            continue
        res.check("%s %s.%s: offset" % (where, cname, key), off, ff[0])
        res.check("%s %s.%s: size" % (where, cname, key), spec_size(rows, spec), ff[1])
        sign = _SIGN.get(_split(spec)[0])
        if sign is not None or ff[2] is not None:
            res.check("%s %s.%s: signedness" % (where, cname, key), sign, ff[2])
    for key in sorted(set(ffields) - keys):
        res.problems.append("%s %s.%s: in the facts, not in the table" % (where, cname, key))


def compare(arch: str, release: str, rows: Sequence[Row], lset: Dict[str, str],
            facts: Dict[str, FactRow]) -> Result:
    """Every name of one release's layout set against the facts of its header tree."""
    res = Result()
    where = "%s/%s" % (arch, release)
    for name in sorted(lset):
        spec = lset[name]
        fact = facts.get(name)
        if fact is None:
            res.problems.append("%s %s: no facts for this name" % (where, name))
            continue
        base, dims = _split(spec)
        if base.startswith("#") and not dims and rows[int(base[1:])][0] == name:
            compare_row(res, where, rows, rows[int(base[1:])], fact)
            continue
        # a typedef alias of a row, or a typedef of an array / scalar
        res.check("%s %s: sizeof" % (where, name), spec_size(rows, spec), fact[0])
        sign = _SIGN.get(base)
        if sign is not None or fact[1] is not None:
            res.check("%s %s: signedness" % (where, name), sign, fact[1])
    for name in sorted(set(facts) - set(lset)):
        res.problems.append("%s %s: in the facts, not in the layout set" % (where, name))
    return res


SKIP_KINDS = ("bit-field", "size of an anonymous member", "sizeof an anonymous type",
              "size of a flexible array member")


def skip_kind(what: str) -> str:
    """Why a skipped value has no fact (``what`` as :meth:`Result.check` names it)."""
    subject, _, value = what.split(" ", 1)[1].partition(": ")
    name, _, field = subject.partition(".")
    if field.startswith("_bitfield"):
        return "bit-field"
    if field.startswith("_anon") and value == "size":
        return "size of an anonymous member"
    if not field and "__anon" in name and value == "sizeof":
        return "sizeof an anonymous type"
    if field == "buf" and name in ("xen_build_id", "xen_varbuf") and value == "size":
        return "size of a flexible array member"
    return "unexpected: " + what


def claimed(arch: str) -> List[str]:
    return [r for r in abi.releases() if structs.keys_for(arch, r) is not None]


def compare_consts(where: str, table: Dict[str, int], facts: Dict[str, Optional[int]]) -> Result:
    """Every constant of a table against the value gcc gave it (and the same names both sides)."""
    res = Result()
    for name in sorted(set(table) | set(facts)):
        if name not in facts:
            res.problems.append("%s %s: no facts for this constant" % (where, name))
        elif name not in table:
            res.problems.append("%s %s: in the facts, not in the table" % (where, name))
        elif facts[name] is None:
            res.problems.append("%s %s: did not compile for the facts" % (where, name))
        else:
            res.check("%s %s: value" % (where, name), table[name], facts[name])
    return res


def _layout_key(arch: str, release: str) -> str:
    keys = structs.keys_for(arch, release)
    assert keys is not None
    return keys[0]


@functools.cache
def _compare_pair(arch: str, key: str, tree: str, release: str) -> Result:
    return compare(arch, release, structs.struct_rows(arch), structs.layout_set(arch, key),
                   tree_facts(arch, tree))


def compare_committed(arch: str, release: str) -> Result:
    """The committed tables of ``release``; releases sharing layout set and header tree share the work."""
    tree = load(arch)["releases"][release]
    return _compare_pair(arch, _layout_key(arch, release), tree, release)


# --------------------------------------------------------------------------
# the committed tables


def test_facts_exist_for_every_arch_and_release() -> None:
    assert set(ARCHES) >= {"x86_64", "aarch64"}
    for arch in ARCHES:
        doc = load(arch)
        want = claimed(arch)
        assert want, arch
        no_facts = [r for r in want if r not in doc["releases"]]
        assert no_facts == list(NO_FACTS.get(arch, ())), \
            "%s releases without layout facts: %s" % (arch, " ".join(no_facts))
        stale = sorted(set(doc["releases"]) - set(want))
        assert not stale, "%s facts for releases the tables do not have: %s" % (arch, stale)
        for tree, t in doc["trees"].items():
            assert not t["errors"], (arch, tree, t["errors"][:5])
    # every release has x86_64 facts; arm64 from 4.3.0
    assert claimed("x86_64") == abi.releases()
    assert claimed("aarch64")[0] == "4.3.0"


@pytest.mark.parametrize("arch", ARCHES)
def test_tables_match_independent_facts(arch: str) -> None:
    problems: List[str] = []
    compared = 0
    skipped: List[str] = []
    table_values = 0
    rows = structs.struct_rows(arch)
    for release in claimed(arch):
        res = compare_committed(arch, release)
        problems += res.problems
        compared += res.compared
        skipped += res.skipped
        assert res.compared > 500, (arch, release, res.compared)
        # every value of the release's tables was compared or deliberately skipped
        lset = structs.layout_set(arch, _layout_key(arch, release))
        for name, spec in lset.items():
            base, dims = _split(spec)
            if base.startswith("#") and not dims and rows[int(base[1:])][0] == name:
                fields = rows[int(base[1:])][4]
                table_values += 1 + sum(3 if _split(sp)[0] in _SIGN else 2 for _f, _o, sp in fields)
            else:
                table_values += 2 if base in _SIGN else 1
    assert not problems, "%d differences between the %s tables and the facts:\n%s" % (
        len(problems), arch, "\n".join(problems[:60]))
    assert compared + len(skipped) == table_values
    # skipped: only what C cannot measure
    kinds = {skip_kind(s) for s in skipped}
    assert kinds <= set(SKIP_KINDS), kinds
    assert len(skipped) < compared // 20
    floor = {"x86_64": 250_000, "aarch64": 190_000}.get(arch, 50_000)
    assert compared > floor, (arch, compared)
    print("%s: %d releases, %d comparisons, %d skipped" % (arch, len(claimed(arch)), compared, len(skipped)))


# --------------------------------------------------------------------------
# the comparison catches wrong tables (mutations of an in-memory copy)


def _sid(arch: str, release: str, name: str) -> int:
    spec = structs.layout_set(arch, _layout_key(arch, release))[name]
    assert spec.startswith("#") and "[" not in spec, spec
    return int(spec[1:])


def _swap(rows: Sequence[Row], sid: int, a: str, b: str) -> List[Row]:
    """A copy of ``rows`` where row ``sid`` has fields ``a`` and ``b`` at each other's offset.

    The names trade places and the offsets stay in order, as a generator that
    mixed up two same-typed members would write them: the row still builds a
    valid ctypes class with the same size, so only the facts can tell.
    """
    out = list(rows)
    cname, kind, size, align, fields = out[sid]
    offs = {f: o for f, o, _s in fields}
    specs = {f: sp for f, _o, sp in fields}
    assert offs[a] != offs[b] and specs[a] == specs[b], (cname, a, b)
    other = {a: b, b: a}
    out[sid] = (cname, kind, size, align, tuple((other.get(f, f), o, sp) for f, o, sp in fields))
    return out


def _users(arch: str, sid: int, name: str) -> List[str]:
    return [r for r in claimed(arch) if name in structs.layout_set(arch, _layout_key(arch, r))
            and structs.layout_set(arch, _layout_key(arch, r))[name] == "#%d" % sid]


def _caught(arch: str, release: str, rows: Sequence[Row], fields: Sequence[str]) -> List[str]:
    lset = structs.layout_set(arch, _layout_key(arch, release))
    res = compare(arch, release, rows, lset, facts_for(arch, release))
    for f in fields:
        assert any(".%s: offset" % f in p and release in p for p in res.problems), (arch, release, f, res.problems)
    return res.problems


def test_mutation_tot_pages_max_pages_swapped_in_the_4_3_to_4_10_row() -> None:
    arch = "x86_64"
    sid = _sid(arch, "4.3.0", "xen_domctl_getdomaininfo")
    users = _users(arch, sid, "xen_domctl_getdomaininfo")
    assert users[0] == "4.3.0" and users[-1] == "4.10.0", users
    rows = _swap(structs.struct_rows(arch), sid, "tot_pages", "max_pages")
    for rel in users:
        problems = _caught(arch, rel, rows, ("tot_pages", "max_pages"))
        assert any("%s/%s xen_domctl_getdomaininfo.tot_pages: offset" % (arch, rel) in p for p in problems)
    # the committed (unmutated) row passes
    assert not compare_committed(arch, "4.3.0").problems


@pytest.mark.parametrize("arch", ARCHES)
def test_mutation_shr_pages_paged_pages_swapped_in_domaininfo_rows(arch: str) -> None:
    seen = set()
    for rel in claimed(arch):
        lset = structs.layout_set(arch, _layout_key(arch, rel))
        spec = lset.get("xen_domctl_getdomaininfo")
        if spec is None:
            continue
        sid = int(spec[1:])
        names = {f for f, _o, _s in structs.struct_row(arch, sid)[4]}
        if sid in seen or not {"shr_pages", "paged_pages"} <= names:
            continue
        seen.add(sid)
        rows = _swap(structs.struct_rows(arch), sid, "shr_pages", "paged_pages")
        for user in _users(arch, sid, "xen_domctl_getdomaininfo"):
            _caught(arch, user, rows, ("shr_pages", "paged_pages"))
    assert len(seen) >= (5 if arch == "x86_64" else 3), seen


# getdomaininfo, physinfo and getvcpuinfo, in the domctl/sysctl and the dom0_op eras
MUTATED_STRUCTS = ("xen_domctl_getdomaininfo", "xen_sysctl_physinfo", "xen_domctl_getvcpuinfo",
                   "dom0_getdomaininfo", "dom0_physinfo", "dom0_getvcpuinfo")


def _same_typed_pairs(row: Row) -> List[Tuple[str, str]]:
    fields = [(f, o, sp) for f, o, sp in row[4] if f and not f.startswith("_bitfield")]
    return [(a[0], b[0]) for i, a in enumerate(fields) for b in fields[i + 1:]
            if a[2] == b[2] and a[1] != b[1]]


@pytest.mark.parametrize("arch", ARCHES)
def test_mutation_every_same_typed_swap_is_caught(arch: str) -> None:
    """Every swap of two same-typed fields in every release's rows of these structs.

    Each mutated row is compared with the facts of every header tree whose
    release uses it.
    """
    rows = structs.struct_rows(arch)
    users: Dict[int, Dict[str, str]] = {}  # row -> {header tree: a release using it}
    for rel in claimed(arch):
        lset = structs.layout_set(arch, _layout_key(arch, rel))
        for name in MUTATED_STRUCTS:
            spec = lset.get(name)
            if spec is not None:
                users.setdefault(int(spec[1:]), {}).setdefault(load(arch)["releases"][rel], rel)
    swaps = checks = 0
    seen_names = set()
    for sid, trees in sorted(users.items()):
        row = rows[sid]
        seen_names.add(row[0])
        for a, b in _same_typed_pairs(row):
            mutated = _swap(rows, sid, a, b)
            swaps += 1
            for tree, rel in sorted(trees.items()):
                res = Result()
                compare_row(res, "%s/%s" % (arch, rel), mutated, mutated[sid], tree_facts(arch, tree)[row[0]])
                flagged = {p.split(": ")[0].rsplit(".", 1)[1] for p in res.problems}
                assert flagged == {a, b}, (arch, rel, row[0], a, b, res.problems)
                checks += 1
    want = set(MUTATED_STRUCTS) if arch == "x86_64" else {n for n in MUTATED_STRUCTS if n.startswith("xen_")}
    assert seen_names == want
    assert swaps > (400 if arch == "x86_64" else 300), swaps
    assert checks > 5 * swaps, (swaps, checks)
    print("%s: %d swaps in %d rows, each caught in all of %d (row, tree) checks"
          % (arch, swaps, len(users), checks))


@pytest.mark.parametrize("seed", range(12))
def test_mutation_random_swap_in_random_release(seed: int) -> None:
    """End to end: a random same-typed swap, the whole release compared."""
    rnd = random.Random(seed)
    arch = rnd.choice(ARCHES)
    while True:
        rel = rnd.choice(claimed(arch))
        lset = structs.layout_set(arch, _layout_key(arch, rel))
        names = [n for n in MUTATED_STRUCTS if n in lset]
        if names:
            break
    name = rnd.choice(names)
    sid = int(lset[name][1:])
    a, b = rnd.choice(_same_typed_pairs(structs.struct_row(arch, sid)))
    mutated = _swap(structs.struct_rows(arch), sid, a, b)
    problems = _caught(arch, rel, mutated, (a, b))
    assert all(name in p for p in problems), problems


# --------------------------------------------------------------------------
# the table families (memory, event channels, grants, HVM, sched, build, rings)


FAMILIES = structs.families()


def _family_sets(arch: str) -> Dict[str, Dict[str, str]]:
    """family -> release -> tree, for every release whose family tables exist."""
    out: Dict[str, Dict[str, str]] = {}
    for fam in FAMILIES:
        for rel in claimed(arch):
            if structs.family_keys(arch, fam, rel) is not None:
                out.setdefault(fam, {})[rel] = load(arch)["releases"][rel]
    return out


@functools.cache
def _compare_family(arch: str, family: str, key: str, tree: str, release: str) -> Result:
    tid = structs.table_id(arch, family)
    return compare("%s/%s" % (arch, family), release, structs.struct_rows(tid), structs.layout_set(tid, key),
                   tree_facts(arch, tree, family))


def test_families_exist():
    assert FAMILIES == ("memory", "evtchn", "gnttab", "hvm", "sched", "build", "rings")
    for arch in ARCHES:
        for fam in FAMILIES:
            # every release of the arch has the family's keys (an empty set where its header is missing)
            assert [r for r in claimed(arch) if structs.family_keys(arch, fam, r) is None] == [], (arch, fam)


@pytest.mark.parametrize("arch", ARCHES)
def test_family_tables_match_independent_facts(arch: str) -> None:
    problems: List[str] = []
    compared = 0
    skipped: List[str] = []
    per_family: Dict[str, int] = {}
    for fam, rels in _family_sets(arch).items():
        tid = structs.table_id(arch, fam)
        for rel, tree in rels.items():
            assert fam in load(arch)["trees"][tree]["families"], (arch, rel, fam)
            assert not load(arch)["trees"][tree]["families"][fam]["errors"], (arch, rel, fam)
            keys = structs.family_keys(arch, fam, rel)
            assert keys is not None
            res = _compare_family(arch, fam, keys[0], tree, rel)
            problems += res.problems
            compared += res.compared
            skipped += res.skipped
            per_family[fam] = per_family.get(fam, 0) + res.compared
            if abi.variant(rel, arch=arch).xen >= (3, 1):  # every family's headers are there from 3.1
                assert structs.layout_set(tid, keys[0]), (arch, fam, rel)
    assert not problems, "%d differences between the %s family tables and the facts:\n%s" % (
        len(problems), arch, "\n".join(problems[:60]))
    kinds = {skip_kind(s) for s in skipped}
    assert kinds <= set(SKIP_KINDS), kinds
    assert len(skipped) < compared // 10
    assert set(per_family) == set(FAMILIES) and min(per_family.values()) > 100, per_family
    print("%s: %d family comparisons (%s), %d skipped" % (arch, compared, per_family, len(skipped)))


@pytest.mark.parametrize("arch", ARCHES)
def test_constants_match_independent_facts(arch: str) -> None:
    """Every constant of every table (core and families) of every release against gcc's value."""
    problems: List[str] = []
    compared = 0
    seen = set()
    for rel in claimed(arch):
        tree = load(arch)["releases"][rel]
        tables = [(None, structs.keys_for(arch, rel))]
        tables += [(f, structs.family_keys(arch, f, rel)) for f in FAMILIES]
        for fam, keys in tables:
            assert keys is not None, (arch, rel, fam)
            if (fam, keys[1], tree) in seen:
                continue
            seen.add((fam, keys[1], tree))
            table = structs.const_set(structs.table_id(arch, fam), keys[1])
            res = compare_consts("%s/%s %s" % (arch, rel, fam or "core"), table, tree_consts(arch, tree, fam))
            problems += res.problems
            compared += res.compared
    assert not problems, "%d constants differ from the facts:\n%s" % (len(problems), "\n".join(problems[:60]))
    assert compared > {"x86_64": 60_000, "aarch64": 40_000}.get(arch, 1000), compared
    print("%s: %d constant comparisons" % (arch, compared))


# The structs mutated in every family (every same-typed swap of their fields must be caught);
# sched's structs have no two fields of one type.
FAMILY_MUTATED = {
    "memory": ("xen_memory_reservation", "xen_add_to_physmap", "xen_mem_acquire_resource"),
    "evtchn": ("evtchn_alloc_unbound", "evtchn_bind_interdomain", "evtchn_status"),
    "gnttab": ("grant_entry_v1", "gnttab_query_size", "gnttab_map_grant_ref"),
    "hvm": ("xen_hvm_param",),
    "build": ("start_info", "vcpu_guest_context", "vcpu_guest_core_regs", "trap_info"),
    "rings": ("xencons_interface", "xenstore_domain_interface", "xsd_sockmsg"),
}


@pytest.mark.parametrize("arch", ARCHES)
def test_mutation_every_same_typed_swap_in_family_rows_is_caught(arch: str) -> None:
    """A family row with two same-typed fields swapped fails against the facts of every tree using it."""
    swaps = checks = 0
    seen_names = set()
    for fam, names in FAMILY_MUTATED.items():
        tid = structs.table_id(arch, fam)
        rows = structs.struct_rows(tid)
        users: Dict[int, Dict[str, str]] = {}
        for rel, tree in _family_sets(arch)[fam].items():
            keys = structs.family_keys(arch, fam, rel)
            assert keys is not None
            lset = structs.layout_set(tid, keys[0])
            for name in names:
                spec = lset.get(name)
                if spec is not None:
                    users.setdefault(int(spec[1:]), {}).setdefault(tree, rel)
        for sid, trees in sorted(users.items()):
            row = rows[sid]
            for a, b in _same_typed_pairs(row):
                mutated = _swap(rows, sid, a, b)
                swaps += 1
                seen_names.add(row[0])
                for tree, rel in sorted(trees.items()):
                    res = Result()
                    compare_row(res, "%s/%s" % (tid, rel), mutated, mutated[sid], tree_facts(arch, tree, fam)[row[0]])
                    flagged = {p.split(": ")[0].rsplit(".", 1)[1] for p in res.problems}
                    assert flagged == {a, b}, (arch, rel, row[0], a, b, res.problems)
                    checks += 1
    want = {"xen_memory_reservation", "xen_add_to_physmap", "evtchn_alloc_unbound", "evtchn_bind_interdomain",
            "evtchn_status", "grant_entry_v1", "gnttab_query_size", "gnttab_map_grant_ref", "xen_hvm_param",
            "vcpu_guest_context", "xencons_interface", "xenstore_domain_interface", "xsd_sockmsg"}
    assert want <= seen_names, want - seen_names
    assert swaps > 100 and checks > 3 * swaps, (swaps, checks)
    print("%s: %d swaps in family rows, each caught in all of %d (row, tree) checks" % (arch, swaps, checks))


def test_mutation_a_family_release_compared_end_to_end() -> None:
    """The whole 4.17.0 memory set with xen_memory_reservation's extent_order/mem_flags swapped."""
    arch, fam, rel = "x86_64", "memory", "4.17.0"
    tid = structs.table_id(arch, fam)
    keys = structs.family_keys(arch, fam, rel)
    assert keys is not None
    lset = structs.layout_set(tid, keys[0])
    sid = int(lset["xen_memory_reservation"][1:])
    rows = _swap(structs.struct_rows(tid), sid, "extent_order", "mem_flags")
    tree = load(arch)["releases"][rel]
    res = compare("%s/%s" % (arch, fam), rel, rows, lset, tree_facts(arch, tree, fam))
    assert any("xen_memory_reservation.extent_order: offset" in p for p in res.problems), res.problems
    assert any("xen_memory_reservation.mem_flags: offset" in p for p in res.problems), res.problems
    assert not _compare_family(arch, fam, keys[0], tree, rel).problems


@pytest.mark.parametrize("name, fam, arch", [
    ("XENMEM_populate_physmap", "memory", "x86_64"), ("EVTCHNOP_alloc_unbound", "evtchn", "aarch64"),
    ("HVM_PARAM_STORE_PFN", "hvm", "x86_64"), ("GUEST_MAGIC_BASE", "build", "aarch64"),
    ("FLAT_KERNEL_CS", "build", "x86_64"), ("XS_READ", "rings", "x86_64"), ("GTF_permit_access", "gnttab", "aarch64"),
    ("XEN_DOMCTL_getdomaininfo", None, "x86_64"), ("SHUTDOWN_poweroff", "sched", "x86_64"),
])
def test_mutation_a_wrong_constant_is_caught(name: str, fam: Optional[str], arch: str) -> None:
    rel = "4.17.0"
    keys = structs.keys_for(arch, rel) if fam is None else structs.family_keys(arch, fam, rel)
    assert keys is not None
    table = dict(structs.const_set(structs.table_id(arch, fam), keys[1]))
    facts = tree_consts(arch, load(arch)["releases"][rel], fam)
    where = "%s/%s" % (arch, rel)
    assert not compare_consts(where, table, facts).problems
    table[name] += 1
    assert compare_consts(where, table, facts).problems == [
        "%s %s: value: table %d, facts %d" % (where, name, table[name], table[name] - 1)]
    del table[name]
    assert compare_consts(where, table, facts).problems == ["%s %s: in the facts, not in the table" % (where, name)]


# --------------------------------------------------------------------------
# the Linux uapi tables


@pytest.mark.parametrize("arch", ARCHES)
def test_linux_uapi_table_matches_independent_facts(arch: str) -> None:
    info = structs.linux_uapi_info(arch)
    assert info is not None, arch
    tid, key, _title, source = info
    facts = load(arch)["linux"]
    assert facts["source"] == source and facts["kernel"] == key and not facts["errors"]
    rows = load(arch)["rows"]
    lfacts = dict(parse_fact(rows[i]) for i in facts["rows"])
    res = compare(tid, key, structs.struct_rows(tid), structs.layout_set(tid, key), lfacts)
    assert not res.problems, res.problems
    assert res.compared >= 250, res.compared
    cfacts = dict(parse_const(load(arch)["consts"][i]) for i in facts["consts"])
    cres = compare_consts(tid, dict(structs.const_set(tid, key)), cfacts)
    assert not cres.problems, cres.problems
    assert cres.compared >= 25, cres.compared
    # the ioctl argument structs and request numbers issue 24 names are there
    for name in ("privcmd_hypercall", "privcmd_mmapbatch_v2", "privcmd_mmap_resource",
                 "ioctl_evtchn_bind_interdomain", "ioctl_evtchn_bind_unbound_port", "ioctl_evtchn_bind_virq",
                 "ioctl_evtchn_notify", "ioctl_evtchn_unbind", "ioctl_gntdev_map_grant_ref",
                 "ioctl_gntdev_unmap_grant_ref", "ioctl_gntdev_grant_ref"):
        assert name in lfacts, name
    for name in ("IOCTL_PRIVCMD_HYPERCALL", "IOCTL_PRIVCMD_MMAPBATCH_V2", "IOCTL_PRIVCMD_MMAP_RESOURCE",
                 "IOCTL_PRIVCMD_RESTRICT", "IOCTL_EVTCHN_BIND_INTERDOMAIN", "IOCTL_EVTCHN_NOTIFY",
                 "IOCTL_EVTCHN_UNBIND", "IOCTL_GNTDEV_MAP_GRANT_REF", "IOCTL_GNTDEV_UNMAP_GRANT_REF"):
        assert cfacts.get(name) is not None, name


def test_mutation_linux_uapi_swap_and_wrong_request_number_are_caught() -> None:
    arch = "aarch64"
    info = structs.linux_uapi_info(arch)
    assert info is not None
    tid, key = info[0], info[1]
    lset = structs.layout_set(tid, key)
    rows = load(arch)["rows"]
    lfacts = dict(parse_fact(rows[i]) for i in load(arch)["linux"]["rows"])
    sid = int(lset["privcmd_mmap_resource"][1:])
    mutated = _swap(structs.struct_rows(tid), sid, "type", "idx")
    res = compare(tid, key, mutated, lset, lfacts)
    where = "%s/%s" % (tid, key)
    assert {p.split(": ")[0] for p in res.problems} == {
        "%s privcmd_mmap_resource.type" % where, "%s privcmd_mmap_resource.idx" % where}, res.problems
    table = dict(structs.const_set(tid, key))
    cfacts = dict(parse_const(load(arch)["consts"][i]) for i in load(arch)["linux"]["consts"])
    table["IOCTL_GNTDEV_MAP_GRANT_REF"] ^= 1 << 16  # a size field one byte off
    assert [p.split(": ")[0] for p in compare_consts(tid, table, cfacts).problems] == [
        "%s IOCTL_GNTDEV_MAP_GRANT_REF" % tid]
