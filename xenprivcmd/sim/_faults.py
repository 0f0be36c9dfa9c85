"""Fault injection for the simulator (``transport.faults``); see :mod:`xenprivcmd.sim`."""

from __future__ import annotations

import errno as _errno
from typing import List, Optional, Union

from ..abi.hypercalls import HYPERCALL_NAMES, HYPERCALLS

#: What a garbled reply can be (see the package doc).
GARBLES = {
    "count": "a count beyond what was asked (num_domains > max_domains, readconsole count > buffer, "
             "num_cpus/num_nodes/nr_cpus > asked)",
    "record_size": "getdomaininfolist records packed 8 bytes short (wrong stride)",
    "unterminated": "xen_version fixed-size strings filled to the end with no NUL",
    "varbuf": "xen_varbuf sub-ops report more bytes than the buffer holds (and a size query beyond any plausible reply)",
    "domid": "getdomaininfo answers with a record of another domid",
    "zeros": "the reply is left all zeros (the hypervisor wrote nothing)",
}


class Fault:
    """One armed fault: fail with ``errno`` or garble the reply (``garble``)."""

    __slots__ = ("errno", "garble", "op", "subop", "skip", "times", "hits")

    def __init__(self, errno: Optional[int], garble: Optional[str], op: Optional[int], subop: Union[None, int, str],
                 skip: int, times: Optional[int]) -> None:
        self.errno = errno
        self.garble = garble
        self.op = op
        self.subop = subop
        self.skip = skip
        self.times = times
        self.hits = 0

    @property
    def armed(self) -> bool:
        return self.times is None or self.hits < self.times

    def matches(self, op: int, subop: Union[int, str, None], subop_num: Optional[int]) -> bool:
        if self.op is not None and self.op != op:
            return False
        if self.subop is not None:
            if isinstance(self.subop, int):
                return self.subop == subop_num
            return self.subop == subop
        return True

    def __repr__(self) -> str:
        what = f"errno={_errno.errorcode.get(self.errno, self.errno)}" if self.errno else f"garble={self.garble}"
        where = HYPERCALL_NAMES.get(self.op, str(self.op)) if self.op is not None else "any"
        if self.subop is not None:
            where += f"/{self.subop}"
        return f"<Fault {what} on {where} skip={self.skip} times={self.times} hits={self.hits}>"


class Faults:
    """The fault plan of one :class:`~xenprivcmd.sim.SimTransport`."""

    def __init__(self) -> None:
        self.rules: List[Fault] = []
        #: Faults that fired, in order: (call number, fault).
        self.fired: List[tuple[int, Fault]] = []

    def fail(self, err: int, *, nth: int = 1, op: Union[None, int, str] = None, subop: Union[None, int, str] = None,
             times: Optional[int] = 1) -> Fault:
        """Make the ``nth`` matching hypercall from now fail with ``err`` (``times`` in a row; None: forever)."""
        if not isinstance(err, int) or err <= 0:
            raise ValueError(f"errno must be a positive int, not {err!r}")
        return self._add(Fault(err, None, _op(op), _subop(subop), _nth(nth), _times(times)))

    def garble(self, kind: str, *, nth: int = 1, op: Union[None, int, str] = None,
               subop: Union[None, int, str] = None, times: Optional[int] = 1) -> Fault:
        """Make the ``nth`` matching hypercall from now return a garbled reply of ``kind`` (see ``GARBLES``)."""
        if kind not in GARBLES:
            raise ValueError(f"unknown garble {kind!r} (known: {', '.join(GARBLES)})")
        return self._add(Fault(None, kind, _op(op), _subop(subop), _nth(nth), _times(times)))

    def _add(self, f: Fault) -> Fault:
        self.rules.append(f)
        return f

    def clear(self) -> None:
        self.rules.clear()

    @property
    def pending(self) -> List[Fault]:
        return [f for f in self.rules if f.armed]

    def match(self, call: int, op: int, subop: Union[int, str, None], subop_num: Optional[int]) -> Optional[Fault]:
        """The fault this call triggers, if any (consumes it)."""
        hit: Optional[Fault] = None
        for f in self.rules:
            if not f.armed or not f.matches(op, subop, subop_num):
                continue
            if f.skip > 0:
                f.skip -= 1
                continue
            if hit is None:
                f.hits += 1
                hit = f
        if hit is not None:
            self.fired.append((call, hit))
            self.rules = [f for f in self.rules if f.armed]
        return hit


def _op(op: Union[None, int, str]) -> Optional[int]:
    if op is None or isinstance(op, int):
        return op
    try:
        return HYPERCALLS[op]
    except KeyError:
        raise ValueError(f"unknown hypercall {op!r} (known: {', '.join(HYPERCALLS)})") from None


def _subop(subop: Union[None, int, str]) -> Union[None, int, str]:
    if isinstance(subop, str):
        for prefix in ("XEN_DOMCTL_", "XEN_SYSCTL_", "XENVER_"):
            if subop.startswith(prefix):
                return subop[len(prefix):]
    return subop


def _nth(nth: int) -> int:
    if isinstance(nth, bool) or not isinstance(nth, int) or nth < 1:
        raise ValueError(f"nth must be an int >= 1, not {nth!r}")
    return nth - 1


def _times(times: Optional[int]) -> Optional[int]:
    if times is not None and (not isinstance(times, int) or times < 1):
        raise ValueError(f"times must be None or an int >= 1, not {times!r}")
    return times
