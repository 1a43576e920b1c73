"""Pure rules of single sign-on (adr/0165): which issuers may be configured, and claim → role."""

from __future__ import annotations

import pytest

from gateway.auth.oidc import issuer_allowed, role_for

CFG = {"role_claim": "groups", "role_map": {"ops": "operator", "admins": "admin", "readers": "viewer"},
       "default_role": None}


@pytest.mark.parametrize("issuer, ok", [
    ("https://login.example.com/realms/acme", True), ("http://127.0.0.1:9400", True), ("http://localhost:8080", True),
    ("http://[::1]:9400", True), ("http://login.example.com", False), ("http://10.0.0.5", False),
    ("ftp://127.0.0.1", False), ("https://", False)])
def test_issuers_are_https_or_this_machine(issuer, ok):
    assert issuer_allowed(issuer) is ok


def test_the_highest_mapped_role_wins_and_unmapped_people_get_the_default():
    assert role_for(CFG, {"groups": ["readers", "ops"]}) == "operator"
    assert role_for(CFG, {"groups": ["admins", "ops", "x"]}) == "admin"
    assert role_for(CFG, {"groups": "ops"}) == "operator"  # a single string value
    assert role_for(CFG, {"groups": ["x"]}) is None
    assert role_for(CFG, {}) is None
    assert role_for({**CFG, "default_role": "viewer"}, {"groups": ["x"]}) == "viewer"
    assert role_for(CFG, {"groups": [{"nested": "ops"}, 5]}) is None  # odd values are ignored, not errors
