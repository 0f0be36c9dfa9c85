"""Sphinx directives that generate documentation from xenprivcmd's own tables.

``.. xenprivcmd-abi-summary::`` and ``.. xenprivcmd-abi-table::`` read
:mod:`xenprivcmd.abi` (``releases()``, ``interface_versions()``, ``arches()``,
``variant()``) when the documentation is built, so the coverage table is
never copied by hand and follows every regeneration of the tables.
``.. xenprivcmd-abi-families::`` does the same for the table families and the
Linux uapi tables (:mod:`xenprivcmd.structs`, ``abi.linux_uapi()``).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective


def _hex(v: Optional[int]) -> str:
    return "" if v is None else "0x%x" % v


def _variant(release: str, arch: str) -> Any:
    from xenprivcmd import abi

    try:
        return abi.variant(release, arch=arch)
    except abi.UnknownABIError:
        return None


def abi_rows() -> List[List[str]]:
    """One row per release: release, domctl, sysctl, dom0_op, layouts, arches, headers."""
    from xenprivcmd import abi

    rows = []
    for rel in abi.releases():
        v = _variant(rel, "x86_64")
        arches = [a for a in abi.arches() if a == "x86_64" or _variant(rel, a) is not None]
        rows.append([
            rel,
            _hex(v.domctl_interface_version),
            _hex(v.sysctl_interface_version),
            _hex(v.dom0_op_interface_version),
            v.layout_key.split("/", 1)[1],
            ", ".join(arches),
            ("" if v.exact else "nearest: ") + v.source,
        ])
    return rows


def abi_summary() -> str:
    from xenprivcmd import abi

    rels = abi.releases()
    iv = abi.interface_versions()
    dom = sorted({d for d, _ in iv.values() if d is not None})
    sys_ = sorted({s for _, s in iv.values() if s is not None})
    dom0_op = [r for r, (d, _) in iv.items() if d is None]
    per_arch = {a: sum(1 for r in rels if a == "x86_64" or _variant(r, a) is not None) for a in abi.arches()}
    layouts = {row[4] for row in abi_rows()}
    return (
        f"The tables know {len(rels)} Xen releases, {rels[0]} .. {rels[-1]} "
        f"(the development head is {abi.head_release()}): "
        + ", ".join(f"{n} on {a}" for a, n in per_arch.items())
        + f". domctl interface versions {_hex(dom[0])} .. {_hex(dom[-1])}, sysctl "
        f"{_hex(sys_[0])} .. {_hex(sys_[-1])}; {len(dom0_op)} releases ({', '.join(dom0_op)}) use the "
        f"dom0_op interface instead. The releases share {len(layouts)} distinct x86_64 layout sets."
    )


def _first(family: str, arch: str) -> str:
    """The first release whose ``family`` tables on ``arch`` hold anything."""
    from xenprivcmd import abi, structs

    for rel in abi.releases():
        keys = structs.family_keys(arch, family, rel)
        tid = structs.table_id(arch, family)
        if keys is not None and (structs.layout_set(tid, keys[0]) or structs.const_set(tid, keys[1])):
            return rel
    return "-"


def family_rows() -> List[List[str]]:
    """One row per table family: family, x86_64 from, aarch64 from, names in the head release, holds."""
    from xenprivcmd import abi, structs

    head = abi.head_release()
    rows = []
    for fam in structs.families():
        counts = []
        for arch in abi.arches():
            keys = structs.family_keys(arch, fam, head)
            tid = structs.table_id(arch, fam)
            n_s = len(structs.layout_set(tid, keys[0])) if keys else 0
            n_c = len(structs.const_set(tid, keys[1])) if keys else 0
            counts.append(f"{arch}: {n_s} types, {n_c} constants")
        rows.append([fam] + [_first(fam, a) for a in abi.arches()] + ["; ".join(counts),
                                                                       structs.family_title(fam)])
    for arch in abi.arches():
        u = abi.linux_uapi(arch)
        rows.append([f"linux_uapi ({arch})"] + ["(not per release)" for _ in abi.arches()]
                    + [f"{arch}: {len(u.structs)} types, {len(u.constants)} constants", u.source])
    return rows


def _table(header: List[str], rows: List[List[str]], title: str) -> nodes.table:
    """A docutils table built as nodes (the same in .rst and MyST pages)."""
    table = nodes.table(classes=["xenprivcmd-abi"])
    table += nodes.title(text=title)
    group = nodes.tgroup(cols=len(header))
    table += group
    for _ in header:
        group += nodes.colspec(colwidth=1)

    def row(cells: List[str], literal: bool) -> nodes.row:
        r = nodes.row()
        for i, c in enumerate(cells):
            text: nodes.Node = nodes.literal(text=c) if literal and i < 5 and c else nodes.Text(c)
            r += nodes.entry("", nodes.paragraph("", "", text))
        return r

    head = nodes.thead()
    head += row(header, False)
    body = nodes.tbody()
    for cells in rows:
        body += row(cells, True)
    group += head
    group += body
    return table


class AbiSummary(SphinxDirective):
    def run(self) -> List[nodes.Node]:
        return [nodes.paragraph(text=abi_summary())]


class AbiTable(SphinxDirective):
    HEADER = ["release", "domctl", "sysctl", "dom0_op", "x86_64 layouts", "arches", "headers"]

    def run(self) -> List[nodes.Node]:
        return [_table(self.HEADER, abi_rows(), "Xen releases known to xenprivcmd.abi")]


class AbiFamilies(SphinxDirective):
    def run(self) -> List[nodes.Node]:
        from xenprivcmd import abi

        header = ["family"] + [f"from ({a})" for a in abi.arches()] + [f"in {abi.head_release()}", "holds"]
        return [_table(header, family_rows(), "Table families and the Linux uapi tables")]


def setup(app: Sphinx) -> Dict[str, Any]:
    app.add_directive("xenprivcmd-abi-summary", AbiSummary)
    app.add_directive("xenprivcmd-abi-table", AbiTable)
    app.add_directive("xenprivcmd-abi-families", AbiFamilies)
    return {"version": "1", "parallel_read_safe": True}
