"""Shared helpers of the robustness suite (tests/test_robust_*.py).

No tests here.  :data:`COUNTS` gathers what the suite tried (inputs per
decoder and per operation, faults injected, soak figures); a module-scoped
fixture of each test module prints them when the module finishes and, when
``ROBUST_COUNTS`` names a file, merges them into that JSON file (for the
README robustness table).
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import json
import mmap
import os
import signal
import threading
from contextlib import contextmanager
from typing import Any, Counter, Dict, Iterator, Optional

from hypothesis import HealthCheck, settings

from xenprivcmd.transport.privcmd import PAGE_SIZE, Buffer

#: "group/name" -> count (e.g. "decoder/domains", "op/pause", "faults/injected").
COUNTS: Counter[str] = collections.Counter()
#: Free-form figures (soak memory/fd numbers).
FIGURES: Dict[str, Any] = {}


def examples(default: int) -> int:
    """Examples per property (``ROBUST_EXAMPLES`` scales every test; CI keeps the defaults)."""
    scale = float(os.environ.get("ROBUST_SCALE", "1"))
    return max(1, int(default * scale))


def robust_settings(n: int) -> settings:
    """Bounded, deterministic-enough settings for a noisy 2-core box (no deadline, no database)."""
    return settings(
        max_examples=examples(n),
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


def report(config: Any, title: str, prefix: Optional[str] = None) -> None:
    """Print the counts (of ``prefix``, or all) through the terminal reporter, and merge them to $ROBUST_COUNTS."""
    items = sorted((k, v) for k, v in COUNTS.items() if prefix is None or k.startswith(prefix))
    tr = config.pluginmanager.getplugin("terminalreporter") if config is not None else None
    capman = config.pluginmanager.getplugin("capturemanager") if config is not None else None
    if tr is not None and items:
        with capman.global_and_fixture_disabled() if capman is not None else contextlib.nullcontext():
            _print(tr, title, items, prefix)
    path = os.environ.get("ROBUST_COUNTS")
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError):
            data = {"counts": {}, "figures": {}}
        for k, v in items:
            data["counts"][k] = data["counts"].get(k, 0) + v
        data["figures"].update({k: v for k, v in FIGURES.items() if prefix is None or k.startswith(prefix)})
        with open(path, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)


def _print(tr: Any, title: str, items: Any, prefix: Optional[str]) -> None:
    tr.write_line("")
    tr.write_line(f"robustness counts: {title}")
    for k, v in items:
        tr.write_line(f"  {k:<48} {v:>10}")
    for k, v in sorted(FIGURES.items()):
        if prefix is None or k.startswith(prefix):
            tr.write_line(f"  {k:<48} {v}")


# -- watchdog ------------------------------------------------------------------------------

class Hang(BaseException):
    """Raised into the main thread when an operation runs past its time (a BaseException,
    so no ``except Exception`` in the library swallows it)."""


@contextmanager
def watchdog(seconds: float) -> Iterator[None]:
    """Raise :class:`Hang` in the main thread after ``seconds`` (no-op in other threads)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def fire(_sig: int, _frame: Any) -> None:
        raise Hang(f"operation still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# -- guarded hypercall buffers --------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_libc.mprotect.restype = ctypes.c_int
_libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.munmap.restype = ctypes.c_int
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_MAP_FAILED = ctypes.c_void_p(-1).value


def _guarded_unmap(address: int, size: int) -> None:
    if _libc.munmap(address - PAGE_SIZE, size + 2 * PAGE_SIZE) != 0:
        raise OSError(ctypes.get_errno(), "munmap of a guarded buffer failed")


def map_guarded(size: int) -> Buffer:
    """A hypercall buffer with an inaccessible (PROT_NONE) page on each side: a read
    or write just outside it faults instead of silently touching other memory."""
    total = size + 2 * PAGE_SIZE
    base = _libc.mmap(None, total, 0, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
    if base is None or base == _MAP_FAILED:
        raise OSError(ctypes.get_errno(), "mmap of a guarded buffer failed")
    if _libc.mprotect(base + PAGE_SIZE, size, mmap.PROT_READ | mmap.PROT_WRITE) != 0:
        err = ctypes.get_errno()
        _libc.munmap(base, total)
        raise OSError(err, "mprotect of a guarded buffer failed")
    return Buffer(base + PAGE_SIZE, size, "guarded", _guarded_unmap)


# -- process figures: the same readings as tools/soak.py ------------------------------------------

def _load_soak() -> Any:
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools", "soak.py")
    spec = importlib.util.spec_from_file_location("xenprivcmd_soak_tool", path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_soak = _load_soak()
rss_kib = _soak.rss_kib
open_fds = _soak.open_fds
maps_lines = _soak.maps_lines


def count(key: str, n: int = 1) -> None:
    COUNTS[key] += n
