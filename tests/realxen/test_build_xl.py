"""DomainConfig.from_xl against the suite's own xl (issue 25).

``xl create -n FILE`` parses a config as ``xl create`` does and prints the domain
configuration it read as JSON, before libxl fills in its defaults: for every config below
xenprivcmd must accept what xl accepts and read the same values, or refuse it where xl
refuses it, or -- where xl goes on with a warning, or quietly drops a key -- refuse it
naming the key.  Then ``xl create -p`` of configs that leave memory, vcpus and the type to
their defaults, and ``xl list -l``, show the defaults libxl applied, which must be ours.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from typing import Dict, FrozenSet, List, Optional, Tuple

import pytest

from xenprivcmd.build.config import DomainConfig
from xenprivcmd.errors import ConfigError

from .conftest import SUITE_ARCH, xl, xl_table

K = 'kernel = "/k"\n'

#: (id, config text, what xl does: "reads" (exit 0, same values), "refuses" (exit 1),
#: "warns" (exit 0, xenprivcmd refuses naming the key))
CONFIGS: List[Tuple[str, str, str]] = [
    ("minimal", 'name = "a"\n' + K, "reads"),
    ("full", 'name = "b2"\nuuid = "6A3E1F2C-1111-4222-8333-123456789ABC"\nmemory = 256\nmaxmem = 512\n'
     'vcpus = 2\nmaxvcpus = 4\ncpus = "0-1,^1"\ncpu_weight = 512\ncap = 50\n' + K
     + 'ramdisk = "/r"\nroot = "/dev/xvda1 ro"\nextra = "console=hvc0"\non_poweroff = "preserve"\n'
     'on_reboot = "destroy"\non_crash = "restart"\n', "reads"),
    ("syntax", "name = 'c'  # a comment\nextra = \"x=1\"; root=\"r\"\ncpus = [\"0\", \"all\"\n  ,\n"
     "  \"^0,nodes:0\" ,\n]\nvcpus = 3\n" + K, "reads"),
    ("strtol", 'name="e"\nmemory="0x100"\nmaxmem=0x200\nvcpus = 02\n' + K, "reads"),
    ("plus-equals", 'name="g"\nextra="a"\nextra+=" b"\ncpus=["1"]\ncpus+=["0"]\nvcpus=2\n' + K, "reads"),
    ("last-wins", 'name="k"\nmemory=12\nmemory=34\n' + K, "reads"),
    ("type-abbrev", 'name="d"\ntype="p"\nextra="a\\tb\\"c\\\\"\n' + K, "reads"),
    ("builder", 'name="d"\nbuilder="generic"\nmaxvcpus=3\n' + K, "reads"),
    ("cmdline", 'name="d"\ncmdline="ro quiet"\non_crash="preserve"\n' + K, "reads"),
    ("blanks-in-cpus", 'name="q"\ncpus=" 0, 1"\nvcpus=2\nmaxmem=64\n' + K, "reads"),
    ("no-final-newline", 'name="l"\n' + K + "memory = 4", "reads"),
    ("comment-at-eof", 'name="f"\n' + K + "# trailing comment", "refuses"),
    ("crlf", 'name="i"\nmemory=128\r\n' + K, "refuses"),
    ("python", 'name="v"\nmemory=-1\n' + K, "refuses"),
    ("hex-escape", 'name="m"\nextra="\\x41\\x4a"\n' + K, "refuses"),
    ("octal-escape", 'name="n"\nextra="\\101\\7"\n' + K, "refuses"),
    ("backwards-range", 'name="p"\ncpus="3-1"\nvcpus=1\n' + K, "refuses"),
    ("caret-all", 'name="p"\ncpus="^all"\nvcpus=1\n' + K, "refuses"),
    ("unquoted", 'name=web1\n' + K, "refuses"),
    ("maxvcpus-below-vcpus", 'name="p"\nvcpus=4\nmaxvcpus=2\n' + K, "refuses"),
    ("bad-action", 'name="p"\non_reboot="reboot"\n' + K, "refuses"),
    ("bad-type", 'name="p"\ntype="kvm"\n' + K, "refuses"),
    ("no-name", K, "refuses"),
    ("no-kernel", 'name="p"\n', "refuses"),
    ("list-for-value", 'name="j"\nmemory=[1]\n' + K, "warns"),
    ("not-a-number", 'name="j"\nvcpus="x"\n' + K, "warns"),
    ("plus-equals-number", 'name="j"\nmemory=1\nmemory+=2\n' + K, "warns"),
    ("unknown-key", 'name="l"\nfoo_bar.baz = 3\n' + K, "warns"),
    ("rename-restart", 'name="t"\non_crash="rename-restart"\n' + K, "warns"),
    ("cmdline-and-extra", 'name="c"\ncmdline="x=1"\nextra="e"\n' + K, "warns"),
    ("cpus-without-vcpus", 'name="c"\ncpus="1"\n' + K, "warns"),  # xl drops cpus: max_vcpus is 0 then
    ("too-many-cpus-entries", 'name="c"\ncpus=["0","0","0"]\nvcpus=2\n' + K, "warns"),
]


def _arch(suite: str) -> str:
    return SUITE_ARCH[suite]


def _xl_dry_run(tmp_path, text: str) -> Tuple[int, str, str]:  # type: ignore[no-untyped-def]
    path = tmp_path / "x.cfg"
    path.write_bytes(text.encode())
    out = subprocess.run(["xl", "create", "-n", str(path)], capture_output=True, text=True, timeout=120)
    return out.returncode, out.stdout, out.stderr


def _topology() -> Tuple[int, Dict[int, FrozenSet[int]]]:
    """(nr_cpus, node -> cpus) from `xl info -n`."""
    text = xl("info", "-n")
    nr = int(re.search(r"^nr_cpus\s*:\s*(\d+)", text, re.M).group(1))  # type: ignore[union-attr]
    nodes: Dict[int, set] = {}
    for m in re.finditer(r"^\s*(\d+):\s+(\d+)\s+(\d+)\s+(\d+)\s*$", text, re.M):
        nodes.setdefault(int(m.group(4)), set()).add(int(m.group(1)))
    assert nodes, text
    return nr, {n: frozenset(c) for n, c in nodes.items()}


@pytest.mark.parametrize("name, text, xl_does", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_from_xl_reads_as_xl(tmp_path, suite, name, text, xl_does):  # type: ignore[no-untyped-def]
    rc, out, err = _xl_dry_run(tmp_path, text)
    arch = _arch(suite)
    if xl_does == "refuses":
        assert rc != 0, f"xl took {name}: {out}"
        with pytest.raises(ConfigError):
            DomainConfig.from_xl(text, arch=arch)
        return
    assert rc == 0, f"xl create -n refused {name}: {err}"
    if xl_does == "warns":
        with pytest.raises(ConfigError) as ei:
            DomainConfig.from_xl(text, arch=arch)
        assert ei.value.key is not None
        return
    d = json.loads(out)
    c = DomainConfig.from_xl(text, arch=arch)
    ci, bi = d["c_info"], d["b_info"]
    assert ci["name"] == c.name
    if c.uuid is not None:
        assert ci["uuid"] == str(c.uuid)
    # before libxl's defaults: the type as the config says, else this arch's default
    assert ci["type"] == (c.type or c.domain_type(arch))
    # xl sets max_memkb from maxmem (else memory), target_memkb from memory; absent: libxl's default
    # (test_defaults_as_libxl_applies_them)
    if "target_memkb" in bi:
        assert bi["target_memkb"] == c.memory_kib
    if "max_memkb" in bi:
        assert bi["max_memkb"] == c.maxmem_kib
    else:
        assert "memory" not in text and "maxmem" not in text
    if "max_vcpus" in bi:
        assert bi["max_vcpus"] == c.maxvcpus
    if "avail_vcpus" in bi:
        assert bi["avail_vcpus"] == list(range(c.vcpus))
    else:
        assert c.vcpus == 1
    nr, nodes = _topology()
    ours = c.hard_affinity(nr, nodes)
    theirs: Optional[List[List[int]]] = bi.get("vcpu_hard_affinity")
    if ours is None:
        assert theirs is None
    else:
        assert theirs is not None
        # xl's bitmaps are whole bytes ("all" sets every bit of them): only the host's cpus count
        got = [frozenset(x for x in m if x < nr) for m in theirs]
        assert ours[: len(got)] == tuple(got)
        assert all(m == frozenset(range(nr)) for m in ours[len(got):])  # libxl leaves those unpinned
    sp = bi.get("sched_params", {})
    assert sp.get("weight") == c.cpu_weight and sp.get("cap") == c.cap
    assert bi.get("kernel") == c.kernel and bi.get("ramdisk") == c.ramdisk
    assert bi.get("cmdline", "") == c.kernel_cmdline
    # libxl's JSON leaves out an action that is its enum's default (destroy)
    for key in ("on_poweroff", "on_reboot", "on_crash"):
        assert d.get(key, "destroy") == getattr(c, key), key


# -- the defaults libxl applies, seen on a created (paused) domain ------------------------------

GUEST_KERNEL = "/opt/xenvm/guest/vmlinuz"
GUEST_RAMDISK = "/opt/xenvm/guest/initrd.gz"


def _create_paused(tmp_path, name: str, body: str) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    path = tmp_path / f"{name}.cfg"
    path.write_text(f'name = "{name}"\nkernel = "{GUEST_KERNEL}"\nramdisk = "{GUEST_RAMDISK}"\n{body}')
    return subprocess.run(["xl", "create", "-p", str(path)], capture_output=True, text=True, timeout=300)


def _destroy(name: str) -> None:
    subprocess.run(["xl", "destroy", name], capture_output=True, timeout=120)


def _listed(name: str) -> dict:
    return json.loads(xl("list", "-l", name))[0]["config"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("body", ['maxmem = 128\n', 'memory = 128\ntype = "pv"\n'])
def test_defaults_as_libxl_applies_them(tmp_path, suite, body):  # type: ignore[no-untyped-def]
    assert os.path.exists(GUEST_KERNEL), "the suite's guest kernel is missing (xenvm --guests)"
    name = "xpsh-defaults"
    c = DomainConfig.from_xl(f'name = "{name}"\nkernel = "{GUEST_KERNEL}"\n{body}', arch=_arch(suite))
    try:
        out = _create_paused(tmp_path, name, body)
        assert out.returncode == 0, out.stderr
        got = _listed(name)
        bi = got["b_info"]
        assert (bi["target_memkb"], bi["max_memkb"]) == (c.memory_kib, c.maxmem_kib), got
        kind = c.domain_type(_arch(suite))
        if c.type == "pv" and kind == "pvh":
            # Arm: libxl converts the pv guest to pvh (its only kind) and says so; the saved
            # config keeps the type as given
            assert "Converting PV guest to PVH" in out.stderr, out.stderr
        else:
            assert got["c_info"]["type"] == kind, got
        # the vcpus the domain has (xl list -l keeps max_vcpus only when the config gave it)
        rows = xl_table("vcpu-list", name)
        assert len(rows) == c.maxvcpus == c.vcpus, rows
        for key in ("on_poweroff", "on_reboot", "on_crash"):
            assert got.get(key, "destroy") == getattr(c, key), key
    finally:
        _destroy(name)


def test_default_memory_is_libxls(tmp_path, suite):  # type: ignore[no-untyped-def]
    """No memory nor maxmem: libxl gives 32 MiB.  The suite's kernel may not fit in it: then
    libxenguest's refusal names the domain's page count."""
    name = "xpsh-defmem"
    c = DomainConfig.from_xl(f'name = "{name}"\nkernel = "{GUEST_KERNEL}"\n', arch=_arch(suite))
    try:
        out = _create_paused(tmp_path, name, "")
        if out.returncode == 0:
            bi = _listed(name)["b_info"]
            assert (bi["target_memkb"], bi["max_memkb"]) == (c.memory_kib, c.maxmem_kib)
        elif _arch(suite) == "aarch64" and "shadow_memkb value" in out.stderr:
            # libxl on Arm sizes the paging pool from max_memkb before giving it its default:
            # without memory= or maxmem= xl cannot create an Arm guest at all (seen on Xen 4.17)
            assert re.search(r"shadow_memkb value \d+kB too large", out.stderr), out.stderr
        else:
            m = re.search(r"too large \(0x[0-9a-f]+ > 0x([0-9a-f]+) - 0x[0-9a-f]+ pages\)", out.stderr)
            assert m, out.stderr
            assert int(m.group(1), 16) * 4 == c.memory_kib == c.maxmem_kib
    finally:
        _destroy(name)
