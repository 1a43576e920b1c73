"""One settings model for every fleetstream process.

Each process builds it once (from ``FLEETSTREAM_*`` environment variables) and passes the part it needs
down; deep modules never read the environment themselves.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from .pki import write_private

if TYPE_CHECKING:
    from .kafka import KafkaClients
    from .kafka_security import KafkaSecurity

DEFAULT_APP_PASSWORD = "fleetstream-app"
# the local cluster's node i listens on kafka_port + STRIDE·i (client listener), +1 (controller), +2 and +3 (the
# test listeners: unsecured-JWT OAUTHBEARER, SSL with client certificates); fleetstream/stack/kafka.py, adr/0190
KAFKA_NODE_PORT_STRIDE = 4
# settings holding a secret: handed to child processes in their environment, never written to a file
SECRET = {"secret": True}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FLEETSTREAM_", extra="ignore")

    env: str = Field("dev", description="dev | prod; prod refuses generated secrets")
    data_dir: Path = Field(Path(".fleetstream"), description="all logs, data and keys of the local stack")
    host: str = "127.0.0.1"
    public_host: str = Field("localhost", description="host name devices and tenants use to reach us")

    kafka_port: int = 19092
    kafka_controller_port: int = 19093
    kafka_bootstrap: str | None = Field(None, description="external Kafka; unset = the local broker")
    kafka_partitions: int = 6
    kafka_jvm: Literal["server", "lean"] = Field(
        "server", description="the local brokers' JVM (adr/0211): server = G1 and the C2 JIT, for throughput; "
                              "lean = serial GC and C1 only, about half the CPU to start and less to idle, for "
                              "short-lived stacks such as the test suite's")
    kafka_client_id: str = Field("fleetstream", description="client.id of Kafka clients whose use names none")
    kafka_security: dict[str, str] = Field(default_factory=dict, description="librdkafka security properties "
                                           "(security.protocol, ssl.*, sasl.*) merged into every Kafka client, as "
                                           "JSON, merged after the settings below; empty = nothing more "
                                           "(adr/0125, adr/0130)", json_schema_extra=SECRET)
    # Kafka security (adr/0130): one group every client reads — confluent-kafka through runtime.kafka, Faust's
    # aiokafka through faust_options(). PLAINTEXT is the local single-broker stack.
    kafka_security_protocol: str = Field("PLAINTEXT", description="PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL")
    kafka_sasl_mechanism: str = Field("SCRAM-SHA-512", description="SCRAM-SHA-512 | SCRAM-SHA-256 | PLAIN | "
                                      "OAUTHBEARER | AWS_MSK_IAM (= OAUTHBEARER with the MSK IAM token provider)")
    kafka_sasl_username: str | None = Field(None, description="SASL SCRAM/PLAIN user; the principal of an "
                                            "unsecured JWT")
    kafka_sasl_password: str | None = Field(None, description="SASL SCRAM/PLAIN password", json_schema_extra=SECRET)
    kafka_oauth_provider: str = Field("aws-msk-iam", description="token provider of OAUTHBEARER: aws-msk-iam | "
                                      "unsecured-jwt (Kafka's test-only unsecured listener; refused in prod)")
    kafka_aws_region: str | None = Field(None, description="region of the MSK cluster (IAM tokens); unset = "
                                         "AWS_REGION")
    kafka_ssl_ca_file: Path | None = Field(None, description="CA bundle of the brokers' TLS certificates; "
                                           "unset = the system's")
    kafka_ssl_cert_file: Path | None = Field(None, description="client certificate (SSL with client certs)")
    kafka_ssl_key_file: Path | None = Field(None, description="the client certificate's private key")
    kafka_ssl_key_password: str | None = Field(None, description="password of the client key",
                                               json_schema_extra=SECRET)
    # durability of every topic the platform creates (adr/0131): production RF 3 / min ISR 2
    kafka_replication_factor: int = Field(1, description="replication factor of every topic the platform creates")
    kafka_min_insync_replicas: int = Field(1, description="min.insync.replicas of every topic the platform creates")
    kafka_brokers: int = Field(1, description="local stack: KRaft nodes to run; 2 or more = a SASL_SSL SCRAM "
                               "cluster (certificates from the platform CA) with RF 3 / min ISR 2 (adr/0132, "
                               "adr/0190); FLEETSTREAM_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT serves it without TLS")
    kafka_test_oauth_listener: bool = Field(False, description="test only, local cluster: also an OAUTHBEARER "
                                            "listener with Kafka's unsecured-JWT validator (tests of the token "
                                            "callback); needs FLEETSTREAM_KAFKA_ALLOW_TEST_ONLY_SECURITY")
    kafka_test_mtls_listener: bool = Field(False, description="test only, local cluster: also an SSL listener "
                                           "that requires a client certificate chaining to the platform root CA "
                                           "(tests of the mTLS path); needs FLEETSTREAM_KAFKA_ALLOW_TEST_ONLY_SECURITY")
    kafka_allow_test_only_security: bool = Field(False, description="dev/test flag: allow Kafka security modes "
                                                 "that only tests may use (unsecured-JWT OAUTHBEARER, the local "
                                                 "cluster's test listeners, librdkafka switches that turn off "
                                                 "verification); without it they fail start-up; prod refuses "
                                                 "the flag itself (adr/0191)")
    # tenant Kafka credentials (adr/0145): what a data engineer is told to connect to
    kafka_tenant_bootstrap: str | None = Field(None, description="bootstrap servers handed out with tenant Kafka "
                                               "credentials (a listener tenants can reach); unset = the platform's")
    kafka_tenant_security_protocol: str | None = Field(None, description="security protocol tenants connect with; "
                                                       "unset = the platform's")

    # Schema Registry (adr/0140): any Confluent-compatible one by URL; unset = the local Apicurio
    schema_registry_port: int = 18081
    schema_registry_url: str | None = Field(None, description="Confluent-compatible Schema Registry base URL "
                                            "(Confluent, Karapace, Redpanda, Apicurio's …/apis/ccompat/v7); "
                                            "unset = the local Apicurio")
    schema_registry_user: str | None = Field(None, description="basic-auth user of the Schema Registry")
    schema_registry_password: str | None = Field(None, description="basic-auth password of the Schema Registry",
                                                 json_schema_extra=SECRET)
    schema_registry_ca_file: Path | None = Field(None, description="CA bundle that signs the registry's TLS "
                                                 "certificate, when it is not a public one")

    mqtt_tls_port: int = 18883
    mqtt_host: str | None = Field(None, description="external MQTT broker; unset = the local Mosquitto")
    mqtt_broker: Literal["mosquitto", "emqx"] = Field(
        "mosquitto", description="which broker the control plane talks to (adr/0139): Mosquitto with the platform's "
        "access plugin and dynamic security, or EMQX through its REST API and HTTP authorization hook")
    emqx_api_url: str | None = Field(None, description="EMQX REST API, e.g. http://emqx-dashboard:18083/api/v5")
    emqx_api_key: str | None = None
    emqx_api_secret: str | None = Field(None, json_schema_extra=SECRET)
    broker_hook_secret: str | None = Field(None, description="bearer token EMQX's HTTP authorization source sends; "
                                           "unset = the hook answers 404", json_schema_extra=SECRET)

    postgres_port: int = 15432
    postgres_dsn: str | None = Field(None, description="owner DSN of an external Postgres", json_schema_extra=SECRET)
    postgres_app_password: str = Field(DEFAULT_APP_PASSWORD, description="the application role's password; "
                                       "prod refuses the default", json_schema_extra=SECRET)

    gateway_port: int = 18080
    streams_web_port: int = 18090
    streams_web_host: str = Field("127.0.0.1", description="interface of the streams worker's web port; "
                                  "loopback whatever FLEETSTREAM_HOST says")
    streams_web_token: str | None = Field(None, description="bearer token the streams worker's web port "
                                          "requires; unset = no web port (the local stack makes one per run)",
                                          json_schema_extra=SECRET)
    clickhouse_dsn: str | None = Field(None, description="chdb:///path (embedded) or http(s)://… (server)",
                                       json_schema_extra=SECRET)
    clickhouse_cluster: str | None = Field(None, description="a ClickHouse server cluster's name (remote_servers): "
                                           "replicated tables behind Distributed ones, adr/0138; unset = one node")
    clickhouse_readers: int = Field(4, ge=0, le=64, description="the gateway's ClickHouse clients for queries, "
                                    "beside the writer's (adr/0185, adr/0193); 0 = queries share the writer's")

    token_ttl_s: int = 900
    outbox_wait_s: float = Field(5.0, gt=0, le=60, description="longest an API answer waits for Kafka to have "
                                 "its change's control-plane record; the change is committed either way and the "
                                 "outbox relay publishes it later (adr/0108)")
    sub_devices_per_tenant: int = Field(10_000, ge=0, description="sub-devices of gateways and Sparkplug edge nodes "
                                        "the control plane registers per tenant on first sight (adr/0158)")
    coap_port: int = Field(5683, description="CoAP telemetry endpoint devices are told about (UDP)")
    device_docs_url: str = Field("docs/devices", description="where the device contract is published; "
                                 "GET /v1/devices/{id}/connection links to its pages")
    # a plain str: the local supervisor hands settings to its children through model_dump()
    secrets_master_key: str | None = Field(None, description="seals tenant CA keys at rest; required outside dev",
                                           json_schema_extra=SECRET)
    secrets_master_key_file: Path | None = Field(None, description="file holding the master key instead (a mounted "
                                                 "secret); outside the data dir and not readable by others in prod")

    # one insert writes a part per table and rollup view, so inserts per second are the sink's cost:
    # 1 s batches cost ~4x less CPU per message than 250 ms at 1-5k msg/s and keep queryable under 2 s (adr/0065)
    sink_batch_size: int = 20000
    sink_batch_ms: int = 1000
    sink_group_prefix: str = Field("fleetstream-sink-clickhouse", description="consumer group(s) of the ClickHouse sinks")
    sink_test_commit_delay_ms: int = Field(0, description="test only: pause between a sink write and its commit")
    # the gateway's view of command states (adr/0192): live commands always, finished ones bounded
    gateway_command_retention_s: int = Field(7 * 86400, description="a finished command (succeeded, failed, "
                                             "timed_out, expired) leaves the gateway's view this long after it "
                                             "finished; its history stays in ClickHouse's command_history")
    gateway_finished_commands_per_device: int = Field(20, description="finished commands the gateway's view "
                                                      "holds per device (the newest); bounds its memory")
    live_queue_size: int = Field(256, description="events buffered per live connection before the drop policy applies")
    live_idle_after_s: float = Field(30.0, ge=0, description="seconds the live hub keeps reading after its last "
                                     "subscriber left; then it holds no partitions until the next (adr/0200)")
    max_clock_skew_s: int = Field(300, description="device timestamps further in the future are rejected")
    status_default_timeout_s: int = Field(300, description="a device with no activity for this long (event time) is OFFLINE")
    status_timeouts_s: dict[str, int] = Field(default_factory=dict, description="inactivity timeout per device type")
    metrics_port: int = Field(0, description="base /metrics port of non-gateway roles (+ role offset); 0 = off")
    log_format: str = Field("text", description="text | json (one object per line with tenant/device/trace ids)")
    ingest_trusted_proxies: list[str] = Field(default_factory=list, description="CIDRs whose X-Client-Cert "
                                              "header POST /v1/ingest believes (a TLS-terminating ingress)")
    ingest_rate_per_s: float = Field(100.0, description="HTTP ingest: readings per second per device")
    ingest_burst: float = Field(200.0, description="HTTP ingest: readings a device may send at once")
    webhook_allow: str = Field("", description="comma-separated CIDRs and host names rule webhooks may call "
                               "although they are not public (tests, on-prem receivers); adr/0110")

    @classmethod
    def secret_fields(cls) -> set[str]:
        return {n for n, f in cls.model_fields.items() if (f.json_schema_extra or {}).get("secret")}

    @property
    def is_prod(self) -> bool:
        return self.env == "prod"

    @property
    def root(self) -> Path:
        return self.data_dir.resolve()

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def pki_dir(self) -> Path:
        return self.root / "pki"

    @property
    def jwt_keys_dir(self) -> Path:
        return self.root / "keys" / "jwt"

    @property
    def master_key_path(self) -> Path:
        """Where the master key is read from (the configured file), or generated in dev: beside the data
        dir, not in it, so a copy or backup of the data dir does not carry the key to its sealed keys."""
        return self.secrets_master_key_file or self.root.with_name(self.root.name + ".master.key")

    def tenant_kafka_listener(self) -> tuple[str, str]:
        """(bootstrap, security protocol) handed out with tenant Kafka credentials (adr/0145): the listener
        tenants reach, the platform's own unless ``kafka_tenant_*`` name another."""
        return (self.kafka_tenant_bootstrap or self.bootstrap_servers,
                self.kafka_tenant_security_protocol or self.kafka_security_protocol.upper())

    @property
    def bootstrap_servers(self) -> str:
        # the local cluster's node i listens on kafka_port + STRIDE·i (fleetstream/stack/kafka.py)
        return self.kafka_bootstrap or ",".join(f"{self.host}:{self.kafka_port + KAFKA_NODE_PORT_STRIDE * i}"
                                                for i in range(max(1, self.kafka_brokers)))

    @property
    def kafka_security_settings(self) -> KafkaSecurity:
        from .kafka_security import KafkaSecurity

        return KafkaSecurity.from_settings(self)

    @property
    def kafka(self) -> KafkaClients:
        """The factory of this process's Kafka clients (adr/0125)."""
        from .kafka import KafkaClients

        return KafkaClients.from_settings(self)

    @property
    def schema_registry_endpoint(self) -> str:
        """Where the Confluent-compatible API answers (what tools call ``schema.registry.url``)."""
        return self.schema_registry_url or f"http://{self.host}:{self.schema_registry_port}/apis/ccompat/v7"

    @property
    def mqtt_broker_host(self) -> str:
        return self.mqtt_host or self.host

    @property
    def owner_dsn(self) -> str:
        if self.postgres_dsn:
            return self.postgres_dsn
        return (f"postgresql://fleetstream_owner:{owner_password(self)}"
                f"@{self.host}:{self.postgres_port}/fleetstream")

    @property
    def app_dsn(self) -> str:
        """The gateway's role: not the owner, not a superuser, no BYPASSRLS (see adr/0004)."""
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        parts = conninfo_to_dict(self.owner_dsn)
        parts.update(user="fleetstream_app", password=self.postgres_app_password)
        return make_conninfo(**parts)

    @property
    def chdb_dsn(self) -> str:
        return self.clickhouse_dsn or f"chdb://{self.root / 'clickhouse'}"

    @property
    def clickhouse_embedded(self) -> bool:
        return self.chdb_dsn.startswith("chdb:")

    @property
    def gateway_url(self) -> str:
        return f"http://{self.public_host}:{self.gateway_port}"


def load() -> Settings:
    return Settings()


def owner_password(s: Settings) -> str:
    """The local stack's Postgres owner password: generated once into the data dir (0600), never in settings."""
    path = s.root / "postgres" / "owner.password"
    if not path.exists():
        write_private(path, secrets.token_urlsafe(24).encode())
    return path.read_text().strip()
