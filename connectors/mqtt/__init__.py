"""MQTT 3.1.1/5 connector: bridges device topics on the broker into Kafka."""

from .connector import MqttConnector
from .namespace import DeviceTopic, parse_topic

__all__ = ["MqttConnector", "DeviceTopic", "parse_topic"]
