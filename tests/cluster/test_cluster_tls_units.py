"""What the local cluster's nodes are configured with (adr/0190), without starting them: SASL_SSL on the client
listener and between brokers, a keystore holding a platform-CA certificate for the brokers' addresses, the root
CA as truststore, the test listeners only when asked for. The brokers themselves run in test_sasl_cluster."""

from __future__ import annotations

import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12

from fleetstream.stack import kafka as stack_kafka
from runtime.pki import PlatformPKI
from runtime.settings import Settings


def _props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def _cluster(tmp_path, **kw) -> Settings:
    s = Settings(data_dir=tmp_path, kafka_brokers=3, kafka_port=40000, **kw)
    stack_kafka.cluster_settings(s)
    PlatformPKI(s.pki_dir).ensure(broker_sans=["127.0.0.1"])
    return s


def test_a_cluster_serves_sasl_ssl_with_a_platform_ca_certificate(tmp_path):
    s = _cluster(tmp_path)
    assert (s.kafka_security_protocol, s.kafka_ssl_ca_file) == ("SASL_SSL", PlatformPKI(s.pki_dir).ca_cert)
    assert s.bootstrap_servers == "127.0.0.1:40000,127.0.0.1:40004,127.0.0.1:40008"
    tls = stack_kafka.cluster_tls(s)
    p = _props(stack_kafka._cluster_properties(s, 1, tmp_path / "d", tls))
    assert p["listeners"] == "SASL_SSL://127.0.0.1:40004,CONTROLLER://127.0.0.1:40005"
    assert p["inter.broker.listener.name"] == "SASL_SSL" and "SASL_SSL:SASL_SSL" in p["listener.security.protocol.map"]
    assert "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config" in p
    assert p["ssl.truststore.location"] == str(PlatformPKI(s.pki_dir).ca_cert) and p["ssl.truststore.type"] == "PEM"
    assert not any(k.startswith(("listener.name.oauth", "listener.name.mtls")) for k in p)
    # the keystore opens with its password and holds a server certificate for the brokers' address, chained
    # to the platform root
    key, cert, chain = pkcs12.load_key_and_certificates(open(p["ssl.keystore.location"], "rb").read(),
                                                        p["ssl.keystore.password"].encode())
    assert key is not None and cert is not None
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in sans.get_values_for_type(x509.IPAddress)
    root = x509.load_pem_x509_certificate(PlatformPKI(s.pki_dir).ca_cert.read_bytes())
    assert cert.issuer == root.subject and [c.subject for c in chain] == [root.subject]
    assert (tmp_path / "kafka" / "keystore.p12").stat().st_mode & 0o077 == 0


def test_the_test_listeners_and_the_plaintext_mode_are_asked_for(tmp_path):
    s = _cluster(tmp_path / "a", kafka_test_oauth_listener=True, kafka_test_mtls_listener=True,
                 kafka_allow_test_only_security=True)
    p = _props(stack_kafka._cluster_properties(s, 0, tmp_path / "d", stack_kafka.cluster_tls(s)))
    assert p["listeners"].endswith(",OAUTH://127.0.0.1:40002,MTLS://127.0.0.1:40003")
    assert p["listener.name.mtls.ssl.client.auth"] == "required" and "MTLS:SSL" in p["listener.security.protocol.map"]
    assert stack_kafka.mtls_bootstrap(s) == "127.0.0.1:40003,127.0.0.1:40007,127.0.0.1:40011"

    plain = _cluster(tmp_path / "b", kafka_security_protocol="SASL_PLAINTEXT")
    assert plain.kafka_ssl_ca_file is None and stack_kafka.cluster_tls(plain) == {}
    assert plain.kafka_sasl_username == stack_kafka.CLUSTER_USER and plain.kafka_sasl_password
    p = _props(stack_kafka._cluster_properties(plain, 0, tmp_path / "d", {}))
    assert p["inter.broker.listener.name"] == "SASL_PLAINTEXT" and "ssl.keystore.location" not in p
