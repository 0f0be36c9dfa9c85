"""The Debian package, installed with Debian's dpkg in this dom0, against xl.

tools/run-tests builds ``python3-xenprivcmd`` from the tree (tools/build-deb),
puts it with the suite's own ``python3-construct`` (Depends) and
``python3-prometheus-client`` (Recommends) in a directory and names it in
``XENPRIVCMD_DEBS`` (bookworm: the .deb is built on this Debian 12 host).
Besides the library and xpsh: the man pages, xpsh's bash completion (its
``xpsh --complete`` against xl's names), and the exporter's systemd unit,
whose command (ExecStart with the EnvironmentFile's ARGS) runs here as the
unit runs it -- root without any capability, no new privileges -- and
answers a scrape that agrees with xl (this dom0 has no systemd: the unit
itself is checked by ``systemd-analyze verify`` in tools/build-deb).
Everything here runs with a clean environment from ``/``: no PYTHONPATH, so
the package's files in /usr are what runs, never the source tree on /host.
"""

from __future__ import annotations

import glob
import gzip
import json
import os
import re
import shlex
import signal
import subprocess
from typing import Dict, List

import pytest

import xenprivcmd

from .conftest import xl_list

DEBS = os.environ.get("XENPRIVCMD_DEBS", "")
SITE = "/usr/lib/python3/dist-packages/"

pytestmark = pytest.mark.skipif(
    not DEBS, reason="the .deb is installed in the bookworm dom0 only (tools/run-tests sets XENPRIVCMD_DEBS)"
)


def system(*cmd: str) -> subprocess.CompletedProcess:
    """cmd as a dom0 admin runs it: a login-like environment, nothing of /host on sys.path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=300, cwd="/", env=env)


def ok(*cmd: str) -> str:
    out = system(*cmd)
    assert out.returncode == 0, f"{' '.join(cmd)} exited {out.returncode}: {out.stderr}{out.stdout}"
    assert "Traceback" not in out.stderr
    return out.stdout


@pytest.fixture(scope="module")
def installed() -> List[str]:
    debs = sorted(glob.glob(os.path.join(DEBS, "*.deb")))
    names = [ok("dpkg-deb", "-f", d, "Package").strip() for d in debs]
    assert sorted(names) == ["python3-construct", "python3-decorator", "python3-prometheus-client",
                             "python3-xenprivcmd"], debs
    assert system("dpkg", "-s", "python3-xenprivcmd").returncode != 0, "installed before the test"
    assert not os.path.exists("/usr/bin/xpsh")
    ok("dpkg", "-i", *debs)
    return names


def test_dpkg_installed_the_tree_version(installed: List[str]) -> None:
    status = ok("dpkg", "-s", "python3-xenprivcmd")
    assert "Status: install ok installed" in status
    assert f"Version: {xenprivcmd.__version__}\n" in status  # the tree under test
    assert "python3-construct" in status.split("Depends:", 1)[1].splitlines()[0]
    assert "python3-prometheus-client" in status.split("Recommends:", 1)[1].splitlines()[0]
    files = ok("dpkg", "-L", "python3-xenprivcmd").split()
    assert "/usr/bin/xpsh" in files
    assert SITE + "xenprivcmd/__init__.py" in files


def test_the_package_is_what_imports(installed: List[str]) -> None:
    out = ok("/usr/bin/python3", "-c", "import sys, xenprivcmd, construct; print(xenprivcmd.__file__); "
             "print(construct.__file__); print([p for p in sys.path if p.startswith('/host')])").split("\n")
    assert out[0] == SITE + "xenprivcmd/__init__.py"
    assert out[1].startswith(SITE + "construct/")
    assert out[2] == "[]"
    assert ok("/usr/bin/xpsh", "--version").strip() == f"xpsh (xenprivcmd) {xenprivcmd.__version__}"


def _xl_rows() -> Dict[int, Dict[str, str]]:
    return {int(r["id"]): r for r in xl_list()}


def test_deb_xpsh_list_matches_xl_list(installed: List[str], guest: int) -> None:
    text = ok("/usr/bin/xpsh", "list")
    lines = text.splitlines()
    assert lines[0].split() == ["Id", "Name", "State"]
    ours = {int(ln.split()[0]): ln.split()[1] for ln in lines[2:] if ln.strip()}
    theirs = _xl_rows()
    assert ours == {d: r["name"] for d, r in theirs.items()}
    assert ours[guest] == "guest1" and ours[0] == "Domain-0"
    doc = json.loads(ok("/usr/bin/xpsh", "--json", "list"))
    for d in doc["domains"]:
        assert d["memory_kib"] // 1024 == int(theirs[d["id"]]["mem"])
        assert d["vcpus"] >= int(theirs[d["id"]]["vcpus"])


UNIT = "/lib/systemd/system/xenprivcmd-exporter.service"
DEFAULTS = "/etc/default/xenprivcmd-exporter"
COMPLETION = "/usr/share/bash-completion/completions/xpsh"


def test_man_pages_completion_unit_and_settings_are_installed(installed: List[str]) -> None:
    files = set(ok("dpkg", "-L", "python3-xenprivcmd").split())
    for page, name in (("xpsh", "XPSH"), ("xenprivcmd-exporter", "XENPRIVCMD-EXPORTER")):
        path = f"/usr/share/man/man1/{page}.1.gz"
        assert path in files and os.path.isfile(path)
        with gzip.open(path, "rt") as f:
            text = f.read()
        assert text.startswith(f'.TH {name} 1 ') and f'"xenprivcmd {xenprivcmd.__version__}"' in text
    for path in (COMPLETION, UNIT, DEFAULTS):
        assert path in files and os.path.isfile(path), path
    assert re.search(r"^\s*complete -F _xpsh xpsh$", open(COMPLETION).read(), re.M)
    assert DEFAULTS in ok("dpkg-query", "-W", "-f=${Conffiles}", "python3-xenprivcmd")
    # shipped disabled: nothing links it into a target
    assert not glob.glob("/etc/systemd/system/*.wants/xenprivcmd-exporter.service")


def test_completion_offers_xls_domains(installed: List[str]) -> None:
    theirs = {int(r["id"]): r["name"] for r in xl_list()}
    got = ok("/usr/bin/xpsh", "--complete", "dominfo ").split()
    assert sorted(got) == sorted(set(theirs.values()) | {str(d) for d in theirs})
    assert ok("/usr/bin/xpsh", "--complete", "dominfo Doma").split() == ["Domain-0"]
    assert "dominfo" in ok("/usr/bin/xpsh", "--complete", "dom").split()


def _unit_command() -> List[str]:
    """ExecStart with $ARGS from the EnvironmentFile, split as systemd splits an unquoted $VAR."""
    unit = open(UNIT).read()
    exec_start = re.search(r"^ExecStart=(.*)$", unit, re.M)
    env_file = re.search(r"^EnvironmentFile=-?(.*)$", unit, re.M)
    assert exec_start and env_file and env_file.group(1) == DEFAULTS
    values = {}
    for line in open(DEFAULTS):
        if line.strip() and not line.lstrip().startswith("#"):
            k, v = line.strip().split("=", 1)
            values[k] = shlex.split(v)[0] if v[:1] in "'\"" else v
    argv = []
    for word in exec_start.group(1).split():
        argv += values.get(word[1:], "").split() if word.startswith("$") else [word]
    return argv


def _no_capabilities() -> None:
    """What the unit's CapabilityBoundingSet= and NoNewPrivileges=yes leave root (in the child)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_no_new_privs, pr_capbset_drop = 38, 24
    assert libc.prctl(pr_set_no_new_privs, 1, 0, 0, 0) == 0
    cap = 0
    while libc.prctl(pr_capbset_drop, cap, 0, 0, 0) == 0:
        cap += 1
    assert cap > 30  # the kernel's caps, up to the first it does not know


def test_the_units_command_serves_a_scrape_without_capabilities(installed: List[str]) -> None:
    from .test_exporter import _loopback_up

    argv = _unit_command()
    assert argv[0] == "/usr/bin/xenprivcmd-exporter" and "--listen" in argv
    listen = argv[argv.index("--listen") + 1]
    _loopback_up()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd="/", env=env,
                         preexec_fn=_no_capabilities)
    try:
        assert p.stderr is not None
        line = p.stderr.readline()
        assert f"serving http://{listen}/metrics" in line, line + (p.stderr.read() if p.poll() is not None else "")
        status = open(f"/proc/{p.pid}/status").read()
        caps = dict(re.findall(r"^(Cap\w+|NoNewPrivs):\s*(\S+)", status, re.M))
        assert int(caps["CapEff"], 16) == int(caps["CapPrm"], 16) == int(caps["CapBnd"], 16) == 0, caps
        assert caps["NoNewPrivs"] == "1"
        import urllib.request

        with urllib.request.urlopen(f"http://{listen}/metrics", timeout=60) as r:
            body = r.read().decode()
        assert "\nxen_up 1.0\n" in body
        mem = {int(m.group(1)): m.group(2) for m in re.finditer(
            r'^xen_domain_memory_bytes\{domid="(\d+)",name="([^"]*)"\}', body, re.M)}
        assert mem == {int(r["id"]): r["name"] for r in xl_list()}
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            rc = p.wait(timeout=30)
        finally:
            if p.poll() is None:
                p.kill()
    assert rc == 0
    rest = p.stderr.read() if p.stderr else ""
    assert "Traceback" not in rest and "scrape failed" not in rest, rest


def _unowned_symlinked_dirs() -> Dict[str, str]:
    """Directories of the package that are symlinks here (merged /usr: /lib) and that no other
    package in dpkg's database owns. This dom0's image registers few packages with dpkg, so
    removing the last owner would make dpkg unlink the symlink (a real Debian's libc6 and
    base-files own /lib): the test puts it back, as the rest of the system expects."""
    out = {}
    for path in ("/lib", "/bin", "/sbin"):
        if os.path.islink(path):
            owners = system("dpkg-query", "-S", path).stdout
            if [o for o in owners.split(":")[0].split(", ") if o.strip() and o.strip() != "python3-xenprivcmd"]:
                continue
            out[path] = os.readlink(path)
    return out


def test_dpkg_removes_it(installed: List[str]) -> None:
    links = _unowned_symlinked_dirs()
    out = system("dpkg", "-r", "python3-xenprivcmd")
    for path, target in links.items():
        if not os.path.lexists(path):
            os.symlink(target, path)
    assert out.returncode == 0, out.stderr
    assert not os.path.exists("/usr/bin/xpsh")
    assert not os.path.exists(UNIT) and not os.path.exists(COMPLETION)
    assert os.path.exists(DEFAULTS)  # a conffile stays until purge
    out = system("dpkg", "-P", "python3-xenprivcmd")
    for path, target in links.items():
        if not os.path.lexists(path):
            os.symlink(target, path)
    assert out.returncode == 0, out.stderr
    assert not os.path.exists(DEFAULTS)
    assert not os.path.exists(SITE + "xenprivcmd")
    assert "ok installed" not in system("dpkg", "-s", "python3-xenprivcmd").stdout
