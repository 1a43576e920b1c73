"""The FastAPI gateway (deployable): REST /v1, GraphQL, WebSocket/SSE, the control plane in PostgreSQL with
row-level security, device identity and the broker's access lists. Imports schemas, runtime, the sinks' read layer
and connectors.http (which it hosts for ingest, adr/0044); nothing but the fleetstream top floor imports it
(adr/0120)."""
