"""A device type's declarations are never skipped because its entry is behind the device's (adr/0182): the
type view and the registry view are separate consumers, so a reading of a brand-new device of a brand-new type
can find the device but not yet its type. The validate agent then syncs its views before judging; a type name
no entry stands behind (devices may name any type) costs one sync, not one per batch. The real views are fed
through ``apply`` as their consumers would; ``sync`` delivers what was still on the topic."""

from __future__ import annotations

import time

from runtime.settings import Settings
from schemas import codec, device_key, topics
from streams.registry import RegistryView
from streams.validate import Validator

TENANT = "t-typed"


class _Views(RegistryView):
    def __init__(self):
        super().__init__("127.0.0.1:1")  # never started: entries arrive through apply()
        self.caught_up.set()
        self.on_topic: list[tuple[str, bytes, bytes]] = []  # published, not read yet
        self.syncs = 0
        self.slow_syncs = 0  # syncs that end before the views reach the topics' ends (a loaded machine)

    def sync(self, timeout: float = 2.0) -> bool:
        self.syncs += 1
        if self.slow_syncs:
            self.slow_syncs -= 1
            return False
        for topic, key, value in self.on_topic:
            (self.type_view if topic == topics.DEVICE_TYPES.name else self).apply(topic, key, value)
        self.on_topic.clear()
        return True


def _device(views: _Views, device: str, device_type: str) -> None:
    views.apply(*_device_entry(device, device_type))


def _device_entry(device: str, device_type: str) -> tuple[str, bytes, bytes]:
    return (topics.REGISTRY.name, device_key(TENANT, device), codec("registry_entry").encode({
        "tenant_id": TENANT, "device_id": device, "status": "active", "device_type": device_type, "tags": [],
        "attributes": {}, "jwt_public_keys": [], "version": 1, "time": int(time.time() * 1000)}))


def _type_entry(name: str) -> tuple[str, bytes, bytes]:
    decl = {"type": "number", "unit": "degC", "min": -40.0, "max": 125.0, "enum": None}
    return topics.DEVICE_TYPES.name, device_key(TENANT, name), codec("device_type_entry").encode(
        {"tenant_id": TENANT, "name": name, "metrics": {"temperature": decl}, "time": int(time.time() * 1000)})


class _Msg:
    def __init__(self, value: bytes):
        self._v = value

    def value(self) -> bytes:
        return self._v


def _batch(device: str, *temperatures) -> list[_Msg]:
    now = int(time.time() * 1000)
    return [_Msg(codec("telemetry").encode({"tenant_id": TENANT, "device_id": device, "event_time": now + i,
                                            "receive_time": now, "protocol": "mqtt", "values": {"temperature": t},
                                            "device_type": None, "tags": []}))
            for i, t in enumerate(temperatures)]


def _verdicts(out) -> list[str]:
    return [codec("dead_letter").decode(v)["reason_code"] if t == topics.DEAD_LETTER.name else "stored"
            for t, _k, v in out]


def test_a_reading_that_overtakes_its_types_entry_is_judged_by_the_type_after_a_sync():
    views = _Views()
    views.on_topic.append(_type_entry("thermo"))  # created before the device, not read yet
    _device(views, "d1", "thermo")
    out = Validator(Settings(), views).process(_batch("d1", "hot", 21.5, 500.0))
    assert _verdicts(out) == ["metric_type", "stored", "metric_range"] and views.syncs == 1


def test_a_type_name_with_no_entry_costs_one_sync_and_its_readings_pass():
    views = _Views()
    _device(views, "d2", "free-form")
    validator = Validator(Settings(), views)
    assert _verdicts(validator.process(_batch("d2", "hot"))) == ["stored"] and views.syncs == 1
    assert _verdicts(validator.process(_batch("d2", "warm", 3.0))) == ["stored", "stored"] and views.syncs == 1
    # once its entry arrives the type is known, with or without a sync
    views.type_view.apply(*_type_entry("free-form"))
    assert _verdicts(validator.process(_batch("d2", "hot"))) == ["metric_type"] and views.syncs == 1


def test_a_new_tenants_first_device_behind_its_reading_is_judged_by_its_type_after_a_sync():
    # the tenant has no entries in the view yet: passing its reading unenriched would skip the declarations
    views = _Views()
    views.on_topic += [_type_entry("thermo"), _device_entry("d3", "thermo")]
    out = Validator(Settings(), views).process(_batch("d3", "hot", 21.5))
    assert _verdicts(out) == ["metric_type", "stored"] and views.syncs == 1


def test_a_sync_that_ends_behind_the_topics_is_tried_again_before_judging():
    views = _Views()
    views.slow_syncs = 2
    views.on_topic += [_type_entry("thermo"), _device_entry("d4", "thermo")]
    out = Validator(Settings(), views).process(_batch("d4", 500.0))
    assert _verdicts(out) == ["metric_range"] and views.syncs == 3


def test_a_tenant_with_no_entries_costs_one_sync_and_its_readings_pass():
    views = _Views()  # devices that predate registry publishing (adr/0051)
    validator = Validator(Settings(), views)
    assert _verdicts(validator.process(_batch("d5", "hot"))) == ["stored"] and views.syncs == 1
    assert _verdicts(validator.process(_batch("d6", 1.0, 2.0))) == ["stored", "stored"] and views.syncs == 1
