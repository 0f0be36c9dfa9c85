"""The simulated guests' consoles: the ring in guest memory, xenconsoled's log and pty.

A simulated PV guest prints through its console ring (``xencons_interface``: ``out[]``
and ``out_prod`` in its console frame, :mod:`._memory`), as Linux's hvc driver does;
the simulated xenconsoled reads what it printed at once (``out_cons``) and appends it
to the guest's log (:meth:`GuestConsoles.log`, as ``/var/log/xen/console/guest-NAME.log``)
and to the guest's pty when one was asked for (:meth:`GuestConsoles.tty`, the path
``console/tty`` in xenstore names, as xenconsoled writes it).  What is typed on the pty
goes into ``in[]``; the guest echoes it, and answers Enter with a prompt.
``control/sysrq`` makes it print the sysrq help (:mod:`._store`), as Linux does for
``xl sysrq DOM h``.

The ring fills like the real one: ``out_prod`` counts every byte ever printed, the
2048-byte ``out[]`` holds the last of them.
"""

from __future__ import annotations

import os
import select
import struct
import threading
from typing import TYPE_CHECKING, Dict, Optional, Tuple

if TYPE_CHECKING:
    from ._host import Domain, Host

__all__ = ["GuestConsoles", "boot_text", "SYSRQ_HELP", "PROMPT"]

PROMPT = "~ # "
SYSRQ_HELP = ("sysrq: HELP : loglevel(0-9) reboot(b) crash(c) terminate-all-tasks(e) memory-full-oom-kill(f)"
              " kill-all-tasks(i) thaw-filesystems(j) show-backtrace-all-active-cpus(l) show-memory-usage(m)"
              " nice-all-RT-tasks(n) poweroff(o) show-registers(p) show-all-timers(q) unraw(r) sync(s)"
              " show-task-states(t) unmount(u) show-blocked-tasks(w) dump-ftrace-buffer(z)\r\n")

_u32 = struct.Struct("<I")


def boot_text(name: str, domid: int) -> str:
    """What a simulated guest printed while booting."""
    lines = [
        "[    0.000000] Linux version 6.1.0-sim (xenprivcmd simulator) #1 SMP PREEMPT_DYNAMIC",
        "[    0.000000] Booting paravirtualized kernel on Xen",
        f"[    0.000000] Xen version: simulated, domain {domid}",
        "[    0.412000] hvc0: console [hvc0] enabled",
        "[    1.020000] xen:balloon: Initialising balloon driver",
        "[    1.730000] Run /init as init process",
        f"Welcome to {name}",
        "xenvm guest up",
        PROMPT,
    ]
    return "\r\n".join(lines)


class _Pty:
    __slots__ = ("master", "slave", "path", "stop", "thread")

    def __init__(self, master: int, slave: int, path: str) -> None:
        self.master = master
        self.slave = slave
        self.path = path
        self.stop = threading.Event()
        self.thread: Optional[threading.Thread] = None


class GuestConsoles:
    """Every simulated guest's console (see the module doc)."""

    def __init__(self, host: "Host") -> None:
        self.host = host
        self._logs: Dict[int, bytearray] = {}
        self._ptys: Dict[int, _Pty] = {}
        self._lock = threading.RLock()
        lay = host.family("rings").layout("xencons_interface")
        self._off = {name: lay.offset(name) for name in ("in", "out", "in_cons", "in_prod", "out_cons", "out_prod")}
        self._in_size = lay.fields["in"].size
        self._out_size = lay.fields["out"].size

    # -- the ring -----------------------------------------------------------------------------------------
    def _key(self, d: "Domain") -> Tuple[str, int]:
        key: Tuple[str, int] = self.host.memory.console_key(d)
        return key

    def _get(self, key: Tuple[str, int], field: str) -> int:
        return int(_u32.unpack(self.host.memory.ram.read(key, self._off[field], 4))[0])

    def _put(self, key: Tuple[str, int], field: str, value: int) -> None:
        self.host.memory.ram.write(key, self._off[field], _u32.pack(value & 0xFFFFFFFF))

    def initial_page(self, d: "Domain") -> bytes:
        """The console frame when first touched: the boot messages printed, and read by xenconsoled."""
        text = boot_text(self.host.names.get(d.domid) or f"domain-{d.domid}", d.domid).encode()
        page = bytearray(4096)
        for i, b in enumerate(text[-self._out_size:]):
            page[self._off["out"] + (len(text) - min(len(text), self._out_size) + i) % self._out_size] = b
        _u32.pack_into(page, self._off["out_prod"], len(text))
        _u32.pack_into(page, self._off["out_cons"], len(text))
        with self._lock:
            self._logs[d.domid] = bytearray(text)
        return bytes(page)

    def booted(self, d: "Domain") -> None:
        """Make sure the guest has booted (its console frame exists, with its boot messages)."""
        self.host.memory.ram.offset(self._key(d))

    def write(self, d: "Domain", text: str) -> None:
        """The guest prints ``text`` on hvc0; xenconsoled reads it at once."""
        data = text.encode("utf-8", "replace")
        with self._lock:
            key = self._key(d)
            self.booted(d)
            ram = self.host.memory.ram
            base, size = self._off["out"], self._out_size
            while data:
                prod, cons = self._get(key, "out_prod"), self._get(key, "out_cons")
                room = size - ((prod - cons) & 0xFFFFFFFF)
                chunk, data = data[:room], data[room:]
                ring = bytearray(ram.read(key, base, size))
                for i, b in enumerate(chunk):
                    ring[(prod + i) % size] = b
                ram.write(key, base, bytes(ring))
                self._put(key, "out_prod", prod + len(chunk))
                self._consume(d, key)

    def _consume(self, d: "Domain", key: Tuple[str, int]) -> None:
        """xenconsoled: what is between out_cons and out_prod to the log and the pty."""
        prod, cons = self._get(key, "out_prod"), self._get(key, "out_cons")
        n = (prod - cons) & 0xFFFFFFFF
        if not n:
            return
        ring = self.host.memory.ram.read(key, self._off["out"], self._out_size)
        got = bytes(ring[(cons + i) % self._out_size] for i in range(n))
        self._put(key, "out_cons", prod)
        self._logs[d.domid] += got
        pty = self._ptys.get(d.domid)
        if pty is not None:
            try:
                os.write(pty.master, got)
            except OSError:  # nobody reads and the pty is full: xenconsoled drops it too
                pass

    def log(self, domid: int) -> bytes:
        """Everything xenconsoled read from the guest's console so far."""
        d = self.host.domains.get(domid)
        if d is not None and d.pv and not d.is_dom0 and d.built:
            self.booted(d)
        with self._lock:
            return bytes(self._logs.get(domid, b""))

    # -- typing -------------------------------------------------------------------------------------------
    def type(self, d: "Domain", data: bytes) -> None:
        """Keys for the guest: into ``in[]``; the guest reads them, echoes, prompts after Enter."""
        with self._lock:
            key = self._key(d)
            self.booted(d)
            ram = self.host.memory.ram
            base, size = self._off["in"], self._in_size
            data = data[:size]
            prod = self._get(key, "in_prod")
            ring = bytearray(ram.read(key, base, size))
            for i, b in enumerate(data):
                ring[(prod + i) % size] = b
            ram.write(key, base, bytes(ring))
            self._put(key, "in_prod", prod + len(data))
            # the guest's hvc driver reads them
            cons = self._get(key, "in_cons")
            n = (prod + len(data) - cons) & 0xFFFFFFFF
            typed = bytes(ring[(cons + i) % size] for i in range(min(n, size)))
            self._put(key, "in_cons", cons + n)
        out = ""
        for b in typed:
            out += "\r\n" + PROMPT if b in (0x0D, 0x0A) else chr(b)
        if out and d.pause_count == 0 and d.shutdown_code is None:
            self.write(d, out)

    # -- ptys ---------------------------------------------------------------------------------------------
    def tty(self, d: "Domain") -> str:
        """The pty xenconsoled offers for the guest (made on first request)."""
        self.booted(d)
        with self._lock:
            pty = self._ptys.get(d.domid)
            if pty is not None:
                return pty.path
            import tty

            master, slave = os.openpty()
            tty.setraw(slave)
            os.set_blocking(master, False)
            pty = self._ptys[d.domid] = _Pty(master, slave, os.ttyname(slave))
        t = threading.Thread(target=self._serve, args=(d, pty), name=f"sim-console-{d.domid}", daemon=True)
        pty.thread = t
        t.start()
        return pty.path

    def _serve(self, d: "Domain", pty: _Pty) -> None:
        while not pty.stop.is_set():
            try:
                ready, _, _ = select.select([pty.master], [], [], 0.2)
            except (OSError, ValueError):
                return
            if not ready:
                continue
            try:
                data = os.read(pty.master, 1024)
            except BlockingIOError:
                continue
            except OSError:
                return
            if data and d.domid in self.host.domains:
                self.type(d, data)

    def forget(self, domid: int) -> None:
        """The guest is gone: its pty closes (a reader sees the end), its log stays."""
        with self._lock:
            pty = self._ptys.pop(domid, None)
        if pty is not None:
            pty.stop.set()
            if pty.thread is not None and pty.thread is not threading.current_thread():
                pty.thread.join(1.0)
            for fd in (pty.master, pty.slave):
                try:
                    os.close(fd)
                except OSError:
                    pass

    def close(self) -> None:
        for domid in list(self._ptys):
            self.forget(domid)
