"""The top floor: the ``fleetstream`` CLI, the local stack supervisor (``stack``), the fleet simulator (``sim``)
and the benchmarks (``bench``). It may import every package; no deployable (connectors, streams, sinks, gateway)
or floor below imports it (adr/0120)."""

__version__ = "0.1.0"
