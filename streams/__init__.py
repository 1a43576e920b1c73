"""Stream agents (deployable, Faust + librdkafka batch loops): validate and enrich, rules and alerts, device
shadows, device status and commands until acknowledged. Imports schemas and runtime only (adr/0120)."""
