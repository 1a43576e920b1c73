"""The leaf every package stands on: the record model and the contracts between deployables. Avro schemas, their
registry subjects and wire format, Kafka keys, topics and the partitioner, the device topic namespace, shared
limits, errors, rule expressions. Imports only libraries, nothing of fleetstream (adr/0120); no HTTP either:
the Schema Registry client is in ``runtime`` (adr/0140)."""

from . import topics
from .codec import RecordCodec, codec, codec_for
from .errors import FleetstreamError, KeySerializationError, ValueDeserializationError
from .keys import device_key, split_key

__all__ = [
    "RecordCodec", "codec", "codec_for", "device_key", "split_key", "topics",
    "FleetstreamError", "KeySerializationError", "ValueDeserializationError",
]
