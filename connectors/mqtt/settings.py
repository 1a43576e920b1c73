"""Process settings of the MQTT connector: broker address and identity from the platform settings,
the rest from an optional YAML file (``examples/connector.yaml``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from ..siteconfig import RateLimit, load_site


class MqttSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    host: str = "127.0.0.1"
    port: int = 18883
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    client_id: str = Field("fleetstream-connector-0", description="keep it stable per instance: the broker "
                           "keeps unacknowledged messages in this client's session (adr/0042)")
    share_group: str = Field("fleetstream", description="shared-subscription group of the instances; empty: a "
                             "plain subscription, for a single instance (see ``subscription``)")
    session_expiry_s: int = 3600
    max_skew_ms: int = 300_000
    # QoS1 messages in flight from the broker to this connector, each held until Kafka confirmed it: the
    # edge's rate is at most this window / Kafka's confirmation latency (1,000 capped it near 6,700 msg/s
    # at ~150 ms on a busy 2-core machine); the messages stay in the broker session if the connector dies
    receive_maximum: int = Field(10000, ge=1, le=65535)
    subscriptions: list[str] = Field(default_factory=lambda: [  # gateway/…: sub-devices (adr/0157)
        "telemetry", "status", "gateway/connect", "gateway/disconnect", "gateway/telemetry", "gateway/commands/ack"])
    state_dir: str = Field("", description="where the connector records when it was last connected, so a "
                           "restarted one knows how long it was away (adr/0104); empty: not recorded")
    sparkplug_host_id: str = Field("", description="run the Sparkplug B host application with this host id "
                                   "(its STATE topic); on exactly one instance (adr/0155); empty: off")
    sparkplug_max_devices: int = Field(100, ge=0, le=10_000, description="Sparkplug devices one edge node "
                                       "may bring, each a fleetstream device <edge node>.<device>")
    away_credit_s: float = Field(60.0, ge=0, description="rate-limit credit after a start that resumes a "
                                 "session when the predecessor's last-connected time is unknown (adr/0104)")


def subscription(share_group: str, topic: str) -> str:
    """``$share/<group>/<topic>``, or ``topic`` itself without a group. Mosquitto 2.0 restores a persistent
    session's plain subscriptions from its store after a restart but not its shared ones, so a single instance
    subscribing plainly keeps receiving what devices publish before it has reconnected (adr/0111)."""
    return f"$share/{share_group}/{topic}" if share_group else topic


class MqttFileConfig(BaseModel):
    """What the YAML file may set (site_id names the deployment; tenant_id does not apply: MQTT serves every
    tenant, each device proven by the broker)."""

    model_config = ConfigDict(extra="forbid")
    site_id: str = "mqtt"
    client_id: str | None = None
    share_group: str | None = None
    session_expiry_s: int | None = None
    receive_maximum: int | None = Field(None, ge=1, le=65535)
    rate_limit: RateLimit = RateLimit()
    sparkplug_host_id: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    sparkplug_max_devices: int | None = Field(None, ge=0, le=10_000)


def load_mqtt_file(path: Path | str) -> MqttFileConfig:
    return load_site(path, MqttFileConfig)
