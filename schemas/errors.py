"""Errors shared by everything that reads or writes fleetstream records."""


class FleetstreamError(Exception):
    """Root of fleetstream's errors; ``status`` maps to HTTP and ``code`` is stable for machines."""

    status = 500
    code = "internal_error"


class ValueDeserializationError(FleetstreamError):
    status = 400
    code = "undecodable_record"


class KeySerializationError(FleetstreamError):
    status = 400
    code = "bad_key"
