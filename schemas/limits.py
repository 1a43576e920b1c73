"""Limits every channel shares: the connectors refuse bigger payloads, the broker's ``max_packet_size`` and the
gateway's body limits are set from them (adr/0103), so a payload the broker accepts is one a connector can judge
and dead-letter whole."""

MAX_PAYLOAD_BYTES = 256 * 1024
