"""OPC-UA refusals: a value the platform cannot carry (``wrong_type``), a bad-quality value
(``bad_quality``), a source timestamp from the future (``clock_skew``) are dead-lettered; a lost session is a
``READ_ERROR`` device event; a node the server does not have is a ``CONFIG_ISSUE`` event."""

from .adaptor import ValueRefused

__all__ = ["ValueRefused"]
