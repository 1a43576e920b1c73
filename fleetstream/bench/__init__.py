"""Benchmarks and probes: ``fleetstream bench`` (end to end, chaos), and per-stage runs
(``python -m fleetstream.bench.connectors``, ``.agents``, ``.mqtt_edge``). Top floor: no deployable imports it
(adr/0120)."""
