"""What a one-shot command imports (issue 15): the modules on the hot path load
none of the costly standard modules.

An import hook in a fresh interpreter records, for every import of a watched
module, the first frame outside importlib that asked for it; no such frame
may belong to xenprivcmd outside the simulator (the simulator may load what
it likes).  Real timings: tools/bench-coldstart (benchmarks/, never here).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WATCHED = ("typing", "re", "uuid", "collections", "functools", "threading", "json", "enum", "platform",
           "shlex", "traceback", "socket", "selectors", "importlib", "warnings", "weakref", "construct", "readline")

HOOK = """
import sys, json
WATCHED = set(%r)
asked = []
class Hook:
    def find_spec(self, name, path=None, target=None):
        if name in WATCHED and name not in sys.modules:
            f = sys._getframe(1)
            while f is not None and (f.f_globals.get("__name__", "").startswith("importlib")
                                     or f.f_code.co_filename.startswith("<frozen")):
                f = f.f_back
            asked.append([name, f.f_globals.get("__name__", "?") if f is not None else "?"])
        return None
sys.meta_path.insert(0, Hook())
"""


def _run(body: str) -> list:
    code = HOOK % (WATCHED,) + body + "\nprint(json.dumps(asked))\n"
    # -S: no site (its .pth files import what they like); -I would drop PYTHONPATH
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=ROOT), cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def _by_library(asked: list) -> list:
    return [a for a in asked if a[1].startswith("xenprivcmd") and not a[1].startswith("xenprivcmd.sim")]


def test_import_loads_nothing_but_the_package():
    code = "import sys; before = set(sys.modules); import xenprivcmd; print(sorted(set(sys.modules) - before))"
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=ROOT), timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['xenprivcmd']"


def test_the_hot_path_modules_import_none_of_the_costly_ones():
    asked = _run(
        "import xenprivcmd\n"
        "import xenprivcmd.handle, xenprivcmd.abi.detect, xenprivcmd.abi.cache, xenprivcmd.store.client, xenprivcmd.store.connection, xenprivcmd.store.wire\n"
        "import xenprivcmd.structs, xenprivcmd.structs._gen_releases\n"
        "import xenprivcmd.structs._gen_x86_64_layouts, xenprivcmd.structs._gen_x86_64_consts\n"
        "import xenprivcmd.shell, xenprivcmd.shell.allcommands, xenprivcmd.__main__\n"
    )
    assert _by_library(asked) == []
    assert asked == []  # nothing else asked either: the watched modules stay unloaded


def test_a_listing_through_the_shell_loads_none_of_them():
    asked = _run(
        "import io, xenprivcmd\n"
        "import xenprivcmd.handle, xenprivcmd.abi.detect, xenprivcmd.abi.cache, xenprivcmd.store.client, xenprivcmd.store.connection, xenprivcmd.store.wire\n"
        "import xenprivcmd.structs, xenprivcmd.shell.cli, xenprivcmd.shell.allcommands\n"
        "h = xenprivcmd.open('sim:///default', detect='nocache')\n"
        "out = io.StringIO()\n"
        "rc = xenprivcmd.shell.cli.run(['list'], stdout=out, stderr=out, handle=h)\n"
        "assert rc == 0 and 'web1' in out.getvalue(), out.getvalue()\n"
        "info = h.domains()[1]\n"
        "print(info.uuid_str, file=sys.stderr)\n"
    )
    assert _by_library(asked) == []


def test_a_command_line_loads_the_modules_of_its_own_commands_only():
    """The session imports a command's module the first time it runs one of its commands
    (shell/registry.py's HOMES): `xpsh list` loads the domain commands, no other command
    module (issue 13 split shell/commands.py; before, a listing loaded all of them)."""
    code = (
        "import io, sys, xenprivcmd, xenprivcmd.shell\n"
        "h = xenprivcmd.open('sim:///default', detect='nocache')\n"
        "def shell():\n"
        "    return sorted(m[len('xenprivcmd.shell.'):] for m in sys.modules if m.startswith('xenprivcmd.shell.'))\n"
        "seen = [shell()]\n"
        "for line in ('list; dominfo web1; pause web1; unpause web1', 'nodeinfo', 'help'):\n"
        "    out = io.StringIO()\n"
        "    assert xenprivcmd.shell.run([line], stdout=out, stderr=out, handle=h) == 0, out.getvalue()\n"
        "    seen.append(shell())\n"
        "import json; print(json.dumps(seen))\n"
    )
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=ROOT), timeout=60)
    assert out.returncode == 0, out.stderr
    start, listing, host, everything = json.loads(out.stdout.strip().splitlines()[-1])
    assert start == ["cli", "parse", "registry", "session"]
    assert listing == sorted(start + ["domains"]) and host == sorted(listing + ["node"])
    assert set(everything) - set(host) == {"xlstyle", "monitor", "builtins", "toolstack", "events", "console", "stats", "top", "create"}


def test_the_xpsh_script_imports_only_the_shell():
    """bin/xpsh (setup.cfg's ``scripts``, what pip and the .deb install as ``xpsh``) is no
    console_scripts wrapper: those import ``re`` (pip's) or ``importlib.metadata`` first."""
    script = os.path.join(ROOT, "bin", "xpsh")
    with open(script) as f:
        shebang = f.readline()
    assert shebang.startswith("#!") and "python" in shebang  # pip and dh_python3 set the interpreter
    out = subprocess.run([sys.executable, "-S", "-X", "importtime", script, "--help"], capture_output=True,
                         text=True, env=dict(os.environ, PYTHONPATH=ROOT), cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: xpsh ")
    loaded = {ln.split("|")[-1].strip() for ln in out.stderr.splitlines() if ln.startswith("import time:")}
    assert "xenprivcmd.shell.cli" in loaded
    assert not loaded & set(WATCHED), sorted(loaded & set(WATCHED))
    assert not {m for m in loaded if m.startswith("importlib.metadata")}


def test_one_constant_or_layout_without_the_whole_set():
    """structs.set_value (what a listing reads: a few names of one release) answers as the
    replayed set does, for every name of every set of every table."""
    from xenprivcmd import structs

    tids = set()
    for arch in structs.arches():
        tids.add(arch)
        tids.update(structs.table_id(arch, fam) for fam in structs.families())
    checked = 0
    for tid in sorted(tids):
        for table in ("LAYOUTS", "CONSTS"):
            index = structs._set_table(tid, table)
            whole = {key: dict(structs._resolve(tid, table, key)) for key in index}
            names = set().union(*whole.values())
            structs._set_cache.clear()  # set_value must walk the rows, not read a resolved set
            for key, resolved in whole.items():
                for name in names:
                    try:
                        got = structs.set_value(tid, table, key, name)
                    except KeyError:
                        got = KeyError
                    assert got == resolved.get(name, KeyError), (tid, table, key, name)
                    checked += 1
            structs._set_cache.clear()
    assert checked > 50000
