"""Protocol connectors (deployable): MQTT, Modbus TCP, OPC-UA, CoAP and HTTP readings, normalised to one Avro
record on Kafka, and commands delivered back to devices. Imports schemas and runtime only; never streams, sinks,
gateway or the fleetstream top floor (adr/0120)."""
