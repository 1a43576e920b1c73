"""Device payload shapes the simulator can send: three metric values per reading (the benchmark's
"3 points per message"), rendered straight to canonical JSON bytes without json.dumps, because the
generator's own CPU competes with the platform on the same cores."""

from __future__ import annotations

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


PAYLOADS: dict[str, Render] = {"smart-meter": smart_meter, "tracker": tracker, "plc": plc}


def payload(name: str) -> Render:
    try:
        return PAYLOADS[name]
    except KeyError:
        raise ValueError(f"unknown payload {name!r}; choose one of {', '.join(PAYLOADS)}") from None
