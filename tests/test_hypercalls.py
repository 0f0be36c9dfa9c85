"""One hypercall vocabulary (xenprivcmd/abi/hypercalls.py, issue 13).

* only the vocabulary defines hypercall numbers and sub-op names (a check of the
  package's source, itself checked on planted copies);
* record/replay and tracing name every domctl/sysctl/dom0_op command of every
  release the same, as :func:`command_names` does;
* the names and numbers agree with facts of Xen's public headers: a few taken
  from them here, and the generated tables of every release.
"""

from __future__ import annotations

import ast
import ctypes
import errno
import pathlib
import re
import struct

import pytest

from xenprivcmd import abi, errors, record
from xenprivcmd.abi import hypercalls as hc
from xenprivcmd.transport import decode as trace

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "xenprivcmd"
VOCABULARY = PACKAGE / "abi" / "hypercalls.py"
RELEASES = abi.releases()

# -- only the vocabulary defines them ------------------------------------------------------------

#: Names that hold hypercall numbers, sub-op numbers or their name tables.
_VOCAB_NAME = re.compile(r"^_*(HYPERVISOR_[a-z]\w*|XENVER_\w+|XENMEM_\w+|HYPERCALLS|HYPERCALL_NAMES"
                         r"|DOM0_OP|MULTICALL|XEN_VERSION|SYSCTL|DOMCTL|MEMORY_OP)$")
_OP_NAME = re.compile(r"(^|_)op$")
_NUMBERS = set(hc.HYPERCALLS.values())
_KNOWN_NAMES = set(hc.HYPERCALLS) | set(hc.XENVER_NAMES.values())


def _int(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) is int


def _ints(node: ast.AST) -> bool:
    return _int(node) or (isinstance(node, (ast.Tuple, ast.List, ast.Set)) and any(_int(e) for e in node.elts))


def _name_of(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def _targets(node: ast.AST) -> list:
    if isinstance(node, (ast.Tuple, ast.List)):
        return [n for e in node.elts for n in _targets(e)]
    return [node]


def violations(source: str) -> list:
    """(line, what) of every place ``source`` defines or spells a hypercall number itself."""
    out = []
    for node in ast.walk(ast.parse(source)):
        targets = []
        if isinstance(node, ast.Assign):
            targets = [t for tgt in node.targets for t in _targets(tgt)]
        elif isinstance(node, ast.AnnAssign):
            targets = [node.target]
        for t in targets:
            if isinstance(t, ast.Name) and _VOCAB_NAME.match(t.id):
                out.append((node.lineno, f"assigns {t.id}"))
        if isinstance(node, ast.Dict) and node.keys:
            keys = [k for k in node.keys if k is not None]
            names = [v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str)]
            int_to_name = all(_int(k) for k in keys) and len(set(names) & _KNOWN_NAMES) >= 2
            strs = [k.value for k in keys if isinstance(k, ast.Constant) and isinstance(k.value, str)]
            name_to_int = len(set(strs) & set(hc.HYPERCALLS)) >= 2 and all(_int(v) for v in node.values)
            if int_to_name or name_to_int:
                out.append((node.lineno, "a table of hypercall or XENVER names"))
        if isinstance(node, ast.Call):
            fn = _name_of(node.func)
            at = {"hypercall": 0, "privcmd_hypercall": 0, "issue": 1}.get(fn)
            if at is not None and len(node.args) > at and _int(node.args[at]) and node.args[at].value in _NUMBERS:
                out.append((node.lineno, f"{fn}() of the number {node.args[at].value}"))
        if isinstance(node, ast.Compare) and _OP_NAME.search(_name_of(node.left)):
            if any(_ints(c) for c in node.comparators):
                out.append((node.lineno, f"{_name_of(node.left)} compared with a number"))
    return out


def _package_sources() -> list:
    return [p for p in sorted(PACKAGE.rglob("*.py"))
            if p != VOCABULARY and not (p.parent.name == "structs" and p.name.startswith("_gen_"))]


def test_only_the_vocabulary_defines_hypercall_numbers():
    sources = _package_sources()
    assert len(sources) > 40 and PACKAGE / "transport" / "decode.py" in sources
    found = [f"{p.relative_to(ROOT)}:{line}: {what}"
             for p in sources for line, what in violations(p.read_text(encoding="utf-8"))]
    assert found == []


@pytest.mark.parametrize("snippet", [
    "HYPERVISOR_domctl = 36",
    "_XEN_VERSION, _SYSCTL, _DOMCTL = 17, 35, 36",
    "HYPERCALL_NAMES = {v: k for k, v in X.items()}",
    "XENVER_NAMES = dict(zip(range(3), 'abc'))",
    "NAMES = {7: 'dom0_op', 13: 'multicall', 17: 'xen_version'}",
    "subs = {0: 'version', 1: 'extraversion'}",
    "CALLS = {'dom0_op': 7, 'xen_version': 17}",
    "lane = privcmd_hypercall(36, (0, 0, 0, 0, 0))",
    "t.hypercall(12, 18, 0)",
    "issue(t, 17, 0, hypercall='xen_version')",
    "if op == 36: pass",
    "ok = e_op in (35, 36)",
])
def test_the_check_finds_a_planted_copy(snippet):
    assert violations(snippet), snippet


def test_the_check_lets_uses_pass():
    assert violations(
        "from ._hypercalls import HYPERVISOR_domctl, XENVER_NAMES\n"
        "t.hypercall(HYPERVISOR_domctl, buf.address)\n"
        "if op == HYPERVISOR_domctl and sub == 0: pass\n"
        "SUBOP_NAMES = {n: 'XENVER_' + name for n, name in XENVER_NAMES.items()}\n"
        "HYPERCALL_BUF_PATH = '/dev/xen/hypercall'\n"
        "sched = {5: 'credit', 6: 'credit2'}\n"
    ) == []


# -- record and trace name every command the same -----------------------------------------------

def _families(v: abi.Variant) -> list:
    """(family, hypercall, interface version) of a release's command families."""
    if v.is_dom0_op:
        return [("dom0_op", hc.HYPERVISOR_dom0_op, v.dom0_op_interface_version)]
    return [("domctl", hc.HYPERVISOR_domctl, v.domctl_interface_version),
            ("sysctl", hc.HYPERVISOR_sysctl, v.sysctl_interface_version)]


_RECORDED = re.compile(r"^(\w+)\((\d+)\) (\w+)\((\d+)\)$")


def _named(v: abi.Variant, op: int, cmd: int, iv: int, buf: ctypes.Array) -> tuple:
    """(what a recording's label calls the command, what the tracer calls it)."""
    head = struct.pack("<II", cmd, iv)
    ctypes.memmove(buf, head, len(head))
    addr = ctypes.addressof(buf)
    m = _RECORDED.match(record.describe(op, (addr, 0, 0, 0, 0), head + bytes(8), addr))
    assert m is not None and (int(m[2]), int(m[4])) == (op, cmd)
    decoded, _req, _variant = trace.Decoder(v).request(op, (addr, 0, 0, 0, 0))
    return m[3], decoded.subop


def test_record_and_trace_name_every_command_of_every_release_the_same():
    """Both name a request by its interface version (they see bytes, not a release).  No
    domctl or sysctl was renamed within an interface version, so that is the release's
    own name; 3.0.0-3.0.2 share one dom0_op interface version, and 3.0.2 renamed two
    commands (DOM0_SETDOMAININFO 13 DOM0_SETVCPUCONTEXT, DOM0_PINCPUDOMAIN 20
    DOM0_SETVCPUAFFINITY): such requests are shown by the newer names."""
    buf = ctypes.create_string_buffer(1 << 16)
    compared = 0
    renamed = set()
    for release in RELEASES:
        v = abi.variant(release)
        for family, op, iv in _families(v):
            names = hc.command_names(v, family)
            assert names, (release, family)
            for cmd, name in names.items():
                shown = hc.interface_command_names(family, iv)[cmd]
                assert _named(v, op, cmd, iv, buf) == (shown, shown), (release, family, cmd)
                if shown != name:
                    renamed.add((release, family, cmd, name, shown))
                compared += 1
    assert compared > 10000
    assert renamed == {(r, "dom0_op", cmd, old, new) for r in ("3.0.0", "3.0.1") for cmd, old, new in
                       ((13, "setdomaininfo", "setvcpucontext"), (20, "pincpudomain", "setvcpuaffinity"))}


def test_a_number_no_release_of_the_interface_has_is_not_named():
    """Xen 4.17's sysctl 32 is nothing (XEN_SYSCTL_pm_op_get_cputopo was a pm_op
    sub-op of older releases, never a command): record and trace both say so."""
    v = abi.variant("4.17.0")
    buf = ctypes.create_string_buffer(1 << 12)
    assert 32 not in hc.command_names(v, "sysctl") and hc.command_names(v, "sysctl")[12] == "pm_op"
    assert _named(v, hc.HYPERVISOR_sysctl, 32, v.sysctl_interface_version, buf) == ("cmd", "cmd32")
    assert _named(v, hc.HYPERVISOR_sysctl, 12, v.sysctl_interface_version, buf) == ("pm_op", "pm_op")
    # vmtrace_op's sub-ops share its prefix but are not domctls: 1 is createdomain
    assert hc.command_names(v, "domctl")[1] == "createdomain" and hc.command_names(v, "domctl")[84] == "vmtrace_op"


def test_names_follow_the_release_of_the_interface_version():
    """Renamed commands: a request is named by the releases of its interface version."""
    for release, cmd, name in (("4.5.0", 16, "topologyinfo"), ("4.6.0", 16, "cputopoinfo"),
                               ("4.8.0", 23, "psr_cat_op"), ("4.17.0", 23, "psr_alloc")):
        iv = abi.variant(release).sysctl_interface_version
        assert hc.command_name(hc.HYPERVISOR_sysctl, cmd, iv) == name, release
    for release, name in (("4.4.0", "mem_event_op"), ("4.6.0", "vm_event_op")):
        iv = abi.variant(release).domctl_interface_version
        assert hc.command_name(hc.HYPERVISOR_domctl, 56, iv) == name, release
    # an interface version no release has (a probe of a development build): the newest's names
    assert hc.command_name(hc.HYPERVISOR_domctl, 5, 0xFFFF) == "getdomaininfo"
    assert hc.command_name(hc.HYPERVISOR_dom0_op, 12, 0x03000001) is None  # platform_op, not dom0_op
    assert hc.command_name(hc.HYPERVISOR_xen_version, 0, 0) is None


# -- facts of the headers ---------------------------------------------------------------------

#: {(release, family): {number: name}} as Xen's public headers define them
#: (domctl.h / sysctl.h since 3.0.3, dom0_ops.h before).
HEADER_FACTS = {
    ("3.0.3", "domctl"): {1: "createdomain", 2: "destroydomain", 3: "pausedomain", 4: "unpausedomain",
                          5: "getdomaininfo", 11: "max_mem", 14: "getvcpuinfo", 15: "max_vcpus", 16: "scheduler_op"},
    ("3.0.3", "sysctl"): {1: "readconsole", 3: "physinfo", 4: "sched_id", 6: "getdomaininfolist"},
    ("4.17.0", "domctl"): {5: "getdomaininfo", 9: "setvcpuaffinity", 25: "getvcpuaffinity", 1000: "gdbsx_guestmemio"},
    ("4.17.0", "sysctl"): {3: "physinfo", 6: "getdomaininfolist", 12: "pm_op", 18: "cpupool_op"},
    ("4.21.0", "domctl"): {90: "get_domain_state"},
    ("3.0.2", "dom0_op"): {8: "createdomain", 10: "pausedomain", 12: "getdomaininfo", 22: "physinfo",
                           28: "setdomainmaxmem", 38: "getdomaininfolist"},
}


@pytest.mark.parametrize("release, family", sorted(HEADER_FACTS))
def test_command_names_agree_with_the_headers(release, family):
    names = hc.command_names(abi.variant(release), family)
    assert {n: names.get(n) for n in HEADER_FACTS[release, family]} == HEADER_FACTS[release, family]


@pytest.mark.parametrize("arch", abi.arches())
def test_no_two_commands_of_a_release_share_a_number(arch):
    """An enumeration of a command's values missing from FIELD_ENUMS would show here
    (vmtrace_op's sub-ops 1..6 would collide with createdomain..getdomaininfo)."""
    for release in RELEASES:
        try:
            v = abi.variant(release, arch=arch)
        except abi.UnknownABIError:
            continue
        for family, (prefix, _lower) in hc.FAMILIES.items():
            numbers = [int(v.constants[m]) for m in v.constants
                       if m.startswith(prefix) and hc.is_command(family, m[len(prefix):])]
            assert len(numbers) == len(set(numbers)) == len(hc.command_names(v, family)), (release, family)


def test_every_field_enumeration_belongs_to_its_command():
    """Each enumeration of FIELD_ENUMS is in some release, and only in releases that
    have its command; and the command numbers are the same on every architecture."""
    seen = set()
    for release in RELEASES:
        v = abi.variant(release)
        for family, enums in hc.FIELD_ENUMS.items():
            prefix = hc.FAMILIES[family][0]
            names = [m[len(prefix):] for m in v.constants if m.startswith(prefix)]
            for command, enum in enums.items():
                if any(n.startswith(enum) and n != command for n in names):
                    seen.add((family, command))
                    assert command in names, (release, family, command)
        for arch in abi.arches():
            try:
                other = abi.variant(release, arch=arch)
            except abi.UnknownABIError:
                continue
            for family in hc.FAMILIES:
                assert hc.command_names(other, family) == hc.command_names(v, family), (release, arch)
    assert seen == {(f, c) for f, enums in hc.FIELD_ENUMS.items() for c in enums}


@pytest.mark.parametrize("release", [r for r in RELEASES if abi.variant(r).is_dom0_op])
def test_dom0_op_commands_are_the_union_members(release):
    v = abi.variant(release)
    members = {f[0] for f in v.structs["dom0_op__u"]._fields_}
    want = {int(v.constants["DOM0_" + m.upper()]): m for m in members if "DOM0_" + m.upper() in v.constants}
    assert hc.command_names(v, "dom0_op") == want


def test_hypercall_numbers_are_the_headers():
    """Each name is the number of the newest release that defines ``__HYPERVISOR_<name>``,
    and every hypercall of the newest release is named."""
    newest = {}
    for release in RELEASES:
        c = abi.variant(release).constants
        for m in c:
            if m.startswith("__HYPERVISOR_") and m[13:14].islower():
                newest[m[13:]] = int(c[m])
    for name, number in hc.HYPERCALLS.items():
        assert newest[name] == number, name
    head = abi.variant(abi.head_release()).constants
    for m in head:
        if m.startswith("__HYPERVISOR_") and m[13:14].islower() and not m.startswith("__HYPERVISOR_arch_"):
            assert hc.HYPERCALLS[m[13:]] == int(head[m]), m
            assert hc.HYPERCALL_NAMES[int(head[m])] == ("dom0_op" if m[13:] == "platform_op" else m[13:]), m
    # 7 is named as the package issues it: dom0_op (3.0.0-3.0.2), platform_op since
    assert hc.HYPERCALL_NAMES[7] == "dom0_op" and hc.HYPERCALLS["platform_op"] == 7
    assert (hc.HYPERVISOR_dom0_op, hc.HYPERVISOR_memory_op, hc.HYPERVISOR_multicall, hc.HYPERVISOR_xen_version,
            hc.HYPERVISOR_sysctl, hc.HYPERVISOR_domctl) == (7, 12, 13, 17, 35, 36)


def test_xenver_numbers_are_every_releases():
    for release in RELEASES:
        c = abi.variant(release).constants
        xenver = {int(c[m]): m[len("XENVER_"):] for m in c if m.startswith("XENVER_")}
        assert xenver and all(hc.XENVER_NAMES[n] == name for n, name in xenver.items()), release
    assert xenver == hc.XENVER_NAMES  # the newest has them all (the *2 sub-ops since 4.20)


# -- issue --------------------------------------------------------------------------------------

class _Failing:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc
        self.calls = []

    def hypercall(self, op, a0=0, a1=0, a2=0, a3=0, a4=0):
        self.calls.append((op, a0, a1))
        raise self.exc


def test_issue_raises_the_typed_error_naming_what_failed():
    t = _Failing(OSError(errno.ESRCH, "no"))
    with pytest.raises(errors.NoSuchDomain) as exc:
        hc.issue(t, hc.HYPERVISOR_domctl, 0x1000, subop="getdomaininfo", domid=7)
    assert t.calls == [(36, 0x1000, 0)]
    e = exc.value
    assert (e.errno, e.hypercall, e.subop, e.domid) == (errno.ESRCH, "domctl", "getdomaininfo", 7)
    assert str(e) == "domctl getdomaininfo(domid=7): no such domain (ESRCH)"
    assert e.__cause__ is None and e.__suppress_context__
    with pytest.raises(errors.InterfaceVersionMismatch):
        hc.issue(_Failing(OSError(errno.EACCES, "no")), hc.HYPERVISOR_sysctl, 0, subop="physinfo")
    with pytest.raises(errors.HypervisorPermissionError):
        hc.issue(_Failing(OSError(errno.EACCES, "no")), hc.HYPERVISOR_xen_version, 9, 0, subop="XENVER_commandline")
    with pytest.raises(errors.HypercallError) as exc:
        hc.issue(_Failing(OSError()), 99, 0)
    assert exc.value.errno == errno.EIO and exc.value.hypercall == "hypercall99"
    refused = errors.ReadOnlyError(errno.EPERM, "read-only")
    with pytest.raises(errors.ReadOnlyError) as exc:
        hc.issue(_Failing(refused), hc.HYPERVISOR_domctl, 0)
    assert exc.value is refused


def test_the_vocabulary_is_cheap_and_os_free():
    """Run-time imports: errno, the errors and the (lazy) ABI tables; the transport's
    types only for the type checker; nothing imported inside a function."""
    tree = ast.parse(VOCABULARY.read_text(encoding="utf-8"))
    runtime = set()
    for stmt in tree.body:
        if isinstance(stmt, ast.Import):
            runtime |= {a.name for a in stmt.names}
        elif isinstance(stmt, ast.ImportFrom):
            runtime.add("." * stmt.level + (stmt.module or ",".join(a.name for a in stmt.names)))
    assert runtime == {"__future__", "errno", "..abi", "..errors"}, runtime
    top = {id(s) for s in tree.body}
    nested = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) and id(n) not in top]
    guarded = [n for s in tree.body if isinstance(s, ast.If) and getattr(s.test, "id", "") == "TYPE_CHECKING"
               for n in ast.walk(s) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert nested == guarded and {n.module for n in guarded} == {"typing", "transport.privcmd", "errors"}
