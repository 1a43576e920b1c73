"""The floor under every deployable: settings, observability, the Kafka client factory, production checks, the
platform PKI, device JWTs and the Schema Registry client (adr/0140). Imports ``schemas`` and libraries only; connectors, streams, sinks, gateway and the
``fleetstream`` top floor import it (adr/0120)."""
