"""What the tests of xenprivcmd.build share: the real kernels the project boots, and small
kernels made with GNU as and ld (binutils), read back with readelf."""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
from typing import Any, Callable, Dict, List, Sequence, Tuple, Union

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@functools.cache
def suite_files(suite: str) -> Dict[str, str]:
    """The kernel (``vmlinuz``: a bzImage on x86, an Image on arm64), its unpacked
    ``vmlinux`` and the guests' ``initrd`` that tools/xenvm boots for ``suite`` (fetched
    into its cache when missing: network trouble fails the test)."""
    out = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "xenvm", "xenvm.py"), "info", "--suite", suite],
                         capture_output=True, text=True, timeout=1800, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    info = dict(line.split(": ", 1) for line in out.stdout.splitlines() if ": " in line)
    kdir, idir = os.path.dirname(info["vmlinux"]), os.path.dirname(info["xen"])
    files = {"vmlinuz": os.path.join(kdir, "vmlinuz"), "vmlinux": info["vmlinux"],
             "initrd": os.path.join(idir, "guest-initrd.gz")}
    for f in files.values():
        assert os.path.isfile(f), f
    return files


def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


# -- readelf, as an independent reader ------------------------------------------------------

def readelf_phdrs(path: str) -> List[Tuple[str, int, int, int, int, int, str, int]]:
    """``readelf -lW``: (type, offset, vaddr, paddr, filesz, memsz, flags, align) per program header."""
    out = subprocess.run(["readelf", "-lW", path], capture_output=True, text=True, check=True).stdout
    rows = []
    for m in re.finditer(r"^\s+([A-Z_]+|GNU_\w+)\s+0x([0-9a-f]+) 0x([0-9a-f]+) 0x([0-9a-f]+) 0x([0-9a-f]+) "
                         r"0x([0-9a-f]+) ([RWE ]{3}) 0x([0-9a-f]+)$", out, re.M):
        t, off, va, pa, fs, ms, fl, al = m.groups()
        rows.append((t, int(off, 16), int(va, 16), int(pa, 16), int(fs, 16), int(ms, 16), fl.replace(" ", ""),
                     int(al, 16)))
    return rows


def readelf_notes(path: str) -> List[Tuple[str, int, bytes]]:
    """``readelf -nW``: (owner, type, descriptor bytes) per note, for the notes readelf shows
    as raw "description data" (it decodes GNU's and Linux's own; the type of an owner it does
    not know it prints as "Unknown note type: (0xN)", or by the generic names of types 1, 2
    and 4)."""
    out = subprocess.run(["readelf", "-nW", path], capture_output=True, text=True, check=True).stdout
    generic = {"NT_VERSION (version)": 1, "NT_ARCH (architecture)": 2, "GO BUILDID": 4}
    notes: List[Tuple[str, int, bytes]] = []
    for m in re.finditer(r"^\s+(\S+)\s+0x([0-9a-f]+)\t(.*?)\t\s*description data: ([0-9a-f ]*)$", out, re.M):
        owner, size, what, data = m.group(1), int(m.group(2), 16), m.group(3), bytes.fromhex(m.group(4).replace(" ", ""))
        t = re.match(r"Unknown note type: \(0x([0-9a-f]+)\)", what)
        assert len(data) == size, m.group(0)
        ntype = int(t.group(1), 16) if t else generic.get(what.strip(), -1)
        assert ntype >= 0 or owner != "Xen", m.group(0)
        notes.append((owner, ntype, data))
    return notes


# -- small kernels made with GNU as and ld ---------------------------------------------------

Note = Tuple[int, Union[int, str, bytes]]

LINKER_SCRIPT = """
ENTRY(startup)
PHDRS {{ text PT_LOAD FLAGS(5); data PT_LOAD FLAGS(6); note PT_NOTE FLAGS(4); }}
SECTIONS {{
  . = {vbase:#x} + {pbase:#x};
  .text : AT({pbase:#x}) {{ *(.text) }} :text
  .note.Xen : {{ *(.note.Xen) }} :text :note
  . = ALIGN(0x1000);
  .data : {{ *(.data) }} :data
  .bss : {{ *(.bss) }} :data
}}
"""


def make_kernel(tmp_path, notes: Sequence[Note], *, name: str = "k", vbase: int = 0xFFFFFFFF80000000,
                pbase: int = 0x1000000, text_pages: int = 3, bss_pages: int = 5, bits: int = 64) -> str:
    """An ELF kernel made by GNU as and ld: ``text_pages`` of code starting at symbol
    ``startup``, a page of data, ``bss_pages`` of bss, and the Xen notes given as
    (type, value): an int is an 8-byte number, a str a NUL-terminated string, bytes as
    they are.  Returns its path."""
    s = [".text", ".globl startup", "startup:", f"  .fill {text_pages * 4096}, 1, 0x90",
         ".data", "  .fill 4096, 1, 0x55", ".bss", f"  .skip {bss_pages * 4096}",
         '.section .note.Xen, "a", @note']
    for i, (t, v) in enumerate(notes):
        s += ["  .balign 4", f"  .long n{i}e - n{i}s", f"  .long d{i}e - d{i}s", f"  .long {t}",
              f"n{i}s: .asciz \"Xen\"", f"n{i}e: .balign 4", f"d{i}s:"]
        if isinstance(v, int):
            s.append(f"  .quad {v:#x}")
        elif isinstance(v, str):
            s.append(f"  .asciz \"{v}\"")
        elif v:
            s.append("  .byte " + ", ".join(str(b) for b in v))
        s.append(f"d{i}e: .balign 4")
    src = tmp_path / f"{name}.s"
    src.write_text("\n".join(s) + "\n")
    lds = tmp_path / f"{name}.lds"
    lds.write_text(LINKER_SCRIPT.format(vbase=vbase if bits == 64 else vbase & 0xFFFFFFFF, pbase=pbase))
    obj, out = tmp_path / f"{name}.o", tmp_path / name
    subprocess.run(["as", "--64" if bits == 64 else "--32", "-o", str(obj), str(src)], check=True,
                   capture_output=True)
    subprocess.run(["ld", "-m", "elf_x86_64" if bits == 64 else "elf_i386", "-nostdlib", "-z", "max-page-size=0x1000",
                    "-z", "noexecstack", "-T", str(lds), "-o", str(out), str(obj)], check=True, capture_output=True)
    return str(out)


def bzimage_around(payload: bytes, *, version: int = 0x020F, setup_sects: int = 4,
                   kernel_version: bytes = b"6.6.6-test (nobody@nowhere) #1") -> bytes:
    """An x86 bzImage holding ``payload`` as boot.rst lays one out: ``setup_sects`` + 1 sectors
    of real-mode setup with the header at 0x1f1, then the protected-mode code, whose
    ``payload_offset`` bytes in the payload starts (the layout Linux's build writes)."""
    setup = bytearray((setup_sects + 1) * 512)
    setup[0x1F1] = setup_sects
    setup[0x1FE:0x200] = b"\x55\xaa"
    setup[0x202:0x206] = b"HdrS"
    setup[0x206:0x208] = version.to_bytes(2, "little")
    kv_at = 0x300
    setup[0x20E:0x210] = (kv_at - 0x200).to_bytes(2, "little")
    setup[kv_at:kv_at + len(kernel_version) + 1] = kernel_version + b"\0"
    setup[0x211] = 1  # LOADED_HIGH
    setup[0x214:0x218] = (0x100000).to_bytes(4, "little")
    pm = bytearray(b"\x90" * 0x400)  # the decompressor's code, before the payload
    payload_offset = len(pm)
    setup[0x248:0x24C] = payload_offset.to_bytes(4, "little")
    setup[0x24C:0x250] = len(payload).to_bytes(4, "little")
    return bytes(setup) + bytes(pm) + payload + b"\0" * 64


def refusing(xen: Any) -> Callable[[Any, type, str], None]:
    """For a simulated handle: ``refused(cfg, exc, match)`` checks that ``xen.create(cfg)``
    raises ``exc`` (its message matching ``match``) having asked the hypervisor only what a
    builder reads first (sysctl, xen_version, reading domctls) and made no domain.  The
    handle's names and physinfo are read before, so that only the create's calls count."""
    import pytest

    sim = xen.transport
    xen.domain_names()
    xen.physinfo()
    sim.log.clear()

    def refused(cfg: Any, exc: type, match: str) -> None:
        with pytest.raises(exc, match=match):
            xen.create(cfg)
        assert not [e for e in sim.log if e[0] not in ("sysctl", "xen_version", "domctl") or
                    e[:2] == ("domctl", "createdomain")], sim.log

    return refused


def store_paths(xs: Any, top: str) -> set:  # type: ignore[type-arg]
    """Every xenstore path at and below ``top`` (empty when ``top`` is absent)."""
    try:
        names = xs.directory(top)
    except Exception:  # noqa: BLE001 - absent
        return set()
    out = {top}
    for n in names:
        out |= store_paths(xs, f"{top}/{n}")
    return out


def build_calls(xen: Any, cfg: Any) -> List[Tuple[str, Any]]:
    """The (hypercall, sub-op) of every call ``xen.create(cfg)`` issues on a simulated handle, in order."""
    sim = xen.transport
    sim.log.clear()
    xen.create(cfg)
    return [(op, sub) for op, sub, _rc in sim.log]


def fails_cleanly_at_each_step(new_sim: Callable[[], Any], cfg: Any, calls: Sequence[Tuple[str, Any]]) -> int:
    """Fail each distinct call of a build (``calls``, from :func:`build_calls`) from
    createdomain on, in turn, with EIO on a fresh simulated handle from ``new_sim()``: each
    time the error is the one injected and nothing is left (no domain, no node under /vm or
    /libxl, no /local/domain entry, nothing introduced).  How many calls were failed."""
    import errno

    import pytest

    from xenprivcmd.errors import HypercallError

    steps: List[Tuple[str, Any]] = []
    for c in calls:
        if c not in steps and c[0] != "xen_version" and c != ("sysctl", "physinfo"):
            steps.append(c)
    first_create = calls.index(("domctl", "createdomain"))
    tried = 0
    for op, sub in steps:
        if calls.index((op, sub)) < first_create:
            continue  # reads before anything is made
        xen = new_sim()
        sim = xen.transport
        before = set(sim.host.domains)
        xs = xen.xenstore()
        kept = {top: store_paths(xs, top) for top in ("/vm", "/libxl")}
        sim.faults.fail(errno.EIO, op=op, subop=sub)
        with pytest.raises(HypercallError) as ei:
            xen.create(cfg)
        assert ei.value.errno == errno.EIO, (op, sub)
        assert set(sim.host.domains) == before, (op, sub)
        xs = xen.xenstore()
        for top, paths in kept.items():
            assert store_paths(xs, top) == paths, (op, sub, top)
        assert not [d for d in xs.directory("/local/domain") if int(d) not in before], (op, sub)
        assert not [d for d in sim.host.store.introduced if d not in before], (op, sub)
        tried += 1
    return tried
