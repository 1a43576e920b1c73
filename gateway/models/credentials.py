"""Device credentials: certificates and JWT public keys."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field

from schemas.strict import Text


class CertificateRequest(BaseModel):
    """With ``csr_pem`` the device keeps its private key (recommended); without, the platform generates a
    P-256 key pair and returns the private key once."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"csr_pem": "-----BEGIN CERTIFICATE REQUEST-----\n…\n-----END CERTIFICATE REQUEST-----\n", "days": 365}]})
    csr_pem: Text | None = Field(None, max_length=16_000, description="PEM CSR; its subject is ignored")
    days: int = Field(365, ge=1, le=3650)


class CertificatePublic(BaseModel):
    serial: str
    fingerprint_sha256: str
    status: str
    not_after: dt.datetime
    created_at: dt.datetime
    revoked_at: dt.datetime | None

    @classmethod
    def of(cls, row: dict) -> CertificatePublic:
        return cls(**{k: row[k] for k in cls.model_fields})


class CertificateIssued(BaseModel):
    serial: str
    fingerprint_sha256: str
    not_after: dt.datetime
    certificate_pem: str = Field(description="the device certificate followed by the tenant CA: present both")
    ca_pem: str = Field(description="the platform root the broker's certificate chains to")
    private_key_pem: str | None = Field(None, description="only when the platform generated the key; shown once")


class KeyCreate(BaseModel):
    """The key and proof that the device holds its private half (adr/0106)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"public_key_pem": "-----BEGIN PUBLIC KEY-----\n…\n-----END PUBLIC KEY-----\n",
         "proof": "eyJhbGciOiJFUzI1NiIsImtpZCI6Ii4uLiJ9.eyJpc3MiOiI8dGVuYW50PiIsInN1YiI6IjxkZXZpY2U-In0.c2ln"}]})
    public_key_pem: Text = Field(max_length=4000, description="ECDSA P-256 (ES256) public key, PEM")
    proof: Text = Field(max_length=4000, description=(
        "a JWT signed with the new key's private half: header alg ES256, kid = the key id (base64url SHA-256 of "
        "the SubjectPublicKeyInfo); claims iss = tenant id, sub = device id, aud = fleetstream-key-registration, "
        "iat, exp (at most 15 min after iat)"))


class KeyPublic(BaseModel):
    key_id: str = Field(description="put this in the JWT header as kid")
    algorithm: str
    status: str
    public_key_pem: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None

    @classmethod
    def of(cls, row: dict) -> KeyPublic:
        return cls(**{k: row[k] for k in cls.model_fields})
