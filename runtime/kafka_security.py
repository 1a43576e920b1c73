"""Kafka security, one settings group for every client (adr/0130).

``KafkaSecurity`` is read once from ``Settings`` (``FLEETSTREAM_KAFKA_SECURITY_PROTOCOL``, ``…_SASL_*``,
``…_SSL_*``, ``…_OAUTH_PROVIDER``) and spelled twice: as librdkafka properties for every confluent-kafka client
(``librdkafka()``, merged last by ``runtime.kafka.KafkaClients``) and as Faust ``broker_credentials`` for the
worker's aiokafka clients (``faust_options()``). The four production shapes:

- ``PLAINTEXT`` — the local single-broker stack (default);
- ``SSL`` with a client certificate (mTLS, e.g. Strimzi);
- ``SASL_SSL`` + ``SCRAM-SHA-512`` (user and password; also ``SASL_PLAINTEXT`` for the local cluster);
- ``SASL_SSL`` + ``OAUTHBEARER`` with a token provider: ``aws-msk-iam`` (MSK IAM on port 9098, tokens signed
  by ``aws-msk-iam-sasl-signer-python`` with the pod's IAM role) or ``unsecured-jwt`` (Kafka's test-only
  unsecured validator; what the tests check the callback path against).

Test-only modes (``only_for_tests``: the unsecured-JWT provider, the local cluster's test listeners,
librdkafka switches that turn verification off) fail start-up unless ``FLEETSTREAM_KAFKA_ALLOW_TEST_ONLY_SECURITY``
is set, a dev flag that ``FLEETSTREAM_ENV=prod`` refuses (adr/0191).

``AWS_MSK_IAM`` as the mechanism is shorthand for ``OAUTHBEARER`` + ``aws-msk-iam`` (the Helm values' name).
"""

from __future__ import annotations

import base64
import json
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .settings import Settings

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
PASSWORD_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")
OAUTH_PROVIDERS = ("aws-msk-iam", "unsecured-jwt")
UNSECURED_JWT_LIFETIME_S = 3600
ALLOW_FLAG = "FLEETSTREAM_KAFKA_ALLOW_TEST_ONLY_SECURITY"
# librdkafka properties (in FLEETSTREAM_KAFKA_SECURITY) that only a test may set: each turns a verification off
# (→ whether a value is the test-only one)
TEST_ONLY_LIBRDKAFKA = {
    "enable.sasl.oauthbearer.unsecure.jwt": lambda v: v.lower() in ("true", "1"),  # unsigned tokens
    "enable.ssl.certificate.verification": lambda v: v.lower() in ("false", "0"),  # any broker certificate
    "ssl.endpoint.identification.algorithm": lambda v: v.lower() == "none",  # any broker host name
}


class KafkaSecurityError(ValueError):
    """The security settings do not describe a client that could connect (names the setting to fix)."""


@dataclass(frozen=True)
class KafkaSecurity:
    protocol: str = "PLAINTEXT"
    mechanism: str = "SCRAM-SHA-512"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    oauth_provider: str = "aws-msk-iam"
    aws_region: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    key_password: str | None = field(default=None, repr=False)
    allow_test_only: bool = False  # the dev flag: the unsecured-JWT provider may be used

    @classmethod
    def from_settings(cls, s: Settings) -> KafkaSecurity:
        found = only_for_tests(s)
        if found and not s.kafka_allow_test_only_security:
            raise KafkaSecurityError(_test_only_refusal(found))
        mechanism, provider = s.kafka_sasl_mechanism.upper(), s.kafka_oauth_provider
        if mechanism == "AWS_MSK_IAM":
            mechanism, provider = "OAUTHBEARER", "aws-msk-iam"
        return cls(protocol=s.kafka_security_protocol.upper(), mechanism=mechanism, username=s.kafka_sasl_username,
                   password=s.kafka_sasl_password, oauth_provider=provider, aws_region=s.kafka_aws_region,
                   ca_file=_path(s.kafka_ssl_ca_file), cert_file=_path(s.kafka_ssl_cert_file),
                   key_file=_path(s.kafka_ssl_key_file), key_password=s.kafka_ssl_key_password,
                   allow_test_only=s.kafka_allow_test_only_security).validated()

    # -- what it is --------------------------------------------------------------------------------------
    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def oauth(self) -> bool:
        return self.sasl and self.mechanism == "OAUTHBEARER"

    def validated(self) -> KafkaSecurity:
        if self.protocol not in PROTOCOLS:
            raise KafkaSecurityError(f"FLEETSTREAM_KAFKA_SECURITY_PROTOCOL={self.protocol!r}: one of {PROTOCOLS}")
        if self.sasl:
            if self.mechanism not in (*PASSWORD_MECHANISMS, "OAUTHBEARER"):
                raise KafkaSecurityError(f"FLEETSTREAM_KAFKA_SASL_MECHANISM={self.mechanism!r}: one of "
                                         f"{(*PASSWORD_MECHANISMS, 'OAUTHBEARER', 'AWS_MSK_IAM')}")
            if self.mechanism in PASSWORD_MECHANISMS and not (self.username and self.password):
                raise KafkaSecurityError(f"SASL {self.mechanism} needs FLEETSTREAM_KAFKA_SASL_USERNAME and "
                                         "FLEETSTREAM_KAFKA_SASL_PASSWORD")
            if self.oauth and self.oauth_provider not in OAUTH_PROVIDERS:
                raise KafkaSecurityError(f"FLEETSTREAM_KAFKA_OAUTH_PROVIDER={self.oauth_provider!r}: one of "
                                         f"{OAUTH_PROVIDERS}")
        if self.oauth_provider == "unsecured-jwt" and not self.allow_test_only:
            raise KafkaSecurityError(_test_only_refusal([UNSECURED_JWT]))
        if bool(self.cert_file) != bool(self.key_file):
            raise KafkaSecurityError("a client certificate needs both FLEETSTREAM_KAFKA_SSL_CERT_FILE and "
                                     "FLEETSTREAM_KAFKA_SSL_KEY_FILE")
        if (self.cert_file or self.ca_file) and not self.tls:
            raise KafkaSecurityError(f"FLEETSTREAM_KAFKA_SSL_* set but the protocol {self.protocol} uses no TLS")
        return self

    def describe(self) -> str:
        """One line for logs and errors; never a secret."""
        if not self.sasl:
            return self.protocol + (" with a client certificate" if self.cert_file else "")
        who = f"provider {self.oauth_provider}" if self.oauth else f"user {self.username!r}"
        return f"{self.protocol} {self.mechanism} ({who})"

    # -- librdkafka (confluent-kafka) -------------------------------------------------------------------
    def librdkafka(self) -> dict[str, Any]:
        conf: dict[str, Any] = {}
        if self.protocol == "PLAINTEXT":
            return conf
        conf["security.protocol"] = self.protocol
        if self.tls:
            conf.update({k: v for k, v in (("ssl.ca.location", self.ca_file),
                                           ("ssl.certificate.location", self.cert_file),
                                           ("ssl.key.location", self.key_file),
                                           ("ssl.key.password", self.key_password)) if v})
        if self.sasl:
            conf["sasl.mechanism"] = self.mechanism
            if self.oauth:
                conf["oauth_cb"] = self.token_provider().librdkafka_cb
            else:
                conf.update({"sasl.username": self.username, "sasl.password": self.password})
        return conf

    # -- aiokafka (the Faust worker) ---------------------------------------------------------------------
    def faust_options(self) -> dict[str, Any]:
        """``faust.App`` settings: ``broker_credentials`` (Faust turns them into aiokafka's
        ``security_protocol``/``sasl_*``/``ssl_context``/``sasl_oauth_token_provider``)."""
        if self.protocol == "PLAINTEXT":
            return {}
        from faust.auth import OAuthCredentials, SASLCredentials, SSLCredentials

        context = self.ssl_context() if self.tls else None
        if self.protocol == "SSL":
            return {"broker_credentials": SSLCredentials(context)}
        if self.oauth:
            return {"broker_credentials": OAuthCredentials(oauth_cb=self.token_provider().aiokafka(),
                                                           ssl_context=context)}
        return {"broker_credentials": SASLCredentials(username=self.username, password=self.password,
                                                      ssl_context=context, mechanism=self.mechanism)}

    def ssl_context(self):
        from aiokafka.helpers import create_ssl_context

        return create_ssl_context(cafile=self.ca_file, certfile=self.cert_file, keyfile=self.key_file,
                                  password=self.key_password)

    def token_provider(self) -> TokenProvider:
        if self.oauth_provider == "unsecured-jwt":
            return UnsecuredJwt(self.username or "fleetstream")
        return MskIamToken(self.aws_region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"))


def _path(p) -> str | None:
    return str(p) if p else None


UNSECURED_JWT = "FLEETSTREAM_KAFKA_OAUTH_PROVIDER=unsecured-jwt (unsigned OAUTHBEARER tokens)"


def only_for_tests(s: Settings) -> list[str]:
    """The Kafka security settings in ``s`` that only tests may use, each named as an operator would set it."""
    found = [UNSECURED_JWT] if s.kafka_oauth_provider == "unsecured-jwt" else []
    if s.kafka_test_oauth_listener:
        found.append("FLEETSTREAM_KAFKA_TEST_OAUTH_LISTENER (brokers accepting unsigned OAUTHBEARER tokens)")
    if s.kafka_test_mtls_listener:
        found.append("FLEETSTREAM_KAFKA_TEST_MTLS_LISTENER (brokers accepting any certificate under the platform "
                     "root, device certificates included)")
    for key, value in s.kafka_security.items():
        if key in TEST_ONLY_LIBRDKAFKA and TEST_ONLY_LIBRDKAFKA[key](str(value)):
            found.append(f"FLEETSTREAM_KAFKA_SECURITY {key}={value}")
    return found


def _test_only_refusal(found: list[str]) -> str:
    return (f"test-only Kafka security refused: {'; '.join(found)}. Set {ALLOW_FLAG}=true to use it in a test "
            "(FLEETSTREAM_ENV=prod refuses that flag)")


# -- OAUTHBEARER token providers: one ``token()`` → (token, expiry epoch s), spelled for both clients ---------
class TokenProvider:
    def token(self) -> tuple[str, float]:
        raise NotImplementedError

    principal = "fleetstream"  # librdkafka's client-side name of the token; the broker derives its own

    def librdkafka_cb(self, _oauthbearer_config: str) -> tuple[str, float, str]:
        """confluent-kafka's ``oauth_cb``: called on librdkafka's thread before each token expires."""
        return (*self.token(), self.principal)

    def aiokafka(self):
        """aiokafka's ``sasl_oauth_token_provider`` (async; the signer is sync and may do I/O for credentials)."""
        import asyncio

        from aiokafka.abc import AbstractTokenProvider

        outer = self

        class Provider(AbstractTokenProvider):
            async def token(self) -> str:
                return (await asyncio.get_running_loop().run_in_executor(None, outer.token))[0]

        return Provider()


@dataclass(frozen=True)
class MskIamToken(TokenProvider):
    """A SigV4-signed MSK IAM token from the default AWS credential chain (IRSA on EKS, adr/0130)."""

    region: str | None

    def token(self) -> tuple[str, float]:
        if not self.region:
            raise KafkaSecurityError("MSK IAM tokens need FLEETSTREAM_KAFKA_AWS_REGION (or AWS_REGION)")
        from aws_msk_iam_sasl_signer import MSKAuthTokenProvider

        token, expiry_ms = MSKAuthTokenProvider.generate_auth_token(self.region)
        return token, expiry_ms / 1000


@dataclass(frozen=True)
class UnsecuredJwt(TokenProvider):
    """An unsigned JWT (``alg: none``) naming ``principal``: what Kafka's
    ``OAuthBearerUnsecuredValidatorCallbackHandler`` accepts. For tests of the callback path only."""

    principal: str
    lifetime_s: int = UNSECURED_JWT_LIFETIME_S

    def token(self) -> tuple[str, float]:
        now = int(time.time())
        exp = now + self.lifetime_s
        part = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()  # noqa: E731
        return f"{part({'alg': 'none'})}.{part({'sub': self.principal, 'iat': now, 'exp': exp})}.", exp
