"""The local stack: Kafka (KRaft), Mosquitto with the access plugin, PostgreSQL, the supervisor that starts
and restarts every child, and its status. Top floor: no deployable imports it (adr/0120)."""
