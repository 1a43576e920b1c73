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
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"public_key_pem": "-----BEGIN PUBLIC KEY-----\n…\n-----END PUBLIC KEY-----\n"}]})
    public_key_pem: Text = Field(max_length=4000, description="ECDSA P-256 (ES256) public key, PEM")


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
