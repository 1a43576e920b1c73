"""Firmware releases as a tenant's release engineer and a device see them: an upload is signed and
immutable, the download resumes with Range requests through a short-lived per-device link, and nothing
of one tenant is visible to another."""

from __future__ import annotations

import hashlib

from gateway.ota.signing import verify_artifact, verify_manifest
from tests.ota.helpers import auth, device_type, random_image, upload


def test_upload_is_signed_immutable_and_downloadable_with_range(stack, factory, gateway):
    t = factory.tenant("fw")
    token = t.token(gateway)
    dtype, data = device_type(), random_image(40_000)
    r = upload(gateway, token, dtype, "1.4.0", data)
    assert r.status_code == 201, r.text
    rel = r.json()
    assert rel["sha256"] == hashlib.sha256(data).hexdigest() and rel["size"] == len(data)

    key = gateway.get("/v1/firmware/signing-key", headers=auth(token)).json()
    manifest = verify_manifest(rel["manifest"], rel["signature"], key["public_key_pem"])
    assert (manifest["device_type"], manifest["version"], manifest["tenant_id"]) == (dtype, "1.4.0", t.tenant_id)
    assert manifest["key_id"] == key["key_id"] == rel["key_id"]

    again = upload(gateway, token, dtype, "1.4.0", random_image(100))
    assert again.status_code == 409 and again.json()["error"]["code"] == "version_exists"
    bad = upload(gateway, token, dtype, "1.4", data)
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_version"

    dev = factory.device(t, device_type=dtype)
    link = gateway.post(f"/v1/firmware/{dtype}/1.4.0/links", headers=auth(token),
                        json={"device_id": dev.device_id, "ttl_s": 60})
    assert link.status_code == 201, link.text
    path = link.json()["url"].split("/v1/", 1)[1]
    first = gateway.get(f"/v1/{path}", headers={"Range": "bytes=0-9999"})
    assert first.status_code == 206 and len(first.content) == 10_000
    assert first.headers["content-range"] == f"bytes 0-9999/{len(data)}"
    rest = gateway.get(f"/v1/{path}", headers={"Range": "bytes=10000-"})  # resume after a dropped connection
    assert rest.status_code == 206
    verify_artifact(manifest, first.content + rest.content)

    forged = gateway.get(f"/v1/{path[:-3]}abc")
    assert forged.status_code == 403 and forged.json()["error"]["code"] == "invalid_link"


def test_other_tenants_see_nothing_and_scope_is_required(stack, factory, gateway):
    a, b = factory.tenant("fwa"), factory.tenant("fwb")
    dtype = device_type()
    assert upload(gateway, a.token(gateway), dtype, "2.0.0", random_image(1000)).status_code == 201
    tb = b.token(gateway)
    assert gateway.get(f"/v1/firmware/{dtype}/2.0.0", headers=auth(tb)).status_code == 404
    assert gateway.get("/v1/firmware", headers=auth(tb)).json()["count"] == 0
    # the same type and version is free for another tenant: releases are per tenant
    assert upload(gateway, tb, dtype, "2.0.0", random_image(1000)).status_code == 201
    r = upload(gateway, a.token(gateway, scope="devices:read"), dtype, "2.0.1", random_image(10))
    assert r.status_code == 403 and r.json()["error"]["code"] == "insufficient_scope"
    assert gateway.post("/v1/ota/campaigns", headers=auth(tb), json={}).status_code == 422
