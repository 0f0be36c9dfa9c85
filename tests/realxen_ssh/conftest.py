"""Host-side tests of xen+ssh:// against the sshd of a real dom0 under QEMU.

``tools/run-tests`` boots the bookworm dom0 with ``xenvm run --ssh-port PORT``
(sshd in dom0, reachable only through QEMU's user network forwarded to
127.0.0.1:PORT), and runs this directory *on the host* while the dom0 waits:
``XENPRIVCMD_SSH_DOM0=PORT:KEYDIR:MARKERDIR``.  The dom0 touches
``MARKERDIR/ready`` once it is up and waits for ``MARKERDIR/done``, which
this session touches when it ends.  Without that variable the directory
refuses to run rather than skip.
"""

from __future__ import annotations

import os
import subprocess
import time
from typing import Dict, Iterator, List, NamedTuple
from urllib.parse import quote

import pytest

READY_TIMEOUT = 900


class Dom0(NamedTuple):
    port: int
    keys: str
    markers: str

    def key(self, name: str) -> str:
        return os.path.join(self.keys, name)

    def uri(self, user: str = "root", key: str = "client", extra: str = "") -> str:
        return (f"xen+ssh://{user}@127.0.0.1:{self.port}/?keyfile={quote(self.key(key))}"
                f"&known_hosts={quote(self.key('known_hosts'))}&no_tty=1{extra}")

    def ssh(self, command: str, user: str = "root", key: str = "client") -> str:
        """Run ``command`` in dom0 over plain ssh (how the tests run xl there)."""
        p = subprocess.run(["ssh", "-T", "-p", str(self.port), "-i", self.key(key), "-o", "BatchMode=yes",
                            "-o", f"UserKnownHostsFile={self.key('known_hosts')}", f"{user}@127.0.0.1", command],
                           capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, f"ssh {command!r}: {p.returncode} {p.stderr}"
        return p.stdout

    def xl_list(self) -> List[Dict[str, str]]:
        rows = []
        for line in self.ssh(". /etc/profile; xl list").splitlines()[1:]:
            parts = line.split()
            if len(parts) >= 6:
                rows.append({"name": " ".join(parts[:-5]), "id": parts[-5], "mem": parts[-4], "vcpus": parts[-3],
                             "state": parts[-2], "time": parts[-1]})
        return rows


def pytest_collection_modifyitems(config, items):  # type: ignore[no-untyped-def]
    if not os.environ.get("XENPRIVCMD_SSH_DOM0"):
        raise pytest.UsageError("tests/realxen_ssh runs on the host while tools/run-tests boots a dom0 with sshd")


@pytest.fixture(scope="session")
def dom0() -> Iterator[Dom0]:
    port, keys, markers = os.environ["XENPRIVCMD_SSH_DOM0"].split(":", 2)
    d = Dom0(int(port), keys, markers)
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while not os.path.exists(os.path.join(markers, "ready")):
            assert time.monotonic() < deadline, f"the dom0 did not come up within {READY_TIMEOUT} s"
            time.sleep(0.5)
        yield d
    finally:
        open(os.path.join(markers, "done"), "w").close()
