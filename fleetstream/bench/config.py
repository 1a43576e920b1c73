"""What one benchmark run does; ``quick`` is the everyday `make bench` (under two minutes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class BenchConfig:
    rate: float = 2000.0
    duration_s: float = 60.0
    devices: int = 200
    qos: int = 1
    payload: str = "smart-meter"
    workers: int | None = None
    warmup_s: float = 5.0
    idle_s: float = 8.0  # fixed CPU cost of the stack with the fleet connected, subtracted per message
    find_max: bool = False
    start_rate: float = 1000.0
    step_factor: float = 1.5
    max_rate: float = 40000.0
    step_s: float = 30.0
    drain_timeout_s: float = 180.0
    baseline_records: int = 100_000
    port_offset: int = 0
    results_dir: Path = Path("bench/results")
    keep_data: bool = False
    probe_devices: int = 4
    label: str = "full"
    profile_dir: Path | None = None  # py-spy every Python component during each step
    extra_settings: dict = field(default_factory=dict)
    # chaos (adr/0113): components killed in turn, steady load before and after each kill, and how long
    # a component may take to come back before the round counts as "not recovered"
    chaos: list[str] = field(default_factory=list)
    settle_s: float = 20.0
    recover_timeout_s: float = 300.0
    # processes per role (adr/0134): with 2, a chaos victim "streams.1" is the second worker, and the
    # survivors are expected to carry the load while it is away
    replicas: dict = field(default_factory=dict)
    # the platform roles started (None: all of them); the test suite's tiny runs start MQTT_ROLES only
    # (fleetstream/stack/supervisor.py)
    roles: tuple[str, ...] | None = None
    # issue 18: devices registered in all (those beyond ``devices`` never connect), the resource timeline's
    # interval, and the idle mode (the fleet connected and silent for ``duration_s``, only resources sampled)
    registered: int = 0
    tenants: int = 1  # issue 18: the fleet (connected and registered) spread evenly over this many tenants
    timeline_every_s: float = 10.0
    idle_only: bool = False
    idle_settle_s: float = 30.0  # after the sessions connected, before the idle window

    def rates(self) -> list[float]:
        if not self.find_max:
            return [self.rate]
        out, r = [], self.start_rate
        while r <= self.max_rate:
            out.append(round(r))
            r *= self.step_factor
        return out

    def step_duration(self) -> float:
        return self.step_s if self.find_max else self.duration_s


# what a chaos round may kill (adr/0113); the cluster ones need the local 3-node cluster (adr/0133): the
# active KRaft controller, and the broker leading most partitions of the raw telemetry topic
VICTIMS = ("connector-mqtt", "streams", "gateway", "kafka", "mosquitto", "postgres")
CLUSTER_VICTIMS = ("kafka-controller", "kafka-leader")


def chaos(components: list[str]) -> BenchConfig:
    """`make chaos`: 100 devices at 500 msg/s, each component killed once (about 15 minutes here)."""
    return BenchConfig(rate=500, devices=100, chaos=components, label="chaos", probe_devices=2)


def idle(devices: int, duration_s: float) -> BenchConfig:
    """``fleetstream bench --idle``: no Kafka baseline, no load, no latency probes (they would be load)."""
    return BenchConfig(rate=0, duration_s=duration_s, devices=devices, baseline_records=0, warmup_s=0, idle_s=0,
                       label="idle", idle_only=True)


def quick() -> BenchConfig:
    return BenchConfig(rate=1000, duration_s=20, devices=100, baseline_records=30_000, idle_s=5, label="quick")
