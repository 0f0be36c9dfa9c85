"""What the Debian package ships besides the code: the man pages say what the programs do
(every command and option), groff reads them without a warning, xpsh's bash completion works
in a real bash with Debian's bash-completion, the unit and its settings agree.

(The .deb itself: tools/build-deb with lintian and systemd-analyze verify; installed in a real
dom0: tests/realxen/test_packages.py.)"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

from xenprivcmd.exporter.cli import build_parser
from xenprivcmd.shell import registry

ROOT = Path(__file__).resolve().parent.parent
DEBIAN = ROOT / "debian"
COMPLETION = ROOT / "tools" / "completion" / "xpsh"
BASH_COMPLETION = Path("/usr/share/bash-completion/bash_completion")


def _man_text(page: Path) -> str:
    r = subprocess.run(["man", "--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z", str(page)], capture_output=True,
                       text=True, env=dict(os.environ, LC_ALL="C.UTF-8", MANROFFSEQ="", MANWIDTH="80"))
    assert r.returncode == 0 and not r.stderr, r.stderr
    plain = subprocess.run(["man", "-l", str(page)], capture_output=True, text=True,
                           env=dict(os.environ, LC_ALL="C.UTF-8", MANWIDTH="200", MANPAGER="cat", PAGER="cat"))
    assert plain.returncode == 0
    return re.sub(r".\x08", "", plain.stdout)


@pytest.mark.parametrize("page", ["xpsh.1", "xenprivcmd-exporter.1"])
def test_man_pages_render_without_warnings_and_are_shipped(page: str) -> None:
    assert shutil.which("man"), "man-db is not installed (tools/run-tests installs it)"
    _man_text(DEBIAN / page)
    assert f"debian/{page}" in (DEBIAN / "python3-xenprivcmd.manpages").read_text().split()


def test_xpsh_man_page_names_every_command_and_option() -> None:
    text = _man_text(DEBIAN / "xpsh.1")
    from xenprivcmd.shell import cli

    for home in set(registry.HOMES.values()):
        __import__(f"xenprivcmd.shell.{home}")
    names = sorted(registry.COMMANDS)
    assert len(names) > 30
    missing = [n for n in names if not re.search(rf"(?<![\w-]){re.escape(n)}(?![\w-])", text)]
    assert not missing, f"xpsh.1 does not name: {missing}"
    for opt in re.findall(r"^\s+(?:-\w, )?(--[\w-]+)", cli.USAGE, re.M):
        assert opt in text, opt


def test_exporter_man_page_names_every_option() -> None:
    text = _man_text(DEBIAN / "xenprivcmd-exporter.1")
    opts = [o for a in build_parser()._actions for o in a.option_strings if o.startswith("--") and o != "--help"]
    assert "--web.config.file" in opts
    for opt in opts:
        assert opt in text, opt


def test_unit_and_its_settings_agree() -> None:
    unit = (DEBIAN / "python3-xenprivcmd.xenprivcmd-exporter.service").read_text()
    assert "ExecStart=/usr/bin/xenprivcmd-exporter $ARGS" in unit
    assert "EnvironmentFile=-/etc/default/xenprivcmd-exporter" in unit
    for dev in ("/dev/xen/privcmd", "/dev/xen/hypercall", "/dev/xen/xenbus"):
        assert f"DeviceAllow={dev} rw" in unit
    assert "debian/default/xenprivcmd-exporter etc/default/" in (DEBIAN / "python3-xenprivcmd.install").read_text()
    settings = (DEBIAN / "default" / "xenprivcmd-exporter").read_text()
    args = re.search(r'^ARGS="([^"]*)"$', settings, re.M)
    assert args, settings
    # the shipped options are ones the exporter takes
    from xenprivcmd.exporter.cli import parse_args

    assert parse_args(args.group(1).split()).listen == ("127.0.0.1", 10120)
    rules = (DEBIAN / "rules").read_text()
    assert "dh_installsystemd --name=xenprivcmd-exporter --no-enable --no-start" in rules


@pytest.fixture()
def xpsh_on_path(tmp_path: Path) -> str:
    """A ``xpsh`` on PATH that runs this tree (the completion calls ``xpsh --complete``)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "xpsh"
    exe.write_text(f"#!/bin/sh\nPYTHONPATH={ROOT} exec {sys.executable} -m xenprivcmd \"$@\"\n")
    exe.chmod(0o755)
    return f"{bindir}:{os.environ['PATH']}"


def _complete(path: str, line: str) -> List[str]:
    """COMPREPLY of bash's completion of ``line`` (the cursor at its end), with Debian's bash-completion."""
    assert BASH_COMPLETION.exists(), "bash-completion is not installed (tools/run-tests installs it)"
    script = (f"source {BASH_COMPLETION}\nsource {COMPLETION}\n"
              'COMP_LINE="$1"; COMP_POINT=${#COMP_LINE}\n'
              'read -ra COMP_WORDS <<< "$COMP_LINE"\n'
              '[[ $COMP_LINE == *" " ]] && COMP_WORDS+=("")\n'
              "COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))\n"
              "_xpsh xpsh \"${COMP_WORDS[COMP_CWORD]}\" \"${COMP_WORDS[COMP_CWORD-1]}\"\n"
              'printf "%s\\n" "${COMPREPLY[@]}"\n')
    r = subprocess.run(["bash", "-c", script, "bash", line], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, PATH=path))
    assert r.returncode == 0 and not r.stderr, r.stderr
    return [w for w in r.stdout.split("\n") if w]


def test_bash_completes_options_commands_and_domain_names(xpsh_on_path: str) -> None:
    assert "--json" in _complete(xpsh_on_path, "xpsh --j")
    assert _complete(xpsh_on_path, "xpsh -c sim") == ["sim:///default", "sim+ssh://"]
    assert _complete(xpsh_on_path, "xpsh -c sim:///default domi") == ["domid", "domifstat", "dominfo"]
    assert _complete(xpsh_on_path, "xpsh -c sim:///default --json dominfo w") == ["web1"]
    # every domain of the simulated host, by name and id
    import xenprivcmd

    with xenprivcmd.open("sim:///default") as h:
        expected = {d.name for d in h.domains(names=True) if d.name} | {str(d.domid) for d in h.domains()}
    assert set(_complete(xpsh_on_path, "xpsh -c sim:///default vcpuinfo ")) == expected
    assert _complete(xpsh_on_path, "xpsh -c sim:///default dominfo --") == ["--domain"]


def test_bash_completion_is_silent_without_a_hypervisor(xpsh_on_path: str) -> None:
    # no privcmd here (or no permission): no names, no error on the terminal
    assert _complete(xpsh_on_path, "xpsh -c xen:/// dominfo ") == []
    assert _complete(xpsh_on_path, "xpsh -c nowhere:/// dominfo ") == []
    assert "dominfo" in _complete(xpsh_on_path, "xpsh -c nowhere:/// domi")


def test_no_placeholder_addresses_in_the_tree() -> None:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.decode()
    hits = []
    for f in files.split("\0"):
        p = ROOT / f
        if f and p.is_file() and p.suffix not in (".rec", ".gz", ".png"):
            text = p.read_text(errors="replace")
            if "xenprivcmd" + ".example" in text:
                hits.append(f)
    assert not hits, f"placeholder project address in {hits}"
    # a maintainer address only where Debian's formats require one
    for f in ("setup.cfg", "pyproject.toml", "CHANGELOG.md", "README.md"):
        assert ".example/" not in (ROOT / f).read_text() and "noreply" not in (ROOT / f).read_text(), f


def _run_tests_module():  # type: ignore[no-untyped-def]
    import importlib.machinery
    import importlib.util

    loader = importlib.machinery.SourceFileLoader("run_tests", str(ROOT / "tools" / "run-tests"))
    spec = importlib.util.spec_from_loader("run_tests", loader)
    assert spec is not None
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


def test_readme_is_short_and_its_quick_start_starts_on_the_simulator() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 300
    lines = _run_tests_module().quickstart_lines(readme).splitlines()
    # what tools/run-tests' "Quick start" stage runs in a clean clone: an install, then the simulator
    assert lines[0].startswith("python3 -m venv") and "pip install" in lines[1]
    assert "xpsh -c sim:///default list" in lines
    assert all("sudo" not in ln and "xen:///" not in ln for ln in lines)
    for page in re.findall(r"`(docs/[\w/-]+\.md)`", readme):  # the map of the docs points at pages that exist
        assert (ROOT / page).is_file(), page


def test_ci_runs_readmes_test_command_and_nothing_more() -> None:
    ci = [ln for ln in (ROOT / ".ci" / "run").read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert ci == ['cd "$(dirname "$0")/.." && exec tools/run-tests']
    assert "tools/run-tests            # every test" in (ROOT / "README.md").read_text()
