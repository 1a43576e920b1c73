"""The Kafka security settings group (adr/0130): each production shape, spelled for librdkafka and for
Faust's aiokafka from the same settings. Pure: no broker (the SASL cluster tests connect for real)."""

from __future__ import annotations

import base64
import json
import ssl

import pytest
from faust.auth import OAuthCredentials, SASLCredentials, SSLCredentials

from fleetstream.stack.supervisor import settings_env
from runtime.kafka_security import KafkaSecurity, KafkaSecurityError, MskIamToken, UnsecuredJwt
from runtime.settings import Settings


def test_plaintext_is_the_default_and_adds_nothing():
    s = Settings()
    assert s.kafka_security_settings.librdkafka() == {}
    assert s.kafka.security == {} and "broker_credentials" not in s.kafka.faust_options()


def test_scram_over_tls_for_both_clients():
    s = Settings(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-512",
                 kafka_sasl_username="fs", kafka_sasl_password="pw")
    assert s.kafka.config() == {"bootstrap.servers": s.bootstrap_servers, "client.id": "fleetstream",
                                "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
                                "sasl.username": "fs", "sasl.password": "pw"}
    cred = s.kafka.faust_options()["broker_credentials"]
    assert isinstance(cred, SASLCredentials)
    assert (cred.protocol.value, cred.mechanism.value, cred.username, cred.password) == \
        ("SASL_SSL", "SCRAM-SHA-512", "fs", "pw")
    assert isinstance(cred.ssl_context, ssl.SSLContext) and cred.ssl_context.verify_mode == ssl.CERT_REQUIRED
    assert "pw" not in repr(s.kafka_security_settings) and "pw" not in s.kafka_security_settings.describe()


def test_scram_without_tls_is_the_local_cluster():
    s = Settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_username="fs", kafka_sasl_password="pw")
    cred = s.kafka.faust_options()["broker_credentials"]
    assert cred.protocol.value == "SASL_PLAINTEXT" and cred.ssl_context is None
    assert s.kafka.security["security.protocol"] == "SASL_PLAINTEXT"


def test_ssl_with_a_client_certificate(tmp_path):
    from runtime.pki import PlatformPKI

    pki = PlatformPKI(tmp_path / "pki")
    pki.ensure(broker_sans=["localhost"])
    cert, key = pki.service_files("fleetstream-connector")
    s = Settings(kafka_security_protocol="SSL", kafka_ssl_ca_file=pki.ca_cert, kafka_ssl_cert_file=cert,
                 kafka_ssl_key_file=key)
    assert s.kafka.security == {"security.protocol": "SSL", "ssl.ca.location": str(pki.ca_cert),
                                "ssl.certificate.location": cert, "ssl.key.location": key}
    cred = s.kafka.faust_options()["broker_credentials"]
    assert isinstance(cred, SSLCredentials) and cred.protocol.value == "SSL"
    assert isinstance(cred.context, ssl.SSLContext)


def test_msk_iam_is_oauthbearer_with_the_signer_for_both_clients(monkeypatch):
    s = Settings(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="AWS_MSK_IAM", kafka_aws_region="eu-west-1")
    sec = s.kafka_security_settings
    assert (sec.mechanism, sec.oauth_provider) == ("OAUTHBEARER", "aws-msk-iam")
    conf = s.kafka.config()
    assert conf["security.protocol"] == "SASL_SSL" and conf["sasl.mechanism"] == "OAUTHBEARER"
    # the signer itself (SigV4 with the default AWS credential chain) with static test credentials
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    token, expiry, _principal = conf["oauth_cb"]("")
    url = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    assert url.startswith("https://kafka.eu-west-1.amazonaws.com/?Action=kafka-cluster%3AConnect")
    assert "X-Amz-Signature=" in url and expiry > 0
    cred = s.kafka.faust_options()["broker_credentials"]
    assert isinstance(cred, OAuthCredentials) and cred.protocol.value == "SASL_SSL"


def test_msk_iam_without_a_region_says_which_setting(monkeypatch):
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    with pytest.raises(KafkaSecurityError, match="FLEETSTREAM_KAFKA_AWS_REGION"):
        MskIamToken(None).token()


def test_unsecured_jwt_is_what_kafkas_unsecured_validator_reads():
    token, exp = UnsecuredJwt("alice", lifetime_s=60).token()
    header, payload, signature = token.split(".")
    dec = lambda p: json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))  # noqa: E731
    assert dec(header) == {"alg": "none"} and signature == ""
    claims = dec(payload)
    assert claims["sub"] == "alice" and claims["exp"] == exp and 55 < exp - claims["iat"] <= 60


@pytest.mark.parametrize("bad, match", [
    (dict(kafka_security_protocol="SASL_TLS"), "FLEETSTREAM_KAFKA_SECURITY_PROTOCOL"),
    (dict(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="GSSAPI"), "FLEETSTREAM_KAFKA_SASL_MECHANISM"),
    (dict(kafka_security_protocol="SASL_SSL"), "FLEETSTREAM_KAFKA_SASL_PASSWORD"),
    (dict(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="OAUTHBEARER", kafka_oauth_provider="x"),
     "FLEETSTREAM_KAFKA_OAUTH_PROVIDER"),
    (dict(kafka_security_protocol="SSL", kafka_ssl_cert_file="/c.pem"), "FLEETSTREAM_KAFKA_SSL_KEY_FILE"),
    (dict(kafka_ssl_ca_file="/ca.pem"), "uses no TLS"),
])
def test_settings_that_could_not_connect_are_refused_naming_the_setting(bad, match):
    with pytest.raises(KafkaSecurityError, match=match):
        Settings(**bad).kafka_security_settings.describe()


def test_the_group_survives_the_trip_to_a_child_and_secrets_stay_out_of_files(monkeypatch):
    s = Settings(kafka_security_protocol="SASL_SSL", kafka_sasl_username="fs", kafka_sasl_password="pw",
                 kafka_replication_factor=3, kafka_min_insync_replicas=2)
    assert {"kafka_sasl_password", "kafka_ssl_key_password"} <= Settings.secret_fields()
    assert "FLEETSTREAM_KAFKA_SASL_PASSWORD" not in settings_env(s, secrets=False)
    for k, v in settings_env(s).items():
        monkeypatch.setenv(k, v)
    again = Settings()
    assert again.kafka.config() == s.kafka.config()
    assert again.kafka_security_settings == KafkaSecurity.from_settings(s)
    assert (again.kafka.replication_factor, again.kafka.min_insync_replicas) == (3, 2)


# -- test-only modes (adr/0191) ------------------------------------------------------------------------------
TEST_ONLY = [
    (dict(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="OAUTHBEARER",
          kafka_oauth_provider="unsecured-jwt"), "FLEETSTREAM_KAFKA_OAUTH_PROVIDER=unsecured-jwt"),
    (dict(kafka_test_oauth_listener=True), "FLEETSTREAM_KAFKA_TEST_OAUTH_LISTENER"),
    (dict(kafka_test_mtls_listener=True), "FLEETSTREAM_KAFKA_TEST_MTLS_LISTENER"),
    (dict(kafka_security={"enable.sasl.oauthbearer.unsecure.jwt": "true"}), "enable.sasl.oauthbearer.unsecure.jwt"),
    (dict(kafka_security={"enable.ssl.certificate.verification": "false"}), "enable.ssl.certificate.verification"),
    (dict(kafka_security={"ssl.endpoint.identification.algorithm": "none"}), "ssl.endpoint.identification"),
]


@pytest.mark.parametrize("knob, name", TEST_ONLY)
def test_a_test_only_mode_fails_start_up_without_the_dev_flag(knob, name):
    with pytest.raises(KafkaSecurityError, match="test-only Kafka security refused") as err:
        Settings(**knob).kafka  # noqa: B018 - what every process builds first
    assert name in str(err.value) and "FLEETSTREAM_KAFKA_ALLOW_TEST_ONLY_SECURITY=true" in str(err.value)
    assert "\n" not in str(err.value)
    allowed = Settings(**knob, kafka_allow_test_only_security=True)
    assert allowed.kafka.bootstrap_servers  # the flag lets it through (dev and tests)


def test_the_unsecured_jwt_provider_needs_the_flag_when_built_directly_too():
    with pytest.raises(KafkaSecurityError, match="unsecured-jwt"):
        KafkaSecurity(protocol="SASL_SSL", mechanism="OAUTHBEARER", oauth_provider="unsecured-jwt").validated()
    sec = KafkaSecurity(protocol="SASL_SSL", mechanism="OAUTHBEARER", oauth_provider="unsecured-jwt",
                        allow_test_only=True).validated()
    assert isinstance(sec.token_provider(), UnsecuredJwt)


def test_production_values_are_not_test_only():
    """What the Helm chart runs (MSK IAM, SCRAM over TLS, mTLS, OIDC for librdkafka) starts without the flag."""
    for ok in (dict(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="AWS_MSK_IAM", kafka_aws_region="x"),
               dict(kafka_security_protocol="SASL_SSL", kafka_sasl_username="u", kafka_sasl_password="p"),
               dict(kafka_security={"ssl.endpoint.identification.algorithm": "https",
                                    "enable.ssl.certificate.verification": "true"})):
        assert Settings(**ok).kafka.bootstrap_servers


def test_prod_refuses_the_dev_flag_and_the_test_only_modes_for_every_role():
    from runtime import production

    s = Settings(env="prod", kafka_allow_test_only_security=True, kafka_test_oauth_listener=True)
    for role in ("gateway", "streams", "sink", "connector-mqtt", "up", "admin"):
        found = production.problems(s, role)
        assert any("FLEETSTREAM_KAFKA_ALLOW_TEST_ONLY_SECURITY is a dev flag" in p for p in found), (role, found)
        assert any("FLEETSTREAM_KAFKA_TEST_OAUTH_LISTENER" in p for p in found), (role, found)
    assert not any("KAFKA" in p for p in production.problems(Settings(env="prod"), "streams"))


def test_a_process_with_a_test_only_mode_exits_at_start_up_in_one_line(tmp_path):
    """`fleetstream run` (any role) and `up` say it on stderr and exit 2, before touching a broker."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "FLEETSTREAM_DATA_DIR": str(tmp_path), "FLEETSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
           "FLEETSTREAM_KAFKA_SASL_MECHANISM": "OAUTHBEARER", "FLEETSTREAM_KAFKA_OAUTH_PROVIDER": "unsecured-jwt",
           "FLEETSTREAM_KAFKA_BOOTSTRAP": "127.0.0.1:9"}
    for argv in (["run", "sink"], ["up"]):
        r = subprocess.run([sys.executable, "-m", "fleetstream.cli", *argv], env=env, capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 2, (argv, r.stderr)
        assert r.stderr.strip().count("\n") == 0 and "test-only Kafka security refused" in r.stderr, r.stderr
