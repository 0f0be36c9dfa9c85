"""Tests that run inside the dom0 of a real Xen hypervisor.

They are started by ``tools/run-tests`` through ``tools/xenvm`` (one boot per
Debian suite, x86_64 or arm64, with guests ``guest1``..``guest3`` created by ``xl``: PV on
x86, Arm's only kind of guest on arm64; guest2 and guest3 are spent by
test_zy_control.py's reboot and shutdown tests), never on the
host: outside a dom0 the whole directory refuses to run rather than skip.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from typing import Dict, Iterator, List

import pytest

import xenprivcmd

#: The memory (MiB) tools/xenvm gave each xl guest: 128 on x86_64, 192 on arm64 (an arm64 guest
#: cannot balloon much below 110 MiB).  Its init exports it to the test command.
GUEST_MIB = int(os.environ.get("XENVM_GUEST_MEM", "0"))

#: XEN_DOMINF_blocked and XEN_DOMINF_running (bits 4 and 5 in every release's public domctl.h):
#: a domain's vcpus change them between two reads (blocked even while the domain is paused:
#: seen on Xen 4.14).
CHANGING_FLAGS = (1 << 4) | (1 << 5)


def pytest_collection_modifyitems(config, items):  # type: ignore[no-untyped-def]
    if not os.path.exists("/dev/xen/privcmd"):
        raise pytest.UsageError(
            "tests/realxen runs inside a Xen dom0 only; use `tools/run-tests --suite bookworm` to boot one"
        )
    if not GUEST_MIB:
        raise pytest.UsageError("tests/realxen needs $XENVM_GUEST_MEM, the xl guests' memory in MiB "
                                "(tools/xenvm sets it)")


@pytest.fixture(scope="session")
def xen() -> Iterator[xenprivcmd.Handle]:
    with xenprivcmd.open() as h:
        yield h


def xl(*args: str) -> str:
    exe = shutil.which("xl")
    assert exe, "xl is not on PATH in this dom0"
    out = subprocess.run([exe, *args], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"xl {' '.join(args)} failed: {out.stderr}"
    return out.stdout


def xl_info() -> Dict[str, str]:
    info = {}
    for line in xl("info").splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            info[k.strip()] = v.strip()
    return info


def xl_list() -> List[Dict[str, str]]:
    rows = []
    for line in xl("list").splitlines()[1:]:
        parts = line.split()
        if len(parts) < 6:
            continue
        name = " ".join(parts[:-5])
        domid, mem, vcpus, state, cpu_time = parts[-5:]
        rows.append({"name": name, "id": domid, "mem": mem, "vcpus": vcpus, "state": state, "time": cpu_time})
    return rows


def xl_table(*args: str) -> List[List[str]]:
    """Rows of an xl table whose first column is a name (no spaces in our names)."""
    lines = xl(*args).splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("Name"))
    return [re.split(r"\s+", line.strip()) for line in lines[header + 1 :] if line.strip()]


@pytest.fixture(scope="session")
def guest(xen: xenprivcmd.Handle) -> int:
    for row in xl_list():
        if row["name"] == "guest1":
            return int(row["id"])
    raise AssertionError("no guest1 domain: tools/xenvm must boot with --guests 1 or more")


SUITE_ABI = {
    # suite: (Xen series, domctl interface, sysctl interface) as Debian's packages build them
    "bullseye": ((4, 14), 0x12, 0x13),
    "bookworm": ((4, 17), 0x15, 0x15),
    "trixie": ((4, 20), 0x17, 0x15),
    # arm64 Xen (qemu-system-aarch64): the same releases, the same interface versions
    "bookworm-arm64": ((4, 17), 0x15, 0x15),
    "trixie-arm64": ((4, 20), 0x17, 0x15),
}

#: the architecture each suite's Xen runs on (and the library must have picked)
SUITE_ARCH = {s: ("aarch64" if s.endswith("-arm64") else "x86_64") for s in SUITE_ABI}


@pytest.fixture(scope="session")
def suite() -> str:
    s = os.environ.get("XENVM_SUITE", "")
    assert s, "XENVM_SUITE is not set (tools/xenvm sets it in dom0)"
    return s
