"""Group ``remote``: one operation over ``sim+ssh://`` to localhost against the same
operation locally, and against the link's own floor, in the same run.

A real sshd on 127.0.0.1 (tests/sshd.py); the remote interpreter is Debian's
``python3 -S`` with the shipped package.

* floor: one 64-byte frame written to ``ssh ... cat`` and read back, over the
  same kind of connection (what any request/reply over ssh costs);
* remote: ``domain_info(0)`` and ``domains()`` on a ``sim+ssh://`` handle;
* local: the same on ``sim:///default`` in this process.

Round trips per operation are counted by the handle (``round_trips``) and
reported with the ratios; the target is one per operation.
"""

from __future__ import annotations

import os
import subprocess
from typing import Any, Iterator

import pytest

import xenprivcmd
from tests.sshd import Sshd

GROUP = "remote"


@pytest.fixture(scope="module")
def sshd() -> Iterator[Sshd]:
    s = Sshd().start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def remote(sshd: Sshd) -> Iterator[Any]:
    h = xenprivcmd.open(sshd.uri())
    h.domain_info(0, name=False)
    yield h
    h.close()


@pytest.fixture(scope="module")
def local() -> Iterator[Any]:
    h = xenprivcmd.open("sim:///default")
    h.domain_info(0, name=False)
    yield h
    h.close()


def test_floor_echo_over_ssh(benchmark: Any, sshd: Sshd) -> None:
    p = subprocess.Popen(["ssh", "-T", "-p", str(sshd.port), "-i", sshd.client_key, "-o", "BatchMode=yes",
                          "-o", f"UserKnownHostsFile={sshd.known_hosts}", "root@127.0.0.1", "cat"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
    assert p.stdin is not None and p.stdout is not None
    out, fd = p.stdin, p.stdout.fileno()
    frame = b"x" * 64

    def echo() -> None:
        out.write(frame)
        got = 0
        while got < len(frame):
            got += len(os.read(fd, 65536))

    echo()
    benchmark.group = GROUP
    benchmark.extra_info.update(role="floor", op="echo")
    benchmark(echo)
    out.close()
    p.wait(10)


@pytest.mark.parametrize("op", ["domain_info", "domains"])
def test_remote_op(benchmark: Any, remote: Any, op: str) -> None:
    call = (lambda: remote.domain_info(0, name=False)) if op == "domain_info" else (lambda: remote.domains(names=False))
    before = remote.round_trips
    call()
    trips = remote.round_trips - before
    benchmark.group = GROUP
    benchmark.extra_info.update(role="remote", op=op, round_trips=trips)
    benchmark(call)


@pytest.mark.parametrize("op", ["domain_info", "domains"])
def test_local_op(benchmark: Any, local: Any, op: str) -> None:
    call = (lambda: local.domain_info(0, name=False)) if op == "domain_info" else (lambda: local.domains(names=False))
    benchmark.group = GROUP
    benchmark.extra_info.update(role="local", op=op)
    benchmark(call)
