"""What the tests of terminals share (``xpsh console`` on a pty, here and in a dom0)."""

from __future__ import annotations

import os
import select
import time


def read_until(fd: int, want: bytes, seconds: float) -> bytes:
    """What ``fd`` gives until ``want`` is in it, it ends or closes (what came so far), or
    ``seconds`` pass (an assertion that shows the end of what came)."""
    got = b""
    deadline = time.monotonic() + seconds
    while want not in got:
        left = deadline - time.monotonic()
        assert left > 0, got[-3000:]
        if select.select([fd], [], [], left)[0]:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            got += chunk
    return got
