"""Sinks (deployable): land telemetry from Kafka in a store. Imports schemas and runtime only; the gateway may
import the read layer (adr/0120)."""
