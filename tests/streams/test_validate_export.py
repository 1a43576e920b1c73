"""The validate agent's continuous per-tenant export (adr/0146), without Kafka: the tenant view is fed tenant
entries through ``apply`` as its consumer would. A validated reading of an exporting tenant leaves twice, to
``fleetstream.telemetry`` and to the tenant's export topic, with the same key and the same bytes; nobody
else's readings and no refused reading are copied; the topic is made sure of once per tenant, again after a
failed batch; a passing Kafka failure fails the batch (read again, nothing lost) while a lasting refusal skips
only that tenant's copies."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaError, KafkaException

from runtime.settings import Settings
from schemas import codec, device_key, topics
from streams import validate
from streams.registry import RegistryView
from streams.validate import Validator

A, B = "7a1c1c3e-1d2b-4c9a-9a53-0f1e2d3c4b5a", "7b1c1c3e-1d2b-4c9a-9a53-0f1e2d3c4b5a"
TELEMETRY, DLQ = topics.TELEMETRY.name, topics.DEAD_LETTER.name


class _Views(RegistryView):
    def __init__(self):
        super().__init__("127.0.0.1:1")  # never started: entries arrive through apply()
        self.caught_up.set()
        self.tenant_view.caught_up.set()

    def sync(self, timeout: float = 2.0) -> bool:
        return True


def _tenant(views: _Views, tenant: str, export: bool | None, status: str = "active") -> None:
    """The tenant's entry as the gateway publishes it; ``export`` None: a tombstone."""
    value = None if export is None else codec("tenant_entry").encode(
        {"tenant_id": tenant, "status": status, "time": int(time.time() * 1000), "export_telemetry": export})
    views.tenant_view.apply(topics.TENANTS.name, tenant.encode(), value)


def _device(views: _Views, tenant: str, device: str) -> None:
    views.apply(topics.REGISTRY.name, device_key(tenant, device), codec("registry_entry").encode({
        "tenant_id": tenant, "device_id": device, "status": "active", "device_type": "meter", "tags": ["site-a"],
        "attributes": {}, "jwt_public_keys": [], "version": 1, "time": int(time.time() * 1000)}))


class _Msg:
    def __init__(self, value: bytes):
        self._v = value

    def value(self) -> bytes:
        return self._v


def _reading(tenant: str, device: str, value: float = 21.5, event_time: int | None = None) -> _Msg:
    now = int(time.time() * 1000)
    return _Msg(codec("telemetry").encode({"tenant_id": tenant, "device_id": device,
                                           "event_time": now if event_time is None else event_time,
                                           "receive_time": now, "protocol": "mqtt", "values": {"temperature": value},
                                           "device_type": None, "tags": []}))


@pytest.fixture
def views() -> _Views:
    v = _Views()
    for tenant in (A, B):
        _device(v, tenant, "d1")
    return v


def test_an_exporting_tenants_reading_is_copied_with_the_same_key_and_bytes_and_nobody_elses(views):
    _tenant(views, A, True)
    _tenant(views, B, False)
    out = Validator(Settings(), views).process([_reading(A, "d1"), _reading(B, "d1"), _reading(A, "d1", 22.0)])
    assert [t for t, _k, _v in out] == [TELEMETRY, topics.tenant_export_topic(A), TELEMETRY, TELEMETRY,
                                        topics.tenant_export_topic(A)]
    assert out[0][1:] == out[1][1:] and out[3][1:] == out[4][1:]  # same key, same (enriched) value bytes
    assert out[0][1] == device_key(A, "d1")
    rec = codec("telemetry").decode(out[1][2])
    assert rec["tenant_id"] == A and rec["device_type"] == "meter" and rec["tags"] == ["site-a"]


def test_refused_readings_are_not_exported(views):
    _tenant(views, A, True)
    far_ahead = int(time.time() * 1000) + 10 * 24 * 3600 * 1000
    out = Validator(Settings(), views).process([_reading(A, "d1", event_time=far_ahead), _reading(A, "nobody")])
    assert [t for t, _k, _v in out] == [DLQ, DLQ]


def test_switching_off_or_a_tombstone_stops_the_copy_at_the_next_reading(views):
    validator = Validator(Settings(), views)
    _tenant(views, A, True)
    assert len(validator.process([_reading(A, "d1")])) == 2
    _tenant(views, A, False)
    assert [t for t, _k, _v in validator.process([_reading(A, "d1")])] == [TELEMETRY]
    _tenant(views, A, True)
    assert len(validator.process([_reading(A, "d1")])) == 2
    _tenant(views, A, None)
    assert [t for t, _k, _v in validator.process([_reading(A, "d1")])] == [TELEMETRY]


def test_a_suspended_exporting_tenants_readings_are_refused_not_exported(views):
    _tenant(views, A, True, status="suspended")
    out = Validator(Settings(), views).process([_reading(A, "d1")])
    assert [t for t, _k, _v in out] == [DLQ]


def test_the_topic_is_made_sure_of_once_per_tenant_and_again_after_a_failed_batch(views):
    ensured: list[str] = []
    validator = Validator(Settings(), views, ensure_export=ensured.append)
    _tenant(views, A, True)
    _tenant(views, B, True)
    validator.process([_reading(A, "d1"), _reading(A, "d1"), _reading(B, "d1")])
    validator.process([_reading(A, "d1")])
    assert ensured == [A, B]
    validator.forget_export_topics()  # the pipe's on_failure: the topic may have been deleted meanwhile
    validator.process([_reading(A, "d1")])
    assert ensured == [A, B, A]


def test_kafka_not_answering_fails_the_batch_so_it_is_read_again(views):
    def unreachable(tenant: str) -> None:
        raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "admin request timed out"))

    _tenant(views, A, True)
    with pytest.raises(KafkaException):
        Validator(Settings(), views, ensure_export=unreachable).process([_reading(B, "d1"), _reading(A, "d1")])


def test_a_lasting_refusal_skips_only_that_tenants_copies_for_a_while(views, monkeypatch):
    calls: list[str] = []

    def refused(tenant: str) -> None:
        calls.append(tenant)
        if tenant == A:
            raise KafkaException(KafkaError(KafkaError.POLICY_VIOLATION, "no more partitions"))

    _tenant(views, A, True)
    _tenant(views, B, True)
    validator = Validator(Settings(), views, ensure_export=refused)
    out = validator.process([_reading(A, "d1"), _reading(B, "d1"), _reading(A, "d1")])
    assert [t for t, _k, _v in out] == [TELEMETRY, TELEMETRY, topics.tenant_export_topic(B), TELEMETRY]
    assert calls == [A, B] and validator.export_stats == {"exported": 1, "export_skipped": 2}
    monkeypatch.setattr(validate, "EXPORT_REFUSED_S", 0.0)  # the while is over: asked again
    validator.process([_reading(A, "d1")])
    assert calls == [A, B, A]


class _NoTenantViews(RegistryView):
    def __init__(self):
        super().__init__("127.0.0.1:1", tenant_topic=None)  # never started, like _Views

    def sync(self, timeout: float = 2.0) -> bool:
        return True  # a deferred reading's sync would otherwise retry a broker that is not there for 30 s


def test_a_view_following_no_tenants_exports_nothing():
    views = _NoTenantViews()
    views.caught_up.set()
    _device(views, A, "d1")
    assert [t for t, _k, _v in Validator(Settings(), views).process([_reading(A, "d1")])] == [TELEMETRY]
