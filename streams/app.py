"""The Faust application shared by every stream agent (adr/0005).

Agents take batches (``stream.take``) so the per-record cost stays within the hot path's budget, and
they exchange fleetstream's Avro bytes untouched by Faust's serializers (``raw``). Validate, the hottest
stage, is not a Faust agent: it is a librdkafka batch loop hosted by the same worker (adr/0057).
"""

from __future__ import annotations

import faust

from runtime.settings import Settings
from schemas.partitioner import murmur2_partitioner
from schemas.webhook_targets import WebhookPolicy

from . import device_activity, faust_fetch, faust_producer, faust_take
from .registry import RegistryView
from .rules_view import RulesView


def create_app(s: Settings, *, app_id: str = "fleetstream-streams") -> faust.App:
    faust_fetch.install()
    faust_producer.install()
    faust_take.install()
    app = faust.App(
        app_id,
        datadir=str(s.root / "streams"),
        store="memory://",  # tables are rebuilt from their changelog topics on start
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=s.kafka_partitions,
        **web_options(s),
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        broker_commit_every=1000,
        broker_commit_interval=1.0,
        stream_wait_empty=False,
        # device-activity takes batches of up to ACTIVITY_BATCH; a buffer of several batches keeps the fetcher
        # from pausing and resuming partitions at every batch (adr/0057)
        stream_buffer_maxsize=4 * device_activity.BATCH,
        broker_max_poll_records=device_activity.BATCH,
        broker_session_timeout=15,  # a worker killed hard hands its partitions over within ~15 s
        broker_heartbeat_interval=3,
        producer_partitioner=murmur2_partitioner,  # Java's default, as every producer (adr/0141)
        # brokers, security and topic replication from the one Kafka client factory (adr/0125, adr/0130)
        **s.kafka.faust_options(),
    )
    from . import commands, rules, shadows, status, validate

    registry = RegistryView(s.kafka).start()
    rules_view = RulesView(s.kafka).start()
    validate.register(app, s, registry)
    commands.register(app, registry)
    device_activity.register(app, on_both=status.register(app, s, registry),
                             on_telemetry=rules.register(app, rules_view, WebhookPolicy.parse(s.webhook_allow),
                                                          s.kafka.topic_config()),
                             on_device_events=shadows.register(app),
                             ready=lambda: rules_view.caught_up.wait(30))
    return app


def web_options(s: Settings) -> dict:
    """The worker's web port (the agents' stats and rule views, adr/0112): only with a token, which every
    request must carry as ``Authorization: Bearer``; bound to ``streams_web_host`` (loopback by default,
    whatever ``FLEETSTREAM_HOST`` says); Faust's own table and router views, which would serve any tenant's
    table entries, are off."""
    token = s.streams_web_token
    if not token:
        return {"web_enabled": False}
    return {"web_enabled": True, "web_bind": s.streams_web_host, "web_host": s.streams_web_host,
            "web_port": s.streams_web_port, "web_router_enabled": False, "web_tables_enabled": False,
            "web_application_options": {"middlewares": [_require_token(token)]}}


def web_auth_headers(s: Settings) -> dict[str, str]:
    """What a client of the worker's web port sends (tests, benchmarks, operations scripts)."""
    return {"Authorization": f"Bearer {s.streams_web_token}"}


def _require_token(token: str):
    import hmac

    from aiohttp import web

    expected = f"Bearer {token}".encode()

    @web.middleware
    async def require_token(request, handler):
        if not hmac.compare_digest(request.headers.get("Authorization", "").encode(), expected):
            return web.json_response({"error": "unauthorized"}, status=401, headers={"WWW-Authenticate": "Bearer"})
        return await handler(request)

    return require_token
