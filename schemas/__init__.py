"""The one record model of fleetstream: Avro schemas, their codec, Kafka keys and topics."""

from . import topics
from .codec import RecordCodec, codec, codec_by_fingerprint
from .errors import FleetstreamError, KeySerializationError, ValueDeserializationError
from .keys import device_key, split_key

__all__ = [
    "RecordCodec", "codec", "codec_by_fingerprint", "device_key", "split_key", "topics",
    "FleetstreamError", "KeySerializationError", "ValueDeserializationError",
]
