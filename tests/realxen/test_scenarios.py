"""The scenario suite the simulator runs for every release, on the real hypervisor."""

from __future__ import annotations

import pytest

from .. import scenarios


@pytest.mark.parametrize("name", sorted(scenarios.SCENARIOS))
def test_scenario(xen, name):
    scenarios.SCENARIOS[name](xen)


@pytest.mark.parametrize("name", sorted(scenarios.GUEST_SCENARIOS))
def test_guest_scenario(xen, guest, name):
    scenarios.GUEST_SCENARIOS[name](xen, guest)
