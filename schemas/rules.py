"""Tenant rules: the JSON document (validated here, by the gateway on write) and its pure evaluation
(used by the rules agent on every reading and by the gateway's dry-run). Shared by both, so it lives
with the other contracts in ``schemas/`` (adr/0055). No tenant input is ever executed: a rule is data
interpreted by a fixed set of condition types.

Example::

    {"name": "boiler too hot", "scope": {"device_types": ["boiler"], "tags": ["site-a"]},
     "condition": {"type": "for", "for_s": 60,
                   "condition": {"type": "threshold", "metric": "temperature", "op": ">", "value": 90}},
     "actions": [{"type": "alert", "severity": "MAJOR"},
                 {"type": "webhook", "url": "https://ops.example/hook", "secret": "…"}]}
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, HttpUrl, model_validator

from .strict import JsonObject, Number, Text, check_text

Op = Literal[">", ">=", "<", "<=", "==", "!="]
MetricName = Annotated[str, Field(min_length=1, max_length=128), AfterValidator(check_text)]
Name = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(check_text)]
# conditions hold finite numbers of bounded size (schemas/strict.py): NaN, inf and 1e300 were stored and
# evaluated before (adr/0109); coordinates are bounded by the globe
Latitude = Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False)]
Longitude = Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False)]
MAX_RADIUS_M = 20_037_509  # half the equator: every point on Earth is within it


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Threshold(_Strict):
    type: Literal["threshold"]
    metric: MetricName
    op: Op
    value: Number | bool | Annotated[str, Field(max_length=256), AfterValidator(check_text)]


class Range(_Strict):
    type: Literal["range"]
    metric: MetricName
    min: Number
    max: Number
    trigger: Literal["outside", "inside"] = "outside"

    @model_validator(mode="after")
    def _order(self):
        if self.min > self.max:
            raise ValueError("min must not exceed max")
        return self


class RateOfChange(_Strict):
    type: Literal["rate"]
    metric: MetricName
    op: Op = ">"
    value: Number
    per_s: float = Field(1.0, gt=0, le=30 * 86400, description="the rate is the change per this many seconds")
    absolute: bool = True


class Geofence(_Strict):
    type: Literal["geofence"]
    lat_metric: MetricName = "lat"
    lon_metric: MetricName = "lon"
    polygon: list[tuple[Latitude, Longitude]] | None = Field(None, min_length=3, max_length=1000,
                                                            description="[lat, lon] corners")
    center: tuple[Latitude, Longitude] | None = None
    radius_m: float | None = Field(None, gt=0, le=MAX_RADIUS_M)
    trigger: Literal["outside", "inside"] = "outside"

    @model_validator(mode="after")
    def _shape(self):
        if (self.polygon is None) == (self.center is None):
            raise ValueError("give either polygon or center with radius_m")
        if self.center is not None and self.radius_m is None:
            raise ValueError("a circle needs radius_m")
        return self


class Inactivity(_Strict):
    type: Literal["inactivity"]
    for_s: float = Field(gt=0, le=30 * 86400)
    metric: MetricName | None = None


class Holding(_Strict):
    type: Literal["for"]
    for_s: float = Field(gt=0, le=30 * 86400)
    condition: Inner


class Combination(_Strict):
    type: Literal["all", "any"]
    conditions: list[Inner] = Field(min_length=1, max_length=20)


# inactivity is judged by a timer for the whole rule, so it stands only at the top level
Inner = Annotated[Threshold | Range | RateOfChange | Geofence | Holding | Combination, Field(discriminator="type")]
Condition = Annotated[Threshold | Range | RateOfChange | Geofence | Holding | Combination | Inactivity,
                      Field(discriminator="type")]
Holding.model_rebuild()
Combination.model_rebuild()


class Scope(_Strict):
    devices: list[Name] = Field(default_factory=list, max_length=10_000)
    device_types: list[Name] = Field(default_factory=list, max_length=100)
    tags: list[Name] = Field(default_factory=list, max_length=100)


class AlertAction(_Strict):
    type: Literal["alert"]
    severity: Literal["INFO", "WARNING", "MINOR", "MAJOR", "CRITICAL"] = "WARNING"
    message: Text = Field("", max_length=500)
    auto_clear: bool = True


class WebhookAction(_Strict):
    type: Literal["webhook"]
    url: HttpUrl
    secret: Text = Field(min_length=16, max_length=256, description="HMAC-SHA256 key for X-Fleetstream-Signature")
    timeout_s: float = Field(5, gt=0, le=30)
    max_attempts: int = Field(3, ge=1, le=10)
    on_clear: bool = False


class CommandAction(_Strict):
    type: Literal["command"]
    name: Text = Field(min_length=1, max_length=64)
    params: JsonObject = Field(default_factory=dict)
    timeout_s: float = Field(30, gt=0, le=3600)


class RepublishAction(_Strict):
    type: Literal["republish"]
    on_clear: bool = False


Action = Annotated[AlertAction | WebhookAction | CommandAction | RepublishAction, Field(discriminator="type")]


class RuleDocument(_Strict):
    name: Text = Field(min_length=1, max_length=100)
    description: Text = Field("", max_length=1000)
    scope: Scope = Scope()
    condition: Condition
    actions: list[Action] = Field(min_length=1, max_length=10)


# -- evaluation (pure) ---------------------------------------------------------------------------------
_OPS = {">": lambda a, b: a > b, ">=": lambda a, b: a >= b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
        "==": lambda a, b: a == b, "!=": lambda a, b: a != b}


def in_scope(scope: dict, device_id: str, device_type: str | None, tags: list[str]) -> bool:
    if scope.get("devices") and device_id not in scope["devices"]:
        return False
    if scope.get("device_types") and device_type not in scope["device_types"]:
        return False
    return not scope.get("tags") or any(t in tags for t in scope["tags"])


def _num(v: Any) -> float | None:
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return None
    try:
        return float(v)
    except OverflowError:  # an integer beyond a double: as far out as a double goes
        return math.inf if v > 0 else -math.inf


def evaluate(cond: dict, values: dict, ts: int, state: dict, path: str = "c") -> bool | None:
    """True/False: the condition holds or not at event time ``ts``; None: this reading says nothing about it
    (the metric is absent). ``state`` keeps what rate and holding conditions remember, keyed by ``path``."""
    t = cond["type"]
    if t == "threshold":
        v, want = values.get(cond["metric"]), cond["value"]
        if v is None:
            return None
        if isinstance(want, (bool, str)):  # states and labels: equality only
            return (v == want) if cond["op"] == "==" else (v != want) if cond["op"] == "!=" else None
        v = _num(v)
        return None if v is None else _OPS[cond["op"]](v, want)
    if t == "range":
        v = _num(values.get(cond["metric"]))
        if v is None:
            return None
        inside = cond["min"] <= v <= cond["max"]
        return inside if cond.get("trigger", "outside") == "inside" else not inside
    if t == "rate":
        v = _num(values.get(cond["metric"]))
        if v is None:
            return None
        prev = state.get(path)
        state[path] = [v, ts]
        if prev is None or ts <= prev[1]:
            return None
        rate = (v - prev[0]) / ((ts - prev[1]) / 1000) * cond.get("per_s", 1.0)
        return _OPS[cond.get("op", ">")](abs(rate) if cond.get("absolute", True) else rate, cond["value"])
    if t == "geofence":
        lat, lon = _num(values.get(cond.get("lat_metric", "lat"))), _num(values.get(cond.get("lon_metric", "lon")))
        if lat is None or lon is None or not (-90 <= lat <= 90 and -180 <= lon <= 180):
            return None  # no position, or one off the globe: this reading says nothing about the fence
        if cond.get("polygon"):
            inside = point_in_polygon(lat, lon, cond["polygon"])
        else:
            inside = haversine_m(lat, lon, *cond["center"]) <= cond["radius_m"]
        return inside if cond.get("trigger", "outside") == "inside" else not inside
    if t == "for":
        inner = evaluate(cond["condition"], values, ts, state, path + ".0")
        if inner is None:
            return None
        if not inner:
            state.pop(path, None)
            return False
        since = state.setdefault(path, ts)
        return ts - since >= cond["for_s"] * 1000
    if t in ("all", "any"):
        results = [evaluate(c, values, ts, state, f"{path}.{i}") for i, c in enumerate(cond["conditions"])]
        if t == "all":
            return False if False in results else (None if None in results else True)
        return True if True in results else (None if None in results else False)
    if t == "inactivity":
        metric = cond.get("metric")
        return False if metric is None or metric in values else None
    raise ValueError(f"unknown condition type {t!r}")


def point_in_polygon(lat: float, lon: float, polygon: list) -> bool:
    inside, n = False, len(polygon)
    for i in range(n):
        (y1, x1), (y2, x2) = polygon[i], polygon[(i + 1) % n]
        if (y1 > lat) != (y2 > lat) and lon < (x2 - x1) * (lat - y1) / (y2 - y1) + x1:
            inside = not inside
    return inside


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6_371_000 * math.asin(min(1.0, math.sqrt(a)))  # rounding can put a a hair above 1
