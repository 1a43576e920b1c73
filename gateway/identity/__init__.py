"""Device identity: per-tenant CAs and device certificates, provisioning by CSR and claim tokens,
secrets at rest."""
