"""Tenant API authentication: signing keys and access tokens, client secrets, revocation by LISTEN/NOTIFY."""
