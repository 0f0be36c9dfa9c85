"""Typed, immutable results, declared in one place."""

from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

__all__ = ["VersionInfo"]


class VersionInfo(NamedTuple):
    """What ``XENVER_*`` says about the hypervisor.

    Fields the hypervisor does not report (an old release without the
    sub-op, a build without a build id) are ``None``.
    """

    major: int
    minor: int
    extraversion: str
    compiler: str
    compile_by: str
    compile_domain: str
    compile_date: str
    capabilities: Tuple[str, ...]
    changeset: str
    virt_start: int
    features: int
    pagesize: int
    commandline: Optional[str]
    build_id: Optional[str]
    #: True when the non-truncating ``XENVER_*2`` sub-ops answered.
    varbuf_ops: bool

    @property
    def release(self) -> str:
        """``"4.17.7"``-style: major.minor and the extraversion."""
        return f"{self.major}.{self.minor}{self.extraversion}"
