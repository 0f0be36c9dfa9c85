"""The C library's memory calls (``mmap``, ``munmap``, ``madvise``) with their prototypes, loaded
once for the OS modules of this package (:mod:`.privcmd`, :mod:`.mapping`)."""

from __future__ import annotations

import ctypes

__all__ = ["libc", "MAP_FAILED"]

#: What ``mmap`` returns on failure, as ctypes gives it back.
MAP_FAILED = ctypes.c_void_p(-1).value


def _load_libc() -> ctypes.CDLL:
    lib = ctypes.CDLL(None, use_errno=True)
    lib.mmap.restype = ctypes.c_void_p
    lib.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    lib.munmap.restype = ctypes.c_int
    lib.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    lib.madvise.restype = ctypes.c_int
    lib.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return lib


libc = _load_libc()
