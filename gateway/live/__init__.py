"""Live delivery: one Kafka consumer per gateway process (``hub``), fanned out to WebSocket, SSE and
GraphQL subscriptions by tenant (adr/0063)."""
