"""The stable get_domain_state domctl (Xen 4.21+, interface version 0)."""

import pytest

import xenprivcmd


@pytest.mark.parametrize("release", ["4.21.0", "4.22.0", "4.23-dev"])
def test_domain_state_on_releases_that_have_it(release):
    h = xenprivcmd.open(f"sim:///?xen={release}&domains=3")
    s0 = h.domain_state(0)
    assert s0.exists and s0.control and s0.hardware and not s0.dying
    s1 = h.domain_state(1)
    assert s1.exists and not s1.control and s1.unique_id != s0.unique_id
    with pytest.raises(xenprivcmd.NoSuchDomain):
        h.domain_state(77)


@pytest.mark.parametrize("release", ["4.14.6", "4.20.0"])
def test_domain_state_before_4_21_is_not_supported_and_issues_nothing(release):
    h = xenprivcmd.open(f"sim:///?xen={release}")
    h.abi  # noqa: B018 - detection issues its own calls first
    before = h.transport.calls
    with pytest.raises(xenprivcmd.NotSupported, match="get_domain_state"):
        h.domain_state(0)
    assert h.transport.calls == before
