"""What every protocol shares, as a device meets it: unknown and suspended devices are refused with a
stable code, a flooding device is limited per device (not per connector), and a message is answered only
after all of its records were confirmed. Pure logic: no peer, no Kafka."""

from __future__ import annotations

from connectors.base import Admission
from connectors.mqtt.connector import parse_status
from connectors.ratelimit import TokenBuckets
from connectors.registry import StaticRegistry
from connectors.uplink import AllDone
from tests.utils.clock import Clock


def test_token_bucket_allows_a_burst_then_refills_at_the_rate_per_device():
    clock = Clock(0.0)
    tb = TokenBuckets(rate=2, burst=3, clock=clock)
    assert [tb.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert tb.take("a") == 0.5  # one token missing at 2/s
    assert tb.take("b") == 0.0  # another device has its own bucket
    clock.t = 0.5
    assert tb.take("a") == 0.0
    assert tb.take("a", 10) > 0  # a batch bigger than the bucket is refused whole


def test_admission_codes_for_unknown_disabled_and_flooding_devices():
    reg = StaticRegistry({"t:ok": {"status": "active"}, "t:new": {"status": "provisioned"},
                          "t:off": {"status": "suspended"}})
    adm = Admission(reg, TokenBuckets(1, 5))
    assert adm.check("t", "ok", 5) is None and adm.check("t", "new") is None
    assert adm.check("t", "ghost").code == "unknown_device" and adm.check("t", "ghost").status == 404
    assert adm.check("t", "off").code == "device_disabled"
    limited = adm.check("t", "ok", 1)
    assert limited.code == "rate_limited" and limited.status == 429 and limited.retry_after > 0
    assert adm.check("other-tenant", "ok").code == "unknown_device"  # same device id, other tenant
    lenient = Admission(reg, None, require_registered=False)
    assert lenient.check("t", "ghost") is None and lenient.check("t", "off").code == "device_disabled"


def test_a_message_is_answered_once_after_all_its_records_and_with_the_first_error():
    calls = []
    done = AllDone(3, calls.append)
    done(None)
    done(RuntimeError("broker down"))
    assert calls == []
    done(None)
    assert len(calls) == 1 and str(calls[0]) == "broker down"
    empty = []
    AllDone(0, empty.append)
    assert empty == [None]


def test_status_payloads_become_online_offline_events():
    assert parse_status(b"online") == ("ONLINE", {})
    assert parse_status(b'{"state": "offline", "why": "lost", "n": 2}') == ("OFFLINE", {"why": "lost", "n": "2"})
    assert parse_status(b"rebooting") is None and parse_status(b"{nope") is None
