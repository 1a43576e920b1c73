"""docs/devices/examples/device_jwt.sh (openssl only) makes tokens the platform's verifier accepts: the kid is
the registered key's id, the DER signature becomes JOSE r‖s for every length of r and s, each token is new."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from runtime.device_jwt import DeviceJwtVerifier, DeviceKey, key_id

SCRIPT = Path(__file__).resolve().parents[2] / "docs" / "devices" / "examples" / "device_jwt.sh"


def test_tokens_from_the_shell_example_verify(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "device.key"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    pub = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    tenant, kid = str(uuid.uuid4()), key_id(pub)
    v = DeviceJwtVerifier(lambda t, d, k: DeviceKey(kid, tenant, "meter-1", pub) if (t, d, k) == (tenant, "meter-1", kid)
                          else None)
    tokens = set()
    for _ in range(24):  # ~1 in 64 tokens has an r or s shorter than 32 bytes: over many runs, padding is too
        out = subprocess.run(["sh", str(SCRIPT), tenant, "meter-1", str(path)], capture_output=True, text=True,
                             timeout=30, check=True)
        token = out.stdout.strip()
        ident = v.verify(token)
        assert (ident.tenant_id, ident.device_id, ident.key_id) == (tenant, "meter-1", kid)
        tokens.add(token)
    assert len(tokens) == 24
