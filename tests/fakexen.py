"""A tiny in-process "hypervisor" answering ``xen_version`` only.

It sits behind the privcmd boundary (a :class:`MemoryTransport`): the library
encodes requests into real hypercall buffers, the fake reads them by address
with its own struct formats, and writes replies the way Xen lays them out.
The full simulator (``sim://``) grows out of the same interface.
"""

from __future__ import annotations

import errno
import struct
from typing import Dict, Optional, Tuple

from xenprivcmd.transport.privcmd import MemoryTransport

XEN_VERSION = 17


class FakeXen(MemoryTransport):
    kind = "fake"

    def __init__(
        self,
        major: int = 4,
        minor: int = 17,
        extra: str = ".7",
        varbuf: bool = False,
        caps: str = "xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_64",
        cmdline: str = "console=com1 dom0_mem=1024M",
        build_id: Optional[bytes] = b"\x12\x34\xab\xcd",
    ) -> None:
        super().__init__()
        self.major, self.minor, self.extra = major, minor, extra
        self.varbuf, self.caps, self.cmdline, self.build_id = varbuf, caps, cmdline, build_id
        self.fail: Dict[int, int] = {}  # subop -> errno
        self.garble: Dict[int, bytes] = {}  # subop -> raw reply bytes
        self.log: list[Tuple[int, int, int]] = []

    def handle(self, op: int, args: Tuple[int, int, int, int, int]) -> int:
        sub, arg = args[0], args[1]
        self.log.append((op, sub, arg))
        if op != XEN_VERSION:
            raise OSError(errno.ENOSYS, "fake: no such hypercall")
        if sub in self.fail:
            raise OSError(self.fail[sub], "fake failure")
        if sub in self.garble:
            self.write(arg, self.garble[sub])
            return 0
        fixed = {
            1: (self.extra, 16),
            3: (self.caps, 1024),
            4: ("abcdef0123, 2026-01-01", 64),
            9: (self.cmdline, 1024),
        }
        if sub == 0:
            return (self.major << 16) | self.minor
        if sub in fixed:
            text, size = fixed[sub]
            self.write(arg, text.encode()[: size - 1].ljust(size, b"\0"))
            return 0
        if sub == 2:
            self.write(arg, b"".join(s.encode().ljust(n, b"\0") for s, n in (("gcc 12", 64), ("builder", 16), ("debian.org", 32), ("Mon Jan 1", 32))))
            return 0
        if sub == 5:
            self.write(arg, struct.pack("=Q", 0xFFFF800000000000))
            return 0
        if sub == 6:
            idx = struct.unpack("=I", self.read(arg, 4))[0]
            self.write(arg + 4, struct.pack("=I", 0x2F if idx == 0 else 0))
            return 0
        if sub == 7:
            return 4096
        varbufs = {11: self.extra.encode(), 12: self.caps.encode(), 13: b"abcdef0123, 2026-01-01", 14: self.cmdline.encode()}
        if sub == 10:
            if self.build_id is None:
                raise OSError(errno.ENODATA, "no build id")
            data = self.build_id
        elif sub in varbufs and self.varbuf:
            data = varbufs[sub]
        else:
            raise OSError(errno.ENOSYS, "fake: no such sub-op")
        if arg == 0:
            return len(data)
        room = struct.unpack("=I", self.read(arg, 4))[0]
        if room < len(data):
            raise OSError(errno.ENOBUFS, "fake: buffer too small")
        self.write(arg + 4, data)
        return len(data)
