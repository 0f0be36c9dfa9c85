"""The package's layering (issue 13): the import graph, read from the source with ``ast``.

Every module of ``xenprivcmd`` is parsed (nothing is imported but, for the shell's
command catalogue, ``xenprivcmd.shell.registry``) and its imports are sorted by where
they run:

- *module level*: at import time (``if``/``try``/``with`` blocks and class bodies included);
- *function level*: inside a function, when it is called;
- left out: under ``if TYPE_CHECKING:`` (never run) and ``if __name__ == "__main__":``.

``from . import x`` is an edge to the submodule ``x`` when there is one, ``from .m import
name`` an edge to ``m`` (or to ``m.name`` when that is a module); importing a submodule
also runs its package's ``__init__``, which is not counted as an edge (every submodule
would otherwise "import" its package).

The rules:

- the shell package has no import cycle, not even counting its function-level imports and
  the session's loading of a command's module by name (``registry.HOMES``);
- in the whole package, no module-level cycle and no function-level import that avoids one
  (one whose target reaches the importer at module level: hoisted, it would close a cycle),
  but for :data:`ALLOWED_CYCLES`: a new cycle fails;
- ``xenprivcmd/structs/`` never imports ``xenprivcmd.ops`` (anywhere, TYPE_CHECKING too);
- no module but the OS modules of ``xenprivcmd/transport/`` (:data:`OS_MODULES`: the privcmd
  device, guest mappings, the grant and event-channel devices) imports ``fcntl`` or ``mmap``
  (anywhere), and only ``transport/privcmd.py`` and ``transport/mapping.py`` (and the struct
  builder) read or write memory by address.

``python3 tests/test_layering.py`` prints the cycles it finds.
"""

from __future__ import annotations

import ast
import os
import sys
from typing import Dict, FrozenSet, Iterable, List, Optional, Set, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "xenprivcmd"
SHELL = "xenprivcmd.shell"

#: Cycles known outside the shell, each as the set of its modules: a cycle found must lie
#: within one of them.
#: None left (the last, ops/wire.py <-> ops/dom0op.py, went with the hypercall vocabulary).
ALLOWED_CYCLES: Tuple[FrozenSet[str], ...] = ()

MODULE, FUNCTION, TYPE_ONLY, MAIN = "module", "function", "type_checking", "main"

#: The modules that touch the operating system's devices and memory (open/ioctl/mmap).
OS_MODULES = frozenset({"xenprivcmd.transport.privcmd", "xenprivcmd.transport.mapping",
                        "xenprivcmd.transport.gntdev", "xenprivcmd.transport.evtchn"})

#: (importer, imported, where); ``imported`` is absolute: a module of the package, or any
#: other name as written (``fcntl``, ``os.path``).
Edge = Tuple[str, str, str]


def modules(root: str = ROOT) -> Dict[str, str]:
    """Every module of the package: dotted name -> file."""
    found: Dict[str, str] = {}
    for folder, dirs, files in os.walk(os.path.join(root, PACKAGE)):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for f in sorted(files):
            if f.endswith(".py"):
                parts = os.path.relpath(os.path.join(folder, f), root)[:-3].split(os.sep)
                if parts[-1] == "__init__":
                    parts = parts[:-1]
                found[".".join(parts)] = os.path.join(folder, f)
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return ((isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
            or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _is_main_guard(test: ast.expr) -> bool:
    return (isinstance(test, ast.Compare) and isinstance(test.left, ast.Name) and test.left.id == "__name__"
            and len(test.comparators) == 1 and isinstance(test.comparators[0], ast.Constant)
            and test.comparators[0].value == "__main__")


class _Collector(ast.NodeVisitor):
    def __init__(self, name: str, is_package: bool, known: Iterable[str]) -> None:
        self.name = name
        self.package = name if is_package else name.rpartition(".")[0]
        self.known = set(known)
        self.where: List[str] = [MODULE]
        self.edges: List[Edge] = []

    def _add(self, target: str) -> None:
        self.edges.append((self.name, target, self.where[-1]))

    def _nested(self, where: str, nodes: Iterable[ast.AST]) -> None:
        # inside a function stays "function"; TYPE_CHECKING and __main__ win over both
        self.where.append(where if where != FUNCTION or self.where[-1] == MODULE else self.where[-1])
        for n in nodes:
            self.visit(n)
        self.where.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._visit_def_time(node)
        self._nested(FUNCTION, node.body)

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._nested(FUNCTION, [node.body])

    def _visit_def_time(self, node: ast.FunctionDef) -> None:
        """What runs where the function is defined: decorators and default values."""
        for d in node.decorator_list + list(node.args.defaults) + list(node.args.kw_defaults or []):
            if d is not None:
                self.visit(d)

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test) or _is_main_guard(node.test):
            self.where.append(TYPE_ONLY if _is_type_checking(node.test) else MAIN)
            for n in node.body:
                self.visit(n)
            self.where.pop()
            for n in node.orelse:
                self.visit(n)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for a in node.names:
            self._add(a.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.package.split(".")
            base = base[: len(base) - (node.level - 1)]
            mod = ".".join(base + ([node.module] if node.module else []))
        else:
            mod = node.module or ""
        for a in node.names:
            sub = f"{mod}.{a.name}"
            self._add(sub if sub in self.known else mod)

    def visit_Call(self, node: ast.Call) -> None:
        # __import__("x") / importlib.import_module("x") with a constant name
        f = node.func
        name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
        if (name in ("__import__", "import_module") and node.args and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)):
            self._add(node.args[0].value)
        self.generic_visit(node)


def edges(root: str = ROOT) -> List[Edge]:
    """Every import of every module of the package."""
    mods = modules(root)
    out: List[Edge] = []
    for name, path in mods.items():
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        c = _Collector(name, path.endswith("__init__.py"), mods)
        c.visit(tree)
        out += [e for e in c.edges if e[1] != name]
    return out


def graph(all_edges: Iterable[Edge], kinds: Iterable[str], within: str = PACKAGE,
          names: Optional[Iterable[str]] = None) -> Dict[str, Set[str]]:
    """The edges of ``kinds`` between the modules (``names``, default the package's) under ``within``."""
    inside = {m for m in (modules() if names is None else names) if m == within or m.startswith(within + ".")}
    g: Dict[str, Set[str]] = {m: set() for m in inside}
    wanted = set(kinds)
    for a, b, where in all_edges:
        if where in wanted and a in inside and b in inside:
            g[a].add(b)
    return g


def cycles(g: Dict[str, Set[str]]) -> List[FrozenSet[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on: Set[str] = set()
    found: List[FrozenSet[str]] = []
    for start in sorted(g):
        if start in index:
            continue
        work = [(start, iter(sorted(g[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on.add(start)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(g.get(w, ())))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = set()
                while True:
                    x = stack.pop()
                    on.discard(x)
                    comp.add(x)
                    if x == v:
                        break
                if len(comp) > 1:
                    found.append(frozenset(comp))
    return found


def _path(g: Dict[str, Set[str]], a: str, b: str) -> Optional[List[str]]:
    """A shortest path a -> ... -> b in ``g``, or None."""
    prev: Dict[str, Optional[str]] = {a: None}
    todo = [a]
    while todo:
        nxt = []
        for v in todo:
            for w in sorted(g.get(v, ())):
                if w not in prev:
                    prev[w] = v
                    nxt.append(w)
        todo = nxt
    if b not in prev:
        return None
    out: List[str] = []
    at: Optional[str] = b
    while at is not None:
        out.append(at)
        at = prev[at]
    return out[::-1]


def avoided_cycles(all_edges: List[Edge], names: Optional[Iterable[str]] = None) -> List[List[str]]:
    """The cycles that function-level imports avoid: importer -> target (in a function),
    then target -> ... -> importer at module level."""
    top = graph(all_edges, [MODULE], names=names)
    out = []
    for a, b, where in sorted(set(all_edges)):
        if where == FUNCTION and a in top and b in top:
            back = _path(top, b, a)
            if back is not None:
                out.append([a] + back)
    return out


def shell_runtime_graph(all_edges: List[Edge]) -> Dict[str, Set[str]]:
    """The shell's imports as they run: module and function level, and the session's
    import of each command module by name (Session.command, registry.HOMES)."""
    sys.path.insert(0, ROOT)
    try:
        from xenprivcmd.shell.registry import HOMES
    finally:
        sys.path.remove(ROOT)
    g = graph(all_edges, [MODULE, FUNCTION], within=SHELL)
    g[f"{SHELL}.session"] |= {f"{SHELL}.{m}" for m in HOMES.values()}
    return g


def _allowed(cycle: Iterable[str]) -> bool:
    return any(set(cycle) <= allowed for allowed in ALLOWED_CYCLES)


# -- the tests --------------------------------------------------------------------------------

def test_the_cycle_finder_finds_cycles():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e"}}
    assert cycles(g) == [frozenset("abc")]
    assert _path(g, "c", "b") == ["c", "a", "b"] and _path(g, "d", "a") is None
    names = ["xenprivcmd.a", "xenprivcmd.b", "xenprivcmd.c"]
    e = [("xenprivcmd.a", "xenprivcmd.b", FUNCTION), ("xenprivcmd.b", "xenprivcmd.c", MODULE),
         ("xenprivcmd.c", "xenprivcmd.a", MODULE), ("xenprivcmd.c", "xenprivcmd.b", TYPE_ONLY)]
    assert avoided_cycles(e, names) == [["xenprivcmd.a", "xenprivcmd.b", "xenprivcmd.c", "xenprivcmd.a"]]
    assert cycles(graph(e, [MODULE], names=names)) == []
    assert avoided_cycles(e[:2], names) == []


def test_the_graph_sees_where_each_import_runs():
    e = set(edges())
    assert (f"{SHELL}.session", f"{SHELL}.registry", MODULE) in e
    assert (f"{SHELL}.domains", f"{SHELL}.session", TYPE_ONLY) in e
    assert (f"{SHELL}.allcommands", f"{SHELL}.xlstyle", MODULE) in e  # from . import xlstyle
    assert (f"{SHELL}.cli", f"{SHELL}.interactive", FUNCTION) in e
    assert ("xenprivcmd.transport.privcmd", "fcntl", MODULE) in e
    assert ("xenprivcmd.abi.__main__", "xenprivcmd.abi.show", MODULE) in e  # python3 -m xenprivcmd.abi


def test_the_shell_package_has_no_import_cycle():
    all_edges = edges()
    assert cycles(graph(all_edges, [MODULE], within=SHELL)) == []
    # nor when its function-level imports and the session's loading by name count
    assert cycles(shell_runtime_graph(all_edges)) == []
    assert [c for c in avoided_cycles(all_edges) if c[0].startswith(SHELL + ".")] == []


def test_no_new_import_cycle_in_the_package():
    all_edges = edges()
    new = [sorted(c) for c in cycles(graph(all_edges, [MODULE])) if not _allowed(c)]
    assert new == [], f"module-level import cycles: {new}"
    avoided = [c for c in avoided_cycles(all_edges) if not _allowed(c)]
    assert avoided == [], f"function-level imports that avoid a cycle: {avoided}"


def test_the_command_modules_never_import_the_session():
    """What makes the session's loading by name safe: the modules it loads import the
    session (or what imports it) only for type checking."""
    sys.path.insert(0, ROOT)
    try:
        from xenprivcmd.shell.registry import HOMES
    finally:
        sys.path.remove(ROOT)
    above = {f"{SHELL}.{m}" for m in ("session", "cli", "interactive", "commands")} | {SHELL}
    bad = [(a, b, w) for a, b, w in edges() if a in {f"{SHELL}.{m}" for m in HOMES.values()}
           and b in above and w != TYPE_ONLY]
    assert bad == []


def test_structs_never_import_ops():
    bad = [(a, b, w) for a, b, w in edges() if a.startswith("xenprivcmd.structs")
           and (b == "xenprivcmd.ops" or b.startswith("xenprivcmd.ops."))]
    assert bad == []


def test_only_the_os_modules_import_fcntl_or_mmap():
    users = {a for a, b, _ in edges() if b.split(".")[0] in ("fcntl", "mmap")}
    assert users == OS_MODULES


#: ctypes' ways to read or write memory by address.
RAW_MEMORY = frozenset({"string_at", "memset", "memmove", "from_address", "wstring_at"})


def raw_memory_uses(root: str = ROOT) -> Dict[str, List[int]]:
    """Module -> lines that use one of :data:`RAW_MEMORY` (as an attribute or a name)."""
    out: Dict[str, List[int]] = {}
    for name, path in modules(root).items():
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        lines = [n.lineno for n in ast.walk(tree)
                 if (isinstance(n, ast.Attribute) and n.attr in RAW_MEMORY)
                 or (isinstance(n, ast.Name) and n.id in RAW_MEMORY)]
        if lines:
            out[name] = lines
    return out


def test_raw_memory_only_in_the_os_module_and_the_struct_builder():
    """Memory by address is transport.privcmd's (its Buffer, peek, struct_at); the struct builder copies
    ctypes objects into lazy unions.  Everything else goes through them (issue 13)."""
    uses = raw_memory_uses()
    assert set(uses) == {"xenprivcmd.transport.privcmd", "xenprivcmd.transport.mapping", "xenprivcmd.structs"}, uses


def test_the_raw_memory_scan_sees_a_use():
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        os.makedirs(os.path.join(d, PACKAGE, "ops"))
        for rel, text in (("__init__.py", ""), ("ops/__init__.py", ""),
                          ("ops/bad.py", "import ctypes\nx = ctypes.string_at(1, 2)\n")):
            with open(os.path.join(d, PACKAGE, rel), "w", encoding="utf-8") as f:
                f.write(text)
        found = raw_memory_uses(d)
        assert found == {"xenprivcmd.ops.bad": [2]}


def test_the_catalogue_names_the_module_of_every_command():
    from xenprivcmd.shell.allcommands import ALIASES, COMMANDS
    from xenprivcmd.shell.registry import HOMES

    homes = {n: c.func.__module__.rpartition(".")[2] for n, c in COMMANDS.items()}
    homes.update({alias: homes[name] for alias, name in ALIASES.items()})
    assert homes == HOMES
    assert list(COMMANDS) == [w for w in HOMES if w not in ALIASES]  # help's order


# -- the ops layer reaches into no one's private state (issue 23) ----------------------------------

#: Private-looking names that are public API: namedtuple's and ctypes'.
PUBLIC_UNDERSCORE = frozenset({"_make", "_replace", "_fields", "_asdict", "_field_defaults",
                               "_length_", "_type_", "_fields_"})


def private_reaches(path: str) -> List[Tuple[int, str]]:
    """(line, what) of every place a module reads another object's private state: an
    attribute ``x._name`` where ``x`` is not ``self``/``cls`` and ``_name`` is no attribute
    its own classes define (``self._name = ...``, ``__slots__``, methods), any ``__dict__``, and
    ``getattr``/``setattr`` of a private name."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    own: Set[str] = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "self" \
                and isinstance(n.ctx, ast.Store):
            own.add(n.attr)
        if isinstance(n, ast.ClassDef):
            own |= {f.name for f in n.body if isinstance(f, ast.FunctionDef)}
        if isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__slots__" for t in n.targets):
            own |= {e.value for e in ast.walk(n.value) if isinstance(e, ast.Constant) and isinstance(e.value, str)}
    out = []
    for n in ast.walk(tree):
        if isinstance(n, ast.Attribute):
            if n.attr == "__dict__":
                out.append((n.lineno, f"{ast.unparse(n.value)}.__dict__"))
            elif n.attr.startswith("_") and not n.attr.startswith("__") and n.attr not in PUBLIC_UNDERSCORE \
                    and ast.unparse(n.value) not in ("self", "cls") and n.attr not in own:
                out.append((n.lineno, f"{ast.unparse(n.value)}.{n.attr}"))
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in ("getattr", "setattr", "hasattr") \
                and len(n.args) > 1 and isinstance(n.args[1], ast.Constant) and str(n.args[1].value).startswith("_") \
                and str(n.args[1].value) not in PUBLIC_UNDERSCORE:
            out.append((n.lineno, f"{n.func.id}(..., {n.args[1].value!r})"))
    return out


def test_ops_reach_into_no_handle_or_transport_private_state():
    """``xenprivcmd/ops/`` sees a handle and a transport through their public interfaces only
    (the engine's runners: the transport's ioctl, fd, request, lane(), reissue())."""
    ops_dir = os.path.join(ROOT, PACKAGE, "ops")
    found = {name: private_reaches(os.path.join(ops_dir, name))
             for name in sorted(os.listdir(ops_dir)) if name.endswith(".py")}
    assert {k: v for k, v in found.items() if v} == {}
    assert len(found) >= 8


def test_the_private_reach_scan_sees_one(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f(h, t):\n    h.__dict__.setdefault('x', 1)\n    return t._local.lane, getattr(h, '_abi')\n"
                   "class C:\n    def __init__(self):\n        self._mine = 1\n"
                   "def g(c):\n    return c._mine, c._fields_, c._make\n")
    assert sorted(w for _l, w in private_reaches(str(bad))) == ["getattr(..., '_abi')", "h.__dict__", "t._local"]


def _functions(path: str) -> Iterable[ast.FunctionDef]:
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    return [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]


def test_one_domid_check():
    """Only ``abi/hypercalls.check_domid`` decides what a domid is; any other function named
    for a domid check calls it (the xenstore client, the event channels, the handle)."""
    defined, own = [], []
    for name, path in modules().items():
        for fn in _functions(path):
            if "check_domid" not in fn.name:
                continue
            calls = {c.func.id if isinstance(c.func, ast.Name) else getattr(c.func, "attr", "")
                     for c in ast.walk(fn) if isinstance(c, ast.Call)}
            if fn.name == "check_domid":
                defined.append(name)
            elif "check_domid" not in calls:
                own.append(f"{name}.{fn.name}")
    assert defined == ["xenprivcmd.abi.hypercalls"] and own == []


def test_one_way_to_a_handles_xenstore():
    """A handle's xenstore is ``Handle.xenstore()`` (its override, else its transport's): no
    module opens one itself but the store package, the privcmd transport (the local one) and
    the exporter (a store at a path its user names)."""
    openers = sorted(name for name, path in modules().items()
                     if "Xenstore.open(" in open(path, encoding="utf-8").read())
    assert openers == ["xenprivcmd.exporter.scrape", "xenprivcmd.store.client", "xenprivcmd.transport.privcmd"]


if __name__ == "__main__":  # python3 tests/test_layering.py: the cycles, allowed or not
    found = edges()
    rows = [("module-level cycle", sorted(c)) for c in cycles(graph(found, [MODULE]))]
    rows += [("avoided by a function-level import", c) for c in avoided_cycles(found)]
    rows += [("shell, at run time", sorted(c)) for c in cycles(shell_runtime_graph(found))]
    for what, c in rows:
        print(f"{what}: {' -> '.join(c)}{'' if _allowed(c) else '   (NEW)'}")
    if not rows:
        print("no import cycle")
    sys.exit(1 if any(not _allowed(c) for _, c in rows) else 0)
