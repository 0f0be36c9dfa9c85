"""Last (file order): destroy guest1 and see it gone for xl too."""

from __future__ import annotations

import time

import pytest

import xenprivcmd

from .conftest import xl_list


def test_destroy_guest(xen, guest):
    xen.destroy(guest)
    deadline = time.monotonic() + 60
    while str(guest) in {r["id"] for r in xl_list()}:
        assert time.monotonic() < deadline, "guest1 still listed by xl a minute after destroy"
        time.sleep(0.5)
    with pytest.raises(xenprivcmd.NoSuchDomain):
        xen.domain_info(guest)
