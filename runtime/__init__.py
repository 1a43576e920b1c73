"""The floor under every deployable: settings, observability, the Kafka client factory, production checks, the
platform PKI and device JWTs. Imports ``schemas`` and libraries only; connectors, streams, sinks, gateway and the
``fleetstream`` top floor import it (adr/0120)."""
