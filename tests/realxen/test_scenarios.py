"""The scenario suite the simulator runs for every release, on the real hypervisor.

Each scenario gets a handle of its own, as it does on the simulator (some
depend on per-handle state, such as the console's incremental cursor).
"""

from __future__ import annotations

import pytest

import xenprivcmd

from .. import scenarios


@pytest.fixture
def fresh():
    with xenprivcmd.open() as h:
        yield h


@pytest.mark.parametrize("name", sorted(scenarios.SCENARIOS))
def test_scenario(fresh, name):
    scenarios.SCENARIOS[name](fresh)


@pytest.mark.parametrize("name", sorted(scenarios.GUEST_SCENARIOS))
def test_guest_scenario(fresh, guest, name):
    scenarios.GUEST_SCENARIOS[name](fresh, guest)
