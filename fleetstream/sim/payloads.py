"""Device payload shapes the simulator can send, rendered straight to canonical JSON bytes without json.dumps,
because the generator's own CPU competes with the platform on the same cores. The three device kinds carry
three metric values per reading (the benchmark's "3 points per message"); ``single`` and ``wide-30`` carry 1
and 30, for the benchmark's points-per-message scaling (issue 18)."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable

Render = Callable[[int, int], bytes]  # (ts_ms, seq) -> payload


def smart_meter(ts: int, seq: int) -> bytes:
    return (b'{"ts":%d,"values":{"voltage":%.1f,"power_w":%.1f,"energy_kwh":%.3f}}'
            % (ts, 229.0 + random.random() * 2, 80.0 + (seq % 40), seq * 0.001))


def tracker(ts: int, seq: int) -> bytes:
    a = seq / 500.0
    return (b'{"ts":%d,"values":{"lat":%.6f,"lon":%.6f,"speed_kmh":%.1f}}'
            % (ts, 52.52 + 0.01 * math.sin(a), 13.40 + 0.01 * math.cos(a), 30 + random.random() * 20))


def plc(ts: int, seq: int) -> bytes:
    return (b'{"ts":%d,"values":{"temperature":%.2f,"pressure_bar":%.3f,"running":%s}}'
            % (ts, 60 + random.random() * 5, 4 + random.random() * 0.2, b"true" if seq % 97 else b"false"))


def single(ts: int, seq: int) -> bytes:
    return b'{"ts":%d,"values":{"level":%.2f}}' % (ts, 50 + (seq % 100) * 0.25)


_WIDE = [b'"ch%02d":%%.2f' % i for i in range(30)]
_WIDE_FMT = b'{"ts":%d,"values":{' + b",".join(_WIDE) + b"}}"


def wide_30(ts: int, seq: int) -> bytes:
    """A PLC block of 30 analogue channels read at once."""
    base = 20 + (seq % 50) * 0.1
    return _WIDE_FMT % (ts, *(base + i for i in range(30)))


PAYLOADS: dict[str, Render] = {"smart-meter": smart_meter, "tracker": tracker, "plc": plc, "single": single,
                               "wide-30": wide_30}


def points_per_message(name: str) -> int:
    """How many metric values one reading of the shape carries."""
    return len(json.loads(payload(name)(0, 1))["values"])


def payload(name: str) -> Render:
    try:
        return PAYLOADS[name]
    except KeyError:
        raise ValueError(f"unknown payload {name!r}; choose one of {', '.join(PAYLOADS)}") from None
