"""Sparkplug B 3.0 host application on the MQTT connector (adr/0155)."""
