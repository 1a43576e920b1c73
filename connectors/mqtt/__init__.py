"""MQTT 3.1.1/5 connector: bridges device topics on the broker into Kafka."""

from schemas.namespace import DeviceTopic, parse_topic

from .connector import MqttConnector

__all__ = ["MqttConnector", "DeviceTopic", "parse_topic"]
